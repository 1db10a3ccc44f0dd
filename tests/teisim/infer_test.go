package teisim_test

import (
	"net/http"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// metricValue returns a counter's value, or a histogram's sample count, for
// the series with the given label ("" for the only one), 0 when absent.
func metricValue(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	fam, ok := fams[name]
	if !ok {
		return 0
	}
	for _, m := range fam.GetMetric() {
		match := label == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				match = true
			}
		}
		if !match {
			continue
		}
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	return 0
}

// TestAdmission checks where TEI takes its per-input permits: /embed takes
// all of a request's permits before any work (429 costs nothing), while
// /rerank and batched /predict take one per input inside their futures, so
// the inputs that got one are tokenized, batched and counted before the 429.
func TestAdmission(t *testing.T) {
	tests := []struct {
		name string
		args []string
		path string
		body any
		// Counters after the one 429.
		count, success, overloaded, batches float64
		countName                           string
	}{
		{
			name: "embed is all or nothing", args: []string{"--model-id", "BAAI/bge-small-en-v1.5"},
			path: "/embed", body: map[string]any{"inputs": []string{"a", "b", "c", "d", "e"}},
			countName: "te_embed_count", count: 0, success: 0, overloaded: 1, batches: 0,
		},
		{
			name: "OpenAI is all or nothing", args: []string{"--model-id", "BAAI/bge-small-en-v1.5"},
			path: "/v1/embeddings", body: map[string]any{"input": []string{"a", "b", "c"}},
			countName: "te_embed_count", count: 0, success: 0, overloaded: 1, batches: 0,
		},
		{
			name: "rerank runs the admitted texts", args: []string{"--model-id", "BAAI/bge-reranker-base"},
			path: "/rerank", body: map[string]any{"query": "q", "texts": []string{"a", "b", "c", "d", "e"}},
			countName: "te_predict_count", count: 2, success: 2, overloaded: 3, batches: 1,
		},
		{
			name: "batched predict runs the admitted inputs", args: []string{"--model-id", "acme/sentiment", "--sim-model-type", "classifier"},
			path: "/predict", body: map[string]any{"inputs": [][]string{{"a"}, {"b"}, {"c"}}},
			countName: "te_predict_count", count: 2, success: 2, overloaded: 1, batches: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := start(t, slices.Concat(tt.args, []string{"--max-concurrent-requests", "2"})...)
			r := post(t, url+tt.path, tt.body)
			if r.status != http.StatusTooManyRequests {
				t.Fatalf("status %d, want 429: %s", r.status, r.body)
			}
			fams := scrape(t, url)
			for _, c := range []struct {
				name, label, value string
				want               float64
			}{
				{tt.countName, "", "", tt.count},
				{tt.countName[:len(tt.countName)-len("count")] + "success", "", "", tt.success},
				{"te_request_failure", "err", "overloaded", tt.overloaded},
				{"te_batch_next_size", "", "", tt.batches},
			} {
				if got := metricValue(fams, c.name, c.label, c.value); got != c.want {
					t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
				}
			}
			// The permits came back: a one-input request gets through.
			if r := post(t, url+tt.path, oneInput(tt.path)); r.status != http.StatusOK {
				t.Errorf("after the 429: %d %s", r.status, r.body)
			}
		})
	}
}

func oneInput(path string) any {
	switch path {
	case "/rerank":
		return map[string]any{"query": "q", "texts": []string{"a"}}
	case "/predict":
		return map[string]any{"inputs": [][]string{{"a"}}}
	case "/v1/embeddings":
		return map[string]any{"input": "a"}
	}
	return map[string]any{"inputs": "a"}
}

// TestEmptyInputTakesPermit checks that "inputs": [] is one empty input, as
// TEI's untagged Input makes it: it takes a permit (429 under full load)
// before the tokenizer refuses it (400), counted as a single request.
func TestEmptyInputTakesPermit(t *testing.T) {
	_, full := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "0")
	for _, c := range []struct{ path, body string }{
		{"/embed", `{"inputs": []}`},
		{"/embed", `{"inputs": ""}`},
		{"/embed", `{"inputs": [[]]}`},
		{"/v1/embeddings", `{"input": []}`},
	} {
		if r := post(t, full+c.path, c.body); r.status != http.StatusTooManyRequests {
			t.Errorf("%s %s under full load: %d %s, want 429", c.path, c.body, r.status, r.body)
		}
	}

	_, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	r := post(t, url+"/embed", `{"inputs": []}`)
	if r.status != http.StatusBadRequest || decode[teiError](t, r) != (teiError{"Input validation error: `inputs` cannot be empty", "Empty"}) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	fams := scrape(t, url)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"te_request_count", "method", "single", 1},
		{"te_request_count", "method", "batch", 0},
		{"te_embed_count", "", "", 1},
		{"te_request_failure", "err", "tokenization", 1},
	} {
		if got := metricValue(fams, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
}

// TestInputsRunIndependently checks that one failing input does not spare
// the others of its request their work, as TEI's per-input futures do not:
// the answer is the first failure, the rest are embedded and counted.
func TestInputsRunIndependently(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	r := post(t, url+"/embed", map[string]any{"inputs": []string{"a", "", "b", ""}})
	if r.status != http.StatusBadRequest {
		t.Fatalf("%d %s", r.status, r.body)
	}
	fams := scrape(t, url)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"te_embed_count", "", "", 4},
		{"te_embed_success", "", "", 2},
		{"te_request_failure", "err", "tokenization", 2},
		{"te_request_success", "method", "batch", 0},
		{"te_batch_next_size", "", "", 1},
	} {
		if got := metricValue(fams, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
}
