package sharedcache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// op is a kind of round trip.
type op int

const (
	opGet op = iota
	opSet
	nOps
)

var opNames = [nOps]string{"get", "set"}

// outcome is how a round trip ended, one label value each.
type outcome int

const (
	// outcomeOK: Redis answered (for a lookup, whatever it found).
	outcomeOK outcome = iota
	// outcomeTimeout: the round trip ran past its deadline.
	outcomeTimeout
	// outcomeError: the connection failed, or Redis answered with an error.
	outcomeError
	// outcomeBreakerOpen: the breaker refused it; the network was not touched.
	outcomeBreakerOpen
	// outcomeCanceled: the caller gave up first; not Redis's fault.
	outcomeCanceled
	nOutcomes
)

var outcomeNames = [nOutcomes]string{"ok", "timeout", "error", "breaker_open", "canceled"}

// keyResult is what one looked-up key gave.
type keyResult int

const (
	keyHit keyResult = iota
	// keyMiss: not found, or not fetched (timeout, error, open breaker).
	keyMiss
	// keyMalformed: found, but failed the frame check; served as a miss.
	keyMalformed
	nKeyResults
)

var keyResultNames = [nKeyResults]string{"hit", "miss", "malformed"}

// dropReason is why a write was not stored.
type dropReason int

const (
	dropQueueFull dropReason = iota
	dropBreakerOpen
	dropFailed
	dropClosed
	dropEmpty
	nDropReasons
)

var dropReasonNames = [nDropReasons]string{"queue_full", "breaker_open", "failed", "closed", "empty"}

// metrics are the shared cache's Prometheus metrics. Every label value is
// created up front, so dashboards see zeros rather than gaps, and the hot
// path indexes arrays instead of looking labels up.
type metrics struct {
	requests    [nOps][nOutcomes]prometheus.Counter
	duration    [nOps]prometheus.Observer
	keys        [nKeyResults]prometheus.Counter
	dropped     [nDropReasons]prometheus.Counter
	breaker     prometheus.Gauge
	transitions *prometheus.CounterVec

	collectors []prometheus.Collector
}

func newMetrics(queueDepth func() float64) *metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidecar_cache_redis_requests_total",
		Help: "Round trips to the shared cache by op (get, set) and outcome (ok, timeout, error, breaker_open, canceled).",
	}, []string{"op", "outcome"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sidecar_cache_redis_duration_seconds",
		Help:    "Latency of round trips to the shared cache that reached the network, by op.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14), // 100µs to 0.8s
	}, []string{"op"})
	keys := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidecar_cache_redis_keys_total",
		Help: "Keys looked up in the shared cache by result (hit, miss, malformed: found but corrupt, served as a miss).",
	}, []string{"result"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidecar_cache_redis_write_dropped_total",
		Help: "Writes to the shared cache not stored, by reason (queue_full, breaker_open, failed, closed, empty).",
	}, []string{"reason"})
	m := &metrics{
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_cache_redis_breaker_state",
			Help: "The shared cache's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_cache_redis_breaker_transitions_total",
			Help: "State changes of the shared cache's circuit breaker.",
		}, []string{"from", "to"}),
	}
	for o := range nOps {
		for r := range nOutcomes {
			m.requests[o][r] = requests.WithLabelValues(opNames[o], outcomeNames[r])
		}
		m.duration[o] = duration.WithLabelValues(opNames[o])
	}
	for r := range nKeyResults {
		m.keys[r] = keys.WithLabelValues(keyResultNames[r])
	}
	for r := range nDropReasons {
		m.dropped[r] = dropped.WithLabelValues(dropReasonNames[r])
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidecar_cache_redis_write_queue",
		Help: "Writes waiting for the shared cache's write-behind writer.",
	}, queueDepth)
	m.collectors = []prometheus.Collector{requests, duration, keys, dropped, m.breaker, m.transitions, queue}
	return m
}

// register adds the metrics to reg; a nil reg registers nothing.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}
