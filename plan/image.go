package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// Registry is where TEI's images are published.
const Registry = "ghcr.io/huggingface/text-embeddings-inference"

// Binary is TEI's native router, run on Apple Silicon where Docker cannot
// reach Metal.
const Binary = "text-embeddings-router"

// build is one of TEI's CUDA image builds.
type build struct {
	cc     int    // compiled compute capability, major*10+minor
	prefix string // tag prefix before the version
	label  string // what it is built for, for reasons
}

// builds are TEI's per-architecture CUDA images (TEI README, "Images").
var builds = []build{
	{75, "turing-", "Turing (experimental; flash attention off)"},
	{80, "", "Ampere 8.0"},
	{86, "86-", "Ampere 8.6"},
	{89, "89-", "Ada Lovelace 8.9"},
	{90, "hopper-", "Hopper 9.0"},
	{100, "100-", "Blackwell 10.0 (experimental)"},
	{120, "120-", "Blackwell 12.0 (experimental)"},
}

// runsOn is TEI's compatibility rule: a build compiled for compiled runs on
// a GPU of compute capability runtime when they match exactly, or runtime is
// 8.0–8.9 and the build 8.0, or runtime is 8.6–8.9 and the build 8.6. Any
// other pair fails at start with "Runtime compute cap X is not compatible
// with compile time compute cap Y".
func runsOn(compiled, runtime int) bool {
	switch {
	case compiled == runtime:
		return true
	case compiled == 80:
		return runtime >= 80 && runtime <= 89
	case compiled == 86:
		return runtime >= 86 && runtime <= 89
	}
	return false
}

// buildFor picks the most specific build that runs on a GPU of compute
// capability cc ("8.7" → the 8.6 build, not 8.0). ok is false when none
// does: older than Turing, or newer minors that only an exact build would
// run (10.3, 12.1).
func buildFor(cc string) (b build, ok bool) {
	n, err := ccNumber(cc)
	if err != nil {
		return build{}, false
	}
	for i := len(builds) - 1; i >= 0; i-- {
		if builds[i].cc <= n && runsOn(builds[i].cc, n) {
			return builds[i], true
		}
	}
	return build{}, false
}

// ccNumber turns "8.6" into 86 and "10.0" into 100.
func ccNumber(cc string) (int, error) {
	major, minor, found := strings.Cut(cc, ".")
	if !found {
		return 0, fmt.Errorf("compute capability %q is not MAJOR.MINOR", cc)
	}
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil || mi > 9 {
		return 0, fmt.Errorf("compute capability %q is not MAJOR.MINOR", cc)
	}
	return ma*10 + mi, nil
}

func imageRef(tag string) string { return Registry + ":" + tag }

// cpuImage is the CPU image for arch at version. TEI 1.9.3 and earlier
// publish no versioned arm64 CPU image: cpu-arm64 exists only as
// cpu-arm64-latest, built from main, until the release after 1.9.3.
func cpuImage(arch, version string) (ref string, pinned bool) {
	if arch != "arm64" {
		return imageRef("cpu-" + version), true
	}
	if compareVersions(version, "1.9.3") <= 0 {
		return imageRef("cpu-arm64-latest"), false
	}
	return imageRef("cpu-arm64-" + version), true
}

// isCPUImage reports whether a pinned image reference is one of TEI's CPU
// images (its tag starts with "cpu").
func isCPUImage(ref string) bool {
	tag := ref
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		tag = ref[i+1:]
	}
	return strings.HasPrefix(tag, "cpu")
}

// compareVersions compares dotted release numbers numerically.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
