package launch

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
