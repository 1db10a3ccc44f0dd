package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
)

// openAIRequest is the body of OpenAI's POST /v1/embeddings.
type openAIRequest struct {
	Input          jsontext.Value `json:"input"`
	Model          *string        `json:"model"`
	EncodingFormat optString      `json:"encoding_format"`
	Dimensions     *int           `json:"dimensions"`
	User           jsontext.Value `json:"user"` // accepted and ignored
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
	info := s.embedP.info()
	if err := s.checkModel(req.Model, true, embedModel, info, func(name string) string {
		return fmt.Sprintf("The model `%s` does not exist; this server serves %s", name, strings.Join(s.modelNames(embedModel, info), ", "))
	}); err != nil {
		return s.openAIError(c, err)
	}
	model := info.ModelID
	if req.Model != nil && *req.Model != "" {
		model = *req.Model // the name the caller used, as OpenAI answers
	}
	format := "float"
	if req.EncodingFormat.set {
		format = req.EncodingFormat.v
	}
	if format != "float" && format != "base64" {
		return s.openAIError(c, &requestError{status: 400, typ: "invalid_request_error", param: "encoding_format",
			msg: fmt.Sprintf("encoding_format must be \"float\" or \"base64\", got %q", format)})
	}
	if req.Dimensions != nil {
		if dim := int(s.embedP.dim.Load()); *req.Dimensions != dim {
			return s.openAIError(c, &requestError{status: 400, typ: "invalid_request_error", param: "dimensions",
				msg: fmt.Sprintf("dimensions must be %d, the dimension of %s: it was not trained for shorter vectors, and truncating them would silently degrade retrieval; got %d",
					dim, info.ModelID, *req.Dimensions)})
		}
	}
	inputs, err := parseInputs(req.Input, "input")
	if err != nil {
		return s.openAIError(c, err)
	}
	// TEI's own /v1/embeddings always normalizes and truncates as its
	// server is set; the same settings give the same cache entries as /embed.
	p := embedParams{kind: dense, normalize: true, truncate: info.AutoTruncate, direction: "Right"}
	items, cc, err := s.embed(c.Request().Context(), s.embedP, p, inputs, s.requestOpts(c.Request().Header, len(inputs)))
	if err != nil {
		return s.openAIError(c, err)
	}
	setXCache(c, cc)
	out, err := appendOpenAI(nil, items, model, format == "base64")
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
