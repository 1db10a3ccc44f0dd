package main

import (
	"bytes"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// buildSimRouter compiles the TEI simulator as text-embeddings-router.
func buildSimRouter(t *testing.T) string {
	t.Helper()
	bin, err := teisim.BuildRouter(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// running reports whether pid runs (a zombie does not).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// TestServeLaunchesProcess runs `serve --launch process` with the simulator
// as TEI's binary, with variables in the sidecar's environment that TEI
// would read as flags: the models serve as planned, a killed TEI is
// restarted, and SIGTERM ends every TEI process.
func TestServeLaunchesProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	router := buildSimRouter(t)
	bin := buildSidecar(t)
	sc := startSidecar(t, bin,
		"TEI_LAUNCH=process", "TEI_BINARY="+router, "TEI_EMBED_URL=", "BEARER_TOKEN=",
		"EMBEDDING_MODEL="+testEmbedModel, "RERANK_MODEL="+testRerankModel, "TEI_HEALTH_INTERVAL=250ms",
		"HOSTNAME=not-an-address", "PORT=1", "MODEL_ID=wrong/model", "API_KEY=leaked", "MAX_CLIENT_BATCH_SIZE=2")
	sc.waitReadyStatus(t, http.StatusOK, 30*time.Second)

	pids := map[string]int{}
	for _, r := range sc.records("started TEI") {
		pids[r["tei"].(string)] = int(r["pid"].(float64))
	}
	if len(pids) != 2 {
		t.Fatalf("started %v, want embed and rerank:\n%s", pids, sc.log())
	}
	// Five inputs pass although MAX_CLIENT_BATCH_SIZE=2 is in the sidecar's
	// environment: TEI got the plan's batch size, not the variable.
	if st, body := sc.post(t, "/embed", `{"inputs":["a","b","c","d","e"]}`); st != 200 || strings.Count(body, "],[") != 4 {
		t.Errorf("embed: %d %.200s", st, body)
	}
	if st, _ := sc.post(t, "/rerank", `{"query":"q","texts":["a","b"]}`); st != 200 {
		t.Errorf("rerank: %d", st)
	}
	if !strings.Contains(sc.log(), `"tei":"rerank"`) || !strings.Contains(sc.log(), "Warming up model") {
		t.Error("TEI's log is not streamed with its role")
	}

	if err := syscall.Kill(pids["rerank"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sc.waitReadyStatus(t, http.StatusServiceUnavailable, 10*time.Second)
	sc.waitReadyStatus(t, http.StatusOK, 30*time.Second)
	if st, _ := sc.post(t, "/rerank", `{"query":"q","texts":["after","restart"]}`); st != 200 {
		t.Errorf("rerank after the restart: %d", st)
	}
	started := sc.records("started TEI")
	restarted := int(started[len(started)-1]["pid"].(float64))
	if len(started) != 3 || restarted == pids["rerank"] {
		t.Fatalf("%d starts, want a third for the rerank TEI:\n%s", len(started), sc.log())
	}

	sc.stop(t)
	for _, pid := range []int{pids["embed"], restarted} {
		if running(pid) {
			t.Errorf("TEI (pid %d) outlived the sidecar", pid)
		}
	}
}
