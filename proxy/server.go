package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// Server is the proxy: create it with New, wait for TEI with Connect, serve
// Handler, and call Close once the HTTP server has stopped.
type Server struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	echo   *echo.Echo
	embedU *upstream
	rankU  *upstream

	tokens    tokenDigests
	cache     *embedCache
	rankCache *rerankCache
	rankGroup singleflight.Group

	mu       sync.Mutex
	inflight map[key]slot
	wg       sync.WaitGroup // flights in progress
}

// New builds a server for cfg. It does not contact TEI; Connect does.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := newMetrics()
	s := &Server{cfg: cfg, log: log, m: m, inflight: make(map[key]slot), tokens: newTokenDigests(cfg.BearerTokens)}
	s.cache = newEmbedCache(cfg.CacheSize, cfg.CacheBytes, m)
	m.registerCache("embed", s.cache.stats)
	s.rankCache = newRerankCache(cfg.RerankCacheSize, m)
	m.registerCache("rerank", s.rankCache.stats)

	var opts []tei.Option
	if cfg.APIKey != "" {
		opts = append(opts, tei.WithAPIKey(cfg.APIKey))
	}
	if cfg.Transport != nil {
		opts = append(opts, tei.WithHTTPClient(&http.Client{Transport: cfg.Transport}))
	}
	ec, err := tei.NewClient(cfg.EmbedURL, opts...)
	if err != nil {
		return nil, err
	}
	s.embedU = newUpstream("embed", ec, cfg, m, log)
	s.rankU = s.embedU
	if cfg.RerankURL != "" {
		rc, err := tei.NewClient(cfg.RerankURL, opts...)
		if err != nil {
			return nil, err
		}
		s.rankU = newUpstream("rerank", rc, cfg, m, log)
	}
	s.echo = s.routes()
	return s, nil
}

// Connect waits until every upstream answers /info (TEI opens its port only
// once its model is loaded) and learns their limits and identity.
func (s *Server) Connect(ctx context.Context) error {
	if s.cfg.StartupTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.StartupTimeout)
		defer cancel()
	}
	ups := []*upstream{s.embedU}
	if s.rankU != s.embedU {
		ups = append(ups, s.rankU)
	}
	errs := make(chan error, len(ups))
	for _, u := range ups {
		go func() { errs <- u.waitInfo(ctx) }()
	}
	var first error
	for range ups {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// SetDown tells the server that the upstream name ("embed" or "rerank") cannot
// answer, for the reason given: model calls that miss the cache fail fast
// with 503 and /ready reports the reason, as when the breaker is open. An
// empty reason marks it up again. A launcher's supervisor calls it when TEI
// exits and once it is back.
func (s *Server) SetDown(name, reason string) {
	for _, u := range []*upstream{s.embedU, s.rankU} {
		if u.name != name {
			continue
		}
		if reason == "" {
			u.down.Store(nil)
			s.log.Info("TEI is back", "upstream", name)
			continue
		}
		u.down.Store(&reason)
		s.log.Warn("TEI is down", "upstream", name, "reason", reason)
	}
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler { return s.echo }

// Close waits for calls to TEI still in flight, which end at their
// deadlines at the latest.
func (s *Server) Close() { s.wg.Wait() }

// routes registers every API face.
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleEchoError
	e.Use(s.observe)

	e.GET("/health", s.health)
	e.GET("/ready", s.ready)
	e.GET("/openapi.json", s.openAPI)
	metrics := echo.WrapHandler(promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	if s.cfg.MetricsAuth {
		metrics = s.auth(s.teiError)(metrics)
	}
	e.GET("/metrics", metrics)

	// Each face checks the token and waits for TEI's /info, answering in
	// its own error shape.
	type route struct {
		method, path string
		h            echo.HandlerFunc
	}
	faces := []struct {
		fail   func(echo.Context, error) error
		routes []route
	}{
		{s.teiError, []route{
			{http.MethodGet, "/status", s.status},
			{http.MethodGet, "/info", s.info},
			{http.MethodPost, "/embed", s.teiEmbed(dense)},
			{http.MethodPost, "/embed_sparse", s.teiEmbed(sparse)},
			{http.MethodPost, "/rerank", s.teiRerank},
			{http.MethodPost, "/tokenize", s.passThrough("/tokenize")},
			{http.MethodPost, "/", s.teiRoot},
		}},
		{s.openAIError, []route{
			{http.MethodPost, "/v1/embeddings", s.openAIEmbeddings},
			{http.MethodPost, "/embeddings", s.openAIEmbeddings},
			{http.MethodGet, "/v1/models", s.models},
		}},
		{s.cohereError, []route{
			{http.MethodPost, "/v1/rerank", s.cohereRerank("1")},
			{http.MethodPost, "/v2/rerank", s.cohereRerank("2")},
		}},
		{s.pluginError, []route{
			{http.MethodPost, "/plugin/embed_query", s.pluginEmbedQuery},
			{http.MethodPost, "/plugin/embed_documents", s.pluginEmbedDocuments},
			{http.MethodPost, "/plugin/rerank", s.pluginRerank},
		}},
	}
	for _, f := range faces {
		for _, r := range f.routes {
			e.Add(r.method, r.path, r.h, s.auth(f.fail), s.started(f.fail))
		}
	}
	return e
}

// errStarting is answered while TEI is still starting.
var errStarting = &requestError{status: http.StatusServiceUnavailable, typ: tei.TypeUnhealthy, msg: "TEI is still starting (downloading or loading the model)"}

// started refuses model calls, in the face's own error shape, until every
// upstream's /info has been read.
func (s *Server) started(fail func(echo.Context, error) error) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.embedU.info.Load() == nil || s.rankU.info.Load() == nil {
				c.Response().Header().Set("Retry-After", "5")
				return fail(c, errStarting)
			}
			return next(c)
		}
	}
}

// observe counts requests by route and status and gives each request its
// one deadline.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.RequestTimeout > 0 {
			ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.RequestTimeout)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
		}
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		s.m.requests.WithLabelValues(route, strconv.Itoa(c.Response().Status)).Inc()
		return nil
	}
}

// handleEchoError answers errors raised by echo itself (unknown route,
// wrong method) in TEI's shape.
func (s *Server) handleEchoError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if he, ok := err.(*echo.HTTPError); ok {
		msg := fmt.Sprint(he.Message)
		_ = c.JSON(he.Code, teiErrorBody{Error: msg, ErrorType: tei.TypeValidation})
		return
	}
	s.log.Error("unhandled error", "err", err)
	_ = c.JSON(http.StatusInternalServerError, teiErrorBody{Error: "internal error", ErrorType: tei.TypeBackend})
}
