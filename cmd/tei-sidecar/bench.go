package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/tei-sidecar/tei-sidecar/bench"
)

// benchCmd runs the retrieval plugin's benchmark over HTTP.
type benchCmd struct {
	Target         string        `name:"target" env:"BENCH_TARGET" default:"http://127.0.0.1:8080" help:"Base URL of the sidecar, or of TEI itself with --face tei."`
	RerankTarget   string        `name:"rerank-target" env:"BENCH_RERANK_TARGET" placeholder:"URL" help:"Base URL of rerank calls (default: --target); against TEI itself, the reranker TEI's."`
	Face           string        `name:"face" env:"BENCH_FACE" enum:"tei,openai,plugin" default:"tei" help:"API to call: tei (/embed, /rerank), openai (/v1/embeddings, /v1/rerank) or plugin (/plugin/embed_query, /plugin/embed_documents, /plugin/rerank)."`
	Baseline       string        `name:"baseline" placeholder:"URL" help:"Run the same work against this base URL too, alternating per iteration, and print target/baseline ratios."`
	BaselineRerank string        `name:"baseline-rerank" placeholder:"URL" help:"Base URL of the baseline's rerank calls (default: --baseline)."`
	BaselineFace   string        `name:"baseline-face" placeholder:"FACE" help:"The baseline's API: tei, openai or plugin (default: --face)."`
	Model          string        `name:"model" help:"Model the openai face names (default: model_id from GET /info)."`
	Token          string        `name:"token" env:"BEARER_TOKEN" help:"Bearer token to send (the first of a comma-separated list)."`
	Batch          int           `name:"batch" help:"Most texts per documents call on the tei face (default: the target's max_client_batch_size)."`
	NoRerank       bool          `name:"no-rerank" help:"Leave out the rerank rows, for a target without a reranker."`
	Sweep          []int         `name:"sweep" sep:"," default:"1,4,16,64" help:"Client counts of the concurrency sweep."`
	NoSweep        bool          `name:"no-sweep" help:"Skip the concurrency sweep."`
	SweepDuration  time.Duration `name:"sweep-duration" default:"5s" help:"Longest run of one sweep level."`
	SweepRequests  int           `name:"sweep-requests" default:"2000" help:"Most requests of one sweep level."`
	Timeout        time.Duration `name:"timeout" default:"30s" help:"Deadline of one request."`
	JSON           bool          `name:"json" help:"Print the report as JSON (schema_version 1) instead of tables."`
	Scale          float64       `name:"scale" default:"1" hidden:"" help:"Multiply warm-ups and iterations, for quick checks."`
}

func (c *benchCmd) Run(g *globals) error {
	token := firstToken(c.Token)
	o := bench.Options{
		Target: bench.Target{
			URL: c.Target, RerankURL: c.RerankTarget, Face: bench.Face(c.Face),
			Token: token, Model: c.Model, Batch: c.Batch,
		},
		Scale:         c.Scale,
		SkipRerank:    c.NoRerank,
		SweepDuration: c.SweepDuration,
		SweepRequests: c.SweepRequests,
		Timeout:       c.Timeout,
	}
	if !c.NoSweep {
		o.Sweep = c.Sweep
	}
	if c.Baseline != "" {
		face := bench.Face(c.BaselineFace)
		if face == "" {
			face = o.Target.Face
		}
		o.Baseline = &bench.Target{URL: c.Baseline, RerankURL: c.BaselineRerank, Face: face, Token: token, Model: c.Model, Batch: c.Batch}
	} else if c.BaselineRerank != "" || c.BaselineFace != "" {
		return exitError{code: 2, msg: "--baseline-rerank and --baseline-face need --baseline"}
	}
	for _, t := range []*bench.Target{&o.Target, o.Baseline} {
		if t == nil {
			continue
		}
		if err := t.Validate(); err != nil {
			return exitError{code: 2, msg: err.Error()}
		}
	}
	if c.SweepDuration <= 0 || c.SweepRequests <= 0 || c.Scale <= 0 {
		return exitError{code: 2, msg: "--sweep-duration, --sweep-requests and --scale must be positive"}
	}

	bar := newProgress(g.stderr)
	o.Progress = bar.update
	rep, err := bench.Run(g.ctx, o)
	bar.finish()
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return bench.WriteText(g.stdout, rep)
}

// firstToken picks the first of BEARER_TOKEN's comma-separated tokens.
func firstToken(list string) string {
	first, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(first)
}

// progress draws a one-line bar on stderr while a long command runs, only
// when stderr is a terminal; elsewhere (a pipe, a CI log) it does nothing.
type progress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newProgress(stderr io.Writer) *progress {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	return &progress{w: stderr}
}

// update moves the bar to done of total, labelled with step.
func (p *progress) update(done, total int, step string) {
	if p.w == nil {
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

// finish clears the bar so the report starts on a clean line.
func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		_ = p.bar.Clear()
	}
}
