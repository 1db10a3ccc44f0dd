package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/proxy"
	"github.com/tei-sidecar/tei-sidecar/sharedcache"
	"github.com/tei-sidecar/tei-sidecar/tei/launch"
)

// serveCmd launches TEI as planned for the hardware (or uses TEI at the URLs
// given) and proxies embed and rerank calls to it.
type serveCmd struct {
	// Settings shape the plan. Their EMBEDDING_CACHE_SIZE, RERANK_ENABLE,
	// RERANK_K and RERANK_FINAL_N also configure the proxy, so one variable
	// feeds both.
	Settings plan.Settings `embed:""`

	Launch      string        `name:"launch" env:"TEI_LAUNCH" enum:"auto,docker,process,none" default:"auto" help:"How to run TEI: auto, docker (TEI's images), process (the text-embeddings-router binary) or none (TEI runs at --tei-embed-url). auto: none when a URL is given, process for Apple Metal, docker when Docker answers, else process when the binary is found."`
	DryRun      bool          `name:"dry-run" help:"Print what would be launched (plan, image, arguments, environment with secrets redacted, ports) and exit."`
	Keep        bool          `name:"keep" env:"TEI_KEEP" help:"Leave TEI's containers running on exit; the next serve adopts them."`
	FallbackCPU bool          `name:"fallback-cpu" env:"TEI_FALLBACK_CPU" help:"Run TEI's CPU image when Docker cannot give containers a GPU (no NVIDIA Container Toolkit)."`
	ModelCache  string        `name:"model-cache" env:"TEI_MODEL_CACHE" help:"Where TEI keeps downloaded models: a Docker volume name or an absolute host directory (default: the volume tei-sidecar-models; process mode: TEI's own cache unless a directory is given)."`
	TEIBinary   string        `name:"tei-binary" env:"TEI_BINARY" help:"TEI's router program for --launch process (default: text-embeddings-router on PATH)."`
	Project     string        `name:"project" env:"TEI_PROJECT" default:"${tei_project}" help:"Names TEI's containers (<project>-embed, <project>-embed-1, …, <project>-rerank); sidecars with different projects leave each other's containers alone."`
	HealthEvery time.Duration `name:"health-interval" env:"TEI_HEALTH_INTERVAL" default:"${tei_health_interval}" help:"Time between the supervisor's /health checks of a launched TEI."`
	HealthFails int           `name:"health-failures" env:"TEI_HEALTH_FAILURES" default:"${tei_health_failures}" help:"Failed health checks in a row after which a launched TEI is restarted."`
	RestartMax  time.Duration `name:"restart-max-backoff" env:"TEI_RESTART_MAX_BACKOFF" default:"${tei_restart_max_backoff}" help:"Longest wait between restarts of a failing TEI (the wait doubles from 1s)."`

	TEIEmbedURL  string        `name:"tei-embed-url" env:"TEI_EMBED_URL" help:"Base URLs of embedding TEIs already running, comma-separated (one pool of replicas), e.g. http://127.0.0.1:3000; dns+http://name:port stands for every address name resolves to. Nothing is launched."`
	TEIRerankURL string        `name:"tei-rerank-url" env:"TEI_RERANK_URL" help:"Base URLs of the reranking TEIs, comma-separated; empty sends rerank calls to the embedding TEI."`
	Discovery    time.Duration `name:"tei-discovery-interval" env:"TEI_DISCOVERY_INTERVAL" default:"${tei_discovery_interval}" help:"How often dns+http:// entries of TEI_EMBED_URL / TEI_RERANK_URL are resolved again (replicas join and drain)."`
	TEIAPIKey    string        `name:"tei-api-key" env:"TEI_API_KEY" help:"TEI's API key: the one TEI at --tei-embed-url wants, or the one launched TEIs get (default when launching: a random key, or the one TEI containers left running share); never logged."`
	TEIPayload   int64         `name:"tei-payload-limit" env:"TEI_PAYLOAD_LIMIT" default:"${tei_payload_limit}" help:"Largest request body sent to TEI in bytes (TEI's --payload-limit); batches are split to stay under it."`
	Listen       string        `name:"listen" env:"SIDECAR_LISTEN" default:"127.0.0.1:8080" help:"Address to serve on."`

	CacheMaxBytes       int64             `name:"cache-max-bytes" env:"CACHE_MAX_BYTES" default:"${cache_max_bytes}" help:"Memory bound of the embedding cache in bytes; 0 means none."`
	RerankCacheSize     int               `name:"rerank-cache-size" env:"RERANK_CACHE_SIZE" default:"${rerank_cache_size}" help:"Whole rerank answers kept; 0 disables it."`
	RerankCacheMaxBytes int64             `name:"rerank-cache-max-bytes" env:"RERANK_CACHE_MAX_BYTES" default:"${rerank_cache_max_bytes}" help:"Memory bound of the rerank cache in bytes, texts included; 0 means none."`
	RequestTimeout      time.Duration     `name:"request-timeout" env:"REQUEST_TIMEOUT" default:"${request_timeout}" help:"Deadline of one request, retries included; 0 means none."`
	PayloadLimit        int64             `name:"payload-limit" env:"PAYLOAD_LIMIT" default:"${payload_limit}" help:"Largest request body in bytes (TEI's default)."`
	QueueInputs         int               `name:"queue-inputs" env:"QUEUE_INPUTS" default:"${queue_inputs}" help:"Inputs that may wait in the sidecar's scheduler; 0 answers 429 at once when TEI is full."`
	InteractiveMax      int               `name:"priority-interactive-max-inputs" env:"PRIORITY_INTERACTIVE_MAX_INPUTS" default:"${priority_interactive_max_inputs}" help:"Requests of at most this many inputs are queries and go ahead of bulk work."`
	AllowRaise          bool              `name:"priority-allow-raise" env:"PRIORITY_ALLOW_RAISE" help:"Let 'X-Priority: interactive' raise a request above bulk work (by default X-Priority can only lower it)."`
	AccessLog           bool              `name:"access-log" env:"ACCESS_LOG" default:"${access_log}" negatable:"" help:"One log line per API request: route, status, duration, inputs, cache hits, upstream time, request and trace ids (never a text or a token)."`
	Adaptive            bool              `name:"adaptive-concurrency" env:"ADAPTIVE_CONCURRENCY" default:"${adaptive_concurrency}" negatable:"" help:"Keep only as many inputs in flight to each TEI as it needs to stay busy (measured), the rest queued in the sidecar where queries go first; --no-adaptive-concurrency keeps up to TEI's max_concurrent_requests in flight."`
	BulkShare           float64           `name:"priority-bulk-share" env:"PRIORITY_BULK_SHARE" default:"${priority_bulk_share}" help:"Least share of TEI calls bulk work gets while queries wait, in (0, 1]."`
	BreakerFailures     int               `name:"breaker-failures" env:"BREAKER_FAILURES" default:"${breaker_failures}" help:"Consecutive failures of a TEI replica that open its circuit breaker."`
	BreakerOpenFor      time.Duration     `name:"breaker-open-for" env:"BREAKER_OPEN_FOR" default:"${breaker_open_for}" help:"How long an open breaker fails fast before probing TEI again."`
	StartupTimeout      time.Duration     `name:"startup-timeout" env:"STARTUP_TIMEOUT" default:"${startup_timeout}" help:"How long a launched TEI may take to download and load its model (image pulls not counted); 0 waits forever."`
	BearerToken         string            `name:"bearer-token" env:"BEARER_TOKEN" help:"Comma-separated tokens accepted as 'Authorization: Bearer'; empty means no auth (never logged)."`
	MetricsAuth         bool              `name:"metrics-auth" env:"METRICS_AUTH" help:"Require a token on /metrics too."`
	ModelAliases        []string          `name:"model-aliases" env:"MODEL_ALIASES" help:"Extra names accepted for the embedding model (comma-separated); the older spelling of --embedding-model-aliases."`
	EmbedAliases        []string          `name:"embedding-model-aliases" env:"EMBEDDING_MODEL_ALIASES" help:"Extra names the OpenAI and Cohere embed faces accept for the embedding model, listed in /v1/models (comma-separated)."`
	RerankAliases       []string          `name:"rerank-model-aliases" env:"RERANK_MODEL_ALIASES" help:"Extra names the Cohere and Jina rerank faces accept for the reranker (comma-separated)."`
	ModelAcceptAny      bool              `name:"model-accept-any" env:"MODEL_ACCEPT_ANY" help:"Accept any model name, or none, on every face, as TEI's /v1/embeddings does (by default a wrong name gets 404)."`
	InputTypePrompts    map[string]string `name:"input-type-prompts" env:"INPUT_TYPE_PROMPTS" mapsep:"," help:"Cohere input_type values mapped to the embedding model's prompt names, e.g. search_query=query,search_document=passage; unmapped input types are ignored."`
	CORSAllowOrigin     []string          `name:"cors-allow-origin" env:"CORS_ALLOW_ORIGIN" help:"Browser origins allowed to call the sidecar (comma-separated scheme://host[:port], or * for any), as TEI's flag; empty sends no CORS headers."`

	Shared sharedFlags `embed:"" prefix:"cache-redis-"`

	HTTPReadTimeout time.Duration `name:"http-read-timeout" env:"HTTP_READ_TIMEOUT" default:"${http_read_timeout}" help:"Longest time to read one request, headers and body."`
	HTTPIdleTimeout time.Duration `name:"http-idle-timeout" env:"HTTP_IDLE_TIMEOUT" default:"${http_idle_timeout}" help:"Idle keep-alive connections are closed after this."`
	HTTPMaxConns    int           `name:"http-max-connections" env:"HTTP_MAX_CONNECTIONS" default:"${http_max_connections}" help:"Most open client connections (at most 3/4 of the file limit); at the cap the longest-idle one is closed."`

	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"SHUTDOWN_TIMEOUT" default:"15s" help:"How long SIGTERM waits for in-flight requests."`
}

// config turns the flags into the proxy's configuration. plugin, from a
// plan, fills in the platform defaults of the settings left unset; without
// one the proxy's defaults apply.
func (c *serveCmd) config(embedURLs, rerankURLs []string, plugin *plan.PluginSettings) proxy.Config {
	cfg := proxy.Config{
		EmbedURLs: embedURLs, RerankURLs: rerankURLs, DiscoveryInterval: c.Discovery, APIKey: c.TEIAPIKey, UpstreamPayloadLimit: c.TEIPayload,
		CacheSize: proxy.DefaultConfig().CacheSize, CacheBytes: c.CacheMaxBytes,
		RerankCacheSize: c.RerankCacheSize, RerankCacheBytes: c.RerankCacheMaxBytes,
		RequestTimeout: c.RequestTimeout, BodyLimit: c.PayloadLimit, QueueInputs: c.QueueInputs,
		PriorityInteractiveMaxInputs: c.InteractiveMax, PriorityAllowRaise: c.AllowRaise, BulkShare: c.BulkShare, AdaptiveConcurrency: c.Adaptive, AccessLog: c.AccessLog,
		BreakerFailures: c.BreakerFailures, BreakerOpenFor: c.BreakerOpenFor, StartupTimeout: c.StartupTimeout,
		BearerTokens: splitList(c.BearerToken), MetricsAuth: c.MetricsAuth, ModelAliases: c.ModelAliases,
		EmbeddingModelAliases: c.EmbedAliases, RerankModelAliases: c.RerankAliases, ModelAcceptAny: c.ModelAcceptAny,
		InputTypePrompts: c.InputTypePrompts, CORSAllowOrigins: c.CORSAllowOrigin,
		RerankEnable: c.Settings.RerankEnable == nil || *c.Settings.RerankEnable,
		RerankK:      c.Settings.RerankK, RerankFinalN: c.Settings.RerankFinalN,
		Shared: c.Shared.config(),
	}
	if c.Settings.CacheSize != nil {
		cfg.CacheSize = *c.Settings.CacheSize
	}
	if plugin != nil {
		cfg.CacheSize, cfg.RerankEnable = plugin.CacheSize, plugin.RerankEnable
		cfg.RerankK, cfg.RerankFinalN = plugin.RerankK, plugin.RerankFinalN
	}
	return cfg
}

// sharedFlags are the shared cache's settings (sharedcache.Config), flags
// --cache-redis-….
type sharedFlags struct {
	URL             string        `name:"url" env:"CACHE_REDIS_URL" help:"The shared second cache layer: redis://[user:pass@]host:port/db (rediss:// for TLS), redis+sentinel://h1,h2/master/db or redis+cluster://h1,h2; empty means none. The password is never logged."`
	Namespace       string        `name:"namespace" env:"CACHE_NAMESPACE" default:"${cache_namespace}" help:"Prefix of every key in Redis; change it to start an empty cache."`
	TTL             time.Duration `name:"ttl" env:"CACHE_REDIS_TTL" help:"Time to live of each entry; 0 means none (Redis's maxmemory-policy evicts)."`
	Timeout         time.Duration `name:"timeout" env:"CACHE_REDIS_TIMEOUT" default:"${cache_redis_timeout}" help:"Deadline of one lookup round trip; slower is a miss."`
	WriteTimeout    time.Duration `name:"write-timeout" env:"CACHE_REDIS_WRITE_TIMEOUT" default:"${cache_redis_write_timeout}" help:"Deadline of one write-behind round trip."`
	DialTimeout     time.Duration `name:"dial-timeout" env:"CACHE_REDIS_DIAL_TIMEOUT" default:"${cache_redis_dial_timeout}" help:"Deadline of opening one connection, TLS included."`
	QueueSize       int           `name:"queue" env:"CACHE_REDIS_QUEUE" default:"${cache_redis_queue}" help:"Writes that may wait for the write-behind writer; more are dropped and counted."`
	PoolSize        int           `name:"pool-size" env:"CACHE_REDIS_POOL_SIZE" default:"${cache_redis_pool_size}" help:"Most connections per Redis node."`
	MinIdleConns    int           `name:"min-idle-conns" env:"CACHE_REDIS_MIN_IDLE_CONNS" default:"${cache_redis_min_idle_conns}" help:"Idle connections kept open per node; 0 keeps none."`
	ConnMaxIdle     time.Duration `name:"conn-max-idle" env:"CACHE_REDIS_CONN_MAX_IDLE" default:"${cache_redis_conn_max_idle}" help:"Connections idle this long are closed."`
	ConnMaxLifetime time.Duration `name:"conn-max-lifetime" env:"CACHE_REDIS_CONN_MAX_LIFETIME" default:"${cache_redis_conn_max_lifetime}" help:"Connections this old are closed; 0 means no limit."`
	BreakerFailures int           `name:"breaker-failures" env:"CACHE_REDIS_BREAKER_FAILURES" default:"${cache_redis_breaker_failures}" help:"Round trips in a row that time out or fail to connect before the Redis breaker opens."`
	BreakerOpenFor  time.Duration `name:"breaker-open-for" env:"CACHE_REDIS_BREAKER_OPEN_FOR" default:"${cache_redis_breaker_open_for}" help:"How long an open Redis breaker answers every lookup with a miss."`
}

func (f sharedFlags) config() sharedcache.Config {
	return sharedcache.Config{URL: f.URL, Namespace: f.Namespace, TTL: f.TTL, Timeout: f.Timeout,
		WriteTimeout: f.WriteTimeout, DialTimeout: f.DialTimeout, QueueSize: f.QueueSize, PoolSize: f.PoolSize,
		MinIdleConns: f.MinIdleConns, ConnMaxIdleTime: f.ConnMaxIdle, ConnMaxLifetime: f.ConnMaxLifetime,
		BreakerFailures: f.BreakerFailures, BreakerOpenFor: f.BreakerOpenFor}
}

// httpConfig is the HTTP server's part of the flags.
func (c *serveCmd) httpConfig() proxy.HTTPConfig {
	return proxy.HTTPConfig{ReadTimeout: c.HTTPReadTimeout, IdleTimeout: c.HTTPIdleTimeout, MaxConnections: c.HTTPMaxConns}
}

// defaultVars are the defaults that serve's flags show and use, taken from
// the proxy's DefaultConfig so that they are written in one place.
func defaultVars() kong.Vars {
	d, h, r := proxy.DefaultConfig(), proxy.DefaultHTTPConfig(), sharedcache.DefaultConfig()
	sup := launch.DefaultSuperviseOptions()
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	return kong.Vars{
		"tei_project":                     launch.DefaultProject,
		"tei_health_interval":             sup.HealthEvery.String(),
		"tei_health_failures":             i(int64(sup.Failures)),
		"tei_restart_max_backoff":         sup.RestartMax.String(),
		"access_log":                      strconv.FormatBool(d.AccessLog),
		"adaptive_concurrency":            strconv.FormatBool(d.AdaptiveConcurrency),
		"cache_namespace":                 r.Namespace,
		"cache_redis_timeout":             r.Timeout.String(),
		"cache_redis_write_timeout":       r.WriteTimeout.String(),
		"cache_redis_dial_timeout":        r.DialTimeout.String(),
		"cache_redis_queue":               i(int64(r.QueueSize)),
		"cache_redis_pool_size":           i(int64(r.PoolSize)),
		"cache_redis_min_idle_conns":      i(int64(r.MinIdleConns)),
		"cache_redis_conn_max_idle":       r.ConnMaxIdleTime.String(),
		"cache_redis_conn_max_lifetime":   r.ConnMaxLifetime.String(),
		"cache_redis_breaker_failures":    i(int64(r.BreakerFailures)),
		"cache_redis_breaker_open_for":    r.BreakerOpenFor.String(),
		"tei_payload_limit":               i(d.UpstreamPayloadLimit),
		"tei_discovery_interval":          d.DiscoveryInterval.String(),
		"cache_max_bytes":                 i(d.CacheBytes),
		"rerank_cache_size":               i(int64(d.RerankCacheSize)),
		"rerank_cache_max_bytes":          i(d.RerankCacheBytes),
		"request_timeout":                 d.RequestTimeout.String(),
		"payload_limit":                   i(d.BodyLimit),
		"queue_inputs":                    i(int64(d.QueueInputs)),
		"priority_interactive_max_inputs": i(int64(d.PriorityInteractiveMaxInputs)),
		"priority_bulk_share":             strconv.FormatFloat(d.BulkShare, 'g', -1, 64),
		"breaker_failures":                i(int64(d.BreakerFailures)),
		"breaker_open_for":                d.BreakerOpenFor.String(),
		"startup_timeout":                 d.StartupTimeout.String(),
		"http_read_timeout":               h.ReadTimeout.String(),
		"http_idle_timeout":               h.IdleTimeout.String(),
		"http_max_connections":            i(int64(h.MaxConnections)),
	}
}

func (c *serveCmd) Run(g *globals) error {
	mode := launch.Mode(c.Launch)
	if c.TEIEmbedURL != "" && mode != launch.ModeAuto && mode != launch.ModeNone {
		return exitError{code: 2, msg: fmt.Sprintf("TEI_EMBED_URL is set, so there is nothing to launch: unset it, or use --launch none (or auto) instead of %s", mode)}
	}
	if mode == launch.ModeNone || c.TEIEmbedURL != "" {
		cfg := c.config(splitList(c.TEIEmbedURL), splitList(c.TEIRerankURL), nil)
		if err := cfg.Validate(); err != nil {
			return exitError{code: 2, msg: err.Error()}
		}
		if c.DryRun {
			return c.printExternal(g.stdout, cfg)
		}
		return c.serve(g, cfg, launchSet{})
	}

	// Fail on bad proxy settings before launching anything.
	if err := c.config([]string{"http://tei"}, nil, nil).Validate(); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	hw, res, err := detectAndPlan(g, c.Settings)
	if err != nil {
		return err
	}
	mode, why, err := launch.ChooseMode(mode, launch.Host{
		Plans:  res.Plans,
		Docker: func() error { return c.pingDocker(g) },
		Binary: func() (string, error) { return launch.FindBinary(c.TEIBinary) },
	})
	if err != nil {
		return exitError{code: 1, msg: err.Error()}
	}
	l, err := c.launcher(g, mode, hw)
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Close(); err != nil {
			g.log.Warn("closing the launcher", "err", err.Error())
		}
	}()
	for _, p := range res.Plans {
		if err := l.Check(p); err != nil {
			return exitError{code: 2, msg: err.Error()}
		}
	}
	if c.DryRun {
		return c.printLaunch(g.ctx, g.stdout, res, mode, why, l)
	}
	for _, w := range res.Warnings {
		g.log.Warn("plan", "warning", w)
	}
	g.log.Info("launching TEI", "mode", string(mode), "why", why, "platform", res.Platform, "replicas", len(res.Plans))
	return c.serve(g, c.config(nil, nil, &res.Plugin), launchSet{launcher: l, plans: res.Plans})
}

// pingDocker reports whether the Docker engine answers.
func (c *serveCmd) pingDocker(g *globals) error {
	d, err := launch.NewDocker(launch.DockerOptions{}, g.log)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
	defer cancel()
	return d.Ping(ctx)
}

// launcher is what serve needs of a launcher: the launch itself (for the
// supervisors), each replica's URL before it runs (for the proxy), a check
// of what can never run, and --dry-run's description.
type launcher interface {
	launch.Launcher
	Address(context.Context, plan.Plan) (string, error)
	Check(plan.Plan) error
	Describe(context.Context, plan.Plan) launch.Description
	Close() error
}

// keeper is a launcher whose TEIs may outlive the sidecar (Docker's
// containers): a new sidecar removes those no longer planned and can reuse
// their API key, so as to adopt them.
type keeper interface {
	Prune(context.Context, []plan.Plan) error
	KeptAPIKey(context.Context, []plan.Plan) (string, error)
}

var (
	_ launcher          = (*launch.Docker)(nil)
	_ launcher          = (*launch.Native)(nil)
	_ keeper            = (*launch.Docker)(nil)
	_ launch.StatusSink = (*proxy.Server)(nil)
)

// launcher builds the launcher for mode; Close releases it.
func (c *serveCmd) launcher(g *globals, mode launch.Mode, hw hwdetect.Hardware) (launcher, error) {
	switch mode {
	case launch.ModeDocker:
		opts := launch.DockerOptions{
			Project: c.Project, ModelCache: c.ModelCache, Keep: c.Keep,
			PullProgress: g.stderr, InContainer: hw.Container.InContainer, StartupTimeout: c.StartupTimeout,
		}
		if c.FallbackCPU {
			opts.CPUFallback = launch.CPUFallback(hw, c.Settings)
		}
		return launch.NewDocker(opts, g.log)
	case launch.ModeProcess:
		opts := launch.NativeOptions{Binary: c.TEIBinary, StartupTimeout: c.StartupTimeout}
		if filepath.IsAbs(c.ModelCache) {
			opts.ModelCache = c.ModelCache
		} else if c.ModelCache != "" {
			g.log.Warn("TEI_MODEL_CACHE names a Docker volume, which a native TEI cannot use: using TEI's own cache", "model_cache", c.ModelCache)
		}
		n, err := launch.NewNative(opts, g.log)
		if err != nil {
			return nil, exitError{code: 1, msg: err.Error()}
		}
		return n, nil
	}
	return nil, fmt.Errorf("unknown launch mode %q", mode)
}

// launchSet is what serve starts and supervises; empty when TEI runs at
// the URLs given.
type launchSet struct {
	launcher launcher
	plans    []plan.Plan
}

// serve listens at once, decides the API key and each replica's URL,
// builds the proxy with them, and hands each replica to a supervisor, which
// launches it and keeps it running: a TEI that cannot start (an image
// that cannot be pulled, a model that cannot be downloaded) leaves the
// sidecar up, answering 503 with the reason on /ready, and is retried with
// back-off. On SIGTERM it drains in-flight requests, then stops what it
// launched.
func (c *serveCmd) serve(g *globals, cfg proxy.Config, l launchSet) error {
	tp, err := tracerProvider(g.ctx, os.Getenv)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	if tp != nil {
		cfg.TracerProvider = tp
		g.log.Info("tracing on: spans go to the OTLP exporter the OTEL_* variables name")
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(ctx); err != nil {
				g.log.Warn("flushing the last spans", "err", err.Error())
			}
		}()
	}
	hcfg := c.httpConfig()
	ln, err := proxy.Listen(c.Listen, hcfg)
	if err != nil {
		return err
	}
	handler := &swapHandler{}
	starting := &startingHandler{}
	handler.set(starting)
	hs := proxy.NewHTTPServer(handler, ln, hcfg, g.log)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	g.log.Info("listening", "addr", ln.Addr().String())
	stopHTTP := func() {
		if err := hs.Close(); err != nil {
			g.log.Warn("closing the listener", "err", err.Error())
		}
		<-served
	}

	var urls []string
	var plans []plan.Plan
	if l.launcher != nil {
		var key string
		plans, urls, key, err = c.prepare(g, l, starting)
		if err != nil {
			stopHTTP()
			if g.ctx.Err() != nil {
				return nil // stopped while preparing
			}
			return err
		}
		cfg.APIKey = key
		for i, p := range plans {
			if p.Role == plan.RoleEmbedding {
				cfg.EmbedURLs = append(cfg.EmbedURLs, urls[i])
			} else {
				cfg.RerankURLs = append(cfg.RerankURLs, urls[i])
			}
		}
	}
	setMemoryLimit(g.log, cfg)
	srv, err := proxy.New(cfg, g.log)
	if err != nil {
		stopHTTP()
		return exitError{code: 2, msg: err.Error()}
	}
	defer srv.Close()
	// Until a pool's replica is ready its routes answer 503, and /ready
	// says why: the supervisors report each launch's progress and failures.
	handler.set(srv.Handler())

	// Supervisors outlive SIGTERM until the drain is over: TEI must keep
	// answering the requests in flight.
	supCtx, stopSupervisors := context.WithCancel(context.WithoutCancel(g.ctx))
	var supervisors sync.WaitGroup
	defer func() {
		stopSupervisors()
		supervisors.Wait()
	}()
	for i, p := range plans {
		sup := launch.NewSupervisor(l.launcher, p, urls[i], srv, launch.SuperviseOptions{
			HealthEvery: c.HealthEvery, Failures: c.HealthFails, RestartMax: c.RestartMax,
		}, g.log)
		supervisors.Go(func() { sup.Run(supCtx) })
	}

	select {
	case err := <-served:
		return err
	case <-g.ctx.Done():
	}
	g.log.Info("shutting down: draining in-flight requests", "timeout", c.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		g.log.Warn("drain incomplete", "err", err.Error())
		if err := hs.Close(); err != nil {
			g.log.Warn("closing the listener", "err", err.Error())
		}
	}
	err = <-served
	if len(plans) > 0 {
		g.log.Info("stopping TEI", "keep", c.Keep)
	}
	stopSupervisors()
	supervisors.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	g.log.Info("stopped")
	return nil
}

// prepare decides TEI's API key and each replica's URL, before anything
// is launched, so that the proxy can be built with all of them at once.
// While the launcher cannot answer (the Docker engine is down) it retries,
// with a delay that doubles up to TEI_RESTART_MAX_BACKOFF, and /ready says
// why; only an error no retry can fix (launch.ErrSetup) or the end of
// g.ctx stops it.
func (c *serveCmd) prepare(g *globals, l launchSet, starting *startingHandler) (plans []plan.Plan, urls []string, key string, err error) {
	delay, most := time.Second, max(c.RestartMax, time.Second)
	for {
		plans, urls, key, err = c.tryPrepare(g, l)
		if err == nil {
			starting.setReason("")
			return plans, urls, key, nil
		}
		if errors.Is(err, launch.ErrSetup) {
			return nil, nil, "", exitError{code: 2, msg: err.Error()}
		}
		if g.ctx.Err() != nil {
			return nil, nil, "", g.ctx.Err()
		}
		reason := launch.Summary(err)
		starting.setReason(fmt.Sprintf("%s; retrying in %s", reason, delay))
		g.log.Error("preparing TEI's launch failed: retrying", "reason", reason, "err", err.Error(), "in", delay.String())
		select {
		case <-g.ctx.Done():
			return nil, nil, "", g.ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, most)
	}
}

// tryPrepare is one attempt of prepare. The key is TEI_API_KEY when set;
// else the one TEI containers left running share (so that they can be
// adopted); else a new random one. No log line carries it.
func (c *serveCmd) tryPrepare(g *globals, l launchSet) (plans []plan.Plan, urls []string, key string, err error) {
	key = c.TEIAPIKey
	kp, kept := l.launcher.(keeper)
	if kept {
		if err := kp.Prune(g.ctx, l.plans); err != nil {
			return nil, nil, "", err
		}
	}
	switch {
	case key != "":
		g.log.Info("TEI's API key is TEI_API_KEY's")
	case kept:
		if key, err = kp.KeptAPIKey(g.ctx, l.plans); err != nil {
			return nil, nil, "", err
		}
		if key != "" {
			g.log.Info("TEI's API key is the one the TEI containers left running share, so they can be adopted")
		}
	}
	if key == "" {
		if key, err = launch.NewAPIKey(); err != nil {
			return nil, nil, "", err
		}
		g.log.Info("TEI's API key is a new random one: only the sidecar can call TEI (set TEI_API_KEY to call it yourself)")
	}
	for _, p := range l.plans {
		p = launch.WithAPIKey(p, key)
		url, err := l.launcher.Address(g.ctx, p)
		if err != nil {
			return nil, nil, "", err
		}
		plans, urls = append(plans, p), append(urls, url)
	}
	return plans, urls, key, nil
}

// setMemoryLimit sets the Go runtime's soft memory limit from the cache
// budgets and the container's memory limit, unless GOMEMLIMIT is set.
func setMemoryLimit(log *slog.Logger, cfg proxy.Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	container, _ := hwdetect.MemoryLimit(hwdetect.DefaultProbes())
	if lim := proxy.SoftMemoryLimit(cfg, container); lim > 0 {
		debug.SetMemoryLimit(lim)
		log.Info("soft memory limit set (GOMEMLIMIT overrides it)", "bytes", lim, "container_limit", container)
	}
}

// swapHandler serves through a handler that can be replaced while serving:
// a placeholder while TEI starts, then the proxy.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// startingHandler answers until the proxy is built (while TEI's URLs are
// decided): /health says the process is alive, everything else is 503 in
// TEI's error shape, with the reason when preparing failed.
type startingHandler struct{ reason atomic.Pointer[string] }

// setReason says why TEI is not starting yet; "" for no reason. It must be
// safe to show anyone (launch.Summary's words).
func (s *startingHandler) setReason(reason string) { s.reason.Store(&reason) }

func (s *startingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		w.WriteHeader(http.StatusOK)
		return
	}
	msg := "TEI is starting"
	if reason := s.reason.Load(); reason != nil && *reason != "" {
		msg += ": " + *reason
	}
	body, _ := json.Marshal(map[string]string{"error": msg, "error_type": "Unhealthy"})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
}

// printLaunch is --dry-run's report of what would be launched: every
// replica, with its API key passed to TEI (redacted, as every secret).
func (c *serveCmd) printLaunch(ctx context.Context, w io.Writer, res plan.Result, mode launch.Mode, why string, l launcher) error {
	out := &errWriter{w: w}
	out.printf("tei-sidecar serve --dry-run: nothing was started.\n\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	out.printf("Sidecar\n")
	row("platform", res.Platform)
	row("launch", fmt.Sprintf("%s: %s", mode, why))
	row("listen", c.Listen)
	row("proxy", fmt.Sprintf("cache %d entries, rerank %t (k=%d, final_n=%d)", res.Plugin.CacheSize, res.Plugin.RerankEnable, res.Plugin.RerankK, res.Plugin.RerankFinalN))
	row("replicas", fmt.Sprintf("%d embedding, %d rerank", len(res.Replicas(plan.RoleEmbedding)), len(res.Replicas(plan.RoleRerank))))
	if c.TEIAPIKey != "" {
		row("TEI API key", "TEI_API_KEY (passed to TEI as API_KEY)")
	} else {
		row("TEI API key", "a random one made at start, or the one kept containers share (passed to TEI as API_KEY)")
	}
	if mode == launch.ModeDocker {
		row("keep containers", fmt.Sprint(c.Keep))
		row("CPU fallback", fmt.Sprint(c.FallbackCPU))
	}
	_ = tw.Flush()
	for _, p := range res.Plans {
		out.printf("\n%s: %s model %s on %s (plan %s)\n", p.Name(), p.Role, p.Model, p.Device, p.Hash()[:12])
		// Any key will do: its value is redacted.
		d := l.Describe(ctx, launch.WithAPIKey(p, cmp.Or(c.TEIAPIKey, "dry-run")))
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
		if d.Kind == "docker" {
			row("container", d.Name)
			row("image", d.Program)
			row("image here", d.Image)
		} else {
			row("binary", d.Program)
		}
		row("args", strings.Join(d.Args, " "))
		row("env", cmp.Or(strings.Join(d.Env, " "), "(none)"))
		gpus := "none"
		if len(d.GPUs) > 0 {
			gpus = strings.Trim(fmt.Sprint(d.GPUs), "[]")
		}
		row("gpus", gpus)
		row("models", d.ModelCache)
		row("reachable at", d.Address)
		for _, k := range slices.Sorted(maps.Keys(d.Labels)) {
			row("label", k+"="+d.Labels[k])
		}
		_ = tw.Flush()
		for _, warn := range p.Warnings {
			out.printf("  warning: %s\n", warn)
		}
	}
	return out.err
}

// printExternal is --dry-run's report when TEI runs at URLs given.
func (c *serveCmd) printExternal(w io.Writer, cfg proxy.Config) error {
	out := &errWriter{w: w}
	out.printf("tei-sidecar serve --dry-run: nothing was started.\n\n")
	out.printf("launch: none: TEI runs at the URLs given\n")
	out.printf("embedding TEI: %s\n", cmp.Or(strings.Join(redactAll(cfg.EmbedURLs), ", "), "(not set: TEI_EMBED_URL is required)"))
	out.printf("rerank TEI: %s\n", cmp.Or(strings.Join(redactAll(cfg.RerankURLs), ", "), "(the embedding TEI)"))
	out.printf("listen: %s\n", c.Listen)
	return out.err
}

// redactAll returns urls without their credentials, for printing.
func redactAll(urls []string) []string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			out[i] = "<invalid URL>"
			continue
		}
		u.User = nil
		out[i] = u.String()
	}
	return out
}

// splitList splits a comma-separated list, trimming spaces.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
