package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
)

// cohereRequest is the body of Cohere's rerank (v1 and v2) and Jina's,
// which share it: documents are strings or {"text": ...} objects.
type cohereRequest struct {
	Model           *string          `json:"model"`
	Query           *string          `json:"query"`
	Documents       []jsontext.Value `json:"documents"`
	TopN            *int             `json:"top_n"`
	ReturnDocuments *bool            `json:"return_documents"`
}

type cohereResult struct {
	Index          int             `json:"index"`
	RelevanceScore float64         `json:"relevance_score"`
	Document       *cohereDocument `json:"document,omitempty"`
}

type cohereDocument struct {
	Text string `json:"text"`
}

// cohereResponse carries Cohere's fields and Jina's (model, usage), so
// either client reads it.
type cohereResponse struct {
	ID      string         `json:"id"`
	Results []cohereResult `json:"results"`
	Meta    cohereMeta     `json:"meta"`
	Model   string         `json:"model"`
	Usage   cohereUsage    `json:"usage"`
}

type cohereMeta struct {
	APIVersion struct {
		Version string `json:"version"`
	} `json:"api_version"`
	BilledUnits struct {
		SearchUnits int `json:"search_units"`
	} `json:"billed_units"`
}

type cohereUsage struct {
	TotalTokens int `json:"total_tokens"`
}

// cohereRerank serves POST /v1/rerank (Cohere v1 and Jina) and /v2/rerank
// (Cohere v2): TEI's scores, sorted by relevance, cut to top_n.
func (s *Server) cohereRerank(version string) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readJSON(c, s.cfg.BodyLimit)
		if err != nil {
			return s.cohereError(c, err)
		}
		var req cohereRequest
		if err := decodeBody(body, &req); err != nil {
			return s.cohereError(c, err)
		}
		bad := func(param, format string, args ...any) error {
			return s.cohereError(c, &requestError{status: 400, typ: "invalid_request_error", param: param, msg: fmt.Sprintf(format, args...)})
		}
		if req.Query == nil {
			return bad("query", "query is required")
		}
		info := s.rankP.info()
		if req.Model != nil && *req.Model != "" && !s.servesModel(*req.Model, info) {
			return s.cohereError(c, &requestError{status: 404, typ: "model_not_found", param: "model",
				msg: fmt.Sprintf("model %q not found; this server reranks with %s", *req.Model, info.ModelID)})
		}
		texts := make([]string, len(req.Documents))
		for i, d := range req.Documents {
			var str string
			var obj struct {
				Text *string `json:"text"`
			}
			switch {
			case jsonUnmarshal(d, &str) == nil:
				texts[i] = str
			case version == "1" && jsonUnmarshal(d, &obj) == nil && obj.Text != nil:
				texts[i] = *obj.Text
			default:
				return bad("documents", "documents[%d] must be a string%s", i, map[bool]string{true: ` or {"text": ...}`}[version == "1"])
			}
		}
		if req.TopN != nil && *req.TopN < 1 {
			return bad("top_n", "top_n must be at least 1, got %d", *req.TopN)
		}
		res, cc, err := s.rerank(c.Request().Context(), s.rankP, rerankParams{query: *req.Query, texts: texts,
			truncate: info.AutoTruncate, direction: "Right"}, s.requestOpts(c.Request().Header, 1))
		if err != nil {
			return s.cohereError(c, err)
		}
		setXCache(c, cc)
		n := len(res.ranks)
		if req.TopN != nil {
			n = min(n, *req.TopN)
		}
		withDocs := req.ReturnDocuments != nil && *req.ReturnDocuments
		out := cohereResponse{ID: newID(), Results: make([]cohereResult, n), Model: info.ModelID}
		out.Meta.APIVersion.Version = version
		out.Meta.BilledUnits.SearchUnits = 1
		for i, r := range res.ranks[:n] {
			out.Results[i] = cohereResult{Index: r.Index, RelevanceScore: r.Score}
			if withDocs {
				out.Results[i].Document = &cohereDocument{Text: texts[r.Index]}
			}
		}
		return writeJSON(c, http.StatusOK, out)
	}
}

// newID returns a random request id, as Cohere's answers carry.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
