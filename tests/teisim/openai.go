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
	outs, m, release, err := s.execute(r, job{
		n:      len(req.Input.items),
		batch:  req.Input.batch,
		check:  s.pooledCheck(true, req.Dimensions),
		encode: func(i int) (encoded, *apiError) { return s.encode(req.Input.items[i], opt) },
		finish: s.dimensionsCheck(req.Dimensions),
	})
	defer release()
	if err == nil {
		if e := firstError(outs); e != nil {
			err = e
		}
	}
	if err != nil {
		s.answerError(w, err, openAIFace)
		return
	}
	data := make([]openAIEmbedding, len(outs))
	for i, o := range outs {
		v := s.vector(o.enc, true, req.Dimensions)
		data[i] = openAIEmbedding{Object: "embedding", Embedding: vector(v), Index: i}
		if req.Base64 {
			data[i].Embedding = encodeBase64(v)
		}
	}
	m.chars = totalChars(req.Input.items)
	s.succeed(w, method, m)
	writeJSON(w, http.StatusOK, openAIResponse{
		Object: "list",
		Data:   data,
		Model:  cmp.Or(s.cfg.ServedModelName, s.cfg.ModelID),
		Usage:  openAIUsage{PromptTokens: m.tokens, TotalTokens: m.tokens},
	})
}

// encodeBase64 is OpenAI's base64 format as TEI writes it: the f32s' bytes
// in memory (little-endian), NaN bits included.
func encodeBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}
