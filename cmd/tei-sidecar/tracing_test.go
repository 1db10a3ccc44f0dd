package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestTracerProvider: tracing is off unless the OTEL_* variables name an
// exporter; with an OTLP endpoint, spans reach an in-process receiver.
func TestTracerProvider(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, tc := range []struct {
		name    string
		env     func(string) string
		on      bool
		wantErr string
	}{
		{"unset", env(), false, ""},
		{"none", env("OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"), false, ""},
		{"unknown exporter", env("OTEL_TRACES_EXPORTER", "zipkin"), false, "OTEL_TRACES_EXPORTER=zipkin is not supported: use otlp or none"},
		{"unknown protocol", env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), false,
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/json is not supported: use http/protobuf or grpc"},
		{"grpc", env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := tracerProvider(t.Context(), tc.env)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || (tp != nil) != tc.on {
				t.Fatalf("provider %v, err %v; want on=%t", tp, err, tc.on)
			}
			if tp != nil {
				_ = tp.Shutdown(context.Background())
			}
		})
	}

	var got atomic.Int64
	var service atomic.Bool
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			got.Add(1)
			service.Store(strings.Contains(string(b), "tei-sidecar"))
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	tp, err := tracerProvider(t.Context(), env("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL))
	if err != nil || tp == nil {
		t.Fatalf("provider %v, err %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(t.Context(), "a span")
	span.End()
	if err := tp.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got.Load() == 0 || !service.Load() {
		t.Errorf("the receiver got %d exports (service named: %t)", got.Load(), service.Load())
	}
}
