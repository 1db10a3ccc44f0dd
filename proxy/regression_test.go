package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// counting wraps a TEI handler and counts the calls per path, so a test
// can tell what reached TEI.
type counting struct {
	h     http.Handler
	mu    sync.Mutex
	paths map[string]int
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.paths[r.URL.Path]++
	c.mu.Unlock()
	c.h.ServeHTTP(w, r)
}

func (c *counting) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[path]
}

// startCounted starts a simulator behind a counting handler.
func startCounted(t *testing.T, args ...string) (*teisim.Server, *counting, string) {
	t.Helper()
	sim, err := teisim.New(mustParse(t, append(append([]string{}, fast...), args...)...))
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{h: sim.Handler(), paths: map[string]int{}}
	hs := httptest.NewServer(c)
	t.Cleanup(func() {
		sim.Close()
		hs.Close()
	})
	return sim, c, hs.URL
}

// TestWrongModelRouteDoesNotOpenBreaker is a regression test: TEI answers
// 424 to /rerank on an embedding model, the breaker counted it as TEI
// failing, and with no reranker configured the rerank pool is the
// embedding pool, so five such calls made every /embed answer 503 for
// BREAKER_OPEN_FOR. Now the proxy answers wrong-model routes itself, in
// TEI's shape, and only TEI failing counts against the breaker.
func TestWrongModelRouteDoesNotOpenBreaker(t *testing.T) {
	_, tei, url := startCounted(t, "--model-id", "BAAI/bge-small-en-v1.5")
	cfg := testConfig(url)
	cfg.BreakerFailures = 2
	srv, p := startProxy(t, cfg)
	for range 10 {
		st, _, b := post(t, p, "/rerank", `{"query":"q","texts":["a","b"]}`)
		if st != 424 || string(b) != `{"error":"Backend error: model is not a re-ranker model","error_type":"Backend"}` {
			t.Fatalf("/rerank on an embedding model: %d %s", st, b)
		}
		if st, _, b := post(t, p, "/embed_sparse", `{"inputs":"x"}`); st != 424 {
			t.Fatalf("/embed_sparse on a dense model: %d %s", st, b)
		}
	}
	if n := tei.count("/rerank") + tei.count("/embed_sparse"); n != 0 {
		t.Errorf("%d wrong-model calls reached TEI, want 0", n)
	}
	if st, _, b := post(t, p, "/embed", `{"inputs":"still served"}`); st != 200 {
		t.Errorf("/embed after wrong-model calls: %d %s", st, b)
	}
	if st := breakerState(srv.embedP); st != "closed" {
		t.Errorf("breaker %s", st)
	}
}

// TestCacheBytesStayExact is a regression test: the cache charged an
// entry's size at insert, but the base64 form added later made eviction
// subtract more, so under OpenAI SDK clients (base64 by default) the byte
// count went negative and stopped bounding memory. The count must equal
// what the live entries hold, and stay within the budget.
func TestCacheBytesStayExact(t *testing.T) {
	_, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	cfg := testConfig(url)
	cfg.CacheSize = 40
	cfg.CacheBytes = 60_000
	srv, p := startProxy(t, cfg)
	for round := range 6 {
		for i := range 30 {
			text := fmt.Sprintf("churn %d", (round*17+i)%70)
			body := fmt.Sprintf(`{"input":%q,"model":"BAAI/bge-small-en-v1.5","encoding_format":"base64"}`, text)
			if round%2 == 1 {
				body = fmt.Sprintf(`{"input":%q,"model":"BAAI/bge-small-en-v1.5"}`, text)
			}
			if st, _, b := post(t, p, "/v1/embeddings", body); st != 200 {
				t.Fatalf("%d %s", st, b)
			}
		}
	}
	_, bytes := srv.cache.stats()
	var held int64
	for _, e := range srv.cache.lru.Values() {
		e.mu.Lock()
		held += e.charged
		e.mu.Unlock()
	}
	if bytes != held || bytes <= 0 || bytes > cfg.CacheBytes {
		t.Errorf("cache counts %d bytes, its entries hold %d, budget %d", bytes, held, cfg.CacheBytes)
	}
}

// TestRerankCacheIsBoundedByBytes is a regression test: the rerank cache
// had no byte limit, and 300 answers of 1.9 MB (return_text) took RSS to
// 1.9 GB while its metric said 577 MB. It is bounded by bytes now, and its
// count is what it holds.
func TestRerankCacheIsBoundedByBytes(t *testing.T) {
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, rank := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	cfg := testConfig(emb)
	cfg.RerankURLs = []string{rank}
	cfg.RerankCacheBytes = 200_000
	srv, p := startProxy(t, cfg)
	texts := make([]string, 8)
	for i := range texts {
		texts[i] = strings.Repeat(fmt.Sprintf("passage %d ", i), 300) // ~3 kB each
	}
	for i := range 40 {
		body := mustJSON(t, map[string]any{"query": fmt.Sprintf("query %d", i), "texts": texts, "return_text": true})
		if st, _, b := post(t, p, "/rerank", body); st != 200 {
			t.Fatalf("%d %.200s", st, b)
		}
	}
	n, bytes := srv.rankCache.stats()
	var held int64
	for _, r := range srv.rankCache.lru.Values() {
		held += r.size
		if int64(len(r.body)) > r.size {
			t.Errorf("an answer of %d bytes is charged %d", len(r.body), r.size)
		}
	}
	if bytes != held || bytes > cfg.RerankCacheBytes || n >= 40 {
		t.Errorf("rerank cache: %d entries, counts %d bytes, holds %d, budget %d", n, bytes, held, cfg.RerankCacheBytes)
	}
}

// TestLastLeaverCancelsTheCall is a regression test: rerank calls ran with
// a detached context that nobody cancelled when every caller left, so a
// stalled TEI held them (and their permits) to the end. Embeds and reranks
// now share one flight table whose last leaver cancels the call.
func TestLastLeaverCancelsTheCall(t *testing.T) {
	for _, route := range []struct{ name, path, body string }{
		{"rerank", "/rerank", `{"query":"q","texts":["a","b"]}`},
		{"embed", "/embed", `{"inputs":"stalled"}`},
	} {
		t.Run(route.name, func(t *testing.T) {
			model := "BAAI/bge-small-en-v1.5"
			if route.name == "rerank" {
				model = "BAAI/bge-reranker-v2-m3"
			}
			sim, url := startSim(t, "--model-id", model)
			cfg := testConfig(url)
			cfg.RequestTimeout = 0
			srv, p := startProxy(t, cfg)
			sim.SetFault(teisim.Fault{Stall: 20 * time.Second})
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p+route.path, strings.NewReader(route.body))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				t.Fatalf("answered %d while TEI stalls", resp.StatusCode)
			}
			// The call is cancelled soon after the only caller left.
			waitUntil(t, 5*time.Second, func() bool { return counterValue(t, srv, "sidecar_upstream_calls_total") == 1 })
			if n := metricWith(t, srv, "sidecar_upstream_calls_total", "outcome", "canceled"); n != 1 {
				t.Errorf("%v cancelled calls, want 1", n)
			}
			// ...and the client's give-up is counted as 499.
			waitUntil(t, 5*time.Second, func() bool {
				return metricWith(t, srv, "sidecar_requests_total", "status", "499") == 1
			})
		})
	}
}

// TestLateJoinerKeepsItsOwnDeadline is a regression test: a request
// joining an identical rerank in flight inherited the first caller's
// deadline, and failed when it passed though its own had not.
func TestLateJoinerKeepsItsOwnDeadline(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	cfg := testConfig(url)
	cfg.RequestTimeout = 2 * time.Second
	_, p := startProxy(t, cfg)
	sim.SetFault(teisim.Fault{Stall: 2600 * time.Millisecond})
	body := `{"query":"q","texts":["a","b","c"]}`
	first := make(chan int, 1)
	go func() {
		st, _, _, err := tryPost(p, "/rerank", body)
		if err != nil {
			t.Error(err)
		}
		first <- st
	}()
	time.Sleep(time.Second)
	st, _, b := post(t, p, "/rerank", body) // its deadline is 1 s after the first's
	if st != 200 {
		t.Errorf("late joiner: %d %s, want 200 (TEI answers before its deadline)", st, b)
	}
	if st := <-first; st == 200 {
		t.Errorf("first caller: 200, though TEI answered after its deadline")
	}
}

// TestAttemptsAreBounded is a regression test: with REQUEST_TIMEOUT=0 a
// TEI answering 429 was retried for ever. Attempts are bounded now.
func TestAttemptsAreBounded(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	cfg := testConfig(url)
	cfg.RequestTimeout = 0
	srv, p := startProxy(t, cfg)
	sim.SetFault(teisim.Fault{ErrorRate: 1, ErrorStatus: 429})
	st, h, b := post(t, p, "/rerank", `{"query":"q","texts":["a"]}`)
	if st != 429 || h.Get("Retry-After") == "" {
		t.Errorf("%d %s (Retry-After %q), want 429 with Retry-After", st, b, h.Get("Retry-After"))
	}
	if n := counterValue(t, srv, "sidecar_upstream_calls_total"); n != maxAttempts {
		t.Errorf("%v calls to TEI, want %d", n, maxAttempts)
	}
}

// TestCloseWaitsForCalls is a regression test: Close did not wait for
// rerank calls, which outlived the server. Every call is counted by the
// server's wait group now.
func TestCloseWaitsForCalls(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	srv, err := New(testConfig(url), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	sim.SetFault(teisim.Fault{Stall: 400 * time.Millisecond})
	done := make(chan int, 1)
	go func() {
		st, _, _, _ := tryPost(hs.URL, "/rerank", `{"query":"q","texts":["a"]}`)
		done <- st
	}()
	waitUntil(t, 5*time.Second, func() bool { return metricWith(t, srv, "sidecar_inflight_inputs", "pool", "embed") == 1 })
	srv.Close()
	if n := counterValue(t, srv, "sidecar_upstream_calls_total"); n != 1 {
		t.Errorf("Close returned with %v calls finished, want the call finished (1)", n)
	}
	<-done
}

// TestClientGoneIs499OnEveryFace is a regression test: the OpenAI, Cohere
// and plugin faces answered a client that gave up with 200 and an empty
// body, so metrics and logs never saw cancellations.
func TestClientGoneIs499OnEveryFace(t *testing.T) {
	emb, embURL, rankSim, rankURL := facesSims(t)
	cfg := testConfig(embURL)
	cfg.RerankURLs = []string{rankURL}
	cfg.RequestTimeout = 0
	srv, p := startProxy(t, cfg)
	emb.SetFault(teisim.Fault{Stall: 20 * time.Second})
	rankSim.SetFault(teisim.Fault{Stall: 20 * time.Second})
	routes := []struct{ path, body string }{
		{"/embed", `{"inputs":"gone 1"}`},
		{"/v1/embeddings", `{"input":"gone 2","model":"BAAI/bge-small-en-v1.5"}`},
		{"/v1/rerank", `{"query":"gone 3","documents":["a"]}`},
		{"/plugin/embed_query", `{"text":"gone 4"}`},
		{"/plugin/rerank", `{"query":"gone 5","passages":["a"]}`},
	}
	for _, r := range routes {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p+r.path, strings.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	for _, r := range routes {
		waitUntil(t, 5*time.Second, func() bool {
			return metricWith(t, srv, "sidecar_requests_total", "route", r.path, "status", "499") == 1
		})
	}
}

// facesSims starts an embedding and a reranking simulator.
func facesSims(t *testing.T) (emb *teisim.Server, embURL string, rank *teisim.Server, rankURL string) {
	t.Helper()
	emb, embURL = startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	rank, rankURL = startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	return
}

// TestRestartedTEIIsReadAgain is a regression test: after a supervisor
// restarted TEI (a CPU fallback, a moved revision) the proxy kept the old
// limits and cache keys: batches over the old limit were split for
// nothing, or refused with 422 when the new limit was lower, and old and
// new vectors mixed. /info is read again when TEI comes back.
func TestRestartedTEIIsReadAgain(t *testing.T) {
	old, err := teisim.New(mustParse(t, append(fast, "--model-id", "BAAI/bge-small-en-v1.5", "--revision", "r1", "--max-client-batch-size", "64")...))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	sw := &switchable{}
	sw.set(old.Handler())
	tei := newRestartable(t, sw)
	srv, p := startProxy(t, testConfig(tei.url()))
	if st, _, b := post(t, p, "/embed", `{"inputs":"kept across the restart"}`); st != 200 {
		t.Fatalf("%d %s", st, b)
	}

	// TEI restarts at the same address with a new revision and a smaller
	// batch limit.
	srv.SetDown("embed", tei.url(), "TEI exited with status 137")
	next, err := teisim.New(mustParse(t, append(fast, "--model-id", "BAAI/bge-small-en-v1.5", "--revision", "r2", "--max-client-batch-size", "8")...))
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	sw.set(next.Handler())
	srv.SetDown("embed", tei.url(), "")
	waitUntil(t, 5*time.Second, func() bool { return srv.embedP.info().Revision() == "r2" })

	before := next.EmbedCount()
	st, _, b := post(t, p, "/embed", `{"inputs":"kept across the restart"}`)
	if st != 200 {
		t.Fatalf("after the restart: %d %s", st, b)
	}
	if next.EmbedCount() == before {
		t.Errorf("answered from the old revision's cache entry")
	}
	inputs := make([]string, 20)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("batch %d", i)
	}
	if st, _, b := post(t, p, "/embed", inputsJSON(inputs)); st != 200 {
		t.Errorf("20 inputs against the new limit of 8: %d %s", st, b)
	}
}

// switchable serves through a handler that can be replaced.
type switchable struct{ h atomic.Pointer[http.Handler] }

func (s *switchable) set(h http.Handler)                               { s.h.Store(&h) }
func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

// TestBreakerRecoveryRereadsInfo: a TEI that goes away and comes back with
// another revision, with no supervisor to say so, is read again when its
// breaker closes.
func TestBreakerRecoveryRereadsInfo(t *testing.T) {
	old, err := teisim.New(mustParse(t, append(fast, "--model-id", "BAAI/bge-small-en-v1.5", "--revision", "r1")...))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	sw := &switchable{}
	sw.set(old.Handler())
	tei := newRestartable(t, sw)
	cfg := testConfig(tei.url())
	cfg.BreakerFailures = 1
	cfg.BreakerOpenFor = 100 * time.Millisecond
	srv, p := startProxy(t, cfg)
	tei.stop()
	post(t, p, "/embed", `{"inputs":"while gone"}`)
	next, err := teisim.New(mustParse(t, append(fast, "--model-id", "BAAI/bge-small-en-v1.5", "--revision", "r2")...))
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	sw.set(next.Handler())
	tei.start(t)
	waitUntil(t, 10*time.Second, func() bool {
		post(t, p, "/embed", `{"inputs":"after"}`)
		return srv.embedP.info().Revision() == "r2"
	})
}

// TestTEIRefusingTheKeyIsMisconfiguration is a regression test: a TEI
// rejecting TEI_API_KEY made every client with a valid token get 401
// invalid_api_key while /ready stayed 200 and nothing was logged. It is
// the sidecar's misconfiguration: 503, /ready says why, an error log line.
func TestTEIRefusingTheKeyIsMisconfiguration(t *testing.T) {
	_, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--api-key", "the-right-key")
	var logs syncBuf
	cfg := testConfig(url)
	cfg.APIKey = "a-wrong-key"
	cfg.BearerTokens = []string{"client-token"}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	waitUntil(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "TEI refused the sidecar's API key") })
	st, b := getBody(t, hs.URL, "/ready")
	if st != 503 || !strings.Contains(b, "API key") {
		t.Errorf("/ready: %d %s", st, b)
	}
	for _, path := range []string{"/embed", "/v1/embeddings"} {
		st, _, b := call(t, "POST", hs.URL+path, "client-token", `{"inputs":"x","input":"x","model":"BAAI/bge-small-en-v1.5"}`)
		if st != 503 || strings.Contains(string(b), "invalid_api_key") {
			t.Errorf("%s: %d %s, want 503", path, st, b)
		}
	}
	if strings.Contains(logs.String(), "a-wrong-key") {
		t.Error("the key was logged")
	}
}

// TestSecretsStayOutOfLogsAndStatus is a regression test: a password in a
// TEI URL was printed in the INFO log and shown in /status, and /ready's
// open body carried internal URLs and dial errors.
func TestSecretsStayOutOfLogsAndStatus(t *testing.T) {
	_, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	withPass := strings.Replace(url, "http://", "http://user:s3cret-pass@", 1)
	var logs syncBuf
	cfg := testConfig(withPass)
	cfg.RerankURLs = []string{"http://user:s3cret-pass@127.0.0.1:1"} // nothing listens there
	srv, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	if err := srv.embedP.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the rerank prober fails and logs
	_, status := getBody(t, hs.URL, "/status")
	_, ready := getBody(t, hs.URL, "/ready")
	for name, text := range map[string]string{"log": logs.String(), "/status": status, "/ready": ready} {
		if strings.Contains(text, "s3cret-pass") {
			t.Errorf("%s shows the password: %s", name, text)
		}
	}
	if strings.Contains(ready, "127.0.0.1") || strings.Contains(ready, "connection refused") {
		t.Errorf("/ready shows internals: %s", ready)
	}
	if !strings.Contains(status, "http://127.0.0.1") {
		t.Errorf("/status lacks the replicas' URLs: %s", status)
	}
}

// TestUnreachableTEIErrorsHideInternals: a call that cannot reach TEI is a
// 503 with Retry-After (TEI is unavailable, retry) whose message names no
// address.
func TestUnreachableTEIErrorsHideInternals(t *testing.T) {
	_, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	sw := &switchable{}
	sim2, _ := teisim.New(mustParse(t, append(fast, "--model-id", "BAAI/bge-small-en-v1.5")...))
	defer sim2.Close()
	sw.set(sim2.Handler())
	tei := newRestartable(t, sw)
	_ = url
	srv, p := startProxy(t, testConfig(tei.url()))
	tei.stop()
	st, h, b := post(t, p, "/v1/embeddings", `{"input":"x","model":"BAAI/bge-small-en-v1.5"}`)
	if st != 503 || h.Get("Retry-After") == "" || bytes.Contains(b, []byte("127.0.0.1")) || bytes.Contains(b, []byte("dial")) {
		t.Errorf("%d (Retry-After %q) %s", st, h.Get("Retry-After"), b)
	}
	_ = srv
}

// TestStrictDecoding is a regression test: duplicate keys, keys in another
// case, lone surrogates and null for a field with a default were accepted,
// where TEI refuses them; a malformed /tokenize body was sent to TEI.
func TestStrictDecoding(t *testing.T) {
	_, tei, url := startCounted(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, p := startProxy(t, testConfig(url))
	tests := []struct {
		name, path, body string
		status           int
	}{
		{"duplicate key", "/embed", `{"inputs":"a","inputs":"b"}`, 422},
		{"key in another case", "/embed", `{"Inputs":"a"}`, 422},
		{"lone surrogate", "/embed", `{"inputs":"\ud800"}`, 400},
		{"null normalize", "/embed", `{"inputs":"a","normalize":null}`, 422},
		{"null truncation_direction", "/embed", `{"inputs":"a","truncation_direction":null}`, 422},
		{"null encoding_format", "/v1/embeddings", `{"input":"a","model":"BAAI/bge-small-en-v1.5","encoding_format":null}`, 400},
		{"tokenize duplicate key", "/tokenize", `{"inputs":"a","inputs":"b"}`, 422},
		{"tokenize ids", "/tokenize", `{"inputs":[1,2]}`, 422},
		{"tokenize null add_special_tokens", "/tokenize", `{"inputs":"a","add_special_tokens":null}`, 422},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tei.count("/embed") + tei.count("/tokenize")
			if st, _, b := post(t, p, tc.path, tc.body); st != tc.status {
				t.Errorf("%d %s, want %d", st, b, tc.status)
			}
			if tei.count("/embed")+tei.count("/tokenize") != before {
				t.Error("a refused request reached TEI")
			}
		})
	}
	// Null where TEI's field is optional stays allowed.
	if st, _, b := post(t, p, "/embed", `{"inputs":"a","truncate":null,"prompt_name":null,"dimensions":null}`); st != 200 {
		t.Errorf("null optional fields: %d %s", st, b)
	}
}

// TestBodiesStayUnderThePayloadLimit is a regression test: json.Marshal
// escapes <, > and & to six bytes, so a body under TEI's payload limit
// could exceed it once re-encoded. Bodies are now measured as sent and
// split by bytes as well as by count.
func TestBodiesStayUnderThePayloadLimit(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--payload-limit", "20000")
	cfg := testConfig(url)
	cfg.UpstreamPayloadLimit = 20000
	_, p := startProxy(t, cfg)
	inputs := make([]string, 30)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("%d %s", i, strings.Repeat("<a&b>", 300)) // 1.5 kB, 9 kB as encoding/json writes it
	}
	st, _, b := post(t, p, "/embed", inputsJSON(inputs))
	if st != 200 {
		t.Fatalf("%d %.300s", st, b)
	}
	checkVectors(t, sim, inputs, b)
}

// TestBatchRefusedForOneInputFailsOnlyItsRequest: inputs of two requests
// batched into one call, one of them too long with truncate=false; TEI
// refuses the whole call, and the proxy splits it so that only the
// offending request fails.
func TestBatchRefusedForOneInputFailsOnlyItsRequest(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "1",
		"--sim-batch-cost", "150ms", "--sim-token-cost", "0s")
	_, p := startProxy(t, testConfig(url))
	// The first request takes TEI's only permit; the two others wait and
	// are batched together when it is free.
	var wg sync.WaitGroup
	statuses := make([]int, 3)
	bodies := []string{`{"inputs":"first","truncate":false}`,
		`{"inputs":"` + strings.Repeat("word ", 700) + `","truncate":false}`,
		`{"inputs":"fine","truncate":false}`}
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
	if statuses[0] != 200 || statuses[1] != 422 || statuses[2] != 200 {
		t.Errorf("statuses %v, want [200 422 200]", statuses)
	}
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricWith sums a metric's samples whose labels include the given
// name/value pairs.
func metricWith(t testing.TB, s *Server, name string, labels ...string) float64 {
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
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
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

// syncBuf is a buffer safe for a logger's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ = json.Valid

// TestCacheCountersArePerCache is a regression test: the cache hit, miss
// and eviction counters mixed the embedding and rerank caches, so a
// dashboard could not tell whose hit ratio fell. Each is labelled with its
// cache now.
func TestCacheCountersArePerCache(t *testing.T) {
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, rank := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	cfg := testConfig(emb)
	cfg.RerankURLs = []string{rank}
	srv, p := startProxy(t, cfg)
	for range 2 { // a miss, then a hit, of each
		if st, _, b := post(t, p, "/embed", `{"inputs":["counted apart"]}`); st != 200 {
			t.Fatalf("embed: %d %s", st, b)
		}
		if st, _, b := post(t, p, "/rerank", `{"query":"q","texts":["a","b"]}`); st != 200 {
			t.Fatalf("rerank: %d %s", st, b)
		}
	}
	if st, _, b := post(t, p, "/embed", `{"inputs":["another"]}`); st != 200 { // a second embed miss
		t.Fatalf("embed: %d %s", st, b)
	}
	for _, c := range []struct {
		metric, cache string
		want          float64
	}{
		{"sidecar_cache_hits_total", "embed", 1},
		{"sidecar_cache_misses_total", "embed", 2},
		{"sidecar_cache_hits_total", "rerank", 1},
		{"sidecar_cache_misses_total", "rerank", 1},
	} {
		if got := metricWith(t, srv, c.metric, "cache", c.cache); got != c.want {
			t.Errorf("%s{cache=%q} = %v, want %v", c.metric, c.cache, got, c.want)
		}
	}
}

// TestRepeatedRerankIsAHitAtOnce is a regression test: a rerank's answer
// was cached only after its waiters had been woken, so the same rerank
// sent as soon as the first had its answer could find neither the flight
// nor the cache and go to TEI again (TestCacheCountersArePerCache saw it
// now and then). Embeddings were cached first; reranks are now too.
func TestRepeatedRerankIsAHitAtOnce(t *testing.T) {
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, cnt, rank := startCounted(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	cfg := testConfig(emb)
	cfg.RerankURLs = []string{rank}
	_, p := startProxy(t, cfg)
	const n = 200
	before := cnt.count("/rerank")
	for i := range n {
		body := fmt.Sprintf(`{"query":"q %d","texts":["a","b"]}`, i)
		for range 2 {
			if st, _, b := post(t, p, "/rerank", body); st != 200 {
				t.Fatalf("rerank: %d %s", st, b)
			}
		}
	}
	if got := cnt.count("/rerank") - before; got != n {
		t.Errorf("%d TEI calls for %d reranks each sent twice, want %d: a repeat missed the cache", got, n, n)
	}
}
