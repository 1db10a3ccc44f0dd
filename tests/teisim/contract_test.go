package teisim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// specPath is TEI 1.9.3's own OpenAPI spec, copied into testdata (see
// testdata/README.md for its source and licence).
var specPath = filepath.Join("testdata", "tei-openapi-1.9.3.json")

// loadSpec loads TEI's spec and corrects the places where TEI's source
// (router/src/http/server.rs and types.rs at v1.9.3) shows the running server
// differs from it. Each correction is an exception the simulator follows on
// purpose:
//
//   - /v1/embeddings errors carry "type", not "error_type": the field is
//     renamed for serialisation (#[serde(rename(serialize = "type"))]).
//   - /info carries "simulator": "teisim", which TEI never sends; the spec's
//     Info schema allows extra fields, so no patch is needed.
//
// Others need no patch because the simulator's answers fit the spec anyway,
// or are not checked against it:
//
//   - truncate defaults to the server's --auto-truncate (true), not false:
//     defaults are not applied here (SkipSettingDefaults).
//   - Validation errors are 422 since 1.9 (the spec's 413 "Batch size
//     error"); the spec's 422 response has the same ErrorResponse body.
//   - Framework errors (413 over the payload limit, 400 malformed JSON, 415,
//     422 wrong shape) are plain text and 401 is empty; the spec describes
//     none of them, so those answers are checked by TestErrors instead.
//
// A missing spec fails the test: the contract must be checked everywhere.
func loadSpec(t *testing.T) routers.Router {
	t.Helper()
	data, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatalf("TEI's OpenAPI spec is required: %v", err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	flat := doc.Components.Schemas["OpenAICompatErrorResponse"].Value
	flat.Required = []string{"message", "code", "type"}
	flat.Properties["type"] = flat.Properties["error_type"]
	delete(flat.Properties, "error_type")
	// The spec writes defaults as strings ("false" for a boolean) and its
	// examples likewise; the schemas themselves are what is checked.
	if err := doc.Validate(t.Context(), openapi3.DisableSchemaDefaultsValidation(), openapi3.DisableExamplesValidation()); err != nil {
		t.Fatalf("spec: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return router
}

// TestContract sends requests that TEI's spec accepts and checks that the
// simulator's answers, successes and TEI errors alike, fit the spec.
func TestContract(t *testing.T) {
	router := loadSpec(t)
	servers := map[string]string{}
	// Servers live for the whole test, shared by the cases that use them.
	url := func(args ...string) string {
		key := strings.Join(args, " ")
		if u, ok := servers[key]; ok {
			return u
		}
		_, u := teisim.Start(t, append(append([]string{}, fast...), args...)...)
		servers[key] = u
		return u
	}
	embedding := []string{"--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4", "--max-concurrent-requests", "8"}
	reranker := []string{"--model-id", "BAAI/bge-reranker-v2-m3"}
	splade := []string{"--model-id", "naver/splade-v3"}
	classifier := []string{"--model-id", "acme/sentiment", "--sim-model-type", "classifier"}
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }

	tests := []struct {
		name   string
		args   []string
		method string
		path   string
		body   string
		status int
		// specAmbiguous marks a request the spec cannot judge: its Input
		// oneOf matches [] twice (an empty id list and an empty batch).
		specAmbiguous bool
	}{
		{"info embedding", embedding, "GET", "/info", "", 200, false},
		{"info reranker", reranker, "GET", "/info", "", 200, false},
		{"info splade", splade, "GET", "/info", "", 200, false},
		{"info classifier", classifier, "GET", "/info", "", 200, false},
		{"health", embedding, "GET", "/health", "", 200, false},
		{"unhealthy", with(embedding, "--sim-unhealthy"), "GET", "/health", "", 503, false},
		{"embed one", embedding, "POST", "/embed", `{"inputs": "What is Deep Learning?"}`, 200, false},
		{"embed batch", embedding, "POST", "/embed", `{"inputs": ["a", "b"], "normalize": false, "truncate": null, "truncation_direction": "Left"}`, 200, false},
		{"embed token ids", embedding, "POST", "/embed", `{"inputs": [101, 2054, 102], "dimensions": 8}`, 200, false},
		{"embed mixed", embedding, "POST", "/embed", `{"inputs": ["a", [101, 102]]}`, 200, false},
		{"embed_all", embedding, "POST", "/embed_all", `{"inputs": "a b"}`, 200, false},
		{"embed_sparse", splade, "POST", "/embed_sparse", `{"inputs": ["sparse text", "more"]}`, 200, false},
		{"rerank", reranker, "POST", "/rerank", `{"query": "What is Deep Learning?", "texts": ["Deep Learning is ...", "Paris"], "return_text": true}`, 200, false},
		{"rerank raw", reranker, "POST", "/rerank", `{"query": "q", "texts": ["a"], "raw_scores": true}`, 200, false},
		{"predict single", classifier, "POST", "/predict", `{"inputs": "I like you."}`, 200, false},
		{"predict batch", classifier, "POST", "/predict", `{"inputs": [["a"], ["b", "c"]]}`, 200, false},
		{"tokenize", embedding, "POST", "/tokenize", `{"inputs": "test sentence", "add_special_tokens": true}`, 200, false},
		{"tokenize batch", embedding, "POST", "/tokenize", `{"inputs": ["a", "b"]}`, 200, false},
		{"decode", embedding, "POST", "/decode", `{"ids": [101, 102]}`, 200, false},
		{"similarity", embedding, "POST", "/similarity", `{"inputs": {"source_sentence": "a", "sentences": ["a", "b"]}}`, 200, false},
		{"openai float", embedding, "POST", "/v1/embeddings", `{"input": ["a", "b"], "model": "x", "encoding_format": "float"}`, 200, false},
		{"openai base64", embedding, "POST", "/v1/embeddings", `{"input": "a", "encoding_format": "base64"}`, 200, false},
		{"metrics", embedding, "GET", "/metrics", "", 200, false},
		{"batch too large", embedding, "POST", "/embed", `{"inputs": ["a", "b", "c", "d", "e"]}`, 422, false},
		{"overloaded", with(embedding, "--max-concurrent-requests", "1"), "POST", "/embed", `{"inputs": ["a", "b"]}`, 429, false},
		{"empty batch", embedding, "POST", "/embed", `{"inputs": []}`, 400, true},
		{"too long", embedding, "POST", "/embed", `{"inputs": "` + words(0, 600) + `", "truncate": false}`, 422, false},
		{"rerank on embedding", embedding, "POST", "/rerank", `{"query": "q", "texts": ["a"]}`, 424, false},
		{"rerank without texts", reranker, "POST", "/rerank", `{"query": "q", "texts": []}`, 400, false},
		{"embed on reranker", reranker, "POST", "/embed", `{"inputs": "a"}`, 424, false},
		{"openai batch too large", embedding, "POST", "/v1/embeddings", `{"input": ["a", "b", "c", "d", "e"]}`, 422, false},
		{"openai on reranker", reranker, "POST", "/v1/embeddings", `{"input": "a"}`, 424, false},
		{"injected failure", with(embedding, "--sim-error-rate", "1"), "POST", "/embed", `{"inputs": "a"}`, 424, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := url(tt.args...)
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("spec has no %s %s: %v", tt.method, tt.path, err)
			}
			opts := &openapi3filter.Options{IncludeResponseStatus: true, SkipSettingDefaults: true, MultiError: true}
			reqInput := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
			if err := openapi3filter.ValidateRequest(t.Context(), reqInput); err != nil && !tt.specAmbiguous {
				t.Fatalf("the test's request breaks the spec: %v", err)
			}
			// ValidateRequest consumed the body; send a fresh one.
			if tt.body != "" {
				req.Body = io.NopCloser(strings.NewReader(tt.body))
			}

			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, data)
			}
			respInput := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: reqInput,
				Status:                 resp.StatusCode,
				Header:                 resp.Header,
				Options:                opts,
			}
			respInput.SetBodyBytes(data)
			if err := openapi3filter.ValidateResponse(t.Context(), respInput); err != nil {
				t.Fatalf("answer breaks the spec: %v\n%s", err, shorten(data))
			}
		})
	}
}

// shorten keeps failure messages readable for large vectors.
func shorten(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) == nil {
		var buf bytes.Buffer
		_ = json.Compact(&buf, b)
		b = buf.Bytes()
	}
	if len(b) > 500 {
		return string(b[:500]) + "..."
	}
	return string(b)
}
