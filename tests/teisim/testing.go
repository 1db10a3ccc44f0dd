package teisim

import (
	"net/http/httptest"
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
