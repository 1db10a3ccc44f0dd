package plan

import (
	"strings"
	"testing"
)

// TestBuildFor covers every row of TEI's image table and the compatibility
// rule: runtime 8.0–8.9 runs the 8.0 build, 8.6–8.9 the 8.6 build, anything
// else only its exact build; the most specific build wins.
func TestBuildFor(t *testing.T) {
	tests := []struct {
		cc     string
		prefix string
		ok     bool
	}{
		{"6.0", "", false}, // Pascal
		{"7.0", "", false}, // Volta
		{"7.2", "", false}, // Xavier
		{"7.5", "turing-", true},
		{"8.0", "", true},    // A100, A30: the unprefixed build
		{"8.2", "", true},    // no such GPU, but 8.0–8.9 runs the 8.0 build
		{"8.6", "86-", true}, // A10, A40, RTX 30xx
		{"8.7", "86-", true}, // Orin: the 8.6 build is more specific than 8.0
		{"8.8", "86-", true},
		{"8.9", "89-", true}, // L4, L40, RTX 40xx
		{"9.0", "hopper-", true},
		{"10.0", "100-", true},
		{"10.3", "", false}, // B300: 10.0 builds need an exact match
		{"11.0", "", false},
		{"12.0", "120-", true},
		{"12.1", "", false}, // GB10: no 12.1 build in 1.9.3
		{"sm_86", "", false},
	}
	for _, tt := range tests {
		b, ok := buildFor(tt.cc)
		if ok != tt.ok || b.prefix != tt.prefix {
			t.Errorf("buildFor(%s) = %q, %v; want %q, %v", tt.cc, b.prefix, ok, tt.prefix, tt.ok)
		}
	}
}

func TestRunsOn(t *testing.T) {
	for runtime := 60; runtime <= 130; runtime++ {
		for _, b := range builds {
			want := b.cc == runtime ||
				(b.cc == 80 && runtime >= 80 && runtime <= 89) ||
				(b.cc == 86 && runtime >= 86 && runtime <= 89)
			if got := runsOn(b.cc, runtime); got != want {
				t.Errorf("runsOn(%d, %d) = %v, want %v", b.cc, runtime, got, want)
			}
		}
	}
}

func TestCPUImage(t *testing.T) {
	tests := []struct {
		arch, version, want string
		pinned              bool
	}{
		{"amd64", "1.9.3", Registry + ":cpu-1.9.3", true},
		{"amd64", "1.8.1", Registry + ":cpu-1.8.1", true},
		{"arm64", "1.9.3", Registry + ":cpu-arm64-latest", false},
		{"arm64", "1.9.2", Registry + ":cpu-arm64-latest", false},
		{"arm64", "1.10.0", Registry + ":cpu-arm64-1.10.0", true},
	}
	for _, tt := range tests {
		ref, pinned := cpuImage(tt.arch, tt.version)
		if ref != tt.want || pinned != tt.pinned {
			t.Errorf("cpuImage(%s, %s) = %s, %v; want %s, %v", tt.arch, tt.version, ref, pinned, tt.want, tt.pinned)
		}
	}
}

func TestIsCPUImage(t *testing.T) {
	for ref, want := range map[string]bool{
		Registry + ":cpu-1.9.3":        true,
		Registry + ":cpu-arm64-latest": true,
		Registry + ":89-1.9.3":         false,
		"localhost:5000/tei:cpu-dev":   true,
		"localhost:5000/tei":           false,
		"cpu-tei":                      true,
	} {
		if got := isCPUImage(ref); got != want {
			t.Errorf("isCPUImage(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"1.9.3", "1.9.3", 0}, {"1.9.2", "1.9.3", -1}, {"1.10.0", "1.9.3", 1}, {"2.0.0", "1.99.99", 1}} {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestBudget pins the heuristic's arithmetic on the cases its comment
// describes.
func TestBudget(t *testing.T) {
	bgeM3 := LookupModel("BAAI/bge-m3")
	tests := []struct {
		name     string
		b        budget
		want     int
		wantWarn string
	}{
		{"T4 shared: attention scores limit it to 8192",
			budget{model: bgeM3, shareMiB: 6400, dtypeBytes: 2, quadratic: true, ceiling: 16384, floor: 8192}, 8192, ""},
		{"A100 80GB shared: the ceiling",
			budget{model: bgeM3, shareMiB: 36352, dtypeBytes: 2, ceiling: 65536, floor: 8192}, 65536, ""},
		{"CPU, 24 GiB shared: 4096",
			budget{model: bgeM3, shareMiB: 7372, dtypeBytes: 4, quadratic: true, ceiling: 16384, floor: 4096}, 4096, ""},
		{"M1 16GB shared: raised to the input length",
			budget{model: bgeM3, shareMiB: 3686, dtypeBytes: 2, quadratic: true, ceiling: 16384, floor: 8192}, 8192, "memory is tight"},
		{"no room for the weights",
			budget{model: bgeM3, shareMiB: 500, dtypeBytes: 4, quadratic: true, ceiling: 16384, floor: 4096}, 4096, "may not even hold"},
		{"memory unknown: TEI's default",
			budget{model: bgeM3, ceiling: 16384, floor: 8192}, 16384, ""},
		{"a small model fits the ceiling",
			budget{model: LookupModel("BAAI/bge-small-en-v1.5"), shareMiB: 2000, dtypeBytes: 4, quadratic: true, ceiling: 16384, floor: 512}, 16384, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why, warn := tt.b.size()
			if got != tt.want || why == "" {
				t.Errorf("size() = %d (%q), want %d", got, why, tt.want)
			}
			if (tt.wantWarn == "") != (warn == "") || !strings.Contains(warn, tt.wantWarn) {
				t.Errorf("warning %q, want one containing %q", warn, tt.wantWarn)
			}
		})
	}
}

func TestGPUCeiling(t *testing.T) {
	for share, want := range map[int64]int{9850: 16384, 16383: 16384, 16384: 32768, 32767: 32768, 32768: 65536, 140000: 65536} {
		if got := gpuCeiling(share); got != want {
			t.Errorf("gpuCeiling(%d) = %d, want %d", share, got, want)
		}
	}
}
