package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// wrapSim starts a simulator behind mw, which sees every request first.
func wrapSim(t *testing.T, mw func(http.Handler) http.Handler, args ...string) string {
	t.Helper()
	cfg, err := teisim.ParseArgs(append(args, simArgs...), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s, err := teisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(mw(s.Handler()))
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return ts.URL
}

// cachingFront answers X-Cache as a caching sidecar would: HIT for a body
// it has seen, MISS for a new one. It has no /status, so only the header
// tells of the cache.
func cachingFront(next http.Handler) http.Handler {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			mu.Lock()
			hit := seen[r.URL.Path+string(body)]
			seen[r.URL.Path+string(body)] = true
			mu.Unlock()
			w.Header().Set(CacheHeader, map[bool]string{true: "HIT", false: "MISS"}[hit])
		}
		next.ServeHTTP(w, r)
	})
}

// TestBenchCacheHeader checks that X-Cache decides a row's cache when the
// answers carry it: repeated texts are hits, unique ones misses, a mix is
// partial, and a hit row gets its uncached variant even from a server
// whose /status says nothing.
func TestBenchCacheHeader(t *testing.T) {
	url := wrapSim(t, cachingFront, "--model-id", "BAAI/bge-m3")
	rerankURL := wrapSim(t, cachingFront, "--model-id", "BAAI/bge-reranker-v2-m3")
	o := quick(Options{Target: Target{URL: url, RerankURL: rerankURL}})
	o.Sweep = nil
	var done, total int
	o.Progress = func(d, n int, _ string) { done, total = d, n }
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if done != total {
		t.Errorf("progress ended at %d of %d: the total missed the variants the headers called for", done, total)
	}
	if rep.Target.Sidecar {
		t.Error("the front has no /status, yet was taken for the sidecar")
	}
	got := map[string]string{}
	for _, r := range rep.Rows {
		got[r.Name] = string(r.Target.Cache) + " from " + r.Target.CacheFrom
	}
	for name, want := range map[string]string{
		"Single query embedding (short)":           "hit from x-cache",
		"Single query embedding (short), uncached": "miss from x-cache",
		"Rerank 20 passages":                       "hit from x-cache",
		"Rerank 20 passages, uncached":             "miss from x-cache",
		"Query embedding, cache miss":              "miss from x-cache",
		"Query embedding, cache hit":               "hit from x-cache",
	} {
		if got[name] != want {
			t.Errorf("%s: cache %s, want %s", name, got[name], want)
		}
	}
	if got := names(rep.Rows); !slices.Equal(got, uncut(sidecarRows)) {
		t.Errorf("rows = %q, want every plugin row with its variant", got)
	}

	var tl tally
	for _, h := range []string{"HIT", "MISS", "HIT"} {
		tl.record(h)
	}
	if c, from := tl.verdict(false, false); c != CachePartial || from != CacheFromHeader {
		t.Errorf("HIT, MISS, HIT: %s from %s, want partial from the header", c, from)
	}
	tl = tally{}
	tl.record("PARTIAL")
	if c, _ := tl.verdict(true, false); c != CachePartial {
		t.Errorf("PARTIAL: %s", c)
	}
}

// TestBenchSimulatorNamed checks that a server whose /info carries the
// simulator field is never called TEI, and that TEI (no such field, a
// docker_label of its own) is named with its version.
func TestBenchSimulatorNamed(t *testing.T) {
	setInfo := func(edit func(map[string]any)) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/info" {
					next.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				var info map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
					t.Errorf("simulator /info: %v", err)
				}
				edit(info)
				_ = json.NewEncoder(w).Encode(info)
			})
		}
	}
	for _, tc := range []struct {
		name, want, wantSim string
		edit                func(map[string]any)
	}{
		{"simulator field", "(TEI simulator (tests/teisim), not TEI; face tei;", "teisim", func(i map[string]any) {
			i[SimulatorField] = "teisim"
			i["docker_label"] = nil
		}},
		{"TEI", "(TEI 1.9.3; face tei;", "", func(i map[string]any) {
			delete(i, SimulatorField)
			i["docker_label"] = "sha-e8c2bd3"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := wrapSim(t, setInfo(tc.edit), "--model-id", "BAAI/bge-m3")
			o := quick(Options{Target: Target{URL: url}, SkipRerank: true})
			o.Sweep = nil
			o.Scale = 0.05
			rep, err := Run(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteText(&buf, rep); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), "Target: "+url+" "+tc.want) || rep.Target.Simulator != tc.wantSim {
				t.Errorf("simulator %q; header lacks %q:\n%s", rep.Target.Simulator, tc.want, buf.String())
			}
		})
	}
}
