package proxy

import (
	"testing"
	"time"
)

// TestValidateMessages checks every message Validate can give, exactly.
func TestValidateMessages(t *testing.T) {
	ok := func(edit func(*Config)) Config {
		c := DefaultConfig()
		c.EmbedURLs = []string{"http://127.0.0.1:3000"}
		edit(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", DefaultConfig(), "TEI_EMBED_URL is required: the embedding TEI's base URL, e.g. http://127.0.0.1:3000"},
		{"bad scheme", ok(func(c *Config) { c.EmbedURLs = []string{"ftp://x"} }), `TEI_EMBED_URL "ftp://x" is not an http(s)://host[:port] base URL (or dns+http(s)://name:port)`},
		{"path", ok(func(c *Config) { c.EmbedURLs = []string{"http://x/v1"} }), `TEI_EMBED_URL "http://x/v1" is not an http(s)://host[:port] base URL (or dns+http(s)://name:port)`},
		{"second URL bad", ok(func(c *Config) { c.EmbedURLs = append(c.EmbedURLs, "nohost") }), `TEI_EMBED_URL "nohost" is not an http(s)://host[:port] base URL (or dns+http(s)://name:port)`},
		{"password hidden", ok(func(c *Config) { c.RerankURLs = []string{"http://u:pw@x/v1"} }), `TEI_RERANK_URL "http://x/v1" is not an http(s)://host[:port] base URL (or dns+http(s)://name:port)`},
		{"payload to TEI", ok(func(c *Config) { c.UpstreamPayloadLimit = -1 }), "TEI_PAYLOAD_LIMIT must not be negative, got -1"},
		{"cache size", ok(func(c *Config) { c.CacheSize = -1 }), "EMBEDDING_CACHE_SIZE must be 0 (off) or more, got -1"},
		{"cache bytes", ok(func(c *Config) { c.CacheBytes = -1 }), "CACHE_MAX_BYTES must be 0 (no bound) or more, got -1"},
		{"rerank cache", ok(func(c *Config) { c.RerankCacheSize = -1 }), "RERANK_CACHE_SIZE must be 0 (off) or more, got -1"},
		{"rerank bytes", ok(func(c *Config) { c.RerankCacheBytes = -1 }), "RERANK_CACHE_MAX_BYTES must be 0 (no bound) or more, got -1"},
		{"timeout", ok(func(c *Config) { c.RequestTimeout = -time.Second }), "REQUEST_TIMEOUT must not be negative, got -1s"},
		{"body", ok(func(c *Config) { c.BodyLimit = -1 }), "PAYLOAD_LIMIT must not be negative, got -1"},
		{"queue", ok(func(c *Config) { c.QueueInputs = -1 }), "QUEUE_INPUTS must be 0 (no waiting) or more, got -1"},
		{"interactive", ok(func(c *Config) { c.PriorityInteractiveMaxInputs = -1 }), "PRIORITY_INTERACTIVE_MAX_INPUTS must not be negative, got -1"},
		{"bulk share", ok(func(c *Config) { c.BulkShare = 1.5 }), "PRIORITY_BULK_SHARE must be in (0, 1], got 1.5"},
		{"breaker failures", ok(func(c *Config) { c.BreakerFailures = -1 }), "BREAKER_FAILURES must not be negative, got -1"},
		{"breaker open", ok(func(c *Config) { c.BreakerOpenFor = -time.Second }), "BREAKER_OPEN_FOR must not be negative, got -1s"},
		{"rerank k", ok(func(c *Config) { c.RerankK = -1 }), "RERANK_K must be at least 1, got -1"},
		{"final n", ok(func(c *Config) { c.RerankFinalN = -1 }), "RERANK_FINAL_N must be at least 1, got -1"},
		{"startup", ok(func(c *Config) { c.StartupTimeout = -time.Second }), "STARTUP_TIMEOUT must not be negative, got -1s"},
		{"token", ok(func(c *Config) { c.BearerTokens = []string{"a", ""} }), "BEARER_TOKEN has an empty token (check for a stray comma)"},
		{"empty alias", ok(func(c *Config) { c.EmbeddingModelAliases = []string{"a", ""} }), "EMBEDDING_MODEL_ALIASES has an empty name (check for a stray comma)"},
		{"alias of both", ok(func(c *Config) { c.ModelAliases = []string{"m"}; c.RerankModelAliases = []string{"m"} }),
			`"m" is an alias of both models (RERANK_MODEL_ALIASES and EMBEDDING_MODEL_ALIASES or MODEL_ALIASES): give each model its own names`},
		{"input type", ok(func(c *Config) { c.InputTypePrompts = map[string]string{"query": "q"} }),
			`INPUT_TYPE_PROMPTS names input_type "query"; Cohere's are search_document, search_query, classification, clustering`},
		{"input type prompt", ok(func(c *Config) { c.InputTypePrompts = map[string]string{"search_query": ""} }), "INPUT_TYPE_PROMPTS maps search_query to an empty prompt name"},
		{"valid", ok(func(*Config) {}), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestSoftMemoryLimit checks the limit serve gives the Go runtime.
func TestSoftMemoryLimit(t *testing.T) {
	d := DefaultConfig()
	budget := d.CacheBytes + d.RerankCacheBytes
	unbounded := d
	unbounded.CacheBytes = 0
	tests := []struct {
		name      string
		cfg       Config
		container int64
		want      int64
	}{
		{"budgets alone", d, 0, budget + budget/4 + 192<<20},
		{"a small container wins", d, 400 << 20, 400 << 20 / 10 * 9},
		{"a large container does not", d, 64 << 30, budget + budget/4 + 192<<20},
		{"no byte bound, no container: the runtime's default", unbounded, 0, 0},
		{"no byte bound: the container", unbounded, 1 << 30, 1 << 30 / 10 * 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SoftMemoryLimit(tc.cfg, tc.container); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
