package proxy

import (
	"context"
	"net/http"
	"slices"

	"github.com/go-json-experiment/json"
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
		return s.passThrough("/predict", checkPredict)(c)
	}
	return s.teiEmbed(dense)(c)
}

// passThrough forwards a request to the embedding pool unchanged (through
// the scheduler, with its retries) and returns TEI's answer unchanged.
// check decodes the body as strictly as TEI would, so that nothing TEI
// refuses is sent, and counts its inputs (the permits the call needs).
func (s *Server) passThrough(path string, check func([]byte) (int, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readJSON(c, s.cfg.BodyLimit)
		if err != nil {
			return s.teiError(c, err)
		}
		n, err := check(body)
		if err != nil {
			return s.teiError(c, err)
		}
		prio := s.priorityOf(c.Request().Header.Get("X-Priority"), n)
		res, err := s.pass(c.Request().Context(), s.embedP, http.MethodPost, path, body, n, prio)
		if err != nil {
			return s.teiError(c, err)
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, res.Body)
	}
}

// tokenizeRequest is the body of TEI's /tokenize.
type tokenizeRequest struct {
	Inputs           jsontext.Value `json:"inputs"`
	AddSpecialTokens optBool        `json:"add_special_tokens"`
	PromptName       *string        `json:"prompt_name"`
}

// checkTokenize validates a /tokenize body: inputs is a string or a list of
// strings.
func checkTokenize(body []byte) (int, error) {
	var req tokenizeRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, err
	}
	in, err := parseInputs(req.Inputs, "inputs")
	if err != nil {
		return 0, err
	}
	if slices.ContainsFunc(in, func(x tei.Input) bool { return x.IDs != nil }) {
		return 0, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: inputs: data did not match any variant of untagged enum TokenizeInput")
	}
	return len(in), nil
}

// checkPredict validates a /predict body just enough to count its inputs;
// TEI answers the rest.
func checkPredict(body []byte) (int, error) {
	var req struct {
		Inputs    jsontext.Value `json:"inputs"`
		RawScores optBool        `json:"raw_scores"`
	}
	if err := decodeBody(body, &req); err != nil {
		return 0, err
	}
	if len(req.Inputs) == 0 {
		return 0, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `inputs`")
	}
	var batch [][]string
	if json.Unmarshal(req.Inputs, &batch) == nil {
		return max(len(batch), 1), nil
	}
	return 1, nil
}

// pass sends one call of n inputs through p's scheduler as the client
// wrote it.
func (s *Server) pass(ctx context.Context, p *pool, method, path string, body []byte, n int, prio priority) (*tei.Response, error) {
	f := &flight{prio: prio, origin: originOf(ctx), pass: &passWork{method: method, path: path, body: body, n: n}}
	ri := infoOf(ctx)
	ri.inputs += n
	ri.prio = prio.String()
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
