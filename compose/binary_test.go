package compose_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedBinaryLeavesComposeOut builds tei-sidecar and reads its module
// list with `go version -m`: Compose's loader and the testcontainers
// compose module are for tests only and must not be linked into it.
func TestShippedBinaryLeavesComposeOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "tei-sidecar")
	// The flags of cmd/tei-sidecar's own tests, so the build cache is shared.
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "cmd", "tei-sidecar")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	info := string(out)
	// A module list at all: otherwise the checks below could not fail.
	for _, want := range []string{"\tpath\tgithub.com/tei-sidecar/tei-sidecar/cmd/tei-sidecar\n", "\tdep\tgithub.com/alecthomas/kong\t"} {
		if !strings.Contains(info, want) {
			t.Fatalf("go version -m lacks %q:\n%s", want, info)
		}
	}
	for _, banned := range []string{
		"github.com/compose-spec/compose-go",
		"github.com/testcontainers/testcontainers-go/modules/compose",
		"github.com/docker/compose",
		"github.com/docker/cli",
	} {
		if strings.Contains(info, "\t"+banned) {
			t.Errorf("the shipped binary links %s:\n%s", banned, info)
		}
	}
}
