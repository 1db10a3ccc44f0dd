package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// teiEmbedRequest is the body of TEI's /embed and /embed_sparse. Fields
// with a default in TEI refuse null (optBool, optString); TEI's optional
// ones take it as absent.
type teiEmbedRequest struct {
	Inputs              jsontext.Value `json:"inputs"`
	Normalize           optBool        `json:"normalize"`
	Truncate            *bool          `json:"truncate"`
	TruncationDirection optString      `json:"truncation_direction"`
	PromptName          *string        `json:"prompt_name"`
	Dimensions          *uint32        `json:"dimensions"`
}

// params resolves the request's settings against the pool's defaults.
func (r *teiEmbedRequest) params(kind outputKind, info *tei.Info) (embedParams, error) {
	p := embedParams{kind: kind, normalize: r.Normalize.or(true), truncate: info.AutoTruncate}
	if r.Truncate != nil {
		p.truncate = *r.Truncate
	}
	var err error
	if p.direction, err = parseDirection(r.TruncationDirection.ptr()); err != nil {
		return p, err
	}
	if r.PromptName != nil {
		p.promptName = *r.PromptName
	}
	if r.Dimensions != nil && kind == dense {
		if *r.Dimensions == 0 {
			return p, &requestError{status: http.StatusUnprocessableEntity, typ: tei.TypeValidation,
				msg: "Input validation error: `dimensions` should be positive", param: "dimensions"}
		}
		p.dims = int(*r.Dimensions)
	}
	return p, nil
}

// teiEmbed serves /embed (dense) and /embed_sparse (sparse) with TEI's shapes.
func (s *Server) teiEmbed(kind outputKind) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readJSON(c, s.cfg.BodyLimit)
		if err != nil {
			return s.teiError(c, err)
		}
		var req teiEmbedRequest
		if err := decodeBody(body, &req); err != nil {
			return s.teiError(c, err)
		}
		inputs, err := parseInputs(req.Inputs, "inputs")
		if err != nil {
			return s.teiError(c, err)
		}
		p, err := req.params(kind, s.embedP.info())
		if err != nil {
			return s.teiError(c, err)
		}
		ro := s.requestOpts(c.Request().Header, len(inputs))
		items, cc, err := s.embed(c.Request().Context(), s.embedP, p, inputs, ro)
		if err != nil {
			return s.teiError(c, err)
		}
		setXCache(c, cc)
		setWorkHeaders(c, cc)
		return writeList(c, items)
	}
}

// teiRerankRequest is the body of TEI's /rerank.
type teiRerankRequest struct {
	Query               *string   `json:"query"`
	Texts               *[]string `json:"texts"`
	Truncate            *bool     `json:"truncate"`
	TruncationDirection optString `json:"truncation_direction"`
	RawScores           optBool   `json:"raw_scores"`
	ReturnText          optBool   `json:"return_text"`
}

// teiRerank serves /rerank with TEI's shape: results sorted by score.
func (s *Server) teiRerank(c echo.Context) error {
	body, err := readJSON(c, s.cfg.BodyLimit)
	if err != nil {
		return s.teiError(c, err)
	}
	var req teiRerankRequest
	if err := decodeBody(body, &req); err != nil {
		return s.teiError(c, err)
	}
	switch {
	case req.Query == nil:
		return s.teiError(c, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `query`"))
	case req.Texts == nil:
		return s.teiError(c, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `texts`"))
	}
	dir, err := parseDirection(req.TruncationDirection.ptr())
	if err != nil {
		return s.teiError(c, err)
	}
	p := rerankParams{query: *req.Query, texts: *req.Texts, direction: dir, raw: req.RawScores.or(false),
		returnText: req.ReturnText.or(false), truncate: s.rankP.info().AutoTruncate}
	if req.Truncate != nil {
		p.truncate = *req.Truncate
	}
	res, cc, err := s.rerank(c.Request().Context(), s.rankP, p, s.requestOpts(c.Request().Header, 1))
	if err != nil {
		return s.teiError(c, err)
	}
	setXCache(c, cc)
	setTEIHeaders(c, cc.resps)
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, res.body)
}

// teiRoot serves POST / as TEI does: by the model's type.
func (s *Server) teiRoot(c echo.Context) error {
	switch s.embedP.info().ModelType.Kind() {
	case tei.KindSparse:
		return s.teiEmbed(sparse)(c)
	case tei.KindReranker:
		return s.teiRerank(c)
	case tei.KindClassifier:
		return s.teiPredict(c)
	}
	return s.teiEmbed(dense)(c)
}

// passThrough forwards a request to the embedding pool unchanged (through
// the scheduler, with its retries) and returns TEI's answer and its
// headers unchanged. check decodes the body as strictly as TEI would, and
// refuses what TEI would refuse for the pool's model, so that nothing TEI
// refuses is sent; it counts the inputs (the permits the call needs).
func (s *Server) passThrough(path string, check func(body []byte, info *tei.Info) (int, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readJSON(c, s.cfg.BodyLimit)
		if err != nil {
			return s.teiError(c, err)
		}
		n, err := check(body, s.embedP.info())
		if err != nil {
			return s.teiError(c, err)
		}
		prio := s.priorityOf(c.Request().Header.Get("X-Priority"), n)
		res, err := s.pass(c.Request().Context(), s.embedP, http.MethodPost, path, body, n, prio)
		if err != nil {
			return s.teiError(c, err)
		}
		setTEIHeaders(c, []*tei.Response{res})
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, res.Body)
	}
}

// setWorkHeaders passes on TEI's headers for an embedding answer: the
// times of the calls that computed its misses (the longest), and this
// request's own share of their tokens and characters, since a call may
// have carried other requests' inputs too. None when every input came
// from a cache.
func setWorkHeaders(c echo.Context, cc cacheCount) {
	if len(cc.resps) == 0 {
		return
	}
	setTEIHeaders(c, cc.resps)
	h := c.Response().Header()
	h.Set("x-compute-tokens", strconv.Itoa(cc.tokens))
	h.Set("x-compute-characters", strconv.Itoa(cc.chars))
}

// teiHeaders are TEI's response headers about the work behind an answer.
var teiHeaders = []string{"x-compute-type", "x-compute-time", "x-compute-tokens", "x-compute-characters",
	"x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"}

// setTEIHeaders passes on TEI's headers for an answer made by the calls
// resps: one call's unchanged; several calls' combined, tokens and
// characters summed and each time the longest (the calls run side by side
// and the answer waits for the last), x-compute-type the first call's; no
// call (the answer came from the cache) none at all, since no work was
// done.
func setTEIHeaders(c echo.Context, resps []*tei.Response) {
	h := c.Response().Header()
	if len(resps) == 1 {
		for _, name := range teiHeaders {
			if v := resps[0].Header.Get(name); v != "" {
				h.Set(name, v)
			}
		}
		return
	}
	for _, name := range teiHeaders {
		sum := strings.HasSuffix(name, "-tokens") || strings.HasSuffix(name, "-characters")
		var best string
		var total, longest float64
		seen := false
		for _, r := range resps {
			v := r.Header.Get(name)
			f, err := strconv.ParseFloat(v, 64)
			switch {
			case v == "":
				continue
			case name == "x-compute-type":
				if best == "" {
					best = v
				}
			case err != nil:
				continue
			case sum:
				total += f
			case !seen || f > longest:
				longest, best = f, v
			}
			seen = true
		}
		switch {
		case !seen:
		case sum:
			h.Set(name, strconv.FormatFloat(total, 'f', -1, 64))
		default:
			h.Set(name, best)
		}
	}
}

// tokenizeRequest is the body of TEI's /tokenize.
type tokenizeRequest struct {
	Inputs           jsontext.Value `json:"inputs"`
	AddSpecialTokens optBool        `json:"add_special_tokens"`
	PromptName       *string        `json:"prompt_name"`
}

// checkTokenize validates a /tokenize body: inputs is a string or a list of
// strings, at most max_client_batch_size of them.
func checkTokenize(body []byte, info *tei.Info) (int, error) {
	var req tokenizeRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, err
	}
	if isEmptyList(req.Inputs) {
		return 0, errEmptyBatch
	}
	in, err := parseInputs(req.Inputs, "inputs")
	if err != nil {
		return 0, err
	}
	if slices.ContainsFunc(in, func(x tei.Input) bool { return x.IDs != nil }) {
		return 0, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: inputs: data did not match any variant of untagged enum TokenizeInput")
	}
	return len(in), checkBatchSize(len(in), info)
}

// isEmptyList reports whether raw is the JSON list [].
func isEmptyList(raw jsontext.Value) bool {
	var l []jsontext.Value
	return len(raw) > 0 && jsonUnmarshal(raw, &l) == nil && l != nil && len(l) == 0
}

// checkBatchSize refuses more inputs than TEI takes in one request, with
// TEI's message, for the routes the sidecar passes through whole.
func checkBatchSize(n int, info *tei.Info) error {
	if limit := info.MaxClientBatchSize; limit > 0 && n > limit {
		return &requestError{status: http.StatusUnprocessableEntity, typ: tei.TypeValidation,
			msg: fmt.Sprintf("batch size %d > maximum allowed batch size %d", n, limit)}
	}
	return nil
}

// embedAllRequest is the body of TEI's /embed_all.
type embedAllRequest struct {
	Inputs              jsontext.Value `json:"inputs"`
	Truncate            *bool          `json:"truncate"`
	TruncationDirection optString      `json:"truncation_direction"`
	PromptName          *string        `json:"prompt_name"`
}

// checkEmbedAll validates an /embed_all body and answers, as TEI would,
// a model that has no per-token vectors. /embed_all is passed through,
// uncached: its answer is a vector per token, too large for the cache.
func checkEmbedAll(body []byte, info *tei.Info) (int, error) {
	var req embedAllRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, err
	}
	if _, err := parseDirection(req.TruncationDirection.ptr()); err != nil {
		return 0, err
	}
	in, err := parseInputs(req.Inputs, "inputs")
	if err != nil {
		return 0, err
	}
	if err := checkBatchSize(len(in), info); err != nil {
		return 0, err
	}
	switch info.ModelType.Kind() {
	case tei.KindSparse:
		return 0, wrongModel("Backend error: `embed_all` is not available for SPLADE models")
	case tei.KindEmbedding:
		return len(in), nil
	}
	return 0, wrongModel("Backend error: Model is not an embedding model")
}

// decodeRequest is the body of TEI's /decode.
type decodeRequest struct {
	IDs               jsontext.Value `json:"ids"`
	SkipSpecialTokens optBool        `json:"skip_special_tokens"`
}

// errEmptyIDs is TEI's refusal of an empty list of ids to decode.
var errEmptyIDs = &requestError{status: http.StatusBadRequest, typ: tei.TypeEmpty, msg: "Input validation error: `input_ids` cannot be empty"}

// checkDecode validates a /decode body: ids is a list of token ids (one
// input) or a list of such lists (a batch), none empty. /decode is passed
// through: it runs only the tokenizer.
func checkDecode(body []byte, info *tei.Info) (int, error) {
	var req decodeRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, err
	}
	if len(req.IDs) == 0 {
		return 0, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `ids`")
	}
	noVariant := plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: ids: data did not match any variant of untagged enum InputIds")
	var elems []jsontext.Value
	if jsonUnmarshal(req.IDs, &elems) != nil {
		return 0, noVariant
	}
	if len(elems) == 0 {
		return 0, errEmptyIDs
	}
	if first := bytes.TrimSpace(elems[0]); first[0] != '[' {
		if _, err := parseIDs(elems, "ids"); err != nil {
			return 0, noVariant
		}
		return 1, nil
	}
	if err := checkBatchSize(len(elems), info); err != nil {
		return 0, err
	}
	empty := false
	for _, el := range elems {
		var nums []jsontext.Value
		if jsonUnmarshal(el, &nums) != nil {
			return 0, noVariant
		}
		if _, err := parseIDs(nums, "ids"); err != nil {
			return 0, noVariant
		}
		empty = empty || len(nums) == 0
	}
	if empty {
		return 0, errEmptyIDs
	}
	return len(elems), nil
}

// pass sends one call of n inputs through p's scheduler as the client
// wrote it.
func (s *Server) pass(ctx context.Context, p *pool, method, path string, body []byte, n int, prio priority) (*tei.Response, error) {
	f := &flight{prio: prio, origin: originOf(ctx), pass: &passWork{method: method, path: path, body: body, n: n}}
	ri := infoOf(ctx)
	ri.work(n, prio)
	w := newWaiter(1)
	if err := s.wait(ctx, p, w, []*flight{f}); err != nil {
		return nil, err
	}
	if f.err != nil {
		return nil, f.err
	}
	return f.resp, nil
}

// setXCache tells the caller where the answer came from: X-Cache HIT,
// MISS or PARTIAL, on every face.
func setXCache(c echo.Context, cc cacheCount) { c.Response().Header().Set("X-Cache", cc.String()) }

// info serves the embedding TEI's /info unchanged, so TEI clients work.
func (s *Server) info(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.embedP.info().Raw)
}
