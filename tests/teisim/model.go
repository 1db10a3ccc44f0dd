package teisim

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// modelKind is what the simulated model can do; it decides the routes that
// answer and /info's model_type.
type modelKind int

const (
	kindEmbedding modelKind = iota
	kindReranker
	kindSplade
	kindClassifier
)

// Vocabulary layouts. BERT-style models put [CLS]/[SEP] around the text;
// XLM-RoBERTa ones (bge-m3, the bge rerankers) use <s>/</s>.
var (
	bertVocab = vocabulary{size: 30522, first: 1000, cls: specialToken{101, "[CLS]"}, sep: specialToken{102, "[SEP]"}}
	xlmrVocab = vocabulary{size: 250002, first: 5, cls: specialToken{0, "<s>"}, sep: specialToken{2, "</s>"}}
)

// knownModel describes a model id the simulator knows, so /info matches the
// real model's numbers.
type knownModel struct {
	match   string // substring of the lower-cased model id
	kind    modelKind
	dim     int
	maxLen  int
	pooling string
	vocab   vocabulary
}

// knownModels is searched in order; more specific ids come first
// ("bge-reranker-v2-m3" before "bge-m3").
var knownModels = []knownModel{
	{match: "bge-reranker-v2-m3", kind: kindReranker, maxLen: 8192, vocab: xlmrVocab},
	{match: "bge-reranker", kind: kindReranker, maxLen: 512, vocab: xlmrVocab},
	{match: "bge-m3", kind: kindEmbedding, dim: 1024, maxLen: 8192, pooling: "cls", vocab: xlmrVocab},
	{match: "bge-small", kind: kindEmbedding, dim: 384, maxLen: 512, pooling: "cls", vocab: bertVocab},
	{match: "bge-base", kind: kindEmbedding, dim: 768, maxLen: 512, pooling: "cls", vocab: bertVocab},
	{match: "bge-large", kind: kindEmbedding, dim: 1024, maxLen: 512, pooling: "cls", vocab: bertVocab},
	{match: "all-minilm-l6-v2", kind: kindEmbedding, dim: 384, maxLen: 512, pooling: "mean", vocab: bertVocab},
}

// Fallbacks for ids the simulator does not know.
const (
	defaultDim    = 768
	defaultMaxLen = 512
)

// model is the simulated model: what it is and the numbers /info reports.
type model struct {
	id   string
	kind modelKind
	// dim is the length of /embed vectors; for SPLADE the vocabulary size.
	dim int
	// modelMaxInputLength is the model's own limit; maxInputLength is the
	// one TEI enforces and reports, capped at --max-batch-tokens.
	modelMaxInputLength int
	maxInputLength      int
	pooling             string
	labels              []string // classifier and reranker labels, by id
	vocab               vocabulary
	seed                uint64 // derived from the id; every vector depends on it
}

// newModel derives the simulated model from the configuration.
func newModel(c Config) (model, error) {
	lower := strings.ToLower(c.ModelID)
	known := knownModel{kind: kindEmbedding, pooling: "cls", vocab: bertVocab}
	found := false
	for _, k := range knownModels {
		if strings.Contains(lower, k.match) {
			known, found = k, true
			break
		}
	}
	if !found {
		switch {
		case strings.Contains(lower, "rerank"):
			known.kind = kindReranker
		case strings.Contains(lower, "splade"):
			known.kind = kindSplade
		}
	}
	switch c.Sim.ModelType {
	case "":
	case ModelTypeEmbedding:
		known.kind = kindEmbedding
	case ModelTypeReranker:
		known.kind = kindReranker
	case ModelTypeSplade:
		known.kind = kindSplade
	case ModelTypeClassifier:
		known.kind = kindClassifier
	default:
		return model{}, errors.New("invalid value '" + c.Sim.ModelType + "' for '--sim-model-type': possible values: embedding, reranker, splade, classifier")
	}

	m := model{
		id:                  c.ModelID,
		kind:                known.kind,
		vocab:               known.vocab,
		pooling:             known.pooling,
		dim:                 cmp.Or(c.Sim.Dim, known.dim, defaultDim),
		modelMaxInputLength: cmp.Or(c.Sim.MaxInputLength, known.maxLen, defaultMaxLen),
	}
	m.maxInputLength = min(m.modelMaxInputLength, c.MaxBatchTokens)

	switch m.kind {
	case kindSplade:
		// SPLADE pools over the vocabulary: its dense form has one value per token id.
		m.pooling = "splade"
		m.dim = m.vocab.size
	case kindReranker:
		m.labels = []string{"LABEL_0"}
	case kindClassifier:
		m.labels = []string{"LABEL_0", "LABEL_1"}
	}
	// TEI ignores --pooling for classifiers and rerankers.
	if c.Pooling != "" && m.isEmbedding() {
		switch {
		case c.Pooling == "splade" && m.kind != kindSplade:
			return model{}, errors.New("Splade pooling is not supported: model is not a ForMaskedLM model")
		case c.Pooling != "splade" && m.kind == kindSplade:
			// A SPLADE checkpoint pooled another way yields hidden-size vectors.
			m.kind = kindEmbedding
			m.dim = cmp.Or(c.Sim.Dim, known.dim, defaultDim)
		}
		m.pooling = strings.ReplaceAll(c.Pooling, "-", "_")
	}

	sum := sha256.Sum256([]byte(c.ModelID))
	m.seed = binary.LittleEndian.Uint64(sum[:8])
	return m, nil
}

// modelType is /info's model_type object.
func (m model) modelType() map[string]any {
	switch m.kind {
	case kindReranker, kindClassifier:
		id2label := make(map[string]string, len(m.labels))
		label2id := make(map[string]int, len(m.labels))
		for i, l := range m.labels {
			id2label[strconv.Itoa(i)] = l
			label2id[l] = i
		}
		key := "reranker"
		if m.kind == kindClassifier {
			key = "classifier"
		}
		return map[string]any{key: map[string]any{"id2label": id2label, "label2id": label2id}}
	default:
		return map[string]any{"embedding": map[string]any{"pooling": m.pooling}}
	}
}

func (m model) isEmbedding() bool { return m.kind == kindEmbedding || m.kind == kindSplade }
