package proxy

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/sony/gobreaker/v2"

	"github.com/tei-sidecar/tei-sidecar/sharedcache"
	"github.com/tei-sidecar/tei-sidecar/tei"
)

// health answers 200 while the process is alive.
func (s *Server) health(c echo.Context) error { return c.NoContent(http.StatusOK) }

// ready answers 200 while every pool has a ready replica that is alive;
// 503 with the reason otherwise. Its body is open to anyone, so it names
// states, never addresses or TEI's errors; /status has the details.
func (s *Server) ready(c echo.Context) error {
	if reason := s.notReady(c.Request().Context()); reason != "" {
		return writeJSON(c, http.StatusServiceUnavailable, teiErrorBody{Error: reason, ErrorType: tei.TypeUnhealthy})
	}
	return c.NoContent(http.StatusOK)
}

// recentAnswer is how recent a replica's last answer must be to prove it
// alive without asking /health.
const recentAnswer = 10 * time.Second

// notReady reports why the server is not ready, or "" when it is.
func (s *Server) notReady(ctx context.Context) string {
	var why []string
	for _, p := range s.pools() {
		if reason := p.notReady(ctx); reason != "" {
			why = append(why, reason)
		}
	}
	return strings.Join(why, "; ")
}

// notReady reports why the pool cannot serve, or "". A busy TEI answers
// /health only after its running batch, so a recent answer to a call is
// taken as proof of life, and a health check waits as long as the longest
// call seen.
func (p *pool) notReady(ctx context.Context) string {
	p.mu.Lock()
	var cands []*replica
	for _, r := range p.replicas {
		if r.state == stateReady && r.breaker.State() != gobreaker.StateOpen {
			cands = append(cands, r)
		}
	}
	summary := p.summaryLocked()
	var reasons []string
	for _, r := range p.replicas {
		if r.reason != "" && !slices.Contains(reasons, r.reason) {
			reasons = append(reasons, r.reason)
		}
	}
	p.mu.Unlock()
	if len(cands) == 0 {
		msg := p.name + ": no replica ready (" + summary + ")"
		if len(reasons) > 0 {
			msg += ": " + strings.Join(reasons, "; ")
		}
		return msg
	}
	for _, r := range cands {
		if r.alive(recentAnswer) {
			return ""
		}
	}
	var errs []string
	for _, r := range cands {
		hctx, cancel := context.WithTimeout(ctx, r.healthTimeout())
		err := r.client.Health(hctx)
		cancel()
		if err == nil {
			return ""
		}
		errs = append(errs, outcomeOf(err))
	}
	return p.name + ": TEI's health check failed (" + strings.Join(errs, ", ") + ")"
}

// reasons joins the distinct reasons its replicas are not ready (safe to
// show: SetDown's contract).
func (p *pool) reasons() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, r := range p.replicas {
		if r.reason != "" && !slices.Contains(out, r.reason) {
			out = append(out, r.reason)
		}
	}
	return strings.Join(out, "; ")
}

// summary counts the pool's replicas by state, for messages.
func (p *pool) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.summaryLocked()
}

func (p *pool) summaryLocked() string {
	counts := map[string]int{}
	for _, r := range p.replicas {
		st := r.state.String()
		switch {
		case r.state == stateReady && r.breaker.State() == gobreaker.StateOpen:
			st = "breaker open"
		case r.state == stateDown && r.reason == reasonAPIKey:
			st = "down: TEI refused the sidecar's API key"
		}
		counts[st]++
	}
	var parts []string
	for _, st := range []string{"ready", "breaker open", "starting", "down", "down: TEI refused the sidecar's API key", "draining", "refused"} {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return strings.Join(parts, ", ")
}

// statusReplica is one replica in /status.
type statusReplica struct {
	URL      string    `json:"url"`
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Breaker  string    `json:"breaker"`
	Inflight int       `json:"inflight_inputs"`
	Limit    int       `json:"limit"`
	MaxBatch int       `json:"max_batch"`
	Info     *tei.Info `json:"info,omitempty"`
}

// statusPool is one pool in /status.
type statusPool struct {
	ModelID  string          `json:"model_id,omitempty"`
	Revision string          `json:"revision,omitempty"`
	Queued   map[string]int  `json:"queued_inputs"`
	Replicas []statusReplica `json:"replicas"`
}

// statusCache is one cache in /status.
type statusCache struct {
	Entries    int   `json:"entries"`
	Bytes      int64 `json:"bytes"`
	MaxEntries int   `json:"max_entries"`
	MaxBytes   int64 `json:"max_bytes"`
}

// statusBody is /status: what an operator needs at a glance. It never
// carries secrets: URLs lose their credentials, keys are not shown.
type statusBody struct {
	Pools    map[string]statusPool  `json:"pools"`
	Caches   map[string]statusCache `json:"caches"`
	Shared   sharedcache.Status     `json:"shared_cache"`
	Settings map[string]any         `json:"settings"`
}

func (s *Server) status(c echo.Context) error {
	b := statusBody{Pools: map[string]statusPool{}, Caches: map[string]statusCache{}}
	// Without a reranker of its own, rerank calls go to the embedding
	// pool, which is listed once.
	for _, p := range s.pools() {
		b.Pools[p.name] = p.status()
	}
	n, by := s.cache.stats()
	b.Caches["embed"] = statusCache{Entries: n, Bytes: by, MaxEntries: s.cfg.CacheSize, MaxBytes: s.cfg.CacheBytes}
	n, by = s.rankCache.stats()
	b.Caches["rerank"] = statusCache{Entries: n, Bytes: by, MaxEntries: s.cfg.RerankCacheSize, MaxBytes: s.cfg.RerankCacheBytes}
	b.Shared = s.shared.Status()
	b.Settings = s.cfg.redacted()
	return writeJSON(c, http.StatusOK, b)
}

func (p *pool) status() statusPool {
	p.mu.Lock()
	defer p.mu.Unlock()
	sp := statusPool{Queued: map[string]int{}}
	if id := p.ident.Load(); id != nil {
		sp.ModelID, sp.Revision = id.ModelID, id.Revision()
	}
	for i := range p.sched.queue {
		sp.Queued[priority(i).String()] = p.sched.queue[i].inputs
	}
	for _, r := range p.replicas {
		sp.Replicas = append(sp.Replicas, statusReplica{URL: r.shown, State: r.state.String(), Reason: r.reason,
			Breaker: r.breaker.State().String(), Inflight: r.inflight, Limit: r.limit, MaxBatch: r.maxBatch, Info: r.info.Load()})
	}
	return sp
}

// redacted lists the settings for /status, secrets replaced and URLs
// without their credentials.
func (c Config) redacted() map[string]any {
	secret := func(v string) string {
		if v == "" {
			return ""
		}
		return "<redacted>"
	}
	shown := func(urls []string) []string {
		out := make([]string, len(urls))
		for i, u := range urls {
			out[i], _ = redactURL(u)
		}
		return out
	}
	return map[string]any{
		"tei_embed_url":                   shown(c.EmbedURLs),
		"tei_rerank_url":                  shown(c.RerankURLs),
		"tei_api_key":                     secret(c.APIKey),
		"tei_payload_limit":               c.UpstreamPayloadLimit,
		"tei_discovery_interval":          c.DiscoveryInterval.String(),
		"cache_size":                      c.CacheSize,
		"cache_max_bytes":                 c.CacheBytes,
		"rerank_cache_size":               c.RerankCacheSize,
		"rerank_cache_max_bytes":          c.RerankCacheBytes,
		"request_timeout":                 c.RequestTimeout.String(),
		"payload_limit":                   c.BodyLimit,
		"queue_inputs":                    c.QueueInputs,
		"priority_interactive_max_inputs": c.PriorityInteractiveMaxInputs,
		"priority_allow_raise":            c.PriorityAllowRaise,
		"priority_bulk_share":             c.BulkShare,
		"adaptive_concurrency":            c.AdaptiveConcurrency,
		"breaker_failures":                c.BreakerFailures,
		"breaker_open_for":                c.BreakerOpenFor.String(),
		"startup_timeout":                 c.StartupTimeout.String(),
		"bearer_tokens":                   len(c.BearerTokens),
		"metrics_auth":                    c.MetricsAuth,
		"model_aliases":                   slices.Clone(c.ModelAliases),
		"embedding_model_aliases":         slices.Clone(c.EmbeddingModelAliases),
		"rerank_model_aliases":            slices.Clone(c.RerankModelAliases),
		"model_accept_any":                c.ModelAcceptAny,
		"input_type_prompts":              c.InputTypePrompts,
		"cors_allow_origin":               slices.Clone(c.CORSAllowOrigins),
		"access_log":                      c.AccessLog,
		"tracing":                         c.TracerProvider != nil,
		"rerank_enable":                   c.RerankEnable,
		"rerank_k":                        c.RerankK,
		"rerank_final_n":                  c.RerankFinalN,
	}
}
