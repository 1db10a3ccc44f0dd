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
	// Arch is the model_type of the model's config.json, which decides how
	// TEI runs it (float32Archs); empty when unknown.
	Arch string `json:"arch,omitempty"`
	// Known is false for models outside the catalogue, sized as
	// conservativeModel.
	Known bool `json:"known"`
	// Note is said in the plan's reasons when set.
	Note string `json:"note,omitempty"`
}

// catalogue holds the models this package knows, keyed by lower-case Hub
// id. Parameter counts and shapes are the models' own configs: bge-m3 and
// its reranker are XLM-RoBERTa large (24 layers, 1024 wide, 16 heads);
// EmbeddingGemma is Gemma 3 (308M in TEI's table of supported models).
var catalogue = map[string]Model{
	"baai/bge-m3":             {ParamsM: 568, Hidden: 1024, Heads: 16, MaxLen: 8192, Dim: 1024, Arch: "xlm-roberta"},
	"baai/bge-reranker-v2-m3": {ParamsM: 568, Hidden: 1024, Heads: 16, MaxLen: 8192, Arch: "xlm-roberta"},
	"baai/bge-small-en-v1.5":  {ParamsM: 33, Hidden: 384, Heads: 12, MaxLen: 512, Dim: 384, Arch: "bert"},
	"baai/bge-base-en-v1.5":   {ParamsM: 109, Hidden: 768, Heads: 12, MaxLen: 512, Dim: 768, Arch: "bert"},
	"baai/bge-large-en-v1.5":  {ParamsM: 335, Hidden: 1024, Heads: 16, MaxLen: 512, Dim: 1024, Arch: "bert"},
	"baai/bge-reranker-base":  {ParamsM: 278, Hidden: 768, Heads: 12, MaxLen: 512, Arch: "xlm-roberta"},
	"baai/bge-reranker-large": {ParamsM: 560, Hidden: 1024, Heads: 16, MaxLen: 512, Arch: "xlm-roberta"},
	"sentence-transformers/all-minilm-l6-v2": {ParamsM: 22, Hidden: 384, Heads: 12, MaxLen: 512, Dim: 384, Arch: "bert",
		Note: "trained on 256-token inputs; TEI accepts its 512 positions"},
	"google/embeddinggemma-300m": {ParamsM: 308, Hidden: 768, Heads: 3, MaxLen: 2048, Dim: 768, Arch: "gemma3_text",
		Note: "gated on the Hub: set HF_TOKEN"},
}

// float32Archs are the model types TEI runs in float32 only: its candle
// backend refuses float16 for them ("Gemma3 is only supported in fp32
// precision", backends/candle/src/lib.rs), and its router defaults
// gemma3_text to float32 when no --dtype is given (router/src/lib.rs).
var float32Archs = map[string]bool{
	"gemma3_text":              true,
	"bidirectional_pplx_qwen3": true,
}

// Float32Only reports whether TEI runs the model in float32 only.
func (m Model) Float32Only() bool { return float32Archs[m.Arch] }

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
