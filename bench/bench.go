// Package bench measures a live embedding service the way the retrieval
// plugin's own benchmark script does, over HTTP, and tunes TEI's client
// batch size and concurrency.
//
// Run reproduces the plugin's eight scenarios (texts, warm-ups, iterations,
// statistics and summary format), adds cache miss and hit rows, latency
// percentiles and a concurrency sweep, and can run the same work against a
// baseline, alternating per iteration. Tune sweeps batch size and
// concurrency against TEI and recommends the throughput knee.
package bench

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// SchemaVersion is the version of Report's JSON. It changes only when a
// field is removed or changes meaning; new fields may appear within a
// version.
const SchemaVersion = 1

// Options configures Run. The zero value of each field but Target is a
// working default.
type Options struct {
	// Target is the server measured.
	Target Target
	// Baseline, when set, gets the same work; rows report
	// target/baseline ratios.
	Baseline *Target
	// Scale multiplies every row's warm-ups and iterations (rounding up,
	// at least one iteration); 0 or 1 keeps the plugin's counts.
	Scale float64
	// SkipRerank leaves out the rerank rows, for a target without a
	// reranker.
	SkipRerank bool
	// Sweep lists the client counts of the concurrency sweep; empty skips it.
	Sweep []int
	// SweepDuration bounds each sweep level; 0 means 5s.
	SweepDuration time.Duration
	// SweepRequests bounds each sweep level's requests; 0 means 2000.
	SweepRequests int
	// Timeout bounds each request; 0 means 30s.
	Timeout time.Duration
	// Progress, when set, is called after each unit of work (one
	// iteration or warm-up on one target, or one sweep level) from the
	// goroutine that called Run.
	Progress func(done, total int, step string)
	// HTTPClient sends the requests; nil means a pooled client.
	HTTPClient *http.Client
}

// Defaults of Options' zero values.
const (
	DefaultSweepDuration = 5 * time.Second
	DefaultSweepRequests = 2000
	DefaultTimeout       = 30 * time.Second
)

// DefaultSweep is the concurrency sweep's client counts.
var DefaultSweep = []int{1, 4, 16, 64}

// Report is Run's result and the --json document.
type Report struct {
	SchemaVersion int          `json:"schema_version"`
	StartedAt     time.Time    `json:"started_at"`
	Target        TargetReport `json:"target"`
	// Baseline is absent without a baseline.
	Baseline *TargetReport `json:"baseline,omitempty"`
	// Scale is Options.Scale; 1 means the plugin's counts.
	Scale float64 `json:"scale"`
	Rows  []Row   `json:"rows"`
	// Sweep is empty when the sweep was skipped.
	Sweep []SweepLevel `json:"sweep"`
}

// TargetReport says what was measured.
type TargetReport struct {
	URL       string `json:"url"`
	RerankURL string `json:"rerank_url"`
	Face      Face   `json:"face"`
	// ModelID and TEIVersion come from GET /info; empty when it gave none.
	ModelID string `json:"model_id,omitempty"`
	// RerankModelID comes from GET /info of a separate RerankURL; empty
	// when rerank calls go to URL.
	RerankModelID string `json:"rerank_model_id,omitempty"`
	TEIVersion    string `json:"tei_version,omitempty"`
	// Model is the openai face's "model"; empty on other faces.
	Model string `json:"model,omitempty"`
	// DocumentsBatch is the most texts per documents call on the tei face;
	// 0 means all in one call.
	DocumentsBatch int `json:"documents_batch"`
}

// Row is one scenario's result.
type Row struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Extra is true for rows that are not among the plugin's eight.
	Extra bool `json:"extra"`
	// Cache is "hit" or "miss" for the cache rows, absent otherwise.
	Cache Cache `json:"cache,omitempty"`
	// Items per iteration (queries, docs or passages), the throughput's
	// numerator.
	Items int    `json:"items"`
	Unit  string `json:"unit"`
	// Calls is the requests one iteration sends to the target.
	Calls      int   `json:"calls"`
	Warmup     int   `json:"warmup"`
	Iterations int   `json:"iterations"`
	Target     Stats `json:"target"`
	// Baseline, Ratio (target mean / baseline mean) and Speedup (baseline
	// mean / target mean) are absent without a baseline.
	Baseline *Stats   `json:"baseline,omitempty"`
	Ratio    *float64 `json:"ratio,omitempty"`
	Speedup  *float64 `json:"speedup,omitempty"`
}

// participant is a target or the baseline while Run runs.
type participant struct {
	name string // "target" or "baseline"
	c    *client
}

// Run benchmarks o.Target (and o.Baseline). A non-2xx answer, a malformed
// one or a transport failure ends it with an error naming the row.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.SweepDuration == 0 {
		o.SweepDuration = DefaultSweepDuration
	}
	if o.SweepRequests == 0 {
		o.SweepRequests = DefaultSweepRequests
	}
	for _, n := range o.Sweep {
		if n < 1 {
			return nil, fmt.Errorf("sweep client counts must be at least 1, got %d", n)
		}
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: tei.NewTransport()}
	}
	scale := o.Scale
	if scale <= 0 {
		scale = 1
	}

	target, err := newClient(ctx, o.Target, hc, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	parts := []participant{{"target", target}}
	rep := &Report{
		SchemaVersion: SchemaVersion,
		StartedAt:     time.Now().UTC(),
		Target:        target.report(),
		Scale:         scale,
		Rows:          []Row{},
		Sweep:         []SweepLevel{},
	}
	if o.Baseline != nil {
		base, err := newClient(ctx, *o.Baseline, hc, o.Timeout)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		// Both must send the same requests, so documents go in slices of
		// the smaller batch.
		if target.face == FaceTEI && base.face == FaceTEI && o.Target.Batch == 0 && o.Baseline.Batch == 0 {
			b := minBatch(target.batch, base.batch)
			target.batch, base.batch = b, b
			rep.Target.DocumentsBatch = b
		}
		parts = append(parts, participant{"baseline", base})
		br := base.report()
		rep.Baseline = &br
	}

	var scenarios []Scenario
	for _, s := range Scenarios() {
		if o.SkipRerank && s.Kind == KindRerank {
			continue
		}
		scenarios = append(scenarios, s.scaled(scale))
	}
	total := len(o.Sweep) * len(parts)
	for _, s := range scenarios {
		total += (s.Warmup + s.Iterations) * len(parts)
	}
	done := 0
	tick := func(step string) {
		done++
		if o.Progress != nil {
			o.Progress(done, total, step)
		}
	}

	for _, s := range scenarios {
		row, err := runRow(ctx, s, parts, tick)
		if err != nil {
			return nil, fmt.Errorf("row %q: %w", s.Name, err)
		}
		rep.Rows = append(rep.Rows, row)
	}
	for _, n := range o.Sweep {
		level := SweepLevel{Clients: n}
		for _, p := range parts {
			l, err := sweepLevel(ctx, p.c, n, o.SweepDuration, o.SweepRequests)
			if err != nil {
				return nil, fmt.Errorf("sweep with %d clients on the %s: %w", n, p.name, err)
			}
			if p.name == "target" {
				level.Target = l
			} else {
				level.Baseline = &l
			}
			tick(fmt.Sprintf("sweep %d clients", n))
		}
		if b := level.Baseline; b != nil {
			level.Ratio = ratio(level.Target.Mean, b.Mean)
			level.Speedup = ratio(level.Target.Throughput, b.Throughput)
		}
		rep.Sweep = append(rep.Sweep, level)
	}
	return rep, nil
}

// minBatch is the smaller positive batch; 0 (no cap) loses to any cap.
func minBatch(a, b int) int {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// runRow runs a scenario on every participant, alternating per iteration
// (target first on even iterations, baseline first on odd ones) so drift in
// the machine's state falls on both alike.
func runRow(ctx context.Context, s Scenario, parts []participant, tick func(string)) (Row, error) {
	times := make([][]time.Duration, len(parts))
	order := func(i int) []int {
		if len(parts) == 2 && i%2 == 1 {
			return []int{1, 0}
		}
		idx := make([]int, len(parts))
		for j := range idx {
			idx[j] = j
		}
		return idx
	}
	for i := range s.Warmup {
		for _, j := range order(i) {
			if err := parts[j].c.iteration(ctx, s); err != nil {
				return Row{}, fmt.Errorf("warm-up on the %s: %w", parts[j].name, err)
			}
			tick(s.Name)
		}
	}
	for i := range s.Iterations {
		for _, j := range order(i) {
			start := time.Now()
			if err := parts[j].c.iteration(ctx, s); err != nil {
				return Row{}, fmt.Errorf("%s: %w", parts[j].name, err)
			}
			times[j] = append(times[j], time.Since(start))
			tick(s.Name)
		}
	}
	row := Row{
		Name: s.Name, Kind: s.Kind, Extra: s.Extra, Cache: s.Cache,
		Items: s.Items(), Unit: s.Unit, Calls: parts[0].c.calls(s),
		Warmup: s.Warmup, Iterations: s.Iterations,
		Target: summarize(seconds(times[0]), s.Items()),
	}
	if len(parts) == 2 {
		b := summarize(seconds(times[1]), s.Items())
		row.Baseline = &b
		row.Ratio = ratio(row.Target.Mean, b.Mean)
		row.Speedup = ratio(b.Mean, row.Target.Mean)
	}
	return row, nil
}

// ratio is a/b, or nil when b is zero.
func ratio(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	r := a / b
	return &r
}

func (c *client) report() TargetReport {
	r := TargetReport{
		URL:       c.embed.BaseURL(),
		RerankURL: c.rerank.BaseURL(),
		Face:      c.face,
		Model:     c.model,
	}
	if c.face == FaceTEI {
		r.DocumentsBatch = c.batch
	}
	if c.info != nil {
		r.ModelID, r.TEIVersion = c.info.ModelID, c.info.Version
	}
	// The sidecar's /info describes its embedding model only, so the
	// reranker is named only when it has a URL of its own.
	if c.rinfo != nil {
		r.RerankModelID = c.rinfo.ModelID
	}
	return r
}
