package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteTuneText prints a tune report for people: the header, the steps,
// then WriteTuneSummary's part.
func WriteTuneText(w io.Writer, r *TuneReport) error {
	p := &printer{w: w}
	tuneHeader(p, r)
	for _, st := range r.Steps {
		tuneStep(p, st)
	}
	if a := r.Replicas; a != nil && a.Pool != nil {
		poolHeader(p, a.Pool.Sidecar, a.Pool.Replicas, a.Pool.Batch)
		for _, ps := range a.Pool.Steps {
			poolStepLine(p, ps)
		}
	}
	if p.err != nil {
		return p.err
	}
	return WriteTuneSummary(w, r)
}

// poolHeader heads the pool check's table.
func poolHeader(p *printer, sidecar string, ready, batch int) {
	p.printf("\nThe pool through the sidecar at %s (%d ready embed replicas), batch %d, Cache-Control: no-cache:\n", sidecar, ready, batch)
	p.printf("%6s %8s %9s %11s %9s %9s  %s\n", "batch", "clients", "requests", "inputs/s", "p50 ms", "p95 ms", "outcome; inputs/s per replica")
}

// poolStepLine prints one step of the pool check, with each replica's part.
func poolStepLine(p *printer, ps PoolStep) {
	var parts []string
	for _, r := range ps.Replicas {
		parts = append(parts, fmt.Sprintf("%s %.1f", r.Replica, r.InputsPerS))
	}
	st := ps.Step
	if len(parts) > 0 && (st.Outcome == OutcomeOK || st.Outcome == OutcomeSlow) {
		st.Reason = strings.TrimPrefix(st.Reason+"; ", "; ") + strings.Join(parts, ", ")
	}
	tuneStep(p, st)
}

// tuneHeader says what is tuned and how, and heads the steps' table.
func tuneHeader(p *printer, r *TuneReport) {
	t := r.Target
	server := "TEI " + orUnknown(t.TEIVersion)
	if t.Simulator != "" {
		server = SimulatorName(t.Simulator)
	}
	p.printf("Tuned %s (model %s, %s; max_client_batch_size %d, max_batch_tokens %d, max_concurrent_requests %d)\n",
		t.URL, orUnknown(t.ModelID), server, t.MaxClientBatchSize, t.MaxBatchTokens, t.MaxConcurrentRequests)
	if t.FoundVia != "" {
		p.printf("Found through the sidecar at %s (GET /status).\n", t.FoundVia)
	}
	s := r.Settings
	p.printf("Each step: at most %gs or %d requests; p95 limit %gs; knee at %g%% of the best throughput.\n\n",
		s.StepDurationS, s.StepRequests, s.MaxLatencyS, s.Knee*100)
	p.printf("%6s %8s %9s %11s %9s %9s  %s\n", "batch", "clients", "requests", "inputs/s", "p50 ms", "p95 ms", "outcome")
}

// tuneStep prints one step's line of the table.
func tuneStep(p *printer, st Step) {
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

// WriteTuneSummary prints what follows the steps: the best setting, the
// recommendation, the setting --write-env writes and the advice no setting
// carries.
func WriteTuneSummary(w io.Writer, r *TuneReport) error {
	p := &printer{w: w}
	if r.Recommended.Batch == 0 {
		return p.err
	}
	b, rec, s := r.Best, r.Recommended, r.Settings
	p.printf("\nBest:        batch %d × %d clients: %.1f inputs/s (p95 %.2f ms)\n", b.Batch, b.Concurrency, b.Throughput, b.P95*1000)
	p.printf("Recommended: batch %d × %d clients: %.1f inputs/s (p95 %.2f ms), the fewest inputs in flight reaching %g%% of the best\n",
		rec.Batch, rec.Concurrency, rec.Throughput, rec.P95*1000, s.Knee*100)
	p.printf("\nSettings (what --write-env writes):\n")
	for _, v := range r.Env {
		p.printf("  %s=%s\n", v.Key, v.Value)
	}
	p.printf("\n%s is the client's batch: the texts the plugin (or any client) sends in one embed call.\n", EnvBatch)
	p.printf("TEI refuses calls of more than its max_client_batch_size (%d): a larger TEI batch limit is %s (the sidecar gives it to TEI as --max-client-batch-size); raise it, then tune again with a larger --max-batch.\n",
		r.Target.MaxClientBatchSize, EnvTEIMaxClientBatch)
	p.printf("Concurrency %d is advice, not a setting: keep that many embed calls in flight from the client (no setting reads it).\n", rec.Concurrency)
	if a := r.Replicas; a != nil {
		replicaAdvice(p, r, a)
	}
	return p.err
}

// replicaAdvice prints the advice on TEI_REPLICAS_PER_GPU and its evidence.
func replicaAdvice(p *printer, r *TuneReport, a *ReplicaAdvice) {
	p.printf("\n%s (advice, never written: tune cannot see whether the GPU's memory holds another copy of the model; on a CPU host TEIs share the cores, keep 1):\n", EnvReplicasPerGPU)
	if a.CallOverheadS > 0 || a.PerInputS > 0 {
		p.printf("  one client: a call takes %.2f ms + %.3f ms per input: %.0f%% of a call of %d is overhead\n",
			a.CallOverheadS*1000, a.PerInputS*1000, a.OverheadShare*100, r.Recommended.Batch)
	}
	sat := "not saturated"
	if a.Saturated {
		sat = fmt.Sprintf("saturated at the recommendation's %d inputs in flight", a.InputsInFlight)
	}
	if a.TokensPerInput > 0 {
		sat += fmt.Sprintf("; %.1f tokens an input, max_batch_tokens %d", a.TokensPerInput, r.Target.MaxBatchTokens)
	}
	p.printf("  %s; bound: %s\n", sat, a.Bound)
	if pc := a.Pool; pc != nil {
		sat := "saturated"
		if !pc.Saturated {
			sat = "still growing at the most clients tried"
		}
		p.printf("  the pool: %.1f inputs/s through the sidecar (%s), %.2fx one replica straight (%.1f at batch %d); each extra replica added %.0f%% of one\n",
			pc.Best, sat, pc.Scaling, pc.Single, pc.Batch, pc.Gain*100)
	}
	verb := map[string]string{ActionRaise: "Raise to", ActionKeep: "Keep", ActionLower: "Lower to"}[a.Action]
	p.printf("  %s %d: %s.\n", verb, a.ReplicasPerGPU, a.Reason)
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
