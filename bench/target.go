package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

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
	// URL is the base URL embed calls go to, e.g. http://127.0.0.1:8080;
	// host:port and a bare host mean http://.
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
	// Batch caps the texts of one embed or rerank call; a row with more is
	// split into concurrent calls, as the sidecar splits them. 0 takes
	// TEI's max_client_batch_size from GET /info, above which TEI answers
	// 422, and leaves calls to the sidecar whole: it splits them itself.
	Batch int
	// FoundVia is the sidecar whose GET /status named this TEI; a 401 from
	// it then explains how to share TEI's API key.
	FoundVia string
	// PoolURLs are every replica of URL's pool, URL among them: the load
	// scenarios pin client i to PoolURLs[i mod n], as clients balancing
	// by themselves would. Empty means URL alone.
	PoolURLs []string
}

// Validate checks what can be checked without calling the target.
func (t Target) Validate() error {
	if t.URL == "" {
		return errors.New("a target URL is required")
	}
	for _, u := range append([]string{t.URL, t.RerankURL}, t.PoolURLs...) {
		if u == "" {
			continue
		}
		if _, err := NormalizeURL(u); err != nil {
			return err
		}
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
	face   Face
	embed  *tei.Client
	rerank *tei.Client
	// pool are the embed clients of Target.PoolURLs; nil with one URL.
	pool []*tei.Client
	// noCache is embed asking the sidecar to skip its cache lookups
	// (Cache-Control: no-cache); nil when the target is not the sidecar.
	noCache *tei.Client
	model   string
	// batch and rerankBatch are the most texts of one embed call and the
	// most passages of one rerank call; 0: no cap.
	batch, rerankBatch int
	// batchFrom says where the caps came from, for the rows' notes.
	batchFrom string
	info      *tei.Info // the embed URL's /info; nil when it gave none
	infoErr   error     // why info is nil
	rinfo     *tei.Info // the rerank URL's /info when it differs
	// sidecar is true when GET /status answered as the sidecar's does (or
	// the face is the plugin's, which only the sidecar serves): its
	// answers may come from a cache, and it splits batches itself.
	sidecar bool
	// simulator names the TEI simulator behind the target; "" for TEI.
	simulator string
	// noRerank says why rerank rows cannot run here; "" when they can.
	noRerank string
	foundVia string // see Target.FoundVia
	keySent  bool
	timeout  time.Duration
}

// newClient reads the target's /info (best effort: the plugin face needs
// none) and /status, and settles the model, the batch caps and whether
// rerank rows can run.
func newClient(ctx context.Context, t Target, hc *http.Client, timeout time.Duration) (*client, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	opts := []tei.Option{tei.WithHTTPClient(hc)}
	if t.Token != "" {
		opts = append(opts, tei.WithAPIKey(t.Token))
	}
	c := &client{face: t.Face, model: t.Model, timeout: timeout, foundVia: t.FoundVia, keySent: t.Token != ""}
	if c.face == "" {
		c.face = FaceTEI
	}
	embedURL, _ := NormalizeURL(t.URL)
	var err error
	if c.embed, err = tei.NewClient(embedURL, opts...); err != nil {
		return nil, err
	}
	c.rerank = c.embed
	if t.RerankURL != "" {
		rerankURL, _ := NormalizeURL(t.RerankURL)
		if rerankURL != c.embed.BaseURL() {
			if c.rerank, err = tei.NewClient(rerankURL, opts...); err != nil {
				return nil, err
			}
		}
	}
	ictx, cancel := c.callContext(ctx)
	defer cancel()
	c.info, c.infoErr = c.embed.Info(ictx)
	if unauthorized(c.infoErr) {
		// Every call would meet the same 401.
		return nil, c.explain(fmt.Errorf("GET %s/info: %w", c.embed.BaseURL(), c.infoErr))
	}
	if c.rerank != c.embed {
		ri, err := c.rerank.Info(ictx)
		if unauthorized(err) {
			return nil, c.explain(fmt.Errorf("GET %s/info: %w", c.rerank.BaseURL(), err))
		}
		c.rinfo = ri
	}
	c.sidecar = c.face == FacePlugin || isSidecar(ictx, c.embed)
	c.simulator = simulatorOf(c.info)
	if c.sidecar {
		nc := &http.Client{Transport: headerTransport{next: transportOf(hc), key: "Cache-Control", value: "no-cache"}, Timeout: hc.Timeout}
		if c.noCache, err = tei.NewClient(c.embed.BaseURL(), append(slices.Clone(opts), tei.WithHTTPClient(nc))...); err != nil {
			return nil, err
		}
	}
	poolBatch, err := c.connectPool(ictx, t.PoolURLs, opts)
	if err != nil {
		return nil, err
	}
	if c.face == FaceOpenAI && c.model == "" {
		if c.info == nil {
			return nil, fmt.Errorf("GET %s/info for the openai face's model: %w (set the model explicitly)", c.embed.BaseURL(), c.infoErr)
		}
		c.model = c.info.ModelID
	}
	switch {
	case t.Batch > 0:
		c.batch, c.rerankBatch, c.batchFrom = t.Batch, t.Batch, "--batch"
	case c.sidecar:
		// The sidecar splits what TEI would refuse.
	default:
		c.batchFrom = "its max_client_batch_size"
		if c.info != nil {
			c.batch = c.info.MaxClientBatchSize
		}
		if poolBatch > 0 && (c.batch == 0 || poolBatch < c.batch) {
			c.batch = poolBatch
		}
		switch {
		case c.rinfo != nil:
			c.rerankBatch = c.rinfo.MaxClientBatchSize
		case c.rerank == c.embed:
			c.rerankBatch = c.batch
		}
	}
	// TEI serving an embedding model answers /rerank with an error; the
	// sidecar's /info describes its embedding model whatever its reranker.
	if !c.sidecar && c.rerank == c.embed && c.info != nil {
		if k := c.info.ModelType.Kind(); k != "" && k != tei.KindReranker {
			c.noRerank = fmt.Sprintf("%s serves %s, a%s %s model (GET /info's model_type), not a reranker, and no separate rerank URL was given",
				c.embed.BaseURL(), c.info.ModelID, article(k), k)
		}
	}
	return c, nil
}

// connectPool makes a client for each of urls but the target's own, and
// returns the smallest max_client_batch_size their /info gives (0: none),
// so a pinned client's calls fit whichever replica it is pinned to.
func (c *client) connectPool(ctx context.Context, urls []string, opts []tei.Option) (int, error) {
	if len(urls) < 2 {
		return 0, nil
	}
	batch := 0
	for _, raw := range urls {
		u, _ := NormalizeURL(raw)
		if u == c.embed.BaseURL() {
			c.pool = append(c.pool, c.embed)
			continue
		}
		pc, err := tei.NewClient(u, opts...)
		if err != nil {
			return 0, err
		}
		c.pool = append(c.pool, pc)
		info, err := pc.Info(ctx)
		if err != nil {
			return 0, c.explain(fmt.Errorf("GET %s/info: %w", u, err))
		}
		if n := info.MaxClientBatchSize; n > 0 && (batch == 0 || n < batch) {
			batch = n
		}
	}
	return batch, nil
}

// forLoad is the client a load scenario's worker w calls through: the
// sidecar without its cache lookups, or the replica of the pool w is
// pinned to.
func (c *client) forLoad(w int) *client {
	lc := *c
	switch {
	case c.noCache != nil:
		lc.embed = c.noCache
	case len(c.pool) > 0:
		lc.embed = c.pool[w%len(c.pool)]
	}
	return &lc
}

// headerTransport sets one header on every request it sends.
type headerTransport struct {
	next       http.RoundTripper
	key, value string
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the request it is given.
	r = r.Clone(r.Context())
	r.Header.Set(t.key, t.value)
	return t.next.RoundTrip(r)
}

func transportOf(hc *http.Client) http.RoundTripper {
	if hc.Transport != nil {
		return hc.Transport
	}
	return http.DefaultTransport
}

func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "n"
	}
	return ""
}

// isSidecar asks GET /status, which TEI lacks; the sidecar's answer is an
// object with its pools (or, before pools, its caches).
func isSidecar(ctx context.Context, c *tei.Client) bool {
	resp, err := c.Do(ctx, http.MethodGet, "/status", nil)
	if err != nil {
		return false
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(resp.Body, &doc) != nil {
		return false
	}
	_, pools := doc["pools"]
	_, caches := doc["caches"]
	return pools || caches
}

// SimulatorField is the top-level /info field by which tests/teisim says
// it is not TEI; TEI never sends it.
const SimulatorField = "simulator"

// simulatorOf names the simulator behind info, or "" for TEI. Simulators
// older than the field say so in docker_label only.
func simulatorOf(info *tei.Info) string {
	if info == nil {
		return ""
	}
	var doc struct {
		Simulator   string  `json:"simulator"`
		DockerLabel *string `json:"docker_label"`
	}
	if json.Unmarshal(info.Raw, &doc) != nil {
		return ""
	}
	if doc.Simulator != "" {
		return doc.Simulator
	}
	if doc.DockerLabel != nil && *doc.DockerLabel == "teisim" {
		return "teisim"
	}
	return ""
}

// explain adds the API key advice to a 401 from a TEI found through the
// sidecar.
func (c *client) explain(err error) error {
	return explainAuth(err, c.foundVia, c.keySent)
}

func (c *client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

// chunks is how many calls n texts take under limit (0: no limit).
func chunks(n, limit int) int {
	if limit <= 0 || n <= limit {
		return 1
	}
	return (n + limit - 1) / limit
}

// calls is how many requests one iteration of s sends, and the cap the
// texts of each call were split at (0 when not split).
func (c *client) calls(s Scenario) (calls, splitAt int) {
	switch s.Kind {
	case KindQueries:
		return len(s.Texts), 0
	case KindDocuments:
		if n := chunks(len(s.Texts), c.batch); n > 1 {
			return n, c.batch
		}
	case KindRerank:
		if n := chunks(len(s.Texts), c.rerankBatch); n > 1 {
			return n, c.rerankBatch
		}
	}
	return 1, 0
}

// iteration runs one iteration of s, counting the answers' X-Cache
// headers in tl (which may be nil).
func (c *client) iteration(ctx context.Context, s Scenario, tl *tally) error {
	texts := s.Texts
	q := s.Query
	if s.Unique {
		q = unique(q)
		texts = make([]string, len(s.Texts))
		for i, t := range s.Texts {
			texts[i] = unique(t)
		}
	}
	switch s.Kind {
	case KindQuery:
		return c.query(ctx, q, tl)
	case KindQueries:
		for _, q := range texts {
			if err := c.query(ctx, q, tl); err != nil {
				return err
			}
		}
		return nil
	case KindDocuments:
		return c.documents(ctx, texts, tl)
	case KindRerank:
		return c.rerankPassages(ctx, q, texts, tl)
	}
	return fmt.Errorf("unknown scenario kind %q", s.Kind)
}

// unique appends " #<nonce>" so no cache has seen the text.
func unique(text string) string {
	return fmt.Sprintf("%s #%08x", text, rand.Uint32())
}

// split calls each on the slices of n items of at most limit (0: one
// call), concurrently, as the sidecar sends the chunks of a batch TEI
// would refuse. The first error cancels the other calls.
func split(ctx context.Context, n, limit int, each func(ctx context.Context, lo, hi int) error) error {
	if chunks(n, limit) == 1 {
		return each(ctx, 0, n)
	}
	g, gctx := errgroup.WithContext(ctx)
	for lo := 0; lo < n; lo += limit {
		hi := min(lo+limit, n)
		g.Go(func() error { return each(gctx, lo, hi) })
	}
	return g.Wait()
}

// query embeds one query text.
func (c *client) query(ctx context.Context, text string, tl *tally) error {
	switch c.face {
	case FaceOpenAI:
		return c.openAIEmbed(ctx, []string{text}, tl)
	case FacePlugin:
		var out struct {
			Embedding json.RawMessage `json:"embedding"`
		}
		if err := c.post(ctx, c.embed, "/plugin/embed_query", map[string]any{"text": text}, &out, tl); err != nil {
			return err
		}
		return checkVectors("/plugin/embed_query", []json.RawMessage{out.Embedding}, 1)
	}
	return c.teiEmbed(ctx, []string{text}, tl)
}

// documents embeds texts, in concurrent slices of the batch cap.
func (c *client) documents(ctx context.Context, texts []string, tl *tally) error {
	return split(ctx, len(texts), c.batch, func(ctx context.Context, lo, hi int) error {
		part := texts[lo:hi]
		switch c.face {
		case FaceOpenAI:
			return c.openAIEmbed(ctx, part, tl)
		case FacePlugin:
			var out struct {
				Embeddings []json.RawMessage `json:"embeddings"`
			}
			if err := c.post(ctx, c.embed, "/plugin/embed_documents", map[string]any{"texts": part}, &out, tl); err != nil {
				return err
			}
			return checkVectors("/plugin/embed_documents", out.Embeddings, len(part))
		}
		return c.teiEmbed(ctx, part, tl)
	})
}

// teiEmbed is POST /embed {"inputs": texts} → [[f32...], ...].
func (c *client) teiEmbed(ctx context.Context, texts []string, tl *tally) error {
	body, err := c.postRaw(ctx, c.embed, "/embed", map[string]any{"inputs": texts}, tl)
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
func (c *client) openAIEmbed(ctx context.Context, texts []string, tl *tally) error {
	var out struct {
		Data []struct {
			Embedding json.RawMessage `json:"embedding"`
			Index     int             `json:"index"`
		} `json:"data"`
	}
	if err := c.post(ctx, c.embed, "/v1/embeddings", map[string]any{"input": texts, "model": c.model}, &out, tl); err != nil {
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

// rerankPassages scores passages against query in the face's shape, in
// concurrent slices of the rerank cap.
func (c *client) rerankPassages(ctx context.Context, query string, passages []string, tl *tally) error {
	return split(ctx, len(passages), c.rerankBatch, func(ctx context.Context, lo, hi int) error {
		return c.rerankCall(ctx, query, passages[lo:hi], tl)
	})
}

// rerankCall is one rerank request.
func (c *client) rerankCall(ctx context.Context, query string, passages []string, tl *tally) error {
	n := len(passages)
	switch c.face {
	case FaceOpenAI:
		var out struct {
			Results []struct {
				Index          *int     `json:"index"`
				RelevanceScore *float64 `json:"relevance_score"`
			} `json:"results"`
		}
		if err := c.post(ctx, c.rerank, "/v1/rerank", map[string]any{"query": query, "documents": passages}, &out, tl); err != nil {
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
		if err := c.post(ctx, c.rerank, "/plugin/rerank", req, &out, tl); err != nil {
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
	if err := c.post(ctx, c.rerank, "/rerank", map[string]any{"query": query, "texts": passages}, &out, tl); err != nil {
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
func (c *client) post(ctx context.Context, to *tei.Client, path string, req, out any, tl *tally) error {
	body, err := c.postRaw(ctx, to, path, req, tl)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("POST %s%s: unexpected answer: %w", to.BaseURL(), path, err)
	}
	return nil
}

// postRaw sends req as JSON and returns the body of a 2xx answer, counting
// its X-Cache header in tl; any other status is a *StatusError.
func (c *client) postRaw(ctx context.Context, to *tei.Client, path string, req any, tl *tally) ([]byte, error) {
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
	tl.record(resp.Header.Get(CacheHeader))
	return resp.Body, nil
}
