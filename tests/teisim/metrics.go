package teisim

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are TEI's Prometheus series under TEI's names. Counters carry no
// _total suffix, as TEI's exporter writes them; the classic text format
// served here keeps names as given. Every series is a vector, even those
// without labels, so nothing is exposed until first used: TEI's /metrics is
// empty until the first request.
type metrics struct {
	registry *prometheus.Registry

	requestCount   *prometheus.CounterVec // {method}
	requestSuccess *prometheus.CounterVec // {method}
	requestFailure *prometheus.CounterVec // {err}
	embedCount     *prometheus.CounterVec
	embedSuccess   *prometheus.CounterVec
	predictCount   *prometheus.CounterVec
	predictSuccess *prometheus.CounterVec
	queueSize      *prometheus.GaugeVec

	requestDuration      *prometheus.HistogramVec
	tokenizationDuration *prometheus.HistogramVec
	queueDuration        *prometheus.HistogramVec
	inferenceDuration    *prometheus.HistogramVec
	inputLength          *prometheus.HistogramVec
	batchSize            *prometheus.HistogramVec
	batchTokens          *prometheus.HistogramVec
}

func newMetrics(maxInputLength, maxBatchTokens int) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, nil)
	}
	// TEI's duration buckets start at 100µs and grow by 1.5; its length
	// buckets are powers of two up to the limit.
	durations := prometheus.ExponentialBuckets(0.0001, 1.5, 20)
	lengths := func(limit int) []float64 {
		var b []float64
		for v := 1; v < limit; v *= 2 {
			b = append(b, float64(v))
		}
		return append(b, float64(limit))
	}
	m := &metrics{
		registry:             prometheus.NewRegistry(),
		requestCount:         counter("te_request_count", "Requests received, by method (single or batch).", "method"),
		requestSuccess:       counter("te_request_success", "Requests answered successfully, by method.", "method"),
		requestFailure:       counter("te_request_failure", "Requests failed, by cause.", "err"),
		embedCount:           counter("te_embed_count", "Inputs sent to embedding, one per input."),
		embedSuccess:         counter("te_embed_success", "Inputs embedded successfully."),
		predictCount:         counter("te_predict_count", "Inputs sent to classification or reranking, one per input."),
		predictSuccess:       counter("te_predict_success", "Inputs classified or reranked successfully."),
		queueSize:            prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "te_queue_size", Help: "Inputs waiting for the backend."}, nil),
		requestDuration:      histogram("te_request_duration", "Request duration in seconds.", durations),
		tokenizationDuration: histogram("te_request_tokenization_duration", "Tokenization duration in seconds.", durations),
		queueDuration:        histogram("te_request_queue_duration", "Queue duration in seconds.", durations),
		inferenceDuration:    histogram("te_request_inference_duration", "Inference duration in seconds.", durations),
		inputLength:          histogram("te_request_input_length", "Input length in tokens.", lengths(maxInputLength)),
		batchSize:            histogram("te_batch_next_size", "Entries per backend batch.", lengths(1024)),
		batchTokens:          histogram("te_batch_next_tokens", "Tokens per backend batch.", lengths(maxBatchTokens)),
	}
	m.registry.MustRegister(m.requestCount, m.requestSuccess, m.requestFailure, m.embedCount, m.embedSuccess,
		m.predictCount, m.predictSuccess,
		m.queueSize, m.requestDuration, m.tokenizationDuration, m.queueDuration, m.inferenceDuration,
		m.inputLength, m.batchSize, m.batchTokens)
	return m
}

// handler serves the registry in Prometheus's classic text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// fail counts a failed request under e's cause.
func (m *metrics) fail(e *apiError) {
	m.requestFailure.WithLabelValues(e.metric).Inc()
}
