package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// stubCall is one request a stub served.
type stubCall struct {
	path, auth string
	body       map[string]any
}

// faceStub serves the openai and plugin faces' exact shapes (and /info),
// refusing requests whose body has other fields than the face defines. fail,
// when it names a path, answers that path with 503.
type faceStub struct {
	t    *testing.T
	fail string

	mu    sync.Mutex
	calls []stubCall
}

func (s *faceStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	s.mu.Lock()
	s.calls = append(s.calls, stubCall{path: r.URL.Path, auth: r.Header.Get("Authorization"), body: body})
	s.mu.Unlock()
	if r.URL.Path == s.fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"backend down","error_type":"Unhealthy"}`)
		return
	}
	strs := func(key string) ([]string, bool) {
		raw, ok := body[key].([]any)
		if !ok {
			return nil, false
		}
		out := make([]string, len(raw))
		for i, v := range raw {
			if out[i], ok = v.(string); !ok {
				return nil, false
			}
		}
		return out, true
	}
	fields := func(want ...string) bool {
		if len(body) != len(want) {
			return false
		}
		for _, k := range want {
			if _, ok := body[k]; !ok {
				return false
			}
		}
		return true
	}
	vec := []float32{0.6, 0.8}
	var out any
	switch r.URL.Path {
	case "/info":
		out = map[string]any{"model_id": "BAAI/bge-m3", "max_client_batch_size": 32, "version": "1.9.3"}
	case "/v1/embeddings":
		in, ok := strs("input")
		if !ok || !fields("input", "model") || body["model"] != "BAAI/bge-m3" {
			http.Error(w, "bad /v1/embeddings body", http.StatusUnprocessableEntity)
			return
		}
		data := make([]map[string]any, len(in))
		for i := range in {
			data[i] = map[string]any{"object": "embedding", "embedding": vec, "index": i}
		}
		out = map[string]any{"object": "list", "data": data, "model": "BAAI/bge-m3"}
	case "/v1/rerank":
		docs, ok := strs("documents")
		if !ok || !fields("query", "documents") {
			http.Error(w, "bad /v1/rerank body", http.StatusUnprocessableEntity)
			return
		}
		res := make([]map[string]any, len(docs))
		for i := range docs {
			res[i] = map[string]any{"index": len(docs) - 1 - i, "relevance_score": 0.5}
		}
		out = map[string]any{"results": res}
	case "/plugin/embed_query":
		if _, ok := body["text"].(string); !ok || !fields("text") {
			http.Error(w, "bad embed_query body", http.StatusUnprocessableEntity)
			return
		}
		out = map[string]any{"embedding": vec}
	case "/plugin/embed_documents":
		texts, ok := strs("texts")
		if !ok || !fields("texts") {
			http.Error(w, "bad embed_documents body", http.StatusUnprocessableEntity)
			return
		}
		embs := make([][]float32, len(texts))
		for i := range embs {
			embs[i] = vec
		}
		out = map[string]any{"embeddings": embs}
	case "/plugin/rerank":
		ps, ok := strs("passages")
		if k, _ := body["k"].(float64); !ok || !fields("query", "passages", "k") || int(k) != len(ps) {
			http.Error(w, "bad plugin rerank body", http.StatusUnprocessableEntity)
			return
		}
		scores, order := make([]float64, len(ps)), make([]int, len(ps))
		for i := range ps {
			scores[i], order[i] = 0.5, i
		}
		out = map[string]any{"scores": scores, "order": order}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// count returns how many calls went to each path.
func (s *faceStub) count() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[string]int{}
	for _, c := range s.calls {
		n[c.path]++
	}
	return n
}

// nonced matches a query made unique for the cache miss row.
var nonced = regexp.MustCompile(`^What is machine learning\? #[0-9a-f]{8}$`)

func TestFaces(t *testing.T) {
	for _, tc := range []struct {
		face Face
		// want is the calls one run at scale 0.1 sends: every row keeps
		// one iteration; rows with warm-ups keep one warm-up.
		want map[string]int
	}{
		// Queries: short 1+1, long 1+1, 10×(1+1), miss 1+2, hit 1+2
		// = 30 single calls; documents 3 rows × 2; rerank 2 rows × 2.
		{FaceOpenAI, map[string]int{"/info": 1, "/v1/embeddings": 30 + 6, "/v1/rerank": 4}},
		{FacePlugin, map[string]int{"/plugin/embed_query": 30, "/plugin/embed_documents": 6, "/plugin/rerank": 4}},
	} {
		t.Run(string(tc.face), func(t *testing.T) {
			stub := &faceStub{t: t}
			ts := httptest.NewServer(stub)
			defer ts.Close()
			rep, err := Run(t.Context(), Options{Target: Target{URL: ts.URL, Face: tc.face, Token: "s3cret"}, Scale: 0.1})
			if err != nil {
				t.Fatal(err)
			}
			got := stub.count()
			if tc.face == FacePlugin {
				delete(got, "/info") // read for the report, not needed
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("calls = %v, want %v", got, tc.want)
			}
			for _, c := range stub.calls {
				if c.auth != "Bearer s3cret" {
					t.Errorf("%s sent Authorization %q", c.path, c.auth)
				}
			}
			// The miss row's texts (one warm-up, two iterations) are all
			// new; the hit row repeats the query.
			misses := map[string]bool{}
			for _, c := range stub.calls {
				var text string
				switch tc.face {
				case FacePlugin:
					text, _ = c.body["text"].(string)
				default:
					if in, ok := c.body["input"].([]any); ok && len(in) == 1 {
						text, _ = in[0].(string)
					}
				}
				if nonced.MatchString(text) {
					misses[text] = true
				}
			}
			if len(misses) != 3 {
				t.Errorf("%d distinct cache-miss texts, want 3: %v", len(misses), misses)
			}
			for _, r := range rep.Rows {
				if r.Calls != map[bool]int{true: 10, false: 1}[r.Kind == KindQueries] {
					t.Errorf("row %q: %d calls per iteration", r.Name, r.Calls)
				}
			}
		})
	}
}

// TestFaceModelFlag checks that an explicit model replaces /info's.
func TestFaceModelFlag(t *testing.T) {
	stub := &faceStub{t: t}
	ts := httptest.NewServer(stub)
	defer ts.Close()
	c, err := newClient(t.Context(), Target{URL: ts.URL, Face: FaceOpenAI, Model: "other"}, http.DefaultClient, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = c.query(t.Context(), "q")
	if se, ok := errors.AsType[*StatusError](err); !ok || se.Status != http.StatusUnprocessableEntity {
		t.Errorf("query with model %q: %v, want the stub's 422", c.model, err)
	}
}

// TestBenchNon2xxNamesRowAndBody checks that a failing answer aborts the run
// with the row's name, the status and the body.
func TestBenchNon2xxNamesRowAndBody(t *testing.T) {
	stub := &faceStub{t: t, fail: "/plugin/rerank"}
	ts := httptest.NewServer(stub)
	defer ts.Close()
	_, err := Run(t.Context(), Options{Target: Target{URL: ts.URL, Face: FacePlugin}, Scale: 0.1})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`row "Rerank 5 passages"`, "HTTP 503", `{"error":"backend down","error_type":"Unhealthy"}`, ts.URL + "/plugin/rerank"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if se, ok := errors.AsType[*StatusError](err); !ok || se.Status != 503 {
		t.Errorf("error %v does not wrap a *StatusError with 503", err)
	}
}

// TestShapeChecks feeds each face answers of the wrong shape.
func TestShapeChecks(t *testing.T) {
	for _, tc := range []struct {
		name, path, answer string
		call               func(c *client) error
		want               string
	}{
		{"tei embed count", "/embed", `[[0.1]]`, func(c *client) error { return c.documents(t.Context(), []string{"a", "b"}) }, "want 2 embeddings, got 1"},
		{"tei embed not a list", "/embed", `{"x":1}`, func(c *client) error { return c.query(t.Context(), "a") }, "not a list of vectors"},
		{"tei rerank count", "/rerank", `[{"index":0,"score":0.1}]`, func(c *client) error { return c.rerankPassages(t.Context(), "q", []string{"a", "b"}) }, "want 2 ranks, got 1"},
		{"tei rerank index", "/rerank", `[{"index":5,"score":0.1}]`, func(c *client) error { return c.rerankPassages(t.Context(), "q", []string{"a"}) }, "valid index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != tc.path {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, tc.answer)
			}))
			defer ts.Close()
			c, err := newClient(t.Context(), Target{URL: ts.URL}, http.DefaultClient, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.call(c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestTEIDocumentsSlices checks that the tei face cuts documents at the
// target's max_client_batch_size, and at --batch when given.
func TestTEIDocumentsSlices(t *testing.T) {
	var sizes []int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/info" {
			fmt.Fprint(w, `{"model_id":"m","max_client_batch_size":16}`)
			return
		}
		var req struct{ Inputs []string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		sizes = append(sizes, len(req.Inputs))
		fmt.Fprint(w, "["+strings.TrimSuffix(strings.Repeat("[0.1],", len(req.Inputs)), ",")+"]")
	}))
	defer ts.Close()
	for _, tc := range []struct {
		batch int
		want  string
	}{{0, "[16 16 16 2]"}, {20, "[20 20 10]"}} {
		sizes = nil
		c, err := newClient(t.Context(), Target{URL: ts.URL, Batch: tc.batch}, http.DefaultClient, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.documents(t.Context(), longDocs); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(sizes); got != tc.want {
			t.Errorf("batch %d: slices %s, want %s", tc.batch, got, tc.want)
		}
	}
}

// TestPluginTexts pins the plugin's texts: a table is comparable with the
// plugin's only if the work is the same.
func TestPluginTexts(t *testing.T) {
	sc := Scenarios()
	var b bytes.Buffer
	for _, s := range sc[:8] {
		fmt.Fprintf(&b, "%s|%d|%d|%d\n", s.Name, s.Warmup, s.Iterations, s.Items())
	}
	want := `Single query embedding (short)|2|10|1
Single query embedding (long)|2|10|1
10 queries embedding|1|5|10
3 documents embedding|2|10|3
20 documents embedding|2|5|20
50 documents embedding|1|3|50
Rerank 5 passages|2|10|3
Rerank 20 passages|2|5|20
`
	if b.String() != want {
		t.Errorf("scenarios:\n%s\nwant:\n%s", b.String(), want)
	}
	if sc[5].Texts[0] != longDocs[0] || sc[5].Texts[5] != longDocs[0] || sc[4].Texts[19] != "Reinforcement learning trains agents through rewards and penalties." {
		t.Error("documents are not the plugin's lists repeated")
	}
	if got := sc[2].Texts; got[0] != ShortQuery || got[1] != LongQuery || got[9] != LongQuery {
		t.Errorf("10 queries = %q", got)
	}
}
