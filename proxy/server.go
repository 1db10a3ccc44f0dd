package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tei-sidecar/tei-sidecar/sharedcache"
	"github.com/tei-sidecar/tei-sidecar/tei"
)

// Server is the proxy: create it with New (its replicas are probed from
// then on), serve Handler (model routes answer 503 until their pool has a
// ready replica), optionally wait for TEI with Connect, and call Close once
// the HTTP server has stopped.
type Server struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	echo   *echo.Echo
	embedP *pool
	rankP  *pool // the embedding pool when no reranker is configured

	opts       []tei.Option // for every replica's client
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	tokens     tokenDigests
	cache      *lruCache[*entry]
	rankCache  *lruCache[*rankResult]
	shared     *sharedcache.Cache // nil: no second layer

	ctx    context.Context // owns background goroutines
	stop   context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // calls to TEI and background goroutines
}

// New builds a server for cfg and starts reading each replica's /info in the
// background; it does not wait for TEI.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := newMetrics()
	s := &Server{cfg: cfg, log: log, m: m, tokens: newTokenDigests(cfg.BearerTokens)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.cache = newLRU[*entry](cfg.CacheSize, cfg.CacheBytes, m.cacheEvictions.WithLabelValues("embed"))
	m.registerCache("embed", s.cache.stats)
	s.rankCache = newLRU[*rankResult](cfg.RerankCacheSize, cfg.RerankCacheBytes, m.cacheEvictions.WithLabelValues("rerank"))
	m.registerCache("rerank", s.rankCache.stats)
	shared, err := sharedcache.New(cfg.Shared, m.reg, log)
	if err != nil {
		return nil, err
	}
	s.shared = shared
	if shared != nil {
		s.goOwned(s.pingShared)
	}

	if cfg.APIKey != "" {
		s.opts = append(s.opts, tei.WithAPIKey(cfg.APIKey))
	}
	var rt http.RoundTripper = tei.NewTransport()
	if cfg.Transport != nil {
		rt = cfg.Transport
	}
	s.tracer, s.propagator = noopTracer, propagation.TraceContext{}
	if tp := cfg.TracerProvider; tp != nil {
		s.tracer = tp.Tracer("github.com/tei-sidecar/tei-sidecar/proxy")
		s.propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		rt = otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(s.propagator),
			// Only calls made for a request: the probers' /info checks
			// would be a root trace every 30 s.
			otelhttp.WithFilter(func(r *http.Request) bool { return trace.SpanContextFromContext(r.Context()).IsValid() }))
	}
	s.opts = append(s.opts, tei.WithHTTPClient(&http.Client{Transport: headerTransport{rt}}))
	s.embedP = newPool(s, "embed")
	s.rankP = s.embedP
	if len(cfg.RerankURLs) > 0 {
		s.rankP = newPool(s, "rerank")
	}
	s.echo = s.routes()
	for _, pe := range []struct {
		p       *pool
		entries []string
	}{{s.embedP, cfg.EmbedURLs}, {s.rankP, cfg.RerankURLs}} {
		for _, e := range pe.entries {
			if isDiscovered(e) {
				s.goOwned(func() { s.discover(s.ctx, pe.p, e) })
				continue
			}
			c, err := s.client(e)
			if err != nil {
				s.Close()
				return nil, err
			}
			pe.p.add(s.ctx, e, e, c)
		}
	}
	return s, nil
}

// pingShared logs, once at start, whether the shared cache answers. A
// Redis that does not is no failure: every lookup is a miss until it does.
func (s *Server) pingShared() {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if err := s.shared.Ping(ctx); err != nil {
		s.log.Warn("the shared cache (Redis) does not answer: serving from memory and TEI until it does", "redis", s.cfg.Shared, "err", err.Error())
		return
	}
	s.log.Info("the shared cache (Redis) answers", "redis", s.cfg.Shared)
}

// client returns a TEI client for a replica's base URL.
func (s *Server) client(raw string) (*tei.Client, error) { return tei.NewClient(raw, s.opts...) }

// pools lists the server's pools, each once.
func (s *Server) pools() []*pool {
	if s.rankP == s.embedP {
		return []*pool{s.embedP}
	}
	return []*pool{s.embedP, s.rankP}
}

// goOwned runs fn in a goroutine the server owns: Close waits for it.
func (s *Server) goOwned(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Go(fn)
}

// Connect waits until every pool has a ready replica (TEI opens its port
// only once its model is loaded), within StartupTimeout.
func (s *Server) Connect(ctx context.Context) error {
	if s.cfg.StartupTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.StartupTimeout)
		defer cancel()
	}
	start := time.Now()
	for _, p := range s.pools() {
		if err := p.wait(ctx); err != nil {
			return errors.New("TEI (" + p.name + ") not ready after " + time.Since(start).Round(time.Second).String() + ": " + err.Error() + "; " + p.summary())
		}
	}
	return nil
}

// SetDown tells the server that a replica cannot answer, for the reason
// given: it is sent no work, /ready and /status say why. /ready is open to
// anyone, so reason must name no secret, address or raw network error. An empty reason
// means it is back: its /info is read again (it may have restarted with
// another revision or other limits) before it takes work. pool is "embed"
// or "rerank"; url is the replica's base URL as configured, or "" for
// every replica of the pool. A launcher's supervisor calls it.
func (s *Server) SetDown(pool, url, reason string) {
	for _, p := range s.pools() {
		if p.name != pool && !(pool == "rerank" && p == s.rankP) {
			continue
		}
		p.mu.Lock()
		for _, r := range p.replicas {
			if url != "" && r.raw != url {
				continue
			}
			if reason != "" {
				was := r.state
				r.held = true
				p.setStateLocked(r, stateDown, reason)
				if was == stateReady {
					s.log.Warn("TEI is down", "pool", p.name, "replica", r, "reason", reason)
				} else {
					s.log.Info("TEI is not ready", "pool", p.name, "replica", r, "reason", reason)
				}
				continue
			}
			r.held = false
			p.setStateLocked(r, stateStarting, "restarted: reading /info again")
			r.recheck()
			s.log.Info("TEI is back: reading its /info again", "pool", p.name, "replica", r)
		}
		p.mu.Unlock()
	}
}

// Liveness says when the replica at url (as configured) last answered a
// call, zero if never, and the longest call it answered: a supervisor
// takes a recent answer as proof of life when TEI's /health is slow behind
// a long batch.
func (s *Server) Liveness(url string) (last time.Time, longest time.Duration) {
	for _, p := range s.pools() {
		if r := p.replica(url); r != nil {
			if n := r.lastAnswer.Load(); n != 0 {
				last = time.Unix(0, n)
			}
			return last, time.Duration(r.longestCall.Load())
		}
	}
	return time.Time{}, 0
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler { return s.echo }

// Close stops the background work and waits for calls to TEI still in
// flight, which end at their deadlines at the latest. Work still queued
// is answered 503.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	for _, p := range s.pools() {
		p.mu.Lock()
		p.sched.closeLocked()
		p.mu.Unlock()
	}
	s.wg.Wait()
	if err := s.shared.Close(); err != nil {
		s.log.Warn("closing the shared cache", "err", err.Error())
	}
}

// routes registers every API face.
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleEchoError
	e.Use(s.observe)
	if cors := s.cors(); cors != nil {
		e.Use(cors)
	}

	e.GET("/health", s.health)
	e.GET("/ready", s.ready)
	e.GET("/openapi.json", s.openAPI)
	metrics := echo.WrapHandler(promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	if s.cfg.MetricsAuth {
		metrics = s.auth(s.teiError)(metrics)
	}
	e.GET("/metrics", metrics)
	e.GET("/status", s.status, s.auth(s.teiError))

	// Each face checks the token and waits for its pool's /info, answering
	// in its own error shape.
	type route struct {
		method, path string
		h            echo.HandlerFunc
		p            *pool
	}
	faces := []struct {
		fail   func(echo.Context, error) error
		routes []route
	}{
		{s.teiError, []route{
			{http.MethodGet, "/info", s.info, s.embedP},
			{http.MethodPost, "/embed", s.teiEmbed(dense), s.embedP},
			{http.MethodPost, "/embed_sparse", s.teiEmbed(sparse), s.embedP},
			{http.MethodPost, "/rerank", s.teiRerank, s.rankP},
			{http.MethodPost, "/predict", s.teiPredict, s.embedP},
			{http.MethodPost, "/similarity", s.teiSimilarity, s.embedP},
			{http.MethodPost, "/embed_all", s.passThrough("/embed_all", checkEmbedAll), s.embedP},
			{http.MethodPost, "/tokenize", s.passThrough("/tokenize", checkTokenize), s.embedP},
			{http.MethodPost, "/decode", s.passThrough("/decode", checkDecode), s.embedP},
			{http.MethodPost, "/", s.teiRoot, s.embedP},
			{http.MethodPost, "/invocations", s.teiRoot, s.embedP}, // SageMaker's route, as TEI serves it
		}},
		{s.openAIError, []route{
			{http.MethodPost, "/v1/embeddings", s.openAIEmbeddings, s.embedP},
			{http.MethodPost, "/embeddings", s.openAIEmbeddings, s.embedP},
			{http.MethodGet, "/v1/models", s.models, s.embedP},
			{http.MethodGet, "/v1/models/*", s.model, s.embedP},
		}},
		{s.cohereError, []route{
			{http.MethodPost, "/v1/rerank", s.cohereRerank("1"), s.rankP},
			{http.MethodPost, "/v2/rerank", s.cohereRerank("2"), s.rankP},
			{http.MethodPost, "/v1/embed", s.cohereEmbed("1"), s.embedP},
			{http.MethodPost, "/v2/embed", s.cohereEmbed("2"), s.embedP},
		}},
		{s.pluginError, []route{
			{http.MethodPost, "/plugin/embed_query", s.pluginEmbedQuery, s.embedP},
			{http.MethodPost, "/plugin/embed_documents", s.pluginEmbedDocuments, s.embedP},
			{http.MethodPost, "/plugin/rerank", s.pluginRerank, s.rankP},
		}},
	}
	for _, f := range faces {
		for _, r := range f.routes {
			e.Add(r.method, r.path, r.h, s.auth(f.fail), s.started(r.p, f.fail))
		}
	}
	return e
}

// started refuses a model call, in the face's own error shape, until its
// pool has read a replica's /info.
func (s *Server) started(p *pool, fail func(echo.Context, error) error) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if p.info() == nil {
				reason := "TEI is still starting (downloading or loading the model)"
				if why := p.reasons(); why != "" {
					reason = "TEI is still starting: " + why
				}
				return fail(c, &unavailableError{reason: reason, retryAfter: 5 * time.Second})
			}
			return next(c)
		}
	}
}
