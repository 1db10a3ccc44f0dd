// Package proxy serves TEI's API, OpenAI's embeddings API, a Cohere-style
// rerank and the retrieval plugin's own calls in front of one or two TEI
// servers, through a per-text cache with coalescing, batch splitting,
// admission control and a circuit breaker.
package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Config is the proxy's whole configuration. DefaultConfig gives the
// defaults; each field says what its zero value means.
type Config struct {
	// EmbedURL is the embedding TEI's base URL (TEI_EMBED_URL). Required.
	EmbedURL string
	// RerankURL is the reranking TEI's base URL (TEI_RERANK_URL). Empty
	// sends rerank calls to EmbedURL, which answers 424 unless it serves a
	// reranker.
	RerankURL string
	// APIKey is sent to TEI as a bearer token, for TEI started with
	// --api-key (TEI_API_KEY). Empty sends none.
	APIKey string

	// CacheSize is the number of per-text embeddings kept
	// (EMBEDDING_CACHE_SIZE, default 2000). Zero disables the cache.
	CacheSize int
	// CacheBytes bounds the cache's memory (CACHE_MAX_BYTES, default 256 MiB).
	// Zero means no byte bound.
	CacheBytes int64
	// RerankCacheSize is the number of whole rerank answers kept
	// (RERANK_CACHE_SIZE, default 1000). Zero disables it.
	RerankCacheSize int

	// RequestTimeout is the deadline of one request, retries included
	// (REQUEST_TIMEOUT, default 30s). Zero means no deadline.
	RequestTimeout time.Duration
	// BodyLimit is the largest request body accepted, in bytes
	// (PAYLOAD_LIMIT, default 2000000 as in TEI). Zero means TEI's default.
	BodyLimit int64
	// QueueInputs bounds how many inputs may wait for an upstream permit
	// beyond TEI's max_concurrent_requests (QUEUE_INPUTS, default 4096).
	// Zero means no waiting: excess gets 429 at once, as TEI itself does.
	QueueInputs int

	// BreakerFailures is how many consecutive backend failures open an
	// upstream's circuit breaker (BREAKER_FAILURES, default 5). Zero means
	// the default.
	BreakerFailures int
	// BreakerOpenFor is how long an open breaker fails fast before letting
	// a probe through (BREAKER_OPEN_FOR, default 10s). Zero means the default.
	BreakerOpenFor time.Duration

	// BearerTokens, when not empty, are the tokens accepted in
	// "Authorization: Bearer" on every model route (BEARER_TOKEN, a
	// comma-separated list as in the plugin). Empty means no auth.
	BearerTokens []string
	// MetricsAuth makes /metrics require a bearer token too
	// (METRICS_AUTH, default false).
	MetricsAuth bool
	// ModelAliases are extra model names accepted for the embedding model
	// on the OpenAI and Cohere faces (MODEL_ALIASES, comma-separated).
	// Empty accepts only the served model's own id and served name.
	ModelAliases []string

	// RerankEnable turns reranking on for the plugin's rerank call
	// (RERANK_ENABLE, default true). False returns the first final_n
	// passages in their given order.
	RerankEnable bool
	// RerankK is how many leading passages the plugin's rerank call scores
	// by default (RERANK_K, default 5). Zero means the default.
	RerankK int
	// RerankFinalN is how many passages it keeps by default
	// (RERANK_FINAL_N, default 3, at least 1). Zero means the default.
	RerankFinalN int

	// Transport carries the calls to TEI. Nil means a pooled HTTP
	// transport; benchmarks set an in-process one to measure the proxy alone.
	Transport http.RoundTripper

	// StartupTimeout bounds the wait for TEI's /info at start, while TEI
	// downloads and loads its model (STARTUP_TIMEOUT, default 10m). Zero
	// means wait until stopped.
	StartupTimeout time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		CacheSize:       2000,
		CacheBytes:      256 << 20,
		RerankCacheSize: 1000,
		RequestTimeout:  30 * time.Second,
		BodyLimit:       2_000_000,
		QueueInputs:     4096,
		BreakerFailures: 5,
		BreakerOpenFor:  10 * time.Second,
		StartupTimeout:  10 * time.Minute,
		RerankEnable:    true,
		RerankK:         5,
		RerankFinalN:    3,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.EmbedURL == "" {
		return errors.New("TEI_EMBED_URL is required: the embedding TEI's base URL, e.g. http://127.0.0.1:3000")
	}
	if err := checkURL("TEI_EMBED_URL", c.EmbedURL); err != nil {
		return err
	}
	if c.RerankURL != "" {
		if err := checkURL("TEI_RERANK_URL", c.RerankURL); err != nil {
			return err
		}
	}
	switch {
	case c.CacheSize < 0:
		return fmt.Errorf("EMBEDDING_CACHE_SIZE must be 0 (off) or more, got %d", c.CacheSize)
	case c.CacheBytes < 0:
		return fmt.Errorf("CACHE_MAX_BYTES must be 0 (no bound) or more, got %d", c.CacheBytes)
	case c.RerankCacheSize < 0:
		return fmt.Errorf("RERANK_CACHE_SIZE must be 0 (off) or more, got %d", c.RerankCacheSize)
	case c.RequestTimeout < 0:
		return fmt.Errorf("REQUEST_TIMEOUT must not be negative, got %s", c.RequestTimeout)
	case c.BodyLimit < 0:
		return fmt.Errorf("PAYLOAD_LIMIT must not be negative, got %d", c.BodyLimit)
	case c.QueueInputs < 0:
		return fmt.Errorf("QUEUE_INPUTS must be 0 (no waiting) or more, got %d", c.QueueInputs)
	case c.BreakerFailures < 0:
		return fmt.Errorf("BREAKER_FAILURES must not be negative, got %d", c.BreakerFailures)
	case c.BreakerOpenFor < 0:
		return fmt.Errorf("BREAKER_OPEN_FOR must not be negative, got %s", c.BreakerOpenFor)
	case c.RerankK < 0:
		return fmt.Errorf("RERANK_K must be at least 1, got %d", c.RerankK)
	case c.RerankFinalN < 0:
		return fmt.Errorf("RERANK_FINAL_N must be at least 1, got %d", c.RerankFinalN)
	}
	for _, t := range c.BearerTokens {
		if t == "" {
			return errors.New("BEARER_TOKEN has an empty token (check for a stray comma)")
		}
	}
	return nil
}

func checkURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q is not an http(s)://host[:port] URL", name, raw)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BodyLimit == 0 {
		c.BodyLimit = d.BodyLimit
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = d.BreakerFailures
	}
	if c.BreakerOpenFor == 0 {
		c.BreakerOpenFor = d.BreakerOpenFor
	}
	if c.RerankK == 0 {
		c.RerankK = d.RerankK
	}
	if c.RerankFinalN == 0 {
		c.RerankFinalN = d.RerankFinalN
	}
	return c
}
