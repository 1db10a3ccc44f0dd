// Package bench measures a live embedding service the way the retrieval
// plugin's own benchmark script does, over HTTP, and tunes TEI's client
// batch size and concurrency.
//
// Run reproduces the plugin's eight scenarios (texts, warm-ups, iterations,
// statistics and summary format), adds cache miss and hit rows, uncached
// variants of the rows a cache answered, latency percentiles and a
// concurrency sweep, and can run the same work against a baseline,
// alternating per iteration. Tune sweeps batch size and concurrency against
// TEI and recommends the throughput knee. FindTEI reads the TEI URLs from
// the sidecar's /status; WritePlot and WriteTunePlot draw SVG pictures.
package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// SchemaVersion is the version of Report's JSON. It changes only when a
// field is removed or changes meaning; new fields may appear within a
// version. Version 2 moved calls and the cache rows' "cache" into each
// server's result and lets a baseline skip a row.
const SchemaVersion = 2

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
	// SkipRows leaves out the plugin's rows and ours (the cache rows and
	// the uncached variants), to run only the sweep or the loads.
	SkipRows bool
	// Sweep lists the client counts of the concurrency sweep; empty skips it.
	Sweep []int
	// SweepDuration bounds each sweep level; 0 means 5s.
	SweepDuration time.Duration
	// SweepRequests bounds each sweep level's requests; 0 means 2000.
	SweepRequests int
	// Loads lists the load scenarios run after the sweep (LoadIngest,
	// LoadFlood, LoadMisses), each on the target, then the baseline.
	Loads []string
	// LoadDuration bounds each load scenario on each server; 0 means 5s.
	LoadDuration time.Duration
	// Timeout bounds each request; 0 means 30s.
	Timeout time.Duration
	// Progress, when set, is called after each unit of work (one
	// iteration or warm-up on one target, or one sweep level) from the
	// goroutine that called Run. total changes when a row gets an
	// uncached variant that was not foreseen, or does not get one that was.
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
	// Notes say what a reader must know about the whole run (rows left
	// out, how cache hits were told); empty when nothing needs saying.
	Notes []string `json:"notes"`
	Rows  []Row    `json:"rows"`
	// Sweep is empty when the sweep was skipped.
	Sweep []SweepLevel `json:"sweep"`
	// Loads are the load scenarios run, in order; empty when none.
	Loads []LoadReport `json:"loads"`
	// Replicas is how the sidecar (the target) spread the whole run's
	// inputs over its replicas; absent when the target is not the sidecar
	// or its metrics could not be read.
	Replicas []PoolUse `json:"replicas,omitempty"`
	// Scaling sets the sidecar's capacity beside one replica's straight;
	// absent unless the baseline is a replica of the target's pool (bench
	// --sidecar) and the sweep ran.
	Scaling *Scaling `json:"scaling,omitempty"`
}

// Scaling compares the sweep's best throughput through the sidecar, over
// every replica of its pool, with its best throughput on one replica
// straight: with n replicas, ideally n times as much.
type Scaling struct {
	// Replicas counts the embed replicas that were ready or took inputs
	// during the sweep.
	Replicas int `json:"replicas"`
	// Target and Baseline are the best sweep levels' queries per second
	// and Clients those levels' client counts.
	Target          float64 `json:"target"`
	TargetClients   int     `json:"target_clients"`
	Baseline        float64 `json:"baseline"`
	BaselineClients int     `json:"baseline_clients"`
	// Ratio is Target ÷ Baseline; Efficiency is Ratio ÷ Replicas.
	Ratio      float64 `json:"ratio"`
	Efficiency float64 `json:"efficiency"`
	// BaselineSaturated says whether one replica reached its capacity in
	// the sweep: its best level is not the last, or the last gained less
	// than 10% over the one before. Without it the ratio flatters.
	BaselineSaturated bool `json:"baseline_saturated"`
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
	// Simulator names the TEI simulator that answered GET /info (its
	// "simulator" field); empty for TEI.
	Simulator string `json:"simulator,omitempty"`
	// Sidecar is true when GET /status answered as the sidecar's does:
	// its answers may come from its cache, and it splits batches itself.
	Sidecar bool `json:"sidecar"`
	// FoundVia is the sidecar whose GET /status named this TEI.
	FoundVia string `json:"found_via,omitempty"`
	// Model is the openai face's "model"; empty on other faces.
	Model string `json:"model,omitempty"`
	// Batch and RerankBatch are the most texts of one embed call and of
	// one rerank call: a row with more is split into concurrent calls. 0
	// means every row's texts go in one call.
	Batch       int `json:"batch"`
	RerankBatch int `json:"rerank_batch"`
	// RerankSkipped says why the rerank rows did not run on this server;
	// empty when they did (or were left out by SkipRerank).
	RerankSkipped string `json:"rerank_skipped,omitempty"`
}

// Row is one scenario's result.
type Row struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Extra is true for rows that are not among the plugin's eight.
	Extra bool `json:"extra"`
	// Uncached is true when every call's texts carry a unique suffix, so
	// no cache can answer them; otherwise they repeat after the warm-up.
	Uncached bool `json:"uncached"`
	// VariantOf names the row an uncached variant repeats with unique
	// texts; absent on other rows.
	VariantOf string `json:"variant_of,omitempty"`
	// Items per iteration (queries, docs or passages), the throughput's
	// numerator.
	Items      int    `json:"items"`
	Unit       string `json:"unit"`
	Warmup     int    `json:"warmup"`
	Iterations int    `json:"iterations"`
	Target     Result `json:"target"`
	// Baseline is absent without a baseline; Ratio (target mean / baseline
	// mean) and Speedup (baseline mean / target mean) also when the
	// baseline skipped the row.
	Baseline *Result  `json:"baseline,omitempty"`
	Ratio    *float64 `json:"ratio,omitempty"`
	Speedup  *float64 `json:"speedup,omitempty"`
	// Note says how the servers' calls differed (split batches, a skipped
	// baseline); absent when they did not.
	Note string `json:"note,omitempty"`
}

// Result is one server's share of a row: its statistics and how its calls
// were answered.
type Result struct {
	Stats
	// Calls is the requests one iteration sent.
	Calls int `json:"calls"`
	// SplitAt is the most texts per call when the row's texts were split
	// to fit the server's limit; absent when they went in one call.
	SplitAt int `json:"split_at,omitempty"`
	// Cache says what answered the measured calls; CacheFrom how that is
	// known (absent with CacheNone).
	Cache     Cache  `json:"cache"`
	CacheFrom string `json:"cache_from,omitempty"`
	// Skipped says why the row did not run on this server; the statistics
	// are then empty.
	Skipped string `json:"skipped,omitempty"`
}

// participant is a target or the baseline while Run runs.
type participant struct {
	name string // "target" or "baseline"
	c    *client
	// m reads the sidecar's metrics; nil when the server is not the
	// sidecar or they cannot be read.
	m *meter
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
	if o.LoadDuration == 0 {
		o.LoadDuration = DefaultLoadDuration
	}
	for _, l := range o.Loads {
		if !slices.Contains(Loads, l) {
			return nil, fmt.Errorf("unknown load scenario %q: want %s", l, strings.Join(Loads, ", "))
		}
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
	parts := []participant{{name: "target", c: target}}
	rep := &Report{
		SchemaVersion: SchemaVersion,
		StartedAt:     time.Now().UTC(),
		Target:        target.report(),
		Scale:         scale,
		Notes:         []string{},
		Rows:          []Row{},
		Sweep:         []SweepLevel{},
		Loads:         []LoadReport{},
	}
	if o.Baseline != nil {
		base, err := newClient(ctx, *o.Baseline, hc, o.Timeout)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		parts = append(parts, participant{name: "baseline", c: base})
		br := base.report()
		rep.Baseline = &br
	}
	for i := range parts {
		p := &parts[i]
		if !p.c.sidecar {
			continue
		}
		m, err := newMeter(ctx, p.c.embed)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("The %s's figures per replica are left out: %v.", p.name, err))
			continue
		}
		p.m = m
	}
	var runStart counters
	started := time.Now()
	if m := parts[0].m; m != nil {
		if runStart, err = m.scrape(ctx); err != nil {
			return nil, err
		}
	}
	skipRerank := o.SkipRerank
	if !skipRerank && !o.SkipRows && target.noRerank != "" {
		skipRerank = true
		rep.Target.RerankSkipped = target.noRerank
		rep.Notes = append(rep.Notes, "The rerank rows are left out: "+target.noRerank+" (give the reranker's URL with --rerank-target).")
	}
	if b := rep.Baseline; b != nil && !skipRerank && !o.SkipRows && parts[1].c.noRerank != "" {
		b.RerankSkipped = parts[1].c.noRerank
		rep.Notes = append(rep.Notes, "The rerank rows ran on the target only: "+b.RerankSkipped+" (give the baseline's reranker with --baseline-rerank).")
	}

	var scenarios []Scenario
	for _, s := range Scenarios() {
		if o.SkipRows || skipRerank && s.Kind == KindRerank {
			continue
		}
		scenarios = append(scenarios, s.scaled(scale))
	}
	caching := slices.ContainsFunc(parts, func(p participant) bool { return p.c.sidecar })
	total := (len(o.Sweep) + len(o.Loads)) * len(parts)
	for _, s := range scenarios {
		units := (s.Warmup + s.Iterations) * len(parts)
		total += units
		if caching && wantsVariant(s) {
			total += units
		}
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
		if !wantsVariant(s) {
			continue
		}
		units := (s.Warmup + s.Iterations) * len(parts)
		answered := cachedAnswers(row)
		switch {
		case answered && !caching:
			total += units // an X-Cache header told of a cache /status did not
		case !answered && caching:
			total -= units
		}
		if !answered {
			continue
		}
		v := s.uncached()
		vrow, err := runRow(ctx, v, parts, tick)
		if err != nil {
			return nil, fmt.Errorf("row %q: %w", v.Name, err)
		}
		rep.Rows = append(rep.Rows, vrow)
	}
	if slices.ContainsFunc(rep.Rows, func(r Row) bool { return r.VariantOf != "" }) {
		rep.Notes = append(rep.Notes, "Rows marked hit were answered from the sidecar's cache, as repeated texts are; each such row of the plugin's has an uncached variant (\", uncached\") whose texts are new on every call: that is the one to set beside TEI.")
	}
	for _, n := range o.Sweep {
		level := SweepLevel{Clients: n}
		for _, p := range parts {
			l, err := p.sweepLevel(ctx, n, o.SweepDuration, o.SweepRequests)
			if err != nil {
				return nil, fmt.Errorf("sweep with %d clients on the %s: %w", n, p.name, p.c.explain(err))
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
	for _, name := range o.Loads {
		l, err := runLoad(ctx, name, parts, o.LoadDuration, o.Timeout, tick)
		if err != nil {
			return nil, err
		}
		rep.Loads = append(rep.Loads, l)
	}
	if m := parts[0].m; m != nil {
		end, err := m.scrape(ctx)
		if err != nil {
			return nil, err
		}
		rep.Replicas = poolUse(runStart, end, m.replicas(ctx), time.Since(started))
	}
	if b := rep.Baseline; b != nil && b.FoundVia != "" && rep.Target.Sidecar {
		rep.Scaling = scaling(rep.Sweep)
	}
	return rep, nil
}

// scaling compares the sweep's best levels on the target and the baseline;
// nil without a baseline's sweep.
func scaling(levels []SweepLevel) *Scaling {
	var sc Scaling
	for _, l := range levels {
		if l.Baseline == nil {
			return nil
		}
		if l.Target.Throughput > sc.Target {
			sc.Target, sc.TargetClients = l.Target.Throughput, l.Clients
			if pu := poolOf(l.Target.Replicas, PoolEmbed); pu != nil {
				sc.Replicas = len(pu.Replicas)
			}
		}
		if l.Baseline.Throughput > sc.Baseline {
			sc.Baseline, sc.BaselineClients = l.Baseline.Throughput, l.Clients
		}
	}
	if sc.Baseline == 0 || sc.Replicas == 0 {
		return nil
	}
	n := len(levels)
	last := levels[n-1]
	sc.BaselineSaturated = sc.BaselineClients != last.Clients ||
		n > 1 && last.Baseline.Throughput < 1.1*levels[n-2].Baseline.Throughput
	sc.Ratio = sc.Target / sc.Baseline
	sc.Efficiency = sc.Ratio / float64(sc.Replicas)
	return &sc
}

// wantsVariant reports whether a row answered from a cache gets an
// uncached variant: the plugin's rows do; the cache rows are a pair already.
func wantsVariant(s Scenario) bool { return !s.Extra && !s.Unique }

// cachedAnswers reports whether any server answered the row from a cache.
func cachedAnswers(r Row) bool {
	for _, res := range []*Result{&r.Target, r.Baseline} {
		if res != nil && (res.Cache == CacheHit || res.Cache == CachePartial) {
			return true
		}
	}
	return false
}

// runRow runs a scenario on every participant, alternating per iteration
// (target first on even iterations, baseline first on odd ones) so drift in
// the machine's state falls on both alike. A participant that cannot run
// the row (a baseline without a reranker) skips it.
func runRow(ctx context.Context, s Scenario, parts []participant, tick func(string)) (Row, error) {
	times := make([][]time.Duration, len(parts))
	tallies := make([]tally, len(parts))
	skip := make([]string, len(parts))
	for j, p := range parts {
		if s.Kind == KindRerank {
			skip[j] = p.c.noRerank
		}
	}
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
			if skip[j] == "" {
				if err := parts[j].c.iteration(ctx, s, nil); err != nil {
					return Row{}, fmt.Errorf("warm-up on the %s: %w", parts[j].name, parts[j].c.explain(err))
				}
			}
			tick(s.Name)
		}
	}
	for i := range s.Iterations {
		for _, j := range order(i) {
			if skip[j] == "" {
				start := time.Now()
				if err := parts[j].c.iteration(ctx, s, &tallies[j]); err != nil {
					return Row{}, fmt.Errorf("%s: %w", parts[j].name, parts[j].c.explain(err))
				}
				times[j] = append(times[j], time.Since(start))
			}
			tick(s.Name)
		}
	}
	results := make([]Result, len(parts))
	var notes []string
	for j, p := range parts {
		if skip[j] != "" {
			results[j] = Result{Stats: Stats{Times: []float64{}}, Cache: CacheNone, Skipped: skip[j]}
			notes = append(notes, p.name+" skipped: not a reranker")
			continue
		}
		calls, splitAt := p.c.calls(s)
		cache, from := tallies[j].verdict(p.c.sidecar, s.Unique)
		results[j] = Result{Stats: summarize(seconds(times[j]), s.Items()), Calls: calls, SplitAt: splitAt, Cache: cache, CacheFrom: from}
		if splitAt > 0 {
			notes = append(notes, fmt.Sprintf("%s split each call into %d concurrent calls of at most %d %s (%s), as the sidecar splits for TEI",
				p.name, calls, splitAt, s.Unit, p.c.batchFrom))
		}
	}
	row := Row{
		Name: s.Name, Kind: s.Kind, Extra: s.Extra, Uncached: s.Unique, VariantOf: s.VariantOf,
		Items: s.Items(), Unit: s.Unit, Warmup: s.Warmup, Iterations: s.Iterations,
		Target: results[0], Note: strings.Join(notes, "; "),
	}
	if len(parts) == 2 {
		b := results[1]
		row.Baseline = &b
		if b.Skipped == "" {
			row.Ratio = ratio(row.Target.Mean, b.Mean)
			row.Speedup = ratio(b.Mean, row.Target.Mean)
		}
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
		URL:         c.embed.BaseURL(),
		RerankURL:   c.rerank.BaseURL(),
		Face:        c.face,
		Model:       c.model,
		Simulator:   c.simulator,
		Sidecar:     c.sidecar,
		FoundVia:    c.foundVia,
		Batch:       c.batch,
		RerankBatch: c.rerankBatch,
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
