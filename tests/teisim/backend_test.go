package teisim_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// send posts body in the background and delivers the status (0 when the
// request failed) without touching t, so it is safe from a goroutine.
func send(ctx context.Context, url, body string) <-chan int {
	done := make(chan int, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			done <- 0
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	return done
}

// waitFor polls cond until it holds, failing the test after a generous
// bound; it orders steps, it does not time them.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestHealthWaitsForBackend checks that /health needs a backend worker, as
// TEI's health command needs its backend thread: with the only worker busy
// on a batch, the check waits; with a second worker free, it answers.
func TestHealthWaitsForBackend(t *testing.T) {
	for _, tt := range []struct {
		workers string
		waits   bool
	}{
		{"1", true},
		{"2", false},
	} {
		t.Run("workers "+tt.workers, func(t *testing.T) {
			// A batch that takes an hour stays in progress for the test.
			s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-batch-cost", "1h", "--sim-workers", tt.workers)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			embed := send(ctx, url+"/embed", `{"inputs": "a"}`)
			waitFor(t, "the batch starts", func() bool {
				return metricValue(scrape(t, url), "te_batch_next_size", "", "") == 1
			})

			health := make(chan int, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					health <- 0
					return
				}
				resp.Body.Close()
				health <- resp.StatusCode
			}()
			if !tt.waits {
				if status := <-health; status != http.StatusOK {
					t.Errorf("/health with a free worker: %d, want 200", status)
				}
				cancel()
				<-embed
				return
			}
			waitFor(t, "the health check queues for the worker", func() bool {
				_, checks := s.Backlog()
				return checks == 1
			})
			select {
			case status := <-health:
				t.Fatalf("/health answered %d while the only worker ran a batch", status)
			default:
			}
			cancel()
			<-embed
			<-health
		})
	}
}

// TestBackendFailureFailsBatch checks that a backend failure fails every
// request with an input in the failing batch, not only the request that
// caused it, and that requests in other batches are spared.
func TestBackendFailureFailsBatch(t *testing.T) {
	const marker = "POISON"
	tests := []struct {
		name     string
		args     []string
		innocent int // status of the request without the marker
	}{
		{"shared batch", nil, http.StatusFailedDependency},
		{"one entry per batch", []string{"--max-batch-requests", "1"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := start(t, append([]string{"--model-id", "BAAI/bge-small-en-v1.5", "--sim-error-marker", marker}, tt.args...)...)
			release := s.HoldBatches()
			innocent := send(t.Context(), url+"/embed", `{"inputs": "innocent"}`)
			waitFor(t, "the innocent input queues", func() bool { n, _ := s.Backlog(); return n == 1 })
			poisoned := send(t.Context(), url+"/embed", `{"inputs": "a `+marker+` text"}`)
			waitFor(t, "the poisoned input queues", func() bool { n, _ := s.Backlog(); return n == 2 })
			release()
			if got := <-innocent; got != tt.innocent {
				t.Errorf("innocent request: %d, want %d", got, tt.innocent)
			}
			if got := <-poisoned; got != http.StatusFailedDependency {
				t.Errorf("poisoned request: %d, want 424", got)
			}
			if r := post(t, url+"/embed", map[string]any{"inputs": "later"}); r.status != http.StatusOK {
				t.Errorf("a later batch: %d %s", r.status, r.body)
			}
		})
	}
}

// TestErrorPerBatch checks the per-batch dice: failures are the backend's
// (424) and leave /health failing until a probe succeeds.
func TestErrorPerBatch(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-error-rate", "1", "--sim-error-per-batch")
	r := post(t, url+"/embed", map[string]any{"inputs": []string{"a", "b"}})
	if r.status != http.StatusFailedDependency || decode[teiError](t, r) != (teiError{"Backend error: Inference failed (injected by teisim)", "Backend"}) {
		t.Fatalf("/embed: %d %s", r.status, r.body)
	}
	if r := get(t, url+"/health"); r.status != http.StatusServiceUnavailable {
		t.Errorf("/health after a failed batch, probe failing too: %d, want 503", r.status)
	}
	s.SetFault(teisim.Fault{})
	if r := get(t, url+"/health"); r.status != http.StatusOK {
		t.Errorf("/health once the probe passes: %d, want 200", r.status)
	}
	if r := post(t, url+"/embed", map[string]any{"inputs": "a"}); r.status != http.StatusOK {
		t.Errorf("/embed after recovery: %d", r.status)
	}
	if got := metricValue(scrape(t, url), "te_request_failure", "err", "inference"); got != 2 {
		t.Errorf("te_request_failure{err=inference} = %v, want 2 (one per input)", got)
	}
}

// TestCPUBackendBatches checks --sim-backend: the CPU backends cap a batch
// at 4 (candle) or 8 (ONNX Runtime) entries and count padding against the
// token budget; the CUDA backend does neither.
func TestCPUBackendBatches(t *testing.T) {
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = fmt.Sprintf(`"text %d"`, i)
	}
	tests := []struct {
		name    string
		args    []string
		body    string
		batches float64
	}{
		{"candle caps at 4", []string{"--sim-backend", "candle"}, `{"inputs": [` + strings.Join(nine, ",") + `]}`, 3},
		{"ort caps at 8", []string{"--sim-backend", "ort"}, `{"inputs": [` + strings.Join(nine, ",") + `]}`, 2},
		{"cuda has no cap", []string{"--sim-backend", "cuda"}, `{"inputs": [` + strings.Join(nine, ",") + `]}`, 1},
		// 3 + 3 + 8 tokens fit 16 unpadded, but padded to 8 each they do not.
		{"candle pads", []string{"--sim-backend", "candle", "--max-batch-tokens", "16"}, `{"inputs": ["a", "b", "` + words(0, 6) + `"]}`, 2},
		{"cuda does not pad", []string{"--sim-backend", "cuda", "--max-batch-tokens", "16"}, `{"inputs": ["a", "b", "` + words(0, 6) + `"]}`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := start(t, append([]string{"--model-id", "acme/encoder", "--sim-max-input-length", "16"}, tt.args...)...)
			// Hold the backend so all inputs queue before the first batch.
			release := s.HoldBatches()
			var wg sync.WaitGroup
			var status int
			wg.Go(func() { status = <-send(t.Context(), url+"/embed", tt.body) })
			waitFor(t, "all inputs queue", func() bool { n, _ := s.Backlog(); return n > 0 })
			release()
			wg.Wait()
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			if got := metricValue(scrape(t, url), "te_batch_next_size", "", ""); got != tt.batches {
				t.Errorf("%v batches, want %v", got, tt.batches)
			}
		})
	}
}
