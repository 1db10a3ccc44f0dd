// Package golden compares test output with files under testdata, for
// tests only: go test ./PKG -update rewrites the files instead, after a
// deliberate change, whose diff is then read and committed.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -update is defined here unless a dependency of the test binary has
// defined it already (gotest.tools' golden package, linked in through
// Compose's modules, does); it is then shared.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite testdata's golden files")
	}
}

// Updating reports whether the test runs with -update.
func Updating() bool { return flag.Lookup("update").Value.String() == "true" }

// Check compares got with the file at path, or with -update writes it
// (and the directories above it). A difference is reported with the first
// line that differs and a few lines after it, from both.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if Updating() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	line := 0
	for line < min(len(g), len(w)) && g[line] == w[line] {
		line++
	}
	at := func(l []string) string { return strings.Join(l[line:min(line+5, len(l))], "\n") }
	t.Errorf("%s differs from what the code writes now from line %d (run with -update and read the diff):\nnow:\n%s\nwas:\n%s", path, line+1, at(g), at(w))
}
