package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// NativeOptions configures a Native launcher. Zero values are the defaults.
type NativeOptions struct {
	// Binary is TEI's router program. Empty means text-embeddings-router
	// on PATH.
	Binary string
	// ModelCache is the directory TEI downloads models to
	// (--huggingface-hub-cache). Empty means TEI's default,
	// ~/.cache/huggingface/hub.
	ModelCache string
	// StartupTimeout bounds the wait for a started TEI to be ready (model
	// download, load and warm-up). Zero means no bound but Launch's context.
	StartupTimeout time.Duration
	// Getenv reads the sidecar's environment for the few variables passed
	// on. Nil means os.Getenv.
	Getenv func(string) string
}

// Native runs TEI's text-embeddings-router binary as a child process: on
// Apple Silicon, where Docker cannot reach Metal, or on any host without
// Docker. Each replica listens on a loopback port of its own, kept for the
// sidecar's life, and runs in its own process group, which Stop ends as a
// whole.
type Native struct {
	opts  NativeOptions
	log   *slog.Logger
	adj   adjuster
	ports portBook
}

var _ Launcher = (*Native)(nil)

// NewNative returns a launcher for the binary in opts.
func NewNative(opts NativeOptions, log *slog.Logger) (*Native, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	bin, err := FindBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	opts.Binary = bin
	return &Native{opts: opts, log: log, adj: adjuster{log: log}}, nil
}

// FindBinary resolves TEI's router: the program named (a path or a name on
// PATH), or text-embeddings-router on PATH when name is empty.
func FindBinary(name string) (string, error) {
	if name != "" {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("TEI_BINARY %q: %w", name, err)
		}
		return path, nil
	}
	path, err := exec.LookPath(plan.Binary)
	if err != nil {
		return "", fmt.Errorf("%s is not on PATH: install TEI's router (macOS: brew install text-embeddings-inference; "+
			"elsewhere: cargo install --path router from a TEI checkout) or set TEI_BINARY", plan.Binary)
	}
	return path, nil
}

// passedEnv are the sidecar's variables a native TEI inherits. Nothing else
// is: TEI reads every flag from an environment variable of its name, so
// HOSTNAME, PORT, MODEL_ID, API_KEY and the like would change it silently.
var passedEnv = []string{"PATH", "HOME", "TMPDIR", "RUST_LOG"}

// env is the child's whole environment: passedEnv from the sidecar, then
// the plan's (which carries HF_TOKEN when the plan has one).
func (n *Native) env(p plan.Plan) []string {
	env := map[string]string{}
	for _, k := range passedEnv {
		if v := n.opts.Getenv(k); v != "" {
			env[k] = v
		}
	}
	maps.Copy(env, p.Env)
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// args are the plan's arguments with the address and cache this host uses.
func (n *Native) args(p plan.Plan, port int) []string {
	args := setArg(p.Args, argPort, strconv.Itoa(port))
	args = setArg(args, argHostname, "127.0.0.1")
	if n.opts.ModelCache != "" {
		return setArg(args, argHubCache, n.opts.ModelCache)
	}
	// A Docker plan's /data means nothing here.
	return dropArg(args, argHubCache)
}

// Address is the base URL replica p has once launched: a free loopback
// port, booked for p from now on and held until TEI starts.
func (n *Native) Address(_ context.Context, p plan.Plan) (string, error) {
	port, err := n.ports.reserve(p.Name())
	if err != nil {
		return "", fmt.Errorf("reserving a loopback port for %s: %w", p.Name(), err)
	}
	return loopbackURL(port), nil
}

// Check reports why Launch can never run p; the binary was found already.
func (n *Native) Check(plan.Plan) error { return nil }

// Close lets go of the ports held for TEI. Call it once every Instance has
// been stopped.
func (n *Native) Close() error {
	n.ports.close()
	return nil
}

// Launch starts the binary for p and waits until it is ready.
func (n *Native) Launch(ctx context.Context, p plan.Plan, progress Progress) (*Instance, error) {
	return n.adj.run(ctx, p, func(ctx context.Context, _ string, eff plan.Plan, _ adjustment) (*Instance, error) {
		return n.start(ctx, eff, progress)
	})
}

// stopGrace is how long TEI may take to exit after SIGTERM.
const stopGrace = 10 * time.Second

func (n *Native) start(ctx context.Context, p plan.Plan, progress Progress) (*Instance, error) {
	name := p.Name()
	port, err := n.ports.reserve(name)
	if err != nil {
		return nil, fmt.Errorf("reserving a loopback port for %s: %w", name, err)
	}
	log := n.log.With("tei", name)
	sl := newStartLog(log, false, p, progress)
	cmd := exec.Command(n.opts.Binary, n.args(p, port)...)
	cmd.Env = n.env(p)
	cmd.SysProcAttr = sysProcAttr()
	// Pipes of our own, so Wait returns when TEI exits even while a process
	// it started still holds them.
	logs, err := newLogPipes(cmd, sl)
	if err != nil {
		return nil, err
	}
	n.ports.release(name) // TEI binds it now
	if err := cmd.Start(); err != nil {
		logs.close()
		n.ports.hold(name)
		return nil, launchError(p, n.opts.Binary, err, nil)
	}
	logs.started()
	pid := cmd.Process.Pid
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	log.Info("started TEI", "binary", n.opts.Binary, "pid", pid, "url", url, "max_batch_tokens", p.MaxBatchTokens)

	var stopping atomic.Bool
	var inst *Instance
	inst = newInstance(url, p, "pid "+strconv.Itoa(pid), false, func(ctx context.Context, _ bool) error {
		stopping.Store(true)
		_ = killGroup(pid, false)
		select {
		case <-inst.Done():
		case <-ctx.Done():
		case <-time.After(stopGrace):
		}
		_ = killGroup(pid, true)
		<-inst.Done()
		return nil
	})
	go func() {
		err := cmd.Wait()
		// The group may outlive its leader; end it too.
		_ = killGroup(pid, true)
		logs.wait(logsWait)
		n.ports.hold(name)
		if stopping.Load() {
			inst.exited(ErrStopped)
			return
		}
		status := -1
		var xe *exec.ExitError
		if errors.As(err, &xe) || err == nil {
			status = cmd.ProcessState.ExitCode()
		}
		inst.exited(&ExitError{Status: status, Logs: sl.tail(), Phase: sl.currentPhase()})
	}()

	rctx, cancel := n.readyContext(ctx)
	defer cancel()
	if err := waitReady(rctx, url, p, inst.Done()); err != nil {
		if errors.Is(err, errExited) {
			err = inst.Err()
		}
		// Stop is bounded by stopGrace; it reports nothing.
		_ = inst.Stop(context.Background())
		return nil, launchError(p, n.opts.Binary, err, sl.tail())
	}
	return inst, nil
}

// logPipes carry a child's stdout and stderr, line by line, into a
// startLog.
type logPipes struct {
	readers, writers []*os.File
	done             chan struct{}
	sl               *startLog
}

// newLogPipes makes cmd write its output to pipes read into sl.
func newLogPipes(cmd *exec.Cmd, sl *startLog) (*logPipes, error) {
	lp := &logPipes{done: make(chan struct{}), sl: sl}
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			lp.close()
			return nil, err
		}
		lp.readers, lp.writers = append(lp.readers, r), append(lp.writers, w)
	}
	cmd.Stdout, cmd.Stderr = lp.writers[0], lp.writers[1]
	return lp, nil
}

// started closes the parent's ends of the pipes and starts reading.
func (lp *logPipes) started() {
	for _, w := range lp.writers {
		_ = w.Close()
	}
	var wg sync.WaitGroup
	for _, r := range lp.readers {
		wg.Go(func() {
			lw := &lineWriter{fn: lp.sl.line}
			_, _ = io.Copy(lw, r)
			lw.flush()
		})
	}
	go func() {
		wg.Wait()
		close(lp.done)
	}()
}

// wait waits up to d for the output to end, then stops reading.
func (lp *logPipes) wait(d time.Duration) {
	select {
	case <-lp.done:
	case <-time.After(d):
	}
	lp.close()
	<-lp.done
}

func (lp *logPipes) close() {
	for _, f := range append(lp.readers, lp.writers...) {
		_ = f.Close()
	}
}

func (n *Native) readyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if n.opts.StartupTimeout > 0 {
		return context.WithTimeout(ctx, n.opts.StartupTimeout)
	}
	return context.WithCancel(ctx)
}

// Describe says what Launch would run for p, for --dry-run.
func (n *Native) Describe(_ context.Context, p plan.Plan) Description {
	p = p.Redact()
	d := Description{
		Role:    p.Role,
		Name:    p.Name(),
		Kind:    "process",
		Program: n.opts.Binary,
		Args:    n.args(p, 0),
		Env:     n.env(p),
		Address: "127.0.0.1:<a free port, chosen at start>",
	}
	d.Args = setArg(d.Args, argPort, "<free port>")
	if n.opts.ModelCache != "" {
		d.ModelCache = n.opts.ModelCache
	} else {
		d.ModelCache = "TEI's default (~/.cache/huggingface/hub)"
	}
	return d
}

// Description is what a launcher would run for a plan, for --dry-run.
// Secret values are redacted.
type Description struct {
	Role plan.Role
	// Kind is "docker" or "process".
	Kind string
	// Program is the image or the binary.
	Program string
	// Name is the container's name, or the replica's (plan.Plan.Name).
	Name string
	Args []string
	// Env is KEY=VALUE, sorted.
	Env []string
	// GPUs are the device ids requested.
	GPUs []int
	// ModelCache says where models are kept.
	ModelCache string
	// Address says where TEI is reachable.
	Address string
	// Image says whether a Docker image is present locally; empty for a
	// native process.
	Image  string
	Labels map[string]string
}
