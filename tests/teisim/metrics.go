package teisim

import (
	"math"
	"net/http"
	"time"

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
	// Per input, as TEI's core records them: embed for the embedding
	// routes, predict for /predict and /rerank.
	embedDurations   inputDurations
	predictDurations inputDurations
	inputLength      *prometheus.HistogramVec
	batchSize        *prometheus.HistogramVec
	batchTokens      *prometheus.HistogramVec
}

// inputDurations are te_{embed,predict}_{,tokenization_,queue_,inference_}duration.
type inputDurations struct {
	total, tokenization, queue, inference *prometheus.HistogramVec
}

func (d inputDurations) observe(total, tokenization, queue, inference time.Duration) {
	d.total.WithLabelValues().Observe(total.Seconds())
	d.tokenization.WithLabelValues().Observe(tokenization.Seconds())
	d.queue.WithLabelValues().Observe(queue.Seconds())
	d.inference.WithLabelValues().Observe(inference.Seconds())
}

func newMetrics(maxInputLength, maxBatchTokens int) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, nil)
	}
	// TEI's buckets (router/src/prometheus.rs): durations from 15µs
	// growing by 1.5, 35 of them; input lengths the powers of two up to
	// max_input_length; batch sizes 2^0..2^12; batch tokens 2^0..2^20.
	durations := prometheus.ExponentialBuckets(0.00001*1.5, 1.5, 35)
	powers := func(n int, limit float64) []float64 {
		var b []float64
		for x := range n {
			if v := math.Pow(2, float64(x)); v <= limit {
				b = append(b, v)
			}
		}
		return b
	}
	inputDurationsOf := func(kind string) inputDurations {
		return inputDurations{
			total:        histogram("te_"+kind+"_duration", "Per-input "+kind+" duration in seconds.", durations),
			tokenization: histogram("te_"+kind+"_tokenization_duration", "Per-input tokenization duration in seconds.", durations),
			queue:        histogram("te_"+kind+"_queue_duration", "Per-input queue duration in seconds.", durations),
			inference:    histogram("te_"+kind+"_inference_duration", "Per-input inference duration in seconds.", durations),
		}
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
		embedDurations:       inputDurationsOf("embed"),
		predictDurations:     inputDurationsOf("predict"),
		inputLength:          histogram("te_request_input_length", "Input length in tokens.", powers(20, float64(maxInputLength))),
		batchSize:            histogram("te_batch_next_size", "Entries per backend batch.", powers(13, math.Inf(1))),
		batchTokens:          histogram("te_batch_next_tokens", "Tokens per backend batch.", powers(21, math.Inf(1))),
	}
	m.registry.MustRegister(m.requestCount, m.requestSuccess, m.requestFailure, m.embedCount, m.embedSuccess,
		m.predictCount, m.predictSuccess,
		m.queueSize, m.requestDuration, m.tokenizationDuration, m.queueDuration, m.inferenceDuration,
		m.inputLength, m.batchSize, m.batchTokens)
	for _, d := range []inputDurations{m.embedDurations, m.predictDurations} {
		m.registry.MustRegister(d.total, d.tokenization, d.queue, d.inference)
	}
	return m
}

// handler serves the registry in Prometheus's classic text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// fail counts a failure under e's cause, as TEI does at the place it
// arises (once per input for per-input failures); errors TEI does not count
// have no label.
func (m *metrics) fail(e *apiError) {
	if e.metric != "" {
		m.requestFailure.WithLabelValues(e.metric).Inc()
	}
}
