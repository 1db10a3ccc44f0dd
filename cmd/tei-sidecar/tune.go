package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tei-sidecar/tei-sidecar/bench"
)

// defaultTuneTarget is where tune looks for TEI when neither --target nor
// --sidecar names it: TEI's own default port.
const defaultTuneTarget = "http://127.0.0.1:3000"

// tuneCmd finds the client batch size and concurrency at TEI's throughput
// knee: the plugin guide's "raise the batch size until it runs out of
// memory", with every step bounded and stopped at TEI's first refusal.
type tuneCmd struct {
	Target         string        `name:"target" env:"TEI_EMBED_URL" placeholder:"URL" help:"Base URL (or host:port) of the embedding TEI, or of the sidecar, which serves TEI's API (default: http://127.0.0.1:3000)."`
	Sidecar        string        `name:"sidecar" env:"TUNE_SIDECAR" placeholder:"URL" help:"Tune the embedding TEI behind the sidecar at URL: the first ready replica its GET /status names (TEI under serve gets a random port; under compose none is published); with several ready replicas, the pool is then measured through the sidecar for the advice on TEI_REPLICAS_PER_GPU. Takes the place of --target."`
	SidecarToken   string        `name:"sidecar-token" env:"BEARER_TOKEN" help:"Bearer token for the sidecar's /status (the first of a comma-separated list)."`
	Token          string        `name:"token" env:"TEI_API_KEY" help:"API key of TEI (never logged): one started with --api-key, or the TEI_API_KEY the sidecar gives the TEI it launches."`
	MaxBatch       int           `name:"max-batch" env:"TUNE_MAX_BATCH" help:"Largest client batch to try (default: TEI's max_client_batch_size; more is allowed, and TEI's 422 then ends the batch sweep; TEI's own limit is TEI_MAX_CLIENT_BATCH_SIZE)."`
	MaxConcurrency int           `name:"max-concurrency" env:"TUNE_MAX_CONCURRENCY" default:"64" help:"Most concurrent requests to try."`
	StepDuration   time.Duration `name:"step-duration" env:"TUNE_STEP_DURATION" default:"2s" help:"Longest measurement of one setting."`
	StepRequests   int           `name:"step-requests" env:"TUNE_STEP_REQUESTS" default:"400" help:"Most measured requests of one setting."`
	MaxLatency     time.Duration `name:"max-latency" env:"TUNE_MAX_LATENCY" default:"2s" help:"p95 request latency above which a setting is too slow."`
	Knee           float64       `name:"knee" env:"TUNE_KNEE" default:"0.95" help:"Share of the best throughput the recommendation must reach."`
	Timeout        time.Duration `name:"timeout" env:"TUNE_TIMEOUT" default:"30s" help:"Deadline of one request; running out of it makes the setting too slow."`

	JSON     bool        `name:"json" env:"TUNE_JSON" help:"Print the report as JSON (schema_version 1) instead of text; the steps' lines go to stderr as they are measured."`
	WriteEnv envFileFlag `name:"write-env" env:"TUNE_WRITE_ENV" placeholder:"FILE" help:"Write EMBEDDING_BATCH, the client's batch, to FILE (default .env.optimized), changing only that key; an existing file is kept as FILE.bak."`
	Plot     string      `name:"plot" env:"TUNE_PLOT" placeholder:"FILE.svg" help:"Draw the sweep as SVG to FILE: throughput against inputs in flight per batch size, the recommended knee marked."`
}

// tuneReport is the --json document: the tune report and what --write-env did.
type tuneReport struct {
	*bench.TuneReport
	EnvFile *bench.EnvFileReport `json:"env_file,omitempty"`
}

func (c *tuneCmd) Run(g *globals) error {
	switch {
	case c.MaxBatch < 0:
		return exitError{code: 2, msg: fmt.Sprintf("--max-batch must be 0 (TEI's limit) or more, got %d", c.MaxBatch)}
	case c.MaxConcurrency < 1, c.StepRequests < 1, c.StepDuration <= 0, c.MaxLatency <= 0, c.Timeout <= 0:
		return exitError{code: 2, msg: "--max-concurrency, --step-requests, --step-duration, --max-latency and --timeout must be positive"}
	case c.Knee <= 0 || c.Knee > 1:
		return exitError{code: 2, msg: fmt.Sprintf("--knee must be in (0, 1], got %g", c.Knee)}
	}
	for _, f := range []struct {
		flag string
		v    *string
	}{{"--target", &c.Target}, {"--sidecar", &c.Sidecar}} {
		if err := normalizeURLFlag(f.flag, f.v); err != nil {
			return err
		}
	}
	if c.Plot != "" {
		if err := checkPlotFile(c.Plot); err != nil {
			return err
		}
	}
	o := bench.TuneOptions{
		URL: c.Target, Token: c.Token,
		MaxBatch: c.MaxBatch, MaxConcurrency: c.MaxConcurrency,
		StepDuration: c.StepDuration, StepRequests: c.StepRequests,
		MaxLatency: c.MaxLatency, Knee: c.Knee, Timeout: c.Timeout,
		// The steps' lines are the progress: on stdout as the table itself,
		// or on stderr beside the JSON.
		Live: g.stdout,
	}
	if c.JSON {
		o.Live = g.stderr
	}
	if c.Sidecar != "" {
		sideToken := firstToken(c.SidecarToken)
		found, err := bench.FindTEI(g.ctx, c.Sidecar, sideToken, nil)
		if err != nil {
			return err
		}
		if c.Target != "" {
			g.log.Warn("--sidecar given: tuning the TEI its /status names, not --target", "target", c.Target, "tei", found.Embed.URL)
		}
		for _, n := range found.Notes {
			g.log.Info("from the sidecar's /status: " + n)
		}
		o.URL, o.FoundVia = found.Embed.URL, found.Sidecar
		// With several replicas, the advice on TEI_REPLICAS_PER_GPU
		// measures the pool through the sidecar too.
		o.Pool = &bench.PoolOptions{Sidecar: found.Sidecar, Token: sideToken, Ready: found.Embed.Ready}
	}
	if o.URL == "" {
		o.URL = defaultTuneTarget
	}
	rep, err := bench.Tune(g.ctx, o)
	if err != nil {
		return err
	}
	out := tuneReport{TuneReport: rep}
	if c.WriteEnv != "" {
		backup, err := bench.WriteEnvFile(string(c.WriteEnv), rep.Env)
		if err != nil {
			return err
		}
		out.EnvFile = &bench.EnvFileReport{Path: string(c.WriteEnv), Backup: backup}
		g.log.Info("wrote settings", "file", string(c.WriteEnv), "backup", backup)
	}
	if err := c.print(g, out); err != nil {
		return err
	}
	if c.Plot != "" {
		if err := writePlot(c.Plot, func(w io.Writer) error { return bench.WriteTunePlot(w, rep) }); err != nil {
			return err
		}
		g.log.Info("wrote the picture", "file", c.Plot)
	}
	return nil
}

// print writes the JSON document, or what follows the steps' table.
func (c *tuneCmd) print(g *globals, out tuneReport) error {
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if err := bench.WriteTuneSummary(g.stdout, out.TuneReport); err != nil {
		return err
	}
	if f := out.EnvFile; f != nil {
		msg := "\nwrote " + f.Path
		if f.Backup != "" {
			msg += " (previous version kept as " + f.Backup + ")"
		}
		_, err := fmt.Fprintln(g.stdout, msg)
		return err
	}
	return nil
}
