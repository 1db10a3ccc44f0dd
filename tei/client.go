// Package tei is a typed client for Hugging Face Text Embeddings Inference
// (TEI) 1.9.x over HTTP: its requests and answers, its errors, and a
// splitter for its answers. It uses the standard library only, so that the
// proxy does not pull in what launching TEI needs (see tei/launch).
package tei

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one TEI server. It is safe for concurrent use; connections
// are pooled and every response body is drained and closed, so a Client
// never leaks connections whatever TEI answers.
type Client struct {
	base   string
	hc     *http.Client
	apiKey string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client use hc instead of its own pooled client.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithAPIKey sends key as a bearer token, for TEI started with --api-key.
func WithAPIKey(key string) Option { return func(c *Client) { c.apiKey = key } }

// NewClient returns a client for the TEI server at baseURL
// (e.g. "http://127.0.0.1:3000").
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("tei: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tei: base URL %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{Transport: NewTransport()}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// BaseURL returns the server's base URL.
func (c *Client) BaseURL() string { return c.base }

// maxErrorBody bounds how much of an error body is kept.
const maxErrorBody = 64 << 10

// Response is a successful answer: its body and TEI's timing headers.
type Response struct {
	Body   []byte
	Header http.Header
}

// ComputeTokens returns TEI's x-compute-tokens header: the tokens the call
// ran through the model, or -1 when absent.
func (r *Response) ComputeTokens() int {
	n, err := strconv.Atoi(r.Header.Get("x-compute-tokens"))
	if err != nil {
		return -1
	}
	return n
}

// Stages returns TEI's x-queue-time and x-inference-time headers (per-input
// averages, whole milliseconds): how long the call's inputs waited in TEI's
// queue and how long their batches ran. ok is false when either is absent.
func (r *Response) Stages() (queue, inference time.Duration, ok bool) {
	q, err1 := strconv.ParseFloat(r.Header.Get("x-queue-time"), 64)
	i, err2 := strconv.ParseFloat(r.Header.Get("x-inference-time"), 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return time.Duration(q * float64(time.Millisecond)), time.Duration(i * float64(time.Millisecond)), true
}

// Do sends body (JSON) to TEI's path with the given method and returns the
// successful answer, or an *Error for a non-2xx status, or a
// *TransportError when TEI gave no answer.
func (c *Client) Do(ctx context.Context, method, path string, body []byte) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("tei: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, classifyTransport(ctx, err)
	}
	defer func() {
		// Drain what is left so the connection goes back to the pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if rerr != nil {
			return nil, classifyTransport(ctx, rerr)
		}
		return nil, parseError(resp.StatusCode, resp.Header, b, time.Now())
	}
	b, err := readBody(resp)
	if err != nil {
		return nil, classifyTransport(ctx, err)
	}
	return &Response{Body: b, Header: resp.Header}, nil
}

// readBody reads a response body in one allocation when its length is known.
func readBody(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n < 1<<31 {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(resp.Body)
}

// postJSON marshals req and posts it to path.
func (c *Client) postJSON(ctx context.Context, path string, req any) (*Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("tei: encoding %s request: %w", path, err)
	}
	return c.Do(ctx, http.MethodPost, path, b)
}

// decode unmarshals a successful response, reporting a malformed answer as
// a transport failure of kind KindOther.
func decode(path string, r *Response, v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return &TransportError{Kind: KindOther, Err: fmt.Errorf("decoding %s response: %w", path, err)}
	}
	return nil
}

// Health returns nil when TEI's /health answers 200.
func (c *Client) Health(ctx context.Context) error {
	_, err := c.Do(ctx, http.MethodGet, "/health", nil)
	return err
}

// Info reads TEI's /info.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	r, err := c.Do(ctx, http.MethodGet, "/info", nil)
	if err != nil {
		return nil, err
	}
	var info Info
	if err := decode("/info", r, &info); err != nil {
		return nil, err
	}
	info.Raw = r.Body
	return &info, nil
}

// Embed calls /embed. The answer holds each input's vector as TEI's own JSON
// bytes; call Vectors to decode them.
func (c *Client) Embed(ctx context.Context, req EmbedRequest) (*Embeddings, error) {
	return c.embeddings(ctx, "/embed", req)
}

// EmbedSparse calls /embed_sparse (SPLADE models). Each item is a JSON list
// of {"index","value"} objects.
func (c *Client) EmbedSparse(ctx context.Context, req EmbedRequest) (*Embeddings, error) {
	req.Normalize, req.Dimensions = nil, nil // not part of the sparse route
	return c.embeddings(ctx, "/embed_sparse", req)
}

func (c *Client) embeddings(ctx context.Context, path string, req EmbedRequest) (*Embeddings, error) {
	r, err := c.postJSON(ctx, path, req)
	if err != nil {
		return nil, err
	}
	items, err := SplitItems(r.Body, nil)
	if err != nil {
		return nil, &TransportError{Kind: KindOther, Err: fmt.Errorf("%s response: %w", path, err)}
	}
	if len(items) != len(req.Inputs) {
		return nil, &TransportError{Kind: KindOther, Err: fmt.Errorf("%s response: %d items for %d inputs", path, len(items), len(req.Inputs))}
	}
	return &Embeddings{Items: items, Response: r}, nil
}

// Rerank calls /rerank. Results come sorted by score, descending, as TEI
// sends them.
func (c *Client) Rerank(ctx context.Context, req RerankRequest) ([]Rank, *Response, error) {
	r, err := c.postJSON(ctx, "/rerank", req)
	if err != nil {
		return nil, nil, err
	}
	return decodeRanks(r, len(req.Texts))
}

// RerankBody posts body, a /rerank request of n texts the caller encoded
// itself, and decodes the ranks as Rerank does.
func (c *Client) RerankBody(ctx context.Context, body []byte, n int) ([]Rank, *Response, error) {
	r, err := c.Do(ctx, http.MethodPost, "/rerank", body)
	if err != nil {
		return nil, nil, err
	}
	return decodeRanks(r, n)
}

// decodeRanks reads a /rerank answer for n texts.
func decodeRanks(r *Response, n int) ([]Rank, *Response, error) {
	ranks, err := ParseRanks(r.Body, n)
	if err != nil {
		return nil, nil, &TransportError{Kind: KindOther, Err: fmt.Errorf("/rerank response: %w", err)}
	}
	return ranks, r, nil
}

// ParseRanks reads a /rerank answer for n texts: every index in range.
func ParseRanks(body []byte, n int) ([]Rank, error) {
	var ranks []Rank
	if err := json.Unmarshal(body, &ranks); err != nil {
		return nil, err
	}
	for _, rk := range ranks {
		if rk.Index < 0 || rk.Index >= n {
			return nil, fmt.Errorf("index %d out of range", rk.Index)
		}
	}
	return ranks, nil
}

// Tokenize calls /tokenize.
func (c *Client) Tokenize(ctx context.Context, req TokenizeRequest) ([][]Token, error) {
	r, err := c.postJSON(ctx, "/tokenize", req)
	if err != nil {
		return nil, err
	}
	var toks [][]Token
	if err := decode("/tokenize", r, &toks); err != nil {
		return nil, err
	}
	return toks, nil
}

// OpenAIEmbeddings calls TEI's OpenAI-style /v1/embeddings route.
func (c *Client) OpenAIEmbeddings(ctx context.Context, req OpenAIRequest) (*OpenAIResponse, error) {
	r, err := c.postJSON(ctx, "/v1/embeddings", req)
	if err != nil {
		return nil, err
	}
	var out OpenAIResponse
	if err := decode("/v1/embeddings", r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// errNotArray is returned by SplitItems for an answer that is not a JSON list.
var errNotArray = errors.New("not a JSON list")
