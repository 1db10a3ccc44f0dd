package launch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// buildSim compiles the TEI simulator as text-embeddings-router, the
// binary a native launcher runs.
func buildSim(t *testing.T) string {
	t.Helper()
	bin, err := teisim.BuildRouter(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// pidOf reads the process id out of a native Instance's ID.
func pidOf(t *testing.T, inst *Instance) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimPrefix(inst.ID, "pid "))
	if err != nil {
		t.Fatalf("instance id %q: %v", inst.ID, err)
	}
	return pid
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func requireLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
}

// TestNativeScrubsEnvironment starts the simulator as TEI with variables in
// the sidecar's environment that TEI would read as flags, and wants the
// child to see none of them: /info shows the plan's values, the child's
// environment holds only the passed-on variables and the plan's.
func TestNativeScrubsEnvironment(t *testing.T) {
	requireLinux(t)
	bin := buildSim(t)
	for k, v := range map[string]string{
		"HOSTNAME": "sidecar-host", "PORT": "1", "MODEL_ID": "wrong/model", "DTYPE": "float16",
		"MAX_BATCH_TOKENS": "7", "MAX_CLIENT_BATCH_SIZE": "3", "API_KEY": "leaked", "HF_TOKEN": "parent-token",
		"RUST_LOG": "info",
	} {
		t.Setenv(k, v)
	}
	log, out := capture()
	n, err := NewNative(NativeOptions{Binary: bin, StartupTimeout: 30 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	p := cpuPlan(t, "BAAI/bge-small-en-v1.5")
	inst, err := n.Launch(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Stop(context.Background())

	if !strings.HasPrefix(inst.URL, "http://127.0.0.1:") || strings.HasSuffix(inst.URL, ":3000") {
		t.Errorf("URL %s: want a free loopback port", inst.URL)
	}
	c, done, _ := probeClient(inst.URL, "")
	defer done()
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err) // API_KEY leaking in would make this 401
	}
	if info.ModelID != p.Model || info.ModelDType != p.DType || info.MaxBatchTokens != p.MaxBatchTokens || info.MaxClientBatchSize != p.MaxClientBatchSize {
		t.Errorf("/info %s %s %d %d, plan %s %s %d %d", info.ModelID, info.ModelDType, info.MaxBatchTokens, info.MaxClientBatchSize,
			p.Model, p.DType, p.MaxBatchTokens, p.MaxClientBatchSize)
	}

	environ, err := os.ReadFile("/proc/" + strconv.Itoa(pidOf(t, inst)) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true, "RUST_LOG": true}
	for k := range p.Env {
		allowed[k] = true
	}
	for _, kv := range strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00") {
		k, _, _ := strings.Cut(kv, "=")
		if !allowed[k] {
			t.Errorf("the child inherited %s", kv)
		}
	}
	if !strings.Contains(string(environ), "RUST_LOG=info") {
		t.Error("RUST_LOG was not passed on")
	}

	// Its log is streamed with the role as prefix, phases included.
	for _, want := range []string{"tei=embed", "Starting model backend", `phase="warming up"`, "phase=ready"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}

	if err := inst.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(inst.Err(), ErrStopped) {
		t.Errorf("Err after Stop: %v", inst.Err())
	}
}

// TestNativeOOMStepDown: the simulator fails its warm-up with CUDA's out of
// memory above 2048 batch tokens; the launcher halves --max-batch-tokens
// until TEI starts, says so, and starts a restart at the value that worked.
func TestNativeOOMStepDown(t *testing.T) {
	bin := buildSim(t)
	log, out := capture()
	n, err := NewNative(NativeOptions{Binary: bin, StartupTimeout: 30 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	p := withBatchTokens(cpuPlan(t, "BAAI/bge-small-en-v1.5"), 8192)
	p.Env["SIM_OOM_ABOVE_BATCH_TOKENS"] = "2048"
	inst, err := n.Launch(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Plan.MaxBatchTokens != 2048 {
		t.Errorf("runs with %d batch tokens, want 2048", inst.Plan.MaxBatchTokens)
	}
	if err := waitReady(t.Context(), inst.URL, inst.Plan, inst.Done()); err != nil {
		t.Errorf("/info does not show the stepped-down value: %v", err)
	}
	steps := strings.Count(out.String(), "retrying with half the batch tokens")
	if steps != 2 || !strings.Contains(out.String(), "max_batch_tokens=4096 was=8192") {
		t.Errorf("%d step-down reports, want 8192→4096→2048:\n%s", steps, out)
	}
	if err := inst.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	again, err := n.Launch(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop(context.Background())
	if again.Plan.MaxBatchTokens != 2048 || strings.Count(out.String(), "retrying with half") != steps {
		t.Errorf("a restart repeated the step-down: %d tokens", again.Plan.MaxBatchTokens)
	}
}

// TestNativeFailedStart wants failures to come with TEI's last lines and
// a diagnosis, and nothing left running.
func TestNativeFailedStart(t *testing.T) {
	bin := buildSim(t)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		cause Cause
		has   []string
	}{
		{"out of memory even at the longest input", map[string]string{"SIM_OOM_ABOVE_BATCH_TOKENS": "100"}, CauseOutOfMemory,
			[]string{"even with --max-batch-tokens 512", "CUDA_ERROR_OUT_OF_MEMORY", "exited with status 1"}},
		{"compute capability mismatch", map[string]string{"SIM_FAIL_COMPUTE_CAP": "86:90"}, CauseComputeCap,
			[]string{"Runtime compute cap 86", "GPU has 8.6", plan.Registry + ":86-1.9.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NewNative(NativeOptions{Binary: bin, StartupTimeout: 30 * time.Second}, discard)
			if err != nil {
				t.Fatal(err)
			}
			p := withBatchTokens(cpuPlan(t, "BAAI/bge-small-en-v1.5"), 1024)
			p.Image = plan.Registry + ":hopper-1.9.3" // what a GPU plan would have run
			for k, v := range tc.env {
				p.Env[k] = v
			}
			_, err = n.Launch(t.Context(), p, nil)
			var le *LaunchError
			if !errors.As(err, &le) {
				t.Fatalf("error %v, want a *LaunchError", err)
			}
			if le.Diagnosis.Cause != tc.cause || len(le.Logs) == 0 {
				t.Errorf("cause %q with %d log lines", le.Diagnosis.Cause, len(le.Logs))
			}
			for _, s := range tc.has {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q:\n%v", s, err)
				}
			}
		})
	}
}

// groupScript stands in for a TEI that starts a helper process: it runs
// the simulator in the background, writes its pid, then waits for it, or
// exits with status 3 after LEADER_EXIT seconds.
const groupScript = `#!/bin/sh
"$SIM_BIN" "$@" &
echo $! > "$PID_FILE"
if [ -n "$LEADER_EXIT" ]; then sleep "$LEADER_EXIT"; exit 3; fi
wait
`

// TestNativeKillsProcessGroup wants TEI's whole process group ended, both
// when the sidecar stops it and when its leader exits on its own: a
// process TEI started must not outlive it.
func TestNativeKillsProcessGroup(t *testing.T) {
	requireLinux(t)
	sim := buildSim(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "tei-wrapper")
	if err := os.WriteFile(script, []byte(groupScript), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		leaderExit string
	}{
		{"on Stop", ""},
		{"when the leader exits", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NewNative(NativeOptions{Binary: script, StartupTimeout: 30 * time.Second}, discard)
			if err != nil {
				t.Fatal(err)
			}
			pidFile := filepath.Join(t.TempDir(), "pid")
			p := cpuPlan(t, "BAAI/bge-small-en-v1.5")
			p.Env["SIM_BIN"], p.Env["PID_FILE"] = sim, pidFile
			if tc.leaderExit != "" {
				p.Env["LEADER_EXIT"] = tc.leaderExit
			}
			inst, err := n.Launch(t.Context(), p, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer inst.Stop(context.Background())
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if !alive(child) {
				t.Fatalf("the simulator (pid %d) is not running", child)
			}

			if tc.leaderExit == "" {
				if err := inst.Stop(t.Context()); err != nil {
					t.Fatal(err)
				}
			} else {
				select {
				case <-inst.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("the leader's exit went unnoticed")
				}
				var ee *ExitError
				if !errors.As(inst.Err(), &ee) || ee.Status != 3 {
					t.Errorf("Err %v, want exit status 3", inst.Err())
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for alive(child) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if alive(child) {
				t.Errorf("the simulator (pid %d) outlived its process group's leader", child)
			}
		})
	}
}
