// Package hwdetect finds out what a machine offers TEI: CPU cores and
// features, memory, NVIDIA GPUs with their compute capability, Apple Silicon,
// containers and Docker's NVIDIA runtime. Every fact records where it came
// from, so a report can say why a plan was chosen.
//
// Detection reads the machine through Probes, so tests can replay recorded
// machines: a ghw snapshot tree, a stand-in nvidia-smi, a fake cgroup tree and
// fake sysctl answers. It never touches the network.
package hwdetect

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Sources name where a fact came from.
const (
	SourceGHW       = "ghw"          // /proc and /sys, read by github.com/jaypipes/ghw
	SourcePCIIDs    = "pci.ids"      // the PCI ID database's product name
	SourceSysctl    = "sysctl"       // macOS sysctl
	SourceCgroup    = "cgroup"       // cgroup v1 or v2 limits
	SourceAffinity  = "affinity"     // the process's CPU affinity mask
	SourceNvidiaSMI = "nvidia-smi"   // nvidia-smi --query-gpu
	SourcePCITable  = "pci-id-table" // this package's table of NVIDIA device ids
	SourceOverride  = "override"     // GPU_COMPUTE_CAP in the environment
	SourceRuntime   = "go-runtime"   // the Go runtime's GOOS and GOARCH
)

// Fact is one detected value and where it came from. An empty Source means
// the value is unknown.
type Fact[T any] struct {
	Value  T      `json:"value"`
	Source string `json:"source,omitempty"`
}

// Known reports whether the fact was found.
func (f Fact[T]) Known() bool { return f.Source != "" }

func known[T any](v T, source string) Fact[T] { return Fact[T]{Value: v, Source: source} }

// Hardware is what Detect found.
type Hardware struct {
	// OS and Arch are Go's names (linux, darwin; amd64, arm64). Under
	// Rosetta on Apple Silicon, Arch is arm64 and Apple.Rosetta is true.
	OS     string `json:"os"`
	Arch   string `json:"arch"`
	CPU    CPU    `json:"cpu"`
	Memory Memory `json:"memory"`
	// GPUs are the NVIDIA GPUs, ordered by index (nvidia-smi's index, which
	// is PCI bus order and what `docker run --gpus device=N` means).
	GPUs []GPU `json:"gpus"`
	// Apple is set on Apple Silicon.
	Apple     *Apple    `json:"apple,omitempty"`
	Container Container `json:"container"`
	// NVIDIARuntime says whether Docker can hand GPUs to containers. Its
	// Source names where it was found or, when absent, where we looked; an
	// empty Source means it could not be checked (inside a container).
	NVIDIARuntime Fact[bool] `json:"nvidia_runtime"`
	// Notes are things detection could not learn, in words for a report.
	Notes []string `json:"notes,omitempty"`
}

// CPU describes the processors TEI's tokenizers and CPU backend run on.
type CPU struct {
	Model Fact[string] `json:"model"`
	// LogicalCores counts hardware threads on the machine.
	LogicalCores Fact[int] `json:"logical_cores"`
	// UsableCores is what this process may use: the logical cores, lowered
	// by the CPU affinity mask and the cgroup CPU quota (rounded up).
	UsableCores Fact[int] `json:"usable_cores"`
	// Features lists the instruction-set features that matter to TEI's CPU
	// backends and are present: avx2, avx512f, amx (x86); neon, sve (arm64).
	Features Fact[[]string] `json:"features"`
}

// HasFeature reports whether the named feature (as in Features) is present.
func (c CPU) HasFeature(name string) bool {
	for _, f := range c.Features.Value {
		if f == name {
			return true
		}
	}
	return false
}

// Memory describes main memory.
type Memory struct {
	// PhysicalBytes is the machine's memory (unified memory on Apple).
	PhysicalBytes Fact[int64] `json:"physical_bytes"`
	// LimitBytes is the cgroup memory limit; unknown when there is none.
	LimitBytes Fact[int64] `json:"limit_bytes"`
}

// UsableBytes is the memory this process may use: the cgroup limit when it
// is lower than physical memory. It is 0 when neither is known.
func (m Memory) UsableBytes() int64 {
	if m.LimitBytes.Known() && (!m.PhysicalBytes.Known() || m.LimitBytes.Value < m.PhysicalBytes.Value) {
		return m.LimitBytes.Value
	}
	return m.PhysicalBytes.Value
}

// GPU is one NVIDIA GPU.
type GPU struct {
	// Index is the GPU's NVML index, as nvidia-smi and Docker number GPUs.
	Index int          `json:"index"`
	Name  Fact[string] `json:"name"`
	// PCIAddress is the bus address (0000:01:00.0) when ghw saw the device.
	PCIAddress string `json:"pci_address,omitempty"`
	// PCIDeviceID is the 16-bit PCI device id in upper-case hex, "0x20B0".
	PCIDeviceID Fact[string] `json:"pci_device_id"`
	// ComputeCap is "MAJOR.MINOR", e.g. "8.6".
	ComputeCap Fact[string] `json:"compute_cap"`
	MemoryMiB  Fact[int64]  `json:"memory_mib"`
	// Driver is the kernel driver bound to the device ("nvidia"), when ghw
	// saw the device.
	Driver string `json:"driver,omitempty"`
}

// Apple describes Apple Silicon.
type Apple struct {
	Chip Fact[string] `json:"chip"`
	// UnifiedMemoryBytes is shared by CPU and GPU (Metal).
	UnifiedMemoryBytes Fact[int64] `json:"unified_memory_bytes"`
	PerformanceCores   Fact[int]   `json:"performance_cores"`
	EfficiencyCores    Fact[int]   `json:"efficiency_cores"`
	// Rosetta is true when this (amd64) process runs translated.
	Rosetta bool `json:"rosetta,omitempty"`
}

// Container says whether this process runs in a container.
type Container struct {
	InContainer bool `json:"in_container"`
	// Evidence names what gave it away (/.dockerenv, ...).
	Evidence string `json:"evidence,omitempty"`
}

// Probes are the ways Detect reads the machine. DefaultProbes reads the live
// machine; tests replace each one. A nil function skips that probe.
type Probes struct {
	// GOOS and GOARCH choose the platform's code path.
	GOOS, GOARCH string
	// Root is the file-system root that ghw and the container and Docker
	// checks read ("/" live; an unpacked ghw snapshot in tests).
	Root string
	// CgroupRoot is where the cgroup file system is mounted
	// (/sys/fs/cgroup); empty skips cgroup limits.
	CgroupRoot string
	// NvidiaSMI runs nvidia-smi with args and returns its standard output.
	// An error wrapping exec.ErrNotFound means it is not installed.
	NvidiaSMI func(ctx context.Context, args ...string) ([]byte, error)
	// Sysctl returns the value of a macOS sysctl name.
	Sysctl func(ctx context.Context, name string) (string, error)
	// Getenv reads an environment variable (GPU_COMPUTE_CAP, container).
	Getenv func(key string) string
	// LookPath finds a program on PATH, like exec.LookPath.
	LookPath func(file string) (string, error)
	// AffinityCPUs returns how many CPUs the affinity mask allows.
	AffinityCPUs func() int
	// Log receives ghw's warnings and detection details at debug level;
	// nil discards them.
	Log *slog.Logger
}

// commandTimeout bounds each external command (nvidia-smi, sysctl): a hung
// driver must not hang detection.
const commandTimeout = 10 * time.Second

// DefaultProbes reads the live machine.
func DefaultProbes() Probes {
	return Probes{
		GOOS:         runtime.GOOS,
		GOARCH:       runtime.GOARCH,
		Root:         "/",
		CgroupRoot:   "/sys/fs/cgroup",
		NvidiaSMI:    runNvidiaSMI,
		Sysctl:       runSysctl,
		Getenv:       os.Getenv,
		LookPath:     exec.LookPath,
		AffinityCPUs: runtime.NumCPU,
	}
}

// runNvidiaSMI looks nvidia-smi up on PATH at each call, so a PATH set after
// start-up (or by a test) is honoured.
func runNvidiaSMI(ctx context.Context, args ...string) ([]byte, error) {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return exec.CommandContext(ctx, path, args...).Output()
}

func runSysctl(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sysctl", "-n", name).Output()
	return strings.TrimSpace(string(out)), err
}

// Detect reads the machine through p. Partial failures become Notes; the
// only error is the context's.
func Detect(ctx context.Context, p Probes) (Hardware, error) {
	p = p.withDefaults()
	hw := Hardware{OS: p.GOOS, Arch: p.GOARCH}
	d := &detector{p: p, hw: &hw}

	switch p.GOOS {
	case "darwin":
		d.detectDarwin(ctx)
	default:
		d.detectCPU()
		d.detectMemory()
		if p.GOOS == "linux" {
			d.detectCgroup()
		}
	}
	d.detectAffinity()
	if err := ctx.Err(); err != nil {
		return Hardware{}, err
	}
	if p.GOOS != "darwin" {
		d.detectGPUs(ctx)
	}
	if p.GOOS == "linux" {
		d.detectContainer()
		d.detectNVIDIARuntime()
	}
	if err := ctx.Err(); err != nil {
		return Hardware{}, err
	}
	if hw.GPUs == nil {
		hw.GPUs = []GPU{} // "gpus": [] in JSON, not null
	}
	return hw, nil
}

func (p Probes) withDefaults() Probes {
	if p.GOOS == "" {
		p.GOOS = runtime.GOOS
	}
	if p.GOARCH == "" {
		p.GOARCH = runtime.GOARCH
	}
	if p.Root == "" {
		p.Root = "/"
	}
	if p.Getenv == nil {
		p.Getenv = func(string) string { return "" }
	}
	if p.LookPath == nil {
		p.LookPath = func(file string) (string, error) { return "", exec.ErrNotFound }
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	return p
}

// detector carries one Detect call's probes and result.
type detector struct {
	p  Probes
	hw *Hardware
}

func (d *detector) note(format string, args ...any) {
	d.hw.Notes = append(d.hw.Notes, fmt.Sprintf(format, args...))
}

// path joins a live-system path onto the probes' root.
func (d *detector) path(elem ...string) string {
	return filepath.Join(append([]string{d.p.Root}, elem...)...)
}
