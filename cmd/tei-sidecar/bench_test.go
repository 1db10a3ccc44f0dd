package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/tei-sidecar/tei-sidecar/proxy"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// quickSim is the simulator's timing for these tests: about a millisecond
// a batch, whatever the text.
var quickSim = []string{"--sim-batch-cost", "1ms", "--sim-token-cost", "0s"}

// quickBench are bench flags for a run of a second or so.
var quickBench = []string{"--scale", "0.05", "--sweep", "1,2", "--sweep-duration", "50ms", "--sweep-requests", "40"}

// quickTune are tune flags for a run of a second or so.
var quickTune = []string{"--max-batch", "2", "--max-concurrency", "2", "--step-duration", "30ms", "--step-requests", "10"}

// clearToolEnv keeps the machine's settings out of a test.
func clearToolEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"BEARER_TOKEN", "TEI_API_KEY", "TEI_EMBED_URL", "BENCH_TARGET", "BENCH_SIDECAR", "TUNE_SIDECAR"} {
		t.Setenv(k, "")
	}
}

// runCmd runs the command line and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// sims starts an embedding and a reranking simulator.
func sims(t *testing.T, extra ...string) (embedURL, rerankURL string) {
	t.Helper()
	args := append(append([]string{}, quickSim...), extra...)
	_, embedURL = teisim.Start(t, append([]string{"--model-id", "BAAI/bge-m3"}, args...)...)
	_, rerankURL = teisim.Start(t, append([]string{"--model-id", "BAAI/bge-reranker-v2-m3"}, args...)...)
	return embedURL, rerankURL
}

// poolsSidecar starts the proxy in front of the simulators, which want
// apiKey ("": none). Its embedding pool also has a replica that never
// starts, so the tools must pick the ready one from /status.
func poolsSidecar(t *testing.T, embedURL, rerankURL, apiKey string) string {
	t.Helper()
	cfg := proxy.DefaultConfig()
	cfg.EmbedURLs, cfg.RerankURLs, cfg.APIKey = []string{"http://127.0.0.1:1", embedURL}, []string{rerankURL}, apiKey
	return inProcessSidecar(t, cfg)
}

// inProcessSidecar starts the proxy under cfg behind an httptest server and
// returns its URL.
func inProcessSidecar(t *testing.T, cfg proxy.Config) string {
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
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts.URL
}

// TestBenchTuneFlagsReadEnv checks that every flag of bench and tune reads
// an environment variable (BENCH_… or TUNE_…, or a name the sidecar shares)
// and that --help shows it. A regression test: "every flag reads an
// environment variable" was false for most of them.
func TestBenchTuneFlagsReadEnv(t *testing.T) {
	shared := map[string]bool{"BEARER_TOKEN": true, "TEI_API_KEY": true, "TEI_EMBED_URL": true}
	parser, err := kong.New(&cli{}, kong.Name("tei-sidecar"), kong.Exit(func(int) {}), defaultVars())
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range parser.Model.Children {
		prefix := map[string]string{"bench": "BENCH_", "tune": "TUNE_"}[cmd.Name]
		if prefix == "" {
			continue
		}
		t.Run(cmd.Name, func(t *testing.T) {
			_, help, _ := runCmd(t, cmd.Name, "--help")
			n := 0
			for _, f := range cmd.Flags {
				n++
				if len(f.Envs) != 1 {
					t.Errorf("--%s reads %d environment variables, want 1", f.Name, len(f.Envs))
					continue
				}
				env := f.Envs[0]
				if !strings.HasPrefix(env, prefix) && !shared[env] {
					t.Errorf("--%s reads %s: want %s… or a shared name", f.Name, env, prefix)
				}
				if !f.Hidden && !strings.Contains(help, "($"+env+")") {
					t.Errorf("--help does not show --%s's $%s", f.Name, env)
				}
			}
			if n < 10 {
				t.Errorf("%d flags: the walk missed some", n)
			}
		})
	}
}

// TestBenchTuneURLWithoutScheme checks that a URL flag takes host:port, as
// people type it. A regression test: --target 127.0.0.1:8080 was refused
// with a URL parser's message.
func TestBenchTuneURLWithoutScheme(t *testing.T) {
	clearToolEnv(t)
	embedURL, rerankURL := sims(t)
	hostport := strings.TrimPrefix(embedURL, "http://")
	rerankHost := strings.TrimPrefix(rerankURL, "http://")

	code, out, errOut := runCmd(t, append([]string{"bench", "--target", hostport, "--rerank-target", rerankHost,
		"--baseline", hostport, "--baseline-rerank", rerankHost, "--json"}, quickBench...)...)
	if code != 0 {
		t.Fatalf("bench exit %d:\n%s", code, errOut)
	}
	type server struct {
		URL       string
		RerankURL string `json:"rerank_url"`
	}
	var rep struct{ Target, Baseline server }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Target.URL != embedURL || rep.Target.RerankURL != rerankURL || rep.Baseline.URL != embedURL || rep.Baseline.RerankURL != rerankURL {
		t.Errorf("report URLs %+v, want %s and %s", rep, embedURL, rerankURL)
	}

	// The environment spells the same setting.
	t.Setenv("TEI_EMBED_URL", hostport)
	code, out, errOut = runCmd(t, append([]string{"tune", "--json"}, quickTune...)...)
	if code != 0 || !strings.Contains(out, `"url": "`+embedURL+`"`) {
		t.Fatalf("tune with TEI_EMBED_URL=%s: exit %d\n%s\n%s", hostport, code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--target", "127.0.0.1:80x"}, `--target: "127.0.0.1:80x" is not a URL, host:port or host: invalid port`},
		{[]string{"bench", "--sidecar", "ftp://x"}, `--sidecar: "ftp://x": the scheme must be http or https`},
		{[]string{"tune", "--sidecar", "http://"}, `--sidecar: "http://" has no host`},
	} {
		if code, _, errOut := runCmd(t, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestBenchSidecarFlag checks that --sidecar measures the sidecar against
// the TEI its /status names: ready replicas only.
func TestBenchSidecarFlag(t *testing.T) {
	clearToolEnv(t)
	embedURL, rerankURL := sims(t)
	side := poolsSidecar(t, embedURL, rerankURL, "")
	code, out, errOut := runCmd(t, append([]string{"bench", "--sidecar", side, "--json"}, quickBench...)...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	var rep struct {
		Target   struct{ URL string }
		Baseline struct {
			URL       string
			RerankURL string `json:"rerank_url"`
			FoundVia  string `json:"found_via"`
		}
		Rows []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Target.URL != side || rep.Baseline.URL != embedURL || rep.Baseline.RerankURL != rerankURL || rep.Baseline.FoundVia != side {
		t.Errorf("target %+v, baseline %+v; want the sidecar against %s and %s", rep.Target, rep.Baseline, embedURL, rerankURL)
	}
	// A pipe gets a line per row as it is done.
	if !strings.Contains(errOut, "bench: Rerank 20 passages done (") {
		t.Errorf("stderr lacks the rows' progress:\n%s", errOut)
	}
	if code, _, errOut := runCmd(t, "bench", "--sidecar", side, "--baseline", embedURL); code != 2 || !strings.Contains(errOut, "give --sidecar or --baseline, not both") {
		t.Errorf("--sidecar with --baseline: exit %d, %s", code, errOut)
	}
}

// TestBenchScenarioFlag checks --scenario: what runs, in run order
// whatever the order given, and the refusals.
func TestBenchScenarioFlag(t *testing.T) {
	clearToolEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "plugin,stampede"}, `--scenario: unknown "stampede": want plugin, sweep, ingest, flood, misses or all`},
		{[]string{"--scenario", ","}, "--scenario names nothing to run"},
		{[]string{"--scenario", "sweep", "--no-sweep"}, "--no-sweep leaves --scenario nothing to run"},
		{[]string{"--scenario", "misses", "--plot", "x.svg"}, "--plot draws the concurrency sweep: drop --no-sweep, and keep sweep in --scenario"},
		{[]string{"--scenario", "misses", "--scenario-duration", "0s"}, "--scenario-duration and --scale must be positive"},
	} {
		if code, _, errOut := runCmd(t, append([]string{"bench", "--target", "127.0.0.1:1"}, tc.args...)...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}

	embedURL, rerankURL := sims(t)
	side := poolsSidecar(t, embedURL, rerankURL, "")
	code, out, errOut := runCmd(t, "bench", "--sidecar", side, "--json", "--scenario", "misses,sweep", "--sweep", "1", "--sweep-duration", "50ms", "--scenario-duration", "50ms")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	var rep struct {
		Rows  []json.RawMessage
		Sweep []struct{ Clients int }
		Loads []struct {
			Name     string
			Baseline struct {
				PinnedTo int `json:"pinned_to"`
			}
		}
		Scaling *struct{ Replicas int }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	// The pool's replica that never starts is neither called nor counted.
	if len(rep.Rows) != 0 || len(rep.Sweep) != 1 || len(rep.Loads) != 1 || rep.Loads[0].Name != "misses" || rep.Loads[0].Baseline.PinnedTo != 0 ||
		rep.Scaling == nil || rep.Scaling.Replicas != 1 {
		t.Errorf("ran %+v", rep)
	}
}

// TestTuneSidecarFlag checks that --sidecar tunes the TEI its /status
// names, and that the steps' lines come as they are measured: on stdout as
// the table, on stderr beside --json. A regression test: piped, tune
// printed nothing for its whole run.
func TestTuneSidecarFlag(t *testing.T) {
	clearToolEnv(t)
	embedURL, rerankURL := sims(t)
	side := poolsSidecar(t, embedURL, rerankURL, "")
	step := regexp.MustCompile(`(?m)^ +[12] +[12] +\d+ +\d+\.\d +\d+\.\d\d +\d+\.\d\d  ok$`)

	code, out, errOut := runCmd(t, append([]string{"tune", "--sidecar", strings.TrimPrefix(side, "http://"), "--json"}, quickTune...)...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	var rep struct {
		Target struct {
			URL      string
			FoundVia string `json:"found_via"`
		}
		Steps    []json.RawMessage
		Env      []struct{ Key, Value string }
		Replicas struct {
			Action string
			Pool   *json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not the JSON alone: %v\n%s", err, out)
	}
	// One ready replica: advice without a pool check.
	if rep.Replicas.Action == "" || rep.Replicas.Pool != nil {
		t.Errorf("replicas advice %+v, want an action and no pool check", rep.Replicas)
	}
	if rep.Target.URL != embedURL || rep.Target.FoundVia != side {
		t.Errorf("target %+v, want %s found through %s", rep.Target, embedURL, side)
	}
	if n := len(step.FindAllString(errOut, -1)); n != len(rep.Steps) || n != 4 {
		t.Errorf("%d step lines on stderr for %d steps, want 4:\n%s", n, len(rep.Steps), errOut)
	}
	if len(rep.Env) != 1 || rep.Env[0].Key != "EMBEDDING_BATCH" {
		t.Errorf("env = %+v, want EMBEDDING_BATCH alone", rep.Env)
	}

	code, out, errOut = runCmd(t, append([]string{"tune", "--sidecar", side}, quickTune...)...)
	if code != 0 || len(step.FindAllString(out, -1)) != 4 || strings.Contains(errOut, " ok\n") {
		t.Errorf("text mode: exit %d; want the 4 steps on stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"Found through the sidecar at " + side, "EMBEDDING_BATCH is the client's batch", "TEI_MAX_CLIENT_BATCH_SIZE", "is advice, not a setting", "TEI_REPLICAS_PER_GPU (advice, never written"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestTuneAPIKeyAdvice checks the advice when a TEI the sidecar launched
// wants the key the sidecar gave it.
func TestTuneAPIKeyAdvice(t *testing.T) {
	clearToolEnv(t)
	embedURL, rerankURL := sims(t, "--api-key", "k3y")
	side := poolsSidecar(t, embedURL, rerankURL, "k3y")
	code, _, errOut := runCmd(t, append([]string{"tune", "--sidecar", side}, quickTune...)...)
	if code != 1 || !strings.Contains(errOut, "the sidecar at "+side+" launched TEI with a key of its own") || !strings.Contains(errOut, "Set TEI_API_KEY in .env (the sidecar then passes it to TEI)") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
	t.Setenv("TEI_API_KEY", "k3y")
	if code, _, errOut := runCmd(t, append([]string{"tune", "--sidecar", side, "--json"}, quickTune...)...); code != 0 {
		t.Errorf("with TEI_API_KEY: exit %d\n%s", code, errOut)
	}
}

// TestTuneWriteEnvBatchOnly is a regression test: tune wrote
// EMBEDDING_CONCURRENCY, which nothing reads.
func TestTuneWriteEnvBatchOnly(t *testing.T) {
	clearToolEnv(t)
	embedURL, _ := sims(t)
	path := filepath.Join(t.TempDir(), ".env")
	if code, _, errOut := runCmd(t, append([]string{"tune", "--target", embedURL, "--write-env", path}, quickTune...)...); code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	b, _ := os.ReadFile(path)
	if !regexp.MustCompile(`^EMBEDDING_BATCH=[12]\n$`).Match(b) {
		t.Errorf("%s holds %q, want EMBEDDING_BATCH alone", path, b)
	}
}

// checkSVG fails t unless the file is well-formed XML with an <svg> root
// whose text holds every one of labels.
func checkSVG(t *testing.T, path string, labels ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no picture: %v", err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not XML: %v", path, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
		case xml.CharData:
			text.Write(el)
			text.WriteByte('\n')
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root <%s>, want <svg>", path, root)
	}
	for _, l := range labels {
		if !strings.Contains(text.String(), l) {
			t.Errorf("%s lacks the legend %q", path, l)
		}
	}
}

func TestBenchTunePlotFlag(t *testing.T) {
	clearToolEnv(t)
	embedURL, rerankURL := sims(t)
	side := poolsSidecar(t, embedURL, rerankURL, "")
	dir := t.TempDir()

	benchSVG := filepath.Join(dir, "bench.svg")
	if code, _, errOut := runCmd(t, append([]string{"bench", "--sidecar", side, "--plot", benchSVG}, quickBench...)...); code != 0 {
		t.Fatalf("bench: exit %d\n%s", code, errOut)
	}
	checkSVG(t, benchSVG, "target p50", "target p99", "baseline p50", "baseline p99", "Throughput")

	tuneSVG := filepath.Join(dir, "tune.svg")
	t.Setenv("TUNE_PLOT", tuneSVG)
	if code, _, errOut := runCmd(t, append([]string{"tune", "--target", embedURL}, quickTune...)...); code != 0 {
		t.Fatalf("tune: exit %d\n%s", code, errOut)
	}
	checkSVG(t, tuneSVG, "batch 1", "batch 2", "recommended (knee): batch", "inputs in flight")

	for _, args := range [][]string{
		{"bench", "--plot", filepath.Join(dir, "b.png")},
		{"tune", "--plot", filepath.Join(dir, "t.pdf")},
	} {
		if code, _, errOut := runCmd(t, args...); code != 2 || !strings.Contains(errOut, "--plot writes SVG") {
			t.Errorf("%q: exit %d, %s", args, code, errOut)
		}
	}
	if code, _, errOut := runCmd(t, "bench", "--no-sweep", "--plot", benchSVG); code != 2 || !strings.Contains(errOut, "drop --no-sweep") {
		t.Errorf("--plot with --no-sweep: exit %d, %s", code, errOut)
	}
}
