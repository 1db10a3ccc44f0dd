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
	summary(p, "BENCHMARK SUMMARY", "Target", r.Target, r.Rows, func(row Row) *Result { return &row.Target })
	if r.Baseline != nil {
		summary(p, "BASELINE SUMMARY", "Baseline", *r.Baseline, r.Rows, func(row Row) *Result { return row.Baseline })
	}
	p.printf("Cache: hit = every call answered from a cache, miss = every call went to the model, partial = some, - = no cache (TEI itself).\n")
	notes(p, r)

	p.printf("\nDetails (ms; p50/p95/p99 interpolate between the closest ranks)\n")
	details(p, r.Rows, func(row Row) *Result { return &row.Target })
	if r.Baseline != nil {
		p.printf("\nBaseline details (ms)\n")
		details(p, r.Rows, func(row Row) *Result { return row.Baseline })
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

	if r.Baseline != nil {
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
	return p.err
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
