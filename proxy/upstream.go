package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// upstream is one TEI server with its limits, admission control and
// circuit breaker.
type upstream struct {
	name    string // "embed" or "rerank"
	client  *tei.Client
	info    atomic.Pointer[tei.Info]
	adm     atomic.Pointer[admission]
	breaker *gobreaker.CircuitBreaker[struct{}]
	m       *metrics
	log     *slog.Logger
	queue   int
	// down, when set, is why a supervisor knows TEI cannot answer (it
	// exited, or is restarting); calls fail fast until it is cleared.
	down atomic.Pointer[string]
	// dim is the dense embedding dimension, learned at start by embedding
	// one probe text; 0 for models that are not dense embedders.
	dim atomic.Int64
}

func newUpstream(name string, c *tei.Client, cfg Config, m *metrics, log *slog.Logger) *upstream {
	return &upstream{
		name: name, client: c, m: m, log: log, queue: cfg.QueueInputs,
		breaker: newBreaker(name, cfg.BreakerFailures, cfg.BreakerOpenFor, m, log),
	}
}

// setInfo records TEI's /info and sizes admission control from it.
func (u *upstream) setInfo(info *tei.Info) {
	u.info.Store(info)
	maxc := max(info.MaxConcurrentRequests, 1)
	u.adm.Store(newAdmission(maxc, u.queue,
		u.m.queueDepth.WithLabelValues(u.name), u.m.inflightInputs.WithLabelValues(u.name)))
}

// batchLimit is the most inputs one call to TEI may carry: TEI refuses more
// than max_client_batch_size, and a call needs one permit per input.
func (u *upstream) batchLimit() int {
	info := u.info.Load()
	return max(min(info.MaxClientBatchSize, info.MaxConcurrentRequests), 1)
}

// waitInfo reads /info, retrying with back-off while TEI is still starting
// (its port opens only once the model is loaded).
func (u *upstream) waitInfo(ctx context.Context) error {
	start := time.Now()
	delay := 200 * time.Millisecond
	lastLog := time.Time{}
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := u.client.Info(cctx)
		cancel()
		if err == nil && info.ModelType.Kind() == tei.KindEmbedding {
			err = u.probeDimension(ctx)
		}
		if err == nil {
			u.setInfo(info)
			u.log.Info("TEI is ready", "upstream", u.name, "url", u.client.BaseURL(), "model", info.ModelID,
				"model_type", info.ModelType.Kind(), "dtype", info.ModelDType,
				"max_client_batch_size", info.MaxClientBatchSize, "max_concurrent_requests", info.MaxConcurrentRequests,
				"waited", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		if tei.IsCallerError(err) {
			return fmt.Errorf("%s upstream %s: /info: %w", u.name, u.client.BaseURL(), err)
		}
		if time.Since(lastLog) > 5*time.Second {
			u.log.Info("waiting for TEI to start (downloading or loading the model)", "upstream", u.name,
				"url", u.client.BaseURL(), "elapsed", time.Since(start).Round(time.Second).String(), "last_error", err.Error())
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s upstream %s not ready after %s: %w (last error: %v)", u.name, u.client.BaseURL(),
				time.Since(start).Round(time.Second), ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// call runs fn, one call to TEI carrying n inputs, within admission control
// and the breaker. Retryable failures (back-pressure, 503, unreachable) are
// retried with jittered exponential back-off that honours Retry-After, all
// within ctx's deadline. route labels metrics.
func (u *upstream) call(ctx context.Context, route string, n int, fn func(context.Context) error) error {
	if u.down.Load() != nil {
		u.m.upstreamCalls.WithLabelValues(u.name, route, "down").Inc()
		return errBreakerOpen
	}
	adm := u.adm.Load()
	for attempt := 0; ; attempt++ {
		if err := adm.acquire(ctx, n); err != nil {
			return err
		}
		start := time.Now()
		_, err := u.breaker.Execute(func() (struct{}, error) { return struct{}{}, fn(ctx) })
		adm.release(n)
		outcome := outcomeOf(err)
		u.m.upstreamCalls.WithLabelValues(u.name, route, outcome).Inc()
		if !isBreakerOpen(err) {
			u.m.upstreamLatency.WithLabelValues(u.name, outcome).Observe(time.Since(start).Seconds())
			u.m.upstreamInputs.WithLabelValues(u.name).Add(float64(n))
		}
		if err == nil || isBreakerOpen(err) || !tei.IsRetryable(err) {
			return err
		}
		wait := backoff(attempt, tei.RetryAfter(err))
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // no time left to try again: pass TEI's answer on
		}
		u.m.retries.WithLabelValues(u.name).Inc()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// backoff returns the wait before retry attempt+1: exponential from 50 ms
// up to 2 s with full jitter, or the server's Retry-After when longer.
func backoff(attempt int, retryAfter time.Duration) time.Duration {
	ceil := min(50*time.Millisecond<<min(attempt, 6), 2*time.Second)
	d := time.Duration(rand.Int64N(int64(ceil)) + 1)
	return max(d, retryAfter)
}

// outcomeOf names a call's result for metrics.
func outcomeOf(err error) string {
	var te *tei.Error
	var tr *tei.TransportError
	switch {
	case err == nil:
		return "ok"
	case isBreakerOpen(err):
		return "breaker_open"
	case errors.Is(err, errOverloaded):
		return "overloaded"
	case errors.As(err, &te):
		return fmt.Sprintf("http_%d", te.Status)
	case errors.As(err, &tr):
		return tr.Kind.String()
	}
	return "error"
}

// probeDimension learns the model's embedding dimension, which /info does
// not report, from one short embedding.
func (u *upstream) probeDimension(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := u.client.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts("tei-sidecar dimension probe")})
	if err != nil {
		return err
	}
	v, err := tei.DecodeVector(res.Items[0])
	if err != nil {
		return err
	}
	u.dim.Store(int64(len(v)))
	return nil
}
