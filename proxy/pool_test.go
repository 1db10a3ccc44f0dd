package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// replicaSet is n simulators of one model behind restartable addresses.
type replicaSet struct {
	sims []*teisim.Server
	tei  []*restartable
	urls []string
}

// startReplicas starts n simulators of model with args.
func startReplicas(t testing.TB, n int, args ...string) *replicaSet {
	t.Helper()
	rs := &replicaSet{}
	for range n {
		sim, err := teisim.New(mustParse(t, args...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Close)
		r := newRestartable(t, sim.Handler())
		rs.sims = append(rs.sims, sim)
		rs.tei = append(rs.tei, r)
		rs.urls = append(rs.urls, r.url())
	}
	return rs
}

// inputsPerReplica reads sidecar_upstream_inputs_total per replica address.
func inputsPerReplica(t testing.TB, s *Server, rs *replicaSet) []float64 {
	t.Helper()
	out := make([]float64, len(rs.urls))
	for i, u := range rs.urls {
		out[i] = metricWith(t, s, "sidecar_upstream_inputs_total", "replica", strings.TrimPrefix(u, "http://"))
	}
	return out
}

// TestBalancesSkewedBatches: clients sending single queries and 32-input
// batches at once; every replica gets a fair share of the inputs, because
// the balancer counts inputs in flight, not requests.
func TestBalancesSkewedBatches(t *testing.T) {
	rs := startReplicas(t, 3, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-batch-cost", "3ms", "--sim-token-cost", "0s")
	cfg := testConfig(rs.urls[0])
	cfg.EmbedURLs = rs.urls
	cfg.CacheSize = 0
	srv, p := startProxy(t, cfg)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				n := 1
				if w%2 == 0 {
					n = 32
				}
				inputs := make([]string, n)
				for j := range inputs {
					inputs[j] = fmt.Sprintf("w%d i%d j%d", w, i, j)
				}
				if st, _, b, err := tryPost(p, "/embed", inputsJSON(inputs)); err != nil || st != 200 {
					t.Errorf("%d %s %v", st, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := inputsPerReplica(t, srv, rs)
	total := got[0] + got[1] + got[2]
	if total != 3*20*32+3*20 {
		t.Fatalf("%v inputs sent, want %d", total, 3*20*32+3*20)
	}
	for i, n := range got {
		if share := n / total; share < 0.2 || share > 0.47 {
			t.Errorf("replica %d got %.0f%% of the inputs (%v)", i, 100*share, got)
		}
	}
}

// TestSplitChunksSpreadOverReplicas: one request of 24 inputs against
// replicas taking 8 at a time goes out as three calls at once, one per
// replica.
func TestSplitChunksSpreadOverReplicas(t *testing.T) {
	rs := startReplicas(t, 3, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "8",
		"--sim-batch-cost", "50ms", "--sim-token-cost", "0s")
	cfg := testConfig(rs.urls[0])
	cfg.EmbedURLs = rs.urls
	srv, p := startProxy(t, cfg)
	inputs := make([]string, 24)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("chunked %d", i)
	}
	st, _, b := post(t, p, "/embed", inputsJSON(inputs))
	if st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	checkVectors(t, rs.sims[0], inputs, b)
	for i, n := range inputsPerReplica(t, srv, rs) {
		if n != 8 {
			t.Errorf("replica %d got %v inputs, want 8", i, n)
		}
	}
}

// TestSkipsDownAndOpenReplicas: a replica marked down by its supervisor,
// or whose breaker is open, is sent no work while the others serve.
func TestSkipsDownAndOpenReplicas(t *testing.T) {
	rs := startReplicas(t, 3, append(append([]string{}, fast...), "--model-id", "BAAI/bge-small-en-v1.5")...)
	cfg := testConfig(rs.urls[0])
	cfg.EmbedURLs = rs.urls
	cfg.CacheSize = 0
	cfg.BreakerFailures = 1
	cfg.BreakerOpenFor = time.Minute
	srv, p := startProxy(t, cfg)
	srv.SetDown("embed", rs.urls[0], "TEI exited with status 137")
	rs.sims[1].SetFault(teisim.Fault{ErrorRate: 1, ErrorStatus: 500})
	for i := range 30 {
		if st, _, b := post(t, p, "/embed", fmt.Sprintf(`{"inputs":"served %d"}`, i)); st != 200 {
			t.Fatalf("request %d: %d %s", i, st, b)
		}
	}
	got := inputsPerReplica(t, srv, rs)
	if got[0] != 0 {
		t.Errorf("the replica marked down got %v inputs", got[0])
	}
	if got[1] > 1 {
		t.Errorf("the failing replica got %v inputs after its breaker opened", got[1])
	}
	if got[2] < 29 {
		t.Errorf("the healthy replica got %v inputs", got[2])
	}
}

// TestBackPressureDeweightsWithoutTripping: a replica answering 429 is
// given fewer inputs, its breaker stays closed, and clients see no error.
func TestBackPressureDeweightsWithoutTripping(t *testing.T) {
	rs := startReplicas(t, 2, append(append([]string{}, fast...), "--model-id", "BAAI/bge-small-en-v1.5")...)
	cfg := testConfig(rs.urls[0])
	cfg.EmbedURLs = rs.urls
	cfg.CacheSize = 0
	cfg.BreakerFailures = 1
	srv, p := startProxy(t, cfg)
	rs.sims[0].SetFault(teisim.Fault{ErrorRate: 1, ErrorStatus: 429})
	for i := range 20 {
		if st, _, b := post(t, p, "/embed", fmt.Sprintf(`{"inputs":"pressed %d"}`, i)); st != 200 {
			t.Fatalf("request %d: %d %s", i, st, b)
		}
	}
	srv.embedP.mu.Lock()
	r := srv.embedP.replicas[0]
	state, limit := r.breaker.State().String(), r.limit
	srv.embedP.mu.Unlock()
	if state != "closed" {
		t.Errorf("the 429ing replica's breaker is %s", state)
	}
	if limit >= 512 {
		t.Errorf("the 429ing replica's limit is still %d", limit)
	}
}

// TestRefusesAnotherModel: a replica serving another model is refused,
// shown in /status, and never sent work.
func TestRefusesAnotherModel(t *testing.T) {
	_, a := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, other := startSim(t, "--model-id", "BAAI/bge-base-en-v1.5")
	cfg := testConfig(a)
	cfg.EmbedURLs = []string{a}
	srv, p := startProxy(t, cfg)
	// The second replica joins after the pool's model is set.
	c, err := srv.client(other)
	if err != nil {
		t.Fatal(err)
	}
	srv.embedP.add(srv.ctx, other, other, c)
	waitUntil(t, 5*time.Second, func() bool {
		_, b := getBody(t, p, "/status")
		return strings.Contains(b, `"state":"refused"`)
	})
	_, b := getBody(t, p, "/status")
	if !strings.Contains(b, "serves BAAI/bge-base-en-v1.5, the pool serves BAAI/bge-small-en-v1.5") {
		t.Errorf("/status does not say why: %s", b)
	}
	for i := range 10 {
		post(t, p, "/embed", fmt.Sprintf(`{"inputs":"only one model %d"}`, i))
	}
	if n := metricWith(t, srv, "sidecar_upstream_inputs_total", "replica", strings.TrimPrefix(other, "http://")); n != 0 {
		t.Errorf("the refused replica got %v inputs", n)
	}
}

// TestReplicaKilledUnderLoadCostsNoError: three replicas, steady load, one
// is killed mid-call: every request still succeeds.
func TestReplicaKilledUnderLoadCostsNoError(t *testing.T) {
	rs := startReplicas(t, 3, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-batch-cost", "20ms", "--sim-token-cost", "0s")
	cfg := testConfig(rs.urls[0])
	cfg.EmbedURLs = rs.urls
	cfg.CacheSize = 0
	_, p := startProxy(t, cfg)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				st, _, b, err := tryPost(p, "/embed", fmt.Sprintf(`{"inputs":["w%d %d a","w%d %d b"]}`, w, i, w, i))
				if err != nil || st != 200 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %s %v", st, b, err))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	rs.tei[1].stop() // connections in flight are cut, new ones refused
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d requests failed while a replica died; first: %s", len(failures), failures[0])
	}
}

// fakeResolver answers LookupHost from a table the test changes.
type fakeResolver struct {
	mu    sync.Mutex
	addrs []string
}

func (f *fakeResolver) set(addrs ...string) {
	f.mu.Lock()
	f.addrs = addrs
	f.mu.Unlock()
}

func (f *fakeResolver) LookupHost(context.Context, string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.addrs...), nil
}

// TestDNSDiscoveryAddsAndDrains: replicas found by DNS join once their
// /info is read; a replica gone from DNS drains and leaves.
func TestDNSDiscoveryAddsAndDrains(t *testing.T) {
	// Three simulators on one port, at three loopback addresses, as pods
	// behind a headless Service.
	var port string
	var sims []*teisim.Server
	for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		sim, err := teisim.New(mustParse(t, append(append([]string{}, fast...), "--model-id", "BAAI/bge-small-en-v1.5")...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Close)
		addr := ip + ":0"
		if i > 0 {
			addr = net.JoinHostPort(ip, port)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot listen on %s (this loopback has one address?): %v", addr, err)
		}
		_, port, _ = net.SplitHostPort(ln.Addr().String())
		hs := httptest.NewUnstartedServer(sim.Handler())
		hs.Listener.Close()
		hs.Listener = ln
		hs.Start()
		t.Cleanup(hs.Close)
		sims = append(sims, sim)
	}
	res := &fakeResolver{}
	res.set("127.0.0.2", "127.0.0.3")
	cfg := testConfig("dns+http://tei-embed.default.svc:" + port)
	cfg.Resolver = res
	cfg.DiscoveryInterval = 50 * time.Millisecond
	cfg.CacheSize = 0
	srv, p := startProxy(t, cfg)
	replicas := func() string {
		_, b := getBody(t, p, "/status")
		return b
	}
	waitUntil(t, 5*time.Second, func() bool { return strings.Count(replicas(), `"state":"ready"`) == 2 })

	res.set("127.0.0.3", "127.0.0.4") // .2 goes, .4 comes
	waitUntil(t, 5*time.Second, func() bool {
		b := replicas()
		return strings.Count(b, `"state":"ready"`) == 2 && !strings.Contains(b, "127.0.0.2") && strings.Contains(b, "127.0.0.4")
	})
	before := sims[0].EmbedCount()
	for i := range 10 {
		if st, _, b := post(t, p, "/embed", fmt.Sprintf(`{"inputs":"after the change %d"}`, i)); st != 200 {
			t.Fatalf("%d %s", st, b)
		}
	}
	if sims[0].EmbedCount() != before {
		t.Error("the drained replica still got work")
	}
	if sims[2].EmbedCount() == 0 {
		t.Error("the new replica got no work")
	}
	if n := metricWith(t, srv, "sidecar_replica_state", "replica", "127.0.0.2:"+port); n != 0 {
		t.Errorf("the drained replica's series remain: %v", n)
	}
	res.set() // DNS answers nothing: every replica drains, and the pool says so
	waitUntil(t, 5*time.Second, func() bool {
		st, _, _ := post(t, p, "/embed", `{"inputs":"nobody left"}`)
		return st == http.StatusServiceUnavailable
	})
}
