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

	"github.com/tei-sidecar/tei-sidecar/plan"
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

// TestServeRefusesBadConfig checks that a missing URL is a clear error when
// serve is told to launch nothing.
func TestServeRefusesBadConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("TEI_EMBED_URL", "")
	var out, errb bytes.Buffer
	code := run([]string{"serve", "--launch", "none"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "TEI_EMBED_URL is required") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// dryRun runs `serve --dry-run` in-process and returns its output.
func dryRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(t.TempDir())
	var out, errb bytes.Buffer
	code = run(append([]string{"serve", "--dry-run"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestServeDryRun checks that --dry-run prints what each launch mode would
// run, with secrets redacted, and starts nothing.
func TestServeDryRun(t *testing.T) {
	l4, err := filepath.Abs("../../hwdetect/testdata/nvidia-smi/l4")
	if err != nil {
		t.Fatal(err)
	}
	fakeRouter := filepath.Join(t.TempDir(), "text-embeddings-router")
	if err := os.WriteFile(fakeRouter, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		has    []string
		hasNot []string
		errHas string
	}{
		{
			name: "docker on a GPU machine",
			env: map[string]string{"PATH": l4 + string(os.PathListSeparator) + os.Getenv("PATH"),
				"HF_TOKEN": "hf_very_secret", "EMBEDDING_MODEL": "BAAI/bge-small-en-v1.5", "TEI_PROJECT": "dry",
				"TEI_API_KEY": "tei_very_secret"},
			args: []string{"--launch", "docker", "--fallback-cpu"},
			has: []string{
				"launch           docker: asked for", "container     dry-embed", "container     dry-rerank",
				"image         " + plan.Registry + ":89-1.9.3", "gpus          0", "HF_TOKEN=[redacted]", "API_KEY=[redacted]",
				"TEI API key      TEI_API_KEY", "--model-id BAAI/bge-small-en-v1.5", "--hostname 0.0.0.0", "--huggingface-hub-cache /data",
				"volume tei-sidecar-models at /data", "tei-sidecar.plan-hash=", "tei-sidecar.role=rerank", "CPU fallback     true",
				"image here    ", // present locally or not: tests elsewhere may tag it

			},
			hasNot: []string{"hf_very_secret", "tei_very_secret", "level=WARN"},
		},
		{
			name: "docker, three embedding replicas on the CPU",
			env: map[string]string{"EMBEDDING_DEVICE": "cpu", "EMBEDDING_REPLICAS": "3", "RERANK_ENABLE": "false",
				"EMBEDDING_MODEL": "BAAI/bge-small-en-v1.5", "TEI_PROJECT": "dry"},
			args: []string{"--launch", "docker"},
			has: []string{
				"replicas         3 embedding, 0 rerank", "TEI API key      a random one",
				"embed: embedding model", "embed-1: embedding model", "embed-2: embedding model",
				"container     dry-embed\n", "container     dry-embed-1\n", "container     dry-embed-2\n",
				"tei-sidecar.replica=2", "API_KEY=[redacted]",
			},
			hasNot: []string{"dry-rerank", "dry-embed-3"},
		},
		{
			name: "process with a model cache directory",
			env: map[string]string{"TEI_BINARY": fakeRouter, "HOSTNAME": "leak", "PORT": "1", "HF_TOKEN": "hf_very_secret",
				"TEI_MODEL_CACHE": "/srv/models", "RERANK_ENABLE": "false", "EMBEDDING_DEVICE": "cpu"},
			args: []string{"--launch", "process"},
			has: []string{"binary        " + fakeRouter, "--hostname 127.0.0.1", "--port <free port>",
				"--huggingface-hub-cache /srv/models", "HF_TOKEN=[redacted]", "API_KEY=[redacted]", "127.0.0.1:<a free port"},
			hasNot: []string{"hf_very_secret", "HOSTNAME=", "PORT=", "--huggingface-hub-cache /data", "rerank model"},
		},
		{
			name: "URLs given",
			env:  map[string]string{"TEI_EMBED_URL": "http://127.0.0.1:9"},
			has:  []string{"launch: none", "embedding TEI: http://127.0.0.1:9", "rerank TEI: (the embedding TEI)"},
		},
		{
			name:   "URL and a launch mode conflict",
			env:    map[string]string{"TEI_EMBED_URL": "http://127.0.0.1:9"},
			args:   []string{"--launch", "docker"},
			code:   2,
			errHas: "TEI_EMBED_URL is set, so there is nothing to launch",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"TEI_EMBED_URL", "TEI_RERANK_URL", "TEI_LAUNCH", "TEI_MODEL_CACHE", "TEI_BINARY", "TEI_API_KEY"} {
				t.Setenv(k, "") // restored after the test
				os.Unsetenv(k)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errs := dryRun(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			for _, s := range tc.has {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.hasNot {
				if strings.Contains(out+errs, s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
			if !strings.Contains(errs, tc.errHas) {
				t.Errorf("stderr lacks %q: %s", tc.errHas, errs)
			}
		})
	}
}

// TestEmptyVariablesMeanUnset is a regression test: `TEI_LAUNCH=` or
// `EMBEDDING_CACHE_SIZE=` left empty in a .env made kong fail to parse
// instead of taking the default.
func TestEmptyVariablesMeanUnset(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("TEI_LAUNCH", "")
	t.Setenv("EMBEDDING_CACHE_SIZE", "")
	t.Setenv("TEI_KEEP", "")
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	code := run([]string{"serve", "--dry-run", "--tei-embed-url", "http://127.0.0.1:1"}, &out, &errb)
	if code != 0 {
		t.Errorf("serve --dry-run with empty variables: exit %d: %s", code, errb.String())
	}
}
