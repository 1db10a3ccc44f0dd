package launch

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// Cause is a known reason TEI fails to start.
type Cause string

// Causes a Diagnosis recognises.
const (
	CauseUnknown Cause = ""
	// CauseComputeCap: the image was built for another GPU architecture.
	CauseComputeCap Cause = "compute-capability-mismatch"
	// CauseNoGPURuntime: Docker cannot hand containers GPUs (no NVIDIA
	// Container Toolkit).
	CauseNoGPURuntime Cause = "no-nvidia-runtime"
	// CauseOutOfMemory: the warm-up batch did not fit in memory.
	CauseOutOfMemory Cause = "out-of-memory"
	// CauseCPUFallback: a CUDA image found no GPU it could use and TEI
	// went on on the CPU ("Using CPU instead"), far slower than planned.
	CauseCPUFallback Cause = "cpu-fallback"
)

// Diagnosis says why TEI failed and what to do.
type Diagnosis struct {
	Cause Cause
	// Advice is one line for the user; empty when the cause is unknown.
	Advice string
}

var (
	computeCapRe = regexp.MustCompile(`Runtime compute cap (\d+) is not compatible with compile time compute cap (\d+)`)
	oomRe        = regexp.MustCompile(`(?i)out of memory|CUDA_ERROR_OUT_OF_MEMORY|OutOfMemory`)
	noDriverRe   = regexp.MustCompile(`could not select device driver "[^"]*"`)
	// cpuFallbackRe is what TEI's candle backend logs when CUDA is there
	// but no compatible device is (backends/candle/src/lib.rs): a warning
	// "Could not find a compatible CUDA device on host: <error>", then
	// "Using CPU instead".
	cpuFallbackRe = regexp.MustCompile(`Using CPU instead`)
	cudaErrorRe   = regexp.MustCompile(`Could not find a compatible CUDA device on host: (.*)`)
)

// Diagnose reads TEI's log lines (and error messages) from a failed start
// of p and names the cause it recognises.
func Diagnose(lines []string, p plan.Plan) Diagnosis {
	text := strings.Join(lines, "\n")
	if m := computeCapRe.FindStringSubmatch(text); m != nil {
		runtime, compiled := capString(m[1]), capString(m[2])
		advice := fmt.Sprintf("the image %s is built for compute capability %s but the GPU has %s", orUnknown(p.Image), compiled, runtime)
		if fit, err := imageFor(runtime, versionOf(p.Image)); err == nil {
			advice += fmt.Sprintf(": use %s (set GPU_COMPUTE_CAP=%s so the plan picks it, or TEI_IMAGE=%s)", fit, runtime, fit)
		}
		return Diagnosis{CauseComputeCap, advice}
	}
	if noDriverRe.MatchString(text) {
		return Diagnosis{CauseNoGPURuntime, "Docker cannot give containers a GPU: install the NVIDIA Container Toolkit " +
			"(then `nvidia-ctk runtime configure --runtime=docker` and restart Docker), " +
			"or set TEI_FALLBACK_CPU=true to run TEI on the CPU image instead"}
	}
	// Before out of memory: a CPU running a GPU plan's batches is a
	// consequence, not the cause.
	if cpuFallbackRe.MatchString(text) {
		why := ""
		if m := cudaErrorRe.FindStringSubmatch(text); m != nil {
			why = " (" + strings.TrimSpace(m[1]) + ")"
		}
		gpus := "all"
		if len(p.GPUIDs) > 0 {
			gpus = "device=" + gpuList(p.GPUIDs)
		}
		return Diagnosis{CauseCPUFallback, fmt.Sprintf("TEI found no GPU it could use%s and fell back to the CPU, far slower than the plan for GPU %s: "+
			"check that the container sees the GPU (`docker run --rm --gpus %s --entrypoint nvidia-smi %s` should list it; "+
			"if not, check the NVIDIA driver and Container Toolkit), or set EMBEDDING_DEVICE=cpu to plan for the CPU",
			why, gpuList(p.GPUIDs), gpus, orUnknown(p.Image))}
	}
	if oomRe.MatchString(text) {
		return Diagnosis{CauseOutOfMemory, fmt.Sprintf("TEI ran out of memory warming up a %d-token batch: "+
			"lower TEI_MAX_BATCH_TOKENS, free GPU memory, or set RERANK_ENABLE=false so the embedding model has the GPU to itself", p.MaxBatchTokens)}
	}
	return Diagnosis{}
}

// capString turns TEI's "86" into "8.6" and "100" into "10.0".
func capString(n string) string {
	v, err := strconv.Atoi(n)
	if err != nil {
		return n
	}
	return fmt.Sprintf("%d.%d", v/10, v%10)
}

// versionOf finds the TEI release in an image's tag ("cpu-1.9.3", "1.9.3",
// also when pinned by digest); the default release when it names none.
func versionOf(image string) string {
	if v, ok := plan.ImageVersion(image); ok {
		return v
	}
	return plan.DefaultTEIVersion
}

// gpuList names a plan's GPUs for advice.
func gpuList(ids []int) string {
	if len(ids) == 0 {
		return "(none)"
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, ", ")
}

// imageFor asks the planner which image runs on a GPU of compute
// capability cc: the same rule that chose the failing one.
func imageFor(cc, version string) (string, error) {
	off := false
	hw := hwdetect.Hardware{OS: "linux", Arch: "amd64", GPUs: []hwdetect.GPU{{
		ComputeCap: hwdetect.Fact[string]{Value: cc, Source: hwdetect.SourceOverride},
	}}}
	res, err := plan.Make(hw, plan.Settings{TEIVersion: version, RerankEnable: &off})
	if err != nil {
		return "", err
	}
	return res.Plans[0].Image, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
