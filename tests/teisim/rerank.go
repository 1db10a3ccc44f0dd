package teisim

import (
	"cmp"
	"net/http"
	"slices"
	"unicode/utf8"
)

// rank is one /rerank result.
type rank struct {
	Index int     `json:"index"`
	Score float32 `json:"score"`
	Text  *string `json:"text,omitempty"`
}

// handleRerank serves POST /rerank: a score per text for the query, sorted
// by score descending, sigmoid applied unless raw_scores. TEI has no top_n.
func (s *Server) handleRerank(w http.ResponseWriter, r *http.Request) {
	var req rerankRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	texts := *req.Texts
	if len(texts) == 0 {
		s.answerError(w, errTextsEmpty, nativeFace)
		return
	}
	// TEI refuses a model that is not a reranker before admission, unlike
	// the other routes.
	if s.model.kind != kindReranker {
		s.answerError(w, errNotReranker, nativeFace)
		return
	}
	s.metrics.requestCount.WithLabelValues("batch").Inc()
	query := *req.Query
	opt := s.options(req.Truncate, req.TruncationDirection, nil)
	encs, m, release, err := s.execute(r, job{
		n:       len(texts),
		batch:   true,
		predict: true,
		encode:  func(i int) (encoded, *apiError) { return s.encodePair(query, texts[i], opt) },
	})
	defer release()
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	ranks := make([]rank, len(encs))
	for i, e := range encs {
		score := s.model.relevance(e.ids[:e.pairAt], e.ids[e.pairAt:], e.ids)
		if !req.RawScores {
			score = sigmoid(score)
		}
		ranks[i] = rank{Index: i, Score: float32(score)}
		if req.ReturnText {
			ranks[i].Text = &texts[i]
		}
		m.chars += utf8.RuneCountInString(query) + utf8.RuneCountInString(texts[i])
	}
	slices.SortStableFunc(ranks, func(a, b rank) int { return cmp.Compare(b.Score, a.Score) })
	s.succeed(w, "batch", m, true)
	writeJSON(w, http.StatusOK, ranks)
}

// prediction is one label's score in /predict.
type prediction struct {
	Score float32 `json:"score"`
	Label string  `json:"label"`
}

// handlePredict serves POST /predict for classifiers and rerankers: every
// label's score, sorted descending; softmax over several labels, sigmoid for
// one, unless raw_scores.
func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	var req predictRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	method := "single"
	if req.Inputs.batch {
		method = "batch"
	}
	s.metrics.requestCount.WithLabelValues(method).Inc()
	var modelErr *apiError
	if s.model.kind != kindClassifier && s.model.kind != kindReranker {
		modelErr = errNotClassifier
	}
	opt := s.options(req.Truncate, req.TruncationDirection, nil)
	items := req.Inputs.items
	encs, m, release, err := s.execute(r, job{
		n:        len(items),
		batch:    req.Inputs.batch,
		predict:  true,
		modelErr: modelErr,
		encode: func(i int) (encoded, *apiError) {
			if items[i].isPair {
				return s.encodePair(items[i].a, items[i].b, opt)
			}
			return s.encode(input{text: items[i].a}, opt)
		},
	})
	defer release()
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	out := make([][]prediction, len(encs))
	for i, e := range encs {
		out[i] = s.predictions(e, req.RawScores)
		m.chars += utf8.RuneCountInString(items[i].a) + utf8.RuneCountInString(items[i].b)
	}
	s.succeed(w, method, m, true)
	if req.Inputs.batch {
		writeJSON(w, http.StatusOK, out)
		return
	}
	writeJSON(w, http.StatusOK, out[0])
}

// predictions scores one encoded input against every label.
func (s *Server) predictions(e encoded, raw bool) []prediction {
	logits := s.model.logits(e.ids)
	if s.model.kind == kindReranker && e.pairAt > 0 {
		logits[0] = s.model.relevance(e.ids[:e.pairAt], e.ids[e.pairAt:], e.ids)
	}
	scores := logits
	if !raw {
		if len(logits) > 1 {
			scores = softmax(logits)
		} else {
			scores = []float64{sigmoid(logits[0])}
		}
	}
	out := make([]prediction, len(scores))
	for i, sc := range scores {
		out[i] = prediction{Score: float32(sc), Label: s.model.labels[i]}
	}
	slices.SortStableFunc(out, func(a, b prediction) int { return cmp.Compare(b.Score, a.Score) })
	return out
}
