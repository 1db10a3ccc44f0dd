package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
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
		// = 30 single calls; documents 3 rows × 2, the 50 documents in
		// two calls of the stub's max_client_batch_size 32: /status
		// answers 404, so the stub is TEI, which refuses larger calls;
		// rerank 2 rows × 2.
		{FaceOpenAI, map[string]int{"/info": 1, "/status": 1, "/v1/embeddings": 30 + 8, "/v1/rerank": 4}},
		// Only the sidecar serves the plugin's calls, and it caches, so
		// each of the plugin's rows has an uncached variant: 24 more
		// queries, 6 document calls and 4 rerank calls; none is split.
		// Its /metrics is read once, for the figures per replica.
		{FacePlugin, map[string]int{"/metrics": 1, "/plugin/embed_documents": 6 + 6, "/plugin/embed_query": 30 + 24, "/plugin/rerank": 4 + 4}},
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
			// new, and so are the variants'; the hit row repeats the query.
			misses := map[string]int{}
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
					misses[text]++
				}
			}
			// The variants of the short query's row and the 10 queries'
			// add 2 and 10 nonced short queries.
			want := map[Face]int{FaceOpenAI: 3, FacePlugin: 3 + 2 + 10}[tc.face]
			if len(misses) != want {
				t.Errorf("%d distinct nonced short queries, want %d: %v", len(misses), want, misses)
			}
			for text, n := range misses {
				if n != 1 {
					t.Errorf("%q sent %d times, want once", text, n)
				}
			}
			for _, r := range rep.Rows {
				want := 1
				switch {
				case r.Kind == KindQueries:
					want = 10
				case tc.face == FaceOpenAI && r.Items == 50:
					want = 2
				}
				if r.Target.Calls != want {
					t.Errorf("row %q: %d calls per iteration, want %d", r.Name, r.Target.Calls, want)
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
	err = c.query(t.Context(), "q", nil)
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
		{"tei embed count", "/embed", `[[0.1]]`, func(c *client) error { return c.documents(t.Context(), []string{"a", "b"}, nil) }, "want 2 embeddings, got 1"},
		{"tei embed not a list", "/embed", `{"x":1}`, func(c *client) error { return c.query(t.Context(), "a", nil) }, "not a list of vectors"},
		{"tei rerank count", "/rerank", `[{"index":0,"score":0.1}]`, func(c *client) error { return c.rerankPassages(t.Context(), "q", []string{"a", "b"}, nil) }, "want 2 ranks, got 1"},
		{"tei rerank index", "/rerank", `[{"index":5,"score":0.1}]`, func(c *client) error { return c.rerankPassages(t.Context(), "q", []string{"a"}, nil) }, "valid index"},
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

// TestBenchSplitsAtTheLimit checks that embed and rerank calls are cut at
// TEI's max_client_batch_size (or --batch), and left whole for the
// sidecar, which splits them itself. A regression test: "Rerank 20
// passages" went to a TEI with a limit of 16 in one call, and TEI's 422
// ended the benchmark.
func TestBenchSplitsAtTheLimit(t *testing.T) {
	var (
		mu    sync.Mutex
		sizes []int
	)
	stub := func(sidecar bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Inputs []string
				Texts  []string
			}
			switch r.URL.Path {
			case "/info":
				fmt.Fprint(w, `{"model_id":"m","model_type":{"reranker":{}},"max_client_batch_size":16}`)
				return
			case "/status":
				if sidecar {
					fmt.Fprint(w, `{"pools":{}}`)
					return
				}
				http.NotFound(w, r)
				return
			}
			_ = json.NewDecoder(r.Body).Decode(&req)
			n := len(req.Inputs) + len(req.Texts)
			if n > 16 && !sidecar {
				http.Error(w, `{"error":"batch size too large","error_type":"Validation"}`, http.StatusUnprocessableEntity)
				return
			}
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
			if r.URL.Path == "/rerank" {
				ranks := make([]string, n)
				for i := range ranks {
					ranks[i] = fmt.Sprintf(`{"index":%d,"score":0.5}`, i)
				}
				fmt.Fprint(w, "["+strings.Join(ranks, ",")+"]")
				return
			}
			fmt.Fprint(w, "["+strings.TrimSuffix(strings.Repeat("[0.1],", n), ",")+"]")
		}))
	}
	tei, sidecar := stub(false), stub(true)
	defer tei.Close()
	defer sidecar.Close()
	for _, tc := range []struct {
		name              string
		url               string
		batch             int
		wantDocs, wantRnk string
	}{
		{"TEI: its limit", tei.URL, 0, "[2 16 16 16]", "[4 16]"},
		{"TEI: --batch", tei.URL, 10, "[10 10 10 10 10]", "[10 10]"},
		{"the sidecar: whole", sidecar.URL, 0, "[50]", "[20]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newClient(t.Context(), Target{URL: tc.url, Batch: tc.batch}, http.DefaultClient, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range []struct {
				run  func() error
				want string
			}{
				{func() error { return c.documents(t.Context(), longDocs, nil) }, tc.wantDocs},
				{func() error { return c.rerankPassages(t.Context(), "q", mediumDocs, nil) }, tc.wantRnk},
			} {
				sizes = nil
				if err := call.run(); err != nil {
					t.Fatal(err)
				}
				slices.Sort(sizes)
				if got := fmt.Sprint(sizes); got != call.want {
					t.Errorf("calls of %s texts, want %s", got, call.want)
				}
			}
		})
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
