package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// TestMergeProperty fires concurrent requests made of random mixes of hits,
// misses and duplicates (with a cache small enough to evict, and TEI taking
// few inputs per call) and checks that response[i] is always TEI's own
// embedding of input[i], byte for byte. A Python gateway shipped this merge
// wrong five times; this is the test that would have caught it.
func TestMergeProperty(t *testing.T) {
	_, ref := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4",
		"--sim-batch-cost", "2ms", "--sim-token-cost", "0s")
	cfg := testConfig(url)
	cfg.CacheSize = 24
	_, p := startProxy(t, cfg)

	pool := make([]string, 60)
	for i := range pool {
		pool[i] = fmt.Sprintf("text %d of the pool", i)
	}
	// TEI's own answer for each text, through the reference server.
	want := make(map[string][]byte, len(pool))
	for lo := 0; lo < len(pool); lo += 30 {
		chunk := pool[lo : lo+30]
		st, _, b := post(t, ref, "/embed", mustJSON(t, map[string]any{"inputs": chunk}))
		if st != 200 {
			t.Fatalf("%d %s", st, b)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			t.Fatal(err)
		}
		for i, s := range chunk {
			want[s] = items[i]
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 25 {
				n := 1 + r.IntN(12)
				inputs := make([]string, n)
				for i := range inputs {
					inputs[i] = pool[r.IntN(len(pool))]
				}
				st, _, b, err := tryPost(p, "/embed", inputsJSON(inputs))
				if err != nil {
					errs <- err
					return
				}
				if st != 200 {
					errs <- fmt.Errorf("status %d %s", st, b)
					return
				}
				var got []json.RawMessage
				if err := json.Unmarshal(b, &got); err != nil || len(got) != n {
					errs <- fmt.Errorf("%d items for %d inputs (%v)", len(got), n, err)
					return
				}
				for i, in := range inputs {
					if !bytes.Equal(got[i], want[in]) {
						errs <- fmt.Errorf("response[%d] is not TEI's embedding of %q", i, in)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
