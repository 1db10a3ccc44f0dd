package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// rule is the plugin's separator line.
var (
	rule = strings.Repeat("=", 70)
	dash = strings.Repeat("-", 70)
)

// WriteText prints the report for people: the plugin's summary table (its
// header, row format and throughput wording, with a cache column after
// it), notes, then details, the sweep and the comparison with the baseline.
func WriteText(w io.Writer, r *Report) error {
	p := &printer{w: w}
	if len(r.Rows) > 0 {
		summary(p, "BENCHMARK SUMMARY", "Target", r.Target, r.Rows, func(row Row) *Result { return &row.Target })
		if r.Baseline != nil {
			summary(p, "BASELINE SUMMARY", "Baseline", *r.Baseline, r.Rows, func(row Row) *Result { return row.Baseline })
		}
		p.printf("Cache: hit = every call answered from a cache, miss = every call went to the model, partial = some, - = no cache (TEI itself).\n")
	} else {
		p.printf("Target: %s\n", describe(r.Target, false))
		if r.Baseline != nil {
			p.printf("Baseline: %s\n", describe(*r.Baseline, false))
		}
	}
	notes(p, r)

	if len(r.Rows) > 0 {
		p.printf("\nDetails (ms; p50/p95/p99 interpolate between the closest ranks)\n")
		details(p, r.Rows, func(row Row) *Result { return &row.Target })
		if r.Baseline != nil {
			p.printf("\nBaseline details (ms)\n")
			details(p, r.Rows, func(row Row) *Result { return row.Baseline })
		}
	}

	if len(r.Sweep) > 0 {
		p.printf("\nConcurrency sweep (single-query embeds, every text unique)\n")
		p.printf("%-9s %7s %9s %8s %10s %9s %9s %9s %9s\n", "server", "clients", "requests", "seconds", "queries/s", "mean ms", "p50 ms", "p95 ms", "p99 ms")
		for _, l := range r.Sweep {
			sweepLine(p, "target", l.Clients, l.Target)
			if l.Baseline != nil {
				sweepLine(p, "baseline", l.Clients, *l.Baseline)
			}
		}
	}

	if r.Baseline != nil && len(r.Rows)+len(r.Sweep) > 0 {
		p.printf("\nCompared with the baseline (ratio = target mean / baseline mean; speedup = baseline mean / target mean; cache: target/baseline)\n")
		p.printf("%-40s %12s %12s %8s %9s  %s\n", "Test", "Target ms", "Baseline ms", "Ratio", "Speedup", "Cache")
		p.printf("%s\n", dash)
		for _, row := range r.Rows {
			b := row.Baseline
			base := fmt.Sprintf("%12.2f", b.Mean*1000)
			if b.Skipped != "" {
				base = fmt.Sprintf("%12s", "skipped")
			}
			p.printf("%-40s %12.2f %s %8s %9s  %s/%s\n", row.Name, row.Target.Mean*1000, base, num(row.Ratio, ""), num(row.Speedup, "x"),
				cacheMark(row.Target.Cache), cacheMark(b.Cache))
		}
		for _, l := range r.Sweep {
			if l.Baseline == nil {
				continue
			}
			// Under load, speedup is the throughput ratio.
			name := fmt.Sprintf("Sweep, %d clients (speedup: throughput)", l.Clients)
			p.printf("%-40s %12.2f %12.2f %8s %9s  %s\n", name, l.Target.Mean*1000, l.Baseline.Mean*1000, num(l.Ratio, ""), num(l.Speedup, "x"), "uncached")
		}
	}
	loads(p, r)
	replicas(p, r)
	if sc := r.Scaling; sc != nil {
		p.printf("\nScaling: through the sidecar, %d embed %s served %.1f queries/s (its best sweep level, %d clients): %.2fx one replica straight (%.1f, at %d clients); ideal %dx, efficiency %.0f%%.\n",
			sc.Replicas, plural(sc.Replicas, "replica", "replicas"), sc.Target, sc.TargetClients, sc.Ratio, sc.Baseline, sc.BaselineClients, sc.Replicas, sc.Efficiency*100)
		if !sc.BaselineSaturated {
			p.printf("One replica's throughput still grew at the sweep's last level (%d clients): it had not reached its capacity, so the ratio is not the pool's scaling; add a larger client count to --sweep.\n", sc.BaselineClients)
		}
	}
	return p.err
}

// loads prints the load scenarios: each group of clients on each server,
// then the figures compared, with the goals.
func loads(p *printer, r *Report) {
	if len(r.Loads) == 0 {
		return
	}
	p.printf("\nLoad scenarios (every text unique; the sidecar is sent Cache-Control: no-cache; %gs each after a warm-up)\n", r.Loads[0].DurationS)
	for _, l := range r.Loads {
		p.printf("\n%s\n", l.Title)
		p.printf("%-9s %-8s %7s %9s %8s %10s %11s %9s %9s %9s\n", "server", "group", "clients", "requests", "refused", "requests/s", "inputs/s", "p50 ms", "p95 ms", "p99 ms")
		results := []struct {
			who string
			res *LoadResult
		}{{"target", &l.Target}, {"baseline", l.Baseline}}
		for _, x := range results {
			if x.res == nil {
				continue
			}
			trafficLine(p, x.who, "queries", x.res.Queries)
			if x.res.Ingest != nil {
				trafficLine(p, x.who, "ingest", *x.res.Ingest)
			}
			if x.res.PinnedTo > 1 {
				p.printf("%-9s (clients spread over %d replicas, client i on the (i mod %d)th)\n", "", x.res.PinnedTo, x.res.PinnedTo)
			}
		}
		for _, c := range l.Compare {
			goal := ""
			switch {
			case c.GoalMax != nil:
				goal = fmt.Sprintf(" (goal <= %.2f: %s)", *c.GoalMax, metWord(*c.Met))
			case c.GoalMin != nil:
				goal = fmt.Sprintf(" (goal >= %.2f: %s)", *c.GoalMin, metWord(*c.Met))
			}
			p.printf("  %-20s target/baseline %.2f%s\n", metricName(c.Metric)+":", c.Ratio, goal)
		}
	}
}

func trafficLine(p *printer, who, group string, t Traffic) {
	ms := func(v float64) float64 { return v * 1000 }
	p.printf("%-9s %-8s %7d %9d %8d %10.1f %11.1f %9.2f %9.2f %9.2f\n", who, group, t.Clients, t.Requests, t.Refused, t.RequestsPerS, t.InputsPerS, ms(t.P50), ms(t.P95), ms(t.P99))
}

// metricName is a Comparison's metric as the text report names it.
func metricName(m string) string {
	switch m {
	case "query_p50_s":
		return "query p50"
	case "query_p99_s":
		return "query p99"
	case "ingest_inputs_per_s":
		return "ingest inputs/s"
	case "queries_per_s":
		return "queries/s"
	case "p99_s":
		return "p99"
	case "p50_s":
		return "p50"
	}
	return m
}

func metWord(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// replicas prints how the sidecar spread each load's inputs over its
// replicas, then the whole run's.
func replicas(p *printer, r *Report) {
	type group struct {
		name string
		uses []PoolUse
	}
	var groups []group
	for _, l := range r.Sweep {
		groups = append(groups, group{fmt.Sprintf("Sweep, %d clients", l.Clients), l.Target.Replicas})
	}
	for _, l := range r.Loads {
		groups = append(groups, group{l.Title, l.Target.Replicas})
	}
	groups = append(groups, group{"The whole run", r.Replicas})
	if !slices.ContainsFunc(groups, func(g group) bool { return len(g.uses) > 0 }) {
		return
	}
	p.printf("\nPer replica (the target's /metrics: what the sidecar sent each TEI; limit and state from its /status after)\n")
	for _, g := range groups {
		for _, u := range g.uses {
			p.printf("%s: %s pool, %d %s, spread %.1f%% from an even share\n", g.name, u.Pool, len(u.Replicas), plural(len(u.Replicas), "replica", "replicas"), u.Spread*100)
			p.printf("  %-26s %9s %10s %7s %7s %7s %6s  %s\n", "replica", "inputs", "inputs/s", "share", "calls", "failed", "limit", "state")
			for _, ru := range u.Replicas {
				p.printf("  %-26s %9d %10.1f %6.1f%% %7d %7d %6d  %s\n", ru.Replica, ru.Inputs, ru.InputsPerS, ru.Share*100, ru.Calls, ru.FailedCalls, ru.Limit, orDash(ru.State))
			}
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// summary prints the plugin's BENCHMARK SUMMARY block, each line as its
// script prints it (f"{name:<40} {avg:>10.3f}s  {throughput}"), the
// throughput padded so the cache column lines up after it.
func summary(p *printer, title, who string, t TargetReport, rows []Row, result func(Row) *Result) {
	p.printf("\n%s\n%s\n%s\n", rule, title, rule)
	p.printf("%s: %s\n", who, describe(t, false))
	if t.RerankURL != t.URL {
		p.printf("Rerank: %s\n", describe(t, true))
	}
	p.printf("\n%-40s %-12s %-20s %s\n", "Test", "Avg Time", "Throughput", "Cache")
	p.printf("%s\n", dash)
	for _, row := range rows {
		s := result(row)
		if s.Skipped != "" {
			p.printf("%-40s %11s  %-20s %s\n", row.Name, "skipped", "(see the notes)", "-")
			continue
		}
		p.printf("%-40s %10.3fs  %-20s %s\n", row.Name, s.Mean, fmt.Sprintf("%.2f %s/s", s.Throughput, row.Unit), cacheMark(s.Cache))
	}
	p.printf("%s\n", rule)
}

// cacheMark is a Result's cache as the tables print it.
func cacheMark(c Cache) string {
	if c == CacheNone || c == "" {
		return "-"
	}
	return string(c)
}

// notes prints the report's notes, then the rows', each note once with
// the rows it concerns.
func notes(p *printer, r *Report) {
	lines := slices.Clone(r.Notes)
	var order []string
	rows := map[string][]string{}
	for _, row := range r.Rows {
		if row.Note == "" {
			continue
		}
		if _, ok := rows[row.Note]; !ok {
			order = append(order, row.Note)
		}
		rows[row.Note] = append(rows[row.Note], row.Name)
	}
	for _, n := range order {
		lines = append(lines, strings.Join(rows[n], "; ")+": "+n+".")
	}
	if len(lines) == 0 {
		return
	}
	p.printf("\nNotes:\n")
	for _, l := range lines {
		p.printf("  - %s\n", l)
	}
}

// describe says what a server is: the sidecar or TEI, never calling the
// simulator TEI; its face, model and batch cap.
func describe(t TargetReport, rerank bool) string {
	url, model, batch := t.URL, t.ModelID, t.Batch
	if rerank {
		url, model, batch = t.RerankURL, t.RerankModelID, t.RerankBatch
	}
	var parts []string
	if kind := serverKind(t, rerank); kind != "" {
		parts = append(parts, kind)
	}
	parts = append(parts, "face "+string(t.Face))
	if model != "" {
		parts = append(parts, "model "+model)
	}
	if batch > 0 {
		parts = append(parts, fmt.Sprintf("calls of more than %d texts split", batch))
	}
	if t.FoundVia != "" {
		parts = append(parts, "found through the sidecar at "+t.FoundVia)
	}
	return fmt.Sprintf("%s (%s)", url, strings.Join(parts, "; "))
}

// serverKind names the server. A separate rerank URL is described by
// name only: its version and simulator field are not kept.
func serverKind(t TargetReport, rerank bool) string {
	backend := ""
	switch {
	case rerank:
	case t.Simulator != "":
		backend = SimulatorName(t.Simulator)
	case t.TEIVersion != "":
		backend = "TEI " + t.TEIVersion
	}
	switch {
	case t.Sidecar && backend != "":
		return "the sidecar, in front of " + backend
	case t.Sidecar:
		return "the sidecar"
	}
	return backend
}

// SimulatorName is how reports name a simulator, from /info's
// "simulator" field: never as TEI.
func SimulatorName(sim string) string {
	if sim == "teisim" {
		sim = "tests/teisim"
	}
	return "TEI simulator (" + sim + "), not TEI"
}

func details(p *printer, rows []Row, result func(Row) *Result) {
	p.printf("%-40s %5s %9s %9s %9s %9s %9s %9s %9s %9s %5s\n", "Test", "n", "mean", "median", "stddev", "min", "max", "p50", "p95", "p99", "calls")
	for _, row := range rows {
		s := result(row)
		if s.Skipped != "" {
			p.printf("%-40s %5s\n", row.Name, "skipped")
			continue
		}
		ms := func(v float64) float64 { return v * 1000 }
		p.printf("%-40s %5d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %5d\n", row.Name, len(s.Times),
			ms(s.Mean), ms(s.Median), ms(s.StdDev), ms(s.Min), ms(s.Max), ms(s.P50), ms(s.P95), ms(s.P99), s.Calls)
	}
}

func sweepLine(p *printer, who string, clients int, l Load) {
	ms := func(v float64) float64 { return v * 1000 }
	p.printf("%-9s %7d %9d %8.2f %10.1f %9.2f %9.2f %9.2f %9.2f\n", who, clients, l.Requests, l.DurationS, l.Throughput, ms(l.Mean), ms(l.P50), ms(l.P95), ms(l.P99))
}

func num(v *float64, suffix string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%s", *v, suffix)
}

// printer remembers the first write error, so a report is written without
// checking every line.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintf(p.w, format, args...)
}
