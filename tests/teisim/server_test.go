package teisim_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// fast makes the backend answer at once; most tests want no simulated cost.
var fast = []string{"--sim-batch-cost", "0", "--sim-token-cost", "0"}

func start(t *testing.T, args ...string) (*teisim.Server, string) {
	t.Helper()
	return teisim.Start(t, append(slices.Clone(fast), args...)...)
}

func TestInfo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want map[string]any // JSON values as encoding/json decodes them
	}{
		{
			name: "flags reported",
			args: []string{"--model-id", "BAAI/bge-m3", "--max-client-batch-size", "16", "--dtype", "float16"},
			want: map[string]any{
				"model_id": "BAAI/bge-m3", "model_dtype": "float16", "max_client_batch_size": 16.0,
				"max_input_length": 8192.0, "max_batch_tokens": 16384.0, "max_concurrent_requests": 512.0,
				"max_batch_requests": nil, "model_sha": nil, "auto_truncate": true, "version": "1.9.3",
				"docker_label": "teisim", "served_model_name": "BAAI/bge-m3", "simulator": "teisim",
				"model_type": map[string]any{"embedding": map[string]any{"pooling": "cls"}},
			},
		},
		{
			name: "max input length capped at max batch tokens",
			args: []string{"--model-id", "BAAI/bge-m3", "--max-batch-tokens", "4096", "--max-batch-requests", "8", "--revision", "r1"},
			want: map[string]any{"max_input_length": 4096.0, "max_batch_tokens": 4096.0, "max_batch_requests": 8.0, "model_sha": "r1"},
		},
		{
			name: "reranker",
			args: []string{"--model-id", "BAAI/bge-reranker-v2-m3", "--served-model-name", "rr"},
			want: map[string]any{
				"max_input_length": 8192.0, "served_model_name": "rr",
				"model_type": map[string]any{"reranker": map[string]any{"id2label": map[string]any{"0": "LABEL_0"}, "label2id": map[string]any{"LABEL_0": 0.0}}},
			},
		},
		{
			name: "splade",
			args: []string{"--model-id", "naver/splade-v3"},
			want: map[string]any{"model_type": map[string]any{"embedding": map[string]any{"pooling": "splade"}}},
		},
		{
			name: "small model and auto-truncate off",
			args: []string{"--model-id", "BAAI/bge-small-en-v1.5", "--auto-truncate=false", "--tokenization-workers", "3"},
			want: map[string]any{"max_input_length": 512.0, "auto_truncate": false, "tokenization_workers": 3.0},
		},
		{
			name: "unknown model uses sim knobs",
			args: []string{"--model-id", "acme/encoder", "--sim-max-input-length", "128"},
			want: map[string]any{"max_input_length": 128.0, "model_type": map[string]any{"embedding": map[string]any{"pooling": "cls"}}},
		},
		{
			name: "candle CPU backend forces 4 entries per batch",
			args: []string{"--model-id", "BAAI/bge-m3", "--sim-backend", "candle", "--max-batch-requests", "16"},
			want: map[string]any{"max_batch_requests": 4.0},
		},
		{
			name: "ONNX Runtime backend forces 8 entries per batch",
			args: []string{"--model-id", "BAAI/bge-m3", "--sim-backend", "ort"},
			want: map[string]any{"max_batch_requests": 8.0},
		},
		{
			name: "CUDA backend keeps the flag",
			args: []string{"--model-id", "BAAI/bge-m3", "--sim-backend", "cuda", "--max-batch-requests", "16"},
			want: map[string]any{"max_batch_requests": 16.0},
		},
		{
			name: "classifier",
			args: []string{"--model-id", "acme/sentiment", "--sim-model-type", "classifier"},
			want: map[string]any{"model_type": map[string]any{"classifier": map[string]any{
				"id2label": map[string]any{"0": "LABEL_0", "1": "LABEL_1"},
				"label2id": map[string]any{"LABEL_0": 0.0, "LABEL_1": 1.0},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := start(t, tt.args...)
			r := get(t, url+"/info")
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			info := decode[map[string]any](t, r)
			for k, want := range tt.want {
				if got := info[k]; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %v, want %v", k, got, want)
				}
			}
		})
	}
}

// TestInfoFieldOrder checks that /info writes TEI's fields in TEI's order
// (its Info struct's), with the simulator's own field last.
func TestInfoFieldOrder(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	dec := json.NewDecoder(bytes.NewReader(get(t, url+"/info").body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v %v", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"model_id", "model_sha", "model_dtype", "served_model_name", "model_type",
		"max_concurrent_requests", "max_input_length", "max_batch_tokens", "max_batch_requests",
		"max_client_batch_size", "auto_truncate", "tokenization_workers", "version", "sha", "docker_label", "simulator"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %q\nwant %q", keys, want)
	}
}

func TestEmbeddingDimensions(t *testing.T) {
	tests := []struct {
		model string
		args  []string
		dim   int
	}{
		{"BAAI/bge-m3", nil, 1024},
		{"BAAI/bge-small-en-v1.5", nil, 384},
		{"BAAI/bge-base-en-v1.5", nil, 768},
		{"BAAI/bge-large-en-v1.5", nil, 1024},
		{"sentence-transformers/all-MiniLM-L6-v2", nil, 384},
		{"acme/unknown", nil, 768},
		{"acme/unknown", []string{"--sim-dim", "32"}, 32},
	}
	for _, tt := range tests {
		t.Run(tt.model+strings.Join(tt.args, ""), func(t *testing.T) {
			_, url := start(t, append([]string{"--model-id", tt.model}, tt.args...)...)
			vecs := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": "hello"}))
			if len(vecs) != 1 || len(vecs[0]) != tt.dim {
				t.Fatalf("got %d vectors of %d, want 1 of %d", len(vecs), len(vecs[0]), tt.dim)
			}
		})
	}
}

// TestWholeBodiesHaveALength checks that answers carry Content-Length, as
// TEI's (axum's Json is one whole body, whose length hyper sends), and are
// never chunked: a proxy reading them may size its buffer once.
func TestWholeBodiesHaveALength(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-m3")
	for name, r := range map[string]response{
		"embed":  post(t, url+"/embed", map[string]any{"inputs": []string{"a", "b", "c"}}),
		"error":  post(t, url+"/embed", map[string]any{"inputs": []string{}}),
		"openai": post(t, url+"/v1/embeddings", map[string]any{"input": "a", "model": "BAAI/bge-m3"}),
	} {
		if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(r.body)) {
			t.Errorf("%s: Content-Length %q for a body of %d bytes (status %d)", name, got, len(r.body), r.status)
		}
	}
}

// TestErrors checks every limit and error against TEI 1.9.3's exact status,
// body shape and message.
func TestErrors(t *testing.T) {
	batch := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("text %d", i)
		}
		return out
	}
	type native = teiError
	tests := []struct {
		name    string
		args    []string
		path    string
		body    any
		headers map[string]string // replace the default Content-Type header
		status  int
		native  *native // want this JSON body
		openai  string  // want this exact flat OpenAI body
		plain   bool    // want a plain-text body (framework errors)
		empty   bool    // want an empty body
	}{
		{
			name: "too many inputs", args: []string{"--max-client-batch-size", "16"},
			path: "/embed", body: map[string]any{"inputs": batch(17)},
			status: 422, native: &native{"batch size 17 > maximum allowed batch size 16", "Validation"},
		},
		{
			name: "not enough permits", args: []string{"--max-concurrent-requests", "2"},
			path: "/embed", body: map[string]any{"inputs": batch(3)},
			status: 429, native: &native{"Model is overloaded", "Overloaded"},
		},
		{
			name: "body over payload limit", args: []string{"--payload-limit", "100"},
			path: "/embed", body: map[string]any{"inputs": strings.Repeat("a", 200)},
			status: 413, plain: true,
		},
		{
			name: "rerank on an embedding model",
			path: "/rerank", body: map[string]any{"query": "q", "texts": []string{"a"}},
			status: 424, native: &native{"Backend error: model is not a re-ranker model", "Backend"},
		},
		{
			name: "embed on a reranker", args: []string{"--model-id", "BAAI/bge-reranker-v2-m3"},
			path: "/embed", body: map[string]any{"inputs": "a"},
			status: 424, native: &native{"Backend error: Model is not an embedding model", "Backend"},
		},
		{
			name: "embed on a classifier", args: []string{"--sim-model-type", "classifier"},
			path: "/embed", body: map[string]any{"inputs": "a"},
			status: 424, native: &native{"Backend error: Model is not an embedding model", "Backend"},
		},
		{
			name: "embed_sparse on a dense model",
			path: "/embed_sparse", body: map[string]any{"inputs": "a"},
			status: 424, native: &native{"Backend error: Model is not an embedding model with SPLADE pooling", "Backend"},
		},
		{
			name: "normalized embed on SPLADE", args: []string{"--model-id", "naver/splade-v3"},
			path: "/embed", body: map[string]any{"inputs": "a"},
			status: 424, native: &native{"Backend error: `normalize` is not available for SPLADE models", "Backend"},
		},
		{
			name: "predict on an embedding model",
			path: "/predict", body: map[string]any{"inputs": "a"},
			status: 424, native: &native{"Backend error: Model is not a classifier model", "Backend"},
		},
		{
			name: "empty batch",
			path: "/embed", body: `{"inputs": []}`,
			status: 400, native: &native{"Input validation error: `inputs` cannot be empty", "Empty"},
		},
		{
			name: "empty string",
			path: "/embed", body: map[string]any{"inputs": ""},
			status: 400, native: &native{"Input validation error: `inputs` cannot be empty", "Empty"},
		},
		{
			name: "empty string in a batch",
			path: "/embed", body: map[string]any{"inputs": []string{"a", ""}},
			status: 400, native: &native{"Input validation error: `inputs` cannot be empty", "Empty"},
		},
		{
			name: "rerank without texts", args: []string{"--model-id", "BAAI/bge-reranker-base"},
			path: "/rerank", body: map[string]any{"query": "q", "texts": []string{}},
			status: 400, native: &native{"`texts` cannot be empty", "Empty"},
		},
		{
			name: "too long without truncation", args: []string{"--model-id", "BAAI/bge-small-en-v1.5"},
			path: "/embed", body: map[string]any{"inputs": words(0, 698), "truncate": false},
			status: 422, native: &native{"Input validation error: `inputs` must have less than 512 tokens. Given: 700", "Validation"},
		},
		{
			name: "too long with auto-truncate off", args: []string{"--model-id", "BAAI/bge-small-en-v1.5", "--auto-truncate=false"},
			path: "/embed", body: map[string]any{"inputs": words(0, 698)},
			status: 422, native: &native{"Input validation error: `inputs` must have less than 512 tokens. Given: 700", "Validation"},
		},
		{
			name: "too many characters", args: []string{"--sim-max-input-length", "8"},
			path: "/embed", body: map[string]any{"inputs": strings.Repeat("a", 2001), "truncate": false},
			status: 422, native: &native{"Input validation error: `inputs` must have less than 2000 characters. Given: 2001", "Validation"},
		},
		{
			name: "dimensions zero",
			path: "/embed", body: map[string]any{"inputs": "a", "dimensions": 0},
			status: 422, native: &native{"Input validation error: `dimensions` should be positive", "Validation"},
		},
		{
			name: "dimensions over the model's", args: []string{"--sim-dim", "16"},
			path: "/embed", body: map[string]any{"inputs": "a", "dimensions": 17},
			status: 422, native: &native{"Input validation error: `dimensions` should be smaller than the maximum embedding dimension.", "Validation"},
		},
		{
			name: "unknown prompt name", args: []string{"--sim-prompts", "query=q: "},
			path: "/embed", body: map[string]any{"inputs": "a", "prompt_name": "doc"},
			status: 422, native: &native{"Input validation error: `default-prompt-name` is set to `doc` but it was not found in the Sentence Transformers prompts. Available prompts: [\"query\"]", "Validation"},
		},
		{
			name: "missing API key", args: []string{"--api-key", "k"},
			path: "/embed", body: map[string]any{"inputs": "a"},
			status: 401, empty: true,
		},
		{
			name: "wrong API key", args: []string{"--api-key", "k"},
			path: "/embed", body: map[string]any{"inputs": "a"},
			headers: map[string]string{"Content-Type": "application/json", "Authorization": "Bearer nope"},
			status:  401, empty: true,
		},
		{
			name: "malformed JSON",
			path: "/embed", body: `{"inputs": "a"`,
			status: 400, plain: true,
		},
		{
			name: "wrong content type",
			path: "/embed", body: map[string]any{"inputs": "a"},
			headers: map[string]string{"Content-Type": "text/plain"},
			status:  415, plain: true,
		},
		{
			name: "no content type",
			path: "/embed", body: map[string]any{"inputs": "a"},
			headers: map[string]string{},
			status:  415, plain: true,
		},
		{
			name: "inputs of the wrong type",
			path: "/embed", body: `{"inputs": 5}`,
			status: 422, plain: true,
		},
		{
			name: "inputs missing",
			path: "/embed", body: `{"input": "a"}`,
			status: 422, plain: true,
		},
		{
			name: "negative token id",
			path: "/embed", body: `{"inputs": [1, -2]}`,
			status: 422, plain: true,
		},
		{
			name: "bad truncation direction",
			path: "/embed", body: `{"inputs": "a", "truncation_direction": "Middle"}`,
			status: 422, plain: true,
		},
		{
			name: "texts not a list", args: []string{"--model-id", "BAAI/bge-reranker-base"},
			path: "/rerank", body: `{"query": "q", "texts": "a"}`,
			status: 422, plain: true,
		},
		{
			name: "OpenAI batch too large", args: []string{"--max-client-batch-size", "16"},
			path: "/v1/embeddings", body: map[string]any{"input": batch(17)},
			status: 422, openai: `{"message":"batch size 17 > maximum allowed batch size 16","code":422,"type":"Validation"}`,
		},
		{
			name: "OpenAI on a reranker", args: []string{"--model-id", "BAAI/bge-reranker-base"},
			path: "/embeddings", body: map[string]any{"input": "a"},
			status: 424, openai: `{"message":"Backend error: Model is not an embedding model","code":424,"type":"Backend"}`,
		},
		{
			name: "OpenAI overloaded", args: []string{"--max-concurrent-requests", "1"},
			path: "/v1/embeddings", body: map[string]any{"input": []string{"a", "b"}},
			status: 429, openai: `{"message":"Model is overloaded","code":429,"type":"Overloaded"}`,
		},
		{
			name: "OpenAI bad encoding format",
			path: "/v1/embeddings", body: map[string]any{"input": "a", "encoding_format": "hex"},
			status: 422, plain: true,
		},
		{
			name: "decode empty ids",
			path: "/decode", body: `{"ids": []}`,
			status: 400, native: &native{"Input validation error: `input_ids` cannot be empty", "Empty"},
		},
		{
			name: "decode empty ids in a batch",
			path: "/decode", body: `{"ids": [[101], []]}`,
			status: 400, native: &native{"Input validation error: `input_ids` cannot be empty", "Empty"},
		},
		{
			name: "tokenize empty batch",
			path: "/tokenize", body: `{"inputs": []}`,
			status: 400, native: &native{"`inputs` cannot be empty", "Empty"},
		},
		{
			name: "tokenize empty string",
			path: "/tokenize", body: `{"inputs": ["a", ""]}`,
			status: 400, native: &native{"Input validation error: `inputs` cannot be empty", "Empty"},
		},
		{
			name: "embed_all on SPLADE", args: []string{"--model-id", "naver/splade-v3"},
			path: "/embed_all", body: map[string]any{"inputs": "a"},
			status: 424, native: &native{"Backend error: `embed_all` is not available for SPLADE models", "Backend"},
		},
		{
			name: "rerank with a default prompt", args: []string{"--model-id", "BAAI/bge-reranker-base", "--default-prompt", "query: "},
			path: "/rerank", body: map[string]any{"query": "q", "texts": []string{"a", "b"}},
			status: 422, native: &native{"Input validation error: `prompt_name` cannot be set with dual inputs", "Validation"},
		},
		{
			name: "rerank with a default prompt name", args: []string{"--model-id", "BAAI/bge-reranker-base", "--sim-prompts", "q=query: ", "--default-prompt-name", "q"},
			path: "/rerank", body: map[string]any{"query": "q", "texts": []string{"a"}},
			status: 422, native: &native{"Input validation error: `prompt_name` cannot be set with dual inputs", "Validation"},
		},
		{
			name: "predict pair with a default prompt", args: []string{"--model-id", "BAAI/bge-reranker-base", "--default-prompt", "query: "},
			path: "/predict", body: map[string]any{"inputs": []string{"q", "a"}},
			status: 422, native: &native{"Input validation error: `prompt_name` cannot be set with dual inputs", "Validation"},
		},
		{
			name: "first failing input answers", args: []string{"--model-id", "BAAI/bge-small-en-v1.5"},
			path: "/embed", body: map[string]any{"inputs": []string{"", words(0, 698)}, "truncate": false},
			status: 400, native: &native{"Input validation error: `inputs` cannot be empty", "Empty"},
		},
		{
			name: "tokenize too many inputs", args: []string{"--max-client-batch-size", "2"},
			path: "/tokenize", body: map[string]any{"inputs": batch(3)},
			status: 422, native: &native{"batch size 3 > maximum allowed batch size 2", "Validation"},
		},
		{
			name: "rerank too many texts", args: []string{"--model-id", "BAAI/bge-reranker-base", "--max-client-batch-size", "2"},
			path: "/rerank", body: map[string]any{"query": "q", "texts": batch(3)},
			status: 422, native: &native{"batch size 3 > maximum allowed batch size 2", "Validation"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := start(t, append([]string{"--model-id", "BAAI/bge-small-en-v1.5"}, tt.args...)...)
			headers := tt.headers
			if headers == nil {
				headers = map[string]string{"Content-Type": "application/json"}
			}
			r := do(t, http.MethodPost, url+tt.path, tt.body, headers)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.status, r.body)
			}
			ct := r.header.Get("Content-Type")
			switch {
			case tt.native != nil:
				if ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				if got := decode[native](t, r); got != *tt.native {
					t.Errorf("body %+v, want %+v", got, *tt.native)
				}
			case tt.openai != "":
				if got := strings.TrimSpace(string(r.body)); got != tt.openai {
					t.Errorf("body %s, want %s", got, tt.openai)
				}
			case tt.plain:
				if !strings.HasPrefix(ct, "text/plain") || len(r.body) == 0 || r.body[0] == '{' {
					t.Errorf("want a plain-text body, got %q: %s", ct, r.body)
				}
			case tt.empty:
				if len(r.body) != 0 {
					t.Errorf("want an empty body, got %q", r.body)
				}
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--api-key", "k")
	ok := do(t, http.MethodPost, url+"/embed", map[string]any{"inputs": "a"},
		map[string]string{"Content-Type": "application/json", "Authorization": "Bearer k"})
	if ok.status != http.StatusOK {
		t.Errorf("with the key: %d %s", ok.status, ok.body)
	}
	if r := get(t, url+"/info"); r.status != http.StatusUnauthorized {
		t.Errorf("/info without the key: %d, want 401", r.status)
	}
	// Health and metrics stay public, as in TEI.
	for _, path := range []string{"/health", "/metrics", "/", "/ping"} {
		if r := get(t, url+path); r.status != http.StatusOK {
			t.Errorf("%s without the key: %d, want 200", path, r.status)
		}
	}
}

func TestHealth(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	r := get(t, url+"/health")
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("healthy: %d %q, want 200 and an empty body", r.status, r.body)
	}
	s.SetFault(teisim.Fault{Unhealthy: true})
	r = get(t, url+"/health")
	if r.status != http.StatusServiceUnavailable || strings.TrimSpace(string(r.body)) != `{"error":"unhealthy","error_type":"Unhealthy"}` {
		t.Fatalf("unhealthy: %d %s", r.status, r.body)
	}
	s.SetFault(teisim.Fault{})
	if r := get(t, url+"/health"); r.status != http.StatusOK {
		t.Fatalf("healthy again: %d", r.status)
	}

	_, url = start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-unhealthy")
	if r := get(t, url+"/health"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("--sim-unhealthy: %d, want 503", r.status)
	}
}

func TestEmbedDeterministic(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	texts := []string{"What is deep learning?", "Deep learning is a kind of machine learning.", "Paris is in France."}
	batch := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": texts}))
	for i, text := range texts {
		alone := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": text}))
		if !slices.Equal(alone[0], batch[i]) {
			t.Errorf("%q: alone and in a batch differ", text)
		}
		if !slices.Equal(alone[0], s.Embedding(text, true)) {
			t.Errorf("%q: Embedding differs from /embed", text)
		}
		if n := norm(alone[0]); math.Abs(n-1) > 1e-5 {
			t.Errorf("%q: norm %v, want 1", text, n)
		}
		raw := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": text, "normalize": false}))
		if !slices.Equal(raw[0], s.Embedding(text, false)) {
			t.Errorf("%q: unnormalized Embedding differs from /embed", text)
		}
		if n := norm(raw[0]); math.Abs(n-1) < 0.1 {
			t.Errorf("%q: unnormalized norm %v is about 1", text, n)
		}
	}
	// Texts sharing words are closer than unrelated ones, so retrieval
	// tests over the simulator stay meaningful.
	if related, unrelated := dot(batch[0], batch[1]), dot(batch[0], batch[2]); related <= unrelated {
		t.Errorf("similarity of related texts %v <= unrelated %v", related, unrelated)
	}

	// Another model gives other vectors for the same text.
	other, _ := start(t, "--model-id", "acme/other", "--sim-dim", "384")
	if slices.Equal(other.Embedding(texts[0], true), s.Embedding(texts[0], true)) {
		t.Error("two models embed a text identically")
	}
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestEmbedOptions(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-prompts", "query=query: ")
	text := "the quick brown fox"

	t.Run("dimensions cut then normalize", func(t *testing.T) {
		v := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": text, "dimensions": 8}))[0]
		if len(v) != 8 || math.Abs(norm(v)-1) > 1e-5 {
			t.Fatalf("len %d norm %v", len(v), norm(v))
		}
		raw := s.Embedding(text, false)[:8]
		n := norm(raw)
		for i := range v {
			if math.Abs(float64(v[i])-float64(raw[i])/n) > 1e-5 {
				t.Fatalf("dim %d: %v, want %v", i, v[i], float64(raw[i])/n)
			}
		}
	})
	t.Run("token ids embed as their text", func(t *testing.T) {
		toks := decode[[][]struct {
			ID uint32 `json:"id"`
		}](t, post(t, url+"/tokenize", map[string]any{"inputs": text}))
		ids := make([]uint32, len(toks[0]))
		for i, tok := range toks[0] {
			ids[i] = tok.ID
		}
		byIDs := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": ids}))
		mixed := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": []any{ids, text}}))
		want := s.Embedding(text, true)
		if !slices.Equal(byIDs[0], want) || !slices.Equal(mixed[0], want) || !slices.Equal(mixed[1], want) {
			t.Fatal("token ids and text embed differently")
		}
	})
	t.Run("prompt changes the vector", func(t *testing.T) {
		v := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": text, "prompt_name": "query"}))[0]
		if !slices.Equal(v, s.Embedding("query: "+text, true)) {
			t.Fatal("prompt_name query is not the prompt prepended")
		}
	})
	t.Run("truncation keeps the chosen end", func(t *testing.T) {
		long := words(0, 700) // 702 tokens with [CLS] and [SEP]; 510 fit
		for _, tc := range []struct {
			dir  string
			want string
		}{
			{"Right", words(0, 510)},
			{"left", words(190, 510)},
		} {
			v := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": long, "truncation_direction": tc.dir}))[0]
			if !slices.Equal(v, s.Embedding(tc.want, true)) {
				t.Errorf("%s: not the embedding of the kept words", tc.dir)
			}
		}
	})
	t.Run("default prompt", func(t *testing.T) {
		s2, url2 := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--default-prompt", "doc: ")
		v := decode[[][]float32](t, post(t, url2+"/embed", map[string]any{"inputs": text}))[0]
		if !slices.Equal(v, s.Embedding("doc: "+text, true)) || !slices.Equal(v, s2.Embedding(text, true)) {
			t.Fatal("default prompt not applied")
		}
	})
}

func TestHeaders(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	r := post(t, url+"/embed", map[string]any{"inputs": []string{"a b", "c"}})
	for _, h := range []string{"x-compute-time", "x-compute-tokens", "x-compute-characters", "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time"} {
		if r.header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if got := r.header.Get("x-compute-tokens"); got != "7" { // [CLS] a b [SEP] + [CLS] c [SEP]
		t.Errorf("x-compute-tokens %s, want 7", got)
	}
	if got := r.header.Get("x-compute-characters"); got != "4" {
		t.Errorf("x-compute-characters %s, want 4", got)
	}
}

func TestRerank(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	texts := []string{"Paris is the capital of France.", "What is deep learning? Deep learning is a subset of machine learning.", "Bananas are yellow.", "Learning to cook."}
	ranks := decode[[]struct {
		Index int      `json:"index"`
		Score float64  `json:"score"`
		Text  *string  `json:"text"`
		Extra *float64 `json:"extra"`
	}](t, post(t, url+"/rerank", map[string]any{"query": "What is deep learning?", "texts": texts, "return_text": true}))
	if len(ranks) != len(texts) {
		t.Fatalf("%d ranks for %d texts", len(ranks), len(texts))
	}
	seen := make(map[int]bool)
	for i, r := range ranks {
		if r.Score <= 0 || r.Score >= 1 {
			t.Errorf("score %v outside (0,1)", r.Score)
		}
		if i > 0 && r.Score > ranks[i-1].Score {
			t.Errorf("not sorted descending: %v after %v", r.Score, ranks[i-1].Score)
		}
		if r.Text == nil || *r.Text != texts[r.Index] {
			t.Errorf("return_text: got %v for index %d", r.Text, r.Index)
		}
		seen[r.Index] = true
	}
	if len(seen) != len(texts) {
		t.Errorf("indexes %v are not a permutation", seen)
	}
	if ranks[0].Index != 1 {
		t.Errorf("most relevant is %d, want 1 (the text that answers the query)", ranks[0].Index)
	}

	raw := decode[[]struct {
		Index int     `json:"index"`
		Score float64 `json:"score"`
		Text  *string `json:"text"`
	}](t, post(t, url+"/rerank", map[string]any{"query": "What is deep learning?", "texts": texts, "raw_scores": true}))
	for _, r := range raw {
		if r.Text != nil {
			t.Error("text returned without return_text")
		}
		for _, s := range ranks {
			if s.Index == r.Index && math.Abs(1/(1+math.Exp(-r.Score))-s.Score) > 1e-5 {
				t.Errorf("index %d: sigmoid(raw %v) != score %v", r.Index, r.Score, s.Score)
			}
		}
	}
}

// TestRerankTies checks TEI's order among equal scores: it sorts ascending
// (stably) and reverses, so the highest index comes first.
func TestRerankTies(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-reranker-base")
	ranks := decode[[]struct {
		Index int     `json:"index"`
		Score float64 `json:"score"`
	}](t, post(t, url+"/rerank", map[string]any{"query": "deep learning", "texts": []string{"same text", "deep learning", "same text", "same text"}}))
	var order []int
	for _, r := range ranks {
		order = append(order, r.Index)
	}
	if want := []int{1, 3, 2, 0}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v (ties: highest index first)", order, want)
	}
}

// TestDefaultPromptSparesSingleTexts checks that a default prompt, which
// TEI refuses on pairs, still applies to a single text on /predict.
func TestDefaultPromptSparesSingleTexts(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-reranker-base", "--default-prompt", "query: ")
	if r := post(t, url+"/predict", map[string]any{"inputs": "a"}); r.status != http.StatusOK {
		t.Fatalf("single text: %d %s", r.status, r.body)
	}
}

func TestPredict(t *testing.T) {
	_, url := start(t, "--model-id", "acme/sentiment", "--sim-model-type", "classifier")
	type pred struct {
		Score float64 `json:"score"`
		Label string  `json:"label"`
	}
	single := decode[[]pred](t, post(t, url+"/predict", map[string]any{"inputs": "I love it"}))
	if len(single) != 2 || math.Abs(single[0].Score+single[1].Score-1) > 1e-5 || single[0].Score < single[1].Score {
		t.Errorf("single: %+v, want two sorted softmax scores", single)
	}
	batch := decode[[][]pred](t, post(t, url+"/predict", map[string]any{"inputs": [][]string{{"I love it"}, {"a", "b"}}}))
	if len(batch) != 2 || !slices.Equal(batch[0], single) {
		t.Errorf("batch: %+v", batch)
	}

	_, url = start(t, "--model-id", "BAAI/bge-reranker-base")
	pair := decode[[]pred](t, post(t, url+"/predict", map[string]any{"inputs": []string{"deep learning", "deep learning is great"}}))
	if len(pair) != 1 || pair[0].Label != "LABEL_0" || pair[0].Score <= 0.5 || pair[0].Score >= 1 {
		t.Errorf("reranker pair: %+v", pair)
	}
}

func TestSparse(t *testing.T) {
	_, url := start(t, "--model-id", "naver/splade-v3")
	type sv struct {
		Index int     `json:"index"`
		Value float32 `json:"value"`
	}
	text := "sparse retrieval with splade"
	got := decode[[][]sv](t, post(t, url+"/embed_sparse", map[string]any{"inputs": []string{text, text}}))
	if len(got) != 2 || len(got[0]) == 0 || !slices.Equal(got[0], got[1]) {
		t.Fatalf("got %v", got)
	}
	for i, v := range got[0] {
		if v.Value <= 0 || (i > 0 && v.Index <= got[0][i-1].Index) {
			t.Fatalf("entry %d %+v: want positive values by increasing index", i, v)
		}
	}
	dense := decode[[][]float32](t, post(t, url+"/embed", map[string]any{"inputs": text, "normalize": false}))[0]
	for _, v := range got[0] {
		if dense[v.Index] != v.Value {
			t.Fatalf("dense[%d] = %v, sparse %v", v.Index, dense[v.Index], v.Value)
		}
	}
	// POST / is /embed_sparse for a SPLADE model.
	if root := decode[[][]sv](t, post(t, url+"/", map[string]any{"inputs": text})); !slices.Equal(root[0], got[0]) {
		t.Error("POST / is not /embed_sparse")
	}
}

func TestOpenAI(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--served-model-name", "small")
	type item struct {
		Object    string `json:"object"`
		Embedding any    `json:"embedding"`
		Index     int    `json:"index"`
	}
	type answer struct {
		Object string `json:"object"`
		Data   []item `json:"data"`
		Model  string `json:"model"`
		Usage  struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	for _, path := range []string{"/v1/embeddings", "/embeddings"} {
		a := decode[answer](t, post(t, url+path, map[string]any{"input": []string{"a b", "c"}, "model": "ignored"}))
		if a.Object != "list" || a.Model != "small" || len(a.Data) != 2 || a.Usage.PromptTokens != 7 || a.Usage.TotalTokens != 7 {
			t.Errorf("%s: %+v", path, a)
		}
	}
	f := decode[answer](t, post(t, url+"/v1/embeddings", map[string]any{"input": "a b", "encoding_format": "float"}))
	b := decode[answer](t, post(t, url+"/v1/embeddings", map[string]any{"input": "a b", "encoding_format": "base64"}))
	want := s.Embedding("a b", true)
	floats, _ := f.Data[0].Embedding.([]any)
	if len(floats) != len(want) {
		t.Fatalf("float embedding of %d, want %d", len(floats), len(want))
	}
	for i := range want {
		if float32(floats[i].(float64)) != want[i] {
			t.Fatalf("float %d: %v, want %v", i, floats[i], want[i])
		}
	}
	raw, err := base64.StdEncoding.DecodeString(b.Data[0].Embedding.(string))
	if err != nil || len(raw) != 4*len(want) {
		t.Fatalf("base64: %v, %d bytes", err, len(raw))
	}
	for i := range want {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != want[i] {
			t.Fatalf("base64 %d: %v, want %v", i, got, want[i])
		}
	}
}

func TestTokenize(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-prompts", "q=query: ")
	type tok struct {
		ID      uint32 `json:"id"`
		Text    string `json:"text"`
		Special bool   `json:"special"`
		Start   *int   `json:"start"`
		Stop    *int   `json:"stop"`
	}
	got := decode[[][]tok](t, post(t, url+"/tokenize", map[string]any{"inputs": "Héllo, world"}))[0]
	texts := make([]string, len(got))
	for i, tk := range got {
		texts[i] = tk.Text
		if tk.Special != (tk.Start == nil) {
			t.Errorf("token %+v: specials and only specials lack offsets", tk)
		}
		if !tk.Special && string([]rune("Héllo, world")[*tk.Start:*tk.Stop]) != tk.Text {
			t.Errorf("token %q: offsets %d..%d", tk.Text, *tk.Start, *tk.Stop)
		}
	}
	if want := []string{"[CLS]", "Héllo", ",", "world", "[SEP]"}; !slices.Equal(texts, want) {
		t.Errorf("tokens %q, want %q", texts, want)
	}
	plain := decode[[][]tok](t, post(t, url+"/tokenize", map[string]any{"inputs": []string{"a", "b"}, "add_special_tokens": false}))
	if len(plain) != 2 || len(plain[0]) != 1 || plain[0][0].Special {
		t.Errorf("without special tokens: %+v", plain)
	}
	prompted := decode[[][]tok](t, post(t, url+"/tokenize", map[string]any{"inputs": "x", "prompt_name": "q"}))[0]
	if len(prompted) != 5 || prompted[1].Text != "query" {
		t.Errorf("with prompt: %+v", prompted)
	}
	decoded := decode[[]string](t, post(t, url+"/decode", map[string]any{"ids": []uint32{got[0].ID, got[3].ID}}))
	if len(decoded) != 1 || decoded[0] != "world" {
		t.Errorf("decode: %q", decoded)
	}
}

func TestSimilarity(t *testing.T) {
	_, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	sims := decode[[]float64](t, post(t, url+"/similarity", map[string]any{"inputs": map[string]any{
		"source_sentence": "deep learning", "sentences": []string{"deep learning", "bananas"},
	}}))
	if len(sims) != 2 || math.Abs(sims[0]-1) > 1e-5 || sims[1] >= sims[0] {
		t.Errorf("similarities %v", sims)
	}
}

func TestRootRoute(t *testing.T) {
	tests := []struct {
		model string
		body  any
		want  string // a prefix of the body
	}{
		{"BAAI/bge-small-en-v1.5", map[string]any{"inputs": "a"}, "[["},
		{"BAAI/bge-reranker-base", map[string]any{"query": "a", "texts": []string{"a"}}, `[{"index":0`},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			_, url := start(t, "--model-id", tt.model)
			r := post(t, url+"/", tt.body)
			if r.status != http.StatusOK || !strings.HasPrefix(string(r.body), tt.want) {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5")
	tests := []struct {
		fault  teisim.Fault
		status int
		want   teiError
	}{
		{teisim.Fault{ErrorRate: 1}, 424, teiError{"Backend error: Inference failed (injected by teisim)", "Backend"}},
		{teisim.Fault{ErrorRate: 1, ErrorStatus: 503}, 503, teiError{"unhealthy", "Unhealthy"}},
		{teisim.Fault{ErrorRate: 1, ErrorStatus: 429}, 429, teiError{"Model is overloaded", "Overloaded"}},
		{teisim.Fault{ErrorRate: 1, ErrorStatus: 500}, 500, teiError{"Backend error: Inference failed (injected by teisim)", "Backend"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			s.SetFault(tt.fault)
			r := post(t, url+"/embed", map[string]any{"inputs": "a"})
			if r.status != tt.status || decode[teiError](t, r) != tt.want {
				t.Fatalf("%d %s", r.status, r.body)
			}
			o := post(t, url+"/v1/embeddings", map[string]any{"input": "a"})
			if want := fmt.Sprintf(`{"message":%q,"code":%d,"type":%q}`, tt.want.Error, tt.status, tt.want.ErrorType); strings.TrimSpace(string(o.body)) != want {
				t.Fatalf("OpenAI: %s, want %s", o.body, want)
			}
		})
	}
	s.SetFault(teisim.Fault{})
	if r := post(t, url+"/embed", map[string]any{"inputs": "a"}); r.status != http.StatusOK {
		t.Fatalf("after clearing faults: %d", r.status)
	}
	// Validation still comes first: a fault only hits requests that pass it.
	s.SetFault(teisim.Fault{ErrorRate: 1})
	if r := post(t, url+"/embed", map[string]any{"inputs": ""}); r.status != http.StatusBadRequest {
		t.Fatalf("empty input under faults: %d, want 400", r.status)
	}
}

// TestNaNOutputs checks what a model that outputs NaN looks like on each
// route, as TEI writes it: null entries in JSON vectors (serde_json's NaN),
// NaN bits in base64, and 424 "score is NaN" for scores. Inputs without the
// marker are unaffected, and Embedding agrees with /embed.
func TestNaNOutputs(t *testing.T) {
	const marker = "NaNNaN"
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-dim", "4", "--sim-nan-marker", marker)

	r := post(t, url+"/embed", map[string]any{"inputs": []string{"fine", "this is " + marker}})
	if r.status != http.StatusOK {
		t.Fatalf("/embed: %d %s", r.status, r.body)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw) != 2 {
		t.Fatalf("/embed: %s", r.body)
	}
	if got := string(raw[1]); got != "[null,null,null,null]" {
		t.Errorf("NaN vector written %s, want [null,null,null,null]", got)
	}
	if strings.Contains(string(raw[0]), "null") {
		t.Errorf("the other input's vector has nulls: %s", raw[0])
	}
	if v := s.Embedding("this is "+marker, true); len(v) != 4 || !math.IsNaN(float64(v[0])) {
		t.Errorf("Embedding = %v, want NaN", v)
	}

	o := decode[struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}](t, post(t, url+"/v1/embeddings", map[string]any{"input": marker, "encoding_format": "base64"}))
	bits, err := base64.StdEncoding.DecodeString(o.Data[0].Embedding)
	if err != nil || len(bits) != 16 {
		t.Fatalf("base64 %q: %v", o.Data[0].Embedding, err)
	}
	if f := math.Float32frombits(binary.LittleEndian.Uint32(bits)); !math.IsNaN(float64(f)) {
		t.Errorf("base64 holds %v, want NaN", f)
	}

	sims := post(t, url+"/similarity", map[string]any{"inputs": map[string]any{"source_sentence": "a", "sentences": []string{marker, "a"}}})
	if sims.status != http.StatusOK || !strings.HasPrefix(string(sims.body), "[null,") {
		t.Errorf("/similarity: %d %s, want null first", sims.status, sims.body)
	}

	_, rr := start(t, "--model-id", "BAAI/bge-reranker-base", "--sim-nan-marker", marker)
	for _, req := range []struct {
		path string
		body any
	}{
		{"/rerank", map[string]any{"query": "q", "texts": []string{"a", marker}}},
		{"/predict", map[string]any{"inputs": [][]string{{"q", "a"}, {"q", marker}}}},
	} {
		r := post(t, rr+req.path, req.body)
		if r.status != http.StatusFailedDependency || decode[teiError](t, r) != (teiError{"score is NaN", "Backend"}) {
			t.Errorf("%s: %d %s, want 424 score is NaN", req.path, r.status, r.body)
		}
	}

	_, sp := start(t, "--model-id", "naver/splade-v3", "--sim-nan-marker", marker)
	sparse := decode[[][]struct {
		Index int      `json:"index"`
		Value *float64 `json:"value"`
	}](t, post(t, sp+"/embed_sparse", map[string]any{"inputs": marker}))
	// TEI keeps every entry that is not 0.0; NaN is not, so all are kept.
	if len(sparse[0]) != 30522 || sparse[0][0].Value != nil || sparse[0][30521].Index != 30521 {
		t.Errorf("/embed_sparse: %d entries, first %+v; want every index with a null value", len(sparse[0]), sparse[0][0])
	}
}

// TestStallHoldsPermitsAndCancelReleases checks that a stalled request keeps
// its permits (so others get 429), and that a client giving up returns them.
func TestStallHoldsPermitsAndCancelReleases(t *testing.T) {
	s, url := start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "1")
	s.SetFault(teisim.Fault{Stall: time.Hour})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/embed", strings.NewReader(`{"inputs":"a"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// The embed count moves once the stalled request holds its permit.
	deadline := time.Now().Add(5 * time.Second)
	for s.EmbedCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled request never got its permit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := post(t, url+"/embed", map[string]any{"inputs": "b"}); r.status != http.StatusTooManyRequests {
		t.Fatalf("second request while the first stalls: %d, want 429", r.status)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("stalled request returned instead of being cancelled")
	}
	s.SetFault(teisim.Fault{})
	deadline = time.Now().Add(5 * time.Second)
	for {
		r := post(t, url+"/embed", map[string]any{"inputs": "b"})
		if r.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("permit not released after cancel: %d", r.status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseEndsStalledRequests checks Close does not wait out a stall.
func TestCloseEndsStalledRequests(t *testing.T) {
	cfg, err := teisim.ParseArgs([]string{"--model-id", "x", "--sim-stall", "1h"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	s, err := teisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := make(chan int, 1)
	go func() {
		r := &recorder{header: http.Header{}}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "/embed", strings.NewReader(`{"inputs":"a"}`))
		req.Header.Set("Content-Type", "application/json")
		s.Handler().ServeHTTP(r, req)
		rec <- r.status
	}()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case status := <-rec:
		if status != http.StatusFailedDependency {
			t.Errorf("status %d, want 424", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the stalled request hanging")
	}
	s.Close() // twice is fine
}

// recorder is a minimal ResponseWriter safe to read after the handler ends.
type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(status int)      { r.status = status }

// TestBatching checks that the backend batches the inputs of concurrent
// requests under the token budget, and that cost shows in the timings.
func TestBatching(t *testing.T) {
	const clients = 8
	run := func(t *testing.T, args ...string) (batches float64, inferenceMS []string) {
		t.Helper()
		_, url := teisim.Start(t, append([]string{"--model-id", "BAAI/bge-small-en-v1.5", "--sim-token-cost", "0"}, args...)...)
		var wg sync.WaitGroup
		var mu sync.Mutex
		release := make(chan struct{})
		for i := range clients {
			wg.Go(func() {
				<-release
				r := post(t, url+"/embed", map[string]any{"inputs": fmt.Sprintf("text %d", i)})
				mu.Lock()
				defer mu.Unlock()
				if r.status != http.StatusOK {
					t.Errorf("status %d", r.status)
				}
				inferenceMS = append(inferenceMS, r.header.Get("x-inference-time"))
			})
		}
		close(release)
		wg.Wait()
		fams := scrape(t, url)
		return float64(fams["te_batch_next_size"].GetMetric()[0].GetHistogram().GetSampleCount()), inferenceMS
	}

	t.Run("concurrent inputs share batches", func(t *testing.T) {
		batches, ms := run(t, "--sim-batch-cost", "50ms")
		if batches >= clients {
			t.Errorf("%v batches for %d concurrent inputs: nothing was batched", batches, clients)
		}
		for _, m := range ms {
			if n, err := strconv.Atoi(m); err != nil || n < 50 {
				t.Errorf("x-inference-time %q ms, want at least the 50ms batch cost", m)
			}
		}
	})
	t.Run("max batch requests caps batches", func(t *testing.T) {
		batches, _ := run(t, "--sim-batch-cost", "20ms", "--max-batch-requests", "2")
		if batches < clients/2 {
			t.Errorf("%v batches for %d inputs at 2 per batch", batches, clients)
		}
	})
	t.Run("token budget caps batches", func(t *testing.T) {
		// Each input is 4 tokens; a budget of 4 fits one per batch.
		batches, _ := run(t, "--sim-batch-cost", "5ms", "--max-batch-tokens", "4")
		if batches != clients {
			t.Errorf("%v batches for %d inputs at one per batch", batches, clients)
		}
	})
}
