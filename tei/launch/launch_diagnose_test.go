package launch

import (
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// TestDiagnoseCPUFallback is the regression for TEI's silent CPU fallback:
// a CUDA image that finds no usable GPU logs "Using CPU instead" (a
// warning of its candle backend) and goes on on the CPU, and Diagnose named
// no cause, or blamed the out-of-memory error the CPU then hit.
func TestDiagnoseCPUFallback(t *testing.T) {
	p := plan.Plan{Image: plan.Registry + ":hopper-1.9.3", GPUIDs: []int{3}, MaxBatchTokens: 65536}
	tests := []struct {
		name   string
		lines  []string
		advice []string
	}{
		{
			name: "TEI's JSON log, as the sidecar keeps it",
			lines: []string{
				"Starting model backend",
				"Could not find a compatible CUDA device on host: CUDA is not available",
				"Using CPU instead",
				"Starting Bert model on Cpu",
			},
			advice: []string{"(CUDA is not available)", "fell back to the CPU", "GPU 3",
				"docker run --rm --gpus device=3 --entrypoint nvidia-smi " + plan.Registry + ":hopper-1.9.3", "EMBEDDING_DEVICE=cpu"},
		},
		{
			name: "TEI's plain log, then out of memory on the CPU",
			lines: []string{
				"2026-03-01T10:00:00.000000Z  WARN text_embeddings_backend_candle: backends/candle/src/lib.rs:251: Using CPU instead",
				"Error: Could not create backend", "Caused by: out of memory",
			},
			advice: []string{"fell back to the CPU"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Diagnose(tc.lines, p)
			if d.Cause != CauseCPUFallback {
				t.Fatalf("cause %q, want %q (advice %q)", d.Cause, CauseCPUFallback, d.Advice)
			}
			for _, want := range tc.advice {
				if !strings.Contains(d.Advice, want) {
					t.Errorf("advice %q lacks %q", d.Advice, want)
				}
			}
		})
	}
}

// TestDiagnoseReadsTheVersionFromTheTag reads the release from the image's tag. It is the
// regression for taking the text after the last colon: for an image
// pinned by digest that is the digest, and the advice named the default
// release's image instead of the failing one's.
func TestDiagnoseReadsTheVersionFromTheTag(t *testing.T) {
	const digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for ref, want := range map[string]string{
		plan.Registry + ":hopper-1.8.1":          "1.8.1",
		plan.Registry + ":hopper-1.8.1" + digest: "1.8.1",
		plan.Registry + ":cpu-arm64-1.10.0":      "1.10.0",
		plan.Registry + ":cpu-arm64-latest":      plan.DefaultTEIVersion,
		"localhost:5000/tei":                     plan.DefaultTEIVersion,
		plan.Registry + digest:                   plan.DefaultTEIVersion,
		"":                                       plan.DefaultTEIVersion,
	} {
		if got := versionOf(ref); got != want {
			t.Errorf("versionOf(%q) = %q, want %q", ref, got, want)
		}
	}
	lines := []string{"Runtime compute cap 86 is not compatible with compile time compute cap 90"}
	d := Diagnose(lines, plan.Plan{Image: plan.Registry + ":hopper-1.8.1" + digest})
	if !strings.Contains(d.Advice, plan.Registry+":86-1.8.1") {
		t.Errorf("advice %q does not name the 1.8.1 image that fits", d.Advice)
	}
}
