package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer safe to read while run writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func noEnv(string) string { return "" }

func TestRunExitsEarly(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring wanted in stdout
		stderr     string // substring wanted in stderr
		notStarted bool
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: "not TEI"},
		{name: "version", args: []string{"--version"}, code: 0, stdout: "text-embeddings-router 1.9.3 (teisim"},
		{name: "unknown flag", args: []string{"--model-id", "x", "--nope"}, code: 2, stderr: "unknown flag --nope"},
		{name: "no model id", args: nil, code: 2, stderr: "--model-id"},
		{
			name: "warm-up out of memory", args: []string{"--model-id", "x", "--max-batch-tokens", "32768", "--sim-oom-above-batch-tokens", "16384"},
			code: 1, stdout: "Warming up model", stderr: `DriverError(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")`,
		},
		{
			name: "compute cap mismatch", args: []string{"--model-id", "x", "--sim-fail-compute-cap", "86:90"},
			code: 1, stdout: "Starting model backend", stderr: "Runtime compute cap 86 is not compatible with compile time compute cap 90",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			code := run(t.Context(), tt.args, noEnv, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stdout: %s\nstderr: %s\nwant %q and %q", stdout.String(), stderr.String(), tt.stdout, tt.stderr)
			}
			if strings.Contains(stdout.String(), "Ready") {
				t.Error("it said Ready")
			}
		})
	}
}

var serverLine = regexp.MustCompile(`Starting HTTP server: (\S+?)"?(\s|$)`)

// startRun runs the binary's run in the background and waits for its HTTP
// server line. It returns the address, the output and a stop function that
// cancels (SIGTERM) and returns the exit code.
func startRun(t *testing.T, args ...string) (addr string, stdout *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stdout = &syncBuffer{}
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, noEnv, stdout, &stderr) }()
	stop = func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return after cancel")
			return -1
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := serverLine.FindStringSubmatch(stdout.String()); m != nil {
			return m[1], stdout, stop
		}
		select {
		case code := <-done:
			t.Fatalf("run exited %d before serving\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("no server line\n%s", stdout.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunServesAfterStartupDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	began := time.Now()
	addr, stdout, stop := startRun(t, "--model-id", "BAAI/bge-small-en-v1.5", "--hostname", "127.0.0.1", "--port", "0", "--sim-startup-delay", delay.String())
	if took := time.Since(began); took < delay {
		t.Errorf("port opened after %v, before the %v start-up delay", took, delay)
	}
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/health: %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
	if code := stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	out := stdout.String()
	steps := []string{"not TEI", "Starting download", "Starting model backend", "Warming up model", "Starting HTTP server", "Ready", "graceful shutdown"}
	last := -1
	for _, step := range steps {
		i := strings.Index(out, step)
		if i < last {
			t.Errorf("%q missing or out of order in:\n%s", step, out)
		}
		last = i
	}
}

func TestRunJSONLogsAndHostnameFallback(t *testing.T) {
	_, stdout, stop := startRun(t, "--model-id", "x", "--hostname", "some-container-id", "--port", "0", "--json-output")
	if code := stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
	var messages []string
	for line := range strings.SplitSeq(strings.TrimSpace(stdout.String()), "\n") {
		var rec struct {
			Level  string         `json:"level"`
			Fields map[string]any `json:"fields"`
			Target string         `json:"target"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		messages = append(messages, rec.Fields["message"].(string))
	}
	joined := strings.Join(messages, "\n")
	for _, want := range []string{"Invalid hostname, defaulting to 0.0.0.0", "Starting HTTP server: 0.0.0.0:", "Ready"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no %q in %q", want, messages)
		}
	}
}

func TestRunStopsDuringStartup(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--model-id", "x", "--port", "0", "--sim-startup-delay", "1h"}, noEnv, &stdout, &stderr)
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM during the start-up delay was not honoured")
	}
}

// TestRunSaysItIsASimulator checks the binary cannot pass for TEI: its first
// log line says it is a simulator, and /info carries "simulator". A CPU
// backend logs TEI's warnings about the forced batch cap.
func TestRunSaysItIsASimulator(t *testing.T) {
	addr, stdout, stop := startRun(t, "--model-id", "x", "--hostname", "127.0.0.1", "--port", "0", "--sim-backend", "candle")
	resp, err := http.Get("http://" + addr + "/info")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if err != nil {
		t.Fatal(err)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if info["simulator"] != "teisim" || info["max_batch_requests"] != 4.0 {
		t.Errorf("/info: simulator %v, max_batch_requests %v", info["simulator"], info["max_batch_requests"])
	}
	lines := strings.Split(stdout.String(), "\n")
	if !strings.Contains(lines[0], " WARN ") || !strings.Contains(lines[0], "This is teisim, a simulator of text-embeddings-inference") || !strings.Contains(lines[0], "not TEI") {
		t.Errorf("first line %q does not say it is a simulator", lines[0])
	}
	for _, want := range []string{"Backend does not support a batch size > 4", "forcing `max_batch_requests=4`"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("no %q in:\n%s", want, stdout.String())
		}
	}
}
