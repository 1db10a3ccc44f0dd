package teisim_test

import (
	"strings"
	"testing"
)

// TestDecodeLikeSerde checks that request bodies get TEI's verdict: serde's
// rules where Go's encoding/json is more lenient (key case, duplicates, null
// for plain booleans and enums, invalid UTF-8, lone surrogates), serde's
// leniency where Go would be stricter (trailing characters, unknown fields
// holding what a String could not), and axum's status and plain-text
// message to the byte, positions included.
func TestDecodeLikeSerde(t *testing.T) {
	const (
		syntax = "Failed to parse the request body as JSON: "
		data   = "Failed to deserialize the JSON body into the target type: "
	)
	reranker := []string{"--model-id", "BAAI/bge-reranker-base"}
	classifier := []string{"--model-id", "acme/sentiment", "--sim-model-type", "classifier"}
	tests := []struct {
		name   string
		args   []string // default: an embedding model
		path   string   // default: /embed
		body   string
		status int
		want   string // the plain-text body; "" for a success
	}{
		// Keys.
		{name: "key case matters", body: `{"Inputs": "a"}`, status: 422, want: data + "missing field `inputs` at line 1 column 15"},
		{name: "duplicate key", body: `{"inputs": "a", "inputs": "b"}`, status: 422, want: data + "duplicate field `inputs` at line 1 column 24"},
		{name: "duplicate unknown key is fine", body: `{"inputs": "a", "x": 1, "x": 2}`, status: 200},
		{name: "unknown keys ignored", body: `{"inputs": "a", "top_n": 3, "nested": {"k": [1, "two", null]}}`, status: 200},
		{name: "unknown value is skipped unchecked", body: "{\"inputs\": \"a\", \"x\": \"\\ud800 \xff\"}", status: 200},
		{name: "key with invalid UTF-8", body: "{\"in\xffputs\": \"a\"}", status: 400, want: syntax + "invalid unicode code point at line 1 column 10"},
		// Null and types.
		{name: "null normalize", body: `{"inputs": "a", "normalize": null}`, status: 422, want: data + "normalize: invalid type: null, expected a boolean at line 1 column 33"},
		{name: "string normalize", body: `{"inputs": "a", "normalize": "false"}`, status: 422, want: data + "normalize: invalid type: string \"false\", expected a boolean at line 1 column 36"},
		{name: "null truncate is the server's", body: `{"inputs": "a", "truncate": null, "prompt_name": null, "dimensions": null}`, status: 200},
		{name: "null truncation direction", body: `{"inputs": "a", "truncation_direction": null}`, status: 400, want: syntax + "truncation_direction: expected value at line 1 column 41"},
		{name: "unknown truncation direction", body: `{"inputs": "a", "truncation_direction": "middle"}`, status: 422, want: data + "truncation_direction: unknown variant `middle`, expected one of `Left`, `left`, `Right`, `right` at line 1 column 48"},
		{name: "truncation direction as a map", body: `{"inputs": "a", "truncation_direction": {"left": null}}`, status: 200},
		{name: "negative dimensions", body: `{"inputs": "a", "dimensions": -1}`, status: 422, want: data + "dimensions: invalid value: integer `-1`, expected usize at line 1 column 32"},
		{name: "fractional dimensions", body: `{"inputs": "a", "dimensions": 1.5}`, status: 422, want: data + "dimensions: invalid type: floating point `1.5`, expected usize at line 1 column 33"},
		{name: "inputs of no variant", body: `{"inputs": 5}`, status: 422, want: data + "inputs: data did not match any variant of untagged enum Input at line 1 column 13"},
		{name: "float token id", body: `{"inputs": [101, 1.0], "normalize": true}`, status: 422, want: data + "inputs: data did not match any variant of untagged enum Input at line 1 column 21"},
		{name: "token id over u32", body: `{"inputs": [4294967296]}`, status: 422, want: data + "inputs: data did not match any variant of untagged enum Input at line 1 column 24"},
		// Strings.
		{name: "lone leading surrogate", body: `{"inputs": "\ud800"}`, status: 400, want: syntax + "inputs: unexpected end of hex escape at line 1 column 19"},
		{name: "lone trailing surrogate", body: `{"inputs": "\udc00"}`, status: 400, want: syntax + "inputs: lone leading surrogate in hex escape at line 1 column 18"},
		{name: "leading surrogate before a letter", body: `{"inputs": "\ud800\u0041"}`, status: 400, want: syntax + "inputs: lone leading surrogate in hex escape at line 1 column 24"},
		{name: "surrogate pair", body: `{"inputs": "\ud83d\ude00"}`, status: 200},
		{name: "invalid UTF-8", body: "{\"inputs\": \"\xff\"}", status: 400, want: syntax + "inputs: invalid unicode code point at line 1 column 14"},
		{name: "invalid UTF-8 in a batch", body: "{\"inputs\": [\"a\", \"\xc3\"]}", status: 400, want: syntax + "inputs[1]: invalid unicode code point at line 1 column 20"},
		{name: "control character", body: "{\"inputs\": \"a\tb\"}", status: 400, want: syntax + "inputs: control character (\\u0000-\\u001F) found while parsing a string at line 1 column 14"},
		// Syntax.
		{name: "empty body", body: "", status: 400, want: syntax + "EOF while parsing a value at line 1 column 0"},
		{name: "trailing comma", body: `{"inputs": "a",}`, status: 400, want: syntax + "trailing comma at line 1 column 16"},
		{name: "trailing characters are ignored", body: `{"inputs": "a"} and more`, status: 200},
		{name: "position on a later line", body: "{\n  \"inputs\": \"a\",\n  \"normalize\": nulx\n}", status: 400, want: syntax + "normalize: expected ident at line 3 column 19"},
		{name: "number out of range", body: `{"inputs": [1e400]}`, status: 400, want: syntax + "inputs[0]: number out of range at line 1 column 17"},
		{name: "recursion limit", body: `{"inputs": ` + strings.Repeat("[", 200) + `}`, status: 400, want: syntax + "inputs" + strings.Repeat("[0]", 126) + ": recursion limit exceeded at line 1 column 138"},
		// The body's own shape.
		{name: "body not an object", body: `"a"`, status: 422, want: data + "invalid type: string \"a\", expected struct EmbedRequest at line 1 column 3"},
		{name: "struct as a sequence", body: `["a", null, "Left", null, false, null]`, status: 200},
		{name: "struct as a short sequence", body: `["a"]`, status: 422, want: data + "invalid length 3, expected struct EmbedRequest with 6 elements at line 1 column 5"},
		// Other routes.
		{name: "rerank null raw_scores", args: reranker, path: "/rerank", body: `{"query": "q", "texts": ["a"], "raw_scores": null}`, status: 422, want: data + "raw_scores: invalid type: null, expected a boolean at line 1 column 49"},
		{name: "rerank null return_text", args: reranker, path: "/rerank", body: `{"query": "q", "texts": ["a"], "return_text": null}`, status: 422, want: data + "return_text: invalid type: null, expected a boolean at line 1 column 50"},
		{name: "rerank null truncate", args: reranker, path: "/rerank", body: `{"query": "q", "texts": ["a"], "truncate": null}`, status: 200},
		{name: "rerank null query", args: reranker, path: "/rerank", body: `{"query": null, "texts": ["a"]}`, status: 422, want: data + "query: invalid type: null, expected a string at line 1 column 14"},
		{name: "rerank text not a string", args: reranker, path: "/rerank", body: `{"query": "q", "texts": ["a", 1]}`, status: 422, want: data + "texts[1]: invalid type: integer `1`, expected a string at line 1 column 31"},
		{name: "rerank Texts", args: reranker, path: "/rerank", body: `{"query": "q", "Texts": ["a"]}`, status: 422, want: data + "missing field `texts` at line 1 column 30"},
		{name: "openai null encoding format", path: "/v1/embeddings", body: `{"input": "a", "encoding_format": null}`, status: 400, want: syntax + "encoding_format: expected value at line 1 column 35"},
		{name: "openai unknown encoding format", path: "/v1/embeddings", body: `{"input": "a", "encoding_format": "hex"}`, status: 422, want: data + "encoding_format: unknown variant `hex`, expected `float` or `base64` at line 1 column 39"},
		{name: "openai null model and user", path: "/v1/embeddings", body: `{"input": "a", "model": null, "user": null}`, status: 200},
		{name: "openai Input", path: "/embeddings", body: `{"Input": "a"}`, status: 422, want: data + "missing field `input` at line 1 column 14"},
		{name: "tokenize null add_special_tokens", path: "/tokenize", body: `{"inputs": "a", "add_special_tokens": null}`, status: 422, want: data + "add_special_tokens: invalid type: null, expected a boolean at line 1 column 42"},
		{name: "decode null skip_special_tokens", path: "/decode", body: `{"ids": [1], "skip_special_tokens": null}`, status: 422, want: data + "skip_special_tokens: invalid type: null, expected a boolean at line 1 column 40"},
		{name: "similarity nested duplicate", path: "/similarity", body: `{"inputs": {"source_sentence": "a", "source_sentence": "b", "sentences": ["c"]}}`, status: 422, want: data + "inputs: duplicate field `source_sentence` at line 1 column 53"},
		{name: "similarity nested missing", path: "/similarity", body: `{"inputs": {"source_sentence": "a"}}`, status: 422, want: data + "inputs: missing field `sentences` at line 1 column 35"},
		{name: "similarity null parameters", path: "/similarity", body: `{"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": null}`, status: 200},
		{name: "predict one text in a list", args: classifier, path: "/predict", body: `{"inputs": ["a"]}`, status: 200},
		{name: "predict empty list", args: classifier, path: "/predict", body: `{"inputs": []}`, status: 422, want: data + "inputs: invalid length 0, expected a string, a pair of strings [string, string] or a batch of mixed strings and pairs [[string], [string, string], ...] at line 1 column 13"},
		{name: "predict three texts", args: classifier, path: "/predict", body: `{"inputs": ["a", "b", "c"]}`, status: 422, want: data + "inputs: invalid length 3, expected a string, a pair of strings [string, string] or a batch of mixed strings and pairs [[string], [string, string], ...] at line 1 column 26"},
		{name: "predict batch entry of three", args: classifier, path: "/predict", body: `{"inputs": [["a"], ["b", "c", "d"]]}`, status: 422, want: data + "inputs: invalid length 3, expected a string, a pair of strings [string, string] or a batch of mixed strings and pairs [[string], [string, string], ...] at line 1 column 35"},
		{name: "predict null raw_scores", args: classifier, path: "/predict", body: `{"inputs": "a", "raw_scores": null}`, status: 422, want: data + "raw_scores: invalid type: null, expected a boolean at line 1 column 34"},
	}
	// One server per configuration, shared by the cases.
	servers := map[string]string{}
	server := func(args []string) string {
		if args == nil {
			args = []string{"--model-id", "BAAI/bge-small-en-v1.5"}
		}
		key := strings.Join(args, " ")
		if _, ok := servers[key]; !ok {
			_, servers[key] = start(t, args...)
		}
		return servers[key]
	}
	for _, tt := range tests {
		server(tt.args)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := server(tt.args)
			path := tt.path
			if path == "" {
				path = "/embed"
			}
			r := post(t, url+path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.want == "" {
				return
			}
			if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q, want axum's text/plain; charset=utf-8", ct)
			}
			if string(r.body) != tt.want {
				t.Errorf("body\n%s\nwant\n%s", r.body, tt.want)
			}
		})
	}
}
