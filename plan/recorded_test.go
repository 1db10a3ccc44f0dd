package plan_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/hwdetect/hwtest"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// The recorded machines live with the detector that reads them.
const machines = "../hwdetect/testdata"

// snapshots are the recorded machines, unpacked once and shared.
var snapshots *hwtest.Snapshots

func TestMain(m *testing.M) { hwtest.Main(m, filepath.Join(machines, "snapshots"), &snapshots) }

// recorded returns a recorded snapshot's unpacked tree, shared by the tests
// that only read it.
func recorded(t *testing.T, name string) string {
	t.Helper()
	return snapshots.Recorded(t, name)
}

// copyTree copies a recorded tree so a test may add devices to it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// addNvidiaDevice puts an NVIDIA 3D controller with a PCI device id on a
// tree's PCI bus.
func addNvidiaDevice(t *testing.T, root, addr string, device uint16) {
	t.Helper()
	dir := filepath.Join(root, "sys", "bus", "pci", "devices", addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	modalias := fmt.Sprintf("pci:v000010DEd0000%04Xsv000010DEsd00001234bc03sc02i00\n", device)
	if err := os.WriteFile(filepath.Join(dir, "modalias"), []byte(modalias), 0o644); err != nil {
		t.Fatal(err)
	}
}

// machine describes a recorded machine for Detect.
type machine struct {
	snapshot string
	arch     string
	smi      string   // stand-in under testdata/nvidia-smi; empty: none
	cgroup   string   // tree under testdata/cgroup
	pci      []uint16 // NVIDIA device ids added to the PCI bus
	sysctl   map[string]string
}

func (mc machine) detect(t *testing.T) hwdetect.Hardware {
	t.Helper()
	p := hwdetect.Probes{
		GOOS: "linux", GOARCH: "amd64",
		NvidiaSMI: func(context.Context, ...string) ([]byte, error) { return nil, exec.ErrNotFound },
	}
	if mc.arch != "" {
		p.GOARCH = mc.arch
	}
	if mc.sysctl != nil {
		p.GOOS = "darwin"
		p.Root = t.TempDir()
		p.Sysctl = func(_ context.Context, name string) (string, error) {
			if v, ok := mc.sysctl[name]; ok {
				return v, nil
			}
			return "", fmt.Errorf("unknown oid %s", name)
		}
	} else {
		p.Root = recorded(t, mc.snapshot)
	}
	if len(mc.pci) > 0 {
		p.Root = copyTree(t, p.Root)
		for i, id := range mc.pci {
			addNvidiaDevice(t, p.Root, fmt.Sprintf("0000:%02x:00.0", 0x41+i), id)
		}
	}
	if mc.cgroup != "" {
		p.CgroupRoot = filepath.Join(machines, "cgroup", mc.cgroup)
	}
	if mc.smi != "" {
		dir, err := filepath.Abs(filepath.Join(machines, "nvidia-smi", mc.smi))
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		p.NvidiaSMI = hwdetect.DefaultProbes().NvidiaSMI
	}
	hw, err := hwdetect.Detect(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

// want is what a plan must say, exactly.
type want struct {
	image          string // tag after the registry; "native" for the binary
	dtype          string
	maxBatchTokens int
	clientBatch    int
	gpus           []int
}

func (w want) check(t *testing.T, p plan.Plan) {
	t.Helper()
	image := strings.TrimPrefix(p.Image, plan.Registry+":")
	if p.Backend == plan.BackendNative {
		image = "native"
		if p.Binary != plan.Binary || p.Image != "" {
			t.Errorf("%s: native plan runs %q with image %q", p.Role, p.Binary, p.Image)
		}
	} else if !strings.HasPrefix(p.Image, plan.Registry+":") {
		t.Errorf("%s: image %q is not a full reference", p.Role, p.Image)
	}
	got := want{image, p.DType, p.MaxBatchTokens, p.MaxClientBatchSize, p.GPUIDs}
	if got.image != w.image || got.dtype != w.dtype || got.maxBatchTokens != w.maxBatchTokens ||
		got.clientBatch != w.clientBatch || !slices.Equal(got.gpus, w.gpus) {
		t.Errorf("%s plan = %+v\n%*s want %+v", p.Role, got, len(p.Role)-4, "", w)
	}
}

var (
	m1 = map[string]string{
		"machdep.cpu.brand_string": "Apple M1", "hw.memsize": "17179869184", "hw.logicalcpu": "8",
		"hw.perflevel0.physicalcpu": "4", "hw.perflevel1.physicalcpu": "4", "hw.optional.arm64": "1",
	}
	m3Max = map[string]string{
		"machdep.cpu.brand_string": "Apple M3 Max", "hw.memsize": "51539607552", "hw.logicalcpu": "16",
		"hw.perflevel0.physicalcpu": "12", "hw.perflevel1.physicalcpu": "4", "hw.optional.arm64": "1",
	}
)

const epyc = "linux-amd64-epyc-2core.tar.gz"

// TestRecordedMachines plans BAAI/bge-m3 with BAAI/bge-reranker-v2-m3, at
// default settings, on every recorded machine: each row of TEI's image
// table, CPUs, containers and Apple Silicon.
func TestRecordedMachines(t *testing.T) {
	tests := []struct {
		name     string
		machine  machine
		settings plan.Settings
		emb, rer want
		warn     string // a plan warning that must appear
	}{{
		name:    "x86-64 CPU (this machine)",
		machine: machine{snapshot: epyc},
		emb:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
		rer:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
	}, {
		name:    "arm64 CPU: the tag that exists",
		machine: machine{snapshot: "linux-arm64-1core.tar.gz", arch: "arm64"},
		emb:     want{"cpu-arm64-latest", "float32", 4096, 16, []int{}},
		rer:     want{"cpu-arm64-latest", "float32", 4096, 16, []int{}},
		warn:    "may not even hold BAAI/bge-m3's weights",
	}, {
		name:    "container limited by cgroup v2 to 2 CPUs and 8 GiB",
		machine: machine{snapshot: "linux-amd64-xeon-24core.tar.gz", cgroup: "v2-2cpu-8g"},
		emb:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
		rer:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
		warn:    "memory is tight",
	}, {
		name:    "Pascal P100 (recorded by ghw): too old, CPU",
		machine: machine{snapshot: "linux-amd64-p100.tar.gz"},
		emb:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
		rer:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
	}, {
		name:    "Volta V100 (7.0): too old, CPU",
		machine: machine{snapshot: epyc, smi: "v100"},
		emb:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
		rer:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
	}, {
		name:    "Turing T4 (7.5): no flash attention, sized to 8192",
		machine: machine{snapshot: epyc, smi: "t4"},
		emb:     want{"turing-1.9.3", "float16", 8192, 64, []int{0}},
		rer:     want{"turing-1.9.3", "float16", 8192, 64, []int{0}},
		warn:    "experimental",
	}, {
		name:    "A10G (8.6)",
		machine: machine{snapshot: epyc, smi: "a10g"},
		emb:     want{"86-1.9.3", "float16", 16384, 64, []int{0}},
		rer:     want{"86-1.9.3", "float16", 16384, 64, []int{0}},
	}, {
		name:    "A100 40GB (8.0)",
		machine: machine{snapshot: epyc, smi: "a100-40gb"},
		emb:     want{"1.9.3", "float16", 32768, 64, []int{0}},
		rer:     want{"1.9.3", "float16", 32768, 64, []int{0}},
	}, {
		name:    "A100 80GB (8.0)",
		machine: machine{snapshot: epyc, smi: "a100-80gb"},
		emb:     want{"1.9.3", "float16", 65536, 64, []int{0}},
		rer:     want{"1.9.3", "float16", 65536, 64, []int{0}},
	}, {
		name:    "L4 (8.9)",
		machine: machine{snapshot: epyc, smi: "l4"},
		emb:     want{"89-1.9.3", "float16", 16384, 64, []int{0}},
		rer:     want{"89-1.9.3", "float16", 16384, 64, []int{0}},
	}, {
		name:    "L40S (8.9)",
		machine: machine{snapshot: epyc, smi: "l40s"},
		emb:     want{"89-1.9.3", "float16", 32768, 64, []int{0}},
		rer:     want{"89-1.9.3", "float16", 32768, 64, []int{0}},
	}, {
		name:    "RTX 3090 (8.6)",
		machine: machine{snapshot: epyc, smi: "rtx3090"},
		emb:     want{"86-1.9.3", "float16", 16384, 64, []int{0}},
		rer:     want{"86-1.9.3", "float16", 16384, 64, []int{0}},
	}, {
		name:    "RTX 4090 (8.9)",
		machine: machine{snapshot: epyc, smi: "rtx4090"},
		emb:     want{"89-1.9.3", "float16", 16384, 64, []int{0}},
		rer:     want{"89-1.9.3", "float16", 16384, 64, []int{0}},
	}, {
		name:    "H100 (9.0)",
		machine: machine{snapshot: epyc, smi: "h100"},
		emb:     want{"hopper-1.9.3", "float16", 65536, 64, []int{0}},
		rer:     want{"hopper-1.9.3", "float16", 65536, 64, []int{0}},
	}, {
		name:    "H200 (9.0)",
		machine: machine{snapshot: epyc, smi: "h200"},
		emb:     want{"hopper-1.9.3", "float16", 65536, 64, []int{0}},
		rer:     want{"hopper-1.9.3", "float16", 65536, 64, []int{0}},
	}, {
		name:    "B200 (10.0)",
		machine: machine{snapshot: epyc, smi: "b200"},
		emb:     want{"100-1.9.3", "float16", 65536, 64, []int{0}},
		rer:     want{"100-1.9.3", "float16", 65536, 64, []int{0}},
		warn:    "experimental",
	}, {
		name:    "B300 (10.3): no build runs on it, CPU",
		machine: machine{snapshot: epyc, smi: "b300"},
		emb:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
		rer:     want{"cpu-1.9.3", "float32", 4096, 16, []int{}},
	}, {
		name:    "RTX 5090 (12.0)",
		machine: machine{snapshot: epyc, smi: "rtx5090"},
		emb:     want{"120-1.9.3", "float16", 16384, 64, []int{0}},
		rer:     want{"120-1.9.3", "float16", 16384, 64, []int{0}},
	}, {
		name:     "compute capability 8.7 (GPU_COMPUTE_CAP): the 8.6 build",
		machine:  machine{snapshot: epyc, smi: "a10g"},
		settings: plan.Settings{ComputeCap: "8.7"},
		emb:      want{"86-1.9.3", "float16", 16384, 64, []int{0}},
		rer:      want{"86-1.9.3", "float16", 16384, 64, []int{0}},
	}, {
		name:    "two A100s: embedding on GPU 0, reranker on GPU 1",
		machine: machine{snapshot: epyc, smi: "two-a100"},
		emb:     want{"1.9.3", "float16", 65536, 64, []int{0}},
		rer:     want{"1.9.3", "float16", 65536, 64, []int{1}},
	}, {
		name:    "T4 at 0 and A100 at 1: embedding on the A100, reranker on the T4",
		machine: machine{snapshot: epyc, smi: "mixed-t4-a100"},
		emb:     want{"1.9.3", "float16", 65536, 64, []int{1}},
		rer:     want{"turing-1.9.3", "float16", 16384, 64, []int{0}},
	}, {
		name:    "A100 80GB on the PCI bus, no nvidia-smi: the id table",
		machine: machine{snapshot: epyc, pci: []uint16{0x20B5}},
		emb:     want{"1.9.3", "float16", 65536, 64, []int{0}},
		rer:     want{"1.9.3", "float16", 65536, 64, []int{0}},
	}, {
		name:    "unknown NVIDIA GPU: the all-in-one image",
		machine: machine{snapshot: epyc, pci: []uint16{0x2BFF}},
		emb:     want{"cuda-1.9.3", "float16", 16384, 64, []int{0}},
		rer:     want{"cuda-1.9.3", "float16", 16384, 64, []int{0}},
		warn:    "compute capability is unknown",
	}, {
		name:    "GH200 on arm64: no arm64 CUDA image, CPU",
		machine: machine{snapshot: "linux-arm64-1core.tar.gz", arch: "arm64", smi: "gh200"},
		emb:     want{"cpu-arm64-latest", "float32", 4096, 16, []int{}},
		rer:     want{"cpu-arm64-latest", "float32", 4096, 16, []int{}},
	}, {
		name:    "Apple M1 16GB: native Metal, tight memory",
		machine: machine{sysctl: m1, arch: "arm64"},
		emb:     want{"native", "float16", 8192, 32, []int{}},
		rer:     want{"native", "float16", 8192, 32, []int{}},
		warn:    "memory is tight",
	}, {
		name:    "Apple M3 Max 48GB: native Metal",
		machine: machine{sysctl: m3Max, arch: "arm64"},
		emb:     want{"native", "float16", 16384, 32, []int{}},
		rer:     want{"native", "float16", 16384, 32, []int{}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := plan.Make(tt.machine.detect(t), tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Plans) != 2 {
				t.Fatalf("got %d plans, want 2", len(res.Plans))
			}
			tt.emb.check(t, res.Plans[0])
			tt.rer.check(t, res.Plans[1])
			if tt.warn != "" {
				all := strings.Join(append(res.Plans[0].Warnings, res.Plans[1].Warnings...), "\n")
				if !strings.Contains(all, tt.warn) {
					t.Errorf("warnings %q lack %q", all, tt.warn)
				}
			}
			for _, p := range res.Plans {
				if len(p.Reasons) == 0 || p.Reasons[0].Why == "" {
					t.Errorf("%s plan gives no reasons", p.Role)
				}
			}
		})
	}
}

// replicaWant is what one replica's plan must say.
type replicaWant struct {
	name string // Plan.Name
	want
}

// TestRecordedMultiGPU plans recorded machines with 1, 2, 4 and 8 GPUs:
// every GPU is used, each replica has its own GPU, and each is sized for
// the memory it has.
func TestRecordedMultiGPU(t *testing.T) {
	tests := []struct {
		name     string
		machine  machine
		settings plan.Settings
		plans    []replicaWant
	}{{
		name:    "one L4: both models share it",
		machine: machine{snapshot: epyc, smi: "l4"},
		plans: []replicaWant{
			{"embed", want{"89-1.9.3", "float16", 16384, 64, []int{0}}},
			{"rerank", want{"89-1.9.3", "float16", 16384, 64, []int{0}}},
		},
	}, {
		name:    "two L4s: a GPU each, twice the batch of a shared one",
		machine: machine{snapshot: epyc, smi: "two-l4"},
		plans: []replicaWant{
			{"embed", want{"89-1.9.3", "float16", 32768, 64, []int{0}}},
			{"rerank", want{"89-1.9.3", "float16", 32768, 64, []int{1}}},
		},
	}, {
		name:    "two A100s",
		machine: machine{snapshot: epyc, smi: "two-a100"},
		plans: []replicaWant{
			{"embed", want{"1.9.3", "float16", 65536, 64, []int{0}}},
			{"rerank", want{"1.9.3", "float16", 65536, 64, []int{1}}},
		},
	}, {
		name:    "four A10Gs: three embedding replicas and the reranker",
		machine: machine{snapshot: epyc, smi: "four-a10g"},
		plans: []replicaWant{
			{"embed", want{"86-1.9.3", "float16", 32768, 64, []int{0}}},
			{"embed-1", want{"86-1.9.3", "float16", 32768, 64, []int{1}}},
			{"embed-2", want{"86-1.9.3", "float16", 32768, 64, []int{2}}},
			{"rerank", want{"86-1.9.3", "float16", 32768, 64, []int{3}}},
		},
	}, {
		name:    "eight H100s: seven embedding replicas on the Hopper image",
		machine: machine{snapshot: epyc, smi: "eight-h100"},
		plans: []replicaWant{
			{"embed", want{"hopper-1.9.3", "float16", 65536, 64, []int{0}}},
			{"embed-1", want{"hopper-1.9.3", "float16", 65536, 64, []int{1}}},
			{"embed-2", want{"hopper-1.9.3", "float16", 65536, 64, []int{2}}},
			{"embed-3", want{"hopper-1.9.3", "float16", 65536, 64, []int{3}}},
			{"embed-4", want{"hopper-1.9.3", "float16", 65536, 64, []int{4}}},
			{"embed-5", want{"hopper-1.9.3", "float16", 65536, 64, []int{5}}},
			{"embed-6", want{"hopper-1.9.3", "float16", 65536, 64, []int{6}}},
			{"rerank", want{"hopper-1.9.3", "float16", 65536, 64, []int{7}}},
		},
	}, {
		name:     "four A10Gs, two small-model replicas a GPU: each sized for half a GPU",
		machine:  machine{snapshot: epyc, smi: "four-a10g"},
		settings: plan.Settings{ReplicasPerGPU: 2, EmbeddingModel: "BAAI/bge-small-en-v1.5"},
		plans: []replicaWant{
			{"embed", want{"86-1.9.3", "float16", 16384, 64, []int{0}}},
			{"embed-1", want{"86-1.9.3", "float16", 16384, 64, []int{1}}},
			{"embed-2", want{"86-1.9.3", "float16", 16384, 64, []int{2}}},
			{"embed-3", want{"86-1.9.3", "float16", 16384, 64, []int{0}}},
			{"embed-4", want{"86-1.9.3", "float16", 16384, 64, []int{1}}},
			{"embed-5", want{"86-1.9.3", "float16", 16384, 64, []int{2}}},
			{"rerank", want{"86-1.9.3", "float16", 16384, 64, []int{3}}},
			{"rerank-1", want{"86-1.9.3", "float16", 16384, 64, []int{3}}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hw := tt.machine.detect(t)
			res, err := plan.Make(hw, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Plans) != len(tt.plans) {
				t.Fatalf("%d plans, want %d", len(res.Plans), len(tt.plans))
			}
			used := map[int]bool{}
			for i, w := range tt.plans {
				p := res.Plans[i]
				if p.Name() != w.name {
					t.Errorf("plan %d is %s, want %s", i, p.Name(), w.name)
				}
				w.check(t, p)
				for _, id := range p.GPUIDs {
					used[id] = true
				}
				if p.MemoryBudgetMiB <= 0 {
					t.Errorf("%s has no memory budget", p.Name())
				}
			}
			for _, g := range hw.GPUs {
				if !used[g.Index] {
					t.Errorf("GPU %d is unused", g.Index)
				}
			}
		})
	}
}
