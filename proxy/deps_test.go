package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxyNeedsNoDockerOrHardwarePackages: the proxy and the TEI client
// (package tei) stand alone, so that a sidecar given TEI's URLs links
// neither Docker's API nor the hardware detection; they live in tei/launch
// and hwdetect. (Issue 11: the tei package once held both.)
func TestProxyNeedsNoDockerOrHardwarePackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".", "../tei").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps listed %d packages, too few to be the proxy's", len(deps))
	}
	for _, d := range deps {
		for _, banned := range []string{"github.com/docker/", "github.com/moby/", "github.com/jaypipes/ghw", "github.com/testcontainers/", "/tei/launch", "/hwdetect"} {
			if strings.Contains(d, banned) {
				t.Errorf("the proxy or the TEI client depends on %s", d)
			}
		}
	}
}
