package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// The sidecar driven end to end by OpenAI's official Go SDK, unchanged:
// only its base URL and key point at the sidecar. Retries are off, so an
// error surfaces at once as the SDK's own *openai.Error.

const sdkModel = "BAAI/bge-small-en-v1.5"

func sdkClient(url string) openai.Client {
	return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("tok"), option.WithMaxRetries(0))
}

// asFloat32 is v as TEI's float32 values, which the SDK widens to float64.
func asFloat32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// teiEmbedding is TEI's own /embed answer for body.
func teiEmbedding(t *testing.T, url, body string) [][]float32 {
	t.Helper()
	st, _, b := post(t, url, "/embed", body)
	var v [][]float32
	if st != 200 || json.Unmarshal(b, &v) != nil {
		t.Fatalf("TEI: %d %s", st, b)
	}
	return v
}

func TestOpenAIGoSDK(t *testing.T) {
	emb, embURL, _, p, _ := facesSetup(t, func(c *Config) {
		c.BearerTokens = []string{"tok"}
		c.EmbeddingModelAliases = []string{"text-embedding-3-small"}
	})
	client := sdkClient(p)
	texts := []string{"What is machine learning?", "Deep learning"}
	tests := []struct {
		name   string
		params openai.EmbeddingNewParams
		want   [][]float32
	}{
		{"base64, as the Python and Node SDKs ask by default", openai.EmbeddingNewParams{Model: sdkModel,
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts},
			EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64},
			[][]float32{emb.Embedding(texts[0], true), emb.Embedding(texts[1], true)}},
		{"float, the Go SDK's default", openai.EmbeddingNewParams{Model: sdkModel,
			Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(texts[0])}},
			[][]float32{emb.Embedding(texts[0], true)}},
		{"explicit float", openai.EmbeddingNewParams{Model: "text-embedding-3-small",
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts},
			EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat},
			[][]float32{emb.Embedding(texts[0], true), emb.Embedding(texts[1], true)}},
		{"token ids", openai.EmbeddingNewParams{Model: sdkModel,
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: []int64{101, 2054, 2003, 102}}},
			teiEmbedding(t, embURL, `{"inputs":[101,2054,2003,102]}`)},
		{"lists of token ids", openai.EmbeddingNewParams{Model: sdkModel,
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfTokenArrays: [][]int64{{101, 2054, 102}, {101, 102}}},
			EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64},
			teiEmbedding(t, embURL, `{"inputs":[[101,2054,102],[101,102]]}`)},
		{"dimensions the model's own", openai.EmbeddingNewParams{Model: sdkModel, Dimensions: openai.Int(384),
			Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(texts[1])}},
			[][]float32{emb.Embedding(texts[1], true)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := client.Embeddings.New(t.Context(), tc.params)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Data) != len(tc.want) || res.Model != string(tc.params.Model) || res.Usage.PromptTokens <= 0 {
				t.Fatalf("%d embeddings, model %q, usage %+v", len(res.Data), res.Model, res.Usage)
			}
			for i, d := range res.Data {
				if d.Index != int64(i) || fmt.Sprint(asFloat32(d.Embedding)) != fmt.Sprint(tc.want[i]) {
					t.Errorf("embedding %d (index %d) is not TEI's", i, d.Index)
				}
			}
		})
	}

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if fmt.Sprint(ids) != "[BAAI/bge-small-en-v1.5 text-embedding-3-small BAAI/bge-reranker-v2-m3]" {
			t.Errorf("models %v", ids)
		}
		m, err := client.Models.Get(t.Context(), sdkModel)
		if err != nil || m.ID != sdkModel {
			t.Errorf("retrieve: %v %+v", err, m)
		}
	})
}

// TestOpenAIGoSDKErrors checks that each error class reaches the SDK as
// its own *openai.Error with OpenAI's status, type and code.
func TestOpenAIGoSDKErrors(t *testing.T) {
	emb, _, _, p, _ := facesSetup(t, func(c *Config) { c.BearerTokens = []string{"tok"} })
	client := sdkClient(p)
	one := openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}
	tests := []struct {
		name   string
		fault  *teisim.Fault
		client openai.Client
		call   func(openai.Client) error
		status int
		typ    string
		code   string
	}{
		{"400 dimensions", nil, client, func(c openai.Client) error {
			_, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: sdkModel, Input: one, Dimensions: openai.Int(256)})
			return err
		}, 400, "invalid_request_error", ""},
		{"400 empty input", nil, client, func(c openai.Client) error {
			_, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: sdkModel, Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", ""}}})
			return err
		}, 400, "invalid_request_error", "Empty"},
		{"401 key", nil, openai.NewClient(option.WithBaseURL(p+"/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0)), func(c openai.Client) error {
			_, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: sdkModel, Input: one})
			return err
		}, 401, "invalid_request_error", "invalid_api_key"},
		{"404 model", nil, client, func(c openai.Client) error {
			_, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: openai.EmbeddingModelTextEmbeddingAda002, Input: one})
			return err
		}, 404, "invalid_request_error", "model_not_found"},
		{"404 retrieve", nil, client, func(c openai.Client) error {
			_, err := c.Models.Get(t.Context(), "gpt-4")
			return err
		}, 404, "invalid_request_error", "model_not_found"},
		{"429 TEI overloaded", &teisim.Fault{ErrorRate: 1, ErrorStatus: 429}, client, func(c openai.Client) error {
			_, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: sdkModel, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("overloaded")}})
			return err
		}, 429, "rate_limit_error", "rate_limit_exceeded"},
		{"5xx TEI failing", &teisim.Fault{ErrorRate: 1, ErrorStatus: 424}, client, func(c openai.Client) error {
			_, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: sdkModel, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("failing")}})
			return err
		}, 502, "server_error", "Backend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				emb.SetFault(*tc.fault)
				defer emb.SetFault(teisim.Fault{})
			}
			err := tc.call(tc.client)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v (%T) is not an *openai.Error", err, err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Type != tc.typ || apiErr.Code != tc.code || apiErr.Message == "" {
				t.Errorf("status %d type %q code %q message %q; want %d %q %q", apiErr.StatusCode, apiErr.Type, apiErr.Code, apiErr.Message, tc.status, tc.typ, tc.code)
			}
			if tc.status == http.StatusTooManyRequests && apiErr.Response.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
}
