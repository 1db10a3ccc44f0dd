package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// Face is the API a target is called through.
type Face string

// Faces. The sidecar serves all three; TEI itself serves FaceTEI.
const (
	// FaceTEI is TEI's own API: POST /embed and POST /rerank.
	FaceTEI Face = "tei"
	// FaceOpenAI is POST /v1/embeddings and the Cohere-style POST /v1/rerank.
	FaceOpenAI Face = "openai"
	// FacePlugin is the retrieval plugin's services: POST
	// /plugin/embed_query, /plugin/embed_documents and /plugin/rerank.
	FacePlugin Face = "plugin"
)

// Faces lists the faces, for flag help and validation.
var Faces = []Face{FaceTEI, FaceOpenAI, FacePlugin}

// Target is one server to benchmark.
type Target struct {
	// URL is the base URL embed calls go to, e.g. http://127.0.0.1:8080.
	URL string
	// RerankURL is the base URL rerank calls go to; "" means URL. Against
	// TEI itself, the reranker is a second TEI.
	RerankURL string
	// Face picks the request shapes; "" means FaceTEI.
	Face Face
	// Token is sent as "Authorization: Bearer <Token>"; "" sends none.
	Token string
	// Model is the openai face's "model"; "" takes model_id from GET /info.
	Model string
	// Batch caps the texts of one documents call on the tei face, which
	// TEI refuses above its max_client_batch_size; 0 takes that limit from
	// GET /info (no cap when /info gives none). The other faces send all
	// documents in one call, as the plugin does.
	Batch int
}

// Validate checks what can be checked without calling the target.
func (t Target) Validate() error {
	if t.URL == "" {
		return errors.New("a target URL is required")
	}
	switch t.Face {
	case "", FaceTEI, FaceOpenAI, FacePlugin:
	default:
		return fmt.Errorf("unknown face %q: want tei, openai or plugin", t.Face)
	}
	if t.Batch < 0 {
		return fmt.Errorf("batch must be 0 (the target's limit) or more, got %d", t.Batch)
	}
	return nil
}

// StatusError is a non-2xx answer. Body is what the server sent, cut to
// maxShownBody bytes.
type StatusError struct {
	Method, URL string
	Status      int
	Body        string
}

// maxShownBody bounds the body quoted in an error message.
const maxShownBody = 512

func (e *StatusError) Error() string {
	body := strings.TrimSpace(e.Body)
	if body == "" {
		body = "(empty body)"
	}
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.URL, e.Status, body)
}

// client sends one target's requests and checks each answer's status and
// shape. It is safe for concurrent use.
type client struct {
	face    Face
	embed   *tei.Client
	rerank  *tei.Client
	model   string
	batch   int       // tei face: most texts per documents call; 0: no cap
	info    *tei.Info // the embed URL's /info; nil when it gave none
	infoErr error     // why info is nil
	rinfo   *tei.Info // the rerank URL's /info when it differs
	timeout time.Duration
}

// newClient reads the target's /info (best effort: the plugin face needs
// none) and settles the model and documents batch.
func newClient(ctx context.Context, t Target, hc *http.Client, timeout time.Duration) (*client, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	opts := []tei.Option{tei.WithHTTPClient(hc)}
	if t.Token != "" {
		opts = append(opts, tei.WithAPIKey(t.Token))
	}
	c := &client{face: t.Face, model: t.Model, batch: t.Batch, timeout: timeout}
	if c.face == "" {
		c.face = FaceTEI
	}
	var err error
	if c.embed, err = tei.NewClient(t.URL, opts...); err != nil {
		return nil, err
	}
	c.rerank = c.embed
	if t.RerankURL != "" && strings.TrimRight(t.RerankURL, "/") != c.embed.BaseURL() {
		if c.rerank, err = tei.NewClient(t.RerankURL, opts...); err != nil {
			return nil, err
		}
	}
	ictx, cancel := c.callContext(ctx)
	defer cancel()
	c.info, c.infoErr = c.embed.Info(ictx)
	if c.rerank != c.embed {
		if ri, err := c.rerank.Info(ictx); err == nil {
			c.rinfo = ri
		}
	}
	if c.face == FaceOpenAI && c.model == "" {
		if c.info == nil {
			return nil, fmt.Errorf("GET %s/info for the openai face's model: %w (set the model explicitly)", c.embed.BaseURL(), c.infoErr)
		}
		c.model = c.info.ModelID
	}
	if c.face == FaceTEI && c.batch == 0 && c.info != nil {
		c.batch = c.info.MaxClientBatchSize
	}
	return c, nil
}

func (c *client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

// calls is how many requests one iteration of s sends.
func (c *client) calls(s Scenario) int {
	switch s.Kind {
	case KindQueries:
		return len(s.Texts)
	case KindDocuments:
		if c.face == FaceTEI && c.batch > 0 {
			return (len(s.Texts) + c.batch - 1) / c.batch
		}
	}
	return 1
}

// iteration runs one iteration of s.
func (c *client) iteration(ctx context.Context, s Scenario) error {
	switch s.Kind {
	case KindQuery:
		q := s.Query
		if s.Cache == CacheMiss {
			q = unique(q)
		}
		return c.query(ctx, q)
	case KindQueries:
		for _, q := range s.Texts {
			if err := c.query(ctx, q); err != nil {
				return err
			}
		}
		return nil
	case KindDocuments:
		return c.documents(ctx, s.Texts)
	case KindRerank:
		return c.rerankPassages(ctx, s.Query, s.Texts)
	}
	return fmt.Errorf("unknown scenario kind %q", s.Kind)
}

// unique appends " #<nonce>" so no cache has seen the text.
func unique(text string) string {
	return fmt.Sprintf("%s #%08x", text, rand.Uint32())
}

// query embeds one query text.
func (c *client) query(ctx context.Context, text string) error {
	switch c.face {
	case FaceOpenAI:
		return c.openAIEmbed(ctx, []string{text})
	case FacePlugin:
		var out struct {
			Embedding json.RawMessage `json:"embedding"`
		}
		if err := c.post(ctx, c.embed, "/plugin/embed_query", map[string]any{"text": text}, &out); err != nil {
			return err
		}
		return checkVectors("/plugin/embed_query", []json.RawMessage{out.Embedding}, 1)
	}
	return c.teiEmbed(ctx, []string{text})
}

// documents embeds texts, in slices of the batch on the tei face.
func (c *client) documents(ctx context.Context, texts []string) error {
	switch c.face {
	case FaceOpenAI:
		return c.openAIEmbed(ctx, texts)
	case FacePlugin:
		var out struct {
			Embeddings []json.RawMessage `json:"embeddings"`
		}
		if err := c.post(ctx, c.embed, "/plugin/embed_documents", map[string]any{"texts": texts}, &out); err != nil {
			return err
		}
		return checkVectors("/plugin/embed_documents", out.Embeddings, len(texts))
	}
	size := len(texts)
	if c.batch > 0 {
		size = c.batch
	}
	for start := 0; start < len(texts); start += size {
		if err := c.teiEmbed(ctx, texts[start:min(start+size, len(texts))]); err != nil {
			return err
		}
	}
	return nil
}

// teiEmbed is POST /embed {"inputs": texts} → [[f32...], ...].
func (c *client) teiEmbed(ctx context.Context, texts []string) error {
	body, err := c.postRaw(ctx, c.embed, "/embed", map[string]any{"inputs": texts})
	if err != nil {
		return err
	}
	items, err := tei.SplitItems(body, nil)
	if err != nil {
		return fmt.Errorf("POST %s/embed: answer is not a list of vectors: %w", c.embed.BaseURL(), err)
	}
	vecs := make([]json.RawMessage, len(items))
	for i, it := range items {
		vecs[i] = it
	}
	return checkVectors("/embed", vecs, len(texts))
}

// openAIEmbed is POST /v1/embeddings {"input": texts, "model": m} →
// {"data": [{"embedding": [...], "index": i}, ...]}.
func (c *client) openAIEmbed(ctx context.Context, texts []string) error {
	var out struct {
		Data []struct {
			Embedding json.RawMessage `json:"embedding"`
			Index     int             `json:"index"`
		} `json:"data"`
	}
	if err := c.post(ctx, c.embed, "/v1/embeddings", map[string]any{"input": texts, "model": c.model}, &out); err != nil {
		return err
	}
	vecs := make([]json.RawMessage, len(out.Data))
	for i, d := range out.Data {
		if d.Index != i {
			return fmt.Errorf("/v1/embeddings: data[%d] has index %d: answers must be in input order", i, d.Index)
		}
		vecs[i] = d.Embedding
	}
	return checkVectors("/v1/embeddings", vecs, len(texts))
}

// rerankPassages scores passages against query in the face's shape.
func (c *client) rerankPassages(ctx context.Context, query string, passages []string) error {
	n := len(passages)
	switch c.face {
	case FaceOpenAI:
		var out struct {
			Results []struct {
				Index          *int     `json:"index"`
				RelevanceScore *float64 `json:"relevance_score"`
			} `json:"results"`
		}
		if err := c.post(ctx, c.rerank, "/v1/rerank", map[string]any{"query": query, "documents": passages}, &out); err != nil {
			return err
		}
		if len(out.Results) != n {
			return fmt.Errorf("/v1/rerank: want %d results, got %d", n, len(out.Results))
		}
		for i, r := range out.Results {
			if r.Index == nil || r.RelevanceScore == nil || *r.Index < 0 || *r.Index >= n {
				return fmt.Errorf("/v1/rerank: results[%d] lacks a valid index or relevance_score", i)
			}
		}
		return nil
	case FacePlugin:
		var out struct {
			Scores []float64 `json:"scores"`
			Order  []int     `json:"order"`
		}
		// k asks the sidecar to score every passage, as the plugin's
		// rerank(query, passages) does; by default it scores RERANK_K.
		req := map[string]any{"query": query, "passages": passages, "k": n}
		if err := c.post(ctx, c.rerank, "/plugin/rerank", req, &out); err != nil {
			return err
		}
		if len(out.Scores) != n || len(out.Order) < 1 || len(out.Order) > n {
			return fmt.Errorf("/plugin/rerank: want %d scores and 1 to %d order entries, got %d and %d", n, n, len(out.Scores), len(out.Order))
		}
		return nil
	}
	var out []struct {
		Index *int     `json:"index"`
		Score *float64 `json:"score"`
	}
	if err := c.post(ctx, c.rerank, "/rerank", map[string]any{"query": query, "texts": passages}, &out); err != nil {
		return err
	}
	if len(out) != n {
		return fmt.Errorf("/rerank: want %d ranks, got %d", n, len(out))
	}
	for i, r := range out {
		if r.Index == nil || r.Score == nil || *r.Index < 0 || *r.Index >= n {
			return fmt.Errorf("/rerank: rank %d lacks a valid index or score", i)
		}
	}
	return nil
}

// checkVectors checks that there are want embeddings, each a non-empty
// list of numbers or a base64 string.
func checkVectors(route string, vecs []json.RawMessage, want int) error {
	if len(vecs) != want {
		return fmt.Errorf("%s: want %d embeddings, got %d", route, want, len(vecs))
	}
	for i, v := range vecs {
		s := strings.TrimSpace(string(v))
		if len(s) < 3 || (s[0] != '[' && s[0] != '"') {
			return fmt.Errorf("%s: embedding %d is not a vector: %.40q", route, i, s)
		}
	}
	return nil
}

// post sends req as JSON and decodes the 2xx answer into out.
func (c *client) post(ctx context.Context, to *tei.Client, path string, req, out any) error {
	body, err := c.postRaw(ctx, to, path, req)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("POST %s%s: unexpected answer: %w", to.BaseURL(), path, err)
	}
	return nil
}

// postRaw sends req as JSON and returns the body of a 2xx answer; any other
// status is a *StatusError.
func (c *client) postRaw(ctx context.Context, to *tei.Client, path string, req any) ([]byte, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	resp, err := to.Do(ctx, http.MethodPost, path, b)
	if err != nil {
		if te, ok := errors.AsType[*tei.Error](err); ok {
			body := string(te.Body)
			if len(body) > maxShownBody {
				body = body[:maxShownBody] + "…"
			}
			return nil, &StatusError{Method: http.MethodPost, URL: to.BaseURL() + path, Status: te.Status, Body: body}
		}
		return nil, fmt.Errorf("POST %s%s: %w", to.BaseURL(), path, err)
	}
	return resp.Body, nil
}
