package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tei-sidecar/tei-sidecar/bench"
)

// tuneCmd finds the client batch size and concurrency at TEI's throughput
// knee: the plugin guide's "raise the batch size until it runs out of
// memory", with every step bounded and stopped at TEI's first refusal.
type tuneCmd struct {
	Target         string        `name:"target" env:"TEI_EMBED_URL" default:"http://127.0.0.1:3000" help:"Base URL of the embedding TEI (or of the sidecar, which serves TEI's API)."`
	Token          string        `name:"token" env:"TEI_API_KEY" help:"Bearer token for a TEI started with --api-key (never logged)."`
	MaxBatch       int           `name:"max-batch" help:"Largest client batch to try (default: TEI's max_client_batch_size; more is allowed, and TEI's 422 then ends the batch sweep)."`
	MaxConcurrency int           `name:"max-concurrency" default:"64" help:"Most concurrent requests to try."`
	StepDuration   time.Duration `name:"step-duration" default:"2s" help:"Longest measurement of one setting."`
	StepRequests   int           `name:"step-requests" default:"400" help:"Most measured requests of one setting."`
	MaxLatency     time.Duration `name:"max-latency" default:"2s" help:"p95 request latency above which a setting is too slow."`
	Knee           float64       `name:"knee" default:"0.95" help:"Share of the best throughput the recommendation must reach."`
	Timeout        time.Duration `name:"timeout" default:"30s" help:"Deadline of one request; running out of it makes the setting too slow."`

	JSON     bool        `name:"json" help:"Print the report as JSON (schema_version 1) instead of text."`
	WriteEnv envFileFlag `name:"write-env" placeholder:"FILE" help:"Write EMBEDDING_BATCH and EMBEDDING_CONCURRENCY to FILE (default .env.optimized), changing only those keys; an existing file is kept as FILE.bak."`
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
	bar := newProgress(g.stderr)
	rep, err := bench.Tune(g.ctx, bench.TuneOptions{
		URL: c.Target, Token: c.Token,
		MaxBatch: c.MaxBatch, MaxConcurrency: c.MaxConcurrency,
		StepDuration: c.StepDuration, StepRequests: c.StepRequests,
		MaxLatency: c.MaxLatency, Knee: c.Knee, Timeout: c.Timeout,
		Progress: bar.update,
	})
	bar.finish()
	if err != nil {
		if rep != nil && !c.JSON {
			// Show what was tried before saying nothing worked.
			_ = bench.WriteTuneText(g.stdout, rep)
		}
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
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if err := bench.WriteTuneText(g.stdout, rep); err != nil {
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
