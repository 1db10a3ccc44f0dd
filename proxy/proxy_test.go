package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fast are simulator flags that make batches free, for quick tests.
var fast = []string{"--sim-batch-cost", "0s", "--sim-token-cost", "0s"}

// startSim starts a simulator with args plus fast timing.
func startSim(t *testing.T, args ...string) (*teisim.Server, string) {
	t.Helper()
	return teisim.Start(t, append(append([]string{}, fast...), args...)...)
}

// startProxy starts the proxy for cfg over a real socket, connected to its
// upstreams.
func startProxy(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	srv, err := New(cfg, slog.New(slog.NewTextHandler(testLogOut, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	// Connect returns once each pool has a ready replica; tests of several
	// replicas want every static one probed before they start.
	for _, p := range srv.pools() {
		waitUntil(t, 10*time.Second, func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, r := range p.replicas {
				if r.state == stateStarting && !isDiscovered(r.source) {
					return false
				}
			}
			return true
		})
	}
	return srv, hs.URL
}

// testConfig is DefaultConfig pointed at embedURL.
func testConfig(embedURL string) Config {
	cfg := DefaultConfig()
	cfg.EmbedURLs = []string{embedURL}
	cfg.StartupTimeout = 5 * time.Second
	return cfg
}

// post sends body as JSON and returns status, headers and body. It calls
// t.Fatal: use tryPost from other goroutines.
func post(t testing.TB, url, path, body string) (int, http.Header, []byte) {
	t.Helper()
	st, h, b, err := tryPost(url, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return st, h, b
}

// tryPost is post for goroutines other than the test's: it returns the
// error instead of failing the test.
func tryPost(url, path, body string) (int, http.Header, []byte, error) {
	resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// inputsJSON is the body {"inputs": v}.
func inputsJSON(v any) string {
	b, _ := json.Marshal(map[string]any{"inputs": v})
	return string(b)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAnswersEqualTEIByteForByte sends the same requests to TEI and to the
// proxy, twice (a miss, then a hit), and wants identical bodies.
func TestAnswersEqualTEIByteForByte(t *testing.T) {
	_, dense := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, splade := startSim(t, "--model-id", "naver/splade-v3")
	_, ranker := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	_, pd := startProxy(t, testConfig(dense))
	_, ps := startProxy(t, testConfig(splade))
	rcfg := testConfig(dense)
	rcfg.RerankURLs = []string{ranker}
	_, pr := startProxy(t, rcfg)

	tests := []struct {
		name, tei, proxy, path, body string
	}{
		{"one string", dense, pd, "/embed", `{"inputs":"What is machine learning?"}`},
		{"batch", dense, pd, "/embed", `{"inputs":["a b c","d e f","a b c"]}`},
		{"not normalized", dense, pd, "/embed", `{"inputs":["a b c"],"normalize":false}`},
		{"dimensions", dense, pd, "/embed", `{"inputs":["a b c"],"dimensions":16}`},
		{"left truncation", dense, pd, "/embed", `{"inputs":["` + strings.Repeat("word ", 600) + `"],"truncate":true,"truncation_direction":"Left"}`},
		{"token ids", dense, pd, "/embed", `{"inputs":[101,2054,2003,102]}`},
		{"mixed ids and text", dense, pd, "/embed", `{"inputs":["x y",[101,2054,102]]}`},
		{"root route", dense, pd, "/", `{"inputs":"root route"}`},
		{"sparse", splade, ps, "/embed_sparse", `{"inputs":["sparse text","more sparse"]}`},
		{"rerank", ranker, pr, "/rerank", `{"query":"what is deep learning","texts":["deep learning is","cooking pasta","learning"]}`},
		{"rerank raw with text", ranker, pr, "/rerank", `{"query":"deep","texts":["deep","shallow"],"raw_scores":true,"return_text":true}`},
		{"tokenize", dense, pd, "/tokenize", `{"inputs":"hello world"}`},
		{"too long refused", dense, pd, "/embed", `{"inputs":"` + strings.Repeat("word ", 600) + `","truncate":false}`},
		{"bad dimensions", dense, pd, "/embed", `{"inputs":"x","dimensions":100000}`},
		{"rerank on embedding model", dense, pd, "/rerank", `{"query":"q","texts":["a"]}`},
		{"sparse on dense model", dense, pd, "/embed_sparse", `{"inputs":"x"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, wb := post(t, tc.tei, tc.path, tc.body)
			for _, round := range []string{"miss", "hit"} {
				gs, _, gb := post(t, tc.proxy, tc.path, tc.body)
				if gs != ws || !bytes.Equal(gb, wb) {
					t.Fatalf("%s: proxy answered %d %.200s\nTEI answered %d %.200s", round, gs, gb, ws, wb)
				}
			}
		})
	}
}

// TestPartialHitSendsOnlyDistinctMisses checks, with TEI's own counter,
// that a request mixing hits, misses and duplicates embeds only its
// distinct misses, and answers in input order.
func TestPartialHitSendsOnlyDistinctMisses(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, p := startProxy(t, testConfig(url))

	if st, _, b := post(t, p, "/embed", `{"inputs":["a","b"]}`); st != 200 {
		t.Fatalf("warm-up: %d %s", st, b)
	}
	before := sim.EmbedCount()
	inputs := []string{"a", "x", "b", "x", "y", "a"}
	st, _, b := post(t, p, "/embed", mustJSON(t, map[string]any{"inputs": inputs}))
	if st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	if got := sim.EmbedCount() - before; got != 2 {
		t.Errorf("TEI embedded %d inputs, want 2 (x and y)", got)
	}
	checkVectors(t, sim, inputs, b)
}

// checkVectors asserts that body's i-th vector is TEI's embedding of
// inputs[i].
func checkVectors(t *testing.T, sim *teisim.Server, inputs []string, body []byte) {
	t.Helper()
	var got [][]float32
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %.200s", err, body)
	}
	if len(got) != len(inputs) {
		t.Fatalf("%d vectors for %d inputs", len(got), len(inputs))
	}
	for i, in := range inputs {
		want := sim.Embedding(in, true)
		if fmt.Sprint(got[i]) != fmt.Sprint(want) {
			t.Fatalf("vector %d is not TEI's embedding of %q", i, in)
		}
	}
}

// TestSplitsLargeBatches sends 100 inputs to a TEI that takes 32 at a time.
func TestSplitsLargeBatches(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "32")
	_, p := startProxy(t, testConfig(url))
	before := sim.EmbedCount()
	inputs := make([]string, 100)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("text number %d", i)
	}
	st, _, b := post(t, p, "/embed", mustJSON(t, map[string]any{"inputs": inputs}))
	if st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	checkVectors(t, sim, inputs, b)
	if got := sim.EmbedCount() - before; got != 100 {
		t.Errorf("TEI embedded %d inputs, want 100", got)
	}
}

// TestSplitsLargeRerank reranks 20 texts against a TEI that takes 8 at a
// time and wants the answer of a TEI that takes all 20 at once.
func TestSplitsLargeRerank(t *testing.T) {
	_, small := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3", "--max-client-batch-size", "8")
	_, big := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3", "--max-client-batch-size", "32")
	cfg := testConfig(small)
	cfg.RerankURLs = []string{small}
	_, p := startProxy(t, cfg)
	texts := make([]string, 20)
	for i := range texts {
		texts[i] = fmt.Sprintf("passage %d about %s", i, []string{"deep learning", "cooking", "learning machines", "travel"}[i%4])
	}
	body := mustJSON(t, map[string]any{"query": "what is deep learning", "texts": texts, "return_text": true})
	ws, _, want := post(t, big, "/rerank", body)
	gs, _, got := post(t, p, "/rerank", body)
	if ws != 200 || gs != 200 {
		t.Fatalf("TEI %d %s; proxy %d %s", ws, want, gs, got)
	}
	type rank struct {
		Index int     `json:"index"`
		Score float64 `json:"score"`
		Text  string  `json:"text"`
	}
	var w, g []rank
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if len(g) != 20 {
		t.Fatalf("%d results, want 20", len(g))
	}
	for i := range g {
		if g[i].Text != texts[g[i].Index] {
			t.Fatalf("result %d: index %d carries text %q", i, g[i].Index, g[i].Text)
		}
		if i > 0 && g[i].Score > g[i-1].Score {
			t.Fatalf("not sorted at %d", i)
		}
	}
	scores := map[int]float64{}
	for _, r := range w {
		scores[r.Index] = r.Score
	}
	for _, r := range g {
		if scores[r.Index] != r.Score {
			t.Errorf("text %d: score %v, TEI gives %v", r.Index, r.Score, scores[r.Index])
		}
	}
}

// TestBadInput sends malformed requests; each gets TEI's status and shape
// and reaches TEI never.
func TestBadInput(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	cfg := testConfig(url)
	cfg.BodyLimit = 1000
	_, p := startProxy(t, cfg)
	tests := []struct {
		name, ctype, body string
		status            int
		json              bool
		errType           string
	}{
		{"malformed", "application/json", `{"inputs":`, 400, false, ""},
		{"wrong type", "application/json", `{"inputs":42}`, 422, false, ""},
		{"object input", "application/json", `{"inputs":[{"a":1}]}`, 422, false, ""},
		{"missing inputs", "application/json", `{}`, 422, false, ""},
		{"empty list", "application/json", `{"inputs":[]}`, 400, true, "Empty"},
		{"empty string", "application/json", `{"inputs":""}`, 400, true, "Empty"},
		{"empty string in batch", "application/json", `{"inputs":["a",""]}`, 400, true, "Empty"},
		{"invalid utf-8", "application/json", "{\"inputs\":\"\xff\xfe\"}", 400, false, ""},
		{"too large", "application/json", `{"inputs":"` + strings.Repeat("a", 2000) + `"}`, 413, false, ""},
		{"wrong content type", "text/plain", `{"inputs":"a"}`, 415, false, ""},
		{"bad direction", "application/json", `{"inputs":"a","truncation_direction":"Up"}`, 422, false, ""},
		{"negative ids", "application/json", `{"inputs":[1,-2]}`, 422, false, ""},
		{"huge array of numbers", "application/json", `{"inputs":[` + strings.Repeat("1,", 400) + `1]}`, 200, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := sim.EmbedCount()
			resp, err := http.Post(p+"/embed", tc.ctype, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, b, tc.status)
			}
			isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
			if isJSON != tc.json {
				t.Errorf("content type %q for %s", resp.Header.Get("Content-Type"), b)
			}
			if tc.errType != "" {
				var e teiErrorBody
				if err := json.Unmarshal(b, &e); err != nil || e.ErrorType != tc.errType || e.Error == "" {
					t.Errorf("body %s, want error_type %s", b, tc.errType)
				}
			}
			if tc.status != 200 && sim.EmbedCount() != before {
				t.Errorf("a refused request reached TEI")
			}
		})
	}
}

// TestRetriesBackPressureThenPassesItOn makes TEI answer 429 to everything:
// the proxy retries within the deadline, then answers 429 with Retry-After.
func TestRetriesBackPressureThenPassesItOn(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	cfg := testConfig(url)
	cfg.RequestTimeout = 400 * time.Millisecond
	srv, p := startProxy(t, cfg)
	sim.SetFault(teisim.Fault{ErrorRate: 1, ErrorStatus: 429})
	st, h, b := post(t, p, "/embed", `{"inputs":"storm"}`)
	if st != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("got %d (Retry-After %q) %s, want 429 with Retry-After", st, h.Get("Retry-After"), b)
	}
	var e teiErrorBody
	if err := json.Unmarshal(b, &e); err != nil || e.ErrorType != "Overloaded" {
		t.Errorf("body %s", b)
	}
	if n := counterValue(t, srv, "sidecar_upstream_retries_total"); n < 1 {
		t.Errorf("retries = %v, want some", n)
	}
	// Back-pressure is not a failure of TEI: the breaker stays closed.
	if st := breakerState(srv.embedP); st != "closed" {
		t.Errorf("breaker %s after a 429 storm", st)
	}
	sim.SetFault(teisim.Fault{})
	if st, _, b := post(t, p, "/embed", `{"inputs":"storm"}`); st != 200 {
		t.Fatalf("after the storm: %d %s", st, b)
	}
}

// TestAdmissionQueueBound lets no input wait: with TEI allowing 2 inputs in
// flight, concurrent excess gets the proxy's own 429, never TEI's.
func TestAdmissionQueueBound(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "2",
		"--sim-batch-cost", "200ms", "--sim-token-cost", "0s")
	cfg := testConfig(url)
	cfg.QueueInputs = 0
	cfg.CacheSize = 0
	_, p := startProxy(t, cfg)
	statuses := make(chan int, 6)
	for i := range 6 {
		go func() {
			st, _, _, err := tryPost(p, "/embed", inputsJSON(fmt.Sprintf("text %d", i)))
			if err != nil {
				t.Error(err)
			}
			statuses <- st
		}()
	}
	counts := map[int]int{}
	for range 6 {
		counts[<-statuses]++
	}
	if counts[200] < 1 || counts[429] < 1 || counts[200]+counts[429] != 6 {
		t.Errorf("statuses %v, want some 200 and some 429", counts)
	}
	if n := simMetric(t, url, "te_request_failure"); n != 0 {
		t.Errorf("TEI refused %v requests; the proxy should have held them back", n)
	}
}

// TestAdmissionQueueWaits lets inputs wait: all succeed.
func TestAdmissionQueueWaits(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "2",
		"--sim-batch-cost", "20ms", "--sim-token-cost", "0s")
	cfg := testConfig(url)
	cfg.CacheSize = 0
	_, p := startProxy(t, cfg)
	statuses := make(chan int, 8)
	for i := range 8 {
		go func() {
			st, _, _, err := tryPost(p, "/embed", inputsJSON([]string{fmt.Sprintf("a %d", i), fmt.Sprintf("b %d", i)}))
			if err != nil {
				t.Error(err)
			}
			statuses <- st
		}()
	}
	for range 8 {
		if st := <-statuses; st != 200 {
			t.Errorf("status %d, want 200", st)
		}
	}
}

// TestCoalescesIdenticalMisses sends the same new text from many requests
// at once; TEI embeds it once.
func TestCoalescesIdenticalMisses(t *testing.T) {
	sim, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-batch-cost", "150ms", "--sim-token-cost", "0s")
	srv, p := startProxy(t, testConfig(url))
	before := sim.EmbedCount()
	done := make(chan int, 5)
	for range 5 {
		go func() {
			st, _, _, err := tryPost(p, "/embed", `{"inputs":["same text","same text"]}`)
			if err != nil {
				t.Error(err)
			}
			done <- st
		}()
	}
	for range 5 {
		if st := <-done; st != 200 {
			t.Errorf("status %d", st)
		}
	}
	if n := sim.EmbedCount() - before; n != 1 {
		t.Errorf("TEI embedded %d inputs, want 1", n)
	}
	if n := counterValue(t, srv, "sidecar_coalesced_inputs_total"); n < 1 {
		t.Errorf("coalesced = %v", n)
	}
}

// counterValue reads one metric's summed value from the server's registry.
func counterValue(t testing.TB, s *Server, name string) float64 {
	t.Helper()
	mfs, err := s.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// restartable serves h on a fixed loopback address that can be closed and
// opened again, as a TEI that stops and comes back.
type restartable struct {
	addr string
	h    http.Handler
	srv  *httptest.Server
}

func newRestartable(t testing.TB, h http.Handler) *restartable {
	r := &restartable{h: h}
	r.srv = httptest.NewServer(h)
	r.addr = r.srv.Listener.Addr().String()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *restartable) url() string { return "http://" + r.addr }

func (r *restartable) stop() {
	if r.srv != nil {
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.srv = nil
	}
}

func (r *restartable) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewUnstartedServer(r.h)
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
}

// simMetric sums the samples of one metric in TEI's /metrics text.
func simMetric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// TestBreakerOpensAndRecovers stops TEI under load: the breaker opens,
// cached texts keep answering, misses fail fast with 503, /ready drops;
// when TEI comes back the proxy recovers by itself.
func TestBreakerOpensAndRecovers(t *testing.T) {
	testLogOut = os.Stderr
	defer func() { testLogOut = io.Discard }()
	sim, err := teisim.New(mustParse(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-batch-cost", "0s", "--sim-token-cost", "0s"))
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tei := newRestartable(t, sim.Handler())
	cfg := testConfig(tei.url())
	cfg.BreakerFailures = 3
	cfg.BreakerOpenFor = 300 * time.Millisecond
	cfg.RequestTimeout = 2 * time.Second
	srv, p := startProxy(t, cfg)

	if st, _, b := post(t, p, "/embed", `{"inputs":"cached text"}`); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	if st := get(t, p, "/ready"); st != 200 {
		t.Fatalf("/ready = %d before the outage", st)
	}

	tei.stop()
	// Concurrent load while TEI is gone: misses fail; the breaker opens.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3 {
				if _, _, _, err := tryPost(p, "/embed", fmt.Sprintf(`{"inputs":"miss %d %d"}`, w, i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if st := breakerState(srv.embedP); st != "open" {
		t.Fatalf("breaker %s after TEI stopped", st)
	}
	start := time.Now()
	st, h, b := post(t, p, "/embed", `{"inputs":"another miss"}`)
	if st != 503 || h.Get("Retry-After") == "" {
		t.Errorf("miss while open: %d %s (Retry-After %q), want 503 with Retry-After", st, b, h.Get("Retry-After"))
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("miss while open took %v; want a fast failure", d)
	}
	var e teiErrorBody
	if json.Unmarshal(b, &e) != nil || e.ErrorType != "Unhealthy" {
		t.Errorf("body %s, want TEI's error shape", b)
	}
	if st, _, b := post(t, p, "/embed", `{"inputs":"cached text"}`); st != 200 {
		t.Errorf("cached text while open: %d %s", st, b)
	}
	if st := get(t, p, "/ready"); st != 503 {
		t.Errorf("/ready = %d while TEI is down", st)
	}

	tei.start(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _, _ := post(t, p, "/embed", `{"inputs":"after recovery"}`)
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: last status %d", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := breakerState(srv.embedP); st != "closed" {
		t.Errorf("breaker %s after recovery", st)
	}
	if st := get(t, p, "/ready"); st != 200 {
		t.Errorf("/ready = %d after recovery", st)
	}
}

func mustParse(t testing.TB, args ...string) teisim.Config {
	t.Helper()
	cfg, err := teisim.ParseArgs(args, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func get(t *testing.T, url, path string) int {
	t.Helper()
	resp, err := http.Get(url + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

var testLogOut io.Writer = io.Discard

// TestSetDown marks TEI down as a supervisor would: misses fail fast with
// 503, hits still answer, /ready says why; marking it up restores service.
func TestSetDown(t *testing.T) {
	_, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	srv, p := startProxy(t, testConfig(url))
	if st, _, b := post(t, p, "/embed", `{"inputs":"kept"}`); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	srv.SetDown("embed", "", "container exited with code 137")
	if st, h, b := post(t, p, "/embed", `{"inputs":"new"}`); st != 503 || h.Get("Retry-After") == "" {
		t.Errorf("miss while down: %d %s", st, b)
	}
	if st, _, _ := post(t, p, "/embed", `{"inputs":"kept"}`); st != 200 {
		t.Errorf("hit while down: %d", st)
	}
	// /ready is open to anyone: it names the state, not the details.
	if st, b := getBody(t, p, "/ready"); st != 503 || !strings.Contains(b, "1 down") || !strings.Contains(b, "exited with code 137") {
		t.Errorf("/ready while down: %d %s", st, b)
	}
	if st, b := getBody(t, p, "/status"); st != 200 || !strings.Contains(b, "exited with code 137") {
		t.Errorf("/status while down: %d %s", st, b)
	}
	srv.SetDown("embed", "", "")
	if st, _, b := post(t, p, "/embed", `{"inputs":"new"}`); st != 200 {
		t.Errorf("after up: %d %s", st, b)
	}
}

// TestNotReadyUntilEveryUpstreamConnected is a regression test: /ready said
// ready once the embedding TEI was connected, while the reranker was not.
func TestNotReadyUntilEveryUpstreamConnected(t *testing.T) {
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	rsim, err := teisim.New(mustParse(t, append(fast, "--model-id", "BAAI/bge-reranker-v2-m3")...))
	if err != nil {
		t.Fatal(err)
	}
	defer rsim.Close()
	rank := newRestartable(t, rsim.Handler())
	rank.stop() // the reranker is still loading its model
	cfg := testConfig(emb)
	cfg.RerankURLs = []string{rank.url()}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	if err := srv.embedP.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := get(t, hs.URL, "/ready"); st != 503 {
		t.Errorf("/ready = %d with the reranker not connected, want 503", st)
	}
	// The embedding model serves meanwhile; rerank says it is starting.
	if st, _, b := post(t, hs.URL, "/embed", `{"inputs":"early"}`); st != 200 {
		t.Errorf("/embed while the reranker starts: %d %s", st, b)
	}
	if st, h, _ := post(t, hs.URL, "/rerank", `{"query":"q","texts":["a"]}`); st != 503 || h.Get("Retry-After") == "" {
		t.Errorf("/rerank while the reranker starts: %d, want 503 with Retry-After", st)
	}
	rank.start(t)
	if err := srv.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := get(t, hs.URL, "/ready"); st != 200 {
		t.Errorf("/ready = %d once connected, want 200", st)
	}
}

// getBody GETs path and returns the status and body.
func getBody(t *testing.T, url, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// breakerState is the state of the breaker of p's first replica.
func breakerState(p *pool) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replicas[0].breaker.State().String()
}
