package teisim

import (
	"cmp"
	"math"
	"net/http"
	"slices"
	"unicode/utf8"
)

// rank is one /rerank result.
type rank struct {
	Index int     `json:"index"`
	Text  *string `json:"text,omitempty"`
	Score f32     `json:"score"`
}

// handleRerank serves POST /rerank: a score per text for the query, sorted
// by score descending, sigmoid applied unless raw_scores. TEI has no top_n.
// Each text takes its own permit, so under load the texts that got one are
// scored (and counted) before the request answers 429.
func (s *Server) handleRerank(w http.ResponseWriter, r *http.Request) {
	var req rerankRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	if len(req.Texts) == 0 {
		s.refuse(w, errTextsEmpty, nativeFace)
		return
	}
	// TEI refuses a model that is not a reranker before admission, unlike
	// the other routes.
	if s.model.kind != kindReranker {
		s.refuse(w, errNotReranker, nativeFace)
		return
	}
	s.metrics.requestCount.WithLabelValues("batch").Inc()
	opt := s.options(req.Truncate, req.TruncationDirection, nil)
	outs, m, release, err := s.execute(r, job{
		n:         len(req.Texts),
		batch:     true,
		admission: eachPermit,
		predict:   true,
		encode:    func(i int) (encoded, *apiError) { return s.encodePair(req.Query, req.Texts[i], opt) },
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
	ranks := make([]rank, len(outs))
	for i, o := range outs {
		score := s.score(o.enc)
		if math.IsNaN(score) {
			s.answerError(w, errScoreNaN, nativeFace)
			return
		}
		if !req.RawScores {
			score = sigmoid(score)
		}
		ranks[i] = rank{Index: i, Score: f32(score)}
		if req.ReturnText {
			ranks[i].Text = &req.Texts[i]
		}
		m.chars += utf8.RuneCountInString(req.Query) + utf8.RuneCountInString(req.Texts[i])
	}
	sortDescending(ranks, func(r rank) f32 { return r.Score })
	s.succeed(w, "batch", m)
	writeJSON(w, http.StatusOK, ranks)
}

// sortDescending orders items as TEI does: a stable sort by score, then
// reversed, so among equal scores the later item comes first.
func sortDescending[T any](items []T, score func(T) f32) {
	slices.SortStableFunc(items, func(a, b T) int { return cmp.Compare(score(a), score(b)) })
	slices.Reverse(items)
}

// score is a cross-encoder's logit for an encoded pair (NaN where the fault
// knobs say the model outputs NaN).
func (s *Server) score(e encoded) float64 {
	if e.nan {
		return math.NaN()
	}
	return s.model.relevance(e.ids[:e.pairAt], e.ids[e.pairAt:], e.ids)
}

// prediction is one label's score in /predict.
type prediction struct {
	Score f32    `json:"score"`
	Label string `json:"label"`
}

// handlePredict serves POST /predict for classifiers and rerankers: every
// label's score, sorted descending; softmax over several labels, sigmoid for
// one, unless raw_scores. A batch takes one permit per input as /rerank does;
// a single input takes its permit before any work.
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
	var check func() *apiError
	if s.model.kind != kindClassifier && s.model.kind != kindReranker {
		check = func() *apiError { return errNotClassifier }
	}
	admit := allPermits
	if req.Inputs.batch {
		admit = eachPermit
	}
	opt := s.options(req.Truncate, req.TruncationDirection, nil)
	items := req.Inputs.items
	outs, m, release, err := s.execute(r, job{
		n:         len(items),
		batch:     req.Inputs.batch,
		admission: admit,
		predict:   true,
		check:     check,
		encode: func(i int) (encoded, *apiError) {
			if items[i].isPair {
				return s.encodePair(items[i].a, items[i].b, opt)
			}
			return s.encode(input{text: items[i].a}, opt)
		},
	})
	defer release()
	out := make([][]prediction, len(outs))
	if err == nil {
		for i, o := range outs {
			if o.err != nil {
				continue
			}
			var nan bool
			if out[i], nan = s.predictions(o.enc, req.RawScores); nan {
				outs[i].err = errScoreNaN // TEI's check per input, after inference
			}
		}
		if e := firstError(outs); e != nil {
			err = e
		}
	}
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	for i := range items {
		m.chars += utf8.RuneCountInString(items[i].a) + utf8.RuneCountInString(items[i].b)
	}
	if req.Inputs.batch {
		s.succeed(w, method, m)
		writeJSON(w, http.StatusOK, out)
		return
	}
	// TEI's single /predict counts te_request_count{method="single"} a
	// second time where the others count te_request_success.
	s.succeedSingle(w, m)
	writeJSON(w, http.StatusOK, out[0])
}

// predictions scores one encoded input against every label, and reports
// whether the model output NaN.
func (s *Server) predictions(e encoded, raw bool) ([]prediction, bool) {
	logits := s.model.logits(e.ids)
	if s.model.kind == kindReranker && e.pairAt > 0 {
		logits[0] = s.model.relevance(e.ids[:e.pairAt], e.ids[e.pairAt:], e.ids)
	}
	if e.nan {
		return nil, true
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
		out[i] = prediction{Score: f32(sc), Label: s.model.labels[i]}
	}
	sortDescending(out, func(p prediction) f32 { return p.Score })
	return out, false
}
