package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"
)

// openAIRequest is the body of OpenAI's POST /v1/embeddings.
type openAIRequest struct {
	Input          json.RawMessage `json:"input"`
	Model          *string         `json:"model"`
	EncodingFormat *string         `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
	User           any             `json:"user"` // accepted and ignored
}

// openAIErrorBody is OpenAI's nested error shape.
type openAIErrorBody struct {
	Error openAIError `json:"error"`
}

type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// openAIEmbeddings serves /v1/embeddings and /embeddings through the shared
// cache. Cached items are written from TEI's bytes (float) or from their
// base64 form, computed once per entry.
func (s *Server) openAIEmbeddings(c echo.Context) error {
	body, err := readJSON(c, s.cfg.BodyLimit)
	if err != nil {
		return s.openAIError(c, err)
	}
	var req openAIRequest
	if err := decodeBody(body, &req); err != nil {
		return s.openAIError(c, err)
	}
	if req.Model == nil || *req.Model == "" {
		return s.openAIError(c, &requestError{status: 400, typ: "invalid_request_error", param: "model",
			msg: "you must provide a model parameter"})
	}
	if !s.servesModel(*req.Model, s.embedU) {
		return s.openAIError(c, &requestError{status: 404, typ: "model_not_found", param: "model",
			msg: fmt.Sprintf("The model `%s` does not exist; this server serves %s", *req.Model, s.embedU.info.Load().ModelID)})
	}
	format := "float"
	if req.EncodingFormat != nil {
		format = *req.EncodingFormat
	}
	if format != "float" && format != "base64" {
		return s.openAIError(c, &requestError{status: 400, typ: "invalid_request_error", param: "encoding_format",
			msg: fmt.Sprintf("encoding_format must be \"float\" or \"base64\", got %q", format)})
	}
	if req.Dimensions != nil {
		if dim := int(s.embedU.dim.Load()); *req.Dimensions != dim {
			return s.openAIError(c, &requestError{status: 400, typ: "invalid_request_error", param: "dimensions",
				msg: fmt.Sprintf("dimensions must be %d, the dimension of %s: it was not trained for shorter vectors, and truncating them would silently degrade retrieval; got %d",
					dim, s.embedU.info.Load().ModelID, *req.Dimensions)})
		}
	}
	inputs, err := parseInputs(req.Input, "input")
	if err != nil {
		return s.openAIError(c, err)
	}
	info := s.embedU.info.Load()
	// TEI's own /v1/embeddings always normalizes and truncates as its
	// server is set; the same settings give the same cache entries as /embed.
	p := embedParams{kind: dense, normalize: true, truncate: info.AutoTruncate, direction: "Right"}
	items, err := s.embed(c.Request().Context(), s.embedU, p, inputs)
	if err != nil {
		return s.openAIError(c, err)
	}
	out, err := appendOpenAI(nil, items, *req.Model, format == "base64")
	if err != nil {
		return s.openAIError(c, err)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, out)
}

// appendOpenAI writes the OpenAI answer for items, in input order.
func appendOpenAI(b []byte, items []*entry, model string, b64 bool) ([]byte, error) {
	n := 64 + len(model)
	for _, e := range items {
		n += 48 + len(e.json)
	}
	b = slices.Grow(b, n)
	b = append(b, `{"object":"list","data":[`...)
	tokens := 0
	for i, e := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","embedding":`...)
		if b64 {
			s, err := e.base64()
			if err != nil {
				return nil, err
			}
			b = append(b, '"')
			b = append(b, s...)
			b = append(b, '"')
		} else {
			b = append(b, e.json...)
		}
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '}')
		tokens += e.tokens
	}
	b = append(b, `],"model":`...)
	m, _ := json.Marshal(model)
	b = append(b, m...)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	return append(b, `}}`...), nil
}

// servesModel reports whether name is the upstream's model: its id, its
// served name, or a configured alias.
func (s *Server) servesModel(name string, u *upstream) bool {
	info := u.info.Load()
	if name == info.ModelID || (info.ServedModelName != nil && name == *info.ServedModelName) {
		return true
	}
	return slices.Contains(s.cfg.ModelAliases, name)
}

// models serves GET /v1/models: the served embedding and rerank models.
func (s *Server) models(c echo.Context) error {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, u := range []*upstream{s.embedU, s.rankU} {
		id := u.info.Load().ModelID
		if !slices.ContainsFunc(list.Data, func(m model) bool { return m.ID == id }) {
			list.Data = append(list.Data, model{ID: id, Object: "model", OwnedBy: "tei-sidecar"})
		}
	}
	return c.JSON(http.StatusOK, list)
}

// openAIError writes err in OpenAI's shape, with statuses the OpenAI SDKs
// treat right: 429 and 5xx are retried; 400, 401 and 404 are not.
func (s *Server) openAIError(c echo.Context, err error) error {
	status, typ, msg, retry := s.classify(err)
	var param, code *string
	var re *requestError
	if errors.As(err, &re) && re.param != "" {
		param = &re.param
	}
	errType := "invalid_request_error"
	setCode := func(v string) { code = &v }
	switch {
	case status == http.StatusUnauthorized:
		setCode("invalid_api_key")
	case status == http.StatusNotFound:
		setCode("model_not_found")
	case status == http.StatusTooManyRequests:
		errType = "rate_limit_error"
		setCode("rate_limit_exceeded")
	case status == http.StatusFailedDependency || status >= 500:
		// A failing backend must look like a server error so the SDKs retry.
		errType = "server_error"
		if status < 500 {
			status = http.StatusBadGateway
		}
		setCode(typ)
	case status == 499:
		return nil
	default:
		// TEI's 413, 415 and 422 are the caller's: OpenAI says 400.
		status = http.StatusBadRequest
		if typ != "" && typ != "invalid_request_error" {
			setCode(typ)
		}
	}
	if retry > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retry))
	}
	return c.JSON(status, openAIErrorBody{Error: openAIError{Message: msg, Type: errType, Param: param, Code: code}})
}
