package tei

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTransportHTTPSGoesToNetHTTP: what the transport does not carry itself
// (here https) goes through net/http's transport and works.
func TestTransportHTTPSGoesToNetHTTP(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("over " + r.Proto))
	}))
	defer srv.Close()
	tr := NewTransport()
	defer tr.CloseIdleConnections()
	tr.fallback.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("x"))
	if tr.handles(req) {
		t.Fatal("the transport would carry an https call itself")
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.HasPrefix(string(b), "over HTTP/") {
		t.Errorf("https: %d %q", resp.StatusCode, b)
	}
	for _, u := range []string{"http://127.0.0.1:1/embed"} {
		req, _ := http.NewRequest(http.MethodPost, u, nil)
		if !tr.handles(req) {
			t.Errorf("%s: not carried by the transport itself", u)
		}
		req.Close = true
		if tr.handles(req) {
			t.Errorf("%s with Close: carried by the transport itself", u)
		}
	}
}
