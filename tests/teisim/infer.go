package teisim

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// face is the error format of a route: TEI's native body or OpenAI's flat one.
type face int

const (
	nativeFace face = iota
	openAIFace
)

// answerError counts err and writes it in the route's format. An error that
// is not TEI's (the request's context ended) means the client is gone:
// nothing is written.
func (s *Server) answerError(w http.ResponseWriter, err error, f face) {
	e, ok := errors.AsType[*apiError](err)
	if !ok {
		return
	}
	s.metrics.fail(e)
	if f == openAIFace {
		writeOpenAIError(w, e)
		return
	}
	writeNativeError(w, e)
}

// job is one inference request after decoding.
type job struct {
	n     int  // inputs
	batch bool // the request sent a list, so the batch checks apply
	// predict selects te_predict_count over te_embed_count.
	predict bool
	// modelErr is the route's model-type refusal, which TEI raises after
	// admission; nil when the model serves the route.
	modelErr *apiError
	encode   func(i int) (encoded, *apiError)
}

// meta is what TEI reports in a success's headers.
type meta struct {
	start                          time.Time
	chars, tokens                  int
	tokenization, queue, inference time.Duration // summed over inputs
	n                              int
}

// execute runs a job as TEI's router and core do: the empty and client
// batch checks, per-input permits taken without waiting, the model check,
// tokenization, then the backend. release returns the permits; the caller
// holds them until it has answered. A non-nil error is answered with
// answerError.
func (s *Server) execute(r *http.Request, j job) (encs []encoded, m meta, release func(), err error) {
	m = meta{start: time.Now(), n: j.n}
	release = func() {}
	if j.batch && j.n == 0 {
		return nil, m, release, errInputsEmpty
	}
	if j.batch && j.n > s.cfg.MaxClientBatchSize {
		return nil, m, release, errBatchSize(j.n, s.cfg.MaxClientBatchSize)
	}
	if !s.permits.tryAcquire(j.n) {
		return nil, m, release, errOverloadedErr
	}
	release = func() { s.permits.release(j.n) }
	if j.modelErr != nil {
		return nil, m, release, j.modelErr
	}
	if j.predict {
		s.metrics.predictCount.WithLabelValues().Add(float64(j.n))
	} else {
		s.embedCount.Add(int64(j.n))
		s.metrics.embedCount.WithLabelValues().Add(float64(j.n))
	}

	encs = make([]encoded, j.n)
	tokens := make([]int, j.n)
	for i := range encs {
		enc, e := j.encode(i)
		if e != nil {
			// TEI counts every tokenization-stage refusal under one label.
			counted := *e
			counted.metric = "tokenization"
			return nil, m, release, &counted
		}
		s.metrics.inputLength.WithLabelValues().Observe(float64(len(enc.ids)))
		encs[i], tokens[i] = enc, len(enc.ids)
		m.tokens += len(enc.ids)
		m.tokenization += enc.tokenization
	}

	f := s.currentFault()
	if e := injected(f); e != nil {
		return nil, m, release, e
	}
	entries, err := s.backend.run(r.Context(), tokens)
	if err != nil {
		return nil, m, release, err
	}
	for _, e := range entries {
		m.queue += e.started.Sub(e.enqueued)
		m.inference += e.finished.Sub(e.started)
	}
	if err := s.sleep(r, f.Stall); err != nil {
		return nil, m, release, err
	}
	return encs, m, release, nil
}

// injected rolls the fault dice and returns TEI's error for the chosen
// status, or nil.
func injected(f Fault) *apiError {
	if f.ErrorRate <= 0 || rand.Float64() >= f.ErrorRate {
		return nil
	}
	status := cmp.Or(f.ErrorStatus, http.StatusFailedDependency)
	var e *apiError
	switch status {
	case http.StatusTooManyRequests:
		e = newError(errOverloaded, "overloaded", "Model is overloaded")
	case http.StatusServiceUnavailable:
		e = newError(errUnhealthy, "inference", "unhealthy")
	case http.StatusBadRequest:
		e = newError(errEmpty, "validation", "Input validation error: `inputs` cannot be empty")
	case http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		e = newError(errValidation, "validation", "Input validation error: injected by teisim")
	default:
		e = newError(errBackend, "inference", "Backend error: Inference failed (injected by teisim)")
	}
	e.status = status
	return e
}

// succeed counts a success and sets TEI's timing headers: totals for
// characters and tokens, per-input averages for the stage times, all in
// whole milliseconds.
func (s *Server) succeed(w http.ResponseWriter, method string, m meta, predict bool) {
	s.metrics.requestSuccess.WithLabelValues(method).Inc()
	if predict {
		s.metrics.predictSuccess.WithLabelValues().Add(float64(m.n))
	} else {
		s.metrics.embedSuccess.WithLabelValues().Add(float64(m.n))
	}
	n := time.Duration(max(m.n, 1))
	tokenization, queue, inference := m.tokenization/n, m.queue/n, m.inference/n
	total := time.Since(m.start)
	s.metrics.requestDuration.WithLabelValues().Observe(total.Seconds())
	s.metrics.tokenizationDuration.WithLabelValues().Observe(tokenization.Seconds())
	s.metrics.queueDuration.WithLabelValues().Observe(queue.Seconds())
	s.metrics.inferenceDuration.WithLabelValues().Observe(inference.Seconds())

	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	h := w.Header()
	h.Set("x-compute-type", "gpu+optimized") // TEI writes this constant whatever the hardware
	h.Set("x-compute-time", ms(total))
	h.Set("x-compute-characters", strconv.Itoa(m.chars))
	h.Set("x-compute-tokens", strconv.Itoa(m.tokens))
	h.Set("x-total-time", ms(total))
	h.Set("x-tokenization-time", ms(tokenization))
	h.Set("x-queue-time", ms(queue))
	h.Set("x-inference-time", ms(inference))
}
