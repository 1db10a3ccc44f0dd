package plan

import (
	"strings"
	"testing"
)

// TestBuildFor covers every row of TEI 1.9.3's image table and the
// compatibility rule: runtime 8.0–8.9 runs the 8.0 build, 8.6–8.9 the 8.6
// build, anything else only its exact build; the most specific build wins.
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
	table := imagesFor("1.9.3")
	for _, tt := range tests {
		b, ok := table.buildFor(tt.cc, archAMD64)
		if ok != tt.ok || b.prefix != tt.prefix {
			t.Errorf("buildFor(%s) = %q, %v; want %q, %v", tt.cc, b.prefix, ok, tt.prefix, tt.ok)
		}
	}
}

// TestImagesPerVersion is the image table as a function of TEI's release.
// It is the regression for a planner that knew only 1.9.3's table: with
// TEI_VERSION=1.8.x it picked 100- and 120- tags that did not exist before
// 1.9.0, it could not use GB10 (12.1) GPUs or versioned arm64 images after
// 1.9.3, and it would have sent 12.1 GPUs to 1.9.3's 12.0 build, which
// refuses them.
func TestImagesPerVersion(t *testing.T) {
	type row struct {
		cc, arch string
		prefix   string // "" with ok false: no build
		ok       bool
	}
	tests := []struct {
		version  string
		rows     []row
		cpuARM64 string
		pinned   bool
	}{{
		version: "1.8.1",
		rows: []row{
			{"7.5", archAMD64, "turing-", true}, {"8.0", archAMD64, "", true}, {"8.6", archAMD64, "86-", true},
			{"8.9", archAMD64, "89-", true}, {"9.0", archAMD64, "hopper-", true},
			{"10.0", archAMD64, "", false}, {"12.0", archAMD64, "", false}, {"12.1", archAMD64, "", false},
			{"9.0", archARM64, "", false}, {"12.1", archARM64, "", false},
		},
		cpuARM64: "cpu-arm64-latest",
	}, {
		version: "1.9.0",
		rows: []row{
			{"9.0", archAMD64, "hopper-", true}, {"10.0", archAMD64, "100-", true}, {"12.0", archAMD64, "120-", true},
			{"12.1", archAMD64, "", false}, {"10.3", archAMD64, "", false}, {"12.1", archARM64, "", false},
		},
		cpuARM64: "cpu-arm64-latest",
	}, {
		version: "1.9.3",
		rows: []row{
			{"10.0", archAMD64, "100-", true}, {"12.0", archAMD64, "120-", true},
			{"12.1", archAMD64, "", false}, {"12.1", archARM64, "", false}, {"9.0", archARM64, "", false},
		},
		cpuARM64: "cpu-arm64-latest",
	}, {
		version: "1.10.0",
		rows: []row{
			{"8.6", archAMD64, "86-", true}, {"10.0", archAMD64, "100-", true}, {"12.0", archAMD64, "120-", true},
			{"12.1", archAMD64, "120-", true}, // main's check lets the 12.0 build run on 12.1
			{"12.1", archARM64, "121-", true}, // the GB10 build is linux/arm64 only
			{"12.0", archARM64, "", false}, {"9.0", archARM64, "", false}, {"10.3", archAMD64, "", false},
		},
		cpuARM64: "cpu-arm64-1.10.0", pinned: true,
	}}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			table := imagesFor(tt.version)
			for _, r := range tt.rows {
				b, ok := table.buildFor(r.cc, r.arch)
				if ok != r.ok || b.prefix != r.prefix {
					t.Errorf("buildFor(%s, %s) = %q, %v; want %q, %v", r.cc, r.arch, b.prefix, ok, r.prefix, r.ok)
				}
			}
			if ref, pinned := table.cpuImage(archARM64); ref != imageRef(tt.cpuARM64) || pinned != tt.pinned {
				t.Errorf("arm64 CPU image %s (pinned %v), want %s (%v)", ref, pinned, tt.cpuARM64, tt.pinned)
			}
			if ref, pinned := table.cpuImage(archAMD64); ref != imageRef("cpu-"+tt.version) || !pinned {
				t.Errorf("amd64 CPU image %s (pinned %v)", ref, pinned)
			}
		})
	}
}

func TestRunsOn(t *testing.T) {
	for _, version := range []string{"1.8.1", "1.9.3", "1.10.0"} {
		table := imagesFor(version)
		wide := version == "1.10.0"
		for runtime := 60; runtime <= 130; runtime++ {
			for _, b := range table.builds {
				want := b.cc == runtime ||
					(b.cc == 80 && runtime >= 80 && runtime <= 89) ||
					(b.cc == 86 && runtime >= 86 && runtime <= 89) ||
					(wide && b.cc == 120 && runtime == 121)
				if got := table.runsOn(b.cc, runtime); got != want {
					t.Errorf("%s: runsOn(%d, %d) = %v, want %v", version, b.cc, runtime, got, want)
				}
			}
		}
	}
}

// TestImageReferences reads tags with Docker's reference grammar. It is the
// regression for reading the text after the last colon: the digest of a
// digest-pinned CPU image (…:cpu-1.9.3@sha256:…) was taken for its tag, so
// the CPU image was planned onto GPU 0.
func TestImageReferences(t *testing.T) {
	const digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		ref     string
		tag     string
		version string
		kind    imageKind
	}{
		{Registry + ":cpu-1.9.3", "cpu-1.9.3", "1.9.3", imageCPU},
		{Registry + ":cpu-1.9.3" + digest, "cpu-1.9.3", "1.9.3", imageCPU},
		{Registry + ":cpu-arm64-latest", "cpu-arm64-latest", "", imageCPU},
		{Registry + ":cpu-arm64-1.10.0", "cpu-arm64-1.10.0", "1.10.0", imageCPU},
		{Registry + ":89-1.9.3", "89-1.9.3", "1.9.3", imageCUDA},
		{Registry + ":hopper-1.9.3" + digest, "hopper-1.9.3", "1.9.3", imageCUDA},
		{Registry + ":1.9.3", "1.9.3", "1.9.3", imageCUDA},
		{Registry + ":cuda-latest", "cuda-latest", "", imageCUDA},
		{Registry + digest, "", "", imageUnknown},
		{"mirror.local:5000/hf/text-embeddings-inference:turing-1.8.0", "turing-1.8.0", "1.8.0", imageCUDA},
		{"localhost:5000/tei:cpu-dev", "cpu-dev", "", imageCPU},
		{"localhost:5000/tei", "", "", imageUnknown},
		{"localhost:5000/tei:1.9.3", "1.9.3", "1.9.3", imageUnknown}, // not TEI's repository
		{"registry.local/tei:custom", "custom", "", imageUnknown},
		{"cpu-tei", "", "", imageUnknown}, // a name, not a tag
		{"not a reference", "", "", imageUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			if got := ImageTag(tt.ref); got != tt.tag {
				t.Errorf("ImageTag = %q, want %q", got, tt.tag)
			}
			if got, ok := ImageVersion(tt.ref); got != tt.version || ok != (tt.version != "") {
				t.Errorf("ImageVersion = %q, %v; want %q", got, ok, tt.version)
			}
			if got := kindOfImage(tt.ref); got != tt.kind {
				t.Errorf("kindOfImage = %v, want %v", got, tt.kind)
			}
		})
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
