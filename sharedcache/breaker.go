package sharedcache

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// tripError is a failed round trip: its outcome, and whether it moves the
// breaker toward open.
type tripError struct {
	outcome outcome
	counts  bool
	err     error
}

func (e *tripError) Error() string { return e.err.Error() }
func (e *tripError) Unwrap() error { return e.err }

// failed wraps err from a round trip. counts says whether the failure is
// Redis's (the caller decides: a lookup whose every key came back with an
// error reply counts; a write refused by OOM does not). parent is the
// caller's context: when it was canceled, the caller gave up, and nothing
// counts.
func failed(parent context.Context, err error, counts bool) *tripError {
	var nerr net.Error
	switch {
	case errors.Is(parent.Err(), context.Canceled):
		return &tripError{outcomeCanceled, false, err}
	case errors.Is(err, redis.ErrClosed):
		return &tripError{outcomeError, false, err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrPoolTimeout),
		errors.As(err, &nerr) && nerr.Timeout():
		return &tripError{outcomeTimeout, counts, err}
	default:
		return &tripError{outcomeError, counts, err}
	}
}

// isReply reports whether err is Redis's own error reply (WRONGTYPE, OOM,
// LOADING, a refused password) rather than a failed connection.
func isReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// excluded reports whether the breaker should ignore err.
func excluded(err error) bool {
	var te *tripError
	return err != nil && errors.As(err, &te) && !te.counts
}

// newBreaker returns the breaker around every round trip. It opens after
// failures round trips in a row that count against Redis (timeouts,
// failed connections, lookups refused outright), answers every call
// at once while open, and lets one probe through after openFor.
func newBreaker(failures int, openFor time.Duration, m *metrics, log *slog.Logger) *gobreaker.CircuitBreaker[struct{}] {
	m.breaker.Set(float64(gobreaker.StateClosed))
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		IsExcluded:  excluded,
		// Runs under the breaker's lock: it must not call the breaker.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			m.breaker.Set(float64(to))
			m.transitions.WithLabelValues(from.String(), to.String()).Inc()
			if to == gobreaker.StateClosed {
				log.Info("shared cache breaker closed: Redis answers again", "from", from.String())
			} else {
				log.Warn("shared cache breaker changed state", "from", from.String(), "to", to.String())
			}
		},
	})
}

// refused reports whether err is the breaker turning a call away.
func refused(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}
