package teisim

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
)

// openAIEmbedding is one item of an OpenAI embeddings response; Embedding is
// a []float32 or, for encoding_format base64, a string.
type openAIEmbedding struct {
	Object    string `json:"object"`
	Embedding any    `json:"embedding"`
	Index     int    `json:"index"`
}

type openAIUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type openAIResponse struct {
	Object string            `json:"object"`
	Data   []openAIEmbedding `json:"data"`
	Model  string            `json:"model"`
	Usage  openAIUsage       `json:"usage"`
}

// handleOpenAI serves POST /v1/embeddings and /embeddings. As in TEI, the
// request's model is ignored, vectors are always normalized, truncation is
// the server's, and errors use OpenAI's flat shape.
func (s *Server) handleOpenAI(w http.ResponseWriter, r *http.Request) {
	var req openAIRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	method := req.Input.method()
	s.metrics.requestCount.WithLabelValues(method).Inc()
	opt := s.options(nil, truncateRight, nil)
	encs, m, release, err := s.execute(r, job{
		n:        len(req.Input.items),
		batch:    req.Input.batch,
		modelErr: s.pooledModelErr(true, req.Dimensions),
		encode:   func(i int) (encoded, *apiError) { return s.encode(req.Input.items[i], opt) },
	})
	defer release()
	if err != nil {
		s.answerError(w, err, openAIFace)
		return
	}
	base64Format := req.EncodingFormat != nil && *req.EncodingFormat == "base64"
	data := make([]openAIEmbedding, len(encs))
	for i, e := range encs {
		v := s.vector(e.ids, true, req.Dimensions)
		data[i] = openAIEmbedding{Object: "embedding", Embedding: v, Index: i}
		if base64Format {
			data[i].Embedding = encodeBase64(v)
		}
	}
	m.chars = totalChars(req.Input.items)
	s.succeed(w, method, m, false)
	writeJSON(w, http.StatusOK, openAIResponse{
		Object: "list",
		Data:   data,
		Model:  cmp.Or(s.cfg.ServedModelName, s.cfg.ModelID),
		Usage:  openAIUsage{PromptTokens: m.tokens, TotalTokens: m.tokens},
	})
}

// encodeBase64 is OpenAI's base64 format: the little-endian float32 bytes.
func encodeBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}
