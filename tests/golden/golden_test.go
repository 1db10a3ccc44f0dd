package golden

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what Check reports; a fatal report
// ends its goroutine, as testing's does.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Errorf(format string, a ...any) { r.errors = append(r.errors, format) }
func (r *recorder) Fatalf(format string, a ...any) {
	r.errors = append(r.errors, format)
	runtime.Goexit()
}
func (r *recorder) Fatal(a ...any) { r.errors = append(r.errors, "fatal"); runtime.Goexit() }

// check runs Check and returns what it reported.
func check(t *testing.T, path string, got []byte) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Check(r, path, got)
	}()
	<-done
	return r.errors
}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.txt")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if errs := check(t, path, []byte("one\ntwo\nthree\n")); len(errs) != 0 {
		t.Errorf("equal content reported: %v", errs)
	}
	if errs := check(t, path, []byte("one\nTWO\nthree\n")); len(errs) != 1 || !strings.Contains(errs[0], "from line %d") {
		t.Errorf("a difference reported as %v", errs)
	}
	if errs := check(t, filepath.Join(t.TempDir(), "none.txt"), []byte("x")); len(errs) != 1 || !strings.Contains(errs[0], "-update to create it") {
		t.Errorf("a missing file reported as %v", errs)
	}
}
