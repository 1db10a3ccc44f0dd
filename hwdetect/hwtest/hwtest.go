// Package hwtest gives tests the machines recorded in hwdetect/testdata:
// ghw snapshot trees, unpacked once per test binary and shared read-only.
package hwtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jaypipes/ghw/pkg/snapshot"
	"go.uber.org/goleak"
)

// Snapshots unpacks recorded snapshots on first use. It is safe for
// concurrent use; Close removes what it unpacked.
type Snapshots struct {
	src, dir string
	mu       sync.Mutex
	unpacked map[string]string
}

// Open returns the snapshots recorded in src (a testdata/snapshots folder),
// to be unpacked below a new temporary directory.
func Open(src string) (*Snapshots, error) {
	dir, err := os.MkdirTemp("", "hwtest-snapshots")
	if err != nil {
		return nil, err
	}
	return &Snapshots{src: src, dir: dir, unpacked: map[string]string{}}, nil
}

// Close removes the unpacked trees.
func (s *Snapshots) Close() { os.RemoveAll(s.dir) }

// Recorded returns the unpacked tree of the snapshot file name, shared by
// the tests that only read it.
func (s *Snapshots) Recorded(t testing.TB, name string) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if root, ok := s.unpacked[name]; ok {
		return root
	}
	root := filepath.Join(s.dir, name)
	if err := snapshot.UnpackInto(filepath.Join(s.src, name), root); err != nil {
		t.Fatalf("unpacking %s: %v", name, err)
	}
	s.unpacked[name] = root
	return root
}

// Main is a test binary's TestMain: it opens the snapshots in src into *s,
// runs the tests, removes what was unpacked and fails on leaked goroutines.
func Main(m *testing.M, src string, s **Snapshots) {
	var err error
	if *s, err = Open(src); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	(*s).Close()
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
		code = 1
	}
	os.Exit(code)
}
