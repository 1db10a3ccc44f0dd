package tei

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveRecorded answers every request with status, content type and the
// recorded body in testdata/errors/<file> (empty file name: empty body).
func serveRecorded(t *testing.T, status int, file string, header map[string]string) string {
	t.Helper()
	var body []byte
	if file != "" {
		var err error
		body, err = os.ReadFile(filepath.Join("testdata", "errors", file))
		if err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := "application/json"
		if filepath.Ext(file) == ".txt" {
			ct = "text/plain; charset=utf-8"
		}
		if file != "" {
			w.Header().Set("Content-Type", ct)
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRecordedErrorBodies(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		file       string
		header     map[string]string
		wantType   string
		wantMsg    string
		backPress  bool
		backend    bool
		caller     bool
		retryable  bool
		retryAfter time.Duration
	}{
		{"empty", 400, "empty.json", nil, TypeEmpty, "Input validation error: `inputs` cannot be empty", false, false, true, false, 0},
		{"batch size", 422, "validation_batch_size.json", nil, TypeValidation, "batch size 17 > maximum allowed batch size 16", false, false, true, false, 0},
		{"tokenizer", 422, "tokenizer.json", nil, TypeTokenizer, "tokenizer error: could not tokenize", false, false, true, false, 0},
		{"overloaded", 429, "overloaded.json", map[string]string{"Retry-After": "2"}, TypeOverloaded, "Model is overloaded", true, false, false, true, 2 * time.Second},
		{"backend", 424, "backend_not_reranker.json", nil, TypeBackend, "Backend error: model is not a re-ranker model", false, true, false, false, 0},
		{"unhealthy", 503, "unhealthy.json", nil, TypeUnhealthy, "unhealthy", false, true, false, true, 0},
		{"openai flat shape", 422, "openai_validation.json", nil, TypeValidation, "batch size 40 > maximum allowed batch size 32", false, false, true, false, 0},
		{"payload plain text", 413, "payload_too_large.txt", nil, TypePayloadTooLarge, "Failed to buffer the request body: length limit exceeded", false, false, true, false, 0},
		{"malformed json plain text", 400, "malformed_json.txt", nil, TypeBadRequest, "Failed to parse the request body as JSON: expected value at line 1 column 1", false, false, true, false, 0},
		{"content type plain text", 415, "wrong_content_type.txt", nil, TypeUnsupportedMediaType, "Expected request with `Content-Type: application/json`", false, false, true, false, 0},
		{"wrong shape plain text", 422, "wrong_shape.txt", nil, TypeUnprocessable, "Failed to deserialize the JSON body into the target type: inputs: data did not match any variant of untagged enum Input at line 1 column 14", false, false, true, false, 0},
		{"401 empty body", 401, "", nil, TypeUnauthorized, "", false, false, true, false, 0},
		{"502 from a proxy", 502, "", nil, TypeServer, "", false, true, false, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(serveRecorded(t, tc.status, tc.file, tc.header))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Embed(context.Background(), EmbedRequest{Inputs: Texts("x")})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want *Error", err, err)
			}
			if e.Status != tc.status || e.Type != tc.wantType || e.Message != tc.wantMsg {
				t.Errorf("got (%d, %q, %q), want (%d, %q, %q)", e.Status, e.Type, e.Message, tc.status, tc.wantType, tc.wantMsg)
			}
			if tc.file != "" {
				want, _ := os.ReadFile(filepath.Join("testdata", "errors", tc.file))
				if string(e.Body) != string(want) {
					t.Errorf("body %q, want it unchanged %q", e.Body, want)
				}
			}
			if got := IsBackPressure(err); got != tc.backPress {
				t.Errorf("IsBackPressure = %v", got)
			}
			if got := IsBackendFailure(err); got != tc.backend {
				t.Errorf("IsBackendFailure = %v", got)
			}
			if got := IsCallerError(err); got != tc.caller {
				t.Errorf("IsCallerError = %v", got)
			}
			if got := IsRetryable(err); got != tc.retryable {
				t.Errorf("IsRetryable = %v", got)
			}
			if got := RetryAfter(err); got != tc.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", got, tc.retryAfter)
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	// A port with nothing listening: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	// A server that accepts and then resets the connection.
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	defer reset.Close()

	// A server that never answers within the deadline.
	stall := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(stall)

	tests := []struct {
		name    string
		url     string
		ctx     func() (context.Context, context.CancelFunc)
		kind    TransportKind
		backend bool
		retry   bool
	}{
		{"refused", refused, bg, KindDial, true, true},
		{"reset", reset.URL, bg, KindReset, true, false},
		{"timeout", slow.URL, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, KindTimeout, true, false},
		{"canceled", slow.URL, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, KindCanceled, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := NewClient(tc.url)
			ctx, cancel := tc.ctx()
			defer cancel()
			_, err := c.Embed(ctx, EmbedRequest{Inputs: Texts("x")})
			var te *TransportError
			if !errors.As(err, &te) {
				t.Fatalf("got %T %v, want *TransportError", err, err)
			}
			if te.Kind != tc.kind {
				t.Errorf("kind %v, want %v (%v)", te.Kind, tc.kind, err)
			}
			if IsBackendFailure(err) != tc.backend || IsRetryable(err) != tc.retry || IsCallerError(err) || IsBackPressure(err) {
				t.Errorf("classification: backend=%v retry=%v caller=%v", IsBackendFailure(err), IsRetryable(err), IsCallerError(err))
			}
		})
	}
}

func bg() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
