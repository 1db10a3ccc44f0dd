package bench

import (
	"fmt"
	"io"
	"strings"
)

// rule is the plugin's separator line.
var (
	rule = strings.Repeat("=", 70)
	dash = strings.Repeat("-", 70)
)

// WriteText prints the report for people: the plugin's summary table (its
// header, row format and throughput wording), then details, the sweep and
// the comparison with the baseline.
func WriteText(w io.Writer, r *Report) error {
	p := &printer{w: w}
	summary(p, "BENCHMARK SUMMARY", "Target", r.Target, r.Rows, func(row Row) Stats { return row.Target })
	if r.Baseline != nil {
		summary(p, "BASELINE SUMMARY", "Baseline", *r.Baseline, r.Rows, func(row Row) Stats { return *row.Baseline })
	}

	p.printf("\nDetails (ms; p50/p95/p99 interpolate between the closest ranks)\n")
	details(p, r.Rows, func(row Row) Stats { return row.Target })
	if r.Baseline != nil {
		p.printf("\nBaseline details (ms)\n")
		details(p, r.Rows, func(row Row) Stats { return *row.Baseline })
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
		p.printf("\nCompared with the baseline (ratio = target mean / baseline mean; speedup = baseline mean / target mean)\n")
		p.printf("%-40s %12s %12s %8s %9s\n", "Test", "Target ms", "Baseline ms", "Ratio", "Speedup")
		p.printf("%s\n", dash)
		for _, row := range r.Rows {
			p.printf("%-40s %12.2f %12.2f %8s %9s\n", row.Name, row.Target.Mean*1000, row.Baseline.Mean*1000, num(row.Ratio, ""), num(row.Speedup, "x"))
		}
		for _, l := range r.Sweep {
			if l.Baseline == nil {
				continue
			}
			// Under load, speedup is the throughput ratio.
			name := fmt.Sprintf("Sweep, %d clients (speedup: throughput)", l.Clients)
			p.printf("%-40s %12.2f %12.2f %8s %9s\n", name, l.Target.Mean*1000, l.Baseline.Mean*1000, num(l.Ratio, ""), num(l.Speedup, "x"))
		}
	}
	return p.err
}

// summary prints the plugin's BENCHMARK SUMMARY block:
// f"{name:<40} {avg:>10.3f}s  {throughput}".
func summary(p *printer, title, who string, t TargetReport, rows []Row, stats func(Row) Stats) {
	p.printf("\n%s\n%s\n%s\n", rule, title, rule)
	p.printf("%s: %s\n", who, describe(t.URL, t.Face, t.ModelID, t.TEIVersion))
	if t.RerankURL != t.URL {
		p.printf("Rerank: %s\n", describe(t.RerankURL, t.Face, t.RerankModelID, ""))
	}
	p.printf("\n%-40s %-12s %s\n", "Test", "Avg Time", "Throughput")
	p.printf("%s\n", dash)
	for _, row := range rows {
		s := stats(row)
		p.printf("%-40s %10.3fs  %.2f %s/s\n", row.Name, s.Mean, s.Throughput, row.Unit)
	}
	p.printf("%s\n", rule)
}

func describe(url string, face Face, model, version string) string {
	parts := []string{"face " + string(face)}
	if model != "" {
		parts = append(parts, "model "+model)
	}
	if version != "" {
		parts = append(parts, "TEI "+version)
	}
	return fmt.Sprintf("%s (%s)", url, strings.Join(parts, ", "))
}

func details(p *printer, rows []Row, stats func(Row) Stats) {
	p.printf("%-40s %5s %9s %9s %9s %9s %9s %9s %9s %9s\n", "Test", "n", "mean", "median", "stddev", "min", "max", "p50", "p95", "p99")
	for _, row := range rows {
		s := stats(row)
		ms := func(v float64) float64 { return v * 1000 }
		p.printf("%-40s %5d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", row.Name, len(s.Times),
			ms(s.Mean), ms(s.Median), ms(s.StdDev), ms(s.Min), ms(s.Max), ms(s.P50), ms(s.P95), ms(s.P99))
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
