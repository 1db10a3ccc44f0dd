// Package launch starts and supervises TEI: in Docker (TEI's images), as a
// native process (text-embeddings-router), or not at all (TEI at URLs
// given). It diagnoses failed starts and restarts TEI that exits.
package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tei"
)

// Launcher starts TEI for one plan: one replica.
//
// Launch returns once TEI is ready: /health answers 200 and /info matches
// the plan's model id, dtype, max_batch_tokens and max_client_batch_size.
// On the way it may adapt the plan (half the batch tokens after an
// out-of-memory warm-up, the CPU image where Docker cannot hand out GPUs);
// Instance.Plan is what runs. ctx bounds the start only: the Instance lives
// until TEI exits or is stopped. Launching a replica again (a restart)
// keeps the URL it had, so a proxy built with it stays valid. progress
// hears what the start is doing (may be nil). A failed start returns an
// error for Summary (a *LaunchError with TEI's last log lines and a
// diagnosis, or a *PullError) and leaves nothing running. Launch is safe
// for concurrent use with different replicas; it may take minutes (image
// pull, model download).
type Launcher interface {
	Launch(ctx context.Context, p plan.Plan, progress Progress) (*Instance, error)
}

// Instance is one TEI server a Launcher started or adopted.
type Instance struct {
	// URL is TEI's base URL as the sidecar reaches it.
	URL string
	// Plan is what runs: the plan given to Launch after any adaptation.
	Plan plan.Plan
	// ID names it in logs: a container id, a process id, or the URL.
	ID string
	// Adopted is true when the launcher found it already running.
	Adopted bool

	done     chan struct{}
	exitOnce sync.Once
	err      error

	// stop ends TEI, or with keep only stops watching it.
	stop     func(ctx context.Context, keep bool) error
	keep     bool
	stopOnce sync.Once
	stopErr  error
}

// newInstance returns an Instance whose Stop and Release call stop. A kept
// instance survives Release.
func newInstance(url string, p plan.Plan, id string, keep bool, stop func(ctx context.Context, keep bool) error) *Instance {
	return &Instance{URL: url, Plan: p, ID: id, keep: keep, done: make(chan struct{}), stop: stop}
}

// exited records why TEI ended and closes Done; later calls are ignored.
func (in *Instance) exited(err error) {
	in.exitOnce.Do(func() {
		in.err = err
		close(in.done)
	})
}

// Done is closed when TEI has exited or the instance was stopped.
func (in *Instance) Done() <-chan struct{} { return in.done }

// Err says why TEI ended (an *ExitError, or ErrStopped); nil before Done.
func (in *Instance) Err() error {
	select {
	case <-in.done:
		return in.err
	default:
		return nil
	}
}

// Stop ends TEI: it stops and removes the container, or ends the process
// group, and waits for the instance's goroutines. It is idempotent.
func (in *Instance) Stop(ctx context.Context) error {
	in.stopOnce.Do(func() { in.stopErr = in.stop(ctx, false) })
	return in.stopErr
}

// Release is what shutdown calls: Stop, unless the launcher was told to
// keep TEI running (TEI_KEEP), in which case it only stops watching it.
func (in *Instance) Release(ctx context.Context) error {
	in.stopOnce.Do(func() { in.stopErr = in.stop(ctx, in.keep) })
	return in.stopErr
}

// ErrStopped is an Instance's Err after Stop or Release.
var ErrStopped = errors.New("tei: stopped by the sidecar")

// ExitError says that TEI exited on its own.
type ExitError struct {
	// Status is the exit status; -1 when unknown (killed by a signal).
	Status int
	// Logs are TEI's last log lines.
	Logs []string
	// Phase is the start-up phase TEI had reached (PhaseReady once it
	// served).
	Phase Phase
}

func (e *ExitError) Error() string {
	if e.Status < 0 {
		return "TEI was killed"
	}
	return "TEI exited with status " + strconv.Itoa(e.Status)
}

// LaunchError is a failed start, with what TEI said and what it means.
type LaunchError struct {
	Role plan.Role
	// What is the image or binary that was started.
	What string
	// Err is what failed.
	Err error
	// Diagnosis explains known failures; its Cause is CauseUnknown otherwise.
	Diagnosis Diagnosis
	// Logs are TEI's last log lines, oldest first.
	Logs []string
}

func (e *LaunchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "starting the %s TEI (%s): %v", e.Role, e.What, e.Err)
	if e.Diagnosis.Advice != "" {
		b.WriteString("\n  diagnosis: " + e.Diagnosis.Advice)
	}
	if len(e.Logs) > 0 {
		b.WriteString("\n  TEI's last log lines:")
		for _, l := range e.Logs {
			b.WriteString("\n    " + l)
		}
	}
	return b.String()
}

func (e *LaunchError) Unwrap() error { return e.Err }

// launchError builds a LaunchError, diagnosing err's text and the logs.
func launchError(p plan.Plan, what string, err error, logs []string) *LaunchError {
	var ee *ExitError
	if errors.As(err, &ee) && logs == nil {
		logs = ee.Logs
	}
	return &LaunchError{Role: p.Role, What: what, Err: err, Logs: logs,
		Diagnosis: Diagnose(append(slices.Clone(logs), err.Error()), p)}
}

// ShortName is the name a role goes by in logs, labels and the proxy's
// pools: "embed" or "rerank". A replica's own name is plan.Plan.Name.
func ShortName(r plan.Role) string {
	if r == plan.RoleEmbedding {
		return "embed"
	}
	return string(r)
}

// Polling intervals while TEI starts.
const (
	readyPoll    = 250 * time.Millisecond
	probeTimeout = 3 * time.Second
)

// errExited is waitReady's error when TEI ends before it is ready.
var errExited = errors.New("TEI exited before it was ready")

// waitReady polls url until TEI answers /health with 200 and /info, then
// checks /info against p. It gives up when exited is closed or ctx ends.
func waitReady(ctx context.Context, url string, p plan.Plan, exited <-chan struct{}) error {
	c, done, err := probeClient(url, apiKey(p))
	if err != nil {
		return err
	}
	defer done()
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for {
		if err := probe(ctx, c, p); err == nil {
			return nil
		} else if errors.Is(err, errMismatch) {
			return err
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errNotReady
			}
			return fmt.Errorf("TEI was not ready: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// probeClient is a client for checking TEI, with its API key (TEI wants
// it on /health too), and connections of its own, which done closes, so no
// keep-alive goroutine outlives the checks.
func probeClient(url, key string) (c *tei.Client, done func(), err error) {
	tr := tei.NewTransport()
	opts := []tei.Option{tei.WithHTTPClient(&http.Client{Transport: tr})}
	if key != "" {
		opts = append(opts, tei.WithAPIKey(key))
	}
	c, err = tei.NewClient(url, opts...)
	if err != nil {
		return nil, nil, err
	}
	return c, tr.CloseIdleConnections, nil
}

// probe checks /health, then /info against p.
func probe(ctx context.Context, c *tei.Client, p plan.Plan) error {
	hctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if err := c.Health(hctx); err != nil {
		return err
	}
	info, err := c.Info(hctx)
	if err != nil {
		return err
	}
	return CheckInfo(info, p)
}

// errMismatch marks CheckInfo's errors.
var errMismatch = errors.New("TEI's /info does not match the plan")

// CheckInfo reports where a running TEI's /info differs from p in what the
// plan decides: model id, dtype, max_batch_tokens, max_client_batch_size.
func CheckInfo(info *tei.Info, p plan.Plan) error {
	var diffs []string
	check := func(field, got, want string) {
		if got != want {
			diffs = append(diffs, fmt.Sprintf("%s is %q, the plan says %q", field, got, want))
		}
	}
	check("model_id", info.ModelID, p.Model)
	if p.DType != "" {
		check("model_dtype", info.ModelDType, p.DType)
	}
	if p.MaxBatchTokens > 0 {
		check("max_batch_tokens", strconv.Itoa(info.MaxBatchTokens), strconv.Itoa(p.MaxBatchTokens))
	}
	if p.MaxClientBatchSize > 0 {
		check("max_client_batch_size", strconv.Itoa(info.MaxClientBatchSize), strconv.Itoa(p.MaxClientBatchSize))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: %s", errMismatch, strings.Join(diffs, "; "))
	}
	return nil
}

// Arguments the launchers rewrite.
const (
	argMaxBatchTokens = "--max-batch-tokens"
	argPort           = "--port"
	argHostname       = "--hostname"
	argHubCache       = "--huggingface-hub-cache"
)

// setArg returns args with flag's value set to value: replaced where the
// flag appears ("--flag v" or "--flag=v"), appended otherwise.
func setArg(args []string, flag, value string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		switch {
		case out[i] == flag && i+1 < len(out):
			out[i+1] = value
			return out
		case strings.HasPrefix(out[i], flag+"="):
			out[i] = flag + "=" + value
			return out
		}
	}
	return append(out, flag, value)
}

// dropArg returns args without flag and its value.
func dropArg(args []string, flag string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == flag:
			i++ // skip the value
		case strings.HasPrefix(args[i], flag+"="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}

// withBatchTokens returns p with --max-batch-tokens n.
func withBatchTokens(p plan.Plan, n int) plan.Plan {
	p.MaxBatchTokens = n
	p.Args = setArg(p.Args, argMaxBatchTokens, strconv.Itoa(n))
	return p
}

// stepDown halves p's batch tokens, but not below the longest input the
// plan sized for (TEI refuses inputs longer than a batch). ok is false when
// p is already there.
func stepDown(p plan.Plan) (next plan.Plan, ok bool) {
	floor := max(p.MaxInputLength, 1)
	if p.MaxBatchTokens <= floor {
		return p, false
	}
	return withBatchTokens(p, max(p.MaxBatchTokens/2, floor)), true
}

// adjustment is how a launcher changed a plan to make TEI start, kept so a
// restart does not repeat the failures that taught it.
type adjustment struct {
	// maxBatchTokens replaces the plan's when not zero.
	maxBatchTokens int
	// cpu means the CPU plan replaced a GPU one.
	cpu bool
}

// adjuster runs a launcher's start function until TEI starts, adapting the
// plan to what failed, and remembers the adaptations per plan hash.
type adjuster struct {
	log *slog.Logger
	// fallback re-plans a replica for the CPU; nil forbids the fallback.
	fallback func(plan.Plan) (plan.Plan, error)

	mu   sync.Mutex
	memo map[string]adjustment
}

func (a *adjuster) remembered(hash string) adjustment {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.memo[hash]
}

func (a *adjuster) remember(hash string, adj adjustment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.memo == nil {
		a.memo = map[string]adjustment{}
	}
	a.memo[hash] = adj
}

// errNoFallback is a container that runs the CPU fallback, met by a
// sidecar that does not allow it.
var errNoFallback = errors.New("the CPU fallback is not enabled (TEI_FALLBACK_CPU)")

// apply returns the plan adj makes of p.
func (a *adjuster) apply(p plan.Plan, adj adjustment) (plan.Plan, error) {
	if adj.cpu {
		if a.fallback == nil {
			return plan.Plan{}, errNoFallback
		}
		cpu, err := a.fallback(p)
		if err != nil {
			return plan.Plan{}, fmt.Errorf("re-planning %s for the CPU: %w", p.Name(), err)
		}
		// The launch's own secrets (the API key) are not the planner's.
		p = withSecrets(cpu, p)
	}
	if adj.maxBatchTokens > 0 {
		p = withBatchTokens(p, adj.maxBatchTokens)
	}
	return p, nil
}

// startFunc starts TEI for eff, the effective plan, returning it ready or a
// *LaunchError. hash identifies the plan asked for.
type startFunc func(ctx context.Context, hash string, eff plan.Plan, adj adjustment) (*Instance, error)

// run starts p, stepping --max-batch-tokens down after out-of-memory
// warm-ups and falling back to the CPU plan when GPUs cannot be handed out.
func (a *adjuster) run(ctx context.Context, p plan.Plan, start startFunc) (*Instance, error) {
	hash := planHash(p)
	adj := a.remembered(hash)
	for {
		eff, err := a.apply(p, adj)
		if err != nil {
			return nil, err
		}
		inst, err := start(ctx, hash, eff, adj)
		if err == nil {
			a.remember(hash, adj)
			return inst, nil
		}
		var le *LaunchError
		if !errors.As(err, &le) || ctx.Err() != nil {
			return nil, err
		}
		name := p.Name()
		switch le.Diagnosis.Cause {
		case CauseOutOfMemory:
			next, ok := stepDown(eff)
			if !ok {
				return nil, fmt.Errorf("TEI runs out of memory even with --max-batch-tokens %d, the longest input planned for: %w", eff.MaxBatchTokens, err)
			}
			a.log.Warn("TEI ran out of memory warming up: retrying with half the batch tokens",
				"tei", name, "max_batch_tokens", next.MaxBatchTokens, "was", eff.MaxBatchTokens, "floor", eff.MaxInputLength)
			adj.maxBatchTokens = next.MaxBatchTokens
		case CauseNoGPURuntime:
			if a.fallback == nil || adj.cpu {
				return nil, err
			}
			a.log.Warn("Docker cannot give TEI a GPU: falling back to the CPU image (TEI_FALLBACK_CPU=true)",
				"tei", name, "diagnosis", le.Diagnosis.Advice)
			adj = adjustment{cpu: true}
		default:
			return nil, err
		}
	}
}

// CPUFallback returns a function that re-plans a replica for the CPU: the
// hardware without its GPUs, every device forced to the CPU, GPU images
// unpinned, and as many replicas of each model as the GPU plan has, so that
// the replica asked for exists and each is sized for its share of the
// host. Launchers call it when Docker cannot hand TEI a GPU and
// TEI_FALLBACK_CPU=true allows running on the CPU instead.
func CPUFallback(hw hwdetect.Hardware, s plan.Settings) func(plan.Plan) (plan.Plan, error) {
	return func(p plan.Plan) (plan.Plan, error) {
		s := s
		if gpu, err := plan.Make(hw, s); err == nil {
			s.EmbeddingReplicas = max(s.EmbeddingReplicas, len(gpu.Replicas(plan.RoleEmbedding)))
			s.RerankReplicas = max(s.RerankReplicas, len(gpu.Replicas(plan.RoleRerank)))
		}
		if p.Role == plan.RoleRerank {
			s.RerankReplicas = max(s.RerankReplicas, p.Replica+1)
		} else {
			s.EmbeddingReplicas = max(s.EmbeddingReplicas, p.Replica+1)
		}
		hw := hw
		hw.GPUs = nil
		s.Device, s.RerankDevice, s.ComputeCap = "cpu", "cpu", ""
		s.Image, s.RerankImage = "", ""
		s.ReplicasPerGPU = 0
		res, err := plan.Make(hw, s)
		if err != nil {
			return plan.Plan{}, err
		}
		reps := res.Replicas(p.Role)
		if p.Replica >= len(reps) {
			return plan.Plan{}, fmt.Errorf("the CPU plan has no %s", p.Name())
		}
		return reps[p.Replica], nil
	}
}
