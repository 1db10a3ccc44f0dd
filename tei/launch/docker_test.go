package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tests/dockertest"
)

// cpuImage is the image the CPU plan picks on amd64; the tests build the
// simulator under it.
const cpuImage = plan.Registry + ":cpu-1.9.3"

// dockerLauncher returns a Docker launcher with a project of the test's
// own, and removes whatever the project left when the test ends.
func dockerLauncher(t *testing.T, opts DockerOptions) *Docker {
	t.Helper()
	if opts.Project == "" {
		opts.Project = fmt.Sprintf("teitest-%d", time.Now().UnixNano())
	}
	opts.StartupTimeout = 30 * time.Second
	d, err := NewDocker(opts, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, c := range projectContainers(t, d, opts.Project) {
			_, _ = d.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
		_ = d.Close()
	})
	return d
}

// projectContainers lists a project's containers, running or not.
func projectContainers(t *testing.T, d *Docker, project string) []container.Summary {
	t.Helper()
	res, err := d.api.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", LabelProject+"="+project)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Items
}

// gpuHardware is a machine with one L4, whose plan asks Docker for GPU 0.
func gpuHardware() hwdetect.Hardware {
	return hwdetect.Hardware{OS: "linux", Arch: "amd64",
		CPU:    hwdetect.CPU{UsableCores: hwdetect.Fact[int]{Value: 2, Source: hwdetect.SourceGHW}},
		Memory: hwdetect.Memory{PhysicalBytes: hwdetect.Fact[int64]{Value: 8 << 30, Source: hwdetect.SourceGHW}},
		GPUs: []hwdetect.GPU{{
			Name:       hwdetect.Fact[string]{Value: "NVIDIA L4", Source: hwdetect.SourceNvidiaSMI},
			ComputeCap: hwdetect.Fact[string]{Value: "8.9", Source: hwdetect.SourceNvidiaSMI},
			MemoryMiB:  hwdetect.Fact[int64]{Value: 23034, Source: hwdetect.SourceNvidiaSMI},
		}}}
}

// TestDockerGPUWithoutNVIDIARuntime launches a GPU plan on an engine without
// the NVIDIA runtime: without the fallback it fails with the toolkit
// diagnosis and leaves nothing behind; with TEI_FALLBACK_CPU it runs the CPU
// image and flags, and a restarted sidecar adopts that container.
func TestDockerGPUWithoutNVIDIARuntime(t *testing.T) {
	dockertest.BuildSimImage(t, cpuImage)
	hw := gpuHardware()
	off := false
	s := plan.Settings{EmbeddingModel: "BAAI/bge-small-en-v1.5", RerankEnable: &off}
	res, err := plan.Make(hw, s)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Plans[0]
	if len(p.GPUIDs) != 1 || p.DType != "float16" {
		t.Fatalf("not a GPU plan: %+v", p)
	}
	dockertest.BuildSimImage(t, p.Image)

	d := dockerLauncher(t, DockerOptions{})
	_, err = d.Launch(t.Context(), p, nil)
	var le *LaunchError
	if !errors.As(err, &le) || le.Diagnosis.Cause != CauseNoGPURuntime {
		t.Fatalf("error %v, want the NVIDIA runtime diagnosis", err)
	}
	for _, want := range []string{`could not select device driver "nvidia"`, "NVIDIA Container Toolkit", "TEI_FALLBACK_CPU=true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if left := projectContainers(t, d, d.opts.Project); len(left) != 0 {
		t.Errorf("%d containers left after a failed start", len(left))
	}

	// Keep, so this "sidecar" can hand its container over to the next.
	fb := dockerLauncher(t, DockerOptions{Keep: true, CPUFallback: CPUFallback(hw, s)})
	inst, err := fb.Launch(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Plan.Image != cpuImage || len(inst.Plan.GPUIDs) != 0 || inst.Plan.DType != "float32" {
		t.Errorf("fallback runs %s on %v as %s", inst.Plan.Image, inst.Plan.GPUIDs, inst.Plan.DType)
	}
	info, err := fb.api.ContainerInspect(t.Context(), inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := info.Container
	if l := c.Config.Labels; l[LabelFallback] != "cpu" || l[LabelPlanHash] != p.Hash() {
		t.Errorf("labels %v: want the fallback marked and the GPU plan's hash", l)
	}
	if len(c.HostConfig.DeviceRequests) != 0 {
		t.Errorf("the CPU fallback still requests %+v", c.HostConfig.DeviceRequests)
	}

	// A restarted sidecar with the same plan adopts it.
	again := dockerLauncher(t, DockerOptions{Project: fb.opts.Project, CPUFallback: CPUFallback(hw, s)})
	adopted, err := again.Launch(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !adopted.Adopted || adopted.ID != inst.ID || adopted.URL != inst.URL {
		t.Errorf("adopted=%t id %s url %s, want the running %s at %s", adopted.Adopted, adopted.ID, adopted.URL, inst.ID, inst.URL)
	}
	_ = inst.Release(context.WithoutCancel(t.Context())) // kept: stops watching only
	if err := adopted.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if left := projectContainers(t, d, fb.opts.Project); len(left) != 0 {
		t.Errorf("%d containers left after Stop", len(left))
	}
}

// TestDockerLaunchReplaceAndFail covers a container's life: published on
// loopback only, replaced when its plan changes, and failures that come
// with TEI's last log lines or name the image to load.
func TestDockerLaunchReplaceAndFail(t *testing.T) {
	dockertest.BuildSimImage(t, cpuImage)
	p := cpuPlan(t, "BAAI/bge-small-en-v1.5")
	d := dockerLauncher(t, DockerOptions{Keep: true})
	inst, err := d.Launch(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.api.ContainerInspect(t.Context(), inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Container
	for port, bindings := range c.NetworkSettings.Ports {
		for _, b := range bindings {
			if b.HostIP.String() != "127.0.0.1" {
				t.Errorf("%s published on %s", port, b.HostIP)
			}
		}
	}
	if c.Name != "/"+d.opts.Project+"-embed" || c.Config.Labels[LabelPlanHash] != p.Hash() {
		t.Errorf("name %s labels %v", c.Name, c.Config.Labels)
	}
	for _, e := range c.Config.Env {
		if strings.HasPrefix(e, "HOSTNAME=") {
			t.Errorf("the container's environment sets %s", e)
		}
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--hostname 0.0.0.0") {
		t.Errorf("no explicit --hostname in %q", c.Args)
	}
	_ = inst.Release(context.WithoutCancel(t.Context())) // kept: left for the next launcher

	// The sidecar restarts with a changed plan: the stale container goes.
	changed := p
	changed.MaxClientBatchSize = 8
	changed.Args = setArg(p.Args, "--max-client-batch-size", "8")
	next := dockerLauncher(t, DockerOptions{Project: d.opts.Project})
	inst2, err := next.Launch(t.Context(), changed, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst2.Stop(context.WithoutCancel(t.Context()))
	if inst2.Adopted || inst2.ID == inst.ID {
		t.Errorf("the stale container %s was adopted", inst.ID)
	}
	if left := projectContainers(t, d, d.opts.Project); len(left) != 1 || !strings.HasPrefix(left[0].ID, inst2.ID) {
		t.Errorf("containers after replacing: %d", len(left))
	}
	if err := inst2.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	t.Run("compute capability mismatch", func(t *testing.T) {
		bad := p
		bad.Env = map[string]string{"SIM_FAIL_COMPUTE_CAP": "75:89"}
		bad.Image = plan.Registry + ":89-1.9.3"
		dockertest.BuildSimImage(t, bad.Image)
		_, err := next.Launch(t.Context(), bad, nil)
		var le *LaunchError
		if !errors.As(err, &le) || le.Diagnosis.Cause != CauseComputeCap {
			t.Fatalf("error %v, want the compute capability diagnosis", err)
		}
		if !strings.Contains(strings.Join(le.Logs, "\n"), "Runtime compute cap 75 is not compatible") {
			t.Errorf("the container's last lines are missing: %q", le.Logs)
		}
		if !strings.Contains(err.Error(), plan.Registry+":turing-1.9.3") {
			t.Errorf("the fitting image is not named:\n%v", err)
		}
		if left := projectContainers(t, d, d.opts.Project); len(left) != 0 {
			t.Errorf("%d containers left after a failed start", len(left))
		}
	})

	t.Run("image not pullable", func(t *testing.T) {
		absent := p
		absent.Image = "localhost:1/tei-sidecar-absent:cpu-1.9.3"
		_, err := next.Launch(t.Context(), absent, nil)
		if err == nil || !strings.Contains(err.Error(), "pull "+absent.Image+" failed") || !strings.Contains(err.Error(), "`docker load` the image first") {
			t.Errorf("error %v, want one naming the image to load", err)
		}
	})
}

// directCall posts an embed straight to TEI, with key as its bearer token
// ("" for none), and returns the status.
func directCall(t *testing.T, base, key string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/embed", strings.NewReader(`{"inputs":"direct"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDockerReplicas launches two replicas of one model: each is a
// container of its own, named and labelled by its replica, reachable at the
// URL Address gave before it started, and guarded by the launch's API key;
// Prune removes the replica no longer planned.
func TestDockerReplicas(t *testing.T) {
	dockertest.BuildSimImage(t, cpuImage)
	d := dockerLauncher(t, DockerOptions{})
	key, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	var plans []plan.Plan
	var urls []string
	for i := range 2 {
		p := cpuPlan(t, "BAAI/bge-small-en-v1.5")
		p.Replica = i
		p = WithAPIKey(p, key)
		url, err := d.Address(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		plans, urls = append(plans, p), append(urls, url)
	}
	if urls[0] == urls[1] || !strings.HasPrefix(urls[0], "http://127.0.0.1:") {
		t.Fatalf("addresses %q: want two loopback URLs", urls)
	}
	var insts []*Instance
	for i, p := range plans {
		// The log follower may still report a phase after Launch returns.
		var mu sync.Mutex
		var heard []string
		inst, err := d.Launch(t.Context(), p, func(s string) {
			mu.Lock()
			defer mu.Unlock()
			heard = append(heard, s)
		})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		progress := slices.Clone(heard)
		mu.Unlock()
		defer inst.Stop(context.WithoutCancel(t.Context()))
		insts = append(insts, inst)
		if inst.URL != urls[i] {
			t.Errorf("%s runs at %s; Address said %s", p.Name(), inst.URL, urls[i])
		}
		if !slices.Contains(progress, "starting TEI's container") {
			t.Errorf("%s: progress %q", p.Name(), progress)
		}
		res, err := d.api.ContainerInspect(t.Context(), inst.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := res.Container
		if want := "/" + d.opts.Project + "-" + p.Name(); c.Name != want || c.Config.Labels[LabelReplica] != strconv.Itoa(i) {
			t.Errorf("container %s labels %v, want %s and replica %d", c.Name, c.Config.Labels, want, i)
		}
		if got := envValue(c.Config.Env, APIKeyEnv); got != key {
			t.Errorf("%s runs without the launch's API key", p.Name())
		}
		if st := directCall(t, inst.URL, ""); st != http.StatusUnauthorized {
			t.Errorf("%s answered %d to a call without the key, want 401", p.Name(), st)
		}
		if st := directCall(t, inst.URL, key); st != http.StatusOK {
			t.Errorf("%s answered %d to a call with the key", p.Name(), st)
		}
	}

	if err := d.Prune(t.Context(), plans[:1]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-insts[1].Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the pruned replica's instance did not end")
	}
	left := projectContainers(t, d, d.opts.Project)
	if len(left) != 1 || left[0].Labels[LabelReplica] != "0" {
		t.Errorf("after pruning embed-1: %d containers %v", len(left), left)
	}
}

// TestDockerAdoptsByAPIKey: a restarted sidecar reuses the key the kept
// containers share and adopts them; one given another key (TEI_API_KEY)
// replaces them, since the proxy would get 401 from them.
func TestDockerAdoptsByAPIKey(t *testing.T) {
	dockertest.BuildSimImage(t, cpuImage)
	p := cpuPlan(t, "BAAI/bge-small-en-v1.5")
	first := dockerLauncher(t, DockerOptions{Keep: true})
	inst, err := first.Launch(t.Context(), WithAPIKey(p, "key-one"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = inst.Release(context.WithoutCancel(t.Context())) // kept: left for the next sidecar

	again := dockerLauncher(t, DockerOptions{Project: first.opts.Project, Keep: true})
	key, err := again.KeptAPIKey(t.Context(), []plan.Plan{p})
	if err != nil || key != "key-one" {
		t.Fatalf("kept key %q, %v; want key-one", key, err)
	}
	url, err := again.Address(t.Context(), WithAPIKey(p, key))
	if err != nil || url != inst.URL {
		t.Fatalf("Address = %s, %v; want the kept container's %s", url, err, inst.URL)
	}
	adopted, err := again.Launch(t.Context(), WithAPIKey(p, key), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !adopted.Adopted || adopted.ID != inst.ID {
		t.Errorf("adopted=%t id %s, want %s adopted", adopted.Adopted, adopted.ID, inst.ID)
	}
	_ = adopted.Release(context.WithoutCancel(t.Context()))

	other := dockerLauncher(t, DockerOptions{Project: first.opts.Project})
	url, err = other.Address(t.Context(), WithAPIKey(p, "key-two"))
	if err != nil {
		t.Fatal(err)
	}
	replaced, err := other.Launch(t.Context(), WithAPIKey(p, "key-two"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer replaced.Stop(context.WithoutCancel(t.Context()))
	if replaced.Adopted || replaced.ID == inst.ID || replaced.URL != url {
		t.Errorf("adopted=%t id %s url %s: want a new container at %s", replaced.Adopted, replaced.ID, replaced.URL, url)
	}
	if st := directCall(t, replaced.URL, "key-one"); st != http.StatusUnauthorized {
		t.Errorf("the old key got %d, want 401", st)
	}
	if st := directCall(t, replaced.URL, "key-two"); st != http.StatusOK {
		t.Errorf("the new key got %d", st)
	}
	if left := projectContainers(t, other, first.opts.Project); len(left) != 1 {
		t.Errorf("%d containers, want the replacement only", len(left))
	}
}

// TestDockerAttachmentRetries is a regression test: a failed look-up of the
// sidecar's own container (the engine answering 500) was cached forever in
// a sync.Once, and an engine error was taken for "not one of this engine's
// containers". Now the cause is kept and a later call asks again.
func TestAttachmentRetries(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var inspects atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			_, _ = w.Write([]byte("OK"))
		case strings.Contains(r.URL.Path, "/containers/") && inspects.Add(1) == 1:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"message":"the engine is restarting"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"No such container"}`))
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	d, err := NewDocker(DockerOptions{InContainer: true}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	_, err = d.attachment(t.Context())
	if err == nil || !strings.Contains(err.Error(), "the engine is restarting") {
		t.Fatalf("first look-up: %v, want the engine's error", err)
	}
	att, err := d.attachment(t.Context())
	if err != nil || att.network != "" {
		t.Errorf("second look-up: %+v, %v; want it asked again (not this engine's container: loopback)", att, err)
	}
	if n := inspects.Load(); n < 2 {
		t.Errorf("%d look-ups, want the second call to ask again", n)
	}
}

// TestDockerCreatesTheModelVolume is a regression test: Docker created the
// model cache volume bare when mounting it, so a later `docker compose up`
// warned that it "already exists but was not created by Docker Compose".
// The launcher creates it itself, labelled.
func TestDockerCreatesTheModelVolume(t *testing.T) {
	dockertest.Require(t)
	name := fmt.Sprintf("teitest-models-%d", time.Now().UnixNano())
	d := dockerLauncher(t, DockerOptions{ModelCache: name})
	t.Cleanup(func() { _, _ = d.api.VolumeRemove(context.Background(), name, client.VolumeRemoveOptions{Force: true}) })
	for range 2 { // the second finds it there
		if err := d.ensureVolume(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	v, err := d.api.VolumeInspect(t.Context(), name, client.VolumeInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Volume.Labels[LabelManagedBy] != "tei-sidecar" {
		t.Errorf("labels %v", v.Volume.Labels)
	}
	if composeVolumeLabels["com.docker.compose.project"] != "tei-sidecar" || composeVolumeLabels["com.docker.compose.volume"] != "model-cache" {
		t.Errorf("the default volume's labels %v do not name compose.yaml's project and volume", composeVolumeLabels)
	}
}
