package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/proxy"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// headerLog counts the embed calls a server gets, by their Cache-Control.
type headerLog struct {
	mu      sync.Mutex
	byValue map[string]int
}

func (h *headerLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/embed" {
			h.mu.Lock()
			h.byValue[r.Header.Get("Cache-Control")]++
			h.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (h *headerLog) count(value string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byValue[value]
}

// poolSidecar starts the proxy over a pool of embedding replicas, its
// handler behind mw.
func poolSidecar(t *testing.T, mw func(http.Handler) http.Handler, embedURLs ...string) string {
	t.Helper()
	cfg := proxy.DefaultConfig()
	cfg.EmbedURLs = embedURLs
	return startSidecar(t, cfg, mw)
}

// TestBenchLoads runs the sweep and the three load scenarios through a
// sidecar over two replicas against the replicas straight, as bench
// --sidecar does: the figures per replica, the goals, the scaling line,
// and Cache-Control: no-cache on the loads' calls but not on the sweep's.
func TestBenchLoads(t *testing.T) {
	sim := append([]string{"--model-id", "BAAI/bge-m3"}, simArgs...)
	_, a := teisim.Start(t, sim...)
	_, b := teisim.Start(t, sim...)
	log := &headerLog{byValue: map[string]int{}}
	side := poolSidecar(t, log.wrap, a, b)

	o := Options{
		Target:        Target{URL: side},
		Baseline:      &Target{URL: a, PoolURLs: []string{a, b}, FoundVia: side},
		SkipRows:      true,
		Sweep:         []int{2},
		SweepDuration: 100 * time.Millisecond,
		Loads:         Loads,
		LoadDuration:  100 * time.Millisecond,
	}
	var done, total int
	o.Progress = func(d, n int, _ string) { done, total = d, n }
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if done != total || total != 8 {
		t.Errorf("progress ended at %d of %d, want 8 of 8", done, total)
	}
	if len(rep.Rows) != 0 {
		t.Errorf("%d rows ran with SkipRows", len(rep.Rows))
	}
	var names []string
	loadRequests := 0
	for _, l := range rep.Loads {
		names = append(names, l.Name)
		for who, res := range map[string]*LoadResult{"target": &l.Target, "baseline": l.Baseline} {
			if res == nil || res.Queries.Requests == 0 || res.Queries.Batch != 1 {
				t.Errorf("%s on the %s: queries %+v", l.Name, who, res)
				continue
			}
			if (l.Name == LoadIngest) != (res.Ingest != nil) {
				t.Errorf("%s on the %s: ingest %+v", l.Name, who, res.Ingest)
			}
			if in := res.Ingest; in != nil && (in.Clients != IngestClients || in.Batch != IngestBatch || in.Inputs != in.Requests*IngestBatch || in.Requests == 0) {
				t.Errorf("%s on the %s: ingest %+v", l.Name, who, *in)
			}
		}
		if l.Baseline.PinnedTo != 2 || l.Target.PinnedTo != 0 {
			t.Errorf("%s: pinned to %d (target %d), want the baseline's clients over both replicas", l.Name, l.Baseline.PinnedTo, l.Target.PinnedTo)
		}
		// Every measured input reached a replica: the figures per replica
		// cover the load (retries could only add).
		pu := poolOf(l.Target.Replicas, PoolEmbed)
		inputs := l.Target.Queries.Inputs
		if l.Target.Ingest != nil {
			inputs += l.Target.Ingest.Inputs
		}
		loadRequests += l.Target.Queries.Requests
		if l.Target.Ingest != nil {
			loadRequests += l.Target.Ingest.Requests
		}
		if pu == nil || len(pu.Replicas) != 2 {
			t.Errorf("%s: replicas %+v, want the embed pool's two", l.Name, l.Target.Replicas)
			continue
		}
		sum := 0
		for _, r := range pu.Replicas {
			sum += r.Inputs
		}
		if sum < inputs {
			t.Errorf("%s: the replicas got %d inputs, the load sent %d", l.Name, sum, inputs)
		}
	}
	if !slices.Equal(names, Loads) {
		t.Errorf("loads %q, want %q", names, Loads)
	}
	var metrics []string
	for _, c := range rep.Loads[0].Compare {
		m := c.Metric
		if c.GoalMax != nil {
			m += fmt.Sprintf("<=%g", *c.GoalMax)
		}
		if c.GoalMin != nil {
			m += fmt.Sprintf(">=%g", *c.GoalMin)
		}
		if (c.Met != nil) != (c.GoalMax != nil || c.GoalMin != nil) {
			t.Errorf("%s: met %v without a goal, or none with one", c.Metric, c.Met)
		}
		metrics = append(metrics, m)
	}
	if got := strings.Join(metrics, " "); got != "query_p50_s query_p99_s<=0.25 ingest_inputs_per_s>=0.9" {
		t.Errorf("ingest compares %s", got)
	}
	if sc := rep.Scaling; sc == nil || sc.Replicas != 2 {
		t.Errorf("scaling = %+v, want one over 2 replicas", sc)
	}
	if pu := poolOf(rep.Replicas, PoolEmbed); pu == nil || len(pu.Replicas) != 2 {
		t.Errorf("the run's replicas = %+v", rep.Replicas)
	}

	// The sweep measures the miss path as a client meets it, lookup
	// included; the loads skip the lookups. Warm-ups: one call a client.
	warm := IngestClients + 1 + FloodClients + MissClients
	if got, want := log.count(""), rep.Sweep[0].Target.Requests; got != want {
		t.Errorf("%d embed calls without Cache-Control, want the sweep's %d", got, want)
	}
	if got, want := log.count("no-cache"), loadRequests+warm; got != want {
		t.Errorf("%d embed calls with Cache-Control: no-cache, want the loads' %d", got, want)
	}

	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{
		"Load scenarios (every text unique; the sidecar is sent Cache-Control: no-cache; 0.1s each after a warm-up)",
		"Ingest + queries: 8 clients of 32-text batches, 1 client of single queries\n",
		"Flood: 256 clients of single queries\n",
		"Concurrent misses: 8 clients of single queries\n",
		"(clients spread over 2 replicas, client i on the (i mod 2)th)",
		"  query p99:           target/baseline ",
		"(goal <= 0.25: ",
		"(goal >= 0.90: ",
		"Per replica (the target's /metrics",
		"Sweep, 2 clients: embed pool, 2 replicas, spread ",
		"The whole run: embed pool, 2 replicas",
		"Scaling: through the sidecar, 2 embed replicas served ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "BENCHMARK SUMMARY") {
		t.Errorf("a summary of no rows:\n%s", text)
	}
	checkLoadsSchema(t, rep)
}

// checkLoadsSchema checks the JSON of the loads, the replicas and the
// scaling against docs/benchmarking.md: exactly the documented keys.
func checkLoadsSchema(t *testing.T, rep *Report) {
	t.Helper()
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	obj := func(v any, path ...any) any {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				v = v.(map[string]any)[k]
			case int:
				v = v.([]any)[k]
			}
		}
		return v
	}
	trafficKeys := []string{"clients", "batch", "requests", "inputs", "refused", "duration_s", "requests_per_s", "inputs_per_s", "mean_s", "p50_s", "p95_s", "p99_s"}
	poolKeys := []string{"pool", "replicas", "spread"}
	replicaKeys := []string{"replica", "url", "state", "limit", "inputs", "calls", "failed_calls", "inputs_per_s", "share"}
	scalingKeys := []string{"replicas", "target", "target_clients", "baseline", "baseline_clients", "ratio", "efficiency", "baseline_saturated"}
	keys(t, "report", doc, "schema_version", "started_at", "target", "baseline", "scale", "notes", "rows", "sweep", "loads", "replicas", "scaling")
	keys(t, "load", obj(doc, "loads", 0), "name", "title", "duration_s", "target", "baseline", "compare")
	keys(t, "load target", obj(doc, "loads", 0, "target"), "queries", "ingest", "replicas")
	keys(t, "load baseline", obj(doc, "loads", 0, "baseline"), "queries", "ingest", "pinned_to")
	keys(t, "traffic", obj(doc, "loads", 0, "target", "ingest"), trafficKeys...)
	keys(t, "comparison", obj(doc, "loads", 0, "compare", 1), "metric", "target", "baseline", "ratio", "goal_max", "met")
	keys(t, "pool use", obj(doc, "replicas", 0), poolKeys...)
	keys(t, "replica use", obj(doc, "replicas", 0, "replicas", 0), replicaKeys...)
	keys(t, "scaling", doc["scaling"], scalingKeys...)
	section, err := readSection()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range slices.Concat(trafficKeys, poolKeys, replicaKeys, scalingKeys, []string{"loads", "title", "compare", "queries", "ingest", "pinned_to", "metric", "goal_max", "goal_min", "met"}) {
		if !strings.Contains(section, "`"+k+"`") {
			t.Errorf("docs/benchmarking.md does not document %q", k)
		}
	}
}

// TestBenchLoadsPinned checks that against TEI itself a pool's clients
// are spread over its replicas, each replica getting its share.
func TestBenchLoadsPinned(t *testing.T) {
	sim := append([]string{"--model-id", "BAAI/bge-m3"}, simArgs...)
	sa, a := teisim.Start(t, sim...)
	sb, b := teisim.Start(t, sim...)
	rep, err := Run(t.Context(), Options{
		Target:       Target{URL: a, PoolURLs: []string{a, b}},
		SkipRows:     true,
		Loads:        []string{LoadMisses},
		LoadDuration: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := rep.Loads[0]
	if l.Target.PinnedTo != 2 || l.Baseline != nil || len(l.Compare) != 0 || l.Target.Replicas != nil {
		t.Errorf("load = %+v", l)
	}
	// Warm-up and load: each of the 8 clients called its own replica.
	na, nb := sa.EmbedCount(), sb.EmbedCount()
	if na < MissClients/2 || nb < MissClients/2 || int(na+nb) != l.Target.Queries.Requests+MissClients {
		t.Errorf("replicas got %d and %d inputs for %d requests and %d warm-ups", na, nb, l.Target.Queries.Requests, MissClients)
	}
	if _, err := Run(t.Context(), Options{Target: Target{URL: a}, SkipRows: true, Loads: []string{"stampede"}}); err == nil || !strings.Contains(err.Error(), `unknown load scenario "stampede": want ingest, flood, misses`) {
		t.Errorf("unknown load: %v", err)
	}
}

// TestBenchLoadsRefused checks that a server turning a flood away (TEI's
// 429 when its permits are taken) is counted, not a failed run, and that
// other errors still stop it.
func TestBenchLoadsRefused(t *testing.T) {
	_, url := teisim.Start(t, append([]string{"--model-id", "BAAI/bge-m3", "--max-concurrent-requests", "8"}, simArgs...)...)
	rep, err := Run(t.Context(), Options{Target: Target{URL: url}, SkipRows: true, Loads: []string{LoadFlood}, LoadDuration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	q := rep.Loads[0].Target.Queries
	if q.Refused == 0 || q.Requests == 0 {
		t.Errorf("flood of 256 on 8 permits: %d requests, %d refused; want both", q.Requests, q.Refused)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("target    queries      256 %9d %8d ", q.Requests, q.Refused); !strings.Contains(buf.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, buf.String())
	}
	_, locked := teisim.Start(t, append([]string{"--model-id", "BAAI/bge-m3", "--api-key", "k"}, simArgs...)...)
	if _, err := Run(t.Context(), Options{Target: Target{URL: locked}, SkipRows: true, Loads: []string{LoadMisses}, LoadDuration: 50 * time.Millisecond}); err == nil {
		t.Error("a 401 did not stop the load")
	}
}

// TestBenchCompareLoads checks the goals at their bounds.
func TestBenchCompareLoads(t *testing.T) {
	res := func(p99, ingest float64) LoadResult {
		return LoadResult{Queries: Traffic{P99: p99}, Ingest: &Traffic{InputsPerS: ingest}}
	}
	for _, tc := range []struct {
		name     string
		target   LoadResult
		baseline LoadResult
		want     string
	}{
		{"both met at the bounds", res(0.25, 900), res(1, 1000), "query_p99_s 0.25 met; ingest_inputs_per_s 0.90 met"},
		{"both missed", res(0.26, 899), res(1, 1000), "query_p99_s 0.26 missed; ingest_inputs_per_s 0.90 missed"},
		{"a baseline of zero meets nothing", res(0.01, 1), res(0, 0), "query_p99_s 0.00 missed; ingest_inputs_per_s 0.00 missed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range compareLoads(LoadIngest, tc.target, tc.baseline) {
				if c.Met == nil {
					continue
				}
				got = append(got, fmt.Sprintf("%s %.2f %s", c.Metric, c.Ratio, metWord(*c.Met)))
			}
			if s := strings.Join(got, "; "); s != tc.want {
				t.Errorf("got %s, want %s", s, tc.want)
			}
		})
	}
}
