package charts_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tei-sidecar/tei-sidecar/charts"
	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// TestHelmDefaultsArePlanned checks that the chart's defaults for what a
// plan decides are the plan for its reference CPU pod, so values.yaml holds
// no image, argument or size of its own making.
func TestHelmDefaultsArePlanned(t *testing.T) {
	var planned, defaults map[string]any
	file := helmValues(t, defaultPod(), plan.Settings{})
	if err := yaml.Unmarshal(file, &planned); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(charts.Chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &defaults); err != nil {
		t.Fatal(err)
	}
	at := func(m map[string]any, path ...string) any {
		var v any = m
		for _, k := range path {
			v, _ = v.(map[string]any)[k]
		}
		return v
	}
	// Each value the plan sets, whole: maps too, since a key only the
	// defaults had would outlive a values file layered over them.
	for _, model := range []string{"embed", "rerank"} {
		for k, want := range at(planned, "tei", model).(map[string]any) {
			if got := at(defaults, "tei", model, k); !reflect.DeepEqual(got, want) {
				t.Errorf("values.yaml's tei.%s.%s is %v; the plan for the reference pod says %v", model, k, got, want)
			}
		}
	}
	if got, want := at(defaults, "sidecar", "settings"), at(planned, "sidecar", "settings"); !reflect.DeepEqual(got, want) {
		t.Errorf("values.yaml's sidecar.settings is %v; the plan for the reference pod says %v", got, want)
	}
	if t.Failed() {
		t.Logf("detect's values for the reference pod (4 cores, 16 GiB), to copy into values.yaml:\n%s", file)
	}
}

// TestHelmValuesFromGPUs checks what detect --helm-values writes beyond the
// rendered machines: the GPUs' product label and taint, and the secrets
// it leaves out.
func TestHelmValuesFromGPUs(t *testing.T) {
	hw := gpuHost("NVIDIA A100-SXM4-80GB", "8.0", 81920, 2)
	file := string(helmValues(t, hw, plan.Settings{HFToken: "hf_must_not_appear"}))
	for _, want := range []string{
		"nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB\n",
		"image: ghcr.io/huggingface/text-embeddings-inference:1.9.3\n",
		"- key: nvidia.com/gpu\n        operator: Exists\n        effect: NoSchedule\n",
		"# HF_TOKEN is left out: give it through the chart's secrets (secrets.hfToken), never in a values\n#   file.\n",
		"      - --port\n      - \"8080\"\n",
	} {
		if !strings.Contains(file, want) {
			t.Errorf("values file lacks %q:\n%s", want, file)
		}
	}
	if strings.Contains(file, "hf_must_not_appear") || strings.Contains(file, "Docker") {
		t.Errorf("values file shows the token or speaks of Docker:\n%s", file)
	}

	// A name that is no label value selects no node.
	file = string(helmValues(t, gpuHost("NVIDIA RTX A6000 (Engineering Sample)", "8.6", 49140, 2), plan.Settings{}))
	if !strings.Contains(file, "nodeSelector: {}\n") || strings.Contains(file, "gpu.product") {
		t.Errorf("an unlabelable GPU name gave a node selector:\n%s", file)
	}
}

// TestHelmValuesRefuses checks the plans no chart can run.
func TestHelmValuesRefuses(t *testing.T) {
	mixed := gpuHost("NVIDIA A100-SXM4-80GB", "8.0", 81920, 2)
	mixed.GPUs = append(mixed.GPUs, gpuHost("NVIDIA L4", "8.9", 23034, 2).GPUs...)
	for i := range mixed.GPUs {
		mixed.GPUs[i].Index = i
	}
	apple := defaultPod()
	apple.OS, apple.Arch = "darwin", "arm64"
	apple.Apple = &hwdetect.Apple{Chip: hwdetect.Fact[string]{Value: "Apple M3", Source: "test"}}

	tests := []struct {
		name    string
		hw      hwdetect.Hardware
		is      error
		wantErr string
	}{
		{"apple", apple, charts.ErrNative, "TEI runs natively on Apple Silicon"},
		// The reranker takes an L4; the embedding model's three replicas
		// are two A100s and an L4, which one pod template cannot run.
		{"mixed GPUs", mixed, nil, "the embedding model's replicas differ (tei-embed runs ghcr.io/huggingface/text-embeddings-inference:1.9.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hw, res, err := charts.Plan(tt.hw, plan.Settings{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = charts.Build(hw, res)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := charts.Build(hwdetect.Hardware{}, plan.Result{}); err == nil {
		t.Error("an empty plan built values")
	}
}

func TestHelmProductLabel(t *testing.T) {
	for name, want := range map[string]string{
		"NVIDIA H100 80GB HBM3": "NVIDIA-H100-80GB-HBM3",
		"Tesla T4":              "Tesla-T4",
		" NVIDIA L4 ":           "NVIDIA-L4",
	} {
		if got := charts.ProductLabel(name); got != want {
			t.Errorf("ProductLabel(%q) = %q, want %q", name, got, want)
		}
	}
}

// gpuHost is a 32-core, 256 GiB x86-64 node with n GPUs alike.
func gpuHost(name, cc string, mib int64, n int) hwdetect.Hardware {
	f := func(s string) hwdetect.Fact[string] { return hwdetect.Fact[string]{Value: s, Source: "test"} }
	hw := hwdetect.Hardware{
		OS: "linux", Arch: "amd64",
		CPU:    hwdetect.CPU{UsableCores: hwdetect.Fact[int]{Value: 32, Source: "test"}},
		Memory: hwdetect.Memory{PhysicalBytes: hwdetect.Fact[int64]{Value: 256 << 30, Source: "test"}},
		GPUs:   []hwdetect.GPU{},
	}
	for i := range n {
		hw.GPUs = append(hw.GPUs, hwdetect.GPU{Index: i, Name: f(name), ComputeCap: f(cc),
			MemoryMiB: hwdetect.Fact[int64]{Value: mib, Source: "test"}})
	}
	return hw
}
