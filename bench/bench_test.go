package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
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
	return startSidecar(t, cfg, nil)
}

// startSidecar starts the proxy under cfg, its handler behind mw (nil:
// none), and returns its URL.
func startSidecar(t *testing.T, cfg proxy.Config, mw func(http.Handler) http.Handler) string {
	t.Helper()
	srv, err := proxy.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if mw != nil {
		h = mw(h)
	}
	ts := httptest.NewServer(h)
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
// the mean in %10.3f, "s", two spaces, the throughput; then ours, the
// cache column.
var rowLine = regexp.MustCompile(`(?m)^(.{40}) ( {0,9}\d+\.\d{3})s  (\d+\.\d{2}) (queries|docs|passages)/s +(hit|miss|partial|-)$`)

// summaryRows returns the row names of the first summary block of text,
// each followed by its cache column: "name|hit".
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
		names = append(names, strings.TrimRight(m[1], " ")+"|"+m[5])
	}
	return names
}

// wantRows are the rows against a server without a cache.
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

// sidecarRows are the rows through the sidecar: each of the plugin's rows
// is a cache hit, followed by its uncached variant.
var sidecarRows = []string{
	"Single query embedding (short)|hit",
	"Single query embedding (short), uncached|miss",
	"Single query embedding (long)|hit",
	"Single query embedding (long), uncached|miss",
	"10 queries embedding|hit",
	"10 queries embedding, uncached|miss",
	"3 documents embedding|hit",
	"3 documents embedding, uncached|miss",
	"20 documents embedding|hit",
	"20 documents embedding, uncached|miss",
	"50 documents embedding|hit",
	"50 documents embedding, uncached|miss",
	"Rerank 5 passages|hit",
	"Rerank 5 passages, uncached|miss",
	"Rerank 20 passages|hit",
	"Rerank 20 passages, uncached|miss",
	"Query embedding, cache miss|miss",
	"Query embedding, cache hit|hit",
}

// names are the rows' names.
func names(rows []Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Name)
	}
	return out
}

// uncut strips the cache marks of sidecarRows.
func uncut(rows []string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i], _, _ = strings.Cut(r, "|")
	}
	return out
}

// TestBenchSidecarRows checks the rows through the sidecar. A regression
// test: every plugin row there repeats its texts and is a cache hit, which
// was printed like any other row and read as the sidecar being 50× faster
// than TEI; now each is marked hit and followed by an uncached variant.
func TestBenchSidecarRows(t *testing.T) {
	embedURL, rerankURL := simulators(t)
	url := sidecar(t, embedURL, rerankURL)

	o := quick(Options{Target: Target{URL: url, Face: FaceTEI}})
	var done, total int
	o.Progress = func(d, n int, _ string) { done, total = d, n }
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	// A regression test: the total counted a variant for the cache hit
	// row, which has none, so the bar never reached its end.
	if done != total {
		t.Errorf("progress ended at %d of %d", done, total)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	if got := summaryRows(t, text); !slices.Equal(got, sidecarRows) {
		t.Errorf("summary rows = %q, want %q\n%s", got, sidecarRows, text)
	}
	for _, want := range []string{
		"Test                                     Avg Time     Throughput           Cache\n",
		// The simulator is never called TEI.
		"Target: " + url + " (the sidecar, in front of TEI simulator (tests/teisim), not TEI; face tei; model BAAI/bge-m3)",
		"Concurrency sweep",
		`each such row of the plugin's has an uncached variant (", uncached")`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "TEI 1.9.3") {
		t.Errorf("output calls the simulator TEI:\n%s", text)
	}
	// The sidecar splits batches itself, so documents go in one call;
	// the plugin's 10 queries take ten.
	calls := map[string]int{}
	for _, r := range rep.Rows {
		calls[r.Name] = r.Target.Calls
		if r.Target.SplitAt != 0 || r.Note != "" {
			t.Errorf("row %q: split at %d, note %q; the sidecar needs no split", r.Name, r.Target.SplitAt, r.Note)
		}
		if r.Target.CacheFrom != CacheFromHeader {
			t.Errorf("row %q: cache known from %q, want %q (the sidecar sends X-Cache on every face)", r.Name, r.Target.CacheFrom, CacheFromHeader)
		}
		if r.Uncached != (r.VariantOf != "" || r.Name == "Query embedding, cache miss") {
			t.Errorf("row %q: uncached %v, variant of %q", r.Name, r.Uncached, r.VariantOf)
		}
	}
	if calls["50 documents embedding"] != 1 || calls["10 queries embedding"] != 10 || calls["20 documents embedding"] != 1 {
		t.Errorf("calls per iteration = %v", calls)
	}
	// A miss waits for the simulator's 1ms batch; a hit never reaches it.
	byName := map[string]Row{}
	for _, r := range rep.Rows {
		byName[r.Name] = r
	}
	for _, pair := range [][2]string{
		{"Query embedding, cache miss", "Query embedding, cache hit"},
		{"Single query embedding (short), uncached", "Single query embedding (short)"},
		{"Rerank 20 passages, uncached", "Rerank 20 passages"},
	} {
		miss, hit := byName[pair[0]].Target, byName[pair[1]].Target
		if miss.Cache != CacheMiss || hit.Cache != CacheHit || miss.Median < 0.001 || hit.Median >= miss.Median {
			t.Errorf("%s (%s, median %.2fms) against %s (%s, median %.2fms): want the miss at least 1ms and slower",
				pair[0], miss.Cache, miss.Median*1000, pair[1], hit.Cache, hit.Median*1000)
		}
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
	if got := names(rep.Rows); !slices.Equal(got, wantRows) || rep.Target.RerankModelID != "BAAI/bge-reranker-v2-m3" || rep.Target.Batch != 32 || rep.Target.RerankBatch != 32 || rep.Target.Sidecar {
		t.Errorf("rows %q, report %+v", got, rep.Target)
	}
	for _, r := range rep.Rows {
		if r.Target.Cache != CacheNone || r.Target.CacheFrom != "" {
			t.Errorf("row %q: cache %q from %q, want none: TEI has no cache", r.Name, r.Target.Cache, r.Target.CacheFrom)
		}
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{
		"Target: " + embedURL + " (TEI simulator (tests/teisim), not TEI; face tei; model BAAI/bge-m3; calls of more than 32 texts split)",
		"Rerank: " + rerankURL + " (face tei; model BAAI/bge-reranker-v2-m3; calls of more than 32 texts split)",
		"50 documents embedding: target split each call into 2 concurrent calls of at most 32 docs (its max_client_batch_size)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if got := summaryRows(t, text); got[0] != "Single query embedding (short)|-" {
		t.Errorf("first row %q, want no cache (-)", got[0])
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
	if got := names(rep.Rows); !slices.Equal(got, uncut(sidecarRows)) {
		t.Errorf("rows = %q", got)
	}
	for _, r := range rep.Rows {
		if r.Baseline == nil || r.Ratio == nil || r.Speedup == nil {
			t.Fatalf("row %q has no baseline comparison", r.Name)
		}
		if r.Baseline.Cache != CacheNone {
			t.Errorf("row %q: baseline cache %q, want none", r.Name, r.Baseline.Cache)
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
	line := regexp.MustCompile(`(?m)^(.{40}) +\d+\.\d{2} +\d+\.\d{2} +\d+\.\d{2} +\d+\.\d{2}x  (\S+)$`)
	var got []string
	for _, m := range line.FindAllStringSubmatch(cmp, -1) {
		got = append(got, strings.TrimRight(m[1], " ")+"|"+m[2])
	}
	var want []string
	for _, r := range sidecarRows {
		want = append(want, r+"/-")
	}
	want = append(want, "Sweep, 2 clients (speedup: throughput)|uncached")
	if !slices.Equal(got, want) {
		t.Errorf("comparison rows = %q, want %q\n%s", got, want, text)
	}
	if !strings.Contains(text, "BASELINE SUMMARY") {
		t.Errorf("output lacks the baseline summary:\n%s", text)
	}
}

// TestBenchJSONSchema checks the --json document against the schema
// docs/benchmarking.md documents: every documented key present, no other.
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
	// split_at and skipped are absent: the sidecar splits itself and
	// reranks.
	resultKeys := append(slices.Clone(statsKeys), "calls", "cache", "cache_from")
	// rerank_model_id is absent: rerank calls go to the target's URL;
	// found_via and rerank_skipped too.
	targetKeys := []string{"url", "rerank_url", "face", "model_id", "tei_version", "simulator", "sidecar", "batch", "rerank_batch"}
	// replicas: the target and the baseline are the sidecar.
	loadKeys := []string{"requests", "duration_s", "throughput", "mean_s", "p50_s", "p95_s", "p99_s", "replicas"}
	keys(t, "report", doc, "schema_version", "started_at", "target", "baseline", "scale", "notes", "rows", "sweep", "loads", "replicas")
	if doc["schema_version"] != float64(2) || SchemaVersion != 2 {
		t.Errorf("schema_version = %v", doc["schema_version"])
	}
	keys(t, "target", doc["target"], targetKeys...)
	keys(t, "baseline", doc["baseline"], targetKeys...)
	rows := doc["rows"].([]any)
	if len(rows) != len(sidecarRows) {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		rowKeys := []string{"name", "kind", "extra", "uncached", "items", "unit", "warmup", "iterations", "target", "baseline", "ratio", "speedup"}
		if strings.HasSuffix(r.(map[string]any)["name"].(string), ", uncached") {
			rowKeys = append(rowKeys, "variant_of")
		}
		keys(t, "row", r, rowKeys...)
		keys(t, "row target", r.(map[string]any)["target"], resultKeys...)
		keys(t, "row baseline", r.(map[string]any)["baseline"], resultKeys...)
	}
	sweep := doc["sweep"].([]any)
	if len(sweep) != 1 {
		t.Fatalf("sweep = %v", sweep)
	}
	keys(t, "sweep level", sweep[0], "clients", "target", "baseline", "ratio", "speedup")
	keys(t, "sweep target", sweep[0].(map[string]any)["target"], loadKeys...)

	// The section documents every key by name, those absent here too.
	doc2, err := readSection()
	if err != nil {
		t.Fatal(err)
	}
	absent := []string{"rerank_model_id", "found_via", "rerank_skipped", "model", "split_at", "skipped", "note", "variant_of"}
	for _, k := range slices.Concat(resultKeys, targetKeys, loadKeys, absent, []string{"schema_version", "started_at", "scale", "notes", "rows", "sweep", "kind", "extra", "uncached", "items", "unit", "warmup", "iterations", "ratio", "speedup", "clients"}) {
		if !strings.Contains(doc2, "`"+k+"`") {
			t.Errorf("docs/benchmarking.md does not document %q", k)
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

// readSection reads docs/benchmarking.md's section on bench, the
// documentation users read.
func readSection() (string, error) {
	b, err := os.ReadFile("../docs/benchmarking.md")
	if err != nil {
		return "", err
	}
	s := string(b)
	start := strings.Index(s, "## Benchmarking: `tei-sidecar bench`")
	end := strings.Index(s, "## Tuning: `tei-sidecar tune`")
	if start < 0 || end < start {
		return "", errors.New("docs/benchmarking.md has no bench section")
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
			if got := names(rep.Rows); !slices.Equal(got, uncut(sidecarRows)) {
				t.Errorf("rows = %q", got)
			}
			if face == FaceOpenAI && rep.Target.Model != "BAAI/bge-m3" {
				t.Errorf("model = %q, want /info's model_id", rep.Target.Model)
			}
		})
	}
}
