package proxy

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// facesSetup starts an embedding and a reranking TEI and the proxy in front.
func facesSetup(t *testing.T, edit func(*Config)) (emb *teisim.Server, embURL, rankURL, proxyURL string, srv *Server) {
	t.Helper()
	emb, embURL = startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "32")
	_, rankURL = startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3", "--max-client-batch-size", "8")
	cfg := testConfig(embURL)
	cfg.RerankURLs = []string{rankURL}
	if edit != nil {
		edit(&cfg)
	}
	srv, proxyURL = startProxy(t, cfg)
	return
}

// call sends a JSON request with optional bearer token.
func call(t *testing.T, method, url, token, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// openAIResponse is decoded as the OpenAI SDKs do: data in list order.
type openAIResponse struct {
	Data []struct {
		Embedding json.RawMessage `json:"embedding"`
		Index     int             `json:"index"`
		Object    string          `json:"object"`
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// decodeEmbedding reads a float list, or a base64 string of little-endian
// float32 as the SDKs' numpy.frombuffer does.
func decodeEmbedding(t *testing.T, raw json.RawMessage) []float32 {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b)%4 != 0 {
			t.Fatalf("bad base64 embedding: %v", err)
		}
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return v
	}
	var v []float32
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpenAIEmbeddings(t *testing.T) {
	emb, _, _, p, _ := facesSetup(t, nil)
	many := make([]string, 130)
	for i := range many {
		many[i] = fmt.Sprintf("document %d", i)
	}
	tests := []struct {
		name   string
		body   string
		inputs []string
	}{
		// What the OpenAI SDKs send when the caller names no format.
		{"sdk default base64", `{"input":["What is machine learning?","second"],"model":"BAAI/bge-small-en-v1.5","encoding_format":"base64"}`, []string{"What is machine learning?", "second"}},
		{"explicit float", `{"input":["What is machine learning?"],"model":"BAAI/bge-small-en-v1.5","encoding_format":"float"}`, []string{"What is machine learning?"}},
		{"no format means float", `{"input":["x y z"],"model":"BAAI/bge-small-en-v1.5"}`, []string{"x y z"}},
		{"single string", `{"input":"one string","model":"BAAI/bge-small-en-v1.5","encoding_format":"base64","user":"u1"}`, []string{"one string"}},
		{"130 inputs with the model's dimensions", mustJSON(t, map[string]any{"input": many, "model": "BAAI/bge-small-en-v1.5", "dimensions": 384, "encoding_format": "base64"}), many},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 2 { // a miss, then a hit
				st, _, b := call(t, "POST", p+"/v1/embeddings", "", tc.body)
				if st != 200 {
					t.Fatalf("round %d: %d %s", round, st, b)
				}
				var r openAIResponse
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				if len(r.Data) != len(tc.inputs) || r.Model == "" || r.Usage.PromptTokens <= 0 || r.Usage.TotalTokens != r.Usage.PromptTokens {
					t.Fatalf("round %d: %d items, model %q, usage %+v", round, len(r.Data), r.Model, r.Usage)
				}
				for i, d := range r.Data {
					if d.Index != i || d.Object != "embedding" {
						t.Fatalf("item %d has index %d object %q", i, d.Index, d.Object)
					}
					got := decodeEmbedding(t, d.Embedding)
					if fmt.Sprint(got) != fmt.Sprint(emb.Embedding(tc.inputs[i], true)) {
						t.Fatalf("round %d: item %d is not TEI's embedding of %q", round, i, tc.inputs[i])
					}
				}
			}
		})
	}
}

func TestOpenAIRefusals(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, func(c *Config) { c.BearerTokens = []string{"s3cret", "other"} })
	tests := []struct {
		name, token, body string
		status            int
		param, code       string
	}{
		{"dimensions 256", "s3cret", `{"input":"x","model":"BAAI/bge-small-en-v1.5","dimensions":256}`, 400, "dimensions", ""},
		{"wrong token", "nope", `{"input":"x","model":"BAAI/bge-small-en-v1.5"}`, 401, "", "invalid_api_key"},
		{"no token", "", `{"input":"x","model":"BAAI/bge-small-en-v1.5"}`, 401, "", "invalid_api_key"},
		{"unknown model", "other", `{"input":"x","model":"text-embedding-3-small"}`, 404, "model", "model_not_found"},
		{"no model", "s3cret", `{"input":"x"}`, 400, "model", ""},
		{"bad format", "s3cret", `{"input":"x","model":"BAAI/bge-small-en-v1.5","encoding_format":"int8"}`, 400, "encoding_format", ""},
		{"empty input", "s3cret", `{"input":[],"model":"BAAI/bge-small-en-v1.5"}`, 400, "input", ""},
		{"malformed", "s3cret", `{"input":`, 400, "", ""},
		{"too long for TEI", "s3cret", `{"input":"` + strings.Repeat("word ", 10) + `","model":"BAAI/bge-small-en-v1.5"}`, 200, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _, b := call(t, "POST", p+"/v1/embeddings", tc.token, tc.body)
			if st != tc.status {
				t.Fatalf("status %d %s, want %d", st, b, tc.status)
			}
			if st == 200 {
				return
			}
			var e openAIErrorBody
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not OpenAI's error shape: %s", b)
			}
			if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
				t.Errorf("param %v, want %q (%s)", e.Error.Param, tc.param, b)
			}
			if tc.code != "" && (e.Error.Code == nil || *e.Error.Code != tc.code) {
				t.Errorf("code %v, want %q", e.Error.Code, tc.code)
			}
			if strings.Contains(string(b), "s3cret") {
				t.Errorf("token leaked: %s", b)
			}
		})
	}
}

// TestBase64ComputedOnce checks that a cached item's base64 form is made on
// first use and then reused.
func TestBase64ComputedOnce(t *testing.T) {
	_, _, _, p, srv := facesSetup(t, nil)
	body := `{"input":"b64 once","model":"BAAI/bge-small-en-v1.5","encoding_format":"base64"}`
	if st, _, b := call(t, "POST", p+"/v1/embeddings", "", body); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	k := textKey(srv.pluginParams().keyPrefix(srv.embedP.info()), "b64 once")
	e, ok := srv.cache.get(k)
	if !ok || e.b64.Load() == nil {
		t.Fatalf("entry cached %v, base64 kept %v", ok, ok && e.b64.Load() != nil)
	}
	first := e.b64.Load()
	if st, _, b := call(t, "POST", p+"/v1/embeddings", "", body); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	if e.b64.Load() != first {
		t.Error("base64 form computed again for a cached item")
	}
}

// TestFacesShareOneCache embeds a text through each face in turn; only the
// first reaches TEI.
func TestFacesShareOneCache(t *testing.T) {
	emb, _, _, p, _ := facesSetup(t, nil)
	before := emb.EmbedCount()
	steps := []struct{ path, body string }{
		{"/v1/embeddings", `{"input":"shared text","model":"BAAI/bge-small-en-v1.5","encoding_format":"base64"}`},
		{"/embed", `{"inputs":"shared text"}`},
		{"/plugin/embed_query", `{"text":"shared text"}`},
		{"/plugin/embed_documents", `{"texts":["shared text","shared text"]}`},
		{"/embeddings", `{"input":["shared text"],"model":"BAAI/bge-small-en-v1.5"}`},
	}
	for _, s := range steps {
		if st, _, b := call(t, "POST", p+s.path, "", s.body); st != 200 {
			t.Fatalf("%s: %d %s", s.path, st, b)
		}
	}
	if n := emb.EmbedCount() - before; n != 1 {
		t.Errorf("TEI embedded %d inputs, want 1", n)
	}
}

func TestCohereAndJinaRerank(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, nil)
	// A reference reranker that takes all documents at once (the proxy's
	// takes 8, so its answers are merged from two calls).
	_, rank := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	docs := []string{"deep learning uses neural networks", "cooking pasta at home", "learning is deep", "travel to rome", "neural nets learn", "pasta recipes", "machine learning basics", "deep sea diving", "networks of roads", "what is deep learning"}
	query := "what is deep learning"
	st, _, b := post(t, rank, "/rerank", mustJSON(t, map[string]any{"query": query, "texts": docs}))
	if st != 200 {
		t.Fatalf("TEI: %d %s", st, b)
	}
	var tei []struct {
		Index int     `json:"index"`
		Score float64 `json:"score"`
	}
	if err := json.Unmarshal(b, &tei); err != nil {
		t.Fatal(err)
	}
	objs := make([]map[string]string, len(docs))
	for i, d := range docs {
		objs[i] = map[string]string{"text": d}
	}
	tests := []struct {
		name, path string
		body       any
		wantN      int
		docs       bool
	}{
		{"cohere v1", "/v1/rerank", map[string]any{"model": "BAAI/bge-reranker-v2-m3", "query": query, "documents": docs, "top_n": 3}, 3, false},
		{"cohere v1 with documents", "/v1/rerank", map[string]any{"query": query, "documents": docs, "top_n": 4, "return_documents": true}, 4, true},
		{"jina objects", "/v1/rerank", map[string]any{"model": "BAAI/bge-reranker-v2-m3", "query": query, "documents": objs, "top_n": 2, "return_documents": true}, 2, true},
		{"cohere v2", "/v2/rerank", map[string]any{"model": "BAAI/bge-reranker-v2-m3", "query": query, "documents": docs, "top_n": 5}, 5, false},
		{"no top_n gives all", "/v2/rerank", map[string]any{"model": "BAAI/bge-reranker-v2-m3", "query": query, "documents": docs}, len(docs), false},
		{"top_n above count", "/v1/rerank", map[string]any{"query": query, "documents": docs, "top_n": 50}, len(docs), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _, b := call(t, "POST", p+tc.path, "", mustJSON(t, tc.body))
			if st != 200 {
				t.Fatalf("%d %s", st, b)
			}
			var r cohereResponse
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Results) != tc.wantN || r.ID == "" || r.Model != "BAAI/bge-reranker-v2-m3" {
				t.Fatalf("%d results, id %q, model %q", len(r.Results), r.ID, r.Model)
			}
			for i, res := range r.Results {
				if res.Index != tei[i].Index || res.RelevanceScore != tei[i].Score {
					t.Errorf("result %d = (%d, %v), TEI's rank %d is (%d, %v)", i, res.Index, res.RelevanceScore, i, tei[i].Index, tei[i].Score)
				}
				var doc struct{ Text *string }
				if tc.docs != (res.Document != nil) || (res.Document != nil && (json.Unmarshal(res.Document, &doc) != nil || doc.Text == nil || *doc.Text != docs[res.Index])) {
					t.Errorf("result %d document %s", i, res.Document)
				}
			}
		})
	}
	for _, bad := range []struct{ path, body string }{
		{"/v2/rerank", `{"query":"q","documents":[{"text":"objects are v1 only"}]}`},
		{"/v1/rerank", `{"query":"q","documents":["a"],"top_n":0}`},
		{"/v1/rerank", `{"documents":["a"]}`},
		{"/v1/rerank", `{"query":"q","documents":[]}`},
	} {
		st, _, b := call(t, "POST", p+bad.path, "", bad.body)
		var e map[string]string
		if st != 400 || json.Unmarshal(b, &e) != nil || e["message"] == "" {
			t.Errorf("%s %s: %d %s, want 400 {message}", bad.path, bad.body, st, b)
		}
	}
	if st, _, b := call(t, "POST", p+"/v2/rerank", "", `{"model":"rerank-english-v3.0","query":"q","documents":["a"]}`); st != 404 {
		t.Errorf("unknown model: %d %s", st, b)
	}
}

func TestPluginRoutes(t *testing.T) {
	emb, _, rank, p, _ := facesSetup(t, func(c *Config) { c.RerankK = 4; c.RerankFinalN = 2 })
	st, _, b := call(t, "POST", p+"/plugin/embed_query", "", `{"text":"What is machine learning?"}`)
	var q struct{ Embedding []float32 }
	if st != 200 || json.Unmarshal(b, &q) != nil || fmt.Sprint(q.Embedding) != fmt.Sprint(emb.Embedding("What is machine learning?", true)) {
		t.Fatalf("embed_query: %d %.100s", st, b)
	}
	texts := []string{"a b", "c d", "e f"}
	st, _, b = call(t, "POST", p+"/plugin/embed_documents", "", mustJSON(t, map[string]any{"texts": texts}))
	var d struct{ Embeddings [][]float32 }
	if st != 200 || json.Unmarshal(b, &d) != nil || len(d.Embeddings) != 3 {
		t.Fatalf("embed_documents: %d %.100s", st, b)
	}
	for i, s := range texts {
		if fmt.Sprint(d.Embeddings[i]) != fmt.Sprint(emb.Embedding(s, true)) {
			t.Errorf("document %d is not TEI's embedding", i)
		}
	}
	if st, _, b := call(t, "POST", p+"/plugin/embed_documents", "", `{"texts":[]}`); st != 200 || string(b) != `{"embeddings":[]}` {
		t.Errorf("no texts: %d %s", st, b)
	}

	passages := []string{"cooking pasta", "deep learning with neural networks", "travel", "what is deep learning", "deep learning again", "learning deep"}
	query := "what is deep learning"
	teiScores := func(n int) map[int]float64 {
		st, _, b := post(t, rank, "/rerank", mustJSON(t, map[string]any{"query": query, "texts": passages[:n]}))
		if st != 200 {
			t.Fatalf("%d %s", st, b)
		}
		var r []struct {
			Index int
			Score float64
		}
		json.Unmarshal(b, &r)
		m := map[int]float64{}
		for _, x := range r {
			m[x.Index] = x.Score
		}
		return m
	}
	tests := []struct {
		name string
		body map[string]any
		k, n int
	}{
		{"defaults from RERANK_K and RERANK_FINAL_N", map[string]any{"query": query, "passages": passages}, 4, 2},
		{"explicit k and final_n", map[string]any{"query": query, "passages": passages, "k": 6, "final_n": 3}, 6, 3},
		{"final_n above k", map[string]any{"query": query, "passages": passages, "k": 2, "final_n": 5}, 2, 2},
		{"k above count", map[string]any{"query": query, "passages": passages[:3], "k": 10, "final_n": 1}, 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _, b := call(t, "POST", p+"/plugin/rerank", "", mustJSON(t, tc.body))
			var r pluginRerankResponse
			if st != 200 || json.Unmarshal(b, &r) != nil {
				t.Fatalf("%d %s", st, b)
			}
			want := teiScores(tc.k)
			if len(r.Scores) != tc.k || len(r.Order) != tc.n || !r.Reranked {
				t.Fatalf("got %s, want %d scores and %d kept", b, tc.k, tc.n)
			}
			for i, s := range r.Scores {
				if s != want[i] {
					t.Errorf("score %d = %v, TEI says %v", i, s, want[i])
				}
			}
			for i := 1; i < len(r.Order); i++ {
				if r.Scores[r.Order[i]] > r.Scores[r.Order[i-1]] {
					t.Errorf("order %v not best first", r.Order)
				}
			}
			// The best passage of the first k is kept first.
			best := 0
			for i, s := range r.Scores {
				if s > r.Scores[best] {
					best = i
				}
			}
			if r.Order[0] != best {
				t.Errorf("order %v starts with %d, best is %d", r.Order, r.Order[0], best)
			}
		})
	}
	for _, bad := range []string{`{"passages":["a"]}`, `{"query":"q","passages":["a"],"k":0}`, `{"query":"q","passages":["a"],"final_n":0}`, `{"query":`} {
		st, _, b := call(t, "POST", p+"/plugin/rerank", "", bad)
		var e map[string]string
		if st != 422 || json.Unmarshal(b, &e) != nil || e["detail"] == "" {
			t.Errorf("%s: %d %s, want 422 {detail}", bad, st, b)
		}
	}
}

func TestPluginRerankDisabled(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, func(c *Config) { c.RerankEnable = false; c.RerankK = 4; c.RerankFinalN = 2 })
	st, _, b := call(t, "POST", p+"/plugin/rerank", "", `{"query":"q","passages":["a","b","c","d","e"]}`)
	if st != 200 || string(b) != `{"scores":[],"order":[0,1],"reranked":false}` {
		t.Errorf("got %d %s", st, b)
	}
}

// TestAuthPerFace checks that every model route needs the token, answering
// in its own shape, while health, readiness and metrics stay open, and
// that tokens never show in /status.
func TestAuthPerFace(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, func(c *Config) { c.BearerTokens = []string{"tok-one", "tok-two"} })
	routes := []struct {
		method, path, body, shape string
	}{
		{"POST", "/embed", `{"inputs":"x"}`, "tei"},
		{"POST", "/rerank", `{"query":"q","texts":["a"]}`, "tei"},
		{"GET", "/info", "", "tei"},
		{"GET", "/status", "", "tei"},
		{"POST", "/v1/embeddings", `{"input":"x","model":"BAAI/bge-small-en-v1.5"}`, "openai"},
		{"GET", "/v1/models", "", "openai"},
		{"POST", "/v1/rerank", `{"query":"q","documents":["a"]}`, "cohere"},
		{"POST", "/v2/rerank", `{"model":"BAAI/bge-reranker-v2-m3","query":"q","documents":["a"]}`, "cohere"},
		{"POST", "/plugin/embed_query", `{"text":"x"}`, "plugin"},
		{"POST", "/plugin/rerank", `{"query":"q","passages":["a"]}`, "plugin"},
	}
	for _, r := range routes {
		t.Run(r.path, func(t *testing.T) {
			st, _, b := call(t, r.method, p+r.path, "wrong", r.body)
			if st != 401 {
				t.Fatalf("wrong token: %d %s", st, b)
			}
			var m map[string]any
			switch r.shape {
			case "tei":
				if len(b) != 0 {
					t.Errorf("TEI answers 401 with an empty body; got %s", b)
				}
			case "openai":
				if json.Unmarshal(b, &m) != nil || m["error"] == nil {
					t.Errorf("not OpenAI's shape: %s", b)
				}
			case "cohere":
				if json.Unmarshal(b, &m) != nil || m["message"] == nil {
					t.Errorf("not Cohere's shape: %s", b)
				}
			case "plugin":
				if json.Unmarshal(b, &m) != nil || m["detail"] == nil {
					t.Errorf("not the plugin's shape: %s", b)
				}
			}
			for _, tok := range []string{"tok-one", "tok-two"} {
				if st, _, b := call(t, r.method, p+r.path, tok, r.body); st != 200 {
					t.Errorf("token %s: %d %s", tok, st, b)
				}
			}
		})
	}
	for _, open := range []string{"/health", "/ready", "/metrics", "/openapi.json"} {
		if st := get(t, p, open); st != 200 {
			t.Errorf("%s = %d without a token", open, st)
		}
	}
	_, _, b := call(t, "GET", p+"/status", "tok-one", "")
	if strings.Contains(string(b), "tok-one") || strings.Contains(string(b), "tok-two") {
		t.Errorf("/status shows a token: %s", b)
	}
}
