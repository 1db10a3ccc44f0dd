package proxy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// These tests stand on the simulator's strictness: where TEI is harsh, the
// proxy must cope rather than rely on a lenient stand-in.

// TestNaNIsNeverCached is a regression test: TEI writes a NaN embedding as
// nulls and the proxy cached TEI's bytes unchecked, so the bad vector was
// served again from the cache (and as base64 of garbage). Such an input is
// answered 424 in each face's shape, counted, and never cached; the other
// inputs of the call are served.
func TestNaNIsNeverCached(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	srv, p := startProxy(t, testConfig(url))
	sim.SetFault(teisim.Fault{NaNMarker: "unstable"})
	if st, _, b := post(t, p, "/embed", `{"inputs":["fine text","an unstable text"]}`); st != 424 || !strings.Contains(string(b), "non-finite") {
		t.Errorf("/embed with a NaN input: %d %s, want 424", st, b)
	}
	st, _, b := post(t, p, "/v1/embeddings", `{"input":"an unstable text","model":"BAAI/bge-small-en-v1.5","encoding_format":"base64"}`)
	if st != 502 || !strings.Contains(string(b), `"type":"server_error"`) {
		t.Errorf("/v1/embeddings with a NaN input: %d %s, want 502 server_error", st, b)
	}
	if n := counterValue(t, srv, "sidecar_nonfinite_embeddings_total"); n != 2 {
		t.Errorf("%v non-finite embeddings counted, want 2", n)
	}
	// The good input of the first call was cached; the bad one was not.
	sim.SetFault(teisim.Fault{})
	before := sim.EmbedCount()
	st, _, b = post(t, p, "/embed", `{"inputs":["fine text","an unstable text"]}`)
	if st != 200 {
		t.Fatalf("after the fault: %d %s", st, b)
	}
	checkVectors(t, sim, []string{"fine text", "an unstable text"}, b)
	if n := sim.EmbedCount() - before; n != 1 {
		t.Errorf("TEI embedded %d inputs, want 1 (the NaN one, never cached)", n)
	}
}

// TestBatchFailureIsSplit: TEI fails every request of a backend batch when
// one input breaks it. Inputs of several requests batched by the proxy
// into one call are tried again alone, so only the request holding the bad
// input fails.
func TestBatchFailureIsSplit(t *testing.T) {
	sim, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "1",
		"--sim-batch-cost", "100ms", "--sim-token-cost", "0s")
	_, p := startProxy(t, testConfig(url))
	sim.SetFault(teisim.Fault{ErrorMarker: "poison", ErrorPerBatch: true})
	bodies := []string{`{"inputs":"takes the permit"}`, `{"inputs":"poison pill"}`, `{"inputs":"innocent neighbour"}`}
	statuses := make([]int, len(bodies))
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, _, err := tryPost(p, "/embed", body)
			if err != nil {
				t.Error(err)
			}
			statuses[i] = st
		}()
		time.Sleep(30 * time.Millisecond)
	}
	wg.Wait()
	if statuses[0] != 200 || statuses[1] != 424 || statuses[2] != 200 {
		t.Errorf("statuses %v, want [200 424 200]", statuses)
	}
}

// TestRerankNeverProvokesTEI429: TEI takes /rerank's permits one input at
// a time inside the handler, so a 429 there comes after the admitted
// inputs ran: retrying it costs real work. The proxy sizes rerank chunks
// to the permits it knows are free, so TEI never refuses one.
func TestRerankNeverProvokesTEI429(t *testing.T) {
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "8")
	_, rank := teisim.Start(t, "--model-id", "BAAI/bge-reranker-v2-m3", "--max-concurrent-requests", "8",
		"--max-client-batch-size", "32", "--sim-batch-cost", "5ms", "--sim-token-cost", "0s")
	cfg := testConfig(emb)
	cfg.RerankURLs = []string{rank}
	cfg.CacheSize, cfg.RerankCacheSize = 0, 0
	_, p := startProxy(t, cfg)
	texts := make([]string, 20)
	for i := range texts {
		texts[i] = fmt.Sprintf("passage %d", i)
	}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				body := fmt.Sprintf(`{"query":"query %d %d","texts":%s}`, w, i, mustMarshal(texts))
				if st, _, b, err := tryPost(p, "/rerank", body); err != nil || st != 200 {
					t.Errorf("rerank: %d %s %v", st, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := simMetric(t, rank, "te_request_success"); n < 30 {
		t.Fatalf("TEI counts %v successful reranks, want at least 30: is the metric read right?", n)
	}
	if n := simMetricWith(t, rank, "te_request_failure", "overloaded"); n != 0 {
		t.Errorf("TEI refused %v rerank inputs for lack of permits", n)
	}
}

// TestReadyToleratesBusyTEI: TEI answers /health on its backend thread,
// after the batch in progress, so a busy CPU TEI answers it late. A TEI
// that answered a call recently is alive: /ready stays 200 while a long
// batch runs, instead of reporting it dead.
func TestReadyToleratesBusyTEI(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-batch-cost", "3s", "--sim-token-cost", "0s")
	cfg := testConfig(url)
	cfg.CacheSize = 0
	_, p := startProxy(t, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2 {
			if st, _, b, err := tryPost(p, "/embed", fmt.Sprintf(`{"inputs":"long batch %d"}`, i)); err != nil || st != 200 {
				t.Errorf("embed: %d %s %v", st, b, err)
			}
		}
	}()
	time.Sleep(3500 * time.Millisecond) // the first call answered; the second batch runs
	start := time.Now()
	if st, b := getBody(t, p, "/ready"); st != 200 {
		t.Errorf("/ready while TEI is busy: %d %s", st, b)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("/ready waited %v behind TEI's batch", d)
	}
	<-done
}

func mustMarshal(v any) string {
	b := inputsJSON(v)
	return strings.TrimSuffix(strings.TrimPrefix(b, `{"inputs":`), "}")
}

// simMetricWith sums TEI's samples of name whose labels contain value.
func simMetricWith(t *testing.T, url, name, value string) float64 {
	t.Helper()
	_, text := getBody(t, url, "/metrics")
	sum := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `"`+value+`"`) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}
