package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/redistest"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// sharedProxy starts a proxy in front of url using the Redis at redisURL
// as its second layer.
func sharedProxy(t *testing.T, url, redisURL string, edit func(*Config)) (*Server, string) {
	t.Helper()
	cfg := testConfig(url)
	cfg.Shared.URL = redisURL
	cfg.Shared.Timeout = 200 * time.Millisecond // a loaded CI machine
	if edit != nil {
		edit(&cfg)
	}
	return startProxy(t, cfg)
}

// flush waits until s's write-behind queue is written.
func flush(t *testing.T, s *Server) {
	t.Helper()
	if err := s.shared.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// postH posts with extra headers and returns status, headers and body.
func postH(t *testing.T, url, path, body string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.Bytes()
}

// TestTwoSidecarsShareOneRedis: what one sidecar computed, the other
// answers from Redis, byte for byte, sending nothing to TEI.
func TestTwoSidecarsShareOneRedis(t *testing.T) {
	redis := redistest.Start(t)
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, rank := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	withRank := func(c *Config) { c.RerankURLs = []string{rank} }
	a, pa := sharedProxy(t, url, redis.URL(), withRank)
	b, pb := sharedProxy(t, url, redis.URL(), withRank)
	embed := `{"inputs":["shared one","shared two","shared three"]}`
	rerank := `{"query":"q","texts":["a b","c d"],"return_text":true}`
	st, h, first := post(t, pa, "/embed", embed)
	if st != 200 || h.Get("X-Cache") != "MISS" {
		t.Fatalf("first sidecar: %d X-Cache %q %s", st, h.Get("X-Cache"), first)
	}
	_, _, rfirst := post(t, pa, "/rerank", rerank)
	flush(t, a)
	before := sim.EmbedCount()
	st, h, second := post(t, pb, "/embed", embed)
	if st != 200 || h.Get("X-Cache") != "HIT" || !bytes.Equal(first, second) {
		t.Errorf("second sidecar: %d X-Cache %q\n%s\nwant\n%s", st, h.Get("X-Cache"), second, first)
	}
	if n := sim.EmbedCount() - before; n != 0 {
		t.Errorf("the second sidecar sent %d inputs to TEI", n)
	}
	st, h, rsecond := post(t, pb, "/rerank", rerank)
	if st != 200 || h.Get("X-Cache") != "HIT" || !bytes.Equal(rfirst, rsecond) {
		t.Errorf("rerank on the second sidecar: %d X-Cache %q %s", st, h.Get("X-Cache"), rsecond)
	}
	if n := metricWith(t, b, "sidecar_cache_hits_total", "layer", "redis"); n != 4 {
		t.Errorf("second-layer hits %v, want 4 (3 inputs, 1 rerank)", n)
	}
}

// TestClusterLookupAcrossSlots: a 32-input request whose keys span the
// slots of a three-node Redis Cluster is one lookup, never a CROSSSLOT
// MGET, and every key is found.
func TestClusterLookupAcrossSlots(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	url := "redis+cluster://" + strings.Join(cl.Addrs(), ",")
	sim, tei := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	a, pa := sharedProxy(t, tei, url, nil)
	_, pb := sharedProxy(t, tei, url, nil)
	inputs := make([]string, 32)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("clustered text %d", i)
	}
	if st, _, b := post(t, pa, "/embed", inputsJSON(inputs)); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	flush(t, a)
	before := sim.EmbedCount()
	st, h, b := post(t, pb, "/embed", inputsJSON(inputs))
	if st != 200 || h.Get("X-Cache") != "HIT" {
		t.Fatalf("%d X-Cache %q %s", st, h.Get("X-Cache"), b)
	}
	checkVectors(t, sim, inputs, b)
	if n := sim.EmbedCount() - before; n != 0 {
		t.Errorf("%d inputs went to TEI", n)
	}
}

// TestSharedCacheProperty: random mixes of first-layer hits, second-layer
// hits, misses and duplicates, from concurrent requests on two sidecars
// sharing one Redis, always answer data[i] = TEI's embedding of input[i],
// with indices 0..n-1.
func TestSharedCacheProperty(t *testing.T) {
	redis := redistest.Start(t)
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	small := func(c *Config) { c.CacheSize = 12 } // evictions send lookups to Redis
	sa, pa := sharedProxy(t, url, redis.URL(), small)
	_, pb := sharedProxy(t, url, redis.URL(), small)
	texts := make([]string, 40)
	for i := range texts {
		texts[i] = fmt.Sprintf("property text %d", i)
	}
	// Some texts are in Redis before the storm.
	if st, _, b := post(t, pa, "/embed", inputsJSON(texts[:10])); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	flush(t, sa)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for range 30 {
				n := 1 + r.IntN(16)
				in := make([]string, n)
				for i := range in {
					in[i] = texts[r.IntN(len(texts))]
				}
				target := pa
				if r.IntN(2) == 0 {
					target = pb
				}
				format := []string{"float", "base64"}[r.IntN(2)]
				body := fmt.Sprintf(`{"input":%s,"model":"BAAI/bge-small-en-v1.5","encoding_format":%q}`, mustMarshal(in), format)
				st, _, b, err := tryPost(target, "/v1/embeddings", body)
				if err != nil || st != 200 {
					errs <- fmt.Errorf("%d %s %v", st, b, err)
					return
				}
				if err := checkOpenAI(sim, in, b, format == "base64"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkOpenAI checks an OpenAI answer against TEI's embeddings of inputs.
func checkOpenAI(sim *teisim.Server, inputs []string, body []byte, b64 bool) error {
	var res struct {
		Data []struct {
			Embedding json.RawMessage `json:"embedding"`
			Index     int             `json:"index"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return err
	}
	if len(res.Data) != len(inputs) {
		return fmt.Errorf("%d items for %d inputs", len(res.Data), len(inputs))
	}
	for i, d := range res.Data {
		if d.Index != i {
			return fmt.Errorf("item %d has index %d", i, d.Index)
		}
		var got []float32
		if b64 {
			var s string
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				return err
			}
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return err
			}
			for j := 0; j+4 <= len(raw); j += 4 {
				got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
			}
		} else if err := json.Unmarshal(d.Embedding, &got); err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(sim.Embedding(inputs[i], true)) {
			return fmt.Errorf("item %d is not TEI's embedding of %q", i, inputs[i])
		}
	}
	return nil
}

// TestRedisFailuresNeverFailRequests: Redis killed, stalled (SIGSTOP) and
// restarted under load: no request fails, the breaker opens and closes,
// and once Redis is back the second layer serves again.
func TestRedisFailuresNeverFailRequests(t *testing.T) {
	redis := redistest.Start(t)
	_, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	a, pa := sharedProxy(t, url, redis.URL(), func(c *Config) {
		c.CacheSize = 0 // every lookup goes to Redis
		c.Shared.Timeout = 50 * time.Millisecond
		c.Shared.BreakerFailures = 2
		c.Shared.BreakerOpenFor = 300 * time.Millisecond
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				st, _, b, err := tryPost(pa, "/embed", fmt.Sprintf(`{"inputs":["w%d %d","common %d"]}`, w, i%20, i%5))
				if err != nil || st != 200 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %s %v", st, b, err))
					mu.Unlock()
				}
			}
		}()
	}
	phase := func(d time.Duration) { time.Sleep(d) }
	phase(300 * time.Millisecond)
	redis.Pause()
	phase(800 * time.Millisecond)
	redis.Resume()
	phase(800 * time.Millisecond)
	redis.Kill()
	phase(800 * time.Millisecond)
	redis.Restart()
	waitUntil(t, 10*time.Second, func() bool { return a.shared.Status().Breaker == "closed" })
	before := metricWith(t, a, "sidecar_cache_hits_total", "layer", "redis")
	phase(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d requests failed while Redis failed; first: %s", len(failures), failures[0])
	}
	if n := metricWith(t, a, "sidecar_cache_redis_breaker_transitions_total", "to", "open"); n < 1 {
		t.Errorf("the Redis breaker never opened")
	}
	if after := metricWith(t, a, "sidecar_cache_hits_total", "layer", "redis"); after <= before {
		t.Errorf("no second-layer hits after Redis came back (%v before, %v after)", before, after)
	}
}

// TestCacheControl: no-cache skips the lookups but stores the answer,
// no-store keeps it out of the caches, and every face says X-Cache.
func TestCacheControl(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, rank := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	cfg := testConfig(url)
	cfg.RerankURLs = []string{rank}
	_, p := startProxy(t, cfg)

	count := func() int64 { return sim.EmbedCount() }
	n := count()
	postH(t, p, "/embed", `{"inputs":"kept out"}`, "Cache-Control", "no-store")
	_, h, _ := postH(t, p, "/embed", `{"inputs":"kept out"}`)
	if h.Get("X-Cache") != "MISS" || count()-n != 2 {
		t.Errorf("no-store: the answer was cached (X-Cache %q, %d computations)", h.Get("X-Cache"), count()-n)
	}
	n = count()
	_, h, _ = postH(t, p, "/embed", `{"inputs":"kept out"}`, "Cache-Control", "no-cache")
	if h.Get("X-Cache") != "MISS" || count()-n != 1 {
		t.Errorf("no-cache: the lookup was not skipped (X-Cache %q)", h.Get("X-Cache"))
	}
	_, h, _ = postH(t, p, "/embed", `{"inputs":"kept out"}`)
	if h.Get("X-Cache") != "HIT" {
		t.Errorf("no-cache did not store the answer: X-Cache %q", h.Get("X-Cache"))
	}
	_, h, _ = postH(t, p, "/embed", `{"inputs":["kept out","brand new"]}`)
	if h.Get("X-Cache") != "PARTIAL" {
		t.Errorf("a partial hit: X-Cache %q", h.Get("X-Cache"))
	}
	for _, r := range []struct{ path, body string }{
		{"/embed", `{"inputs":"face"}`},
		{"/v1/embeddings", `{"input":"face","model":"BAAI/bge-small-en-v1.5"}`},
		{"/rerank", `{"query":"face","texts":["a"]}`},
		{"/v1/rerank", `{"query":"face","documents":["a"]}`},
		{"/plugin/embed_query", `{"text":"face"}`},
		{"/plugin/embed_documents", `{"texts":["face"]}`},
		{"/plugin/rerank", `{"query":"face","passages":["a"]}`},
	} {
		if st, h, b := postH(t, p, r.path, r.body); st != 200 || h.Get("X-Cache") == "" {
			t.Errorf("%s: %d X-Cache %q %s", r.path, st, h.Get("X-Cache"), b)
		}
	}
}

// TestWorkHeadersAndRerankTokens: a miss passes on TEI's compute headers
// with this request's share of tokens and characters; a hit has none.
// Rerank usage carries TEI's token count, from the cache and from Redis
// too.
func TestWorkHeadersAndRerankTokens(t *testing.T) {
	redis := redistest.Start(t)
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, rank := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	withRank := func(c *Config) { c.RerankURLs = []string{rank} }
	a, pa := sharedProxy(t, emb, redis.URL(), withRank)
	_, pb := sharedProxy(t, emb, redis.URL(), withRank)

	_, want, _ := post(t, emb, "/embed", `{"inputs":["héllo wörld","two"]}`)
	_, h, _ := post(t, pa, "/embed", `{"inputs":["héllo wörld","two"]}`)
	for _, name := range []string{"x-compute-tokens", "x-compute-characters", "x-inference-time"} {
		if h.Get(name) == "" || (name != "x-inference-time" && h.Get(name) != want.Get(name)) {
			t.Errorf("miss: %s = %q, TEI says %q", name, h.Get(name), want.Get(name))
		}
	}
	if _, h, _ = post(t, pa, "/embed", `{"inputs":["héllo wörld","two"]}`); h.Get("x-compute-tokens") != "" {
		t.Errorf("a hit carries x-compute-tokens %q", h.Get("x-compute-tokens"))
	}

	body := `{"query":"q","documents":["alpha beta","gamma"]}`
	tokens := func(p string) int {
		_, _, b := post(t, p, "/v1/rerank", body)
		var r struct {
			Usage struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r.Usage.TotalTokens
	}
	miss := tokens(pa)
	if miss <= 0 {
		t.Fatalf("rerank usage %d tokens", miss)
	}
	if hit := tokens(pa); hit != miss {
		t.Errorf("from the cache: %d tokens, computed %d", hit, miss)
	}
	flush(t, a)
	if shared := tokens(pb); shared != miss {
		t.Errorf("from Redis: %d tokens, computed %d", shared, miss)
	}
}
