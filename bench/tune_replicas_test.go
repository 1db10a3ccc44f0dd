package bench

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// grid builds a finished sweep from a latency model: a call of b inputs
// takes overhead + perInput×b with one client, and throughput saturates at
// capacity inputs in flight.
func grid(overhead, perInput time.Duration, capacity int, batches, concs []int) []Step {
	var steps []Step
	for _, b := range batches {
		for _, n := range concs {
			call := (overhead + time.Duration(b)*perInput).Seconds()
			inFlight := min(b*n, capacity)
			steps = append(steps, Step{Batch: b, Concurrency: n, Outcome: OutcomeOK, P50: call, Throughput: float64(inFlight) / call})
		}
	}
	return steps
}

func TestTuneFitCalls(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []Step
		want  string
	}{
		{"a line", grid(4*time.Millisecond, 250*time.Microsecond, 64, []int{1, 2, 4, 8, 16}, []int{1, 2}), "4.000 0.250 true"},
		{"other clients' steps ignored", append(grid(2*time.Millisecond, time.Millisecond, 64, []int{1, 8}, []int{1}),
			Step{Batch: 4, Concurrency: 4, Outcome: OutcomeOK, P50: 1}), "2.000 1.000 true"},
		{"a falling line is flat", []Step{{Batch: 1, Concurrency: 1, Outcome: OutcomeOK, P50: 0.006}, {Batch: 2, Concurrency: 1, Outcome: OutcomeOK, P50: 0.004}}, "5.000 0.000 true"},
		{"one batch size", grid(time.Millisecond, time.Millisecond, 8, []int{4}, []int{1, 2}), "0.000 0.000 false"},
		{"refused steps ignored", []Step{{Batch: 1, Concurrency: 1, Outcome: OutcomeOK, P50: 0.002}, {Batch: 2, Concurrency: 1, Outcome: OutcomeRefused, P50: 9}}, "0.000 0.000 false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, k, ok := fitCalls(tc.steps)
			if got := fmt.Sprintf("%.3f %.3f %v", a*1000, k*1000, ok); got != tc.want {
				t.Errorf("fit = %s, want %s (ms, ms per input)", got, tc.want)
			}
		})
	}
}

// TestTuneAdviseReplicas checks the rule on TEI_REPLICAS_PER_GPU on sweeps
// built from latency models, alone and with a pool check.
func TestTuneAdviseReplicas(t *testing.T) {
	batches, concs := []int{1, 2, 4, 8, 16}, []int{1, 2, 4, 8, 16}
	report := func(steps []Step, budget int) *TuneReport {
		rep := &TuneReport{Steps: steps, Target: TuneTarget{MaxBatchTokens: budget}}
		best, rec, _ := knee(steps, DefaultKnee)
		rep.Best, rep.Recommended = best, rec
		return rep
	}
	pool := func(replicas int, scaling float64) *PoolCheck {
		return &PoolCheck{Replicas: replicas, Scaling: scaling, Gain: (scaling - 1) / float64(replicas-1), Saturated: true}
	}
	unsaturatedPool := pool(2, 1.1)
	unsaturatedPool.Saturated = false
	// Small model on a big GPU: a call is mostly fixed cost and one TEI
	// saturates at 32 inputs in flight.
	overhead := grid(5*time.Millisecond, 50*time.Microsecond, 32, batches, concs)
	// Large model: a call grows with its inputs.
	compute := grid(time.Millisecond, 2*time.Millisecond, 32, batches, concs)
	// Throughput still grows at 16 × 16.
	unsaturated := grid(5*time.Millisecond, 50*time.Microsecond, 1024, batches, concs)
	for _, tc := range []struct {
		name   string
		rep    *TuneReport
		tokens float64
		pool   *PoolCheck
		want   string
	}{
		{"overhead-bound: raise to 2", report(overhead, 16384), 20, nil, "overhead raise 2"},
		{"overhead-bound, token count unknown", report(overhead, 16384), 0, nil, "overhead raise 2"},
		{"saturated with the token budget nearly full: the model's", report(overhead, 2048), 20, nil, "compute keep 1"},
		{"compute-bound: keep 1", report(compute, 16384), 20, nil, "compute keep 1"},
		{"not saturated: keep, and say to sweep further", report(unsaturated, 16384), 20, nil, "unsaturated keep 1"},
		{"a pool that scales, still overhead-bound: one more", report(overhead, 16384), 20, pool(2, 1.8), "overhead raise 3"},
		{"a pool that scales, compute-bound: keep", report(compute, 16384), 20, pool(3, 2.6), "compute keep 3"},
		{"a pool that scales half: keep", report(overhead, 16384), 20, pool(2, 1.5), "overhead keep 2"},
		{"a pool that does not scale: lower", report(overhead, 16384), 20, pool(3, 1.3), "overhead lower 2"},
		{"two replicas that do not scale: lower to 1", report(compute, 16384), 20, pool(2, 1.1), "compute lower 1"},
		{"a pool that had not reached its capacity: never lower", report(compute, 16384), 20, unsaturatedPool, "compute keep 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := adviseReplicas(tc.rep, tc.tokens, tc.pool)
			if got := fmt.Sprintf("%s %s %d", a.Bound, a.Action, a.ReplicasPerGPU); got != tc.want {
				t.Errorf("advice %s, want %s (overhead share %.2f, saturated %v, %d tokens in flight): %s", got, tc.want, a.OverheadShare, a.Saturated, a.TokensInFlight, a.Reason)
			}
			if !strings.Contains(a.Reason, EnvReplicasPerGPU) && a.Bound != BoundUnsaturated {
				t.Errorf("the reason does not name %s: %s", EnvReplicasPerGPU, a.Reason)
			}
		})
	}
}

// TestTunePool runs tune through a sidecar over two replicas: the pool
// check measures each concurrency through the sidecar, with each
// replica's part, and sets the pool beside one replica straight.
func TestTunePool(t *testing.T) {
	sim := []string{"--model-id", "BAAI/bge-m3", "--sim-batch-cost", "2ms", "--sim-token-cost", "0s", "--max-client-batch-size", "4"}
	_, a := teisim.Start(t, sim...)
	_, b := teisim.Start(t, sim...)
	log := &headerLog{byValue: map[string]int{}}
	side := poolSidecar(t, log.wrap, a, b)
	var live bytes.Buffer
	rep, err := Tune(t.Context(), TuneOptions{
		URL: a, FoundVia: side, Pool: &PoolOptions{Sidecar: side, Ready: 2},
		MaxConcurrency: 4, StepDuration: 60 * time.Millisecond, StepRequests: 30,
		Live: &live,
	})
	if err != nil {
		t.Fatal(err)
	}
	adv := rep.Replicas
	if adv == nil || adv.Pool == nil {
		t.Fatalf("advice %+v, want a pool check", adv)
	}
	pc := adv.Pool
	// Two replicas take twice the clients: 1, 2, 4, 8.
	if pc.Sidecar != side || pc.Replicas != 2 || pc.Batch != rep.Recommended.Batch || len(pc.Steps) != 4 {
		t.Errorf("pool check %+v, want 4 steps at batch %d through %s", pc, rep.Recommended.Batch, side)
	}
	for _, ps := range pc.Steps {
		total := 0
		for _, r := range ps.Replicas {
			total += r.Inputs
		}
		if ps.Outcome != OutcomeOK || len(ps.Replicas) != 2 || total < ps.Inputs {
			t.Errorf("step %dx%d: %s, replicas %+v for %d inputs", ps.Batch, ps.Concurrency, ps.Outcome, ps.Replicas, ps.Inputs)
		}
	}
	if single := bestAt(rep.Steps, pc.Batch); pc.Single != single || math.Abs(pc.Scaling-pc.Best/single) > 1e-9 || math.Abs(pc.Gain-(pc.Scaling-1)) > 1e-9 {
		t.Errorf("pool %+v, single %.1f", pc, single)
	}
	if adv.TokensPerInput <= 0 {
		t.Errorf("tokens per input %.1f: the simulator sends x-compute-tokens", adv.TokensPerInput)
	}
	// The check's calls skip the sidecar's cache lookups.
	if n := log.count("no-cache"); n == 0 || log.count("") != 0 {
		t.Errorf("embed calls to the sidecar: %d with no-cache, %d without", n, log.count(""))
	}
	var out bytes.Buffer
	if err := WriteTuneText(&out, rep); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{live.String(), out.String()} {
		if !strings.Contains(text, fmt.Sprintf("The pool through the sidecar at %s (2 ready embed replicas), batch %d", side, pc.Batch)) ||
			strings.Count(text, "  ok: 127.0.0.1:") != 4 {
			t.Errorf("output lacks the pool's steps:\n%s", text)
		}
	}
	for _, want := range []string{"TEI_REPLICAS_PER_GPU (advice, never written", "one client: a call takes ", "the pool: ", "each extra replica added "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, e := range rep.Env {
		if e.Key == EnvReplicasPerGPU {
			t.Errorf("env %v: %s is advice, never written", rep.Env, EnvReplicasPerGPU)
		}
	}
	// An address that is not the sidecar's is an error.
	if _, err := Tune(t.Context(), TuneOptions{URL: a, Pool: &PoolOptions{Sidecar: b, Ready: 2}, MaxBatch: 1, MaxConcurrency: 1, StepDuration: 20 * time.Millisecond}); err == nil ||
		!strings.Contains(err.Error(), "does not answer GET /status as the sidecar does") {
		t.Errorf("a TEI as the sidecar: %v", err)
	}
}
