package proxy

import (
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// errBreakerOpen is returned without calling TEI while its breaker is open.
var errBreakerOpen = errors.New("circuit breaker open: TEI is failing")

// newBreaker returns the circuit breaker of one upstream. Only backend
// failures (424, 5xx, unreachable, timeouts) count against TEI; caller
// errors, back-pressure and cancellations are left out of the counts.
func newBreaker(name string, failures int, openFor time.Duration, m *metrics, log *slog.Logger) *gobreaker.CircuitBreaker[struct{}] {
	m.breakerState.WithLabelValues(name).Set(0)
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		IsExcluded:  func(err error) bool { return err != nil && !tei.IsBackendFailure(err) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			m.breakerState.WithLabelValues(name).Set(float64(to))
			m.breakerTransition.WithLabelValues(name, from.String(), to.String()).Inc()
			log.Warn("circuit breaker changed state", "upstream", name, "from", from.String(), "to", to.String())
		},
	})
}

// isBreakerOpen reports whether err is the breaker refusing a call.
func isBreakerOpen(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) || errors.Is(err, errBreakerOpen)
}
