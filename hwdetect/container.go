package hwdetect

import (
	"encoding/json"
	"os"
	"strings"
)

// cgroupMarkers are words in /proc/1/cgroup that only container runtimes
// write.
var cgroupMarkers = []string{"docker", "kubepods", "containerd", "libpod", "lxc"}

// detectContainer looks for the marks container runtimes leave.
func (d *detector) detectContainer() {
	c := &d.hw.Container
	switch {
	case exists(d.path(".dockerenv")):
		c.Evidence = "/.dockerenv"
	case exists(d.path("run", ".containerenv")):
		c.Evidence = "/run/.containerenv"
	case d.p.Getenv("container") != "":
		c.Evidence = "container=" + d.p.Getenv("container") + " in the environment"
	case d.p.Getenv("KUBERNETES_SERVICE_HOST") != "":
		c.Evidence = "KUBERNETES_SERVICE_HOST in the environment"
	default:
		text := readTrim(d.path("proc", "1", "cgroup"))
		for _, m := range cgroupMarkers {
			if strings.Contains(text, m) {
				c.Evidence = "/proc/1/cgroup mentions " + m
				break
			}
		}
	}
	c.InContainer = c.Evidence != ""
}

// runtimePrograms are installed by the NVIDIA Container Toolkit.
var runtimePrograms = []string{"nvidia-container-runtime", "nvidia-container-runtime-hook", "nvidia-ctk"}

// detectNVIDIARuntime checks, cheaply and locally, whether Docker can give
// containers GPUs: the toolkit's programs on PATH, an nvidia runtime in
// /etc/docker/daemon.json, or an NVIDIA CDI spec. Inside a container the
// host's Docker cannot be seen, so a miss there is "unknown".
func (d *detector) detectNVIDIARuntime() {
	for _, prog := range runtimePrograms {
		if path, err := d.p.LookPath(prog); err == nil {
			d.hw.NVIDIARuntime = known(true, "PATH: "+path)
			return
		}
	}
	if daemonHasNVIDIA(d.path("etc", "docker", "daemon.json")) {
		d.hw.NVIDIARuntime = known(true, "/etc/docker/daemon.json runtimes")
		return
	}
	for _, spec := range []string{"etc/cdi/nvidia.yaml", "var/run/cdi/nvidia.yaml", "etc/cdi/nvidia.json", "var/run/cdi/nvidia.json"} {
		if exists(d.path(spec)) {
			d.hw.NVIDIARuntime = known(true, "CDI spec /"+spec)
			return
		}
	}
	if d.hw.Container.InContainer {
		d.hw.NVIDIARuntime = Fact[bool]{}
		if len(d.hw.GPUs) > 0 {
			d.note("inside a container the host's Docker configuration cannot be seen: NVIDIA runtime unknown")
		}
		return
	}
	d.hw.NVIDIARuntime = known(false, "not on PATH, in /etc/docker/daemon.json or /etc/cdi")
}

// daemonHasNVIDIA reports whether Docker's daemon.json names an nvidia
// runtime.
func daemonHasNVIDIA(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var cfg struct {
		Runtimes       map[string]json.RawMessage `json:"runtimes"`
		DefaultRuntime string                     `json:"default-runtime"`
	}
	if json.Unmarshal(b, &cfg) != nil {
		return false
	}
	_, ok := cfg.Runtimes["nvidia"]
	return ok || cfg.DefaultRuntime == "nvidia"
}
