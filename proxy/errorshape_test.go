package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// shapeOf names the error shape of body: tei, openai, cohere, plugin, or
// "" for none of them.
func shapeOf(body []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	switch {
	case len(m) == 2 && m["error"] != nil && m["error_type"] != nil:
		return "tei"
	case len(m) == 1 && m["error"] != nil:
		var e openAIError
		if json.Unmarshal(m["error"], &e) == nil && e.Message != "" && e.Type != "" {
			return "openai"
		}
	case len(m) == 1 && m["message"] != nil:
		return "cohere"
	case len(m) == 1 && m["detail"] != nil:
		return "plugin"
	}
	return ""
}

// TestUnknownRoutesAnswerInTheFacesShape checks echo's own 404 and 405 in
// each face's error shape, so an SDK reads them as its API's errors.
func TestUnknownRoutesAnswerInTheFacesShape(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, nil)
	tests := []struct {
		method, path string
		status       int
		shape        string
	}{
		{"POST", "/v1/completions", 404, "openai"},
		{"GET", "/v1/embeddings", 405, "openai"},
		{"POST", "/v1/models", 405, "openai"},
		{"POST", "/v2/chat", 404, "cohere"},
		{"GET", "/v2/embed", 405, "cohere"},
		{"GET", "/v1/rerank", 405, "cohere"},
		{"POST", "/plugin/upsert", 404, "plugin"},
		{"POST", "/nope", 404, "tei"},
		{"GET", "/embed", 405, "tei"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			st, _, b := call(t, tc.method, p+tc.path, "", `{}`)
			if st != tc.status || shapeOf(b) != tc.shape {
				t.Errorf("%d %s, want %d in %s's shape", st, b, tc.status, tc.shape)
			}
		})
	}
	_, _, b := call(t, "POST", p+"/v1/completions", "", `{}`)
	if !strings.Contains(string(b), "Invalid URL (POST /v1/completions)") {
		t.Errorf("not OpenAI's message for an unknown URL: %s", b)
	}
}

// TestStartingTEIAnswers503PerFace checks, with an embedding TEI that is
// still loading its model, that every embedding route answers 503 with
// Retry-After in its face's shape, while the ready reranker already
// serves every rerank route.
func TestStartingTEIAnswers503PerFace(t *testing.T) {
	loading := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer loading.Close()
	_, rank := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	cfg := testConfig(loading.URL)
	cfg.RerankURLs = []string{rank}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(testLogOut, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer func() {
		hs.Close()
		srv.Close()
	}()
	waitUntil(t, 10*time.Second, func() bool { return srv.rankP.info() != nil })
	if srv.embedP.info() != nil {
		t.Fatal("the loading TEI's pool has an /info")
	}
	p := hs.URL
	tests := []struct {
		path, body string
		status     int
		shape      string
	}{
		{"/embed", `{"inputs":"x"}`, 503, "tei"},
		{"/predict", `{"inputs":"x"}`, 503, "tei"},
		{"/similarity", `{"inputs":{"source_sentence":"a","sentences":["b"]}}`, 503, "tei"},
		{"/v1/embeddings", `{"input":"x","model":"m"}`, 503, "openai"},
		{"/v1/embed", `{"texts":["x"]}`, 503, "cohere"},
		{"/v2/embed", `{"texts":["x"]}`, 503, "cohere"},
		{"/plugin/embed_query", `{"text":"x"}`, 503, "plugin"},
		{"/rerank", `{"query":"q","texts":["a","b"]}`, 200, ""},
		{"/v1/rerank", `{"query":"q","documents":["a","b"]}`, 200, ""},
		{"/v2/rerank", `{"model":"BAAI/bge-reranker-v2-m3","query":"q","documents":["a","b"]}`, 200, ""},
		{"/plugin/rerank", `{"query":"q","passages":["a","b"]}`, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			st, h, b := call(t, "POST", p+tc.path, "", tc.body)
			if st != tc.status {
				t.Fatalf("%d %s, want %d", st, b, tc.status)
			}
			if st == 503 && (shapeOf(b) != tc.shape || h.Get("Retry-After") == "") {
				t.Errorf("%s (Retry-After %q), want %s's shape", b, h.Get("Retry-After"), tc.shape)
			}
		})
	}
	if st, _, b := call(t, "GET", p+"/v1/models", "", ""); st != 503 || shapeOf(b) != "openai" {
		t.Errorf("/v1/models: %d %s", st, b)
	}
}
