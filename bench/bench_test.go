package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/proxy"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// simArgs make the simulators answer in about a millisecond whatever the
// text, so rows differ by work, not by token count.
var simArgs = []string{"--sim-batch-cost", "1ms", "--sim-token-cost", "0s"}

// simulators starts an embedding and a reranking TEI simulator.
func simulators(t *testing.T) (embedURL, rerankURL string) {
	t.Helper()
	_, embedURL = teisim.Start(t, append([]string{"--model-id", "BAAI/bge-m3"}, simArgs...)...)
	_, rerankURL = teisim.Start(t, append([]string{"--model-id", "BAAI/bge-reranker-v2-m3"}, simArgs...)...)
	return embedURL, rerankURL
}

// sidecar starts the proxy in front of the simulators.
func sidecar(t *testing.T, embedURL, rerankURL string) string {
	t.Helper()
	cfg := proxy.DefaultConfig()
	cfg.EmbedURLs = []string{embedURL}
	cfg.RerankURLs = []string{rerankURL}
	srv, err := proxy.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts.URL
}

// quick runs few iterations and a short sweep.
func quick(o Options) Options {
	o.Scale = 0.2
	o.Sweep = []int{1, 4}
	o.SweepDuration = 150 * time.Millisecond
	o.SweepRequests = 200
	return o
}

// rowLine is one row of the plugin's summary: name padded to 40, a space,
// the mean in %10.3f, "s", two spaces, the throughput.
var rowLine = regexp.MustCompile(`(?m)^(.{40}) ( {0,9}\d+\.\d{3})s  (\d+\.\d{2}) (queries|docs|passages)/s$`)

// summaryRows returns the row names of the first summary block of text.
func summaryRows(t *testing.T, text string) []string {
	t.Helper()
	start := strings.Index(text, "BENCHMARK SUMMARY")
	if start < 0 {
		t.Fatalf("no summary in:\n%s", text)
	}
	block := text[start:]
	if end := strings.Index(block, "\nDetails"); end >= 0 {
		block = block[:end]
	}
	if end := strings.Index(block, "BASELINE SUMMARY"); end >= 0 {
		block = block[:end]
	}
	var names []string
	for _, m := range rowLine.FindAllStringSubmatch(block, -1) {
		names = append(names, strings.TrimRight(m[1], " "))
	}
	return names
}

var wantRows = []string{
	"Single query embedding (short)",
	"Single query embedding (long)",
	"10 queries embedding",
	"3 documents embedding",
	"20 documents embedding",
	"50 documents embedding",
	"Rerank 5 passages",
	"Rerank 20 passages",
	"Query embedding, cache miss",
	"Query embedding, cache hit",
}

func TestBenchSidecarRows(t *testing.T) {
	embedURL, rerankURL := simulators(t)
	url := sidecar(t, embedURL, rerankURL)

	rep, err := Run(t.Context(), quick(Options{Target: Target{URL: url, Face: FaceTEI}}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	if got := summaryRows(t, text); !slices.Equal(got, wantRows) {
		t.Errorf("summary rows = %q, want %q\n%s", got, wantRows, text)
	}
	for _, want := range []string{
		"Test                                     Avg Time     Throughput\n",
		"Target: " + url + " (face tei, model BAAI/bge-m3, TEI 1.9.3)",
		"Concurrency sweep",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// TEI's default client batch is 32, so the tei face sends 50
	// documents in two calls, and the plugin's 10 queries in ten.
	calls := map[string]int{}
	for _, r := range rep.Rows {
		calls[r.Name] = r.Calls
	}
	if calls["50 documents embedding"] != 2 || calls["10 queries embedding"] != 10 || calls["20 documents embedding"] != 1 {
		t.Errorf("calls per iteration = %v", calls)
	}
	// A miss waits for the simulator's 1ms batch; a hit never reaches it.
	miss, hit := rep.Rows[8].Target, rep.Rows[9].Target
	if rep.Rows[8].Cache != CacheMiss || rep.Rows[9].Cache != CacheHit || miss.Median < 0.001 || hit.Median >= miss.Median {
		t.Errorf("cache rows: miss median %.2fms, hit median %.2fms; want the miss at least 1ms and slower", miss.Median*1000, hit.Median*1000)
	}
	if len(rep.Sweep) != 2 || rep.Sweep[1].Clients != 4 || rep.Sweep[1].Target.Requests == 0 {
		t.Errorf("sweep = %+v", rep.Sweep)
	}
}

// TestBenchTEIDirect runs the tei face against the simulators themselves,
// with the reranker at its own URL, as a user compares with bare TEI.
func TestBenchTEIDirect(t *testing.T) {
	embedURL, rerankURL := simulators(t)
	o := quick(Options{Target: Target{URL: embedURL, RerankURL: rerankURL}})
	o.Sweep = nil
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != len(wantRows) || rep.Target.RerankModelID != "BAAI/bge-reranker-v2-m3" || rep.Target.DocumentsBatch != 32 {
		t.Errorf("report = %+v", rep.Target)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Rerank: "+rerankURL+" (face tei, model BAAI/bge-reranker-v2-m3)") {
		t.Errorf("output lacks the rerank target:\n%s", buf.String())
	}
}

func TestBenchBaselineRatios(t *testing.T) {
	embedURL, rerankURL := simulators(t)
	url := sidecar(t, embedURL, rerankURL)

	o := quick(Options{
		Target:   Target{URL: url},
		Baseline: &Target{URL: embedURL, RerankURL: rerankURL},
	})
	o.Sweep = []int{2}
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Rows {
		if r.Baseline == nil || r.Ratio == nil || r.Speedup == nil {
			t.Fatalf("row %q has no baseline comparison", r.Name)
		}
		if len(r.Baseline.Times) != r.Iterations || len(r.Target.Times) != r.Iterations {
			t.Errorf("row %q: %d target and %d baseline times, want %d each", r.Name, len(r.Target.Times), len(r.Baseline.Times), r.Iterations)
		}
		if got, want := *r.Ratio, r.Target.Mean/r.Baseline.Mean; got != want {
			t.Errorf("row %q: ratio %v, want %v", r.Name, got, want)
		}
		if got := *r.Ratio * *r.Speedup; got < 0.999999 || got > 1.000001 {
			t.Errorf("row %q: ratio × speedup = %v, want 1", r.Name, got)
		}
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	cmp := text[strings.Index(text, "Compared with the baseline"):]
	line := regexp.MustCompile(`(?m)^(.{40}) +\d+\.\d{2} +\d+\.\d{2} +\d+\.\d{2} +\d+\.\d{2}x$`)
	var names []string
	for _, m := range line.FindAllStringSubmatch(cmp, -1) {
		names = append(names, strings.TrimRight(m[1], " "))
	}
	if want := append(slices.Clone(wantRows), "Sweep, 2 clients (speedup: throughput)"); !slices.Equal(names, want) {
		t.Errorf("comparison rows = %q, want %q\n%s", names, want, text)
	}
	if !strings.Contains(text, "BASELINE SUMMARY") {
		t.Errorf("output lacks the baseline summary:\n%s", text)
	}
}

// TestBenchJSONSchema checks the --json document against the schema
// README.md documents: every documented key present, no other.
func TestBenchJSONSchema(t *testing.T) {
	embedURL, rerankURL := simulators(t)
	url := sidecar(t, embedURL, rerankURL)
	o := quick(Options{Target: Target{URL: url}, Baseline: &Target{URL: url}})
	o.Sweep = []int{1}
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	statsKeys := []string{"times_s", "mean_s", "median_s", "stddev_s", "min_s", "max_s", "p50_s", "p95_s", "p99_s", "throughput"}
	// rerank_model_id is absent: rerank calls go to the target's URL.
	targetKeys := []string{"url", "rerank_url", "face", "model_id", "tei_version", "documents_batch"}
	loadKeys := []string{"requests", "duration_s", "throughput", "mean_s", "p50_s", "p95_s", "p99_s"}
	keys(t, "report", doc, "schema_version", "started_at", "target", "baseline", "scale", "rows", "sweep")
	if doc["schema_version"] != float64(SchemaVersion) {
		t.Errorf("schema_version = %v", doc["schema_version"])
	}
	keys(t, "target", doc["target"], targetKeys...)
	keys(t, "baseline", doc["baseline"], targetKeys...)
	rows := doc["rows"].([]any)
	if len(rows) != len(wantRows) {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows {
		rowKeys := []string{"name", "kind", "extra", "items", "unit", "calls", "warmup", "iterations", "target", "baseline", "ratio", "speedup"}
		if i >= 8 {
			rowKeys = append(rowKeys, "cache")
		}
		keys(t, "row", r, rowKeys...)
		keys(t, "row target", r.(map[string]any)["target"], statsKeys...)
		keys(t, "row baseline", r.(map[string]any)["baseline"], statsKeys...)
	}
	sweep := doc["sweep"].([]any)
	if len(sweep) != 1 {
		t.Fatalf("sweep = %v", sweep)
	}
	keys(t, "sweep level", sweep[0], "clients", "target", "baseline", "ratio", "speedup")
	keys(t, "sweep target", sweep[0].(map[string]any)["target"], loadKeys...)

	// The section documents every key by name.
	doc2, err := readSection()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range slices.Concat(statsKeys, targetKeys, loadKeys, []string{"rerank_model_id", "schema_version", "started_at", "scale", "rows", "sweep", "kind", "extra", "cache", "items", "unit", "calls", "warmup", "iterations", "ratio", "speedup", "clients", "model"}) {
		if !strings.Contains(doc2, "`"+k+"`") {
			t.Errorf("README.md does not document %q", k)
		}
	}
}

// keys checks that v is an object with exactly the given keys.
func keys(t *testing.T, what string, v any, want ...string) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s is %T, want an object", what, v)
		return
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("%s keys = %q, want %q", what, got, want)
	}
}

// readSection reads the README's section on bench, the documentation
// users read.
func readSection() (string, error) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		return "", err
	}
	s := string(b)
	start := strings.Index(s, "## Benchmarking: `tei-sidecar bench`")
	end := strings.Index(s, "## Tuning: `tei-sidecar tune`")
	if start < 0 || end < start {
		return "", errors.New("README.md has no bench section")
	}
	return s[start:end], nil
}

// TestBenchSidecarFaces runs the rows through the sidecar's openai and
// plugin faces.
func TestBenchSidecarFaces(t *testing.T) {
	embedURL, rerankURL := simulators(t)
	url := sidecar(t, embedURL, rerankURL)
	for _, face := range []Face{FaceOpenAI, FacePlugin} {
		t.Run(string(face), func(t *testing.T) {
			o := quick(Options{Target: Target{URL: url, Face: face}})
			o.Sweep = []int{2}
			rep, err := Run(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range rep.Rows {
				names = append(names, r.Name)
			}
			if !slices.Equal(names, wantRows) {
				t.Errorf("rows = %q", names)
			}
			if face == FaceOpenAI && rep.Target.Model != "BAAI/bge-m3" {
				t.Errorf("model = %q, want /info's model_id", rep.Target.Model)
			}
		})
	}
}
