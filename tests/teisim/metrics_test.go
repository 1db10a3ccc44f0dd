package teisim_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape parses /metrics as Prometheus does, failing on text it would refuse.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	r := get(t, url+"/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v\n%s", err, r.body)
	}
	return fams
}

// counter returns the value of the counter with the given label, or of the
// only series when label is "".
func counter(t *testing.T, fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no %s", name)
	}
	for _, m := range fam.GetMetric() {
		if label == "" {
			return m.GetCounter().GetValue()
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4")

	// TEI's /metrics is empty until the first request.
	if fams := scrape(t, url); len(fams) != 0 {
		t.Errorf("before any request: %d families", len(fams))
	}

	post(t, url+"/embed", map[string]any{"inputs": "a"})
	post(t, url+"/embed", map[string]any{"inputs": []string{"a", "b", "c"}})
	post(t, url+"/embed", map[string]any{"inputs": []string{"a", "b", "c", "d", "e"}}) // batch_size
	post(t, url+"/v1/embeddings", map[string]any{"input": []string{"a", "b"}})
	post(t, url+"/embed", map[string]any{"inputs": []string{"a", ""}}) // tokenization

	fams := scrape(t, url)
	checks := []struct {
		name, label, value string
		want               float64
	}{
		{"te_request_count", "method", "single", 1},
		{"te_request_count", "method", "batch", 4},
		{"te_request_success", "method", "single", 1},
		{"te_request_success", "method", "batch", 2},
		{"te_request_failure", "err", "batch_size", 1},
		{"te_request_failure", "err", "tokenization", 1},
		// One per input sent to embedding, including the failed pair.
		{"te_embed_count", "", "", 8},
		// The good input of the failed pair is embedded too: TEI runs a
		// batch's inputs independently and answers the first failure.
		{"te_embed_success", "", "", 7},
	}
	for _, c := range checks {
		if got := counter(t, fams, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if got := s.EmbedCount(); got != 8 {
		t.Errorf("EmbedCount() = %d, want 8", got)
	}
	for name := range fams {
		if strings.HasSuffix(name, "_total") {
			t.Errorf("%s: TEI's counters have no _total suffix", name)
		}
	}
	for _, name := range []string{"te_queue_size", "te_request_duration", "te_request_queue_duration", "te_request_inference_duration", "te_request_input_length", "te_batch_next_size", "te_batch_next_tokens",
		"te_embed_duration", "te_embed_tokenization_duration", "te_embed_queue_duration", "te_embed_inference_duration"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// TEI's buckets: powers of two, up to 2^12 entries and up to the
	// model's 512 tokens.
	for _, b := range []struct {
		name        string
		first, last float64
	}{
		{"te_batch_next_size", 1, 4096},
		{"te_batch_next_tokens", 1, 1 << 20},
		{"te_request_input_length", 1, 512},
	} {
		buckets := fams[b.name].GetMetric()[0].GetHistogram().GetBucket()
		// The text format ends with the +Inf bucket.
		if first, last := buckets[0].GetUpperBound(), buckets[len(buckets)-2].GetUpperBound(); first != b.first || last != b.last {
			t.Errorf("%s buckets %v..%v, want %v..%v", b.name, first, last, b.first, b.last)
		}
	}
}
