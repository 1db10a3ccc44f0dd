package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sidecar is a running `tei-sidecar serve` whose log a test reads.
type sidecar struct {
	cmd  *exec.Cmd
	base string // http://addr

	mu    sync.Mutex
	lines []map[string]any
	raw   strings.Builder
	ended chan struct{}
}

// startSidecar runs `bin serve` with the environment env added to this
// process's (JSON logs, a free port), and waits until it listens. It is
// killed when the test ends, unless it has exited.
func startSidecar(t *testing.T, bin string, env ...string) *sidecar {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sidecar{cmd: cmd, ended: make(chan struct{})}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.ended
		_ = cmd.Wait() // an error when stop already waited
	})
	addr := make(chan string, 1)
	go func() {
		defer close(s.ended)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			_ = json.Unmarshal(sc.Bytes(), &m)
			s.mu.Lock()
			s.raw.WriteString(sc.Text() + "\n")
			if m != nil {
				s.lines = append(s.lines, m)
				if m["msg"] == "listening" {
					addr <- m["addr"].(string)
				}
			}
			s.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		s.base = "http://" + a
	case <-s.ended:
		t.Fatalf("the sidecar exited before listening:\n%s", s.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("the sidecar did not listen:\n%s", s.log())
	}
	return s
}

// log is everything the sidecar logged so far.
func (s *sidecar) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}

// records returns the log records whose msg is msg.
func (s *sidecar) records(msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, m := range s.lines {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitReadyStatus polls /ready until it answers want.
func (s *sidecar) waitReadyStatus(t *testing.T, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := 0
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.base + "/ready")
		if err == nil {
			last = resp.StatusCode
			resp.Body.Close()
			if last == want {
				return
			}
		}
		select {
		case <-s.ended:
			t.Fatalf("the sidecar exited:\n%s", s.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("/ready answered %d, not %d, for %s:\n%s", last, want, within, s.log())
}

// stop sends SIGTERM and waits for a clean exit.
func (s *sidecar) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.ended:
	case <-time.After(60 * time.Second):
		t.Fatalf("the sidecar did not exit after SIGTERM:\n%s", s.log())
	}
	if err := s.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, s.log())
	}
}

// post sends a JSON body to the sidecar and returns the status and body.
func (s *sidecar) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(s.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
