package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelp is a regression test: bare `tei-sidecar` printed an error
// without usage, and `tei-sidecar help` was refused. Both print every
// command with its summary; `help COMMAND` prints the command's flags.
func TestHelp(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{nil, {"help"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Errorf("%q: exit %d, stderr %s", args, code, errb.String())
		}
		for _, cmd := range []string{"serve", "detect", "bench", "tune", "version", "compose", "healthcheck"} {
			if !strings.Contains(out.String(), "\n  "+cmd+" ") {
				t.Errorf("%q: help lacks %s:\n%s", args, cmd, out.String())
			}
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"help", "tune"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Usage: tei-sidecar tune") {
		t.Errorf("help tune: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
