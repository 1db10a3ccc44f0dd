package tei

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Input is one input to embed: a text, or pre-tokenized ids when IDs is not nil.
type Input struct {
	Text string
	IDs  []uint32
}

// Text returns an Input holding s.
func Text(s string) Input { return Input{Text: s} }

// MarshalJSON writes a text as a JSON string and ids as a JSON list.
func (in Input) MarshalJSON() ([]byte, error) {
	if in.IDs != nil {
		return json.Marshal(in.IDs)
	}
	return json.Marshal(in.Text)
}

// Texts wraps strings as inputs.
func Texts(ss ...string) []Input {
	in := make([]Input, len(ss))
	for i, s := range ss {
		in[i] = Input{Text: s}
	}
	return in
}

// EmbedRequest is the body of /embed and /embed_sparse. Pointer fields left
// nil are omitted, so TEI applies its own defaults (normalize=true,
// truncate=--auto-truncate). Inputs are always sent as a list, so one input
// of token ids is sent as a batch of one.
type EmbedRequest struct {
	Inputs              []Input `json:"inputs"`
	Normalize           *bool   `json:"normalize,omitempty"`
	Truncate            *bool   `json:"truncate,omitempty"`
	TruncationDirection string  `json:"truncation_direction,omitempty"`
	PromptName          string  `json:"prompt_name,omitempty"`
	Dimensions          *int    `json:"dimensions,omitempty"`
}

// Embeddings is a successful /embed or /embed_sparse answer.
type Embeddings struct {
	// Items holds each input's value as the JSON bytes TEI wrote, in input
	// order. They are sub-slices of Response.Body: copy before keeping one
	// while dropping the rest.
	Items [][]byte
	// Response is the whole answer, with TEI's timing headers.
	Response *Response
}

// Vectors decodes dense items to float32.
func (e *Embeddings) Vectors() ([][]float32, error) {
	out := make([][]float32, len(e.Items))
	for i, it := range e.Items {
		v, err := DecodeVector(it)
		if err != nil {
			return nil, fmt.Errorf("tei: item %d: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

// DecodeVector parses one dense item, a JSON list of numbers, to float32.
func DecodeVector(item []byte) ([]float32, error) {
	v := make([]float32, 0, len(item)/10)
	err := ForEachNumber(item, func(num []byte) error {
		f, err := strconv.ParseFloat(string(num), 32)
		if err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("bad number %q", num)
		}
		v = append(v, float32(f))
		return nil
	})
	return v, err
}

// SparseValue is one non-zero entry of a sparse embedding.
type SparseValue struct {
	Index uint32  `json:"index"`
	Value float32 `json:"value"`
}

// RerankRequest is the body of /rerank.
type RerankRequest struct {
	Query               string   `json:"query"`
	Texts               []string `json:"texts"`
	Truncate            *bool    `json:"truncate,omitempty"`
	TruncationDirection string   `json:"truncation_direction,omitempty"`
	RawScores           bool     `json:"raw_scores,omitempty"`
	ReturnText          bool     `json:"return_text,omitempty"`
}

// Rank is one /rerank result.
type Rank struct {
	Index int `json:"index"`
	// Score is the decoded score; RawScore keeps TEI's own digits so an
	// answer can be written back byte for byte.
	Score    float64         `json:"-"`
	RawScore json.RawMessage `json:"score"`
	Text     *string         `json:"text,omitempty"`
}

// UnmarshalJSON decodes a rank and keeps the score's raw digits.
func (r *Rank) UnmarshalJSON(b []byte) error {
	type plain Rank
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	f, err := strconv.ParseFloat(string(p.RawScore), 64)
	if err != nil {
		return fmt.Errorf("rank score %q: %w", p.RawScore, err)
	}
	*r = Rank(p)
	r.Score = f
	return nil
}

// TokenizeRequest is the body of /tokenize.
type TokenizeRequest struct {
	Inputs           []string `json:"inputs"`
	AddSpecialTokens *bool    `json:"add_special_tokens,omitempty"`
	PromptName       string   `json:"prompt_name,omitempty"`
}

// Token is one token from /tokenize.
type Token struct {
	ID      uint32  `json:"id"`
	Text    string  `json:"text"`
	Special bool    `json:"special"`
	Start   *uint32 `json:"start"`
	Stop    *uint32 `json:"stop"`
}

// OpenAIRequest is the body of TEI's /v1/embeddings.
type OpenAIRequest struct {
	Input          any    `json:"input"`
	Model          string `json:"model,omitempty"`
	User           string `json:"user,omitempty"`
	EncodingFormat string `json:"encoding_format,omitempty"`
	Dimensions     *int   `json:"dimensions,omitempty"`
}

// OpenAIResponse is TEI's /v1/embeddings answer.
type OpenAIResponse struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string          `json:"object"`
		Embedding json.RawMessage `json:"embedding"`
		Index     int             `json:"index"`
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// Info is TEI's /info: the served model's identity and the server's limits.
type Info struct {
	ModelID               string    `json:"model_id"`
	ModelSHA              *string   `json:"model_sha"`
	ModelDType            string    `json:"model_dtype"`
	ModelType             ModelType `json:"model_type"`
	ServedModelName       *string   `json:"served_model_name,omitempty"`
	MaxConcurrentRequests int       `json:"max_concurrent_requests"`
	MaxInputLength        int       `json:"max_input_length"`
	MaxBatchTokens        int       `json:"max_batch_tokens"`
	MaxBatchRequests      *int      `json:"max_batch_requests"`
	MaxClientBatchSize    int       `json:"max_client_batch_size"`
	AutoTruncate          bool      `json:"auto_truncate"`
	TokenizationWorkers   int       `json:"tokenization_workers"`
	Version               string    `json:"version"`
	SHA                   *string   `json:"sha"`
	DockerLabel           *string   `json:"docker_label"`
	// Raw is /info exactly as TEI sent it, for a proxy to serve unchanged.
	Raw json.RawMessage `json:"-"`
}

// Revision returns the model revision, or "" when TEI reports none.
func (i *Info) Revision() string {
	if i.ModelSHA == nil {
		return ""
	}
	return *i.ModelSHA
}

// ModelType is TEI's model_type: exactly one field is set.
type ModelType struct {
	Embedding  *EmbeddingModel  `json:"embedding,omitempty"`
	Reranker   *ClassifierModel `json:"reranker,omitempty"`
	Classifier *ClassifierModel `json:"classifier,omitempty"`
}

// EmbeddingModel describes an embedding model's pooling.
type EmbeddingModel struct {
	Pooling string `json:"pooling"`
}

// ClassifierModel describes a reranker's or classifier's labels.
type ClassifierModel struct {
	ID2Label map[string]string `json:"id2label"`
	Label2ID map[string]int    `json:"label2id"`
}

// Model kinds returned by ModelType.Kind.
const (
	KindEmbedding  = "embedding"
	KindSparse     = "sparse"
	KindReranker   = "reranker"
	KindClassifier = "classifier"
)

// Kind names the model's kind: embedding, sparse (SPLADE pooling),
// reranker, classifier, or "" when TEI reported none.
func (m ModelType) Kind() string {
	switch {
	case m.Embedding != nil && m.Embedding.Pooling == "splade":
		return KindSparse
	case m.Embedding != nil:
		return KindEmbedding
	case m.Reranker != nil:
		return KindReranker
	case m.Classifier != nil:
		return KindClassifier
	}
	return ""
}
