package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// contractCase is one request whose answer must fit the document.
type contractCase struct {
	method, path, token, body string
	status                    int
}

// TestOpenAPIContract checks the document the server serves at
// /openapi.json: it is a valid OpenAPI 3 document, and the answers of the
// routes it describes, successes and errors, fit it.
func TestOpenAPIContract(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, func(c *Config) {
		c.BearerTokens = []string{"tok"}
		c.EmbeddingModelAliases = []string{"text-embedding-3-small"}
	})
	checkContract(t, p, []contractCase{
		{"POST", "/plugin/embed_query", "tok", `{"text":"What is machine learning?"}`, 200},
		{"POST", "/plugin/embed_documents", "tok", `{"texts":["a b","c d"]}`, 200},
		{"POST", "/plugin/rerank", "tok", `{"query":"deep learning","passages":["deep learning","cooking","learning"],"k":3,"final_n":2}`, 200},
		{"POST", "/plugin/rerank", "tok", `{"query":"q","passages":["a"],"k":0}`, 422},
		{"POST", "/plugin/embed_query", "bad", `{"text":"x"}`, 401},
		{"POST", "/v1/embeddings", "tok", `{"input":["a","b"],"model":"BAAI/bge-small-en-v1.5","encoding_format":"base64"}`, 200},
		{"POST", "/v1/embeddings", "tok", `{"input":"a","model":"BAAI/bge-small-en-v1.5","dimensions":256}`, 400},
		{"POST", "/v1/embeddings", "tok", `{"input":"a","model":"nope"}`, 404},
		{"GET", "/v1/models", "tok", "", 200},
		{"GET", "/v1/models/text-embedding-3-small", "tok", "", 200},
		{"GET", "/v1/models/BAAI%2Fbge-small-en-v1.5", "tok", "", 200},
		{"GET", "/v1/models/gpt-4", "tok", "", 404},
		{"POST", "/v1/rerank", "tok", `{"query":"q","documents":["a",{"text":"b"}],"top_n":1,"return_documents":true}`, 200},
		{"POST", "/v1/rerank", "tok", `{"query":"q","documents":[{"title":"t","text":"b","id":"7"}],"rank_fields":["title","text"],"return_documents":true}`, 200},
		{"POST", "/v2/rerank", "tok", `{"model":"BAAI/bge-reranker-v2-m3","query":"q","documents":["a","b"]}`, 200},
		{"POST", "/v2/rerank", "tok", `{"query":"q","documents":["a","b"]}`, 400},
		{"POST", "/v1/embed", "tok", `{"texts":["a","b"]}`, 200},
		{"POST", "/v1/embed", "tok", `{"texts":["a"],"embedding_types":["int8","ubinary"]}`, 200},
		{"POST", "/v2/embed", "tok", `{"model":"BAAI/bge-small-en-v1.5","input_type":"search_query","texts":["a"],"embedding_types":["float","uint8","binary","base64"]}`, 200},
		{"POST", "/v2/embed", "tok", `{"model":"BAAI/bge-small-en-v1.5","inputs":[{"content":[{"type":"text","text":"a"}]}]}`, 200},
		{"POST", "/v2/embed", "tok", `{"model":"BAAI/bge-small-en-v1.5","texts":["a"],"output_dimension":256}`, 400},
		{"POST", "/v2/embed", "tok", `{"model":"embed-english-v3.0","texts":["a"]}`, 404},
		{"POST", "/similarity", "tok", `{"inputs":{"source_sentence":"a","sentences":["b","c"]}}`, 200},
		{"POST", "/similarity", "tok", `{"inputs":{"source_sentence":"a","sentences":[]}}`, 400},
		{"POST", "/embed_all", "tok", `{"inputs":["a b"]}`, 200},
		{"POST", "/decode", "tok", `{"ids":[[101,102]]}`, 200},
		{"POST", "/decode", "tok", `{"ids":[]}`, 400},
		{"POST", "/predict", "tok", `{"inputs":"x"}`, 424},
		{"POST", "/predict", "tok", `{"inputs":`, 400},
		{"POST", "/invocations", "tok", `{"inputs":"x"}`, 200},
		{"GET", "/ready", "", "", 200},
		{"GET", "/status", "tok", "", 200},
	})
}

// TestOpenAPIContractPredict checks /predict's answers against the
// document with a classifier behind the sidecar.
func TestOpenAPIContractPredict(t *testing.T) {
	_, cls := startSim(t, classifier...)
	_, p := startProxy(t, testConfig(cls))
	checkContract(t, p, []contractCase{
		{"POST", "/predict", "", `{"inputs":"x"}`, 200},
		{"POST", "/predict", "", `{"inputs":["x","y"],"raw_scores":true}`, 200},
		{"POST", "/predict", "", `{"inputs":[["x"],["y","z"]]}`, 200},
		{"POST", "/predict", "", `{"inputs":""}`, 400},
		{"POST", "/invocations", "", `{"inputs":"x"}`, 200},
	})
}

// checkContract loads the document p serves, validates it, and checks
// that each case's answer has its status and fits the document.
func checkContract(t *testing.T, p string, tests []contractCase) {
	t.Helper()
	resp, err := http.Get(p + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("invalid document: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: p}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path+" "+tc.token+" "+tc.body, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, p+tc.path, strings.NewReader(tc.body))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("the document has no %s %s: %v", tc.method, tc.path, err)
			}
			opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
				AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.status, data)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
			out.SetBodyBytes(data)
			if err := openapi3filter.ValidateResponse(t.Context(), out); err != nil {
				t.Errorf("answer does not fit the document: %v\n%.300s", err, data)
			}
		})
	}
}
