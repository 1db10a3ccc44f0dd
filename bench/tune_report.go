package bench

import (
	"io"
	"strings"
)

// WriteTuneText prints a tune report for people: the steps, the best
// setting, the recommendation and the settings to use.
func WriteTuneText(w io.Writer, r *TuneReport) error {
	p := &printer{w: w}
	t := r.Target
	p.printf("Tuned %s (model %s, TEI %s; max_client_batch_size %d, max_batch_tokens %d, max_concurrent_requests %d)\n",
		t.URL, orUnknown(t.ModelID), orUnknown(t.TEIVersion), t.MaxClientBatchSize, t.MaxBatchTokens, t.MaxConcurrentRequests)
	s := r.Settings
	p.printf("Each step: at most %gs or %d requests; p95 limit %gs; knee at %g%% of the best throughput.\n\n",
		s.StepDurationS, s.StepRequests, s.MaxLatencyS, s.Knee*100)
	p.printf("%6s %8s %9s %11s %9s %9s  %s\n", "batch", "clients", "requests", "inputs/s", "p50 ms", "p95 ms", "outcome")
	for _, st := range r.Steps {
		outcome := st.Outcome
		if st.Reason != "" {
			outcome += ": " + oneLine(st.Reason)
		}
		if st.Outcome == OutcomeOK || st.Outcome == OutcomeSlow {
			p.printf("%6d %8d %9d %11.1f %9.2f %9.2f  %s\n", st.Batch, st.Concurrency, st.Requests, st.Throughput, st.P50*1000, st.P95*1000, outcome)
		} else {
			p.printf("%6d %8d %9s %11s %9s %9s  %s\n", st.Batch, st.Concurrency, "-", "-", "-", "-", outcome)
		}
	}
	if r.Recommended.Batch == 0 {
		return p.err
	}
	b, rec := r.Best, r.Recommended
	p.printf("\nBest:        batch %d × %d clients: %.1f inputs/s (p95 %.2f ms)\n", b.Batch, b.Concurrency, b.Throughput, b.P95*1000)
	p.printf("Recommended: batch %d × %d clients: %.1f inputs/s (p95 %.2f ms), the fewest inputs in flight reaching %g%% of the best\n",
		rec.Batch, rec.Concurrency, rec.Throughput, rec.P95*1000, s.Knee*100)
	p.printf("\nSettings (what --write-env writes):\n")
	for _, v := range r.Env {
		p.printf("  %s=%s\n", v.Key, v.Value)
	}
	return p.err
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// oneLine keeps a quoted error body on the table's line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
