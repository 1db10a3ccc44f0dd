package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestHealthcheckURL(t *testing.T) {
	tests := []struct {
		listen, path, want, wantErr string
	}{
		{listen: "127.0.0.1:8080", path: "/ready", want: "http://127.0.0.1:8080/ready"},
		{listen: "0.0.0.0:8080", path: "/ready", want: "http://127.0.0.1:8080/ready"},
		{listen: ":9000", path: "/ready", want: "http://127.0.0.1:9000/ready"},
		{listen: "[::]:8080", path: "/ready", want: "http://[::1]:8080/ready"},
		{listen: "[::1]:8080", path: "health", want: "http://[::1]:8080/health"},
		{listen: "sidecar:8080", path: "/ready", want: "http://sidecar:8080/ready"},
		{listen: "127.0.0.1", path: "/ready", wantErr: "missing port"},
		{listen: "127.0.0.1:0", path: "/ready", wantErr: "the port must be given"},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			got, err := (&healthcheckCmd{Listen: tt.listen, Path: tt.path}).url()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("url() = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("url() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestHealthcheckExitCodes runs the subcommand as Docker does and wants 0
// only for a 2xx answer from /ready.
func TestHealthcheckExitCodes(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer ready.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "embedding TEI: connection refused", http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	// A port nobody listens on: bind one, then free it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name       string
		args       []string
		env        string
		wantCode   int
		wantStderr string
	}{
		{name: "ready", args: []string{"--listen", hostPort(ready.URL)}, wantCode: 0},
		{name: "ready via SIDECAR_LISTEN", env: hostPort(ready.URL), wantCode: 0},
		{name: "not ready", args: []string{"--listen", hostPort(notReady.URL)}, wantCode: 1, wantStderr: "503 Service Unavailable: embedding TEI: connection refused"},
		{name: "nothing listening", args: []string{"--listen", closed}, wantCode: 1, wantStderr: "connection refused"},
		{name: "wrong route", args: []string{"--listen", hostPort(ready.URL), "--path", "/nope"}, wantCode: 1, wantStderr: "404"},
		{name: "bad address", args: []string{"--listen", "nonsense"}, wantCode: 2, wantStderr: "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SIDECAR_LISTEN", tt.env)
			if tt.env == "" {
				os.Unsetenv("SIDECAR_LISTEN") // t.Setenv restores it afterwards
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"healthcheck"}, tt.args...), &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
			if code == 0 && !strings.HasPrefix(stdout.String(), "healthy: ") {
				t.Errorf("stdout %q, want a healthy line", stdout.String())
			}
		})
	}
}

func hostPort(url string) string { return strings.TrimPrefix(url, "http://") }
