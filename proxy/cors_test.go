package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// corsCall sends a request as a browser would, with Origin and, for a
// preflight, the method and headers it asks for.
func corsCall(t *testing.T, method, url, origin, token string, preflight bool) (int, http.Header) {
	t.Helper()
	var body io.Reader
	if !preflight {
		body = strings.NewReader(`{"input":"x","model":"BAAI/bge-small-en-v1.5"}`)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if preflight {
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-stainless-os")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestCORS(t *testing.T) {
	const app = "https://app.example.com"
	tests := []struct {
		name      string
		origins   []string
		origin    string
		preflight bool
		token     string
		status    int
		allow     string // Access-Control-Allow-Origin, "" for none
	}{
		{"off by default: preflight", nil, app, true, "", 0, ""},
		{"off by default: call", nil, app, false, "tok", 200, ""},
		{"listed origin: preflight needs no token", []string{app}, app, true, "", 204, app},
		{"listed origin: call", []string{app}, app, false, "tok", 200, app},
		{"listed origin: refusal readable", []string{app}, app, false, "wrong", 401, app},
		{"other origin: preflight", []string{app}, "https://evil.example", true, "", 204, ""},
		{"other origin: call", []string{app}, "https://evil.example", false, "tok", 200, ""},
		{"no subdomain match", []string{app}, "https://x.app.example.com", false, "tok", 200, ""},
		{"any origin", []string{"*"}, "https://anything.test", false, "tok", 200, "*"},
		{"any origin: preflight", []string{"*"}, "https://anything.test", true, "", 204, "*"},
		{"no Origin: no CORS", []string{"*"}, "", false, "tok", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, p, _ := facesSetup(t, func(c *Config) {
				c.CORSAllowOrigins = tc.origins
				c.BearerTokens = []string{"tok"}
			})
			method := http.MethodPost
			if tc.preflight {
				method = http.MethodOptions
			}
			st, h := corsCall(t, method, p+"/v1/embeddings", tc.origin, tc.token, tc.preflight)
			if tc.status != 0 && st != tc.status {
				t.Errorf("status %d, want %d", st, tc.status)
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != tc.allow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allow)
			}
			if tc.allow == "" {
				for k := range h {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("%s sent to an origin not allowed", k)
					}
				}
				return
			}
			if tc.preflight {
				if h.Get("Access-Control-Allow-Methods") != "GET,POST" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "authorization") {
					t.Errorf("preflight allows methods %q headers %q", h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Headers"))
				}
				return
			}
			if !strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Cache") {
				t.Errorf("X-Cache not exposed: %q", h.Get("Access-Control-Expose-Headers"))
			}
		})
	}
}

// TestCORSOriginsValidated checks CORS_ALLOW_ORIGIN's messages.
func TestCORSOriginsValidated(t *testing.T) {
	for _, tc := range []struct{ origin, want string }{
		{"https://app.example.com", ""},
		{"http://localhost:5173", ""},
		{"*", ""},
		{"https://app.example.com/", `CORS_ALLOW_ORIGIN "https://app.example.com/" is not an origin: write scheme://host[:port] as the browser sends it (no path, no trailing slash), or *`},
		{"app.example.com", `CORS_ALLOW_ORIGIN "app.example.com" is not an origin: write scheme://host[:port] as the browser sends it (no path, no trailing slash), or *`},
		{"https://app.example.com/path", `CORS_ALLOW_ORIGIN "https://app.example.com/path" is not an origin: write scheme://host[:port] as the browser sends it (no path, no trailing slash), or *`},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			c := DefaultConfig()
			c.EmbedURLs = []string{"http://127.0.0.1:3000"}
			c.CORSAllowOrigins = []string{tc.origin}
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
