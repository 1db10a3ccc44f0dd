package hwdetect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jaypipes/ghw/pkg/snapshot"

	"github.com/tei-sidecar/tei-sidecar/hwdetect/hwtest"
)

// snapshots are the recorded machines, unpacked once and shared.
var snapshots *hwtest.Snapshots

func TestMain(m *testing.M) { hwtest.Main(m, filepath.Join("testdata", "snapshots"), &snapshots) }

// recorded returns a recorded snapshot's unpacked tree, shared by the tests
// that only read it.
func recorded(t *testing.T, name string) string {
	t.Helper()
	return snapshots.Recorded(t, name)
}

// unpack extracts a recorded ghw snapshot from testdata/snapshots into a
// tree of the test's own, to change.
func unpack(t *testing.T, name string) string {
	t.Helper()
	root := t.TempDir()
	if err := snapshot.UnpackInto(filepath.Join("testdata", "snapshots", name), root); err != nil {
		t.Fatalf("unpacking %s: %v", name, err)
	}
	return root
}

// noSMI is an nvidia-smi probe on a machine without it.
func noSMI(context.Context, ...string) ([]byte, error) {
	return nil, fmt.Errorf("nvidia-smi: %w", exec.ErrNotFound)
}

// standInSMI puts testdata/nvidia-smi/NAME first on PATH and returns the
// live nvidia-smi probe, which then runs the stand-in.
func standInSMI(t *testing.T, name string) func(context.Context, ...string) ([]byte, error) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "nvidia-smi", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return DefaultProbes().NvidiaSMI
}

// linuxProbes reads root as a Linux machine, with nothing else found.
func linuxProbes(root string) Probes {
	return Probes{GOOS: "linux", GOARCH: "amd64", Root: root, NvidiaSMI: noSMI}
}

func detect(t *testing.T, p Probes) Hardware {
	t.Helper()
	hw, err := Detect(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

func TestDetectRecordedSnapshots(t *testing.T) {
	tests := []struct {
		name, snapshot string
		arch           string
		cgroup         string
		wantCPU        CPU
		wantMemory     Memory
		wantGPUs       []GPU
	}{{
		name:     "this machine: 2-core AMD EPYC in a container, no GPU",
		snapshot: "linux-amd64-epyc-2core.tar.gz",
		wantCPU: CPU{
			Model:        known("AMD EPYC", SourceGHW),
			LogicalCores: known(2, SourceGHW),
			UsableCores:  known(2, SourceGHW),
			Features:     known([]string{"avx2", "avx512f"}, SourceGHW),
		},
		wantMemory: Memory{PhysicalBytes: known(int64(24)<<30, SourceGHW)},
		wantGPUs:   []GPU{},
	}, {
		name:     "ghw's P100 machine without nvidia-smi: the PCI bus and the id table",
		snapshot: "linux-amd64-p100.tar.gz",
		wantCPU: CPU{
			Model:        known("Intel(R) Xeon(R) CPU E5-2695 v4 @ 2.10GHz", SourceGHW),
			LogicalCores: known(8, SourceGHW),
			UsableCores:  known(8, SourceGHW),
			Features:     known([]string{"avx2"}, SourceGHW),
		},
		wantMemory: Memory{PhysicalBytes: known(int64(32078036992), SourceGHW)},
		wantGPUs: []GPU{{
			Index:       0,
			Name:        known("Tesla P100 PCIe 16GB", SourcePCITable),
			PCIAddress:  "0000:06:00.0",
			PCIDeviceID: known("0x15F8", SourceGHW),
			ComputeCap:  known("6.0", SourcePCITable),
			MemoryMiB:   known(int64(16384), SourcePCITable),
			Driver:      "nvidia",
		}},
	}, {
		name:     "24-core Xeon in a container limited by cgroup v2 to 2 CPUs and 8 GiB",
		snapshot: "linux-amd64-xeon-24core.tar.gz",
		cgroup:   "v2-2cpu-8g",
		wantCPU: CPU{
			Model:        known("Intel(R) Xeon(R) CPU           L5640  @ 2.27GHz", SourceGHW),
			LogicalCores: known(24, SourceGHW),
			UsableCores:  known(2, SourceCgroup),
			Features:     known([]string{}, SourceGHW),
		},
		wantMemory: Memory{
			PhysicalBytes: known(int64(66)<<30, SourceGHW),
			LimitBytes:    known(int64(8)<<30, SourceCgroup),
		},
		wantGPUs: []GPU{},
	}, {
		name:     "cgroup v1 quota of 1.5 CPUs rounds up to 2",
		snapshot: "linux-amd64-xeon-24core.tar.gz",
		cgroup:   "v1-1.5cpu-4g",
		wantCPU: CPU{
			Model:        known("Intel(R) Xeon(R) CPU           L5640  @ 2.27GHz", SourceGHW),
			LogicalCores: known(24, SourceGHW),
			UsableCores:  known(2, SourceCgroup),
			Features:     known([]string{}, SourceGHW),
		},
		wantMemory: Memory{
			PhysicalBytes: known(int64(66)<<30, SourceGHW),
			LimitBytes:    known(int64(4)<<30, SourceCgroup),
		},
		wantGPUs: []GPU{},
	}, {
		name:     "arm64 board",
		snapshot: "linux-arm64-1core.tar.gz",
		arch:     "arm64",
		wantCPU: CPU{
			LogicalCores: known(1, SourceGHW),
			UsableCores:  known(1, SourceGHW),
			Features:     known([]string{"neon"}, SourceGHW),
		},
		wantMemory: Memory{PhysicalBytes: known(int64(2)<<30, SourceGHW)},
		wantGPUs:   []GPU{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := linuxProbes(recorded(t, tt.snapshot))
			if tt.arch != "" {
				p.GOARCH = tt.arch
			}
			if tt.cgroup != "" {
				p.CgroupRoot = filepath.Join("testdata", "cgroup", tt.cgroup)
			}
			hw := detect(t, p)
			if !reflect.DeepEqual(hw.CPU, tt.wantCPU) {
				t.Errorf("CPU = %+v\nwant  %+v", hw.CPU, tt.wantCPU)
			}
			if hw.Memory != tt.wantMemory {
				t.Errorf("Memory = %+v, want %+v", hw.Memory, tt.wantMemory)
			}
			if !reflect.DeepEqual(hw.GPUs, tt.wantGPUs) {
				t.Errorf("GPUs = %+v\nwant   %+v", hw.GPUs, tt.wantGPUs)
			}
		})
	}
}

// smiGPU is a GPU as nvidia-smi reports it.
func smiGPU(index int, name, id, cc string, mib int64) GPU {
	return GPU{
		Index:       index,
		Name:        known(name, SourceNvidiaSMI),
		PCIDeviceID: known(id, SourceNvidiaSMI),
		ComputeCap:  known(cc, SourceNvidiaSMI),
		MemoryMiB:   known(mib, SourceNvidiaSMI),
	}
}

// smiGPUs are n identical GPUs as nvidia-smi reports them.
func smiGPUs(n int, name, id, cc string, mib int64) []GPU {
	gpus := make([]GPU, n)
	for i := range gpus {
		gpus[i] = smiGPU(i, name, id, cc, mib)
	}
	return gpus
}

func TestDetectStandInNvidiaSMI(t *testing.T) {
	tests := []struct {
		standIn string
		want    []GPU
	}{
		{"t4", []GPU{smiGPU(0, "Tesla T4", "0x1EB8", "7.5", 15360)}},
		{"a10g", []GPU{smiGPU(0, "NVIDIA A10G", "0x2237", "8.6", 23028)}},
		{"a100-40gb", []GPU{smiGPU(0, "NVIDIA A100-SXM4-40GB", "0x20B0", "8.0", 40960)}},
		{"a100-80gb", []GPU{smiGPU(0, "NVIDIA A100 80GB PCIe", "0x20B5", "8.0", 81920)}},
		{"l4", []GPU{smiGPU(0, "NVIDIA L4", "0x27B8", "8.9", 23034)}},
		{"l40s", []GPU{smiGPU(0, "NVIDIA L40S", "0x26B9", "8.9", 46068)}},
		{"rtx3090", []GPU{smiGPU(0, "NVIDIA GeForce RTX 3090", "0x2204", "8.6", 24576)}},
		{"rtx4090", []GPU{smiGPU(0, "NVIDIA GeForce RTX 4090", "0x2684", "8.9", 24564)}},
		{"h100", []GPU{smiGPU(0, "NVIDIA H100 80GB HBM3", "0x2330", "9.0", 81559)}},
		{"h200", []GPU{smiGPU(0, "NVIDIA H200", "0x2335", "9.0", 143771)}},
		{"b200", []GPU{smiGPU(0, "NVIDIA B200", "0x2901", "10.0", 183359)}},
		{"b300", []GPU{smiGPU(0, "NVIDIA B300 SXM6 AC", "0x3182", "10.3", 275040)}},
		{"rtx5090", []GPU{smiGPU(0, "NVIDIA GeForce RTX 5090", "0x2B85", "12.0", 32607)}},
		{"v100", []GPU{smiGPU(0, "Tesla V100-SXM2-16GB", "0x1DB1", "7.0", 16160)}},
		{"two-a100", []GPU{
			smiGPU(0, "NVIDIA A100-SXM4-80GB", "0x20B2", "8.0", 81920),
			smiGPU(1, "NVIDIA A100-SXM4-80GB", "0x20B2", "8.0", 81920),
		}},
		{"two-l4", []GPU{
			smiGPU(0, "NVIDIA L4", "0x27B8", "8.9", 23034),
			smiGPU(1, "NVIDIA L4", "0x27B8", "8.9", 23034),
		}},
		{"four-a10g", smiGPUs(4, "NVIDIA A10G", "0x2237", "8.6", 23028)},
		{"eight-h100", smiGPUs(8, "NVIDIA H100 80GB HBM3", "0x2330", "9.0", 81559)},
		{"mixed-t4-a100", []GPU{
			smiGPU(0, "Tesla T4", "0x1EB8", "7.5", 15360),
			smiGPU(1, "NVIDIA A100-SXM4-40GB", "0x20B0", "8.0", 40960),
		}},
		{"old-driver-t4", []GPU{{
			Index:       0,
			Name:        known("Tesla T4", SourceNvidiaSMI),
			PCIDeviceID: known("0x1EB8", SourceNvidiaSMI),
			ComputeCap:  known("7.5", SourcePCITable),
			MemoryMiB:   known(int64(15109), SourceNvidiaSMI),
		}}},
	}
	root := recorded(t, "linux-amd64-epyc-2core.tar.gz")
	for _, tt := range tests {
		t.Run(tt.standIn, func(t *testing.T) {
			p := linuxProbes(root)
			p.NvidiaSMI = standInSMI(t, tt.standIn)
			hw := detect(t, p)
			if !reflect.DeepEqual(hw.GPUs, tt.want) {
				t.Errorf("GPUs = %+v\nwant   %+v", hw.GPUs, tt.want)
			}
			if len(hw.Notes) != 0 {
				t.Errorf("notes = %q, want none", hw.Notes)
			}
		})
	}
}

func TestNvidiaSMIMissingBesideTheDriver(t *testing.T) {
	hw := detect(t, linuxProbes(recorded(t, "linux-amd64-p100.tar.gz")))
	want := "nvidia-smi not found although the nvidia driver is loaded (in a container, the NVIDIA runtime provides it): GPU facts come from the PCI bus and the PCI id table"
	if len(hw.Notes) != 1 || hw.Notes[0] != want {
		t.Errorf("notes = %q, want [%q]", hw.Notes, want)
	}
}

func TestNvidiaSMIFailureIsANote(t *testing.T) {
	p := linuxProbes(recorded(t, "linux-amd64-p100.tar.gz"))
	p.NvidiaSMI = standInSMI(t, "driver-failed")
	hw := detect(t, p)
	want := "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
	if len(hw.Notes) != 1 || hw.Notes[0] != want {
		t.Errorf("notes = %q, want [%q]", hw.Notes, want)
	}
	// The PCI bus still shows the P100.
	if len(hw.GPUs) != 1 || hw.GPUs[0].ComputeCap.Value != "6.0" {
		t.Errorf("GPUs = %+v, want the P100 from the PCI bus", hw.GPUs)
	}
}

// addPCIDevice adds an NVIDIA device to an unpacked snapshot's PCI bus, as
// a plain directory (ghw reads the files, not the symlinks).
func addPCIDevice(t *testing.T, root, addr string, device uint16, class string) {
	t.Helper()
	dir := filepath.Join(root, "sys", "bus", "pci", "devices", addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"vendor":   "0x10de",
		"device":   fmt.Sprintf("0x%04x", device),
		"class":    "0x" + class + "00",
		"modalias": fmt.Sprintf("pci:v000010DEd0000%04Xsv000010DEsd00001234bc%ssc%si00", device, class[:2], class[2:]),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPCIBusWithoutNvidiaSMI(t *testing.T) {
	root := unpack(t, "linux-amd64-epyc-2core.tar.gz")
	addPCIDevice(t, root, "0000:41:00.0", 0x20B5, "0302") // A100 80GB PCIe, a 3D controller
	addPCIDevice(t, root, "0000:81:00.0", 0x2BFF, "0300") // an id the table does not know
	addPCIDevice(t, root, "0000:81:00.1", 0x22E8, "0403") // the audio function of a GPU: not a GPU
	hw := detect(t, linuxProbes(root))
	want := []GPU{{
		Index:       0,
		Name:        known("A100 80GB PCIe", SourcePCITable),
		PCIAddress:  "0000:41:00.0",
		PCIDeviceID: known("0x20B5", SourceGHW),
		ComputeCap:  known("8.0", SourcePCITable),
		MemoryMiB:   known(int64(81920), SourcePCITable),
	}, {
		Index:       1,
		Name:        known("NVIDIA GPU 0x2BFF", SourcePCITable),
		PCIAddress:  "0000:81:00.0",
		PCIDeviceID: known("0x2BFF", SourceGHW),
	}}
	if !reflect.DeepEqual(hw.GPUs, want) {
		t.Errorf("GPUs = %+v\nwant   %+v", hw.GPUs, want)
	}
	wantNote := "nvidia-smi not found: GPU facts come from the PCI bus and the PCI id table; install the NVIDIA driver"
	if len(hw.Notes) != 1 || hw.Notes[0] != wantNote {
		t.Errorf("notes = %q, want [%q]", hw.Notes, wantNote)
	}
}

// TestNeverFetchesPCIIDs: with no pci.ids under the root, the database is
// empty rather than fetched, even when pcidb is told by its environment to
// fetch (and any fetch would fail through the dead proxy).
func TestNeverFetchesPCIIDs(t *testing.T) {
	t.Setenv("PCIDB_ENABLE_NETWORK_FETCH", "1")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HOME", t.TempDir())
	root := recorded(t, "linux-amd64-p100.tar.gz")
	d := &detector{p: linuxProbes(root).withDefaults(), hw: &Hardware{}}
	if db := d.pciDB(); len(db.Vendors) != 0 || len(db.Products) != 0 {
		t.Errorf("pciDB() has %d vendors, want an empty database", len(db.Vendors))
	}
}

func TestPCIIDsFileNamesDevices(t *testing.T) {
	root := unpack(t, "linux-amd64-epyc-2core.tar.gz")
	addPCIDevice(t, root, "0000:81:00.0", 0x2BFF, "0300")
	ids := filepath.Join(root, "usr", "share", "hwdata")
	if err := os.MkdirAll(ids, 0o755); err != nil {
		t.Fatal(err)
	}
	db := "10de  NVIDIA Corporation\n\t2bff  GB202 [Test Board]\n"
	if err := os.WriteFile(filepath.Join(ids, "pci.ids"), []byte(db), 0o644); err != nil {
		t.Fatal(err)
	}
	hw := detect(t, linuxProbes(root))
	if len(hw.GPUs) != 1 || hw.GPUs[0].Name != known("GB202 [Test Board]", SourcePCIIDs) {
		t.Errorf("GPUs = %+v, want one named from pci.ids", hw.GPUs)
	}
}

func TestComputeCapOverride(t *testing.T) {
	root := recorded(t, "linux-amd64-epyc-2core.tar.gz")
	tests := []struct {
		env      string
		wantCC   Fact[string]
		wantNote string
	}{
		{"8.7", known("8.7", SourceOverride), ""},
		{"sm_87", known("8.6", SourceNvidiaSMI), `GPU_COMPUTE_CAP="sm_87" ignored: it must look like 8.6`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			p := linuxProbes(root)
			p.NvidiaSMI = standInSMI(t, "a10g")
			p.Getenv = func(k string) string {
				if k == "GPU_COMPUTE_CAP" {
					return tt.env
				}
				return ""
			}
			hw := detect(t, p)
			if got := hw.GPUs[0].ComputeCap; got != tt.wantCC {
				t.Errorf("ComputeCap = %+v, want %+v", got, tt.wantCC)
			}
			if got := strings.Join(hw.Notes, "\n"); got != tt.wantNote {
				t.Errorf("notes = %q, want %q", got, tt.wantNote)
			}
		})
	}
}

// sysctls answers sysctl names from a map.
func sysctls(values map[string]string) func(context.Context, string) (string, error) {
	return func(_ context.Context, name string) (string, error) {
		if v, ok := values[name]; ok {
			return v, nil
		}
		return "", errors.New("sysctl: unknown oid '" + name + "'")
	}
}

func TestDetectDarwin(t *testing.T) {
	m1 := map[string]string{
		"machdep.cpu.brand_string":  "Apple M1",
		"hw.memsize":                "17179869184",
		"hw.logicalcpu":             "8",
		"hw.perflevel0.physicalcpu": "4",
		"hw.perflevel1.physicalcpu": "4",
		"hw.optional.arm64":         "1",
	}
	rosetta := map[string]string{"sysctl.proc_translated": "1"}
	for k, v := range m1 {
		rosetta[k] = v
	}
	tests := []struct {
		name      string
		arch      string
		sysctl    map[string]string
		wantApple *Apple
		wantArch  string
		wantCPU   CPU
	}{{
		name: "M1 16GB", arch: "arm64", sysctl: m1, wantArch: "arm64",
		wantApple: &Apple{
			Chip:               known("Apple M1", SourceSysctl),
			UnifiedMemoryBytes: known(int64(16)<<30, SourceSysctl),
			PerformanceCores:   known(4, SourceSysctl),
			EfficiencyCores:    known(4, SourceSysctl),
		},
		wantCPU: CPU{
			Model:        known("Apple M1", SourceSysctl),
			LogicalCores: known(8, SourceSysctl),
			UsableCores:  known(8, SourceSysctl),
			Features:     known([]string{"neon"}, SourceSysctl),
		},
	}, {
		name: "amd64 build under Rosetta on an M1", arch: "amd64", sysctl: rosetta, wantArch: "arm64",
		wantApple: &Apple{
			Chip:               known("Apple M1", SourceSysctl),
			UnifiedMemoryBytes: known(int64(16)<<30, SourceSysctl),
			PerformanceCores:   known(4, SourceSysctl),
			EfficiencyCores:    known(4, SourceSysctl),
			Rosetta:            true,
		},
		wantCPU: CPU{
			Model:        known("Apple M1", SourceSysctl),
			LogicalCores: known(8, SourceSysctl),
			UsableCores:  known(8, SourceSysctl),
			Features:     known([]string{"neon"}, SourceSysctl),
		},
	}, {
		name: "Intel Mac", arch: "amd64", wantArch: "amd64",
		sysctl: map[string]string{
			"machdep.cpu.brand_string":   "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz",
			"hw.memsize":                 "34359738368",
			"hw.ncpu":                    "16",
			"machdep.cpu.leaf7_features": "RDWRFSGS TSC_THREAD_OFFSET SGX BMI1 AVX2 SMEP BMI2",
		},
		wantCPU: CPU{
			Model:        known("Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz", SourceSysctl),
			LogicalCores: known(16, SourceSysctl),
			UsableCores:  known(16, SourceSysctl),
			Features:     known([]string{"avx2"}, SourceSysctl),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			hw := detect(t, Probes{
				GOOS: "darwin", GOARCH: tt.arch, Root: t.TempDir(),
				Sysctl: sysctls(tt.sysctl),
				NvidiaSMI: func(context.Context, ...string) ([]byte, error) {
					called = true
					return nil, exec.ErrNotFound
				},
			})
			if !reflect.DeepEqual(hw.Apple, tt.wantApple) {
				t.Errorf("Apple = %+v, want %+v", hw.Apple, tt.wantApple)
			}
			if !reflect.DeepEqual(hw.CPU, tt.wantCPU) {
				t.Errorf("CPU = %+v, want %+v", hw.CPU, tt.wantCPU)
			}
			if hw.Arch != tt.wantArch {
				t.Errorf("Arch = %s, want %s", hw.Arch, tt.wantArch)
			}
			if called {
				t.Error("nvidia-smi was run on macOS")
			}
			if len(hw.GPUs) != 0 {
				t.Errorf("GPUs = %+v, want none", hw.GPUs)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestContainerAndNVIDIARuntime(t *testing.T) {
	tests := []struct {
		name          string
		files         map[string]string
		env           map[string]string
		onPath        string
		gpus          string
		wantContainer Container
		wantRuntime   Fact[bool]
	}{{
		name:        "bare host with nothing installed",
		wantRuntime: known(false, "not on PATH, in /etc/docker/daemon.json or /etc/cdi"),
	}, {
		name:          "docker container: the host cannot be seen",
		files:         map[string]string{".dockerenv": ""},
		gpus:          "t4",
		wantContainer: Container{InContainer: true, Evidence: "/.dockerenv"},
	}, {
		name:          "podman",
		env:           map[string]string{"container": "podman"},
		wantContainer: Container{InContainer: true, Evidence: "container=podman in the environment"},
	}, {
		name:          "kubernetes pod seen through /proc/1/cgroup",
		files:         map[string]string{"proc/1/cgroup": "0::/kubepods/burstable/pod1234/abcd\n"},
		wantContainer: Container{InContainer: true, Evidence: "/proc/1/cgroup mentions kubepods"},
	}, {
		name:        "toolkit on PATH",
		onPath:      "nvidia-container-runtime",
		wantRuntime: known(true, "PATH: /usr/bin/nvidia-container-runtime"),
	}, {
		name:        "nvidia runtime in daemon.json",
		files:       map[string]string{"etc/docker/daemon.json": `{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}`},
		wantRuntime: known(true, "/etc/docker/daemon.json runtimes"),
	}, {
		name:        "CDI spec",
		files:       map[string]string{"etc/cdi/nvidia.yaml": "cdiVersion: 0.5.0\n"},
		wantRuntime: known(true, "CDI spec /etc/cdi/nvidia.yaml"),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				writeFile(t, filepath.Join(root, name), content)
			}
			p := linuxProbes(root)
			p.Getenv = func(k string) string { return tt.env[k] }
			p.LookPath = func(file string) (string, error) {
				if file == tt.onPath {
					return "/usr/bin/" + file, nil
				}
				return "", exec.ErrNotFound
			}
			if tt.gpus != "" {
				p.NvidiaSMI = standInSMI(t, tt.gpus)
			}
			hw := detect(t, p)
			if hw.Container != tt.wantContainer {
				t.Errorf("Container = %+v, want %+v", hw.Container, tt.wantContainer)
			}
			if hw.NVIDIARuntime != tt.wantRuntime {
				t.Errorf("NVIDIARuntime = %+v, want %+v", hw.NVIDIARuntime, tt.wantRuntime)
			}
		})
	}
}

// TestCgroupAncestorsLimit: without a cgroup namespace, /proc/self/cgroup
// names a nested cgroup, and a parent's lower limit still applies.
func TestCgroupAncestorsLimit(t *testing.T) {
	root := t.TempDir()
	cg := filepath.Join(root, "sys", "fs", "cgroup")
	writeFile(t, filepath.Join(cg, "cgroup.controllers"), "cpu memory\n")
	writeFile(t, filepath.Join(cg, "cpu.max"), "max 100000\n")
	writeFile(t, filepath.Join(cg, "system.slice", "memory.max"), "4294967296\n")
	writeFile(t, filepath.Join(cg, "system.slice", "cpu.max"), "400000 100000\n")
	writeFile(t, filepath.Join(cg, "system.slice", "app.service", "memory.max"), "max\n")
	writeFile(t, filepath.Join(cg, "system.slice", "app.service", "cpu.max"), "300000 100000\n")
	writeFile(t, filepath.Join(root, "proc", "self", "cgroup"), "0::/system.slice/app.service\n")

	d := &detector{p: Probes{Root: root, CgroupRoot: cg}.withDefaults(), hw: &Hardware{}}
	d.hw.CPU.UsableCores = known(16, SourceGHW)
	d.detectCgroup()
	if got, want := d.hw.CPU.UsableCores, known(3, SourceCgroup); got != want {
		t.Errorf("UsableCores = %+v, want %+v", got, want)
	}
	if got, want := d.hw.Memory.LimitBytes, known(int64(4)<<30, SourceCgroup); got != want {
		t.Errorf("LimitBytes = %+v, want %+v", got, want)
	}
}

func TestAffinityLowersUsableCores(t *testing.T) {
	p := linuxProbes(recorded(t, "linux-amd64-xeon-24core.tar.gz"))
	p.AffinityCPUs = func() int { return 6 }
	hw := detect(t, p)
	if got, want := hw.CPU.UsableCores, known(6, SourceAffinity); got != want {
		t.Errorf("UsableCores = %+v, want %+v", got, want)
	}
}

func TestDetectHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Detect(ctx, linuxProbes(t.TempDir())); !errors.Is(err, context.Canceled) {
		t.Errorf("Detect = %v, want context.Canceled", err)
	}
}

func TestMemoryUsableBytes(t *testing.T) {
	tests := []struct {
		m    Memory
		want int64
	}{
		{Memory{}, 0},
		{Memory{PhysicalBytes: known(int64(64), SourceGHW)}, 64},
		{Memory{PhysicalBytes: known(int64(64), SourceGHW), LimitBytes: known(int64(8), SourceCgroup)}, 8},
		{Memory{PhysicalBytes: known(int64(8), SourceGHW), LimitBytes: known(int64(64), SourceCgroup)}, 8},
		{Memory{LimitBytes: known(int64(8), SourceCgroup)}, 8},
	}
	for _, tt := range tests {
		if got := tt.m.UsableBytes(); got != tt.want {
			t.Errorf("%+v.UsableBytes() = %d, want %d", tt.m, got, tt.want)
		}
	}
}
