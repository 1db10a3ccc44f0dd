package proxy

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/sony/gobreaker/v2"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// health answers 200 while the process is alive.
func (s *Server) health(c echo.Context) error { return c.NoContent(http.StatusOK) }

// ready answers 200 once every TEI has been connected, while the embedding
// TEI answers /health and its breaker is not open; 503 with the reason
// otherwise.
func (s *Server) ready(c echo.Context) error {
	if reason := s.notReady(c.Request().Context()); reason != "" {
		return c.JSON(http.StatusServiceUnavailable, teiErrorBody{Error: reason, ErrorType: tei.TypeUnhealthy})
	}
	return c.NoContent(http.StatusOK)
}

// Ready reports why the server is not ready, or "" when it is.
func (s *Server) notReady(ctx context.Context) string {
	// Model routes wait for every upstream's /info; so does readiness.
	if s.embedU.info.Load() == nil || s.rankU.info.Load() == nil {
		return "waiting for TEI to start"
	}
	for _, u := range []*upstream{s.embedU, s.rankU} {
		if r := u.down.Load(); r != nil {
			return "TEI (" + u.name + ") is down: " + *r
		}
	}
	if s.embedU.breaker.State() == gobreaker.StateOpen {
		return "TEI is failing: circuit breaker open"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.embedU.client.Health(ctx); err != nil {
		return "TEI health check failed: " + err.Error()
	}
	return ""
}

// statusUpstream is one upstream in /status.
type statusUpstream struct {
	URL     string    `json:"url"`
	Breaker string    `json:"breaker"`
	Down    *string   `json:"down,omitempty"`
	Info    *tei.Info `json:"info"`
}

// statusCache is one cache in /status.
type statusCache struct {
	Entries    int   `json:"entries"`
	Bytes      int64 `json:"bytes"`
	MaxEntries int   `json:"max_entries"`
}

// statusBody is /status: what an operator needs at a glance. It never
// carries secrets.
type statusBody struct {
	Upstreams map[string]statusUpstream `json:"upstreams"`
	Caches    map[string]statusCache    `json:"caches"`
	Settings  map[string]any            `json:"settings"`
}

func (s *Server) status(c echo.Context) error {
	b := statusBody{Upstreams: map[string]statusUpstream{}, Caches: map[string]statusCache{}}
	for _, u := range []*upstream{s.embedU, s.rankU} {
		b.Upstreams[u.name] = statusUpstream{URL: u.client.BaseURL(), Breaker: u.breaker.State().String(), Down: u.down.Load(), Info: u.info.Load()}
	}
	n, by := s.cache.stats()
	b.Caches["embed"] = statusCache{Entries: n, Bytes: by, MaxEntries: s.cfg.CacheSize}
	n, by = s.rankCache.stats()
	b.Caches["rerank"] = statusCache{Entries: n, Bytes: by, MaxEntries: s.cfg.RerankCacheSize}
	b.Settings = s.cfg.redacted()
	return c.JSON(http.StatusOK, b)
}

// redacted lists the settings for /status, secrets replaced.
func (c Config) redacted() map[string]any {
	secret := func(v string) string {
		if v == "" {
			return ""
		}
		return "<redacted>"
	}
	return map[string]any{
		"tei_embed_url":     c.EmbedURL,
		"tei_rerank_url":    c.RerankURL,
		"tei_api_key":       secret(c.APIKey),
		"cache_size":        c.CacheSize,
		"cache_max_bytes":   c.CacheBytes,
		"rerank_cache_size": c.RerankCacheSize,
		"request_timeout":   c.RequestTimeout.String(),
		"payload_limit":     c.BodyLimit,
		"queue_inputs":      c.QueueInputs,
		"breaker_failures":  c.BreakerFailures,
		"breaker_open_for":  c.BreakerOpenFor.String(),
		"startup_timeout":   c.StartupTimeout.String(),
		"bearer_tokens":     len(c.BearerTokens),
		"metrics_auth":      c.MetricsAuth,
		"model_aliases":     c.ModelAliases,
		"rerank_enable":     c.RerankEnable,
		"rerank_k":          c.RerankK,
		"rerank_final_n":    c.RerankFinalN,
	}
}
