package teisim

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Start parses args as the binary does, but without reading the environment,
// so ambient variables (PORT, HOSTNAME, ...) cannot leak into a test; starts
// the simulator behind an httptest server on a loopback socket; and
// registers cleanup that closes both. It returns the server (for SetFault,
// EmbedCount, Embedding) and the base URL. Batch and token costs keep their
// defaults unless args set them (e.g. "--sim-batch-cost", "0").
func Start(t testing.TB, args ...string) (*Server, string) {
	t.Helper()
	cfg, err := ParseArgs(args, func(string) string { return "" })
	if err != nil {
		t.Fatalf("teisim: parse args %q: %v", args, err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("teisim: %v", err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		// Close the simulator first: it ends stalled and queued requests,
		// which httptest's Close would otherwise wait for.
		s.Close()
		ts.Close()
	})
	return s, ts.URL
}

// RouterName is TEI's binary, which the simulator's binary stands in for.
const RouterName = "text-embeddings-router"

// BuildRouter compiles the simulator's binary, static, as
// dir/text-embeddings-router and returns its path. env adds to the build's
// environment (GOOS, GOARCH for an image).
func BuildRouter(ctx context.Context, dir string, env ...string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, RouterName)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./tests/teisim/cmd/teisim")
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build teisim: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot finds the repository to build from, wherever the test runs.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (GOMOD=%q)", gomod)
	}
	return filepath.Dir(gomod), nil
}
