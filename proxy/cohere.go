package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
)

// cohereRequest is the body of Cohere's rerank (v1 and v2) and Jina's,
// which share it. Documents are strings, or in v1 and Jina objects of
// string fields, ranked on rank_fields (default text) and answered whole.
// max_chunks_per_doc (v1), max_tokens_per_doc and priority (v2) are
// accepted and ignored: TEI truncates each pair at the model's
// max_input_length.
type cohereRequest struct {
	Model           *string          `json:"model"`
	Query           *string          `json:"query"`
	Documents       []jsontext.Value `json:"documents"`
	TopN            *int             `json:"top_n"`
	RankFields      []string         `json:"rank_fields"`
	ReturnDocuments *bool            `json:"return_documents"`
}

type cohereResult struct {
	Index          int     `json:"index"`
	RelevanceScore float64 `json:"relevance_score"`
	// Document is the document as the caller sent it (an object with all
	// its fields), or {"text": ...} for a string.
	Document jsontext.Value `json:"document,omitempty"`
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

// cohereMeta is Cohere's meta. BilledUnits' fields are those of the call:
// search units for a rerank, input tokens for an embed.
type cohereMeta struct {
	APIVersion struct {
		Version string `json:"version"`
	} `json:"api_version"`
	BilledUnits cohereBilledUnits `json:"billed_units"`
}

type cohereBilledUnits struct {
	InputTokens *int `json:"input_tokens,omitempty"`
	SearchUnits *int `json:"search_units,omitempty"`
}

type cohereUsage struct {
	TotalTokens int `json:"total_tokens"`
}

// cohereBad is a request Cohere would refuse: 400 {"message"}.
func cohereBad(param, format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, msg: fmt.Sprintf(format, args...)}
}

// cohereNotFound words an unknown model as Cohere does.
func cohereNotFound(served []string) func(string) string {
	return func(name string) string {
		return fmt.Sprintf("model '%s' not found, make sure the correct model ID was used; this server serves %s", name, strings.Join(served, ", "))
	}
}

// textDocument is a string document as Cohere answers it.
func textDocument(text string) jsontext.Value {
	return append(appendJSONString([]byte(`{"text":`), text), '}')
}

// rankText is the text a document is ranked on: a string as it is; an
// object's rank field alone, or with several rank fields each as a
// "field: value" line in rank_fields order, the YAML-like form Cohere
// recommends for structured documents.
func rankText(doc jsontext.Value, fields []string, i int) (text string, whole jsontext.Value, err error) {
	var str string
	if jsonUnmarshal(doc, &str) == nil {
		return str, textDocument(str), nil
	}
	var obj map[string]jsontext.Value
	if jsonUnmarshal(doc, &obj) != nil {
		return "", nil, cohereBad("documents", `documents[%d] must be a string or an object of string fields such as {"text": ...}`, i)
	}
	if len(fields) == 0 {
		fields = []string{"text"}
	}
	var b strings.Builder
	for j, f := range fields {
		raw, ok := obj[f]
		var v string
		if !ok || jsonUnmarshal(raw, &v) != nil {
			return "", nil, cohereBad("documents", "documents[%d] has no string field %q (a rank field)", i, f)
		}
		if len(fields) == 1 {
			return v, doc, nil
		}
		if j > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(f + ": " + v)
	}
	return b.String(), doc, nil
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
		if req.Query == nil {
			return s.cohereError(c, cohereBad("query", "query is required"))
		}
		info := s.rankP.info()
		// Cohere's v2 requires a model; v1 and Jina default to the served one.
		if err := s.checkModel(req.Model, version == "2", rankModel, info, cohereNotFound(s.modelNames(rankModel, info))); err != nil {
			return s.cohereError(c, err)
		}
		texts := make([]string, len(req.Documents))
		docs := make([]jsontext.Value, len(req.Documents))
		for i, d := range req.Documents {
			if version == "2" {
				if jsonUnmarshal(d, &texts[i]) != nil {
					return s.cohereError(c, cohereBad("documents", "documents[%d] must be a string (v2 takes strings; format structured data as YAML)", i))
				}
				docs[i] = textDocument(texts[i])
				continue
			}
			if texts[i], docs[i], err = rankText(d, req.RankFields, i); err != nil {
				return s.cohereError(c, err)
			}
		}
		if req.TopN != nil && *req.TopN < 1 {
			return s.cohereError(c, cohereBad("top_n", "top_n must be at least 1, got %d", *req.TopN))
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
		model := info.ModelID
		if req.Model != nil && *req.Model != "" {
			model = *req.Model
		}
		units := 1
		out := cohereResponse{ID: newID(), Results: make([]cohereResult, n), Model: model}
		out.Meta.APIVersion.Version = version
		out.Meta.BilledUnits.SearchUnits = &units
		// TEI's own count of the tokens it ran, kept with the cached
		// answer; 0 when TEI gave none.
		out.Usage.TotalTokens = max(res.tokens, 0)
		for i, r := range res.ranks[:n] {
			out.Results[i] = cohereResult{Index: r.Index, RelevanceScore: r.Score}
			if withDocs {
				out.Results[i].Document = docs[r.Index]
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
