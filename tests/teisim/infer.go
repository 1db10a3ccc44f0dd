package teisim

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// face is the error format of a route: TEI's native body or OpenAI's flat one.
type face int

const (
	nativeFace face = iota
	openAIFace
)

// answerError writes err, counted already where it arose, in the route's
// format. An error that is not TEI's (the request's context ended) means the
// client is gone: nothing is written.
func (s *Server) answerError(w http.ResponseWriter, err error, f face) {
	e, ok := errors.AsType[*apiError](err)
	if !ok {
		return
	}
	if f == openAIFace {
		writeOpenAIError(w, e)
		return
	}
	writeNativeError(w, e)
}

// refuse counts e under its te_request_failure label and answers it: the
// refusals a handler makes itself, before any per-input work.
func (s *Server) refuse(w http.ResponseWriter, e *apiError, f face) {
	s.metrics.fail(e)
	s.answerError(w, e, f)
}

// admission is how a route takes its per-input permits.
type admission int

const (
	// allPermits: the handler takes one permit per input before any work
	// and refuses the whole request with 429 if one is missing (/embed,
	// /embed_all, /embed_sparse, /v1/embeddings, /similarity, single
	// /predict).
	allPermits admission = iota
	// eachPermit: every input's future takes its own permit (/rerank and
	// batched /predict, where TEI join_alls per-input futures): the inputs
	// that got one run to completion, the rest fail with 429, and the
	// request answers the first failure by input order.
	eachPermit
)

// job is one inference request after decoding.
type job struct {
	n         int  // inputs
	batch     bool // the request sent a list, so the batch checks apply
	admission admission
	// predict selects te_predict_count over te_embed_count.
	predict bool
	// check is the per-input refusal TEI raises after an input's permit and
	// before counting it (model type, normalize on SPLADE, dimensions 0);
	// nil when the route serves the model.
	check func() *apiError
	// encode tokenizes input i.
	encode func(i int) (encoded, *apiError)
	// finish is the per-input check TEI makes on the backend's output
	// before counting a success (dimensions over the model's); may be nil.
	finish func(enc encoded) *apiError
}

// outcome is one input's result: its encoding, or why it failed.
type outcome struct {
	enc encoded
	err *apiError
}

// firstError is TEI's collect over join_all: the failure of the first input,
// by input order, that failed.
func firstError(outs []outcome) *apiError {
	for _, o := range outs {
		if o.err != nil {
			return o.err
		}
	}
	return nil
}

// meta is what TEI reports in a success's headers.
type meta struct {
	start                          time.Time
	chars, tokens                  int
	tokenization, queue, inference time.Duration // summed over inputs
	n                              int
}

// execute runs a job as TEI's router and core do: the empty and client
// batch checks, permits taken without waiting, then per input the model
// check, te_*_count, tokenization and the backend, each failure counted
// where TEI counts it. Inputs are independent, as TEI's per-input futures
// are: one input's failure does not spare the others their work. It returns
// each input's outcome (answer firstError, after any route-level checks of
// its own), or a request-level error that stopped everything (batch limits,
// 429 under allPermits, an injected per-request fault, the client gone);
// either way counted already. release returns the permits; the caller holds
// them until it has answered.
func (s *Server) execute(r *http.Request, j job) (outs []outcome, m meta, release func(), err error) {
	m = meta{start: time.Now(), n: j.n}
	release = func() {}
	if j.batch && j.n == 0 {
		s.metrics.fail(errBatchEmpty)
		return nil, m, release, errBatchEmpty
	}
	if j.batch && j.n > s.cfg.MaxClientBatchSize {
		e := errBatchSize(j.n, s.cfg.MaxClientBatchSize)
		s.metrics.fail(e)
		return nil, m, release, e
	}
	outs = make([]outcome, j.n)
	admitted := j.n
	switch j.admission {
	case allPermits:
		if !s.permits.tryAcquire(j.n) {
			s.metrics.fail(errOverloadedErr)
			return nil, m, release, errOverloadedErr
		}
	case eachPermit:
		admitted = s.permits.tryAcquireUpTo(j.n)
		for i := admitted; i < j.n; i++ {
			s.metrics.fail(errOverloadedErr)
			outs[i].err = errOverloadedErr
		}
	}
	release = func() { s.permits.release(admitted) }

	f := s.currentFault()
	var pending []int // inputs tokenized and bound for the backend
	for i := range admitted {
		if j.check != nil {
			if e := j.check(); e != nil {
				s.metrics.fail(e)
				outs[i].err = e
				continue
			}
		}
		if j.predict {
			s.metrics.predictCount.WithLabelValues().Inc()
		} else {
			s.embedCount.Add(1)
			s.metrics.embedCount.WithLabelValues().Inc()
		}
		enc, e := j.encode(i)
		if e != nil {
			// TEI counts every tokenization-stage refusal under one label.
			counted := *e
			counted.metric = "tokenization"
			s.metrics.fail(&counted)
			outs[i].err = e
			continue
		}
		enc.nan = f.NaNMarker != "" && strings.Contains(enc.source, f.NaNMarker)
		enc.poison = f.ErrorMarker != "" && strings.Contains(enc.source, f.ErrorMarker)
		s.metrics.inputLength.WithLabelValues().Observe(float64(len(enc.ids)))
		outs[i].enc = enc
		pending = append(pending, i)
	}
	if len(pending) == 0 {
		return outs, m, release, nil
	}

	if !f.ErrorPerBatch {
		if e := rollFault(f); e != nil {
			s.metrics.fail(e)
			return nil, m, release, e
		}
	}
	items := make([]item, len(pending))
	for k, i := range pending {
		items[k] = item{tokens: len(outs[i].enc.ids), poison: outs[i].enc.poison}
	}
	entries, err := s.backend.run(r.Context(), items)
	if err != nil {
		if e, ok := errors.AsType[*apiError](err); ok {
			s.metrics.fail(e)
		}
		return nil, m, release, err
	}
	for k, i := range pending {
		e := entries[k]
		if e.err != nil {
			s.metrics.fail(e.err)
			outs[i].err = e.err
			continue
		}
		if j.finish != nil {
			if fe := j.finish(outs[i].enc); fe != nil {
				s.metrics.fail(fe)
				outs[i].err = fe
				continue
			}
		}
		queue, inference := e.started.Sub(e.enqueued), e.finished.Sub(e.started)
		if j.predict {
			s.metrics.predictSuccess.WithLabelValues().Inc()
			s.metrics.predictDurations.observe(time.Since(m.start), outs[i].enc.tokenization, queue, inference)
		} else {
			s.metrics.embedSuccess.WithLabelValues().Inc()
			s.metrics.embedDurations.observe(time.Since(m.start), outs[i].enc.tokenization, queue, inference)
		}
		m.tokens += len(outs[i].enc.ids)
		m.tokenization += outs[i].enc.tokenization
		m.queue += queue
		m.inference += inference
	}
	if err := s.sleep(r, f.Stall); err != nil {
		if e, ok := errors.AsType[*apiError](err); ok {
			s.metrics.fail(e)
		}
		return nil, m, release, err
	}
	return outs, m, release, nil
}

// rollFault rolls the per-request or per-batch dice and returns TEI's error
// for the chosen status, or nil.
func rollFault(f Fault) *apiError {
	if f.ErrorRate <= 0 || rand.Float64() >= f.ErrorRate {
		return nil
	}
	return injectedError(f.ErrorStatus)
}

// injectedError is TEI's error for an injected failure of the given status;
// 0 means 424, what a failing backend gives.
func injectedError(status int) *apiError {
	status = cmp.Or(status, http.StatusFailedDependency)
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

// succeed counts a successful request and answers its metadata.
func (s *Server) succeed(w http.ResponseWriter, method string, m meta) {
	s.metrics.requestSuccess.WithLabelValues(method).Inc()
	s.answered(w, m)
}

// succeedSingle is a single /predict's success, which TEI 1.9.3 counts as a
// second te_request_count{method="single"} and no te_request_success.
func (s *Server) succeedSingle(w http.ResponseWriter, m meta) {
	s.metrics.requestCount.WithLabelValues("single").Inc()
	s.answered(w, m)
}

// answered records a success's durations and sets TEI's timing headers:
// totals for characters and tokens, per-input averages for the stage times,
// all in whole milliseconds.
func (s *Server) answered(w http.ResponseWriter, m meta) {
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
