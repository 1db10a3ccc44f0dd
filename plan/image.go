package plan

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"
)

// Registry is where TEI's images are published.
const Registry = "ghcr.io/huggingface/text-embeddings-inference"

// Binary is TEI's native router, run on Apple Silicon where Docker cannot
// reach Metal.
const Binary = "text-embeddings-router"

// Platforms TEI publishes images for.
const (
	archAMD64 = "amd64"
	archARM64 = "arm64"
)

// build is one of TEI's CUDA image builds.
type build struct {
	cc     int    // compiled compute capability, major*10+minor
	prefix string // tag prefix before the version
	label  string // what it is built for, for reasons
	arch   string // the one platform TEI publishes it for
}

// Releases where TEI's image table changed.
const (
	// blackwellRelease added the 10.0 and 12.0 builds.
	blackwellRelease = "1.9.0"
	// lastWithoutARM64 is the last release without versioned linux/arm64
	// images (cpu-arm64-, 121-): they are in TEI's CI only after it, so
	// later releases are taken to publish them.
	lastWithoutARM64 = "1.9.3"
)

// images is what TEI publishes for one release: its CUDA builds, whether a
// versioned arm64 CPU image exists, and the compatibility rule of its
// compute-capability check.
type images struct {
	version string
	builds  []build
	// arm64CPU: cpu-arm64-<version> exists; otherwise only
	// cpu-arm64-latest, built from main, does.
	arm64CPU bool
	// wide120: the 12.0 build also runs on 12.1 GPUs (TEI's check after
	// 1.9.3; 1.9.3's accepts 12.0 alone).
	wide120 bool
}

// imagesFor is TEI's image table at version (TEI's
// .github/workflows/matrix.json and backends/candle/src/compute_cap.rs at
// each release tag).
func imagesFor(version string) images {
	t := images{version: version, builds: []build{
		{75, "turing-", "Turing (experimental; flash attention off)", archAMD64},
		{80, "", "Ampere 8.0", archAMD64},
		{86, "86-", "Ampere 8.6", archAMD64},
		{89, "89-", "Ada Lovelace 8.9", archAMD64},
		{90, "hopper-", "Hopper 9.0", archAMD64},
	}}
	if compareVersions(version, blackwellRelease) >= 0 {
		t.builds = append(t.builds,
			build{100, "100-", "Blackwell 10.0 (experimental)", archAMD64},
			build{120, "120-", "Blackwell 12.0 (experimental)", archAMD64})
	}
	if compareVersions(version, lastWithoutARM64) > 0 {
		t.builds = append(t.builds, build{121, "121-", "Blackwell 12.1, GB10 (experimental)", archARM64})
		t.arm64CPU, t.wide120 = true, true
	}
	return t
}

// runsOn is TEI's compatibility rule: a build compiled for compiled runs on
// a GPU of compute capability runtime when they match exactly, or runtime is
// 8.0–8.9 and the build 8.0, or runtime is 8.6–8.9 and the build 8.6, or
// (after 1.9.3) runtime is 12.1 and the build 12.0. Any other pair fails at
// start with "Runtime compute cap X is not compatible with compile time
// compute cap Y".
func (t images) runsOn(compiled, runtime int) bool {
	switch {
	case compiled == runtime:
		return true
	case compiled == 80:
		return runtime >= 80 && runtime <= 89
	case compiled == 86:
		return runtime >= 86 && runtime <= 89
	case compiled == 120:
		return t.wide120 && runtime == 121
	}
	return false
}

// buildFor picks the most specific build published for arch that runs on a
// GPU of compute capability cc ("8.7" → the 8.6 build, not 8.0). ok is
// false when none does: older than Turing, newer minors that only an exact
// build would run (10.3), or no build for arch.
func (t images) buildFor(cc, arch string) (b build, ok bool) {
	n, err := ccNumber(cc)
	if err != nil {
		return build{}, false
	}
	for i := len(t.builds) - 1; i >= 0; i-- {
		if b := t.builds[i]; b.arch == arch && b.cc <= n && t.runsOn(b.cc, n) {
			return b, true
		}
	}
	return build{}, false
}

// hasCUDA reports whether the release publishes any CUDA image for arch.
func (t images) hasCUDA(arch string) bool {
	for _, b := range t.builds {
		if b.arch == arch {
			return true
		}
	}
	return false
}

// noBuildWhy says why no build of the release runs on compute capability
// cc on arch.
func (t images) noBuildWhy(cc, arch string) string {
	n, err := ccNumber(cc)
	switch {
	case err == nil && n < 75:
		return fmt.Sprintf("compute capability %s is older than Turing (7.5), the oldest TEI %s supports", cc, t.version)
	case arch != archAMD64 && t.hasCUDA(arch):
		return fmt.Sprintf("TEI %s's only linux/%s CUDA build is for compute capability 12.1, not %s", t.version, arch, cc)
	case arch != archAMD64:
		return fmt.Sprintf("TEI %s publishes CUDA images for linux/amd64 only", t.version)
	}
	return fmt.Sprintf("no TEI %s build runs on compute capability %s (builds beyond 8.x run only on their exact compute capability)", t.version, cc)
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

// cpuImage is the CPU image for arch. Releases up to 1.9.3 publish no
// versioned arm64 CPU image: cpu-arm64 exists only as cpu-arm64-latest,
// built from main.
func (t images) cpuImage(arch string) (ref string, pinned bool) {
	if arch != archARM64 {
		return imageRef("cpu-" + t.version), true
	}
	if !t.arm64CPU {
		return imageRef("cpu-arm64-latest"), false
	}
	return imageRef("cpu-arm64-" + t.version), true
}

// ImageTag is the tag of an image reference ("cpu-1.9.3" in
// "ghcr.io/…:cpu-1.9.3@sha256:…"): empty when it has none (a bare name or
// a digest alone) or is not a reference. A registry's port is not a tag.
func ImageTag(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	if tagged, ok := named.(reference.Tagged); ok {
		return tagged.Tag()
	}
	return ""
}

// releaseTag is a TEI image tag: an optional build prefix, then a release.
var releaseTag = regexp.MustCompile(`^(?:[a-z0-9]+-)*([0-9]+\.[0-9]+\.[0-9]+)$`)

// ImageVersion is the TEI release an image's tag names ("1.9.3" for
// "…:hopper-1.9.3" and "…:cpu-arm64-1.10.0"); ok is false for tags that
// name none ("cpu-arm64-latest", "custom") and references without a tag.
func ImageVersion(ref string) (version string, ok bool) {
	m := releaseTag.FindStringSubmatch(ImageTag(ref))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// imageKind is what a pinned image is known to run on.
type imageKind int

const (
	// imageUnknown: a tag the plan cannot read, or none; trusted to suit
	// the device.
	imageUnknown imageKind = iota
	imageCPU
	imageCUDA
)

// cudaTag is one of TEI's CUDA tags: a build prefix or the all-in-one
// cuda-, then a release or "latest"; the 8.0 build has no prefix.
var cudaTag = regexp.MustCompile(`^(?:turing-|86-|89-|hopper-|100-|120-|121-|cuda-)?(?:[0-9]+\.[0-9]+\.[0-9]+|latest)$`)

// kindOfImage reads a pinned reference's tag: "cpu…" is a CPU image in any
// repository; TEI's CUDA tags are CUDA images in a repository named
// text-embeddings-inference (TEI's own, or a mirror of it); anything else is
// unknown, since another repository's "2.0.1" says nothing about CUDA.
func kindOfImage(ref string) imageKind {
	tag := ImageTag(ref)
	switch {
	case strings.HasPrefix(tag, "cpu"):
		return imageCPU
	case cudaTag.MatchString(tag) && isTEIRepository(ref):
		return imageCUDA
	}
	return imageUnknown
}

// isTEIRepository reports whether ref's repository is named like TEI's.
func isTEIRepository(ref string) bool {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return false
	}
	path := reference.Path(named)
	return path[strings.LastIndex(path, "/")+1:] == "text-embeddings-inference"
}

// isCPUImage reports whether a pinned image reference is one of TEI's CPU
// images (its tag starts with "cpu").
func isCPUImage(ref string) bool { return kindOfImage(ref) == imageCPU }

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
