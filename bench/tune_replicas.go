package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// EnvReplicasPerGPU is the setting of how many TEIs of one model share a
// GPU, which tune advises on but never writes: it cannot see whether the
// GPU's memory holds another copy of the model.
const EnvReplicasPerGPU = "TEI_REPLICAS_PER_GPU"

// The rule's thresholds (see ReplicaAdvice).
const (
	// overheadShare is the least share of a call's time that does not grow
	// with its inputs for one TEI to count as bound by its own per-call
	// work.
	overheadShare = 0.5
	// budgetShare is the most of max_batch_tokens the tokens in flight at
	// saturation may fill for the saturation to be the TEI's, not the
	// model's: a GPU sized for that budget was far from full.
	budgetShare = 0.25
	// Each extra replica of a pool must add at least scalesWell of one
	// replica's throughput to pay, and adds too little below scalesPoorly.
	scalesWell   = 0.75
	scalesPoorly = 0.25
)

// Bounds of one TEI, as ReplicaAdvice.Bound names them.
const (
	// BoundOverhead: one TEI saturates early while most of a call's time
	// does not grow with its inputs: its own per-call work (HTTP,
	// tokenization, batching, the backend's serial batch cycle) bounds
	// it, which another TEI on the same GPU overlaps.
	BoundOverhead = "overhead"
	// BoundCompute: a call's time grows with its inputs, or saturation
	// came with the token budget nearly used: the model bounds it.
	BoundCompute = "compute"
	// BoundUnsaturated: throughput still grew at the largest setting tried.
	BoundUnsaturated = "unsaturated"
)

// Advice actions on TEI_REPLICAS_PER_GPU.
const (
	ActionRaise = "raise"
	ActionKeep  = "keep"
	ActionLower = "lower"
)

// ReplicaAdvice is tune's advice on TEI_REPLICAS_PER_GPU, and its evidence.
//
// The rule: fit the one-client steps' p50 latency as overhead + per-input
// × batch. One TEI is overhead-bound when it saturated (settings with more
// inputs in flight than the recommendation's gained under 1/knee), at
// least half a call of the recommended batch is overhead, and the tokens
// in flight at the recommendation fill at most a quarter of TEI's
// max_batch_tokens. Then a second TEI on the same GPU overlaps its
// per-call work with the first's: raise to 2. With a pool of n ready
// replicas measured through the sidecar, each extra replica's gain
// decides: at least 75% of one replica raises further when still
// overhead-bound (else keeps n), under 25% lowers to n-1.
type ReplicaAdvice struct {
	// CallOverheadS and PerInputS are the fit's terms in seconds; both 0
	// when fewer than two batch sizes were measured with one client.
	CallOverheadS float64 `json:"call_overhead_s"`
	PerInputS     float64 `json:"per_input_s"`
	// OverheadShare is CallOverheadS's share of a call of the recommended
	// batch.
	OverheadShare float64 `json:"overhead_share"`
	// Saturated says whether settings with more inputs in flight than the
	// recommendation's were measured and none reached more than 1/knee of
	// its throughput.
	Saturated bool `json:"saturated"`
	// InputsInFlight is the recommendation's batch × concurrency;
	// TokensPerInput comes from TEI's x-compute-tokens header (0: TEI sent
	// none) and TokensInFlight is their product.
	InputsInFlight int     `json:"inputs_in_flight"`
	TokensPerInput float64 `json:"tokens_per_input"`
	TokensInFlight int     `json:"tokens_in_flight"`
	// Pool is the sidecar's pool measured through it; absent without
	// --sidecar or with one ready replica.
	Pool *PoolCheck `json:"pool,omitempty"`
	// Bound is BoundOverhead, BoundCompute or BoundUnsaturated.
	Bound string `json:"bound"`
	// Action is ActionRaise, ActionKeep or ActionLower, and ReplicasPerGPU
	// the value advised, assuming the pool's replicas share one GPU.
	Action         string `json:"action"`
	ReplicasPerGPU int    `json:"replicas_per_gpu"`
	// Reason says why, in a sentence a person can act on.
	Reason string `json:"reason"`
}

// PoolCheck is the sidecar's embedding pool driven through the sidecar at
// the recommended batch, concurrency rising.
type PoolCheck struct {
	// Sidecar is the sidecar's URL; Replicas its ready embed replicas.
	Sidecar  string `json:"sidecar"`
	Replicas int    `json:"replicas"`
	Batch    int    `json:"batch"`
	// Steps are the pool's settings, concurrency ascending; a refused or
	// slow one ends them.
	Steps []PoolStep `json:"steps"`
	// Best is the pool's best throughput (inputs/s) and Single one
	// replica's straight at the same batch (the sweep's best).
	Best   float64 `json:"best"`
	Single float64 `json:"single"`
	// Scaling is Best ÷ Single; Gain is (Scaling - 1) ÷ (Replicas - 1):
	// what each extra replica added, as a share of one.
	Scaling float64 `json:"scaling"`
	Gain    float64 `json:"gain"`
	// Saturated says whether the pool reached its capacity: its best step
	// is not the last, or the last gained less than 10% over the one
	// before. Without it Gain understates the pool, and no advice lowers.
	Saturated bool `json:"saturated"`
}

// PoolStep is one setting of the pool check.
type PoolStep struct {
	Step
	// Replicas is how the sidecar spread the step's inputs (its /metrics).
	Replicas []ReplicaUse `json:"replicas"`
}

// PoolOptions names the sidecar whose pool Tune checks.
type PoolOptions struct {
	// Sidecar is the sidecar's base URL and Token its bearer token.
	Sidecar, Token string
	// Ready counts its ready embed replicas; the check runs with two or more.
	Ready int
}

// fitCalls fits the one-client steps' p50 latency as a + k × batch, by
// least squares; ok is false with fewer than two batch sizes.
func fitCalls(steps []Step) (a, k float64, ok bool) {
	var n, sx, sy, sxx, sxy float64
	sizes := map[int]bool{}
	for _, s := range steps {
		if s.Concurrency != 1 || s.Outcome != OutcomeOK {
			continue
		}
		x, y := float64(s.Batch), s.P50
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
		sizes[s.Batch] = true
	}
	if len(sizes) < 2 {
		return 0, 0, false
	}
	k = (n*sxy - sx*sy) / (n*sxx - sx*sx)
	a = (sy - k*sx) / n
	// Noise can tilt a nearly flat line below zero either way.
	switch {
	case k < 0:
		k, a = 0, sy/n
	case a < 0:
		a, k = 0, sxy/sxx
	}
	return a, k, true
}

// adviseReplicas applies the rule to a finished sweep (and pool check).
func adviseReplicas(rep *TuneReport, tokensPerInput float64, pool *PoolCheck) *ReplicaAdvice {
	rec := rep.Recommended
	adv := &ReplicaAdvice{InputsInFlight: rec.Batch * rec.Concurrency, TokensPerInput: tokensPerInput, Pool: pool}
	adv.TokensInFlight = int(float64(adv.InputsInFlight) * tokensPerInput)
	a, k, fitted := fitCalls(rep.Steps)
	if fitted {
		adv.CallOverheadS, adv.PerInputS = a, k
		if call := a + k*float64(rec.Batch); call > 0 {
			adv.OverheadShare = a / call
		}
	}
	for _, s := range rep.Steps {
		if s.Outcome == OutcomeOK && s.Batch*s.Concurrency > adv.InputsInFlight {
			adv.Saturated = true
			break
		}
	}
	budget := rep.Target.MaxBatchTokens
	withinBudget := tokensPerInput == 0 || budget == 0 || float64(adv.TokensInFlight) <= budgetShare*float64(budget)
	switch {
	case !adv.Saturated:
		adv.Bound = BoundUnsaturated
	case fitted && adv.OverheadShare >= overheadShare && withinBudget:
		adv.Bound = BoundOverhead
	default:
		adv.Bound = BoundCompute
	}
	adv.Action, adv.ReplicasPerGPU, adv.Reason = adviceFor(adv, rep.Target.MaxBatchTokens)
	return adv
}

// adviceFor words the advice.
func adviceFor(adv *ReplicaAdvice, budget int) (action string, n int, reason string) {
	evidence := fmt.Sprintf("one TEI saturated at %d inputs in flight", adv.InputsInFlight)
	if adv.TokensInFlight > 0 && budget > 0 {
		evidence += fmt.Sprintf(" (about %d tokens, %.0f%% of its max_batch_tokens %d)", adv.TokensInFlight, 100*float64(adv.TokensInFlight)/float64(budget), budget)
	}
	evidence += fmt.Sprintf(" and %.0f%% of a call's time does not grow with its inputs", adv.OverheadShare*100)
	if p := adv.Pool; p != nil {
		pool := fmt.Sprintf("through the sidecar its %d replicas served %.2fx one replica straight, each extra one adding %.0f%% of one", p.Replicas, p.Scaling, p.Gain*100)
		switch {
		case !p.Saturated:
			return ActionKeep, p.Replicas, fmt.Sprintf("%s, and still more at the most clients tried: the pool did not reach its capacity; raise --max-concurrency and tune again before changing %s", pool, EnvReplicasPerGPU)
		case p.Gain >= scalesWell && adv.Bound == BoundOverhead:
			return ActionRaise, p.Replicas + 1, fmt.Sprintf("%s; and %s: if they share one GPU, try %s=%d, then tune again", pool, evidence, EnvReplicasPerGPU, p.Replicas+1)
		case p.Gain < scalesPoorly:
			return ActionLower, max(1, p.Replicas-1), fmt.Sprintf("%s: if they share one GPU, it (or the host's CPU) is the bound; lower %s to %d", pool, EnvReplicasPerGPU, max(1, p.Replicas-1))
		}
		return ActionKeep, p.Replicas, fmt.Sprintf("%s: if they share one GPU, keep %s=%d", pool, EnvReplicasPerGPU, p.Replicas)
	}
	switch adv.Bound {
	case BoundOverhead:
		return ActionRaise, 2, fmt.Sprintf("%s: the TEI process's own per-call work, not the model, bounds it. On a GPU whose memory holds another copy of the model, "+
			"set %s=2 and restart serve: a second TEI overlaps that work with the first's; then tune --sidecar again, whose pool check shows whether it paid", evidence, EnvReplicasPerGPU)
	case BoundUnsaturated:
		return ActionKeep, 1, "throughput still grew at the largest setting tried, so what bounds one TEI is unknown: raise --max-concurrency (or --max-batch) until it stops growing, then tune again"
	}
	return ActionKeep, 1, fmt.Sprintf("%s: the model's compute bounds one TEI, and a second TEI on the same GPU would share it; keep %s=1", evidence, EnvReplicasPerGPU)
}

// tokensPerInput asks TEI how many tokens one of texts makes, from the
// x-compute-tokens header of one call of up to limit (at most eight) of
// them, made unique as the sweep's are; 0 when TEI sends no header.
func tokensPerInput(ctx context.Context, c *client, texts []string, limit int) (float64, error) {
	n := min(8, len(texts), max(limit, 1))
	in := make([]string, n)
	for i := range in {
		in[i] = unique(texts[i])
	}
	body, err := json.Marshal(map[string]any{"inputs": in})
	if err != nil {
		return 0, err
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	resp, err := c.embed.Do(ctx, http.MethodPost, "/embed", body)
	if err != nil {
		return 0, fmt.Errorf("POST %s/embed: %w", c.embed.BaseURL(), err)
	}
	if t := resp.ComputeTokens(); t > 0 {
		return float64(t) / float64(n), nil
	}
	return 0, nil
}

// checkPool drives the sidecar's pool through the sidecar at batch, one
// client, two, four, ... up to the sweep's most concurrency times the
// replicas (n replicas need n times the inputs in flight), each step
// bounded as the sweep's are, reading /metrics around each step; a refused
// or slow step ends it. single is one replica's best straight at batch.
func checkPool(ctx context.Context, sc *client, m *meter, o TuneOptions, batch int, single float64, onStep func(PoolStep)) (*PoolCheck, error) {
	pc := &PoolCheck{Sidecar: sc.embed.BaseURL(), Replicas: o.Pool.Ready, Batch: batch, Single: single, Steps: []PoolStep{}}
	var ok []float64
	for _, n := range doublings(o.MaxConcurrency * max(o.Pool.Ready, 1)) {
		st, uses, err := measureStep(ctx, sc.forLoad(0), o, batch, n, m)
		if err != nil {
			return nil, sc.explain(err)
		}
		ps := PoolStep{Step: st, Replicas: []ReplicaUse{}}
		if pu := poolOf(uses, PoolEmbed); pu != nil {
			ps.Replicas = pu.Replicas
		}
		pc.Steps = append(pc.Steps, ps)
		if onStep != nil {
			onStep(ps)
		}
		if st.Outcome != OutcomeOK {
			// More in flight fares no better: the pool's limit.
			pc.Saturated = true
			break
		}
		pc.Best = max(pc.Best, st.Throughput)
		ok = append(ok, st.Throughput)
	}
	if n := len(ok); n > 0 && (ok[n-1] < pc.Best || n > 1 && ok[n-1] < 1.1*ok[n-2]) {
		pc.Saturated = true
	}
	if pc.Single > 0 {
		pc.Scaling = pc.Best / pc.Single
	}
	if pc.Replicas > 1 {
		pc.Gain = (pc.Scaling - 1) / float64(pc.Replicas-1)
	}
	return pc, nil
}

// bestAt is the best ok throughput of the sweep's steps at batch.
func bestAt(steps []Step, batch int) float64 {
	best := 0.0
	for _, s := range steps {
		if s.Batch == batch && s.Outcome == OutcomeOK {
			best = max(best, s.Throughput)
		}
	}
	return best
}
