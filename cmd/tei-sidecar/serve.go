package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tei-sidecar/tei-sidecar/proxy"
)

// serveCmd runs the proxy in front of TEI servers given by URL.
type serveCmd struct {
	TEIEmbedURL  string `name:"tei-embed-url" env:"TEI_EMBED_URL" help:"Base URL of the embedding TEI, e.g. http://127.0.0.1:3000."`
	TEIRerankURL string `name:"tei-rerank-url" env:"TEI_RERANK_URL" help:"Base URL of the reranking TEI; empty sends rerank calls to the embedding TEI."`
	TEIAPIKey    string `name:"tei-api-key" env:"TEI_API_KEY" help:"Bearer token for TEI started with --api-key (never logged)."`
	Listen       string `name:"listen" env:"SIDECAR_LISTEN" default:"127.0.0.1:8080" help:"Address to serve on."`

	CacheSize       int           `name:"cache-size" env:"EMBEDDING_CACHE_SIZE" default:"2000" help:"Per-text embeddings kept in the cache; 0 disables it."`
	CacheMaxBytes   int64         `name:"cache-max-bytes" env:"CACHE_MAX_BYTES" default:"268435456" help:"Memory bound of the embedding cache in bytes; 0 means none."`
	RerankCacheSize int           `name:"rerank-cache-size" env:"RERANK_CACHE_SIZE" default:"1000" help:"Whole rerank answers kept; 0 disables it."`
	RequestTimeout  time.Duration `name:"request-timeout" env:"REQUEST_TIMEOUT" default:"30s" help:"Deadline of one request, retries included; 0 means none."`
	PayloadLimit    int64         `name:"payload-limit" env:"PAYLOAD_LIMIT" default:"2000000" help:"Largest request body in bytes (TEI's default)."`
	QueueInputs     int           `name:"queue-inputs" env:"QUEUE_INPUTS" default:"4096" help:"Inputs that may wait for a TEI permit; 0 answers 429 at once when TEI is full."`
	BreakerFailures int           `name:"breaker-failures" env:"BREAKER_FAILURES" default:"5" help:"Consecutive TEI failures that open the circuit breaker."`
	BreakerOpenFor  time.Duration `name:"breaker-open-for" env:"BREAKER_OPEN_FOR" default:"10s" help:"How long an open breaker fails fast before probing TEI again."`
	StartupTimeout  time.Duration `name:"startup-timeout" env:"STARTUP_TIMEOUT" default:"10m" help:"How long to wait for TEI to load its model; 0 waits forever."`
	BearerToken     string        `name:"bearer-token" env:"BEARER_TOKEN" help:"Comma-separated tokens accepted as 'Authorization: Bearer'; empty means no auth (never logged)."`
	MetricsAuth     bool          `name:"metrics-auth" env:"METRICS_AUTH" help:"Require a token on /metrics too."`
	ModelAliases    []string      `name:"model-aliases" env:"MODEL_ALIASES" help:"Extra model names accepted for the served models (comma-separated)."`
	RerankEnable    bool          `name:"rerank-enable" env:"RERANK_ENABLE" default:"true" negatable:"" help:"Rerank in /plugin/rerank; off returns the first final_n passages."`
	RerankK         int           `name:"rerank-k" env:"RERANK_K" default:"5" help:"Passages /plugin/rerank scores by default."`
	RerankFinalN    int           `name:"rerank-final-n" env:"RERANK_FINAL_N" default:"3" help:"Passages /plugin/rerank keeps by default."`

	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"SHUTDOWN_TIMEOUT" default:"15s" help:"How long SIGTERM waits for in-flight requests."`
}

// config turns the flags into the proxy's configuration.
func (c *serveCmd) config() proxy.Config {
	return proxy.Config{
		EmbedURL: c.TEIEmbedURL, RerankURL: c.TEIRerankURL, APIKey: c.TEIAPIKey,
		CacheSize: c.CacheSize, CacheBytes: c.CacheMaxBytes, RerankCacheSize: c.RerankCacheSize,
		RequestTimeout: c.RequestTimeout, BodyLimit: c.PayloadLimit, QueueInputs: c.QueueInputs,
		BreakerFailures: c.BreakerFailures, BreakerOpenFor: c.BreakerOpenFor, StartupTimeout: c.StartupTimeout,
		BearerTokens: splitList(c.BearerToken), MetricsAuth: c.MetricsAuth, ModelAliases: c.ModelAliases,
		RerankEnable: c.RerankEnable, RerankK: c.RerankK, RerankFinalN: c.RerankFinalN,
	}
}

func (c *serveCmd) Run(g *globals) error {
	srv, err := proxy.New(c.config(), g.log)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	g.log.Info("listening", "addr", ln.Addr().String())

	if err := srv.Connect(g.ctx); err != nil {
		_ = hs.Close()
		<-served
		if g.ctx.Err() != nil {
			return nil // stopped while waiting for TEI
		}
		return err
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
		_ = hs.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	g.log.Info("stopped")
	return nil
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
