package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// teiErrorBody is TEI's native error shape.
type teiErrorBody struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
}

// teiEmbedRequest is the body of TEI's /embed and /embed_sparse.
type teiEmbedRequest struct {
	Inputs              json.RawMessage `json:"inputs"`
	Normalize           *bool           `json:"normalize"`
	Truncate            *bool           `json:"truncate"`
	TruncationDirection *string         `json:"truncation_direction"`
	PromptName          *string         `json:"prompt_name"`
	Dimensions          *int            `json:"dimensions"`
}

// params resolves the request's settings against the upstream's defaults.
func (r *teiEmbedRequest) params(kind outputKind, info *tei.Info) (embedParams, error) {
	p := embedParams{kind: kind, normalize: true, truncate: info.AutoTruncate}
	if r.Normalize != nil {
		p.normalize = *r.Normalize
	}
	if r.Truncate != nil {
		p.truncate = *r.Truncate
	}
	var err error
	if p.direction, err = parseDirection(r.TruncationDirection); err != nil {
		return p, err
	}
	if r.PromptName != nil {
		p.promptName = *r.PromptName
	}
	if r.Dimensions != nil && kind == dense {
		if *r.Dimensions <= 0 {
			return p, &requestError{status: http.StatusUnprocessableEntity, typ: tei.TypeValidation,
				msg: "Input validation error: `dimensions` must be greater than 0", param: "dimensions"}
		}
		p.dims = *r.Dimensions
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
		p, err := req.params(kind, s.embedU.info.Load())
		if err != nil {
			return s.teiError(c, err)
		}
		items, err := s.embed(c.Request().Context(), s.embedU, p, inputs)
		if err != nil {
			return s.teiError(c, err)
		}
		return writeList(c, items)
	}
}

// teiRerankRequest is the body of TEI's /rerank.
type teiRerankRequest struct {
	Query               *string   `json:"query"`
	Texts               *[]string `json:"texts"`
	Truncate            *bool     `json:"truncate"`
	TruncationDirection *string   `json:"truncation_direction"`
	RawScores           bool      `json:"raw_scores"`
	ReturnText          bool      `json:"return_text"`
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
	dir, err := parseDirection(req.TruncationDirection)
	if err != nil {
		return s.teiError(c, err)
	}
	p := rerankParams{query: *req.Query, texts: *req.Texts, direction: dir, raw: req.RawScores, returnText: req.ReturnText,
		truncate: s.rankU.info.Load().AutoTruncate}
	if req.Truncate != nil {
		p.truncate = *req.Truncate
	}
	res, err := s.rerank(c.Request().Context(), s.rankU, p)
	if err != nil {
		return s.teiError(c, err)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, res.body)
}

// teiRoot serves POST / as TEI does: by the model's type.
func (s *Server) teiRoot(c echo.Context) error {
	switch s.embedU.info.Load().ModelType.Kind() {
	case tei.KindSparse:
		return s.teiEmbed(sparse)(c)
	case tei.KindReranker:
		return s.teiRerank(c)
	case tei.KindClassifier:
		return s.passThrough("/predict")(c)
	}
	return s.teiEmbed(dense)(c)
}

// passThrough forwards a request to the embedding TEI unchanged (within the
// breaker and retries) and returns its answer unchanged.
func (s *Server) passThrough(path string) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readJSON(c, s.cfg.BodyLimit)
		if err != nil {
			return s.teiError(c, err)
		}
		var res *tei.Response
		err = s.embedU.call(c.Request().Context(), path, 0, func(ctx context.Context) error {
			res, err = s.embedU.client.Do(ctx, http.MethodPost, path, body)
			return err
		})
		if err != nil {
			return s.teiError(c, err)
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, res.Body)
	}
}

// info serves the embedding TEI's /info unchanged, so TEI clients work.
func (s *Server) info(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.embedU.info.Load().Raw)
}

// teiError writes err in TEI's shapes. This is the one place errors become
// statuses for the TEI face.
func (s *Server) teiError(c echo.Context, err error) error {
	st, typ, msg, retry := s.classify(err)
	var re *requestError
	var te *tei.Error
	switch {
	case errors.As(err, &te):
		// TEI's own answer goes back unchanged.
		if retry > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(retry))
		}
		ct := te.ContentType
		if ct == "" {
			return c.NoContent(te.Status)
		}
		return c.Blob(te.Status, ct, te.Body)
	case errors.As(err, &re) && re.typ == "":
		return c.String(re.status, re.msg)
	case errors.Is(err, errUnauthorized):
		return c.NoContent(http.StatusUnauthorized) // as TEI answers
	}
	if retry > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retry))
	}
	// json.Marshal, unlike echo's encoder, adds no newline: TEI's bodies end
	// with the closing brace.
	b, _ := json.Marshal(teiErrorBody{Error: msg, ErrorType: typ})
	return c.Blob(st, echo.MIMEApplicationJSON, b)
}

// classify maps an error to a status, TEI error_type, message and
// Retry-After seconds (0: none). Every face builds on it.
func (s *Server) classify(err error) (status int, typ, msg string, retryAfter int) {
	var re *requestError
	var te *tei.Error
	var tr *tei.TransportError
	switch {
	case errors.As(err, &re):
		return re.status, re.typ, re.msg, 0
	case errors.As(err, &te):
		ra := 0
		if te.Status == http.StatusTooManyRequests || te.Status == http.StatusServiceUnavailable {
			ra = max(int(te.RetryAfter.Seconds()), 1)
		}
		return te.Status, te.Type, te.Message, ra
	case isBreakerOpen(err):
		return http.StatusServiceUnavailable, tei.TypeUnhealthy, "TEI is failing; the circuit breaker is open, retry later",
			max(int(s.cfg.BreakerOpenFor.Seconds()), 1)
	case errors.Is(err, errOverloaded):
		return http.StatusTooManyRequests, tei.TypeOverloaded, "Model is overloaded", 1
	case errors.Is(err, context.Canceled):
		return 499, tei.TypeBackend, "request canceled", 0
	case errors.As(err, &tr):
		switch tr.Kind {
		case tei.KindTimeout:
			return http.StatusGatewayTimeout, tei.TypeBackend, "TEI did not answer within the request deadline", 0
		case tei.KindDial:
			return http.StatusServiceUnavailable, tei.TypeUnhealthy, "TEI is unreachable: " + tr.Err.Error(), 1
		}
		return http.StatusBadGateway, tei.TypeBackend, "TEI failed: " + tr.Err.Error(), 0
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, tei.TypeBackend, "TEI did not answer within the request deadline", 0
	}
	s.log.Error("unexpected error", "err", err)
	return http.StatusInternalServerError, tei.TypeBackend, "internal error", 0
}
