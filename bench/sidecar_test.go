package bench

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

func TestBenchNormalizeURL(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{in: "localhost:8080", want: "http://localhost:8080"},
		{in: "sidecar", want: "http://sidecar"},
		{in: "[::1]:3000", want: "http://[::1]:3000"},
		{in: " http://127.0.0.1:8080/ ", want: "http://127.0.0.1:8080"},
		{in: "https://tei.example:443/base/", want: "https://tei.example:443/base"},
		{in: "", err: "empty URL"},
		{in: "127.0.0.1:80x", err: `"127.0.0.1:80x" is not a URL, host:port or host: invalid port ":80x" after host`},
		{in: "ftp://host", err: `"ftp://host": the scheme must be http or https, not "ftp"`},
		{in: "http://", err: `"http://" has no host`},
		{in: "host:8080/?a=1", err: "a base URL takes no query or fragment"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeURL(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("NormalizeURL(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// statusStub answers GET /status with body, or with status when it is not
// 200; it wants the bearer token "side".
func statusStub(t *testing.T, status int, body string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" || r.Header.Get("Authorization") != "Bearer side" {
			http.Error(w, "", map[bool]int{true: http.StatusUnauthorized, false: http.StatusNotFound}[r.URL.Path == "/status"])
			return
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestBenchFindTEI(t *testing.T) {
	const (
		two = `{"pools": {
			"embed": {"model_id": "BAAI/bge-m3", "replicas": [
				{"url": "http://127.0.0.1:32770", "state": "starting"},
				{"url": "http://127.0.0.1:32768", "state": "ready"},
				{"url": "http://127.0.0.1:32769/", "state": "ready"}]},
			"rerank": {"model_id": "BAAI/bge-reranker-v2-m3", "replicas": [
				{"url": "http://user:xxxxx@tei-rerank:80", "state": "ready"}]}},
			"caches": {}}`
		noRerank = `{"pools": {"embed": {"model_id": "m", "replicas": [{"url": "tei-embed:80", "state": "ready"}]},
			"rerank": {"model_id": "r", "replicas": [{"url": "http://tei-rerank:80", "state": "down"}]}}}`
		noneReady = `{"pools": {"embed": {"model_id": "m", "replicas": [{"url": "http://a", "state": "draining"}, {"url": "http://b", "state": "refused"}]}}}`
		old       = `{"upstreams": {}, "caches": {}}`
	)
	for _, tc := range []struct {
		name, body, token string
		status            int
		want, err         string
	}{
		{name: "ready replicas only, credentials dropped", body: two,
			want: "embed BAAI/bge-m3 http://127.0.0.1:32768 [http://127.0.0.1:32768 http://127.0.0.1:32769] 2/3; rerank BAAI/bge-reranker-v2-m3 http://tei-rerank:80 [http://tei-rerank:80] 1/1; " +
				"notes [the embed pool has 2 ready replicas (http://127.0.0.1:32768, http://127.0.0.1:32769); the first is the one called straight | " +
				"the rerank replica's URL carries credentials, which /status redacts; none are sent]"},
		{name: "no ready reranker", body: noRerank,
			want: "embed m http://tei-embed:80 [http://tei-embed:80] 1/1; rerank none; notes [the sidecar's rerank pool has no ready replica (states: down)]"},
		{name: "no ready embedder", body: noneReady, err: "has no ready embedding replica (states: draining, refused); wait for it"},
		{name: "an older sidecar", body: old, err: "lists no pools: the sidecar is older than this tool"},
		{name: "token missing", body: two, token: "-", err: "HTTP 401: the sidecar wants its bearer token (BEARER_TOKEN"},
		{name: "not JSON", body: "<html>", err: "unexpected answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := statusStub(t, http.StatusOK, tc.body)
			token := "side"
			if tc.token != "" {
				token = ""
			}
			st, err := FindTEI(t.Context(), strings.TrimPrefix(url, "http://"), token, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Sidecar != url {
				t.Errorf("sidecar %q, want %q", st.Sidecar, url)
			}
			got := fmt.Sprintf("embed %s %s %v %d/%d; ", st.Embed.ModelID, st.Embed.URL, st.Embed.URLs, st.Embed.Ready, st.Embed.Replicas)
			if r := st.Rerank; r != nil {
				got += fmt.Sprintf("rerank %s %s %v %d/%d; ", r.ModelID, r.URL, r.URLs, r.Ready, r.Replicas)
			} else {
				got += "rerank none; "
			}
			got += "notes [" + strings.Join(st.Notes, " | ") + "]"
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	// TEI itself has no /status.
	_, tei := teisim.Start(t, "--model-id", "BAAI/bge-m3")
	if _, err := FindTEI(t.Context(), tei, "", nil); err == nil || !strings.Contains(err.Error(), "HTTP 404: is "+tei+" the sidecar?") {
		t.Errorf("TEI as the sidecar: %v", err)
	}
}

// TestBenchAuthAdvice checks the advice on a 401 from a TEI the sidecar
// named: a TEI it launched may want an API key the tools cannot know.
func TestBenchAuthAdvice(t *testing.T) {
	_, url := teisim.Start(t, append([]string{"--model-id", "BAAI/bge-m3", "--api-key", "k3y"}, simArgs...)...)
	for _, tc := range []struct {
		name, token, want string
		via               string
	}{
		{"no key", "", "the sidecar at http://sidecar:8080 launched TEI with a key of its own, which this tool cannot know. Set TEI_API_KEY in .env (the sidecar then passes it to TEI)", "http://sidecar:8080"},
		{"wrong key", "nope", "refused the API key sent: it must be the key the sidecar gives TEI. Set TEI_API_KEY in .env", "http://sidecar:8080"},
		{"not found through a sidecar", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := quick(Options{Target: Target{URL: url, Token: tc.token, FoundVia: tc.via}})
			_, err := Run(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), "/info: tei: 401") {
				t.Fatalf("err = %v, want /info's 401", err)
			}
			ae, ok := errors.AsType[*AuthError](err)
			if tc.want == "" {
				if ok {
					t.Errorf("advice for a TEI the sidecar did not name: %v", err)
				}
				return
			}
			if !ok || !strings.Contains(err.Error(), tc.want) || ae.KeySent != (tc.token != "") {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// With the key, the same TEI answers: Tune reaches its steps.
	rep, err := Tune(t.Context(), TuneOptions{URL: url, Token: "k3y", FoundVia: "http://sidecar:8080", MaxBatch: 1, MaxConcurrency: 1, StepRequests: 2})
	if err != nil || rep.Target.FoundVia != "http://sidecar:8080" {
		t.Errorf("tune with the key: %v", err)
	}
	if _, err := Tune(t.Context(), TuneOptions{URL: url, FoundVia: "http://sidecar:8080", MaxBatch: 1, MaxConcurrency: 1}); !errors.As(err, new(*AuthError)) {
		t.Errorf("tune without the key: %v, want the advice", err)
	}
}
