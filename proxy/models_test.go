package proxy

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestModelNames checks the naming rule on every face: the model's own
// id, or its role's aliases; MODEL_ALIASES still names the embedding
// model; a missing model is refused where the API requires one; and
// MODEL_ACCEPT_ANY accepts everything, as TEI does.
func TestModelNames(t *testing.T) {
	const (
		emb  = "BAAI/bge-small-en-v1.5"
		rank = "BAAI/bge-reranker-v2-m3"
	)
	embed := func(model string) (string, string) {
		if model == "" {
			return "/v1/embeddings", `{"input":"x"}`
		}
		return "/v1/embeddings", `{"input":"x","model":"` + model + `"}`
	}
	type modelCall struct {
		name       string
		path, body string
		status     int
	}
	calls := func(acceptAny bool) []modelCall {
		refused := 404
		missing := 400
		if acceptAny {
			refused, missing = 200, 200
		}
		p, b := embed("text-embedding-ada-002")
		out := []modelCall{{"openai alias", p, b, 200}}
		p, b = embed("legacy-name")
		out = append(out, modelCall{"openai MODEL_ALIASES", p, b, 200})
		p, b = embed("my-reranker")
		out = append(out, modelCall{"openai reranker alias", p, b, refused})
		p, b = embed("")
		out = append(out, modelCall{"openai without model", p, b, missing})
		p, b = embed(emb)
		out = append(out, modelCall{"openai own id", p, b, 200})
		return append(out,
			modelCall{"cohere v1 embed alias", "/v1/embed", `{"model":"text-embedding-ada-002","texts":["x"]}`, 200},
			modelCall{"cohere v1 embed without model", "/v1/embed", `{"texts":["x"]}`, 200},
			modelCall{"cohere v2 embed without model", "/v2/embed", `{"texts":["x"],"input_type":"search_query"}`, missing},
			modelCall{"cohere v2 embed reranker's name", "/v2/embed", `{"model":"` + rank + `","texts":["x"]}`, refused},
			modelCall{"cohere v2 rerank alias", "/v2/rerank", `{"model":"my-reranker","query":"q","documents":["a"]}`, 200},
			modelCall{"cohere v2 rerank without model", "/v2/rerank", `{"query":"q","documents":["a"]}`, missing},
			modelCall{"cohere v1 rerank embedding alias", "/v1/rerank", `{"model":"text-embedding-ada-002","query":"q","documents":["a"]}`, refused},
			modelCall{"cohere v1 rerank MODEL_ALIASES", "/v1/rerank", `{"model":"legacy-name","query":"q","documents":["a"]}`, refused},
			modelCall{"jina rerank without model", "/v1/rerank", `{"query":"q","documents":[{"text":"a"}]}`, 200},
			modelCall{"cohere v1 rerank own id", "/v1/rerank", `{"model":"` + rank + `","query":"q","documents":["a"]}`, 200},
		)
	}
	for _, acceptAny := range []bool{false, true} {
		_, _, _, p, _ := facesSetup(t, func(c *Config) {
			c.EmbeddingModelAliases = []string{"text-embedding-ada-002"}
			c.ModelAliases = []string{"legacy-name"}
			c.RerankModelAliases = []string{"my-reranker"}
			c.ModelAcceptAny = acceptAny
		})
		for _, tc := range calls(acceptAny) {
			t.Run(map[bool]string{false: "strict/", true: "accept any/"}[acceptAny]+tc.name, func(t *testing.T) {
				st, _, b := call(t, "POST", p+tc.path, "", tc.body)
				if st != tc.status {
					t.Fatalf("%d %s, want %d", st, b, tc.status)
				}
			})
		}
	}
}

// TestModelsListAndRetrieve checks GET /v1/models and /v1/models/{id} in
// OpenAI's shapes, ids with a slash written plain or escaped.
func TestModelsListAndRetrieve(t *testing.T) {
	_, _, _, p, _ := facesSetup(t, func(c *Config) {
		c.EmbeddingModelAliases = []string{"text-embedding-ada-002"}
		c.RerankModelAliases = []string{"my-reranker"}
	})
	st, _, b := call(t, "GET", p+"/v1/models", "", "")
	var list struct {
		Object string        `json:"object"`
		Data   []openAIModel `json:"data"`
	}
	if st != 200 || json.Unmarshal(b, &list) != nil || list.Object != "list" {
		t.Fatalf("%d %s", st, b)
	}
	var ids []string
	for _, m := range list.Data {
		if m.Object != "model" || m.OwnedBy == "" {
			t.Errorf("model %+v", m)
		}
		ids = append(ids, m.ID)
	}
	want := []string{"BAAI/bge-small-en-v1.5", "text-embedding-ada-002", "BAAI/bge-reranker-v2-m3", "my-reranker"}
	if !slices.Equal(ids, want) {
		t.Errorf("listed %q, want %q", ids, want)
	}
	for _, tc := range []struct {
		path   string
		id     string
		status int
	}{
		{"/v1/models/BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", 200},
		{"/v1/models/BAAI%2Fbge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3", 200},
		{"/v1/models/text-embedding-ada-002", "text-embedding-ada-002", 200},
		{"/v1/models/gpt-4", "", 404},
		{"/v1/models/", "", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			st, _, b := call(t, "GET", p+tc.path, "", "")
			if st != tc.status {
				t.Fatalf("%d %s, want %d", st, b, tc.status)
			}
			if st == 200 {
				var m openAIModel
				if json.Unmarshal(b, &m) != nil || m.ID != tc.id || m.Object != "model" {
					t.Errorf("got %s, want id %q", b, tc.id)
				}
				return
			}
			var e openAIErrorBody
			if json.Unmarshal(b, &e) != nil || e.Error.Code == nil || *e.Error.Code != "model_not_found" {
				t.Errorf("not OpenAI's 404: %s", b)
			}
		})
	}
}
