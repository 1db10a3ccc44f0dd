package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tei-sidecar/tei-sidecar/tests/redistest"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// seen records the headers TEI received.
type seen struct {
	h  http.Handler
	mu sync.Mutex
	hs []http.Header
}

func (s *seen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/info" && r.URL.Path != "/health" {
		s.mu.Lock()
		s.hs = append(s.hs, r.Header.Clone())
		s.mu.Unlock()
	}
	s.h.ServeHTTP(w, r)
}

func (s *seen) last() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hs) == 0 {
		return nil
	}
	return s.hs[len(s.hs)-1]
}

// tracedProxy starts a simulator behind a header recorder and a traced
// proxy with its log in logs.
func tracedProxy(t *testing.T, redisURL string) (*tracetest.InMemoryExporter, *seen, string, *syncBuf) {
	t.Helper()
	sim, err := teisim.New(mustParse(t, append(append([]string{}, fast...), "--model-id", "BAAI/bge-small-en-v1.5")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	rec := &seen{h: sim.Handler()}
	hs := httptest.NewServer(rec)
	t.Cleanup(hs.Close)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg := testConfig(hs.URL)
	cfg.TracerProvider = tp
	cfg.Shared.URL = redisURL
	cfg.BearerTokens = []string{"tok-SECRET-123"}
	logs := &syncBuf{}
	srv, err := New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ps.Close(); srv.Close() })
	return exp, rec, ps.URL, logs
}

func spanNamed(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}

func attr(s *tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// TestTraceContinuesIntoTEI: the client's traceparent is continued by a
// server span; the Redis lookup and the TEI call are its children; the
// request TEI receives carries the client's trace id under a new span id,
// and the request id.
func TestTraceContinuesIntoTEI(t *testing.T) {
	redis := redistest.Start(t)
	exp, tei, p, _ := tracedProxy(t, redis.URL())
	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	st, h, b := postH(t, p, "/embed", `{"inputs":["traced one","traced two"]}`,
		"traceparent", "00-"+traceID+"-"+clientSpan+"-01", "Authorization", "Bearer tok-SECRET-123", "X-Request-Id", "client-req-42")
	if st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	if h.Get("X-Request-Id") != "client-req-42" {
		t.Errorf("X-Request-Id %q, want the client's", h.Get("X-Request-Id"))
	}
	got := tei.last()
	tp := got.Get("traceparent")
	if !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, clientSpan) {
		t.Errorf("TEI got traceparent %q: want the client's trace id under a new span id", tp)
	}
	if got.Get("X-Request-Id") != "client-req-42" {
		t.Errorf("TEI got X-Request-Id %q", got.Get("X-Request-Id"))
	}
	// The server span ends after the answer is written: wait for it.
	waitUntil(t, 5*time.Second, func() bool { return spanNamed(exp.GetSpans(), "POST /embed") != nil })
	spans := exp.GetSpans()
	server := spanNamed(spans, "POST /embed")
	call := spanNamed(spans, "TEI /embed")
	redisSpan := spanNamed(spans, "redis GET")
	if server == nil || call == nil || redisSpan == nil {
		t.Fatalf("spans %v", names(spans))
	}
	if server.SpanKind != trace.SpanKindServer || server.Parent.SpanID().String() != clientSpan || server.SpanContext.TraceID().String() != traceID {
		t.Errorf("server span: kind %v, parent %s, trace %s", server.SpanKind, server.Parent.SpanID(), server.SpanContext.TraceID())
	}
	for _, child := range []*tracetest.SpanStub{call, redisSpan} {
		if child.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("%s is not a child of the server span", child.Name)
		}
	}
	for k, want := range map[string]string{"http.route": "/embed", "sidecar.face": "tei", "http.response.status_code": "200",
		"sidecar.inputs": "2", "sidecar.cache_hits": "0", "sidecar.priority": "interactive", "sidecar.request_id": "client-req-42"} {
		if v := attr(server, k); v != want {
			t.Errorf("server span %s = %q, want %q", k, v, want)
		}
	}
	for k, want := range map[string]string{"sidecar.inputs": "2", "sidecar.outcome": "ok", "sidecar.pool": "embed", "sidecar.attempt": "1"} {
		if v := attr(call, k); v != want {
			t.Errorf("TEI call span %s = %q, want %q", k, v, want)
		}
	}
	if attr(call, "sidecar.replica") == "" || attr(redisSpan, "sidecar.keys") != "2" {
		t.Errorf("call replica %q, redis keys %q", attr(call, "sidecar.replica"), attr(redisSpan, "sidecar.keys"))
	}
	// The HTTP client span of the call to TEI is the call span's child.
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindClient && s.Name != "redis GET" && s.Parent.SpanID() != call.SpanContext.SpanID() {
			t.Errorf("client span %q is not a child of the TEI call span", s.Name)
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// TestRequestIDs: an id the client gives is kept when sane, replaced when
// not, made when absent; every answer carries one.
func TestRequestIDs(t *testing.T) {
	_, _, p, _ := tracedProxy(t, "")
	for _, tc := range []struct{ give, want string }{
		{"abc-123_x.y:z", "abc-123_x.y:z"},
		{"bad id with spaces", ""},
		{strings.Repeat("a", 200), ""},
		{"", ""},
	} {
		_, h, _ := postH(t, p, "/embed", `{"inputs":"ids"}`, "X-Request-Id", tc.give, "Authorization", "Bearer tok-SECRET-123")
		got := h.Get("X-Request-Id")
		switch {
		case tc.want != "" && got != tc.want:
			t.Errorf("gave %q, got %q", tc.give, got)
		case tc.want == "" && (got == tc.give || !validRequestID(got)):
			t.Errorf("gave %q, got %q: want a new id", tc.give, got)
		}
	}
	if _, h, _ := postH(t, p, "/embed", `{"inputs":"refused"}`); h.Get("X-Request-Id") == "" {
		t.Error("a refused request has no id")
	}
}

// TestAccessLogHasNoTexts: one line per request with route, status,
// duration, inputs and hits, and never a text or a token.
func TestAccessLogHasNoTexts(t *testing.T) {
	_, _, p, logs := tracedProxy(t, "")
	for range 2 {
		postH(t, p, "/embed", `{"inputs":["SECRET-TEXT-one","SECRET-TEXT-two"]}`, "Authorization", "Bearer tok-SECRET-123", "X-Request-Id", "r1")
	}
	postH(t, p, "/v1/embeddings", `{"input":"SECRET-TEXT-three","model":"BAAI/bge-small-en-v1.5"}`, "Authorization", "Bearer wrong-SECRET-token")
	time.Sleep(50 * time.Millisecond)
	text := logs.String()
	if strings.Contains(text, "SECRET") {
		t.Errorf("the log carries a text or a token:\n%s", text)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d access lines, want 3:\n%s", len(lines), text)
	}
	first, second, refused := lines[0], lines[1], lines[2]
	if first["route"] != "/embed" || first["status"] != 200.0 || first["inputs"] != 2.0 || first["cache_hits"] != 0.0 || first["request_id"] != "r1" {
		t.Errorf("first line %v", first)
	}
	if second["cache_hits"] != 2.0 {
		t.Errorf("second line %v: want 2 hits", second)
	}
	if refused["status"] != 401.0 || refused["face"] != "openai" {
		t.Errorf("refused line %v", refused)
	}
	for _, l := range lines {
		if _, ok := l["duration_ms"]; !ok {
			t.Errorf("line without duration: %v", l)
		}
	}
}
