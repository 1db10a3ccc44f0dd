package proxy

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// cohereInputTypes are Cohere's input_type values for text. The models TEI
// serves have no prompts by default, so an input_type changes nothing
// unless INPUT_TYPE_PROMPTS maps it to one of the model's prompt names.
var cohereInputTypes = []string{"search_document", "search_query", "classification", "clustering"}

// cohereEmbeddingTypes are Cohere's embedding_types; see quantize.go for
// how the compressed ones are computed.
var cohereEmbeddingTypes = []string{"float", "int8", "uint8", "binary", "ubinary", "base64"}

// cohereEmbedRequest is the body of Cohere's embed, v1 and v2. max_tokens
// and priority are accepted and ignored: TEI truncates at the model's
// max_input_length, and the sidecar's own priorities apply.
type cohereEmbedRequest struct {
	Model           *string            `json:"model"`
	Texts           *[]string          `json:"texts"`
	Images          []jsontext.Value   `json:"images"`
	Inputs          *[]cohereEmbedItem `json:"inputs"` // v2
	InputType       *string            `json:"input_type"`
	EmbeddingTypes  []string           `json:"embedding_types"`
	Truncate        *string            `json:"truncate"`
	OutputDimension *int               `json:"output_dimension"`
	MaxTokens       *int               `json:"max_tokens"`
}

// cohereEmbedItem is one of v2's inputs: content parts, of which the
// sidecar takes exactly one text part (its models embed text only).
type cohereEmbedItem struct {
	Content []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	} `json:"content"`
}

// cohereTexts reads the texts to embed: v1's and v2's texts, or v2's inputs.
func cohereTexts(req *cohereEmbedRequest, version string) ([]string, error) {
	switch {
	case len(req.Images) > 0:
		return nil, cohereBad("images", "images are not supported: this server's model embeds text only")
	case req.Texts != nil && req.Inputs != nil:
		return nil, cohereBad("texts", "give texts or inputs, not both")
	case req.Inputs != nil && version == "1":
		return nil, cohereBad("inputs", "inputs is a v2 field: use texts, or POST /v2/embed")
	case req.Texts != nil:
		if len(*req.Texts) == 0 {
			return nil, cohereBad("texts", "texts must not be empty")
		}
		return *req.Texts, nil
	case req.Inputs != nil:
		if len(*req.Inputs) == 0 {
			return nil, cohereBad("inputs", "inputs must not be empty")
		}
		texts := make([]string, len(*req.Inputs))
		for i, in := range *req.Inputs {
			if len(in.Content) != 1 || in.Content[0].Type != "text" || in.Content[0].Text == nil {
				return nil, cohereBad("inputs", "inputs[%d].content must be one text part {\"type\": \"text\", \"text\": ...}: this server's model embeds text only", i)
			}
			texts[i] = *in.Content[0].Text
		}
		return texts, nil
	}
	if version == "1" {
		return nil, cohereBad("texts", "texts is required")
	}
	return nil, cohereBad("texts", "texts or inputs is required")
}

// params resolves the request's settings: unit vectors (Cohere's are, and
// the compressed types assume it), truncation as Cohere's truncate says
// (END when absent, as Cohere's default), the prompt its input_type maps to.
func (s *Server) cohereEmbedParams(req *cohereEmbedRequest, info *tei.Info) (embedParams, error) {
	p := embedParams{kind: dense, normalize: true, truncate: true, direction: "Right"}
	if t := req.Truncate; t != nil {
		switch *t {
		case "NONE":
			p.truncate = false
		case "START":
			p.direction = "Left"
		case "END":
		default:
			return p, cohereBad("truncate", "truncate must be NONE, START or END, got %q", *t)
		}
	}
	if t := req.InputType; t != nil {
		if !slices.Contains(cohereInputTypes, *t) {
			return p, cohereBad("input_type", "input_type must be one of %s (this server's model embeds text only), got %q", strings.Join(cohereInputTypes, ", "), *t)
		}
		p.promptName = s.cfg.InputTypePrompts[*t]
	}
	if d := req.OutputDimension; d != nil {
		if dim := int(s.embedP.dim.Load()); *d != dim {
			return p, cohereBad("output_dimension", "output_dimension must be %d, the dimension of %s: it was not trained for shorter vectors, and truncating them would silently degrade retrieval; got %d", dim, info.ModelID, *d)
		}
	}
	if m := req.MaxTokens; m != nil && *m < 1 {
		return p, cohereBad("max_tokens", "max_tokens must be at least 1, got %d", *m)
	}
	return p, nil
}

// cohereEmbed serves POST /v1/embed and /v2/embed through the shared
// cache. v1 without embedding_types answers "embeddings_floats" (a list of
// float vectors); with them, and v2 always (float when none are named),
// "embeddings_by_type": an object with a list per type.
func (s *Server) cohereEmbed(version string) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readJSON(c, s.cfg.BodyLimit)
		if err != nil {
			return s.cohereError(c, err)
		}
		var req cohereEmbedRequest
		if err := decodeBody(body, &req); err != nil {
			return s.cohereError(c, err)
		}
		info := s.embedP.info()
		// Cohere's v2 requires a model; v1 defaults to the served one.
		if err := s.checkModel(req.Model, version == "2", embedModel, info, cohereNotFound(s.modelNames(embedModel, info))); err != nil {
			return s.cohereError(c, err)
		}
		texts, err := cohereTexts(&req, version)
		if err != nil {
			return s.cohereError(c, err)
		}
		if slices.Contains(texts, "") {
			return s.cohereError(c, errEmptyInputs)
		}
		var types []string
		for _, t := range req.EmbeddingTypes {
			if !slices.Contains(cohereEmbeddingTypes, t) {
				return s.cohereError(c, cohereBad("embedding_types", "embedding_types must be among %s, got %q", strings.Join(cohereEmbeddingTypes, ", "), t))
			}
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		if len(types) == 0 && version == "2" {
			types = []string{"float"}
		}
		p, err := s.cohereEmbedParams(&req, info)
		if err != nil {
			return s.cohereError(c, err)
		}
		items, cc, err := s.embed(c.Request().Context(), s.embedP, p, tei.Texts(texts...), s.requestOpts(c.Request().Header, len(texts)))
		if err != nil {
			return s.cohereError(c, err)
		}
		setXCache(c, cc)
		out, err := appendCohereEmbed(nil, version, types, texts, items)
		if err != nil {
			return s.cohereError(c, err)
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, out)
	}
}

// appendCohereEmbed writes the answer: float lists as TEI wrote them,
// base64 as cached, compressed types computed here. types empty means
// v1's embeddings_floats.
func appendCohereEmbed(b []byte, version string, types, texts []string, items []*entry) ([]byte, error) {
	b = append(b, `{"response_type":`...)
	if len(types) == 0 {
		b = append(b, `"embeddings_floats"`...)
	} else {
		b = append(b, `"embeddings_by_type"`...)
	}
	b = append(b, `,"id":"`...)
	b = append(b, newID()...)
	b = append(b, `","embeddings":`...)
	if len(types) == 0 {
		b = append(b, '[')
		for i, e := range items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, e.json...)
		}
		b = append(b, ']')
	} else {
		var vecs [][]float32 // decoded once, for the compressed types
		b = append(b, '{')
		for ti, t := range types {
			if ti > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, t...)
			b = append(b, `":[`...)
			if t != "float" && t != "base64" && vecs == nil {
				vecs = make([][]float32, len(items))
				for i, e := range items {
					v, err := tei.DecodeVector(e.json)
					if err != nil {
						return nil, err
					}
					vecs[i] = v
				}
			}
			for i, e := range items {
				if i > 0 {
					b = append(b, ',')
				}
				switch t {
				case "float":
					b = append(b, e.json...)
				case "base64":
					s, err := e.base64()
					if err != nil {
						return nil, err
					}
					b = append(b, '"')
					b = append(b, s...)
					b = append(b, '"')
				case "int8":
					b = appendInt8s(b, vecs[i], 0)
				case "uint8":
					b = appendInt8s(b, vecs[i], 128)
				case "binary":
					b = appendBits(b, vecs[i], -128)
				case "ubinary":
					b = appendBits(b, vecs[i], 0)
				}
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `,"texts":[`...)
	tokens := 0
	for i, t := range texts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t)
		tokens += items[i].tokens
	}
	b = append(b, `],"meta":{"api_version":{"version":"`...)
	b = append(b, version...)
	b = append(b, `"},"billed_units":{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	return append(b, `}}}`...), nil
}
