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

// pooledCheck is the refusal TEI's embed_pooled raises per input, after the
// permit, for this model and normalize and dimensions; nil when there is
// none. The order is TEI's: SPLADE with normalize, dimensions 0, then a
// model that does not embed.
func (s *Server) pooledCheck(normalize bool, dimensions *uint64) func() *apiError {
	var e *apiError
	switch {
	case s.model.kind == kindSplade && normalize:
		e = errSpladeNorm
	case dimensions != nil && *dimensions == 0:
		e = errDimensionsZero
	case !s.model.isEmbedding():
		e = errNotEmbedding
	default:
		return nil
	}
	return func() *apiError { return e }
}

// dimensionsCheck is TEI's check of dimensions against the vector, made
// after the backend has run (so the work is spent); nil when none is asked.
func (s *Server) dimensionsCheck(dimensions *uint64) func(encoded) *apiError {
	if dimensions == nil {
		return nil
	}
	return func(encoded) *apiError {
		if *dimensions > uint64(s.model.dim) {
			return errDimensionsTooLarge
		}
		return nil
	}
}

// vector is the pooled output for enc: cut to dimensions (Matryoshka style)
// before normalizing, as TEI does. A NaN output stays NaN.
func (s *Server) vector(enc encoded, normalize bool, dimensions *uint64) []float32 {
	if enc.nan {
		n := s.model.dim
		if dimensions != nil {
			n = int(*dimensions)
		}
		return nanVector(n)
	}
	v := s.model.pooled(enc.ids)
	if dimensions != nil {
		v = v[:*dimensions]
	}
	if normalize {
		v = unitLength(v)
	}
	return v
}

func nanVector(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
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
	opt := s.options(req.Truncate, req.TruncationDirection, req.PromptName)
	outs, m, release, err := s.execute(r, job{
		n:      len(req.Inputs.items),
		batch:  req.Inputs.batch,
		check:  s.pooledCheck(req.Normalize, req.Dimensions),
		encode: func(i int) (encoded, *apiError) { return s.encode(req.Inputs.items[i], opt) },
		finish: s.dimensionsCheck(req.Dimensions),
	})
	defer release()
	if err == nil {
		if e := firstError(outs); e != nil {
			err = e
		}
	}
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	out := make(vectors, len(outs))
	for i, o := range outs {
		out[i] = s.vector(o.enc, req.Normalize, req.Dimensions)
	}
	m.chars = totalChars(req.Inputs.items)
	s.succeed(w, method, m)
	writeJSON(w, http.StatusOK, out)
}

// handleEmbedAll serves POST /embed_all: one vector per token.
func (s *Server) handleEmbedAll(w http.ResponseWriter, r *http.Request) {
	req := embedAllRequest{name: "EmbedAllRequest"}
	if !s.decodeBody(w, r, &req) {
		return
	}
	method := req.Inputs.method()
	s.metrics.requestCount.WithLabelValues(method).Inc()
	var check func() *apiError
	switch {
	case s.model.kind == kindSplade:
		check = func() *apiError { return errEmbedAllSplade }
	case !s.model.isEmbedding():
		check = func() *apiError { return errNotEmbedding }
	}
	opt := s.options(req.Truncate, req.TruncationDirection, req.PromptName)
	outs, m, release, err := s.execute(r, job{
		n:      len(req.Inputs.items),
		batch:  req.Inputs.batch,
		check:  check,
		encode: func(i int) (encoded, *apiError) { return s.encode(req.Inputs.items[i], opt) },
	})
	defer release()
	if err == nil {
		if e := firstError(outs); e != nil {
			err = e
		}
	}
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	out := make([][]vector, len(outs))
	for i, o := range outs {
		tokens := s.model.tokenVectors(o.enc.ids)
		out[i] = make([]vector, len(tokens))
		for t, v := range tokens {
			if o.enc.nan {
				v = nanVector(len(v))
			}
			out[i][t] = v
		}
	}
	m.chars = totalChars(req.Inputs.items)
	s.succeed(w, method, m)
	writeJSON(w, http.StatusOK, out)
}

// handleEmbedSparse serves POST /embed_sparse: SPLADE models only.
func (s *Server) handleEmbedSparse(w http.ResponseWriter, r *http.Request) {
	req := embedAllRequest{name: "EmbedSparseRequest"}
	if !s.decodeBody(w, r, &req) {
		return
	}
	method := req.Inputs.method()
	s.metrics.requestCount.WithLabelValues(method).Inc()
	var check func() *apiError
	if s.model.kind != kindSplade {
		check = func() *apiError { return errNotSplade }
	}
	opt := s.options(req.Truncate, req.TruncationDirection, req.PromptName)
	outs, m, release, err := s.execute(r, job{
		n:      len(req.Inputs.items),
		batch:  req.Inputs.batch,
		check:  check,
		encode: func(i int) (encoded, *apiError) { return s.encode(req.Inputs.items[i], opt) },
	})
	defer release()
	if err == nil {
		if e := firstError(outs); e != nil {
			err = e
		}
	}
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	out := make([][]sparseValue, len(outs))
	for i, o := range outs {
		if o.enc.nan {
			// TEI keeps every value that is not 0.0, and NaN is not.
			out[i] = make([]sparseValue, s.model.dim)
			for j := range out[i] {
				out[i][j] = sparseValue{Index: uint32(j), Value: f32(math.NaN())}
			}
			continue
		}
		out[i] = s.model.sparse(o.enc.ids)
	}
	m.chars = totalChars(req.Inputs.items)
	s.succeed(w, method, m)
	writeJSON(w, http.StatusOK, out)
}

// handleSimilarity serves POST /similarity: the cosine similarity of each
// sentence to the source sentence, embedded together as one /embed batch
// (TEI calls its embed handler, with normalize off).
func (s *Server) handleSimilarity(w http.ResponseWriter, r *http.Request) {
	var req similarityRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	if len(req.Sentences) == 0 {
		s.refuse(w, newError(errEmpty, "validation", "`inputs.sentences` cannot be empty"), nativeFace)
		return
	}
	items := make([]input, 0, len(req.Sentences)+1)
	items = append(items, input{text: req.SourceSentence})
	for _, t := range req.Sentences {
		items = append(items, input{text: t})
	}
	if len(items) > s.cfg.MaxClientBatchSize {
		s.refuse(w, errBatchSize(len(items), s.cfg.MaxClientBatchSize), nativeFace)
		return
	}
	s.metrics.requestCount.WithLabelValues("batch").Inc()
	var opt encodeOptions
	if p := req.Parameters; p != nil {
		opt = s.options(p.Truncate, p.TruncationDirection, p.PromptName)
	} else {
		opt = s.options(nil, truncateRight, nil)
	}
	outs, m, release, err := s.execute(r, job{
		n:      len(items),
		batch:  true,
		check:  s.pooledCheck(false, nil),
		encode: func(i int) (encoded, *apiError) { return s.encode(items[i], opt) },
	})
	defer release()
	if err == nil {
		if e := firstError(outs); e != nil {
			err = e
		}
	}
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	source := s.vector(outs[0].enc, false, nil)
	out := make([]f32, 0, len(outs)-1)
	for _, o := range outs[1:] {
		out = append(out, f32(cosine(source, s.vector(o.enc, false, nil))))
	}
	m.chars = totalChars(items)
	s.succeed(w, "batch", m)
	writeJSON(w, http.StatusOK, out)
}

// cosine is the cosine similarity; NaN in, NaN out.
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
