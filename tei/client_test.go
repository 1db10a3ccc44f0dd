package tei_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tei-sidecar/tei-sidecar/tei"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fast = []string{"--sim-batch-cost", "0s", "--sim-token-cost", "0s"}

func startSim(t *testing.T, args ...string) (*teisim.Server, *tei.Client) {
	t.Helper()
	sim, url := teisim.Start(t, append(append([]string{}, fast...), args...)...)
	c, err := tei.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	return sim, c
}

func TestInfoAndHealth(t *testing.T) {
	_, c := startSim(t, "--model-id", "BAAI/bge-m3", "--max-client-batch-size", "16", "--dtype", "float16", "--revision", "abc123")
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.ModelID != "BAAI/bge-m3" || info.MaxClientBatchSize != 16 || info.ModelDType != "float16" ||
		info.Revision() != "abc123" || info.ModelType.Kind() != tei.KindEmbedding || info.MaxConcurrentRequests != 512 ||
		info.MaxInputLength != 8192 || !info.AutoTruncate || len(info.Raw) == 0 {
		t.Errorf("info = %+v", info)
	}
}

func TestEmbedForms(t *testing.T) {
	sim, c := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	ctx := context.Background()
	res, err := c.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts("alpha", "beta")})
	if err != nil {
		t.Fatal(err)
	}
	vecs, err := res.Vectors()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"alpha", "beta"} {
		if fmt.Sprint(vecs[i]) != fmt.Sprint(sim.Embedding(s, true)) {
			t.Errorf("vector %d is not the embedding of %q", i, s)
		}
		if !strings.HasPrefix(string(res.Items[i]), "[") || !strings.HasSuffix(string(res.Items[i]), "]") {
			t.Errorf("raw item %d = %.40s", i, res.Items[i])
		}
	}
	if n := res.Response.ComputeTokens(); n <= 0 {
		t.Errorf("x-compute-tokens = %d", n)
	}
	dims := 8
	no := false
	res, err = c.Embed(ctx, tei.EmbedRequest{Inputs: []tei.Input{{IDs: []uint32{101, 7, 102}}}, Dimensions: &dims, Normalize: &no})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Vectors(); len(v) != 1 || len(v[0]) != 8 {
		t.Errorf("token-id input with dimensions 8 gave %v", v)
	}

	_, sc := startSim(t, "--model-id", "naver/splade-v3")
	sp, err := sc.EmbedSparse(ctx, tei.EmbedRequest{Inputs: tei.Texts("sparse words")})
	if err != nil || len(sp.Items) != 1 || !strings.Contains(string(sp.Items[0]), `"index"`) {
		t.Fatalf("sparse: %v %v", sp, err)
	}

	toks, err := c.Tokenize(ctx, tei.TokenizeRequest{Inputs: []string{"hello world"}})
	if err != nil || len(toks) != 1 || len(toks[0]) < 2 {
		t.Fatalf("tokenize: %v %v", toks, err)
	}
	oa, err := c.OpenAIEmbeddings(ctx, tei.OpenAIRequest{Input: []string{"a", "b"}, Model: "x"})
	if err != nil || len(oa.Data) != 2 || oa.Data[1].Index != 1 || oa.Usage.TotalTokens <= 0 {
		t.Fatalf("openai: %+v %v", oa, err)
	}
}

func TestRerank(t *testing.T) {
	_, c := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	ranks, _, err := c.Rerank(context.Background(), tei.RerankRequest{Query: "deep learning", Texts: []string{"cooking", "deep learning is neat", "learning"}, ReturnText: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ranks) != 3 || ranks[0].Index != 1 || ranks[0].Text == nil || *ranks[0].Text != "deep learning is neat" {
		t.Fatalf("ranks = %+v", ranks)
	}
	for i, r := range ranks {
		if r.Score <= 0 || r.Score >= 1 || (i > 0 && r.Score > ranks[i-1].Score) {
			t.Errorf("rank %d score %v: want sorted sigmoid values", i, r.Score)
		}
	}
}

// TestErrorClassesAgainstSimulator provokes each of TEI's errors and checks
// the typed error and its classification.
func TestErrorClassesAgainstSimulator(t *testing.T) {
	_, c := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4", "--max-concurrent-requests", "2", "--payload-limit", "200")
	_, keyed := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--api-key", "k")
	_, big := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	ctx := context.Background()
	no := false
	tests := []struct {
		name    string
		call    func() error
		status  int
		typ     string
		msg     string
		caller  bool
		backend bool
		back    bool
	}{
		{"empty", func() error { _, err := c.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts("")}); return err },
			400, tei.TypeEmpty, "Input validation error: `inputs` cannot be empty", true, false, false},
		{"batch too large", func() error {
			_, err := c.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts("a", "b", "c", "d", "e")})
			return err
		},
			422, tei.TypeValidation, "batch size 5 > maximum allowed batch size 4", true, false, false},
		{"no permits", func() error { _, err := c.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts("a", "b", "c")}); return err },
			429, tei.TypeOverloaded, "Model is overloaded", false, false, true},
		{"payload too large", func() error {
			_, err := c.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts(strings.Repeat("w ", 150))})
			return err
		}, 413, tei.TypePayloadTooLarge, "", true, false, false},
		{"too long", func() error {
			_, err := big.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts(strings.Repeat("w ", 700)), Truncate: &no})
			return err
		}, 422, tei.TypeValidation, "", true, false, false},
		{"wrong model type", func() error {
			_, _, err := c.Rerank(ctx, tei.RerankRequest{Query: "q", Texts: []string{"a"}})
			return err
		},
			424, tei.TypeBackend, "Backend error: model is not a re-ranker model", false, true, false},
		{"api key", func() error {
			kc, _ := tei.NewClient(keyedURL(keyed))
			_, err := kc.Embed(ctx, tei.EmbedRequest{Inputs: tei.Texts("a")})
			return err
		}, 401, tei.TypeUnauthorized, "", true, false, false},
		{"malformed json", func() error { _, err := c.Do(ctx, http.MethodPost, "/embed", []byte("{")); return err },
			400, tei.TypeBadRequest, "", true, false, false},
		{"wrong shape", func() error { _, err := c.Do(ctx, http.MethodPost, "/embed", []byte(`{"inputs":{}}`)); return err },
			422, tei.TypeUnprocessable, "", true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *tei.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v", err, err)
			}
			if e.Status != tc.status || e.Type != tc.typ || (tc.msg != "" && e.Message != tc.msg) {
				t.Errorf("got %d %s %q, want %d %s %q", e.Status, e.Type, e.Message, tc.status, tc.typ, tc.msg)
			}
			if tei.IsCallerError(err) != tc.caller || tei.IsBackendFailure(err) != tc.backend || tei.IsBackPressure(err) != tc.back {
				t.Errorf("classification caller=%v backend=%v back=%v", tei.IsCallerError(err), tei.IsBackendFailure(err), tei.IsBackPressure(err))
			}
		})
	}
}

func keyedURL(c *tei.Client) string { return c.BaseURL() }

// BenchmarkClientEmbed measures the client's per-call overhead against an
// upstream that answers at once with one small vector.
func BenchmarkClientEmbed(b *testing.B) {
	body := []byte(`[[0.1,0.2,0.3,0.4]]`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer srv.Close()
	c, _ := tei.NewClient(srv.URL)
	req := tei.EmbedRequest{Inputs: tei.Texts("What is machine learning?")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Embed(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
