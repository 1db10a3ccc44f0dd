package teisim

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// decodeBody reads a JSON request body into dst the way TEI's framework
// (axum 0.7's Json extractor over serde) does, answering its plain-text
// errors itself: 415 for a wrong Content-Type, 413 over --payload-limit,
// 400 for what serde_json calls a syntax error (malformed JSON, invalid
// UTF-8, lone surrogates, null or a number where an enum goes) and 422 for
// JSON of the wrong shape (missing, duplicate or mistyped fields). See
// serde.go for the decoder. It reports whether dst is usable.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, dst serdeRequest) bool {
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
	if err := dst.decode(newDeserializer(body)); err != nil {
		if err.syntax {
			writePlain(w, http.StatusBadRequest, "Failed to parse the request body as JSON: "+err.Error())
		} else {
			writePlain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
		}
		return false
	}
	return true
}

// serdeRequest is a request body with TEI's serde rules for decoding it.
type serdeRequest interface {
	decode(d *deserializer) *serdeError
}

// isJSONContentType is axum's json_content_type: application/json or any
// application/*+json, parameters allowed.
func isJSONContentType(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// Field constructors: how a derived struct treats a missing field.

// required is a field serde must find ("missing field" otherwise).
func required(name string, decode func(*deserializer, path) *serdeError) field {
	return field{name: name, required: true, decode: decode}
}

// defaulted is a field with #[serde(default)]: absent means its default,
// in the object form and the sequence form alike.
func defaulted(name string, decode func(*deserializer, path) *serdeError) field {
	return field{name: name, serdeDefault: true, decode: decode}
}

// optional is an Option field without #[serde(default)]: absent from an
// object means None, but the sequence form must still carry it.
func optional(name string, decode func(*deserializer, path) *serdeError) field {
	return field{name: name, decode: decode}
}

// Value decoders for the fields' Rust types.

// boolInto is bool: true or false, never null.
func boolInto(dst *bool) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) (err *serdeError) {
		*dst, err = d.boolean(p)
		return err
	}
}

// optBoolInto is Option<bool>: null is None.
func optBoolInto(dst **bool) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) *serdeError {
		null, err := d.isNull(p)
		if err != nil || null {
			*dst = nil
			return err
		}
		v, err := d.boolean(p)
		*dst = &v
		return err
	}
}

// stringInto is String.
func stringInto(dst *string) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) (err *serdeError) {
		*dst, err = d.str(p)
		return err
	}
}

// optStringInto is Option<String>.
func optStringInto(dst **string) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) *serdeError {
		null, err := d.isNull(p)
		if err != nil || null {
			*dst = nil
			return err
		}
		v, err := d.str(p)
		*dst = &v
		return err
	}
}

// stringsInto is Vec<String>.
func stringsInto(dst *[]string) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) (err *serdeError) {
		*dst, err = d.strs(p)
		return err
	}
}

// optUsizeInto is Option<usize>.
func optUsizeInto(dst **uint64) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) *serdeError {
		null, err := d.isNull(p)
		if err != nil || null {
			*dst = nil
			return err
		}
		v, err := d.usize(p)
		*dst = &v
		return err
	}
}

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

// inputs is TEI's Input, an untagged enum: a string or a list of token
// ids is one input (so [] is one empty input, not an empty batch), a list of
// strings and id lists is a batch.
type inputs struct {
	batch bool
	items []input
}

// inputType matches TEI's InputType: a string or a Vec<u32>.
func (c content) inputType() (input, bool) {
	if c.kind == 's' {
		return input{text: c.s}, true
	}
	if ids, ok := c.ids(); ok {
		return input{ids: ids, isIDs: true}, true
	}
	return input{}, false
}

// inputsInto is Input.
func inputsInto(dst *inputs) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) *serdeError {
		c, err := d.content(p)
		if err != nil {
			return err
		}
		if in, ok := c.inputType(); ok {
			*dst = inputs{items: []input{in}}
			return nil
		}
		if c.kind == 'a' {
			items := make([]input, len(c.seq))
			for i, item := range c.seq {
				var ok bool
				if items[i], ok = item.inputType(); !ok {
					return noVariant("Input")
				}
			}
			*dst = inputs{batch: true, items: items}
			return nil
		}
		return noVariant("Input")
	}
}

// method is te_request_count's label for these inputs.
func (in inputs) method() string {
	if in.batch {
		return "batch"
	}
	return "single"
}

// direction is TEI's TruncationDirection.
type direction int

const (
	truncateRight direction = iota
	truncateLeft
)

// directionVariants are TruncationDirection's spellings: each variant with
// its aliases, which serde lists sorted per variant.
var (
	directionVariants = map[string]int{"Left": int(truncateLeft), "left": int(truncateLeft), "Right": int(truncateRight), "right": int(truncateRight)}
	directionNames    = []string{"Left", "left", "Right", "right"}
)

// directionInto is TruncationDirection.
func directionInto(dst *direction) func(*deserializer, path) *serdeError {
	return func(d *deserializer, p path) *serdeError {
		v, err := d.unitEnum(p, directionVariants, directionNames)
		*dst = direction(v)
		return err
	}
}

// embedRequest is the body of /embed (TEI's EmbedRequest).
type embedRequest struct {
	Inputs              inputs
	Truncate            *bool
	TruncationDirection direction
	PromptName          *string
	Normalize           bool
	Dimensions          *uint64
}

func (r *embedRequest) decode(d *deserializer) *serdeError {
	r.Normalize = true
	return d.structure(nil, "EmbedRequest", []field{
		required("inputs", inputsInto(&r.Inputs)),
		defaulted("truncate", optBoolInto(&r.Truncate)),
		defaulted("truncation_direction", directionInto(&r.TruncationDirection)),
		optional("prompt_name", optStringInto(&r.PromptName)),
		defaulted("normalize", boolInto(&r.Normalize)),
		optional("dimensions", optUsizeInto(&r.Dimensions)),
	})
}

// embedAllRequest is the body of /embed_all and /embed_sparse (TEI's
// EmbedAllRequest and EmbedSparseRequest, alike but for their names).
type embedAllRequest struct {
	name                string
	Inputs              inputs
	Truncate            *bool
	TruncationDirection direction
	PromptName          *string
}

func (r *embedAllRequest) decode(d *deserializer) *serdeError {
	return d.structure(nil, r.name, []field{
		required("inputs", inputsInto(&r.Inputs)),
		defaulted("truncate", optBoolInto(&r.Truncate)),
		defaulted("truncation_direction", directionInto(&r.TruncationDirection)),
		optional("prompt_name", optStringInto(&r.PromptName)),
	})
}

// openAIRequest is the body of /v1/embeddings and /embeddings (TEI's
// OpenAICompatRequest).
type openAIRequest struct {
	Input  inputs
	Model  *string
	User   *string
	Base64 bool // encoding_format: "float" (the default) or "base64"
	// Dimensions is accepted as TEI does.
	Dimensions *uint64
}

var (
	encodingFormats     = map[string]int{"float": 0, "base64": 1}
	encodingFormatNames = []string{"float", "base64"}
)

func (r *openAIRequest) decode(d *deserializer) *serdeError {
	return d.structure(nil, "OpenAICompatRequest", []field{
		required("input", inputsInto(&r.Input)),
		optional("model", optStringInto(&r.Model)),
		optional("user", optStringInto(&r.User)),
		defaulted("encoding_format", func(d *deserializer, p path) *serdeError {
			v, err := d.unitEnum(p, encodingFormats, encodingFormatNames)
			r.Base64 = v == 1
			return err
		}),
		optional("dimensions", optUsizeInto(&r.Dimensions)),
	})
}

// rerankRequest is the body of /rerank (TEI's RerankRequest).
type rerankRequest struct {
	Query               string
	Texts               []string
	Truncate            *bool
	TruncationDirection direction
	RawScores           bool
	ReturnText          bool
}

func (r *rerankRequest) decode(d *deserializer) *serdeError {
	return d.structure(nil, "RerankRequest", []field{
		required("query", stringInto(&r.Query)),
		required("texts", stringsInto(&r.Texts)),
		defaulted("truncate", optBoolInto(&r.Truncate)),
		defaulted("truncation_direction", directionInto(&r.TruncationDirection)),
		defaulted("raw_scores", boolInto(&r.RawScores)),
		defaulted("return_text", boolInto(&r.ReturnText)),
	})
}

// predictRequest is the body of /predict (TEI's PredictRequest).
type predictRequest struct {
	Inputs              predictInputs
	Truncate            *bool
	TruncationDirection direction
	RawScores           bool
}

func (r *predictRequest) decode(d *deserializer) *serdeError {
	return d.structure(nil, "PredictRequest", []field{
		required("inputs", func(d *deserializer, p path) (err *serdeError) {
			r.Inputs, err = d.predictInput(p)
			return err
		}),
		// TEI gives this Option no #[serde(default)].
		optional("truncate", optBoolInto(&r.Truncate)),
		defaulted("truncation_direction", directionInto(&r.TruncationDirection)),
		defaulted("raw_scores", boolInto(&r.RawScores)),
	})
}

// sequence is one /predict input: a text or a pair of texts.
type sequence struct {
	a, b   string
	isPair bool
}

// predictInputs is TEI's PredictInput: a string or a list of one or two
// strings (one input), or a list of such lists (a batch).
type predictInputs struct {
	batch bool
	items []sequence
}

// predictExpecting is PredictInput's visitor's expecting text.
const predictExpecting = "a string, a pair of strings [string, string] or a batch of mixed strings and pairs [[string], [string, string], ...]"

// predictInput is PredictInput's hand-written Deserialize: deserialize_any
// with a visitor that takes a string or a sequence.
func (d *deserializer) predictInput(p path) (predictInputs, *serdeError) {
	c, ok := d.whitespace()
	if !ok {
		return predictInputs{}, d.peekErr(eofValue).at(p)
	}
	var v predictInputs
	var err *serdeError
	switch {
	case c == 'n':
		d.eat()
		if err = d.parseIdent("ull"); err == nil {
			err = invalidType("null", predictExpecting)
		}
	case c == 't' || c == 'f':
		d.eat()
		word, unexp := "alse", "boolean `false`"
		if c == 't' {
			word, unexp = "rue", "boolean `true`"
		}
		if err = d.parseIdent(word); err == nil {
			err = invalidType(unexp, predictExpecting)
		}
	case c == '-' || isDigit(c):
		var n number
		if n, err = d.anyNumber(); err == nil {
			err = invalidType(n.unexpected(), predictExpecting)
		}
	case c == '"':
		d.eat()
		var s string
		s, err = d.parseStr()
		v.items = []sequence{{a: s}}
	case c == '[' || c == '{':
		if err := d.enter(); err != nil {
			return predictInputs{}, err.at(p)
		}
		d.eat()
		if c == '[' {
			v, err = d.predictSeq(p)
		} else {
			err = invalidType("map", predictExpecting)
		}
		d.leave()
		end := d.endSeq
		if c == '{' {
			end = d.endMap
		}
		if e := end(); err == nil {
			err = e
		}
	default:
		err = d.peekErr(expectedSomeValue)
	}
	return v, d.fixPosition(err).at(p)
}

// predictSeq is PredictInputVisitor's visit_seq: the first element decides
// between one input (a string, then maybe a second) and a batch (a list).
func (d *deserializer) predictSeq(p path) (predictInputs, *serdeError) {
	first := true
	more, err := d.hasNextElement(&first)
	if err != nil {
		return predictInputs{}, err.at(p)
	}
	if !more {
		return predictInputs{}, custom("invalid length 0, expected %s", predictExpecting)
	}
	head, err := d.content(p.index(0))
	if err != nil {
		return predictInputs{}, err
	}
	if head.kind == 's' {
		if more, err = d.hasNextElement(&first); err != nil || !more {
			return predictInputs{items: []sequence{{a: head.s}}}, err.at(p)
		}
		second, err := d.str(p.index(1))
		if err != nil {
			return predictInputs{}, err
		}
		if more, err = d.hasNextElement(&first); err != nil {
			return predictInputs{}, err.at(p)
		}
		if more {
			if _, err := d.str(p.index(2)); err != nil {
				return predictInputs{}, err
			}
			return predictInputs{}, custom("invalid length 3, expected %s", predictExpecting)
		}
		return predictInputs{items: []sequence{{a: head.s, b: second, isPair: true}}}, nil
	}
	texts, ok := head.strs()
	if !ok {
		return predictInputs{}, noVariant("Internal").at(p.index(0))
	}
	s, err := sequenceFromVec(texts)
	if err != nil {
		return predictInputs{}, err
	}
	out := predictInputs{batch: true, items: []sequence{s}}
	for i := 1; ; i++ {
		if more, err = d.hasNextElement(&first); err != nil {
			return predictInputs{}, err.at(p)
		}
		if !more {
			return out, nil
		}
		texts, err := d.strs(p.index(i))
		if err != nil {
			return predictInputs{}, err
		}
		s, err := sequenceFromVec(texts)
		if err != nil {
			return predictInputs{}, err
		}
		out.items = append(out.items, s)
	}
}

// sequenceFromVec takes one text or a pair.
func sequenceFromVec(texts []string) (sequence, *serdeError) {
	switch len(texts) {
	case 1:
		return sequence{a: texts[0]}, nil
	case 2:
		return sequence{a: texts[0], b: texts[1], isPair: true}, nil
	}
	return sequence{}, custom("invalid length %d, expected %s", len(texts), predictExpecting)
}

// tokenizeRequest is the body of /tokenize (TEI's TokenizeRequest).
type tokenizeRequest struct {
	Inputs           tokenizeInputs
	AddSpecialTokens bool
	PromptName       *string
}

// tokenizeInputs is TEI's TokenizeInput: a string or a list of strings.
type tokenizeInputs struct {
	batch bool
	items []string
}

func (r *tokenizeRequest) decode(d *deserializer) *serdeError {
	r.AddSpecialTokens = true
	return d.structure(nil, "TokenizeRequest", []field{
		required("inputs", func(d *deserializer, p path) *serdeError {
			c, err := d.content(p)
			if err != nil {
				return err
			}
			if c.kind == 's' {
				r.Inputs = tokenizeInputs{items: []string{c.s}}
				return nil
			}
			texts, ok := c.strs()
			if !ok {
				return noVariant("TokenizeInput")
			}
			r.Inputs = tokenizeInputs{batch: true, items: texts}
			return nil
		}),
		defaulted("add_special_tokens", boolInto(&r.AddSpecialTokens)),
		optional("prompt_name", optStringInto(&r.PromptName)),
	})
}

// decodeRequest is the body of /decode (TEI's DecodeRequest).
type decodeRequest struct {
	IDs               idsInput
	SkipSpecialTokens bool
}

// idsInput is TEI's InputIds: a list of ids (so [] is one empty list) or a
// list of such lists.
type idsInput struct {
	batch bool
	items [][]uint32
}

func (r *decodeRequest) decode(d *deserializer) *serdeError {
	r.SkipSpecialTokens = true
	return d.structure(nil, "DecodeRequest", []field{
		required("ids", func(d *deserializer, p path) *serdeError {
			c, err := d.content(p)
			if err != nil {
				return err
			}
			if ids, ok := c.ids(); ok {
				r.IDs = idsInput{items: [][]uint32{ids}}
				return nil
			}
			if c.kind == 'a' {
				batch := make([][]uint32, len(c.seq))
				for i, item := range c.seq {
					var ok bool
					if batch[i], ok = item.ids(); !ok {
						return noVariant("InputIds")
					}
				}
				r.IDs = idsInput{batch: true, items: batch}
				return nil
			}
			return noVariant("InputIds")
		}),
		defaulted("skip_special_tokens", boolInto(&r.SkipSpecialTokens)),
	})
}

// similarityRequest is the body of /similarity (TEI's SimilarityRequest).
type similarityRequest struct {
	SourceSentence string
	Sentences      []string
	// Parameters is nil when absent or null.
	Parameters *similarityParameters
}

// similarityParameters is TEI's SimilarityParameters.
type similarityParameters struct {
	Truncate            *bool
	TruncationDirection direction
	PromptName          *string
}

func (r *similarityRequest) decode(d *deserializer) *serdeError {
	return d.structure(nil, "SimilarityRequest", []field{
		required("inputs", func(d *deserializer, p path) *serdeError {
			return d.structure(p, "SimilarityInput", []field{
				required("source_sentence", stringInto(&r.SourceSentence)),
				required("sentences", stringsInto(&r.Sentences)),
			})
		}),
		optional("parameters", func(d *deserializer, p path) *serdeError {
			null, err := d.isNull(p)
			if err != nil || null {
				r.Parameters = nil
				return err
			}
			params := &similarityParameters{}
			r.Parameters = params
			return d.structure(p, "SimilarityParameters", []field{
				optional("truncate", optBoolInto(&params.Truncate)),
				defaulted("truncation_direction", directionInto(&params.TruncationDirection)),
				optional("prompt_name", optStringInto(&params.PromptName)),
			})
		}),
	})
}
