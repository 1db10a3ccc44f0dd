package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tei"
)

// discard is a logger for tests that do not read the log.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// capture is a logger whose output the test reads.
func capture() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// syncBuffer is a bytes.Buffer safe for the goroutines that log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cpuPlan is the plan this package's tests launch: a small embedding model
// on the CPU, planned as serve would on a 2-core machine.
func cpuPlan(t *testing.T, model string) plan.Plan {
	t.Helper()
	off := false
	hw := hwdetect.Hardware{OS: "linux", Arch: "amd64",
		CPU:    hwdetect.CPU{UsableCores: hwdetect.Fact[int]{Value: 2, Source: hwdetect.SourceGHW}},
		Memory: hwdetect.Memory{PhysicalBytes: hwdetect.Fact[int64]{Value: 8 << 30, Source: hwdetect.SourceGHW}}}
	res, err := plan.Make(hw, plan.Settings{EmbeddingModel: model, RerankEnable: &off})
	if err != nil {
		t.Fatal(err)
	}
	return res.Plans[0]
}

func TestDiagnose(t *testing.T) {
	hopper := plan.Plan{Image: plan.Registry + ":hopper-1.9.3", MaxBatchTokens: 32768}
	for _, tc := range []struct {
		name   string
		lines  []string
		p      plan.Plan
		cause  Cause
		advice []string
	}{
		{
			name: "compute cap: an Ampere 8.6 GPU on the Hopper image",
			lines: []string{"Error: Could not create backend", "", "Caused by:",
				"    Could not start backend: Runtime compute cap 86 is not compatible with compile time compute cap 90"},
			p: hopper, cause: CauseComputeCap,
			advice: []string{"built for compute capability 9.0", "the GPU has 8.6", plan.Registry + ":86-1.9.3", "GPU_COMPUTE_CAP=8.6"},
		},
		{
			name:  "compute cap: a Volta GPU no build runs on gets the CPU image",
			lines: []string{"Runtime compute cap 70 is not compatible with compile time compute cap 80"},
			p:     plan.Plan{Image: plan.Registry + ":1.9.3"}, cause: CauseComputeCap,
			advice: []string{plan.Registry + ":cpu-1.9.3"},
		},
		{
			name:  "no NVIDIA runtime",
			lines: []string{`docker start: Error response from daemon: could not select device driver "nvidia" with capabilities: [[gpu]]`},
			p:     hopper, cause: CauseNoGPURuntime,
			advice: []string{"NVIDIA Container Toolkit", "TEI_FALLBACK_CPU=true"},
		},
		{
			name:  "CUDA out of memory",
			lines: []string{"Warming up model", `Caused by: DriverError(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")`},
			p:     hopper, cause: CauseOutOfMemory, advice: []string{"32768-token batch"},
		},
		{
			name:  "Metal out of memory",
			lines: []string{"Error: Model backend is not healthy", "Caused by: OutOfMemory"},
			p:     hopper, cause: CauseOutOfMemory,
		},
		{
			name:  "unknown",
			lines: []string{"Error: Could not download model artifacts", "Caused by: 401 Unauthorized"},
			p:     hopper, cause: CauseUnknown,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Diagnose(tc.lines, tc.p)
			if d.Cause != tc.cause {
				t.Fatalf("cause %q, want %q (advice %q)", d.Cause, tc.cause, d.Advice)
			}
			for _, want := range tc.advice {
				if !strings.Contains(d.Advice, want) {
					t.Errorf("advice %q lacks %q", d.Advice, want)
				}
			}
			if tc.cause == CauseUnknown && d.Advice != "" {
				t.Errorf("advice %q for an unknown cause", d.Advice)
			}
		})
	}
}

func TestParseLogLine(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want logLine
	}{
		{`{"timestamp":"2026-01-02T03:04:05Z","level":"INFO","fields":{"message":"Starting model backend"},"target":"text_embeddings_router"}`,
			logLine{slog.LevelInfo, "Starting model backend", "Starting model backend"}},
		{`{"timestamp":"t","level":"WARN","fields":{"message":"Downloading","file":"config.json"},"target":"x"}`,
			logLine{slog.LevelWarn, "Downloading", "Downloading file=config.json"}},
		{"2026-01-02T03:04:05.678901Z  INFO text_embeddings_router: router/src/main.rs:175: Warming up model",
			logLine{slog.LevelInfo, "Warming up model", "Warming up model"}},
		{"\x1b[2m2026-01-02T03:04:05Z\x1b[0m \x1b[31mERROR\x1b[0m text_embeddings_router: Ready",
			logLine{slog.LevelError, "Ready", "Ready"}},
		{"    Could not start backend: out of memory",
			logLine{slog.LevelInfo, "Could not start backend: out of memory", "    Could not start backend: out of memory"}},
	} {
		if got := parseLogLine(tc.raw); got != tc.want {
			t.Errorf("parseLogLine(%q) = %+v, want %+v", tc.raw, got, tc.want)
		}
	}
}

// TestStartLogPhases feeds TEI's start-up lines and wants each phase
// reported once, in order, to the log and to progress, and only the last
// lines kept.
func TestStartLogPhases(t *testing.T) {
	log, out := capture()
	var progress []string
	sl := newStartLog(log, false, plan.Plan{}, func(s string) { progress = append(progress, s) })
	for _, l := range []string{
		"Starting download", "Downloading `config.json`", "Downloading `model.safetensors`", "Model artifacts downloaded in 2s",
		"Starting 3 tokenization workers", "Starting model backend", "Warming up model", "Starting HTTP server: 0.0.0.0:80", "Ready",
		"Warming up model", // after ready: not a phase any more
	} {
		sl.line(`{"level":"INFO","fields":{"message":"` + l + `"}}`)
	}
	var phases []string
	for _, line := range strings.Split(out.String(), "\n") {
		if i := strings.Index(line, "phase="); i >= 0 {
			phases = append(phases, strings.Fields(strings.ReplaceAll(line[i+6:], `"warming up"`, "warming-up"))[0])
		}
	}
	if want := []string{"downloading", "loading", "warming-up", "ready"}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v\n%s", phases, want, out)
	}
	if !strings.Contains(out.String(), "elapsed=") {
		t.Errorf("phases carry no elapsed time:\n%s", out)
	}
	if want := []string{"downloading the model", "loading the model", "warming up the model"}; !slices.Equal(progress, want) {
		t.Errorf("progress %q, want %q", progress, want)
	}
	if sl.currentPhase() != PhaseReady {
		t.Errorf("phase %q after Ready", sl.currentPhase())
	}
	for i := range 30 {
		sl.line(fmt.Sprintf("line %d", i))
	}
	tail := sl.tail()
	if len(tail) != tailLines || tail[0] != "line 10" || tail[tailLines-1] != "line 29" {
		t.Errorf("tail = %q", tail)
	}
}

// TestStartLogWarnsOfCPUFallback: a CUDA image that finds no GPU goes on
// on the CPU without failing, so only its log tells; the warning carries
// the diagnosis, once.
func TestStartLogWarnsOfCPUFallback(t *testing.T) {
	log, out := capture()
	p := plan.Plan{Image: plan.Registry + ":89-1.9.3", GPUIDs: []int{2}}
	sl := newStartLog(log, true, p, nil)
	for _, l := range []string{
		`{"level":"WARN","fields":{"message":"Could not find a compatible CUDA device on host: CUDA_ERROR_NO_DEVICE"}}`,
		`{"level":"WARN","fields":{"message":"Using CPU instead"}}`,
		`{"level":"INFO","fields":{"message":"Ready"}}`,
		`{"level":"WARN","fields":{"message":"Using CPU instead"}}`,
	} {
		sl.line(l)
	}
	if n := strings.Count(out.String(), "TEI fell back to the CPU"); n != 1 {
		t.Errorf("%d fallback warnings, want 1:\n%s", n, out)
	}
	for _, want := range []string{"CUDA_ERROR_NO_DEVICE", "device=2", "EMBEDDING_DEVICE=cpu"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("warning lacks %q:\n%s", want, out)
		}
	}
	quiet, qout := capture()
	cpu := newStartLog(quiet, true, plan.Plan{Image: plan.Registry + ":cpu-1.9.3"}, nil)
	cpu.line(`{"level":"INFO","fields":{"message":"Starting model backend"}}`)
	if strings.Contains(qout.String(), "fell back") {
		t.Errorf("a warning without a fallback:\n%s", qout)
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{fn: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"one\ntw", "o\n", "three", "\nfour"} {
		_, _ = w.Write([]byte(chunk))
	}
	w.flush()
	if want := []string{"one", "two", "three", "four"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// TestRestartBackoff wants restarts to wait twice as long each time, capped.
func TestRestartBackoff(t *testing.T) {
	b := newRestartBackoff(time.Second, 8*time.Second, 0)
	var got []time.Duration
	for range 6 {
		got = append(got, b.NextBackOff())
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
	b.Reset()
	if d := b.NextBackOff(); d != time.Second {
		t.Errorf("after Reset: %v, want 1s", d)
	}
	jittered := newRestartBackoff(time.Second, time.Minute, 0.2)
	for range 20 {
		if d := jittered.NextBackOff(); d > 72*time.Second {
			t.Fatalf("delay %v beyond the cap plus jitter", d)
		}
	}
}

func TestDecideAdoption(t *testing.T) {
	const h = "hash-now"
	for _, tc := range []struct {
		name     string
		existing []managedContainer
		adopt    string
		remove   []string
	}{
		{"none", nil, "", nil},
		{"a running match is adopted", []managedContainer{{ID: "a", Hash: h, Running: true}}, "a", nil},
		{"a stale one is replaced", []managedContainer{{ID: "a", Hash: "hash-before", Running: true}}, "", []string{"a"}},
		{"an exited match is replaced", []managedContainer{{ID: "a", Hash: h}}, "", []string{"a"}},
		{"the newest of duplicates is adopted",
			[]managedContainer{{ID: "old", Hash: h, Running: true, Created: 1}, {ID: "new", Hash: h, Running: true, Created: 2}},
			"new", []string{"old"}},
		{"mixed",
			[]managedContainer{{ID: "stale", Hash: "x", Running: true, Created: 3}, {ID: "dead", Hash: h, Created: 2}, {ID: "live", Hash: h, Running: true, Created: 1}},
			"live", []string{"stale", "dead"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adopt, remove := decideAdoption(tc.existing, h)
			var ids []string
			for _, r := range remove {
				ids = append(ids, r.ID)
				if r.Why == "" {
					t.Errorf("removing %s without a reason", r.ID)
				}
			}
			if adopt != tc.adopt || !slices.Equal(ids, tc.remove) {
				t.Errorf("adopt %q remove %v, want %q %v", adopt, ids, tc.adopt, tc.remove)
			}
		})
	}
}

// TestAdjustmentFromLabels checks that a restarted sidecar reads back what
// an earlier one changed, so it adopts instead of repeating failures.
func TestAdjustmentFromLabels(t *testing.T) {
	p := plan.Plan{MaxBatchTokens: 16384}
	for _, tc := range []struct {
		labels map[string]string
		want   adjustment
	}{
		{map[string]string{LabelMaxBatchTokens: "16384"}, adjustment{}},
		{map[string]string{LabelMaxBatchTokens: "4096"}, adjustment{maxBatchTokens: 4096}},
		{map[string]string{LabelMaxBatchTokens: "16384", LabelFallback: "cpu"}, adjustment{maxBatchTokens: 16384, cpu: true}},
		{nil, adjustment{}},
	} {
		if got := adjustmentFrom(tc.labels, p); got != tc.want {
			t.Errorf("adjustmentFrom(%v) = %+v, want %+v", tc.labels, got, tc.want)
		}
	}
}

func TestStepDown(t *testing.T) {
	p := plan.Plan{MaxBatchTokens: 4096, MaxInputLength: 1000, Args: []string{"--model-id", "m", "--max-batch-tokens", "4096", "--json-output"}}
	var got []int
	for {
		next, ok := stepDown(p)
		if !ok {
			break
		}
		got = append(got, next.MaxBatchTokens)
		if want := []string{"--model-id", "m", "--max-batch-tokens", fmt.Sprint(next.MaxBatchTokens), "--json-output"}; !slices.Equal(next.Args, want) {
			t.Errorf("args %q, want %q", next.Args, want)
		}
		p = next
	}
	if want := []int{2048, 1024, 1000}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

func TestArgs(t *testing.T) {
	args := []string{"--model-id", "m", "--port", "80", "--hostname=0.0.0.0", "--huggingface-hub-cache", "/data", "--json-output"}
	got := setArg(setArg(setArg(args, "--port", "3001"), "--hostname", "127.0.0.1"), "--revision", "abc")
	want := []string{"--model-id", "m", "--port", "3001", "--hostname=127.0.0.1", "--huggingface-hub-cache", "/data", "--json-output", "--revision", "abc"}
	if !slices.Equal(got, want) {
		t.Errorf("setArg: %q, want %q", got, want)
	}
	if got := dropArg(args, "--huggingface-hub-cache"); slices.Contains(got, "/data") || len(got) != len(args)-2 {
		t.Errorf("dropArg: %q", got)
	}
	if args[3] != "80" {
		t.Error("setArg changed its input")
	}
}

func TestCheckInfo(t *testing.T) {
	p := plan.Plan{Model: "BAAI/bge-small-en-v1.5", DType: "float32", MaxBatchTokens: 16384, MaxClientBatchSize: 16}
	ok := &tei.Info{ModelID: p.Model, ModelDType: "float32", MaxBatchTokens: 16384, MaxClientBatchSize: 16}
	if err := CheckInfo(ok, p); err != nil {
		t.Errorf("matching /info: %v", err)
	}
	bad := *ok
	bad.ModelDType, bad.MaxClientBatchSize = "float16", 32
	err := CheckInfo(&bad, p)
	if err == nil || !strings.Contains(err.Error(), `model_dtype is "float16", the plan says "float32"`) ||
		!strings.Contains(err.Error(), "max_client_batch_size") || strings.Contains(err.Error(), "model_id") {
		t.Errorf("mismatch error: %v", err)
	}
}

func TestChooseMode(t *testing.T) {
	dockerOK := func() error { return nil }
	dockerDown := func() error { return errors.New("no socket") }
	binOK := func() (string, error) { return "/usr/bin/text-embeddings-router", nil }
	binMissing := func() (string, error) { return "", errors.New("text-embeddings-router is not on PATH") }
	native := []plan.Plan{{Backend: plan.BackendNative}}
	image := []plan.Plan{{Backend: plan.BackendDocker}}
	for _, tc := range []struct {
		name   string
		mode   Mode
		host   Host
		want   Mode
		errHas []string
	}{
		{"explicit mode wins", ModeDocker, Host{URLsGiven: true}, ModeDocker, nil},
		{"URLs given", ModeAuto, Host{URLsGiven: true, Docker: dockerOK}, ModeNone, nil},
		{"Apple Metal runs natively", ModeAuto, Host{Plans: native, Docker: dockerOK, Binary: binOK}, ModeProcess, nil},
		{"Docker reachable", ModeAuto, Host{Plans: image, Docker: dockerOK, Binary: binOK}, ModeDocker, nil},
		{"no Docker, binary on PATH", ModeAuto, Host{Plans: image, Docker: dockerDown, Binary: binOK}, ModeProcess, nil},
		{"nothing", ModeAuto, Host{Plans: image, Docker: dockerDown, Binary: binMissing}, "",
			[]string{"no socket", "not on PATH", "Install Docker", "TEI_EMBED_URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why, err := ChooseMode(tc.mode, tc.host)
			if tc.errHas != nil {
				if err == nil {
					t.Fatalf("chose %s, want an error", got)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil || got != tc.want || why == "" {
				t.Errorf("ChooseMode = %s, %q, %v; want %s", got, why, err, tc.want)
			}
		})
	}
}

// TestCPUFallback re-plans each replica of a GPU machine for the CPU
// image: the matching replica, with the launch's API key kept.
func TestCPUFallback(t *testing.T) {
	l4 := hwdetect.GPU{
		Name:       hwdetect.Fact[string]{Value: "NVIDIA L4", Source: hwdetect.SourceNvidiaSMI},
		ComputeCap: hwdetect.Fact[string]{Value: "8.9", Source: hwdetect.SourceNvidiaSMI},
		MemoryMiB:  hwdetect.Fact[int64]{Value: 23034, Source: hwdetect.SourceNvidiaSMI},
	}
	gpus := []hwdetect.GPU{l4, l4, l4}
	for i := range gpus {
		gpus[i].Index = i
	}
	hw := hwdetect.Hardware{OS: "linux", Arch: "amd64", GPUs: gpus,
		CPU:    hwdetect.CPU{UsableCores: hwdetect.Fact[int]{Value: 8, Source: hwdetect.SourceGHW}},
		Memory: hwdetect.Memory{PhysicalBytes: hwdetect.Fact[int64]{Value: 32 << 30, Source: hwdetect.SourceGHW}}}
	s := plan.Settings{EmbeddingModel: "BAAI/bge-small-en-v1.5", Image: plan.Registry + ":89-1.9.3"}
	res, err := plan.Make(hw, s)
	if err != nil || len(res.Replicas(plan.RoleEmbedding)) != 2 || len(res.Replicas(plan.RoleRerank)) != 1 {
		t.Fatalf("GPU plan: %v %+v", err, res.Plans)
	}
	a := adjuster{log: discard, fallback: CPUFallback(hw, s)}
	for _, gpu := range res.Plans {
		t.Run(gpu.Name(), func(t *testing.T) {
			p, err := a.apply(WithAPIKey(gpu, "k"), adjustment{cpu: true})
			if err != nil {
				t.Fatal(err)
			}
			if p.Role != gpu.Role || p.Replica != gpu.Replica || len(p.GPUIDs) != 0 || p.Image != plan.Registry+":cpu-1.9.3" || p.DType != "float32" {
				t.Errorf("fallback: %s replica %d, image %s, gpus %v, dtype %s", p.Role, p.Replica, p.Image, p.GPUIDs, p.DType)
			}
			if p.Env[APIKeyEnv] != "k" || !slices.Contains(p.SecretEnv, APIKeyEnv) || p.Redact().Env[APIKeyEnv] != plan.Redacted {
				t.Errorf("the API key did not survive the fallback: env %v secret %v", p.Redact().Env, p.SecretEnv)
			}
		})
	}
}

// TestContainerSpec checks what a container is created with: the plan's
// arguments and environment without HOSTNAME, the model cache at /data,
// GPU requests, labels, and TEI's port published on loopback only, or the
// sidecar's network with nothing published.
func TestContainerSpec(t *testing.T) {
	d, err := NewDocker(DockerOptions{Project: "proj"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := plan.Plan{Role: plan.RoleRerank, Image: "img:1", Port: 80, MaxBatchTokens: 4096,
		Args: []string{"--model-id", "m", "--hostname", "0.0.0.0", "--port", "80"},
		Env:  map[string]string{"AUTO_TRUNCATE": "true", "HOSTNAME": "leak", "HF_TOKEN": "tok"}, GPUIDs: []int{1, 3}}

	spec := d.spec("h1", p, adjustment{}, attachment{}, "")
	if spec.Name != "proj-rerank" || !slices.Equal(spec.Config.Cmd, p.Args) {
		t.Errorf("name %q cmd %q", spec.Name, spec.Config.Cmd)
	}
	if want := []string{"AUTO_TRUNCATE=true", "HF_TOKEN=tok"}; !slices.Equal(spec.Config.Env, want) {
		t.Errorf("env %q, want %q", spec.Config.Env, want)
	}
	wantLabels := map[string]string{LabelManagedBy: "tei-sidecar", LabelProject: "proj", LabelRole: "rerank", LabelReplica: "0",
		LabelPlanHash: "h1", LabelMaxBatchTokens: "4096"}
	if !reflect.DeepEqual(spec.Config.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", spec.Config.Labels, wantLabels)
	}
	dr := spec.HostConfig.DeviceRequests
	if len(dr) != 1 || dr[0].Driver != "nvidia" || !slices.Equal(dr[0].DeviceIDs, []string{"1", "3"}) || !reflect.DeepEqual(dr[0].Capabilities, [][]string{{"gpu"}}) {
		t.Errorf("device requests %+v", dr)
	}
	if m := spec.HostConfig.Mounts; len(m) != 1 || m[0].Type != "volume" || m[0].Source != DefaultModelVolume || m[0].Target != "/data" {
		t.Errorf("mounts %+v", m)
	}
	b := spec.HostConfig.PortBindings[teiPort(80)]
	if len(b) != 1 || b[0].HostIP.String() != "127.0.0.1" || b[0].HostPort != "" {
		t.Errorf("port bindings %+v", spec.HostConfig.PortBindings)
	}

	bind, _ := NewDocker(DockerOptions{ModelCache: "/srv/models"}, discard)
	defer bind.Close()
	spec = bind.spec("h1", p, adjustment{cpu: true}, attachment{network: "app"}, "")
	if m := spec.HostConfig.Mounts[0]; m.Type != "bind" || m.Source != "/srv/models" {
		t.Errorf("bind mount %+v", m)
	}
	if len(spec.HostConfig.PortBindings) != 0 || spec.HostConfig.NetworkMode != "app" {
		t.Errorf("on the sidecar's network: bindings %v, mode %q", spec.HostConfig.PortBindings, spec.HostConfig.NetworkMode)
	}
	if ep := spec.NetworkingConfig.EndpointsConfig["app"]; ep == nil || !slices.Equal(ep.Aliases, []string{"tei-rerank"}) {
		t.Errorf("endpoint %+v", spec.NetworkingConfig)
	}
	if spec.Config.Labels[LabelFallback] != "cpu" {
		t.Errorf("fallback label missing: %v", spec.Config.Labels)
	}

	// Each replica is a container of its own, named as compose names it.
	third := p
	third.Replica = 2
	spec = bind.spec("h3", third, adjustment{}, attachment{network: "app"}, "")
	if spec.Name != "tei-rerank-2" || spec.Config.Labels[LabelReplica] != "2" {
		t.Errorf("replica 2: name %q labels %v", spec.Name, spec.Config.Labels)
	}
	if ep := spec.NetworkingConfig.EndpointsConfig["app"]; ep == nil || !slices.Equal(ep.Aliases, []string{"tei-rerank-2"}) {
		t.Errorf("replica 2's endpoint %+v", spec.NetworkingConfig)
	}
}

func TestSelfIDCandidates(t *testing.T) {
	id1 := strings.Repeat("a", 64)
	id2 := strings.Repeat("b", 64)
	cgroup := "12:memory:/docker/" + id1 + "\n0::/system.slice/docker-" + id1 + ".scope\n"
	mountinfo := "1 2 0:3 /var/lib/docker/containers/" + id2 + "/hostname /etc/hostname rw\n"
	got := selfIDCandidates(cgroup, mountinfo, "b0c1d2e3f4a5\n")
	if want := []string{id1, id2, "b0c1d2e3f4a5"}; !slices.Equal(got, want) {
		t.Errorf("candidates %q, want %q", got, want)
	}
	if got := selfIDCandidates("0::/\n", "", ""); len(got) != 0 {
		t.Errorf("cgroup v2 namespace: %q", got)
	}
}

func TestLogPull(t *testing.T) {
	msgs := []jsonstream.Message{
		{Status: "Pulling from huggingface/text-embeddings-inference", ID: "cpu-1.9.3"},
		{Status: "Pulling fs layer", ID: "l1"},
		{Status: "Downloading", ID: "l1", Progress: &jsonstream.Progress{Current: 1 << 20, Total: 4 << 20}},
		{Status: "Already exists", ID: "l2"},
		{Status: "Download complete", ID: "l1"},
		{Status: "Pull complete", ID: "l1"},
	}
	seq := func(yield func(jsonstream.Message, error) bool) {
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}
	log, out := capture()
	if err := logPull(log, "img", seq, 0); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "layers_done=2/2") || !strings.Contains(s, "total_mb=4") || !strings.Contains(s, "pulled every layer") {
		t.Errorf("pull log:\n%s", s)
	}
	failing := func(yield func(jsonstream.Message, error) bool) {
		yield(jsonstream.Message{Error: &jsonstream.Error{Message: "manifest unknown"}}, nil)
	}
	if err := logPull(discard, "img", failing, time.Second); err == nil || err.Error() != "manifest unknown" {
		t.Errorf("error message: %v", err)
	}
}

// fakeLauncher hands out instances backed by httptest servers; fail makes
// the next launches fail with failErr (a *LaunchError when nil), after
// reporting progress.
type fakeLauncher struct {
	mu       sync.Mutex
	fail     int
	failErr  error
	progress []string
	launches int
	servers  []*httptest.Server
	insts    []*Instance
}

func (f *fakeLauncher) Launch(_ context.Context, p plan.Plan, progress Progress) (*Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.launches++
	for _, st := range f.progress {
		progress.report(st)
	}
	if f.fail > 0 {
		f.fail--
		if f.failErr != nil {
			return nil, f.failErr
		}
		return nil, &LaunchError{Role: p.Role, What: "fake", Err: errors.New("fake failure")}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	f.servers = append(f.servers, srv)
	var inst *Instance
	inst = newInstance(srv.URL, p, fmt.Sprint("fake-", f.launches), false, func(context.Context, bool) error {
		srv.Close()
		inst.exited(ErrStopped)
		return nil
	})
	f.insts = append(f.insts, inst)
	return inst, nil
}

// last is the instance launched last; nil before any.
func (f *fakeLauncher) last() *Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.insts) == 0 {
		return nil
	}
	return f.insts[len(f.insts)-1]
}

// sinkRecorder records SetDown calls and reports a fixed liveness.
type sinkRecorder struct {
	mu    sync.Mutex
	calls []string
	ch    chan string
	last  time.Time // what Liveness reports
}

func (s *sinkRecorder) SetDown(pool, url, reason string) {
	s.mu.Lock()
	s.calls = append(s.calls, pool+" "+url+": "+reason)
	s.mu.Unlock()
	s.ch <- reason
}

func (s *sinkRecorder) Liveness(string) (time.Time, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, 0
}

func waitFor(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no SetDown call")
		return ""
	}
}

// fastRestarts are supervisor options for tests: quick checks and
// restarts.
var fastRestarts = SuperviseOptions{HealthEvery: 20 * time.Millisecond, RestartMin: 10 * time.Millisecond, RestartMax: 40 * time.Millisecond}

// runSupervisor runs sup until the test ends, and returns a function that
// stops it and waits for it.
func runSupervisor(t *testing.T, sup *Supervisor) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { sup.Run(ctx); close(done) }()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// TestSupervisorRestartsExitedTEI: the supervisor launches TEI and marks
// it up; TEI exits, the supervisor marks it down, retries through failed
// launches with back-off, marks it up, and stops the last instance when
// its context ends.
func TestSupervisorRestartsExitedTEI(t *testing.T) {
	f := &fakeLauncher{}
	p := plan.Plan{Role: plan.RoleEmbedding}
	sink := &sinkRecorder{ch: make(chan string, 10)}
	log, out := capture()
	sup := NewSupervisor(f, p, "http://embed", sink, fastRestarts, log)
	stop := runSupervisor(t, sup)
	if r := waitFor(t, sink.ch); r != "" {
		t.Fatalf("want an up call after the first launch, got %q", r)
	}
	first := f.last()
	f.mu.Lock()
	f.fail = 2
	f.mu.Unlock()

	first.exited(&ExitError{Status: 137, Logs: []string{"Killed"}, Phase: PhaseReady})
	if r := waitFor(t, sink.ch); r != "TEI exited with status 137" {
		t.Errorf("down reason %q", r)
	}
	for _, want := range []string{"TEI exited with status 137; retrying in", "TEI failed to start", "TEI failed to start", ""} {
		if r := waitFor(t, sink.ch); !strings.HasPrefix(r, want) || (want == "") != (r == "") {
			t.Errorf("SetDown %q, want it to start with %q", r, want)
		}
	}
	f.mu.Lock()
	launches, last := f.launches, f.insts[len(f.insts)-1]
	f.mu.Unlock()
	if launches != 4 {
		t.Errorf("%d launches, want 4 (start, two failures, success)", launches)
	}
	stop()
	if !errors.Is(last.Err(), ErrStopped) {
		t.Errorf("last instance not stopped: %v", last.Err())
	}
	for _, want := range []string{"TEI is up", "TEI is down: restarting it", "starting TEI failed", "TEI recovered", "TEI's last log lines"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, c := range sink.calls {
		if !strings.HasPrefix(c, "embed http://embed: ") {
			t.Errorf("SetDown call %q, want the replica's pool and URL", c)
		}
	}
}

// TestSupervisorRetriesFirstLaunch is a regression test: a TEI whose image
// could not be pulled made serve exit (and, under compose, restart in a
// loop) instead of answering 503 with a reason. The supervisor now does
// the first launch itself, reports progress and a safe reason, and
// retries with back-off until the launch works.
func TestSupervisorRetriesFirstLaunch(t *testing.T) {
	pullErr := &PullError{Image: "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3",
		Err: errors.New(`Get "https://ghcr.io/v2/": dial tcp 10.1.2.3:443: connect: connection refused`)}
	f := &fakeLauncher{fail: 2, failErr: pullErr, progress: []string{"pulling the image"}}
	sink := &sinkRecorder{ch: make(chan string, 20)}
	sup := NewSupervisor(f, plan.Plan{Role: plan.RoleRerank, Replica: 1}, "http://rerank-1", sink, fastRestarts, discard)
	runSupervisor(t, sup)
	var got []string
	for r := "x"; r != ""; {
		r = waitFor(t, sink.ch)
		got = append(got, r)
	}
	want := []string{
		"pulling the image",
		"pulling ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3 failed: the registry cannot be reached; retrying in",
		"pulling the image",
		"pulling ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3 failed: the registry cannot be reached; retrying in",
		"pulling the image",
		"",
	}
	if len(got) != len(want) {
		t.Fatalf("SetDown reasons %q, want %d like %q", got, len(want), want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || (want[i] == "") != (got[i] == "") {
			t.Errorf("reason %d: %q, want it to start with %q", i, got[i], want[i])
		}
		if strings.Contains(got[i], "10.1.2.3") || strings.Contains(got[i], "dial tcp") {
			t.Errorf("reason %q shows the raw network error", got[i])
		}
	}
}

// TestSupervisorRestartsUnhealthyTEI: TEI stays up but stops answering
// /health; after the configured failures it is replaced.
func TestSupervisorRestartsUnhealthyTEI(t *testing.T) {
	f := &fakeLauncher{}
	p := plan.Plan{Role: plan.RoleRerank}
	sink := &sinkRecorder{ch: make(chan string, 10)}
	sup := NewSupervisor(f, p, "http://rerank", sink, SuperviseOptions{HealthEvery: 10 * time.Millisecond, Failures: 3, RestartMin: 10 * time.Millisecond}, discard)
	stop := runSupervisor(t, sup)
	if r := waitFor(t, sink.ch); r != "" {
		t.Fatalf("want an up call, got %q", r)
	}
	first := f.last()
	f.mu.Lock()
	f.servers[0].Close() // connections now refused, but the instance has not exited
	f.mu.Unlock()
	if r := waitFor(t, sink.ch); r != "TEI failed 3 health checks in a row" {
		t.Errorf("down reason %q", r)
	}
	if r := waitFor(t, sink.ch); !strings.HasPrefix(r, "TEI failed 3 health checks in a row; retrying in") {
		t.Errorf("reason while waiting %q", r)
	}
	if r := waitFor(t, sink.ch); r != "" {
		t.Errorf("want an up call, got %q", r)
	}
	if !errors.Is(first.Err(), ErrStopped) {
		t.Errorf("the unhealthy instance was not stopped: %v", first.Err())
	}
	stop()
}

// TestSupervisorsRunReplicasApart: a dead replica is restarted while the
// others keep serving: each replica has a supervisor of its own, which
// reports under its own URL only.
func TestSupervisorsRunReplicasApart(t *testing.T) {
	sink := &sinkRecorder{ch: make(chan string, 30)}
	var fakes []*fakeLauncher
	for i := range 3 {
		f := &fakeLauncher{}
		fakes = append(fakes, f)
		p := plan.Plan{Role: plan.RoleEmbedding, Replica: i}
		runSupervisor(t, NewSupervisor(f, p, fmt.Sprintf("http://%s", p.Name()), sink, fastRestarts, discard))
	}
	for range 3 {
		if r := waitFor(t, sink.ch); r != "" {
			t.Fatalf("want up calls, got %q", r)
		}
	}
	fakes[1].last().exited(&ExitError{Status: 1})
	for r := "x"; r != ""; {
		r = waitFor(t, sink.ch)
	}
	for i, f := range fakes {
		f.mu.Lock()
		n := f.launches
		f.mu.Unlock()
		if want := map[bool]int{true: 2, false: 1}[i == 1]; n != want {
			t.Errorf("replica %d launched %d times, want %d", i, n, want)
		}
		if i != 1 && f.last().Err() != nil {
			t.Errorf("replica %d was stopped: %v", i, f.last().Err())
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, c := range sink.calls {
		if strings.HasSuffix(c, ": ") {
			continue // up calls, one per launch
		}
		if !strings.HasPrefix(c, "embed http://embed-1: ") {
			t.Errorf("down call %q for a replica that kept serving", c)
		}
	}
}
