package proxy

import (
	"errors"
	"net/http"

	"github.com/sony/gobreaker/v2"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// newBreaker returns a replica's circuit breaker. Only TEI failing counts
// against it (see countsAgainstTEI); a replica whose breaker is open is
// sent no work until it lets a probe through.
func newBreaker(p *pool, r *replica) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	cfg := p.s.cfg
	m := p.s.m
	m.breakerState.WithLabelValues(p.name, r.addr).Set(0)
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        p.name,
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.BreakerFailures) },
		IsExcluded:  func(err error) bool { return err != nil && !countsAgainstTEI(err) },
		// Called with the breaker's lock held: nothing here may call the
		// breaker or take the pool's lock.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			r.open.Store(to == gobreaker.StateOpen)
			m.breakerState.WithLabelValues(p.name, r.addr).Set(float64(to))
			m.breakerTransition.WithLabelValues(p.name, r.addr, from.String(), to.String()).Inc()
			p.s.log.Warn("circuit breaker changed state", "pool", p.name, "replica", r, "from", from.String(), "to", to.String())
			if to == gobreaker.StateClosed {
				// Back after an outage: it may have restarted with
				// another model revision or other limits.
				r.recheck()
			}
		},
	})
}

// countsAgainstTEI reports whether err shows TEI itself failing: no
// connection, a reset, a timeout, or a 5xx. A caller's mistake (4xx, 424
// for a route its model does not serve), back-pressure (429) and a
// cancellation do not: they say nothing about TEI's health.
func countsAgainstTEI(err error) bool {
	var te *tei.Error
	if errors.As(err, &te) {
		return te.Status >= http.StatusInternalServerError
	}
	var tr *tei.TransportError
	if errors.As(err, &tr) {
		return tr.Kind != tei.KindCanceled
	}
	return false
}
