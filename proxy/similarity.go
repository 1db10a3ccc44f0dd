package proxy

import (
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// /similarity goes through the per-text cache: TEI embeds the source
// sentence and each sentence without normalizing (the same entries as
// /embed with normalize=false) and answers their cosine similarities, so
// the sidecar computes them itself from cached vectors, in float64 (TEI's
// simsimd works in float64 too; the two agree to float32 rounding). It
// splits batches as /embed does, so max_client_batch_size does not apply.

// similarityRequest is the body of TEI's /similarity.
type similarityRequest struct {
	Inputs *struct {
		SourceSentence *string   `json:"source_sentence"`
		Sentences      *[]string `json:"sentences"`
	} `json:"inputs"`
	Parameters *struct {
		Truncate            *bool     `json:"truncate"`
		TruncationDirection optString `json:"truncation_direction"`
		PromptName          *string   `json:"prompt_name"`
	} `json:"parameters"`
}

// errNoSentences is TEI's refusal of a /similarity without sentences.
var errNoSentences = &requestError{status: http.StatusBadRequest, typ: tei.TypeEmpty, msg: "`inputs.sentences` cannot be empty"}

func missingField(path string) error {
	return plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `%s`", path)
}

// teiSimilarity serves /similarity with TEI's shape: one float per sentence.
func (s *Server) teiSimilarity(c echo.Context) error {
	body, err := readJSON(c, s.cfg.BodyLimit)
	if err != nil {
		return s.teiError(c, err)
	}
	var req similarityRequest
	if err := decodeBody(body, &req); err != nil {
		return s.teiError(c, err)
	}
	switch {
	case req.Inputs == nil:
		return s.teiError(c, missingField("inputs"))
	case req.Inputs.SourceSentence == nil:
		return s.teiError(c, missingField("source_sentence"))
	case req.Inputs.Sentences == nil:
		return s.teiError(c, missingField("sentences"))
	case len(*req.Inputs.Sentences) == 0:
		return s.teiError(c, errNoSentences)
	}
	info := s.embedP.info()
	p := embedParams{kind: dense, normalize: false, truncate: info.AutoTruncate, direction: "Right"}
	if par := req.Parameters; par != nil {
		if par.Truncate != nil {
			p.truncate = *par.Truncate
		}
		if p.direction, err = parseDirection(par.TruncationDirection.ptr()); err != nil {
			return s.teiError(c, err)
		}
		if par.PromptName != nil {
			p.promptName = *par.PromptName
		}
	}
	texts := append([]string{*req.Inputs.SourceSentence}, *req.Inputs.Sentences...)
	for _, t := range texts {
		if t == "" {
			return s.teiError(c, errEmptyInputs)
		}
	}
	items, cc, err := s.embed(c.Request().Context(), s.embedP, p, tei.Texts(texts...), s.requestOpts(c.Request().Header, len(texts)))
	if err != nil {
		return s.teiError(c, err)
	}
	setXCache(c, cc)
	vecs := make([][]float32, len(items))
	for i, e := range items {
		if vecs[i], err = tei.DecodeVector(e.json); err != nil {
			return s.teiError(c, err)
		}
	}
	b := append(make([]byte, 0, 2+14*len(items)), '[')
	for i, v := range vecs[1:] {
		if i > 0 {
			b = append(b, ',')
		}
		// As TEI: 1 - the cosine distance, taken to float32 first.
		b = appendF32(b, 1-float32(1-cosine(vecs[0], v)))
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, append(b, ']'))
}

// cosine is the cosine similarity of a and b, 0 when either is zero.
func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range min(len(a), len(b)) {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// appendF32 appends f as serde_json writes an f32 (with ryu): the shortest
// digits that read back as the same float32, "1.0" for an integer, an
// exponent only outside [1e-6, 1e13), null for NaN and the infinities, so
// that a number the sidecar computes reads like TEI's.
func appendF32(b []byte, f float32) []byte {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return append(b, "null"...)
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], float64(f), 'e', -1, 32)
	if e[0] == '-' {
		b = append(b, '-')
		e = e[1:]
	}
	mant, exp := e, 0
	for i, c := range e {
		if c == 'e' {
			mant = e[:i]
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
	}
	var dbuf [16]byte
	digits := dbuf[:0]
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	n := len(digits)
	point := exp + 1 // the decimal point sits after point digits
	switch {
	case point >= n && point <= 13:
		b = append(b, digits...)
		for range point - n {
			b = append(b, '0')
		}
		return append(b, ".0"...)
	case point > 0 && point <= 13:
		b = append(b, digits[:point]...)
		b = append(b, '.')
		return append(b, digits[point:]...)
	case point > -6 && point <= 0:
		b = append(b, "0."...)
		for range -point {
			b = append(b, '0')
		}
		return append(b, digits...)
	case n == 1:
		b = append(b, digits[0], 'e')
		return strconv.AppendInt(b, int64(point-1), 10)
	}
	b = append(b, digits[0], '.')
	b = append(b, digits[1:]...)
	b = append(b, 'e')
	return strconv.AppendInt(b, int64(point-1), 10)
}
