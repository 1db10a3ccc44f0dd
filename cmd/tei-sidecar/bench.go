package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/tei-sidecar/tei-sidecar/bench"
)

// defaultBenchTarget is where bench looks for the sidecar when neither
// --target nor --sidecar names it: the sidecar's default listen address.
const defaultBenchTarget = "http://127.0.0.1:8080"

// benchCmd runs the retrieval plugin's benchmark over HTTP.
type benchCmd struct {
	Target         string        `name:"target" env:"BENCH_TARGET" placeholder:"URL" help:"Base URL (or host:port) of the server measured: the sidecar, or TEI itself with --face tei (default: --sidecar's URL, else http://127.0.0.1:8080)."`
	RerankTarget   string        `name:"rerank-target" env:"BENCH_RERANK_TARGET" placeholder:"URL" help:"Base URL of rerank calls (default: --target); against TEI itself, the reranker TEI's."`
	Sidecar        string        `name:"sidecar" env:"BENCH_SIDECAR" placeholder:"URL" help:"Measure the sidecar at URL against the TEI behind it: the baseline is the first ready embed and rerank replica its GET /status names (TEI under serve gets a random port; under compose none is published)."`
	Face           string        `name:"face" env:"BENCH_FACE" enum:"tei,openai,plugin" default:"tei" help:"API to call: tei (/embed, /rerank), openai (/v1/embeddings, /v1/rerank) or plugin (/plugin/embed_query, /plugin/embed_documents, /plugin/rerank)."`
	Baseline       string        `name:"baseline" env:"BENCH_BASELINE" placeholder:"URL" help:"Run the same work against this base URL too, alternating per iteration, and print target/baseline ratios."`
	BaselineRerank string        `name:"baseline-rerank" env:"BENCH_BASELINE_RERANK" placeholder:"URL" help:"Base URL of the baseline's rerank calls (default: --baseline)."`
	BaselineFace   string        `name:"baseline-face" env:"BENCH_BASELINE_FACE" placeholder:"FACE" help:"The baseline's API: tei, openai or plugin (default: --face; tei with --sidecar)."`
	Model          string        `name:"model" env:"BENCH_MODEL" help:"Model the openai face names (default: model_id from GET /info)."`
	Token          string        `name:"token" env:"BEARER_TOKEN" help:"Bearer token for the sidecar (the first of a comma-separated list)."`
	TEIToken       string        `name:"tei-token" env:"TEI_API_KEY" help:"API key of TEI itself (never logged): sent to the TEI found through --sidecar, and to --baseline instead of --token."`
	Batch          int           `name:"batch" env:"BENCH_BATCH" help:"Most texts per embed or rerank call; more are split into concurrent calls (default: TEI's max_client_batch_size; the sidecar splits for itself)."`
	NoRerank       bool          `name:"no-rerank" env:"BENCH_NO_RERANK" help:"Leave out the rerank rows, for a target without a reranker."`
	Sweep          []int         `name:"sweep" env:"BENCH_SWEEP" sep:"," default:"1,4,16,64" help:"Client counts of the concurrency sweep."`
	NoSweep        bool          `name:"no-sweep" env:"BENCH_NO_SWEEP" help:"Skip the concurrency sweep."`
	SweepDuration  time.Duration `name:"sweep-duration" env:"BENCH_SWEEP_DURATION" default:"5s" help:"Longest run of one sweep level."`
	SweepRequests  int           `name:"sweep-requests" env:"BENCH_SWEEP_REQUESTS" default:"2000" help:"Most requests of one sweep level."`
	Scenario       []string      `name:"scenario" env:"BENCH_SCENARIO" sep:"," default:"plugin,sweep" help:"What to run, comma-separated, in this order: plugin (the plugin's rows and ours), sweep, ingest (8 clients of 32-text batches beside 1 client of queries), flood (256 clients of queries), misses (8 clients of queries); all for every one."`
	LoadDuration   time.Duration `name:"scenario-duration" env:"BENCH_SCENARIO_DURATION" default:"5s" help:"Longest run of ingest, flood and misses on each server (after a warm-up)."`
	Timeout        time.Duration `name:"timeout" env:"BENCH_TIMEOUT" default:"30s" help:"Deadline of one request."`
	JSON           bool          `name:"json" env:"BENCH_JSON" help:"Print the report as JSON (schema_version 2) instead of tables."`
	Plot           string        `name:"plot" env:"BENCH_PLOT" placeholder:"FILE.svg" help:"Draw the concurrency sweep as SVG to FILE: latency p50/p99 and throughput against clients, target beside baseline."`
	Scale          float64       `name:"scale" env:"BENCH_SCALE" default:"1" hidden:"" help:"Multiply warm-ups and iterations, for quick checks."`
}

// benchScenarios are --scenario's values, in the order they run.
var benchScenarios = append([]string{"plugin", "sweep"}, bench.Loads...)

// scenarios reads --scenario: the plugin's rows, the sweep, and the load
// scenarios, in run order whatever the order given.
func (c *benchCmd) scenarios() (rows, sweep bool, loads []string, err error) {
	want := map[string]bool{}
	for _, s := range c.Scenario {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case s == "all":
			for _, v := range benchScenarios {
				want[v] = true
			}
		case slices.Contains(benchScenarios, s):
			want[s] = true
		case s == "":
		default:
			return false, false, nil, exitError{code: 2, msg: fmt.Sprintf("--scenario: unknown %q: want %s or all", s, strings.Join(benchScenarios, ", "))}
		}
	}
	if len(want) == 0 {
		return false, false, nil, exitError{code: 2, msg: "--scenario names nothing to run: want " + strings.Join(benchScenarios, ", ") + " or all"}
	}
	for _, l := range bench.Loads {
		if want[l] {
			loads = append(loads, l)
		}
	}
	return want["plugin"], want["sweep"] && !c.NoSweep, loads, nil
}

func (c *benchCmd) Run(g *globals) error {
	rows, sweep, loads, err := c.scenarios()
	if err != nil {
		return err
	}
	if !rows && !sweep && len(loads) == 0 {
		return exitError{code: 2, msg: "--no-sweep leaves --scenario nothing to run"}
	}
	for _, f := range []struct {
		flag string
		v    *string
	}{
		{"--target", &c.Target}, {"--rerank-target", &c.RerankTarget}, {"--sidecar", &c.Sidecar},
		{"--baseline", &c.Baseline}, {"--baseline-rerank", &c.BaselineRerank},
	} {
		if err := normalizeURLFlag(f.flag, f.v); err != nil {
			return err
		}
	}
	if c.Plot != "" {
		if err := checkPlotFile(c.Plot); err != nil {
			return err
		}
		if !sweep || len(c.Sweep) == 0 {
			return exitError{code: 2, msg: "--plot draws the concurrency sweep: drop --no-sweep, and keep sweep in --scenario"}
		}
	}
	if c.SweepDuration <= 0 || c.SweepRequests <= 0 || c.Scale <= 0 || c.LoadDuration <= 0 {
		return exitError{code: 2, msg: "--sweep-duration, --sweep-requests, --scenario-duration and --scale must be positive"}
	}
	token := firstToken(c.Token)
	o := bench.Options{
		Scale:         c.Scale,
		SkipRerank:    c.NoRerank,
		SkipRows:      !rows,
		SweepDuration: c.SweepDuration,
		SweepRequests: c.SweepRequests,
		Loads:         loads,
		LoadDuration:  c.LoadDuration,
		Timeout:       c.Timeout,
	}
	if sweep {
		o.Sweep = c.Sweep
	}
	target := c.Target
	var found *bench.SidecarTEI
	switch {
	case c.Sidecar != "" && (c.Baseline != "" || c.BaselineRerank != ""):
		return exitError{code: 2, msg: "--sidecar makes the TEI behind the sidecar the baseline: give --sidecar or --baseline, not both"}
	case c.Sidecar != "":
		var err error
		if found, err = bench.FindTEI(g.ctx, c.Sidecar, token, nil); err != nil {
			return err
		}
		if target == "" {
			target = found.Sidecar
		}
		face := bench.Face(c.BaselineFace)
		if face == "" {
			face = bench.FaceTEI // TEI serves neither the plugin's calls nor /v1/rerank
		}
		o.Baseline = &bench.Target{URL: found.Embed.URL, PoolURLs: found.Embed.URLs, Face: face, Token: c.TEIToken, Model: c.Model, Batch: c.Batch, FoundVia: found.Sidecar}
		if r := found.Rerank; r != nil {
			o.Baseline.RerankURL = r.URL
		}
	case c.Baseline != "":
		face := bench.Face(c.BaselineFace)
		if face == "" {
			face = bench.Face(c.Face)
		}
		baseToken := token
		if c.TEIToken != "" {
			baseToken = c.TEIToken
		}
		o.Baseline = &bench.Target{URL: c.Baseline, RerankURL: c.BaselineRerank, Face: face, Token: baseToken, Model: c.Model, Batch: c.Batch}
	case c.BaselineRerank != "" || c.BaselineFace != "":
		return exitError{code: 2, msg: "--baseline-rerank and --baseline-face need --baseline or --sidecar"}
	}
	if target == "" {
		target = defaultBenchTarget
	}
	o.Target = bench.Target{URL: target, RerankURL: c.RerankTarget, Face: bench.Face(c.Face), Token: token, Model: c.Model, Batch: c.Batch}
	for _, t := range []*bench.Target{&o.Target, o.Baseline} {
		if t == nil {
			continue
		}
		if err := t.Validate(); err != nil {
			return exitError{code: 2, msg: err.Error()}
		}
	}

	bar := newProgress(g.stderr, "bench")
	o.Progress = bar.update
	rep, err := bench.Run(g.ctx, o)
	bar.finish(err == nil)
	if err != nil {
		return err
	}
	if found != nil {
		for _, n := range found.Notes {
			rep.Notes = append(rep.Notes, "From the sidecar's /status: "+n+".")
		}
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := bench.WriteText(g.stdout, rep); err != nil {
		return err
	}
	if c.Plot != "" {
		if err := writePlot(c.Plot, func(w io.Writer) error { return bench.WritePlot(w, rep) }); err != nil {
			return err
		}
		g.log.Info("wrote the picture", "file", c.Plot)
	}
	return nil
}

// normalizeURLFlag rewrites a URL flag's value as a base URL (host:port
// and host mean http://), or explains, naming the flag, why it is none.
func normalizeURLFlag(flag string, v *string) error {
	if *v == "" {
		return nil
	}
	u, err := bench.NormalizeURL(*v)
	if err != nil {
		return exitError{code: 2, msg: flag + ": " + err.Error()}
	}
	*v = u
	return nil
}

// checkPlotFile refuses a --plot file that would hold SVG under another
// format's name.
func checkPlotFile(path string) error {
	if !strings.HasSuffix(strings.ToLower(path), ".svg") {
		return exitError{code: 2, msg: fmt.Sprintf("--plot writes SVG: give a file name ending in .svg, not %q", path)}
	}
	return nil
}

// writePlot writes a picture to path, reporting a failed close.
func writePlot(path string, draw func(io.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if err := draw(f); err != nil {
		return fmt.Errorf("--plot %s: %w", path, err)
	}
	return nil
}

// firstToken picks the first of BEARER_TOKEN's comma-separated tokens.
func firstToken(list string) string {
	first, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(first)
}

// progress shows a long command's progress on stderr: a one-line bar on a
// terminal; elsewhere (a pipe, a CI log), a line each time a step (a
// benchmark row, a sweep level) is done, so that the log shows it alive.
type progress struct {
	w      io.Writer
	prefix string
	bar    *progressbar.ProgressBar // nil in line mode
	lines  bool
	step   string // line mode: the step in progress
	done   int
	total  int
}

func newProgress(stderr io.Writer, prefix string) *progress {
	p := &progress{w: stderr, prefix: prefix}
	if f, ok := stderr.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		p.lines = true
	}
	return p
}

// update moves the progress to done of total, labelled with step.
func (p *progress) update(done, total int, step string) {
	if p.lines {
		if p.step != "" && step != p.step {
			p.line()
		}
		p.step, p.done, p.total = step, done, total
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	if p.bar.GetMax() != total {
		p.bar.ChangeMax(total)
	}
	p.bar.Describe(step)
	_ = p.bar.Set(done)
}

// line reports the step just finished.
func (p *progress) line() {
	fmt.Fprintf(p.w, "%s: %s done (%d/%d)\n", p.prefix, p.step, p.done, p.total)
}

// finish ends the progress so the report starts on a clean line; ok says
// whether the last step completed.
func (p *progress) finish(ok bool) {
	if p.lines {
		if ok && p.step != "" {
			p.line()
		}
		return
	}
	if p.bar != nil {
		_ = p.bar.Finish()
		_ = p.bar.Clear()
	}
}
