// Package proxy serves TEI's API, OpenAI's embeddings API, Cohere's and
// Jina's embed and rerank, and the retrieval plugin's own calls in front of
// pools of TEI replicas, through a per-text cache, with coalescing, a scheduler that
// batches and prioritises work, batch splitting, failover and a circuit
// breaker per replica.
package proxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tei-sidecar/tei-sidecar/sharedcache"
)

// Config is the proxy's whole configuration. DefaultConfig gives the
// defaults, the one place they are written; each field says what its zero
// value means.
type Config struct {
	// EmbedURLs are the embedding model's TEI replicas (TEI_EMBED_URL, a
	// comma-separated list of base URLs). At least one is required. An
	// entry dns+http://name:port stands for every address name resolves
	// to, resolved again every DiscoveryInterval (a Kubernetes headless
	// Service, say).
	EmbedURLs []string
	// RerankURLs are the reranker's replicas (TEI_RERANK_URL). Empty sends
	// rerank calls to the embedding pool, which answers 424 unless its
	// model is a reranker.
	RerankURLs []string
	// DiscoveryInterval is how often dns+ entries are resolved again
	// (TEI_DISCOVERY_INTERVAL, default 10s). Zero means the default.
	DiscoveryInterval time.Duration
	// Resolver resolves dns+ entries. Nil means net.DefaultResolver; tests
	// set their own.
	Resolver Resolver
	// APIKey is sent to TEI as a bearer token, for TEI started with
	// --api-key (TEI_API_KEY). Empty sends none.
	APIKey string
	// UpstreamPayloadLimit is the largest request body sent to TEI, in
	// bytes (TEI_PAYLOAD_LIMIT, default 2000000, TEI's --payload-limit
	// default). Batches are split to stay under it; a replica answering
	// 413 lowers its own limit. Zero means the default.
	UpstreamPayloadLimit int64

	// Shared is the second cache layer on Redis or Valkey, shared by every
	// sidecar pointed at it (CACHE_REDIS_URL and the CACHE_REDIS_…
	// settings). Its URL empty means none: nothing changes.
	Shared sharedcache.Config

	// CacheSize is the number of per-text embeddings kept
	// (EMBEDDING_CACHE_SIZE, default 2000). Zero disables the cache.
	CacheSize int
	// CacheBytes bounds the embedding cache's memory (CACHE_MAX_BYTES,
	// default 256 MiB). Zero means no byte bound.
	CacheBytes int64
	// RerankCacheSize is the number of whole rerank answers kept
	// (RERANK_CACHE_SIZE, default 1000). Zero disables it.
	RerankCacheSize int
	// RerankCacheBytes bounds the rerank cache's memory
	// (RERANK_CACHE_MAX_BYTES, default 64 MiB). Zero means no byte bound.
	RerankCacheBytes int64

	// RequestTimeout is the deadline of one request, retries included
	// (REQUEST_TIMEOUT, default 30s). Zero means no deadline.
	RequestTimeout time.Duration
	// BodyLimit is the largest request body accepted, in bytes
	// (PAYLOAD_LIMIT, default 2000000 as in TEI). Zero means the default.
	BodyLimit int64
	// QueueInputs bounds how many inputs may wait in the scheduler
	// (QUEUE_INPUTS, default 4096). A request is always let in when
	// nothing waits, however large; beyond the bound, others get 429.
	// Zero means no waiting: what TEI cannot take at once gets 429, as TEI
	// itself answers.
	QueueInputs int
	// PriorityInteractiveMaxInputs is the most inputs of a request that
	// goes ahead of bulk work as a query (PRIORITY_INTERACTIVE_MAX_INPUTS,
	// default 4). Zero means the default.
	PriorityInteractiveMaxInputs int
	// PriorityAllowRaise lets a request's "X-Priority: interactive" raise
	// it above bulk (PRIORITY_ALLOW_RAISE, default false: X-Priority can
	// only lower a request to bulk).
	PriorityAllowRaise bool
	// BulkShare is the least share of TEI calls bulk work gets while
	// queries wait, in (0, 1] (PRIORITY_BULK_SHARE, default 0.2), so ingest
	// is never starved. Zero means the default.
	BulkShare float64

	// AdaptiveConcurrency keeps only as many inputs in flight to each
	// replica as TEI needs to stay busy, from measured latency, within
	// TEI's max_concurrent_requests (ADAPTIVE_CONCURRENCY, default true);
	// the rest wait in the scheduler, where queries go first. False keeps
	// up to max_concurrent_requests in flight.
	AdaptiveConcurrency bool

	// BreakerFailures is how many consecutive failures of a replica open
	// its circuit breaker (BREAKER_FAILURES, default 5). Zero means the
	// default.
	BreakerFailures int
	// BreakerOpenFor is how long an open breaker fails fast before letting
	// a probe through (BREAKER_OPEN_FOR, default 10s). Zero means the
	// default.
	BreakerOpenFor time.Duration

	// BearerTokens, when not empty, are the tokens accepted in
	// "Authorization: Bearer" on every model route (BEARER_TOKEN, a
	// comma-separated list as in the plugin). Empty means no auth.
	BearerTokens []string
	// MetricsAuth makes /metrics require a bearer token too
	// (METRICS_AUTH, default false).
	MetricsAuth bool
	// ModelAliases are extra names accepted for the embedding model
	// (MODEL_ALIASES, comma-separated): the older spelling of
	// EmbeddingModelAliases, merged with it. It no longer names the
	// reranker, so that an embedding alias (text-embedding-ada-002, say)
	// is never accepted by a rerank call. Empty adds none.
	ModelAliases []string
	// EmbeddingModelAliases are extra names the embedding faces (OpenAI,
	// Cohere embed) accept for the embedding model and GET /v1/models
	// lists (EMBEDDING_MODEL_ALIASES, comma-separated). Empty accepts only
	// the model's own id and served name: a client that believes it calls
	// another model must not silently get this one's vectors.
	EmbeddingModelAliases []string
	// RerankModelAliases are the same for the reranker, on the Cohere and
	// Jina rerank faces (RERANK_MODEL_ALIASES, comma-separated).
	RerankModelAliases []string
	// ModelAcceptAny accepts any model name, and a missing one, on every
	// face, as TEI's own /v1/embeddings does (MODEL_ACCEPT_ANY, default
	// false).
	ModelAcceptAny bool
	// InputTypePrompts maps Cohere's input_type values to the names of the
	// embedding model's prompts, sent to TEI as prompt_name
	// (INPUT_TYPE_PROMPTS, e.g. search_query=query,search_document=passage).
	// An input_type not in the map is accepted and ignored; empty ignores
	// every one, right for models without prompts (bge-m3).
	InputTypePrompts map[string]string

	// CORSAllowOrigins are the browser origins allowed to call the
	// sidecar (CORS_ALLOW_ORIGIN, comma-separated, or * for any), as TEI's
	// --cors-allow-origin. Empty, the default, sends no CORS headers at
	// all, unlike TEI (which allows any origin when the flag is absent):
	// the sidecar fronts a private model, often without a token, and a web
	// page a user happens to visit must not be able to use it.
	CORSAllowOrigins []string

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

	// TracerProvider traces requests, Redis round trips and TEI calls, and
	// sends TEI the trace context. Nil means no tracing (serve sets one up
	// from the standard OTEL_* variables when they name an exporter).
	TracerProvider trace.TracerProvider
	// AccessLog writes one line per API request (ACCESS_LOG, default
	// true): route, status, duration, inputs, cache hits, upstream time,
	// request and trace ids; never a text, a vector or a token.
	AccessLog bool

	// StartupTimeout bounds Connect's wait for a ready replica of every
	// pool, while TEI downloads and loads its model (STARTUP_TIMEOUT,
	// default 10m). Zero means wait until stopped.
	StartupTimeout time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		UpstreamPayloadLimit:         2_000_000,
		DiscoveryInterval:            10 * time.Second,
		Shared:                       sharedcache.DefaultConfig(),
		CacheSize:                    2000,
		CacheBytes:                   256 << 20,
		RerankCacheSize:              1000,
		RerankCacheBytes:             64 << 20,
		RequestTimeout:               30 * time.Second,
		BodyLimit:                    2_000_000,
		QueueInputs:                  4096,
		PriorityInteractiveMaxInputs: 4,
		BulkShare:                    0.2,
		AdaptiveConcurrency:          true,
		AccessLog:                    true,
		BreakerFailures:              5,
		BreakerOpenFor:               10 * time.Second,
		StartupTimeout:               10 * time.Minute,
		RerankEnable:                 true,
		RerankK:                      5,
		RerankFinalN:                 3,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if len(c.EmbedURLs) == 0 {
		return errors.New("TEI_EMBED_URL is required: the embedding TEI's base URL, e.g. http://127.0.0.1:3000")
	}
	for _, u := range c.EmbedURLs {
		if err := checkURL("TEI_EMBED_URL", u); err != nil {
			return err
		}
	}
	for _, u := range c.RerankURLs {
		if err := checkURL("TEI_RERANK_URL", u); err != nil {
			return err
		}
	}
	switch {
	case c.DiscoveryInterval < 0:
		return fmt.Errorf("TEI_DISCOVERY_INTERVAL must not be negative, got %s", c.DiscoveryInterval)
	case c.UpstreamPayloadLimit < 0:
		return fmt.Errorf("TEI_PAYLOAD_LIMIT must not be negative, got %d", c.UpstreamPayloadLimit)
	case c.CacheSize < 0:
		return fmt.Errorf("EMBEDDING_CACHE_SIZE must be 0 (off) or more, got %d", c.CacheSize)
	case c.CacheBytes < 0:
		return fmt.Errorf("CACHE_MAX_BYTES must be 0 (no bound) or more, got %d", c.CacheBytes)
	case c.RerankCacheSize < 0:
		return fmt.Errorf("RERANK_CACHE_SIZE must be 0 (off) or more, got %d", c.RerankCacheSize)
	case c.RerankCacheBytes < 0:
		return fmt.Errorf("RERANK_CACHE_MAX_BYTES must be 0 (no bound) or more, got %d", c.RerankCacheBytes)
	case c.RequestTimeout < 0:
		return fmt.Errorf("REQUEST_TIMEOUT must not be negative, got %s", c.RequestTimeout)
	case c.BodyLimit < 0:
		return fmt.Errorf("PAYLOAD_LIMIT must not be negative, got %d", c.BodyLimit)
	case c.QueueInputs < 0:
		return fmt.Errorf("QUEUE_INPUTS must be 0 (no waiting) or more, got %d", c.QueueInputs)
	case c.PriorityInteractiveMaxInputs < 0:
		return fmt.Errorf("PRIORITY_INTERACTIVE_MAX_INPUTS must not be negative, got %d", c.PriorityInteractiveMaxInputs)
	case c.BulkShare < 0 || c.BulkShare > 1:
		return fmt.Errorf("PRIORITY_BULK_SHARE must be in (0, 1], got %g", c.BulkShare)
	case c.BreakerFailures < 0:
		return fmt.Errorf("BREAKER_FAILURES must not be negative, got %d", c.BreakerFailures)
	case c.BreakerOpenFor < 0:
		return fmt.Errorf("BREAKER_OPEN_FOR must not be negative, got %s", c.BreakerOpenFor)
	case c.RerankK < 0:
		return fmt.Errorf("RERANK_K must be at least 1, got %d", c.RerankK)
	case c.RerankFinalN < 0:
		return fmt.Errorf("RERANK_FINAL_N must be at least 1, got %d", c.RerankFinalN)
	case c.StartupTimeout < 0:
		return fmt.Errorf("STARTUP_TIMEOUT must not be negative, got %s", c.StartupTimeout)
	}
	if err := c.Shared.Validate(); err != nil {
		return err
	}
	for _, t := range c.BearerTokens {
		if t == "" {
			return errors.New("BEARER_TOKEN has an empty token (check for a stray comma)")
		}
	}
	if err := c.validateNames(); err != nil {
		return err
	}
	for _, o := range c.CORSAllowOrigins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

// validateNames checks the model aliases and the input_type prompts.
func (c Config) validateNames() error {
	for _, l := range []struct {
		name    string
		aliases []string
	}{{"MODEL_ALIASES", c.ModelAliases}, {"EMBEDDING_MODEL_ALIASES", c.EmbeddingModelAliases}, {"RERANK_MODEL_ALIASES", c.RerankModelAliases}} {
		for _, a := range l.aliases {
			if strings.TrimSpace(a) == "" {
				return fmt.Errorf("%s has an empty name (check for a stray comma)", l.name)
			}
		}
	}
	for _, a := range c.RerankModelAliases {
		if slices.Contains(c.EmbeddingModelAliases, a) || slices.Contains(c.ModelAliases, a) {
			return fmt.Errorf("%q is an alias of both models (RERANK_MODEL_ALIASES and EMBEDDING_MODEL_ALIASES or MODEL_ALIASES): give each model its own names", a)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(c.InputTypePrompts)) {
		if !slices.Contains(cohereInputTypes, t) {
			return fmt.Errorf("INPUT_TYPE_PROMPTS names input_type %q; Cohere's are %s", t, strings.Join(cohereInputTypes, ", "))
		}
		if c.InputTypePrompts[t] == "" {
			return fmt.Errorf("INPUT_TYPE_PROMPTS maps %s to an empty prompt name", t)
		}
	}
	return nil
}

// checkOrigin checks one CORS_ALLOW_ORIGIN entry: * or an origin as a
// browser sends it, scheme://host[:port] with no path, so that it can
// match.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(o, "/") {
		return fmt.Errorf("CORS_ALLOW_ORIGIN %q is not an origin: write scheme://host[:port] as the browser sends it (no path, no trailing slash), or *", o)
	}
	return nil
}

// checkURL checks one replica's base URL; the message never shows a
// password it carries.
func checkURL(name, raw string) error {
	u, err := url.Parse(strings.TrimPrefix(raw, dnsPrefix))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		shown := raw
		if err == nil {
			shown, _ = redactURL(raw)
		} else if at := strings.LastIndexByte(raw, '@'); at >= 0 {
			shown = "…" + raw[at:]
		}
		return fmt.Errorf("%s %q is not an http(s)://host[:port] base URL (or dns+http(s)://name:port)", name, shown)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.UpstreamPayloadLimit == 0 {
		c.UpstreamPayloadLimit = d.UpstreamPayloadLimit
	}
	if c.DiscoveryInterval == 0 {
		c.DiscoveryInterval = d.DiscoveryInterval
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = d.BodyLimit
	}
	if c.PriorityInteractiveMaxInputs == 0 {
		c.PriorityInteractiveMaxInputs = d.PriorityInteractiveMaxInputs
	}
	if c.BulkShare == 0 {
		c.BulkShare = d.BulkShare
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

// SoftMemoryLimit is the Go runtime's soft memory limit for a sidecar with
// cfg's caches in a container limited to containerLimit bytes (0: none),
// or 0 to leave the runtime's default. Without one the heap grows to twice
// what is live, so RSS stays near 2.2× the cache budget long after load
// ends; with it the collector works harder as the heap nears the limit and
// returns memory to the system. The limit is the cache budgets plus a
// quarter and 192 MiB for requests in flight, and at most 90% of the
// container's memory, so the kernel's OOM killer is not the first to act.
func SoftMemoryLimit(cfg Config, containerLimit int64) int64 {
	var limit int64
	if cfg.CacheSize == 0 || cfg.CacheBytes > 0 {
		budget := cfg.RerankCacheBytes
		if cfg.RerankCacheSize == 0 {
			budget = 0
		}
		if cfg.CacheSize > 0 {
			budget += cfg.CacheBytes
		}
		if cfg.RerankCacheSize == 0 || cfg.RerankCacheBytes > 0 {
			limit = budget + budget/4 + 192<<20
		}
	}
	if containerLimit > 0 {
		if c := containerLimit / 10 * 9; limit == 0 || c < limit {
			limit = c
		}
	}
	return limit
}
