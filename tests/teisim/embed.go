package teisim

import (
	"math"
	"net/http"
)

// options turns a request's truncation settings into encodeOptions; an
// absent or null truncate means the server's --auto-truncate.
func (s *Server) options(truncate *bool, d direction, promptName *string) encodeOptions {
	t := s.cfg.AutoTruncate
	if truncate != nil {
		t = *truncate
	}
	return encodeOptions{truncate: t, direction: d, promptName: promptName}
}

// pooledModelErr is the refusal of a pooled-embedding route for this model,
// normalize and dimensions, or nil.
func (s *Server) pooledModelErr(normalize bool, dimensions *uint32) *apiError {
	switch {
	case !s.model.isEmbedding():
		return errNotEmbedding
	case s.model.kind == kindSplade && normalize:
		return errSpladeNorm
	case dimensions == nil:
		return nil
	case *dimensions == 0:
		return newError(errValidation, "validation", "Input validation error: `dimensions` must be greater than 0")
	case int(*dimensions) > s.model.dim:
		return newError(errValidation, "validation", "Input validation error: `dimensions` must be less than or equal to the model's dimension %d. Given: %d", s.model.dim, *dimensions)
	}
	return nil
}

// vector is the pooled output for ids: cut to dimensions (Matryoshka style)
// before normalizing, as TEI does.
func (s *Server) vector(ids []uint32, normalize bool, dimensions *uint32) []float32 {
	v := s.model.pooled(ids)
	if dimensions != nil {
		v = v[:*dimensions]
	}
	if normalize {
		v = unitLength(v)
	}
	return v
}

func totalChars(items []input) int {
	n := 0
	for _, in := range items {
		n += in.chars()
	}
	return n
}

// handleEmbed serves POST /embed: a list of vectors, one per input, even for
// a single string.
func (s *Server) handleEmbed(w http.ResponseWriter, r *http.Request) {
	var req embedRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	method := req.Inputs.method()
	s.metrics.requestCount.WithLabelValues(method).Inc()
	normalize := req.Normalize == nil || *req.Normalize
	opt := s.options(req.Truncate, req.TruncationDirection, req.PromptName)
	encs, m, release, err := s.execute(r, job{
		n:        len(req.Inputs.items),
		batch:    req.Inputs.batch,
		modelErr: s.pooledModelErr(normalize, req.Dimensions),
		encode:   func(i int) (encoded, *apiError) { return s.encode(req.Inputs.items[i], opt) },
	})
	defer release()
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	out := make([][]float32, len(encs))
	for i, e := range encs {
		out[i] = s.vector(e.ids, normalize, req.Dimensions)
	}
	m.chars = totalChars(req.Inputs.items)
	s.succeed(w, method, m, false)
	writeJSON(w, http.StatusOK, out)
}

// handleEmbedAll serves POST /embed_all: one vector per token.
func (s *Server) handleEmbedAll(w http.ResponseWriter, r *http.Request) {
	var req embedRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	method := req.Inputs.method()
	s.metrics.requestCount.WithLabelValues(method).Inc()
	var modelErr *apiError
	switch {
	case !s.model.isEmbedding():
		modelErr = errNotEmbedding
	case s.model.kind == kindSplade:
		modelErr = newError(errBackend, "model_type", "Backend error: `embed_all` is not available for SPLADE models")
	}
	opt := s.options(req.Truncate, req.TruncationDirection, req.PromptName)
	encs, m, release, err := s.execute(r, job{
		n:        len(req.Inputs.items),
		batch:    req.Inputs.batch,
		modelErr: modelErr,
		encode:   func(i int) (encoded, *apiError) { return s.encode(req.Inputs.items[i], opt) },
	})
	defer release()
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	out := make([][][]float32, len(encs))
	for i, e := range encs {
		out[i] = s.model.tokenVectors(e.ids)
	}
	m.chars = totalChars(req.Inputs.items)
	s.succeed(w, method, m, false)
	writeJSON(w, http.StatusOK, out)
}

// handleEmbedSparse serves POST /embed_sparse: SPLADE models only.
func (s *Server) handleEmbedSparse(w http.ResponseWriter, r *http.Request) {
	var req embedRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	method := req.Inputs.method()
	s.metrics.requestCount.WithLabelValues(method).Inc()
	var modelErr *apiError
	if s.model.kind != kindSplade {
		modelErr = errNotSplade
	}
	opt := s.options(req.Truncate, req.TruncationDirection, req.PromptName)
	encs, m, release, err := s.execute(r, job{
		n:        len(req.Inputs.items),
		batch:    req.Inputs.batch,
		modelErr: modelErr,
		encode:   func(i int) (encoded, *apiError) { return s.encode(req.Inputs.items[i], opt) },
	})
	defer release()
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	out := make([][]sparseValue, len(encs))
	for i, e := range encs {
		out[i] = s.model.sparse(e.ids)
	}
	m.chars = totalChars(req.Inputs.items)
	s.succeed(w, method, m, false)
	writeJSON(w, http.StatusOK, out)
}

// handleSimilarity serves POST /similarity: the cosine similarity of each
// sentence to the source sentence, embedded together as one batch.
func (s *Server) handleSimilarity(w http.ResponseWriter, r *http.Request) {
	var req similarityRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	s.metrics.requestCount.WithLabelValues("batch").Inc()
	sentences := *req.Inputs.Sentences
	if len(sentences) == 0 {
		s.answerError(w, newError(errEmpty, "validation", "`inputs.sentences` cannot be empty"), nativeFace)
		return
	}
	items := make([]input, 0, len(sentences)+1)
	items = append(items, input{text: *req.Inputs.SourceSentence})
	for _, t := range sentences {
		items = append(items, input{text: t})
	}
	var opt encodeOptions
	if p := req.Parameters; p != nil {
		opt = s.options(p.Truncate, p.TruncationDirection, p.PromptName)
	} else {
		opt = s.options(nil, truncateRight, nil)
	}
	encs, m, release, err := s.execute(r, job{
		n:        len(items),
		batch:    true,
		modelErr: s.pooledModelErr(false, nil),
		encode:   func(i int) (encoded, *apiError) { return s.encode(items[i], opt) },
	})
	defer release()
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	source := s.model.pooled(encs[0].ids)
	out := make([]float32, 0, len(encs)-1)
	for _, e := range encs[1:] {
		out = append(out, cosine(source, s.model.pooled(e.ids)))
	}
	m.chars = totalChars(items)
	s.succeed(w, "batch", m, false)
	writeJSON(w, http.StatusOK, out)
}

func cosine(a, b []float32) float32 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return float32(dot / math.Sqrt(na*nb))
}
