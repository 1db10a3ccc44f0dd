package proxy

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/tests/redistest"
)

// classifier is the simulator's flags for a two-label classifier.
var classifier = []string{"--model-id", "acme/sentiment-classifier", "--sim-model-type", "classifier"}

// TestTEIRemainingRoutesEqualTEI sends TEI's other routes to TEI and to
// the proxy, twice (a miss, then a hit where the route is cached), and
// wants identical statuses and bodies, refusals included.
func TestTEIRemainingRoutesEqualTEI(t *testing.T) {
	// The references take every request whole; the proxy's TEIs take 4
	// inputs per request, so larger batches are split by the proxy.
	_, denseRef := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, dense := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4")
	_, clsRef := startSim(t, classifier...)
	_, cls := startSim(t, append([]string{"--max-client-batch-size", "4"}, classifier...)...)
	_, ranker := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	_, splade := startSim(t, "--model-id", "naver/splade-v3")
	_, pd := startProxy(t, testConfig(dense))
	_, pc := startProxy(t, testConfig(cls))
	_, pr := startProxy(t, testConfig(ranker))
	_, ps := startProxy(t, testConfig(splade))

	six := mustJSON(t, map[string]any{"inputs": [][]string{{"good"}, {"bad"}, {"so so"}, {"great", "terrible"}, {"fine"}, {"meh"}}})
	tests := []struct {
		name, tei, proxy, path, body string
	}{
		{"predict one text", clsRef, pc, "/predict", `{"inputs":"I love it"}`},
		{"predict a pair", clsRef, pc, "/predict", `{"inputs":["I love it","I hate it"]}`},
		{"predict a batch", clsRef, pc, "/predict", `{"inputs":[["a b"],["c","d"]],"raw_scores":true}`},
		{"predict a batch over TEI's limit", clsRef, pc, "/predict", six},
		{"predict at the root", clsRef, pc, "/", `{"inputs":"root"}`},
		{"predict left truncation", clsRef, pc, "/predict", `{"inputs":"` + strings.Repeat("word ", 600) + `","truncate":true,"truncation_direction":"Left"}`},
		{"predict with a reranker", ranker, pr, "/predict", `{"inputs":["query","passage"]}`},
		{"predict on an embedding model", denseRef, pd, "/predict", `{"inputs":"x"}`},
		{"predict empty text", clsRef, pc, "/predict", `{"inputs":""}`},
		{"predict three texts", clsRef, pc, "/predict", `{"inputs":["a","b","c"]}`},
		{"predict no inputs", clsRef, pc, "/predict", `{"raw_scores":true}`},
		{"predict null raw_scores", clsRef, pc, "/predict", `{"inputs":"a","raw_scores":null}`},
		{"predict a number", clsRef, pc, "/predict", `{"inputs":1}`},
		{"predict too long", clsRef, pc, "/predict", `{"inputs":"` + strings.Repeat("word ", 600) + `","truncate":false}`},
		{"embed_all", denseRef, pd, "/embed_all", `{"inputs":["a b","c"]}`},
		{"embed_all one text", denseRef, pd, "/embed_all", `{"inputs":"a b c","truncation_direction":"left"}`},
		{"embed_all over the limit", dense, pd, "/embed_all", `{"inputs":["a","b","c","d","e"]}`},
		{"embed_all on SPLADE", splade, ps, "/embed_all", `{"inputs":"x"}`},
		{"embed_all on a reranker", ranker, pr, "/embed_all", `{"inputs":"x"}`},
		{"embed_all empty", denseRef, pd, "/embed_all", `{"inputs":""}`},
		{"decode", denseRef, pd, "/decode", `{"ids":[101,102]}`},
		{"decode a batch", denseRef, pd, "/decode", `{"ids":[[101,102],[101]],"skip_special_tokens":false}`},
		{"decode empty", denseRef, pd, "/decode", `{"ids":[]}`},
		{"decode an empty list in a batch", denseRef, pd, "/decode", `{"ids":[[101],[]]}`},
		{"decode over the limit", dense, pd, "/decode", `{"ids":[[1],[2],[3],[4],[5]]}`},
		{"decode text", denseRef, pd, "/decode", `{"ids":"hello"}`},
		{"decode null skip", denseRef, pd, "/decode", `{"ids":[1],"skip_special_tokens":null}`},
		{"tokenize an empty batch", denseRef, pd, "/tokenize", `{"inputs":[]}`},
		{"tokenize over the limit", dense, pd, "/tokenize", `{"inputs":["a","b","c","d","e"]}`},
		{"similarity no sentences", denseRef, pd, "/similarity", `{"inputs":{"source_sentence":"a","sentences":[]}}`},
		{"similarity empty source", denseRef, pd, "/similarity", `{"inputs":{"source_sentence":"","sentences":["b"]}}`},
		{"similarity on a reranker", ranker, pr, "/similarity", `{"inputs":{"source_sentence":"a","sentences":["b"]}}`},
		{"similarity bad direction", denseRef, pd, "/similarity", `{"inputs":{"source_sentence":"a","sentences":["b"]},"parameters":{"truncation_direction":"up"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, wb := post(t, tc.tei, tc.path, tc.body)
			for _, round := range []string{"miss", "hit"} {
				gs, _, gb := post(t, tc.proxy, tc.path, tc.body)
				// serde's messages name a line and column that Go's
				// decoder does not; the status and the kind of message
				// are what clients see.
				if gs != ws || !strings.HasPrefix(string(wb), "Failed to") && !bytes.Equal(gb, wb) {
					t.Fatalf("%s: proxy answered %d %.300s\nTEI answered %d %.300s", round, gs, gb, ws, wb)
				}
			}
		})
	}
}

// TestPredictIsCachedPerRequest checks that a repeated /predict is
// answered from the cache, with X-Cache, without TEI's headers, and that a
// split batch's headers add TEI's counts up.
func TestPredictIsCachedPerRequest(t *testing.T) {
	_, cnt, cls := startCounted(t, append([]string{"--max-client-batch-size", "2"}, classifier...)...)
	_, ref := startSim(t, classifier...)
	_, p := startProxy(t, testConfig(cls))
	body := `{"inputs":[["one"],["two"],["three"],["four","five"]]}`
	_, wh, wb := post(t, ref, "/predict", body)

	st, h, b := post(t, p, "/predict", body)
	if st != 200 || !bytes.Equal(b, wb) {
		t.Fatalf("miss: %d %s, want %s", st, b, wb)
	}
	if calls := cnt.count("/predict"); calls != 2 {
		t.Errorf("TEI got %d calls for 4 inputs at 2 a call, want 2", calls)
	}
	if h.Get("X-Cache") != "MISS" || h.Get("x-compute-tokens") != wh.Get("x-compute-tokens") || h.Get("x-compute-characters") != wh.Get("x-compute-characters") {
		t.Errorf("miss headers: X-Cache %q, tokens %q chars %q; TEI in one call: tokens %q chars %q",
			h.Get("X-Cache"), h.Get("x-compute-tokens"), h.Get("x-compute-characters"), wh.Get("x-compute-tokens"), wh.Get("x-compute-characters"))
	}
	for _, name := range teiHeaders {
		if h.Get(name) == "" {
			t.Errorf("miss: no %s", name)
		}
	}

	st, h, b = post(t, p, "/predict", body)
	if st != 200 || !bytes.Equal(b, wb) || h.Get("X-Cache") != "HIT" {
		t.Fatalf("hit: %d %s X-Cache %q", st, b, h.Get("X-Cache"))
	}
	if calls := cnt.count("/predict"); calls != 2 {
		t.Errorf("a hit reached TEI: %d calls", calls)
	}
	for _, name := range teiHeaders {
		if v := h.Get(name); v != "" {
			t.Errorf("hit: %s = %q, want none (no TEI call made it)", name, v)
		}
	}
	// Another setting is another answer.
	if _, h, _ := post(t, p, "/predict", `{"inputs":[["one"],["two"],["three"],["four","five"]],"raw_scores":true}`); h.Get("X-Cache") != "MISS" {
		t.Errorf("raw scores answered from the cache of sigmoid ones")
	}
}

// TestPassedThroughRoutesKeepTEIHeaders checks that an answer one TEI call
// made carries TEI's headers unchanged.
func TestPassedThroughRoutesKeepTEIHeaders(t *testing.T) {
	_, dense := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, p := startProxy(t, testConfig(dense))
	_, wh, _ := post(t, dense, "/embed_all", `{"inputs":["a b c"]}`)
	st, h, b := post(t, p, "/embed_all", `{"inputs":["a b c"]}`)
	if st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	for _, name := range []string{"x-compute-tokens", "x-compute-characters", "x-compute-type"} {
		if h.Get(name) == "" || h.Get(name) != wh.Get(name) {
			t.Errorf("%s = %q, TEI's %q", name, h.Get(name), wh.Get(name))
		}
	}
}

// TestSimilarityFromCachedVectors checks /similarity against TEI's own,
// that it shares the per-text cache with /embed (normalize=false), and
// that it takes more sentences than TEI takes in one request.
func TestSimilarityFromCachedVectors(t *testing.T) {
	sim, cnt, dense := startCounted(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4")
	_, ref := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, p := startProxy(t, testConfig(dense))
	sentences := []string{"deep learning", "cooking pasta", "neural networks", "deep learning", "travel to rome", "machine learning"}
	tests := []struct {
		name, body string
	}{
		{"defaults", mustJSON(t, map[string]any{"inputs": map[string]any{"source_sentence": "what is deep learning", "sentences": sentences}})},
		{"parameters", mustJSON(t, map[string]any{"inputs": map[string]any{"source_sentence": strings.Repeat("long ", 600), "sentences": sentences[:2]},
			"parameters": map[string]any{"truncate": true, "truncation_direction": "Left"}})},
		{"null parameters", `{"inputs":{"source_sentence":"a b","sentences":["a b","c"]},"parameters":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _, wb := post(t, ref, "/similarity", tc.body)
			if st != 200 {
				t.Fatalf("TEI: %d %s", st, wb)
			}
			var want, got []float64
			if err := json.Unmarshal(wb, &want); err != nil {
				t.Fatal(err)
			}
			for _, round := range []string{"MISS", "HIT"} {
				st, h, b := post(t, p, "/similarity", tc.body)
				if st != 200 || json.Unmarshal(b, &got) != nil || len(got) != len(want) {
					t.Fatalf("%s: %d %s, want %s", round, st, b, wb)
				}
				for i := range want {
					if math.Abs(got[i]-want[i]) > 1e-6 {
						t.Errorf("%s: similarity %d = %v, TEI's %v", round, i, got[i], want[i])
					}
				}
				if round == "HIT" && h.Get("X-Cache") != "HIT" {
					t.Errorf("X-Cache %q on a repeat", h.Get("X-Cache"))
				}
			}
		})
	}
	// /embed with normalize=false finds the same entries.
	before := sim.EmbedCount()
	if st, h, b := post(t, p, "/embed", `{"inputs":["deep learning","cooking pasta"],"normalize":false}`); st != 200 || h.Get("X-Cache") != "HIT" {
		t.Errorf("/embed normalize=false after /similarity: %d X-Cache %q %.100s", st, h.Get("X-Cache"), b)
	}
	if sim.EmbedCount() != before || cnt.count("/similarity") != 0 {
		t.Errorf("TEI embedded %d inputs, got %d /similarity calls; want none", sim.EmbedCount()-before, cnt.count("/similarity"))
	}
}

// TestWrongModelRoutesNeverReachTEI checks that a route the model does
// not serve is answered by the proxy itself.
func TestWrongModelRoutesNeverReachTEI(t *testing.T) {
	_, cnt, dense := startCounted(t, "--model-id", "BAAI/bge-small-en-v1.5")
	_, p := startProxy(t, testConfig(dense))
	if st, _, b := post(t, p, "/predict", `{"inputs":"x"}`); st != 424 || !strings.Contains(string(b), "not a classifier model") {
		t.Errorf("/predict on an embedding model: %d %s", st, b)
	}
	if n := cnt.count("/predict"); n != 0 {
		t.Errorf("/predict reached TEI %d times", n)
	}
}

// TestAppendF32MatchesSerde checks the float formatting /similarity
// answers with against serde_json's (ryu's) for f32.
func TestAppendF32MatchesSerde(t *testing.T) {
	tests := []struct {
		in   float32
		want string
	}{
		{0.5, "0.5"}, {1, "1.0"}, {-1, "-1.0"}, {0, "0.0"}, {0.1, "0.1"}, {0.87654321, "0.8765432"},
		{1e-7, "1e-7"}, {1.5e-7, "1.5e-7"}, {0.000001, "0.000001"}, {123456, "123456.0"}, {1e13, "1e13"},
		{float32(math.NaN()), "null"}, {float32(math.Inf(1)), "null"},
	}
	for _, tc := range tests {
		t.Run(strconv.FormatFloat(float64(tc.in), 'g', -1, 32), func(t *testing.T) {
			if got := string(appendF32(nil, tc.in)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestErrorsAreNotHTMLEscaped is a regression test: the sidecar wrote its
// own JSON with encoding/json, which escapes <, > and & (as \u003e), so
// an error it answers in TEI's place ("batch size 5 > maximum allowed
// batch size 4") differed from TEI's bytes, which serde_json writes as
// they are.
func TestErrorsAreNotHTMLEscaped(t *testing.T) {
	_, dense := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4")
	_, p := startProxy(t, testConfig(dense))
	st, _, b := post(t, p, "/decode", `{"ids":[[1],[2],[3],[4],[5]]}`)
	if want := `{"error":"batch size 5 > maximum allowed batch size 4","error_type":"Validation"}`; st != 422 || string(b) != want {
		t.Errorf("%d %s, want 422 %s", st, b, want)
	}
}

// TestPredictSharedThroughRedis: a /predict one sidecar computed, another
// answers from Redis, byte for byte, without calling TEI.
func TestPredictSharedThroughRedis(t *testing.T) {
	redis := redistest.Start(t)
	_, cnt, cls := startCounted(t, classifier...)
	a, pa := sharedProxy(t, cls, redis.URL(), nil)
	_, pb := sharedProxy(t, cls, redis.URL(), nil)
	body := `{"inputs":[["shared"],["a","pair"]]}`
	st, _, first := post(t, pa, "/predict", body)
	if st != 200 {
		t.Fatalf("%d %s", st, first)
	}
	flush(t, a)
	calls := cnt.count("/predict")
	st, h, second := post(t, pb, "/predict", body)
	if st != 200 || h.Get("X-Cache") != "HIT" || !bytes.Equal(first, second) || cnt.count("/predict") != calls {
		t.Errorf("second sidecar: %d X-Cache %q, %d TEI calls\n%s\nwant\n%s", st, h.Get("X-Cache"), cnt.count("/predict")-calls, second, first)
	}
}
