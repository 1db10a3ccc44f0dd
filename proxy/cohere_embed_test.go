package proxy

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// The shapes below are Cohere's published ones (the API reference and the
// cohere-ai SDKs' types): v1 answers EmbeddingsFloatsEmbedResponse without
// embedding_types and EmbeddingsByTypeEmbedResponse with them, told apart
// by response_type; v2 answers EmbedByTypeResponse.

// cohereEmbedAnswer decodes both answers as the SDKs do.
type cohereEmbedAnswer struct {
	ResponseType string          `json:"response_type"`
	ID           string          `json:"id"`
	Embeddings   json.RawMessage `json:"embeddings"`
	Texts        []string        `json:"texts"`
	Meta         struct {
		APIVersion struct {
			Version string `json:"version"`
		} `json:"api_version"`
		BilledUnits struct {
			InputTokens *float64 `json:"input_tokens"`
		} `json:"billed_units"`
	} `json:"meta"`
}

// byType is EmbedByTypeResponseEmbeddings.
type byType struct {
	Float   [][]float32 `json:"float"`
	Int8    [][]int     `json:"int8"`
	Uint8   [][]int     `json:"uint8"`
	Binary  [][]int     `json:"binary"`
	Ubinary [][]int     `json:"ubinary"`
	Base64  []string    `json:"base64"`
}

func TestCohereEmbedShapes(t *testing.T) {
	emb, _, _, p, _ := facesSetup(t, nil)
	texts := []string{"What is machine learning?", "Deep learning", "What is machine learning?"}
	all := []string{"float", "int8", "uint8", "binary", "ubinary", "base64"}
	tests := []struct {
		name, path string
		body       map[string]any
		floats     bool     // v1's embeddings_floats
		types      []string // the lists expected
	}{
		{"v1 floats", "/v1/embed", map[string]any{"texts": texts, "model": "BAAI/bge-small-en-v1.5", "input_type": "search_document"}, true, nil},
		{"v1 without model", "/v1/embed", map[string]any{"texts": texts, "truncate": "END"}, true, nil},
		{"v1 by type", "/v1/embed", map[string]any{"texts": texts, "embedding_types": []string{"float", "int8"}}, false, []string{"float", "int8"}},
		{"v2 default float", "/v2/embed", map[string]any{"model": "BAAI/bge-small-en-v1.5", "texts": texts, "input_type": "search_query"}, false, []string{"float"}},
		{"v2 every type", "/v2/embed", map[string]any{"model": "BAAI/bge-small-en-v1.5", "texts": texts, "input_type": "search_query", "embedding_types": all, "output_dimension": 384, "max_tokens": 512, "priority": 0}, false, all},
		{"v2 inputs", "/v2/embed", map[string]any{"model": "BAAI/bge-small-en-v1.5", "input_type": "classification", "embedding_types": []string{"ubinary", "base64"},
			"inputs": []any{
				map[string]any{"content": []any{map[string]any{"type": "text", "text": texts[0]}}},
				map[string]any{"content": []any{map[string]any{"type": "text", "text": texts[1]}}},
				map[string]any{"content": []any{map[string]any{"type": "text", "text": texts[2]}}},
			}}, false, []string{"ubinary", "base64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _, b := call(t, "POST", p+tc.path, "", mustJSON(t, tc.body))
			if st != 200 {
				t.Fatalf("%d %s", st, b)
			}
			var r cohereEmbedAnswer
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			version := strings.TrimPrefix(tc.path[:3], "/v")
			if r.ID == "" || !slices.Equal(r.Texts, texts) || r.Meta.APIVersion.Version != version || r.Meta.BilledUnits.InputTokens == nil || *r.Meta.BilledUnits.InputTokens <= 0 {
				t.Errorf("id %q texts %q meta %+v", r.ID, r.Texts, r.Meta)
			}
			want := make([][]float32, len(texts))
			for i, s := range texts {
				want[i] = emb.Embedding(s, true)
			}
			if tc.floats {
				var got [][]float32
				if r.ResponseType != "embeddings_floats" || json.Unmarshal(r.Embeddings, &got) != nil || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("not TEI's vectors as embeddings_floats: %.300s", b)
				}
				return
			}
			var got byType
			var keys map[string]json.RawMessage
			if r.ResponseType != "embeddings_by_type" || json.Unmarshal(r.Embeddings, &got) != nil || json.Unmarshal(r.Embeddings, &keys) != nil {
				t.Fatalf("not embeddings_by_type: %.300s", b)
			}
			if len(keys) != len(tc.types) {
				t.Errorf("types %v answered, want %v", slices.Collect(func(yield func(string) bool) {
					for k := range keys {
						if !yield(k) {
							return
						}
					}
				}), tc.types)
			}
			checkByType(t, got, tc.types, want)
		})
	}
}

// checkByType checks each requested list against TEI's float vectors:
// float exactly, base64 as little-endian float32, and the compressed
// types as quantize.go documents them.
func checkByType(t *testing.T, got byType, types []string, want [][]float32) {
	t.Helper()
	for _, typ := range types {
		n := map[string]int{"float": len(got.Float), "int8": len(got.Int8), "uint8": len(got.Uint8), "binary": len(got.Binary), "ubinary": len(got.Ubinary), "base64": len(got.Base64)}[typ]
		if n != len(want) {
			t.Fatalf("%s: %d embeddings for %d texts", typ, n, len(want))
		}
	}
	for i, v := range want {
		if slices.Contains(types, "float") && fmt.Sprint(got.Float[i]) != fmt.Sprint(v) {
			t.Errorf("float %d is not TEI's vector", i)
		}
		if slices.Contains(types, "base64") {
			raw, err := base64.StdEncoding.DecodeString(got.Base64[i])
			if err != nil || len(raw) != 4*len(v) {
				t.Fatalf("base64 %d: %v, %d bytes", i, err, len(raw))
			}
			for j := range v {
				if math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:])) != v[j] {
					t.Fatalf("base64 %d differs at %d", i, j)
				}
			}
		}
		for j, x := range v {
			if slices.Contains(types, "int8") {
				q := got.Int8[i][j]
				if q < -128 || q > 127 || math.Abs(float64(q)-127*float64(x)) > 0.5+1e-9 {
					t.Fatalf("int8 %d[%d] = %d for %v", i, j, q, x)
				}
				if slices.Contains(types, "uint8") && got.Uint8[i][j] != q+128 {
					t.Fatalf("uint8 %d[%d] = %d, int8 %d", i, j, got.Uint8[i][j], q)
				}
			}
			if slices.Contains(types, "ubinary") {
				bit := got.Ubinary[i][j/8] >> (7 - j%8) & 1
				if (bit == 1) != (x > 0) {
					t.Fatalf("ubinary %d bit %d = %d for %v", i, j, bit, x)
				}
				if slices.Contains(types, "binary") && got.Binary[i][j/8] != got.Ubinary[i][j/8]-128 {
					t.Fatalf("binary %d byte %d = %d, ubinary %d", i, j/8, got.Binary[i][j/8], got.Ubinary[i][j/8])
				}
			}
		}
		if slices.Contains(types, "ubinary") && len(got.Ubinary[i]) != (len(v)+7)/8 {
			t.Errorf("ubinary %d has %d bytes for %d dimensions", i, len(got.Ubinary[i]), len(v))
		}
	}
}

// TestQuantization pins the compressed forms of a known vector.
func TestQuantization(t *testing.T) {
	v := []float32{0.5, -0.5, 0, 1, -1, 0.001, -0.001, 0.25, 0.1}
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"int8", appendInt8s(nil, v, 0), "[64,-64,0,127,-127,0,0,32,13]"},
		{"uint8", appendInt8s(nil, v, 128), "[192,64,128,255,1,128,128,160,141]"},
		// 1 0 0 1 0 1 0 1 | 1 (then seven 0 bits of padding)
		{"ubinary", appendBits(nil, v, 0), "[149,128]"},
		{"binary", appendBits(nil, v, -128), "[21,0]"},
		{"clamped", appendInt8s(nil, []float32{1.01, -1.01}, 0), "[127,-128]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Errorf("got %s, want %s", tc.got, tc.want)
			}
		})
	}
}

// TestCohereEmbedSettings checks truncate, input_type and
// output_dimension against what TEI computes for the same settings.
func TestCohereEmbedSettings(t *testing.T) {
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-prompts", "query=query: ;passage=passage: ")
	cfg := testConfig(emb)
	cfg.InputTypePrompts = map[string]string{"search_query": "query"}
	_, p := startProxy(t, cfg)
	long := strings.Repeat("word ", 600) + "end"
	teiVector := func(body string) string {
		st, _, b := post(t, emb, "/embed", body)
		if st != 200 {
			t.Fatalf("TEI: %d %s", st, b)
		}
		var v [][]float32
		json.Unmarshal(b, &v)
		return fmt.Sprint(v[0])
	}
	tests := []struct {
		name string
		body map[string]any
		want string // TEI's /embed body giving the same vector
	}{
		{"truncate START", map[string]any{"texts": []string{long}, "truncate": "START"}, `{"inputs":"` + long + `","truncate":true,"truncation_direction":"Left"}`},
		{"truncate END", map[string]any{"texts": []string{long}, "truncate": "END"}, `{"inputs":"` + long + `","truncate":true}`},
		{"default END", map[string]any{"texts": []string{long}}, `{"inputs":"` + long + `","truncate":true}`},
		{"mapped input_type", map[string]any{"texts": []string{"a query"}, "input_type": "search_query"}, `{"inputs":"a query","prompt_name":"query"}`},
		{"unmapped input_type", map[string]any{"texts": []string{"a doc"}, "input_type": "search_document"}, `{"inputs":"a doc"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _, b := call(t, "POST", p+"/v1/embed", "", mustJSON(t, tc.body))
			var r struct{ Embeddings [][]float32 }
			if st != 200 || json.Unmarshal(b, &r) != nil || len(r.Embeddings) != 1 {
				t.Fatalf("%d %.200s", st, b)
			}
			if fmt.Sprint(r.Embeddings[0]) != teiVector(tc.want) {
				t.Errorf("not TEI's vector for %s", tc.want)
			}
		})
	}
}

// TestCohereEmbedRefusals checks that what Cohere refuses, or the sidecar
// cannot do faithfully, is a 400 {"message"} (404 for a model).
func TestCohereEmbedRefusals(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, nil)
	const m = `"model":"BAAI/bge-small-en-v1.5",`
	tests := []struct {
		name, path, body string
		status           int
	}{
		{"images", "/v2/embed", `{` + m + `"images":["data:image/png;base64,AAAA"]}`, 400},
		{"image part", "/v2/embed", `{` + m + `"inputs":[{"content":[{"type":"image_url","image_url":{"url":"data:,"}}]}]}`, 400},
		{"two parts", "/v2/embed", `{` + m + `"inputs":[{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`, 400},
		{"texts and inputs", "/v2/embed", `{` + m + `"texts":["a"],"inputs":[{"content":[{"type":"text","text":"b"}]}]}`, 400},
		{"inputs on v1", "/v1/embed", `{"inputs":[{"content":[{"type":"text","text":"b"}]}]}`, 400},
		{"nothing to embed", "/v2/embed", `{` + m + `"input_type":"search_query"}`, 400},
		{"no texts", "/v1/embed", `{"texts":[]}`, 400},
		{"empty text", "/v1/embed", `{"texts":["a",""]}`, 400},
		{"unknown type", "/v1/embed", `{"texts":["a"],"embedding_types":["int4"]}`, 400},
		{"unknown truncate", "/v1/embed", `{"texts":["a"],"truncate":"MIDDLE"}`, 400},
		{"image input_type", "/v1/embed", `{"texts":["a"],"input_type":"image"}`, 400},
		{"shorter vectors", "/v2/embed", `{` + m + `"texts":["a"],"output_dimension":256}`, 400},
		{"max_tokens 0", "/v2/embed", `{` + m + `"texts":["a"],"max_tokens":0}`, 400},
		{"too long with NONE", "/v1/embed", `{"texts":["` + strings.Repeat("word ", 600) + `"],"truncate":"NONE"}`, 400},
		{"malformed", "/v1/embed", `{"texts":`, 400},
		{"another model", "/v2/embed", `{"model":"embed-english-v3.0","texts":["a"]}`, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _, b := call(t, "POST", p+tc.path, "", tc.body)
			var e map[string]string
			if st != tc.status || json.Unmarshal(b, &e) != nil || e["message"] == "" || len(e) != 1 {
				t.Errorf("%d %s, want %d {message}", st, b, tc.status)
			}
		})
	}
}

// TestCohereEmbedSharesTheCache checks that the Cohere face finds what the
// OpenAI face cached: the same unit vectors.
func TestCohereEmbedSharesTheCache(t *testing.T) {
	emb, _, _, p, _ := facesSetup(t, nil)
	if st, _, b := call(t, "POST", p+"/v1/embeddings", "", `{"input":["shared a","shared b"],"model":"BAAI/bge-small-en-v1.5"}`); st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	before := emb.EmbedCount()
	st, h, b := call(t, "POST", p+"/v2/embed", "", `{"model":"BAAI/bge-small-en-v1.5","texts":["shared a","shared b"],"input_type":"search_document","embedding_types":["int8"]}`)
	if st != 200 || h.Get("X-Cache") != "HIT" || emb.EmbedCount() != before {
		t.Errorf("%d X-Cache %q, TEI embedded %d: %.100s", st, h.Get("X-Cache"), emb.EmbedCount()-before, b)
	}
}

// TestCohereRerankDocuments checks v1's rank_fields and whole documents
// in the answer, and that a rerank over more documents than TEI takes in
// one call is split behind the Cohere faces.
func TestCohereRerankDocuments(t *testing.T) {
	_, cnt, rank := startCounted(t, "--model-id", "BAAI/bge-reranker-v2-m3", "--max-client-batch-size", "4")
	_, ref := startSim(t, "--model-id", "BAAI/bge-reranker-v2-m3")
	_, emb := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	cfg := testConfig(emb)
	cfg.RerankURLs = []string{rank}
	_, p := startProxy(t, cfg)
	query := "what is deep learning"
	docs := []map[string]any{
		{"title": "Deep learning", "text": "neural networks with many layers", "id": 1, "tags": []string{"ml"}},
		{"title": "Pasta", "text": "boil water, add salt", "id": 2},
		{"title": "Learning", "text": "deep learning is a kind of machine learning", "id": 3},
		{"title": "Rome", "text": "travel tips", "id": 4},
		{"title": "Networks", "text": "roads and rails", "id": 5},
		{"title": "ML", "text": "machine learning basics", "id": 6},
	}
	teiRanks := func(query string, texts []string) []struct {
		Index int
		Score float64
	} {
		st, _, b := post(t, ref, "/rerank", mustJSON(t, map[string]any{"query": query, "texts": texts}))
		var r []struct {
			Index int
			Score float64
		}
		if st != 200 || json.Unmarshal(b, &r) != nil {
			t.Fatalf("TEI: %d %s", st, b)
		}
		return r
	}
	var plain, titled []string
	for _, d := range docs {
		plain = append(plain, d["text"].(string))
		titled = append(titled, "title: "+d["title"].(string)+"\ntext: "+d["text"].(string))
	}
	tests := []struct {
		name, path string
		body       map[string]any
		texts      []string
	}{
		{"v1 objects on text", "/v1/rerank", map[string]any{"query": query, "documents": docs, "return_documents": true}, plain},
		{"v1 rank_fields", "/v1/rerank", map[string]any{"query": query, "documents": docs, "rank_fields": []string{"title", "text"}, "return_documents": true}, titled},
		{"v2 strings", "/v2/rerank", map[string]any{"model": "BAAI/bge-reranker-v2-m3", "query": "deep learning?", "documents": plain, "top_n": 3}, plain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := cnt.count("/rerank")
			st, _, b := call(t, "POST", p+tc.path, "", mustJSON(t, tc.body))
			var r cohereResponse
			if st != 200 || json.Unmarshal(b, &r) != nil {
				t.Fatalf("%d %s", st, b)
			}
			if n := cnt.count("/rerank") - calls; n != 2 {
				t.Errorf("%d TEI calls for 6 documents at 4 a call, want 2", n)
			}
			want := teiRanks(tc.body["query"].(string), tc.texts)
			if n, ok := tc.body["top_n"].(int); ok && len(r.Results) != n || !ok && len(r.Results) != len(docs) {
				t.Errorf("%d results", len(r.Results))
			}
			for i, res := range r.Results {
				if res.Index != want[i].Index || res.RelevanceScore != want[i].Score {
					t.Errorf("result %d = (%d, %v), TEI's (%d, %v)", i, res.Index, res.RelevanceScore, want[i].Index, want[i].Score)
				}
				if tc.body["return_documents"] == true {
					var got map[string]any
					json.Unmarshal(res.Document, &got)
					if fmt.Sprint(got) != fmt.Sprint(normalizeJSON(t, docs[res.Index])) {
						t.Errorf("document %d answered as %s, sent as %v", res.Index, res.Document, docs[res.Index])
					}
				} else if res.Document != nil {
					t.Errorf("document returned unasked: %s", res.Document)
				}
			}
		})
	}
	for _, bad := range []string{
		`{"query":"q","documents":[{"title":"no text"}]}`,
		`{"query":"q","documents":[{"text":"a"}],"rank_fields":["title"]}`,
		`{"query":"q","documents":[{"text":1}]}`,
		`{"model":"BAAI/bge-reranker-v2-m3","query":"q","documents":[{"text":"v2 takes strings"}]}`,
	} {
		path := "/v1/rerank"
		if strings.HasPrefix(bad, `{"model"`) {
			path = "/v2/rerank"
		}
		if st, _, b := call(t, "POST", p+path, "", bad); st != 400 {
			t.Errorf("%s: %d %s, want 400", bad, st, b)
		}
	}
}

// normalizeJSON is v as it reads back from JSON.
func normalizeJSON(t *testing.T, v any) any {
	t.Helper()
	var out any
	if err := json.Unmarshal([]byte(mustJSON(t, v)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
