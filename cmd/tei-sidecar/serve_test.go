package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// buildSidecar compiles tei-sidecar into a temporary directory.
func buildSidecar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tei-sidecar")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestServeDrainsOnSIGTERM starts `tei-sidecar serve` in front of the
// simulator, sends SIGTERM while a slow request is in flight, and wants that
// request answered and the process to exit 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	_, teiURL := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-batch-cost", "400ms", "--sim-token-cost", "0s")
	bin := buildSidecar(t)
	cmd := exec.Command(bin, "serve", "--tei-embed-url", teiURL, "--listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "BEARER_TOKEN=")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Learn the address from the "listening" log line, then wait for ready.
	var logs bytes.Buffer
	sc := bufio.NewScanner(stderr)
	addr := ""
	for addr == "" && sc.Scan() {
		line := sc.Text()
		logs.WriteString(line + "\n")
		if i := strings.Index(line, `"addr":"`); i >= 0 && strings.Contains(line, "listening") {
			addr = line[i+8:]
			addr = addr[:strings.IndexByte(addr, '"')]
		}
	}
	if addr == "" {
		t.Fatalf("no listening line:\n%s", logs.String())
	}
	go io.Copy(io.Discard, stderr)
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("sidecar never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	result := make(chan int, 1)
	go func() {
		resp, err := http.Post(base+"/embed", "application/json", strings.NewReader(`{"inputs":"in flight at shutdown"}`))
		if err != nil {
			result <- -1
			return
		}
		resp.Body.Close()
		result <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // the request is now waiting on TEI
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st := <-result; st != 200 {
		t.Errorf("in-flight request got %d, want 200", st)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestServeRefusesBadConfig checks that a missing URL is a clear error.
func TestServeRefusesBadConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("TEI_EMBED_URL", "")
	var out, errb bytes.Buffer
	code := run([]string{"serve"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "TEI_EMBED_URL is required") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}
