package bench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// limited starts simulators of the sidecar's CPU plan, whose TEI takes at
// most 16 inputs per call.
func limited(t *testing.T) (embedURL, rerankURL string) {
	t.Helper()
	lim := append([]string{"--max-client-batch-size", "16"}, simArgs...)
	_, embedURL = teisim.Start(t, append([]string{"--model-id", "BAAI/bge-m3"}, lim...)...)
	_, rerankURL = teisim.Start(t, append([]string{"--model-id", "BAAI/bge-reranker-v2-m3"}, lim...)...)
	return embedURL, rerankURL
}

// TestBenchSplitsForTheBaseline is a regression test: comparing the sidecar
// with TEI on the sidecar's CPU plan failed at "Rerank 20 passages", which
// exceeds TEI's max_client_batch_size of 16 (TEI answered 422). The
// baseline now splits such calls, as the sidecar does, and says so.
func TestBenchSplitsForTheBaseline(t *testing.T) {
	embedURL, rerankURL := limited(t)
	url := sidecar(t, embedURL, rerankURL)
	o := quick(Options{Target: Target{URL: url}, Baseline: &Target{URL: embedURL, RerankURL: rerankURL}})
	o.Sweep = nil
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Baseline.Batch != 16 || rep.Baseline.RerankBatch != 16 || rep.Target.Batch != 0 {
		t.Errorf("batches: target %d, baseline %d and %d; want 0 (the sidecar splits) and TEI's 16", rep.Target.Batch, rep.Baseline.Batch, rep.Baseline.RerankBatch)
	}
	splits := map[string]string{}
	for _, r := range rep.Rows {
		if r.Baseline.SplitAt > 0 || r.Target.SplitAt > 0 {
			splits[r.Name] = r.Note
		}
		if r.Target.Calls != map[bool]int{true: 10, false: 1}[r.Kind == KindQueries] {
			t.Errorf("%s: the sidecar got %d calls per iteration", r.Name, r.Target.Calls)
		}
	}
	want := map[string]string{
		"20 documents embedding":           "baseline split each call into 2 concurrent calls of at most 16 docs",
		"20 documents embedding, uncached": "baseline split each call into 2 concurrent calls of at most 16 docs",
		"50 documents embedding":           "baseline split each call into 4 concurrent calls of at most 16 docs",
		"50 documents embedding, uncached": "baseline split each call into 4 concurrent calls of at most 16 docs",
		"Rerank 20 passages":               "baseline split each call into 2 concurrent calls of at most 16 passages",
		"Rerank 20 passages, uncached":     "baseline split each call into 2 concurrent calls of at most 16 passages",
	}
	if len(splits) != len(want) {
		t.Errorf("split rows %q, want %d", splits, len(want))
	}
	for name, note := range want {
		if !strings.HasPrefix(splits[name], note) {
			t.Errorf("%s: note %q, want %q…", name, splits[name], note)
		}
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Baseline: " + embedURL + " (TEI simulator (tests/teisim), not TEI; face tei; model BAAI/bge-m3; calls of more than 16 texts split)",
		"  - Rerank 20 passages; Rerank 20 passages, uncached: baseline split each call into 2 concurrent calls of at most 16 passages (its max_client_batch_size), as the sidecar splits for TEI.\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestBenchEmbeddingOnlyTEI checks that an embedding TEI without a
// reranker URL skips the rerank rows, saying so, instead of failing: as
// the baseline, the rows run on the target alone; as the target, they are
// left out.
func TestBenchEmbeddingOnlyTEI(t *testing.T) {
	embedURL, rerankURL := limited(t)
	url := sidecar(t, embedURL, rerankURL)

	t.Run("baseline", func(t *testing.T) {
		o := quick(Options{Target: Target{URL: url}, Baseline: &Target{URL: embedURL}})
		o.Sweep = nil
		rep, err := Run(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rep.Baseline.RerankSkipped, "serves BAAI/bge-m3, an embedding model") {
			t.Errorf("rerank_skipped = %q", rep.Baseline.RerankSkipped)
		}
		reranks := 0
		for _, r := range rep.Rows {
			skipped := r.Baseline.Skipped != ""
			if skipped != (r.Kind == KindRerank) {
				t.Errorf("%s: baseline skipped %q", r.Name, r.Baseline.Skipped)
			}
			if r.Kind != KindRerank {
				continue
			}
			reranks++
			if r.Ratio != nil || r.Speedup != nil || len(r.Target.Times) != r.Iterations || r.Baseline.Calls != 0 {
				t.Errorf("%s: ratio %v, %d target times, baseline %+v", r.Name, r.Ratio, len(r.Target.Times), r.Baseline)
			}
		}
		if reranks != 4 {
			t.Errorf("%d rerank rows, want 2 and their variants", reranks)
		}
		var buf bytes.Buffer
		if err := WriteText(&buf, rep); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"The rerank rows ran on the target only: " + embedURL + " serves BAAI/bge-m3, an embedding model",
			"Rerank 20 passages                           skipped  (see the notes)      -\n",
		} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, buf.String())
			}
		}
	})
	t.Run("target", func(t *testing.T) {
		o := quick(Options{Target: Target{URL: embedURL}})
		o.Sweep = nil
		rep, err := Run(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Rows {
			if r.Kind == KindRerank {
				t.Errorf("rerank row %q ran", r.Name)
			}
		}
		if len(rep.Notes) != 1 || !strings.HasPrefix(rep.Notes[0], "The rerank rows are left out: "+embedURL+" serves BAAI/bge-m3") {
			t.Errorf("notes = %q", rep.Notes)
		}
	})
}
