package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// fakeServer is a timing model for sweepGrid: throughput grows with inputs
// in flight up to capacity, latency grows with them, and some settings are
// refused.
type fakeServer struct {
	capacity int                     // inputs in flight that saturate it
	refuse   func(batch, n int) bool // answers 422/429
	perInput time.Duration           // p95 per input in flight
	limit    time.Duration           // the tune's latency limit
}

func (f fakeServer) measure(_ context.Context, b, n int) (Step, error) {
	st := Step{Batch: b, Concurrency: n, Outcome: OutcomeOK}
	if f.refuse != nil && f.refuse(b, n) {
		st.Outcome, st.Reason = OutcomeRefused, "HTTP 422: too big"
		return st, nil
	}
	st.Throughput = float64(min(b*n, f.capacity)) * 10
	st.P95 = (time.Duration(b*n) * f.perInput).Seconds()
	if f.limit > 0 && time.Duration(st.P95*float64(time.Second)) > f.limit {
		st.Outcome, st.Reason = OutcomeSlow, "p95 above the limit"
	}
	return st, nil
}

// trace renders steps as "BxN" with a mark for outcomes other than ok:
// ! refused, ~ slow, - skipped.
func trace(steps []Step) string {
	marks := map[string]string{OutcomeOK: "", OutcomeRefused: "!", OutcomeSlow: "~", OutcomeSkipped: "-"}
	var parts []string
	for _, s := range steps {
		parts = append(parts, fmt.Sprintf("%dx%d%s", s.Batch, s.Concurrency, marks[s.Outcome]))
	}
	return strings.Join(parts, " ")
}

func TestSweepGrid(t *testing.T) {
	batches, concs := []int{1, 2, 4, 8, 16, 32}, []int{1, 2, 4, 8}
	for _, tc := range []struct {
		name      string
		srv       fakeServer
		permits   int
		wantTrace string
		wantRec   string
	}{
		{
			name:      "saturates at 16 inputs in flight; the fewest clients wins ties",
			srv:       fakeServer{capacity: 16},
			wantTrace: "1x1 1x2 1x4 1x8 2x1 2x2 2x4 2x8 4x1 4x2 4x4 4x8 8x1 8x2 8x4 8x8 16x1 16x2 16x4 16x8 32x1 32x2 32x4 32x8",
			wantRec:   "16x1",
		},
		{
			name: "a refusal stops its concurrency for larger batches, and the batch direction when one client is refused",
			srv: fakeServer{capacity: 1000, refuse: func(b, n int) bool {
				return b*n > 32 || b > 16 // 429 above 32 permits, 422 above 16 inputs
			}},
			wantTrace: "1x1 1x2 1x4 1x8 2x1 2x2 2x4 2x8 4x1 4x2 4x4 4x8 8x1 8x2 8x4 8x8! 16x1 16x2 16x4! 32x1!",
			wantRec:   "16x2", // 32 in flight is the best; of 4x8, 8x4, 16x2 the fewest clients
		},
		{
			name:      "too slow stops the same way",
			srv:       fakeServer{capacity: 8, perInput: 100 * time.Millisecond, limit: 1 * time.Second},
			wantTrace: "1x1 1x2 1x4 1x8 2x1 2x2 2x4 2x8~ 4x1 4x2 4x4~ 8x1 8x2~ 16x1~",
			wantRec:   "8x1",
		},
		{
			name:      "settings beyond TEI's permits are skipped, not sent",
			srv:       fakeServer{capacity: 1000},
			permits:   16,
			wantTrace: "1x1 1x2 1x4 1x8 2x1 2x2 2x4 2x8 4x1 4x2 4x4 4x8- 8x1 8x2 8x4- 16x1 16x2- 32x1-",
			wantRec:   "16x1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []Step
			steps, err := sweepGrid(t.Context(), batches, concs, tc.permits, tc.srv.measure, func(st Step) { seen = append(seen, st) })
			if err != nil {
				t.Fatal(err)
			}
			if got := trace(steps); got != tc.wantTrace {
				t.Errorf("steps\n got %s\nwant %s", got, tc.wantTrace)
			}
			if got := trace(seen); got != tc.wantTrace {
				t.Errorf("steps reported as they came\n got %s\nwant %s", got, tc.wantTrace)
			}
			_, rec, ok := knee(steps, 0.95)
			if got := fmt.Sprintf("%dx%d", rec.Batch, rec.Concurrency); !ok || got != tc.wantRec {
				t.Errorf("recommended %s (ok %v), want %s", got, ok, tc.wantRec)
			}
		})
	}
}

func TestKnee(t *testing.T) {
	step := func(b, n int, thr, p95 float64) Step {
		return Step{Batch: b, Concurrency: n, Throughput: thr, P95: p95, Outcome: OutcomeOK}
	}
	for _, tc := range []struct {
		name       string
		steps      []Step
		frac       float64
		best, want string
	}{
		{"only the best qualifies at 100%", []Step{step(1, 1, 50, 0), step(2, 1, 99, 0), step(4, 1, 100, 0)}, 1, "4x1", "4x1"},
		{"95% admits a smaller one", []Step{step(1, 1, 50, 0), step(2, 1, 96, 0), step(4, 1, 100, 0)}, 0.95, "4x1", "2x1"},
		{"same inputs in flight: fewer clients", []Step{step(2, 2, 100, 0.01), step(4, 1, 98, 0.02)}, 0.95, "2x2", "4x1"},
		{"same setting size and clients cannot tie; lower p95 among equals", []Step{step(4, 1, 100, 0.03), step(4, 1, 100, 0.02)}, 0.95, "4x1", "4x1"},
		{"slow and refused steps never count", []Step{step(1, 1, 10, 0), {Batch: 8, Concurrency: 1, Throughput: 1000, Outcome: OutcomeSlow}}, 0.95, "1x1", "1x1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			best, rec, ok := knee(tc.steps, tc.frac)
			if !ok {
				t.Fatal("no choice")
			}
			if got := fmt.Sprintf("%dx%d", best.Batch, best.Concurrency); got != tc.best {
				t.Errorf("best %s, want %s", got, tc.best)
			}
			if got := fmt.Sprintf("%dx%d", rec.Batch, rec.Concurrency); got != tc.want {
				t.Errorf("recommended %s, want %s", got, tc.want)
			}
		})
	}
	if _, _, ok := knee([]Step{{Outcome: OutcomeRefused}}, 0.95); ok {
		t.Error("a refused step was chosen")
	}
}

// TestTuneSimulator checks the knee against the simulator's timing model.
// One backend worker runs batches of at most --max-batch-tokens tokens; each
// costs --sim-batch-cost (20ms) plus nothing per token. Every input here
// has 6 tokens and the budget is 48, so a backend batch holds 8 inputs:
// throughput is at most 8/20ms = 400 inputs/s, and a setting with b×n
// inputs in flight gets at most min(b×n, 8)/8 of it. So the recommendation
// needs at least 8 inputs in flight; at 16 in flight the queue always holds
// a full next batch, so nothing beyond 16 is needed. The batch direction
// goes past TEI's max_client_batch_size (32) to 64 and must stop at the
// 422; settings beyond the 64 permits are skipped.
func TestTuneSimulator(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-m3", "--sim-dim", "16",
		"--sim-batch-cost", "20ms", "--sim-token-cost", "0s",
		"--max-batch-tokens", "48", "--max-concurrent-requests", "64")
	const text = "hello world"
	if n := simTokens(t, url, unique(text)); n != 6 {
		t.Fatalf("%q has %d tokens, the test's arithmetic assumes 6", unique(text), n)
	}

	rep, err := Tune(t.Context(), TuneOptions{
		URL: url, Texts: []string{text},
		MaxBatch: 64, MaxConcurrency: 8,
		StepDuration: 200 * time.Millisecond, StepRequests: 40,
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTuneText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	rec := rep.Recommended
	if inFlight := rec.Batch * rec.Concurrency; inFlight < 8 || inFlight > 16 {
		t.Errorf("recommended batch %d × %d clients = %d in flight, want 8 to 16\n%s", rec.Batch, rec.Concurrency, inFlight, out)
	}
	if rep.Best.Throughput < 300 || rep.Best.Throughput > 420 {
		t.Errorf("best throughput %.1f inputs/s, the model allows at most 400\n%s", rep.Best.Throughput, out)
	}
	first := rep.Steps[0]
	if first.Batch != 1 || first.Concurrency != 1 || first.Throughput < 30 || first.Throughput > 52 {
		t.Errorf("first step %+v, want batch 1 × 1 at about 1/20ms = 50 inputs/s", first)
	}
	last := rep.Steps[len(rep.Steps)-1]
	if last.Batch != 64 || last.Concurrency != 1 || last.Outcome != OutcomeRefused || !strings.Contains(last.Reason, "HTTP 422") {
		t.Errorf("last step %+v, want batch 64 refused with 422", last)
	}
	skipped := 0
	for _, s := range rep.Steps {
		if s.Outcome == OutcomeSkipped {
			skipped++
		}
	}
	if skipped == 0 {
		t.Errorf("no step skipped for the 64 permits\n%s", out)
	}
	// Nothing reads EMBEDDING_CONCURRENCY, so tune no longer writes it:
	// the concurrency is advice.
	want := []plan.EnvVar{{Key: "EMBEDDING_BATCH", Value: fmt.Sprint(rec.Batch)}}
	if fmt.Sprint(rep.Env) != fmt.Sprint(want) {
		t.Errorf("env = %v, want %v", rep.Env, want)
	}
	for _, want := range []string{
		fmt.Sprintf("Settings (what --write-env writes):\n  EMBEDDING_BATCH=%d\n\n", rec.Batch),
		"EMBEDDING_BATCH is the client's batch",
		"a larger TEI batch limit is TEI_MAX_CLIENT_BATCH_SIZE",
		fmt.Sprintf("Concurrency %d is advice, not a setting: keep that many embed calls in flight from the client", rec.Concurrency),
		"(model BAAI/bge-m3, TEI simulator (tests/teisim), not TEI;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "EMBEDDING_CONCURRENCY") || strings.Contains(out, "TEI 1.9.3") {
		t.Errorf("output names EMBEDDING_CONCURRENCY or calls the simulator TEI:\n%s", out)
	}
}

// simTokens asks the simulator how many tokens text has.
func simTokens(t *testing.T, url, text string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"inputs": text})
	resp, err := http.Post(url+"/tokenize", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var toks [][]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&toks); err != nil || len(toks) != 1 {
		t.Fatalf("tokenize: %v %v", err, toks)
	}
	return len(toks[0])
}

// TestTuneCallerError checks that a caller error (a 401 from a TEI started
// with --api-key) ends the tune instead of passing for a limit, whether
// /info or a step meets it.
func TestTuneCallerError(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-m3", "--api-key", "right", "--sim-batch-cost", "0s", "--sim-token-cost", "0s")
	o := TuneOptions{URL: url, Token: "wrong", MaxBatch: 4, MaxConcurrency: 2, StepDuration: 50 * time.Millisecond}
	if _, err := Tune(t.Context(), o); err == nil || !strings.Contains(err.Error(), "/info: tei: 401") {
		t.Errorf("err = %v, want /info's 401", err)
	}
	o.Token = "right"
	if rep, err := Tune(t.Context(), o); err != nil || len(rep.Steps) != 6 {
		t.Errorf("with the right token: %v, %d steps", err, len(rep.Steps))
	}

	// /info open, /embed refused.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/info" {
			fmt.Fprint(w, `{"model_id":"m","max_client_batch_size":4,"max_concurrent_requests":512}`)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer ts.Close()
	o.URL = ts.URL
	if _, err := Tune(t.Context(), o); err == nil || !strings.Contains(err.Error(), "batch 1 × 1: POST "+ts.URL+"/embed: HTTP 401") {
		t.Errorf("err = %v, want the step's 401", err)
	}
}

func TestWriteEnvFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	old := `# tei-sidecar detect: cuda
# tei-sidecar detect: embedding BAAI/bge-m3 on cuda:0 with image
BEARER_TOKEN=abc,def
# my datastore
DATASTORE=qdrant
EMBEDDING_DEVICE=cuda:0
export EMBEDDING_BATCH=64
RERANK_K=10
`
	if err := os.WriteFile(path, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	backup, err := WriteEnvFile(path, []plan.EnvVar{{Key: EnvBatch, Value: "16"}, {Key: EnvTEIMaxClientBatch, Value: "64"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := strings.Replace(old, "export EMBEDDING_BATCH=64", "export EMBEDDING_BATCH=16", 1) + "\nTEI_MAX_CLIENT_BATCH_SIZE=64\n"
	if string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	if b, _ := os.ReadFile(backup); backup != path+".bak" || string(b) != old {
		t.Errorf("backup %s holds:\n%s", backup, b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the old file's 0640", fi.Mode().Perm())
	}

	// A new file gets just the settings, and no backup.
	fresh := filepath.Join(dir, "new.env")
	backup, err = WriteEnvFile(fresh, []plan.EnvVar{{Key: EnvBatch, Value: "8"}})
	if got, _ := os.ReadFile(fresh); err != nil || backup != "" || string(got) != "EMBEDDING_BATCH=8\n" {
		t.Errorf("new file: %v, backup %q, content %q", err, backup, got)
	}
}
