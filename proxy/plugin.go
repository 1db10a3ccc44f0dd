package proxy

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// The retrieval plugin's own calls, so that a thin client replaces its
// in-process models. Vectors are dense, normalized, the model's full
// dimension, with no prompt: what the plugin's fork computes.

// pluginParams are the embedding settings of the plugin's calls; they
// match /embed's defaults, so every face shares the cache.
func (s *Server) pluginParams() embedParams {
	return embedParams{kind: dense, normalize: true, truncate: s.embedP.info().AutoTruncate, direction: "Right"}
}

// pluginEmbedQuery serves POST /plugin/embed_query {"text"} → {"embedding"}.
func (s *Server) pluginEmbedQuery(c echo.Context) error {
	body, err := readJSON(c, s.cfg.BodyLimit)
	if err != nil {
		return s.pluginError(c, err)
	}
	var req struct {
		Text *string `json:"text"`
	}
	if err := decodeBody(body, &req); err != nil {
		return s.pluginError(c, err)
	}
	if req.Text == nil {
		return s.pluginError(c, &requestError{status: 422, typ: "missing", param: "text", msg: "field required: text"})
	}
	if *req.Text == "" {
		return s.pluginError(c, errEmptyInputs)
	}
	items, cc, err := s.embed(c.Request().Context(), s.embedP, s.pluginParams(), []tei.Input{{Text: *req.Text}}, s.requestOpts(c.Request().Header, 1))
	if err != nil {
		return s.pluginError(c, err)
	}
	setXCache(c, cc)
	b := make([]byte, 0, len(items[0].json)+16)
	b = append(b, `{"embedding":`...)
	b = append(b, items[0].json...)
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, append(b, '}'))
}

// pluginEmbedDocuments serves POST /plugin/embed_documents {"texts"} →
// {"embeddings"}. The proxy splits batches itself, so the plugin's
// EMBEDDING_BATCH slicing is not needed.
func (s *Server) pluginEmbedDocuments(c echo.Context) error {
	body, err := readJSON(c, s.cfg.BodyLimit)
	if err != nil {
		return s.pluginError(c, err)
	}
	var req struct {
		Texts *[]string `json:"texts"`
	}
	if err := decodeBody(body, &req); err != nil {
		return s.pluginError(c, err)
	}
	if req.Texts == nil {
		return s.pluginError(c, &requestError{status: 422, typ: "missing", param: "texts", msg: "field required: texts"})
	}
	var items []*entry
	if len(*req.Texts) > 0 {
		if slices.Contains(*req.Texts, "") {
			return s.pluginError(c, errEmptyInputs)
		}
		// Documents are ingest, however few: bulk unless X-Priority raises them.
		ro := s.requestOpts(c.Request().Header, s.cfg.PriorityInteractiveMaxInputs+1)
		var cc cacheCount
		items, cc, err = s.embed(c.Request().Context(), s.embedP, s.pluginParams(), tei.Texts(*req.Texts...), ro)
		if err != nil {
			return s.pluginError(c, err)
		}
		setXCache(c, cc)
	}
	b := make([]byte, 0, listSize(items)+16)
	b = append(b, `{"embeddings":[`...)
	for i, e := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.json...)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, append(b, "]}"...))
}

// pluginRerankResponse is the answer of /plugin/rerank.
type pluginRerankResponse struct {
	// Scores are the first K passages' scores, in input order; empty when
	// reranking is off.
	Scores []float64 `json:"scores"`
	// Order lists the indices kept, best first, at most final_n.
	Order []int `json:"order"`
	// Reranked is false when RERANK_ENABLE=false: Order is then the first
	// final_n passages in their given order.
	Reranked bool `json:"reranked"`
}

// pluginRerank serves POST /plugin/rerank {"query","passages","k"?,"final_n"?}:
// the fork's query-time rerank. It scores the first K passages (vector
// order), sorts them by score and keeps final_n (at least 1).
func (s *Server) pluginRerank(c echo.Context) error {
	body, err := readJSON(c, s.cfg.BodyLimit)
	if err != nil {
		return s.pluginError(c, err)
	}
	var req struct {
		Query    *string   `json:"query"`
		Passages *[]string `json:"passages"`
		K        *int      `json:"k"`
		FinalN   *int      `json:"final_n"`
	}
	if err := decodeBody(body, &req); err != nil {
		return s.pluginError(c, err)
	}
	switch {
	case req.Query == nil:
		return s.pluginError(c, &requestError{status: 422, typ: "missing", param: "query", msg: "field required: query"})
	case req.Passages == nil:
		return s.pluginError(c, &requestError{status: 422, typ: "missing", param: "passages", msg: "field required: passages"})
	case req.K != nil && *req.K < 1:
		return s.pluginError(c, &requestError{status: 422, typ: "value_error", param: "k", msg: "k must be at least 1, got " + strconv.Itoa(*req.K)})
	case req.FinalN != nil && *req.FinalN < 1:
		return s.pluginError(c, &requestError{status: 422, typ: "value_error", param: "final_n", msg: "final_n must be at least 1, got " + strconv.Itoa(*req.FinalN)})
	}
	k, finalN := s.cfg.RerankK, s.cfg.RerankFinalN
	if req.K != nil {
		k = *req.K
	}
	if req.FinalN != nil {
		finalN = *req.FinalN
	}
	passages := *req.Passages
	k = min(k, len(passages))
	finalN = min(finalN, k)
	out := pluginRerankResponse{Scores: []float64{}, Order: []int{}, Reranked: s.cfg.RerankEnable}
	if !s.cfg.RerankEnable || k == 0 {
		for i := range min(finalN, len(passages)) {
			out.Order = append(out.Order, i)
		}
		return writeJSON(c, http.StatusOK, out)
	}
	info := s.rankP.info()
	res, cc, err := s.rerank(c.Request().Context(), s.rankP, rerankParams{query: *req.Query, texts: passages[:k],
		truncate: info.AutoTruncate, direction: "Right"}, s.requestOpts(c.Request().Header, 1))
	if err != nil {
		return s.pluginError(c, err)
	}
	setXCache(c, cc)
	out.Scores = make([]float64, k)
	for _, r := range res.ranks {
		out.Scores[r.Index] = r.Score
	}
	for _, r := range res.ranks[:finalN] {
		out.Order = append(out.Order, r.Index)
	}
	return writeJSON(c, http.StatusOK, out)
}
