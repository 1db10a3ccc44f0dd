package teisim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// decodeBody reads a JSON request body into dst the way TEI's framework
// (axum's Json extractor) does, answering its plain-text errors itself:
// 415 for a wrong Content-Type, 413 over --payload-limit, 400 for malformed
// JSON and 422 for JSON of the wrong shape. It reports whether dst is usable.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, dst checker) bool {
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		writePlain(w, http.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
		return false
	}
	limit := int64(s.cfg.PayloadLimit)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writePlain(w, http.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
			return false
		}
		writePlain(w, http.StatusBadRequest, "Failed to buffer the request body: "+err.Error())
		return false
	}
	var syntax any
	if err := json.Unmarshal(body, &syntax); err != nil {
		writePlain(w, http.StatusBadRequest, "Failed to parse the request body as JSON: "+err.Error())
		return false
	}
	if err := json.Unmarshal(body, dst); err != nil {
		writePlain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
		return false
	}
	if err := dst.check(); err != nil {
		writePlain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
		return false
	}
	return true
}

// checker is a request that can say whether a required field is missing,
// which encoding/json cannot.
type checker interface {
	check() error
}

func isJSONContentType(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func missing(field string) error { return fmt.Errorf("missing field `%s`", field) }

// input is one input of a request: a text or a list of token ids.
type input struct {
	text  string
	ids   []uint32
	isIDs bool
}

// chars counts what TEI reports as x-compute-characters: runes of a text,
// or the number of ids.
func (in input) chars() int {
	if in.isIDs {
		return len(in.ids)
	}
	return utf8.RuneCountInString(in.text)
}

func (in input) empty() bool {
	if in.isIDs {
		return len(in.ids) == 0
	}
	return in.text == ""
}

// inputs is TEI's Input: a string, a list of token ids (one input), or a
// list whose items are strings or id lists (a batch).
type inputs struct {
	set   bool
	batch bool
	items []input
}

var errInputShape = errors.New("data did not match any variant of untagged enum Input")

// UnmarshalJSON implements json.Unmarshaler.
func (in *inputs) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	in.set = true
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		in.items = []input{{text: s}}
		return nil
	case len(b) > 0 && b[0] == '[':
	default:
		return errInputShape
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) == 0 {
		// An empty list is an empty batch (400 Empty), not an empty id list.
		in.batch = true
		return nil
	}
	if first := bytes.TrimSpace(raw[0]); len(first) > 0 && first[0] != '"' && first[0] != '[' {
		var ids []uint32
		if err := json.Unmarshal(b, &ids); err != nil {
			return errInputShape
		}
		in.items = []input{{ids: ids, isIDs: true}}
		return nil
	}
	in.batch = true
	in.items = make([]input, len(raw))
	for i, item := range raw {
		item = bytes.TrimSpace(item)
		switch {
		case len(item) > 0 && item[0] == '"':
			if err := json.Unmarshal(item, &in.items[i].text); err != nil {
				return err
			}
		case len(item) > 0 && item[0] == '[':
			in.items[i].isIDs = true
			if err := json.Unmarshal(item, &in.items[i].ids); err != nil {
				return errInputShape
			}
		default:
			return errInputShape
		}
	}
	return nil
}

// method is te_request_count's label for these inputs.
func (in inputs) method() string {
	if in.batch {
		return "batch"
	}
	return "single"
}

// direction is TEI's truncation_direction.
type direction int

const (
	truncateRight direction = iota
	truncateLeft
)

// UnmarshalJSON implements json.Unmarshaler; TEI takes Right and Left in
// either case.
func (d *direction) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch s {
	case "Right", "right":
		*d = truncateRight
	case "Left", "left":
		*d = truncateLeft
	default:
		return fmt.Errorf("unknown variant `%s`, expected one of `Left`, `Right`, `left`, `right`", s)
	}
	return nil
}

// embedRequest is the body of /embed, /embed_all and /embed_sparse.
type embedRequest struct {
	Inputs              inputs    `json:"inputs"`
	Truncate            *bool     `json:"truncate"`
	TruncationDirection direction `json:"truncation_direction"`
	PromptName          *string   `json:"prompt_name"`
	Normalize           *bool     `json:"normalize"`
	Dimensions          *uint32   `json:"dimensions"`
}

func (r *embedRequest) check() error {
	if !r.Inputs.set {
		return missing("inputs")
	}
	return nil
}

// openAIRequest is the body of /v1/embeddings and /embeddings.
type openAIRequest struct {
	Input          inputs  `json:"input"`
	Model          *string `json:"model"`
	User           *string `json:"user"`
	EncodingFormat *string `json:"encoding_format"`
	Dimensions     *uint32 `json:"dimensions"`
}

func (r *openAIRequest) check() error {
	if !r.Input.set {
		return missing("input")
	}
	if f := r.EncodingFormat; f != nil && *f != "float" && *f != "base64" {
		return fmt.Errorf("encoding_format: unknown variant `%s`, expected `float` or `base64`", *f)
	}
	return nil
}

// rerankRequest is the body of /rerank.
type rerankRequest struct {
	Query               *string   `json:"query"`
	Texts               *[]string `json:"texts"`
	Truncate            *bool     `json:"truncate"`
	TruncationDirection direction `json:"truncation_direction"`
	RawScores           bool      `json:"raw_scores"`
	ReturnText          bool      `json:"return_text"`
}

func (r *rerankRequest) check() error {
	switch {
	case r.Query == nil:
		return missing("query")
	case r.Texts == nil:
		return missing("texts")
	}
	return nil
}

// predictRequest is the body of /predict.
type predictRequest struct {
	Inputs              predictInputs `json:"inputs"`
	Truncate            *bool         `json:"truncate"`
	TruncationDirection direction     `json:"truncation_direction"`
	RawScores           bool          `json:"raw_scores"`
}

func (r *predictRequest) check() error {
	if !r.Inputs.set {
		return missing("inputs")
	}
	return nil
}

// sequence is one /predict input: a text or a pair of texts.
type sequence struct {
	a, b   string
	isPair bool
}

// predictInputs is TEI's PredictInput: a string, a pair ["a", "b"], or a
// batch [["a"], ["a", "b"], ...].
type predictInputs struct {
	set   bool
	batch bool
	items []sequence
}

var errPredictShape = errors.New("data did not match any variant of untagged enum PredictInput")

// UnmarshalJSON implements json.Unmarshaler.
func (p *predictInputs) UnmarshalJSON(b []byte) error {
	p.set = true
	var single string
	if err := json.Unmarshal(b, &single); err == nil {
		p.items = []sequence{{a: single}}
		return nil
	}
	var pair []string
	if err := json.Unmarshal(b, &pair); err == nil {
		if len(pair) != 2 {
			return errPredictShape
		}
		p.items = []sequence{{a: pair[0], b: pair[1], isPair: true}}
		return nil
	}
	var batch [][]string
	if err := json.Unmarshal(b, &batch); err != nil {
		return errPredictShape
	}
	p.batch = true
	p.items = make([]sequence, len(batch))
	for i, s := range batch {
		switch len(s) {
		case 1:
			p.items[i] = sequence{a: s[0]}
		case 2:
			p.items[i] = sequence{a: s[0], b: s[1], isPair: true}
		default:
			return errPredictShape
		}
	}
	return nil
}

// tokenizeRequest is the body of /tokenize.
type tokenizeRequest struct {
	Inputs           tokenizeInputs `json:"inputs"`
	AddSpecialTokens *bool          `json:"add_special_tokens"`
	PromptName       *string        `json:"prompt_name"`
}

func (r *tokenizeRequest) check() error {
	if !r.Inputs.set {
		return missing("inputs")
	}
	return nil
}

// tokenizeInputs is a string or a list of strings.
type tokenizeInputs struct {
	set   bool
	batch bool
	items []string
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *tokenizeInputs) UnmarshalJSON(b []byte) error {
	t.set = true
	var single string
	if err := json.Unmarshal(b, &single); err == nil {
		t.items = []string{single}
		return nil
	}
	t.batch = true
	if err := json.Unmarshal(b, &t.items); err != nil {
		return errors.New("data did not match any variant of untagged enum TokenizeInput")
	}
	return nil
}

// decodeRequest is the body of /decode.
type decodeRequest struct {
	IDs               idsInput `json:"ids"`
	SkipSpecialTokens *bool    `json:"skip_special_tokens"`
}

func (r *decodeRequest) check() error {
	if !r.IDs.set {
		return missing("ids")
	}
	return nil
}

// idsInput is a list of ids or a list of such lists.
type idsInput struct {
	set   bool
	batch bool
	items [][]uint32
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *idsInput) UnmarshalJSON(b []byte) error {
	d.set = true
	var single []uint32
	if err := json.Unmarshal(b, &single); err == nil {
		d.items = [][]uint32{single}
		return nil
	}
	d.batch = true
	if err := json.Unmarshal(b, &d.items); err != nil {
		return errors.New("data did not match any variant of untagged enum InputIds")
	}
	return nil
}

// similarityRequest is the body of /similarity.
type similarityRequest struct {
	Inputs *struct {
		SourceSentence *string   `json:"source_sentence"`
		Sentences      *[]string `json:"sentences"`
	} `json:"inputs"`
	Parameters *struct {
		Truncate            *bool     `json:"truncate"`
		TruncationDirection direction `json:"truncation_direction"`
		PromptName          *string   `json:"prompt_name"`
	} `json:"parameters"`
}

func (r *similarityRequest) check() error {
	switch {
	case r.Inputs == nil:
		return missing("inputs")
	case r.Inputs.SourceSentence == nil:
		return missing("source_sentence")
	case r.Inputs.Sentences == nil:
		return missing("sentences")
	}
	return nil
}
