package plan

import (
	"path"
	"strings"
)

// Model is what a plan needs to know about a model to size TEI for it.
type Model struct {
	ID string `json:"id"`
	// ParamsM is the parameter count in millions; it sizes the weights.
	ParamsM int `json:"params_m"`
	// Hidden and Heads size a token's activations and attention scores.
	Hidden int `json:"hidden"`
	Heads  int `json:"heads"`
	// MaxLen is the longest input TEI accepts for it, in tokens.
	MaxLen int `json:"max_len"`
	// Dim is the embedding size; 0 for rerankers.
	Dim int `json:"dim,omitempty"`
	// Known is false for models outside the catalogue, sized as
	// conservativeModel.
	Known bool `json:"known"`
	// Note is said in the plan's reasons when set.
	Note string `json:"note,omitempty"`
}

// catalogue holds the models this package knows, keyed by lower-case Hub
// id. Parameter counts and shapes are the models' own configs: bge-m3 and
// its reranker are XLM-RoBERTa large (24 layers, 1024 wide, 16 heads).
var catalogue = map[string]Model{
	"baai/bge-m3":             {ParamsM: 568, Hidden: 1024, Heads: 16, MaxLen: 8192, Dim: 1024},
	"baai/bge-reranker-v2-m3": {ParamsM: 568, Hidden: 1024, Heads: 16, MaxLen: 8192},
	"baai/bge-small-en-v1.5":  {ParamsM: 33, Hidden: 384, Heads: 12, MaxLen: 512, Dim: 384},
	"baai/bge-base-en-v1.5":   {ParamsM: 109, Hidden: 768, Heads: 12, MaxLen: 512, Dim: 768},
	"baai/bge-large-en-v1.5":  {ParamsM: 335, Hidden: 1024, Heads: 16, MaxLen: 512, Dim: 1024},
	"baai/bge-reranker-base":  {ParamsM: 278, Hidden: 768, Heads: 12, MaxLen: 512},
	"baai/bge-reranker-large": {ParamsM: 560, Hidden: 1024, Heads: 16, MaxLen: 512},
	"sentence-transformers/all-minilm-l6-v2": {ParamsM: 22, Hidden: 384, Heads: 12, MaxLen: 512, Dim: 384,
		Note: "trained on 256-token inputs; TEI accepts its 512 positions"},
}

// conservativeModel sizes an unknown model as the largest catalogued one
// (XLM-R large), so the plan errs towards fitting in memory.
var conservativeModel = Model{ParamsM: 568, Hidden: 1024, Heads: 16, MaxLen: 8192}

// LookupModel finds a model by Hub id, case-insensitively; a local
// directory matches by its last two path elements ("…/BAAI/bge-m3") or its
// name alone ("…/bge-m3"). An unknown model comes back with Known false.
func LookupModel(id string) Model {
	key := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(id), "/"))
	if m, ok := catalogue[key]; ok {
		m.ID, m.Known = id, true
		return m
	}
	base := path.Base(key)
	two := path.Base(path.Dir(key)) + "/" + base
	for k, m := range catalogue {
		if k == two || path.Base(k) == base {
			m.ID, m.Known = id, true
			return m
		}
	}
	m := conservativeModel
	m.ID = id
	return m
}

// weightsMiB is the model's weights at dtype size bytes per parameter.
func (m Model) weightsMiB(bytesPerParam int) int64 {
	return int64(m.ParamsM) * 1_000_000 * int64(bytesPerParam) / (1 << 20)
}
