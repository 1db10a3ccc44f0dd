package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// What the sidecar tells about each request: a request id (the client's
// X-Request-Id when it is a sane one, else a new one), returned on every
// answer, sent to TEI and in every log line about the request; a server
// span continuing the client's traceparent, with child spans for the Redis
// round trip and for each TEI call (TEI's own spans join the trace through
// the traceparent the sidecar sends); and one access-log line. Neither the
// log nor the spans ever carry a text, a vector or a token.

// requestIDHeader is the header a request id travels in, both ways.
const requestIDHeader = "X-Request-Id"

// reqInfo is what a request's handling learned, for its span and its
// access-log line. Handlers may do parts of a request in goroutines of
// their own (a split /predict), so its counts are written under mu, and
// read by observe once the handler has returned.
type reqInfo struct {
	mu        sync.Mutex
	id        string
	face      string
	inputs    int
	hits      int
	coalesced int
	prio      string
	waited    time.Duration // waiting for work sent to TEI (queue and TEI)
	span      trace.Span
}

// work counts n inputs of priority prio.
func (ri *reqInfo) work(n int, prio priority) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.inputs += n
	ri.prio = prio.String()
}

// hit counts n inputs answered from a cache.
func (ri *reqInfo) hit(n int) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.hits += n
}

// waitedFor counts time waiting for TEI and flights joined.
func (ri *reqInfo) waitedFor(d time.Duration, joined int) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.waited += d
	ri.coalesced += joined
}

type reqInfoKey struct{}

// infoOf returns the request's reqInfo, or a throwaway one outside a
// request (benchmarks call the handler bare).
func infoOf(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// validRequestID accepts ids of 1 to 128 characters that are safe to log
// and to pass on: letters, digits and . _ : -.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// faceOf names the API face of a route, for logs, spans and metrics.
func faceOf(route string) string {
	switch {
	case route == "/v1/embeddings" || route == "/embeddings" || strings.HasPrefix(route, "/v1/models"):
		return "openai"
	case route == "/v1/rerank" || route == "/v2/rerank" || route == "/v1/embed" || route == "/v2/embed":
		return "cohere"
	case strings.HasPrefix(route, "/plugin/"):
		return "plugin"
	case route == "/health" || route == "/ready" || route == "/metrics" || route == "/status" || route == "/openapi.json":
		return "ops"
	}
	return "tei"
}

// observe is the outermost middleware: the request's id, deadline, span,
// metrics and access-log line.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		id := req.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Response().Header().Set(requestIDHeader, id)
		ri := &reqInfo{id: id}
		ctx := context.WithValue(req.Context(), reqInfoKey{}, ri)
		ctx = s.propagator.Extract(ctx, propagation.HeaderCarrier(req.Header))
		ctx, ri.span = s.tracer.Start(ctx, req.Method+" "+routeOf(c), trace.WithSpanKind(trace.SpanKindServer))
		if s.cfg.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
		}
		c.SetRequest(req.WithContext(ctx))

		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := routeOf(c)
		status := c.Response().Status
		took := time.Since(start)
		ri.face = faceOf(route)
		st := strconv.Itoa(status)
		s.m.requests.WithLabelValues(route, st).Inc()
		s.m.requestDuration.WithLabelValues(route, ri.face, st).Observe(took.Seconds())
		ri.span.SetName(req.Method + " " + route)
		ri.span.SetAttributes(
			attribute.String("http.request.method", req.Method),
			attribute.String("http.route", route),
			attribute.Int("http.response.status_code", status),
			attribute.String("sidecar.face", ri.face),
			attribute.String("sidecar.request_id", id),
			attribute.Int("sidecar.inputs", ri.inputs),
			attribute.Int("sidecar.cache_hits", ri.hits),
			attribute.Int("sidecar.coalesced", ri.coalesced),
		)
		if ri.prio != "" {
			ri.span.SetAttributes(attribute.String("sidecar.priority", ri.prio))
		}
		if status >= 500 {
			ri.span.SetStatus(codes.Error, http.StatusText(status))
		}
		ri.span.End()
		if s.cfg.AccessLog && ri.face != "ops" {
			attrs := []slog.Attr{
				slog.String("request_id", id),
				slog.String("method", req.Method),
				slog.String("route", route),
				slog.String("face", ri.face),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(took.Microseconds())/1000),
				slog.Int("inputs", ri.inputs),
				slog.Int("cache_hits", ri.hits),
				slog.Int("coalesced", ri.coalesced),
				slog.Float64("upstream_ms", float64(ri.waited.Microseconds())/1000),
			}
			if ri.prio != "" {
				attrs = append(attrs, slog.String("priority", ri.prio))
			}
			if sc := ri.span.SpanContext(); sc.IsValid() {
				attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
			}
			s.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
		}
		return nil
	}
}

// wait submits fs for w and waits for them, counting the wait and the
// work joined in the request's record.
func (s *Server) wait(ctx context.Context, p *pool, w *waiter, fs []*flight) error {
	start := time.Now()
	ri := infoOf(ctx)
	defer func() { ri.waitedFor(time.Since(start), w.joined) }()
	c, err := p.submit(ctx, w, fs)
	if err != nil {
		return err
	}
	if c != nil {
		if left, err := p.runInline(ctx, w, c); left {
			return err
		}
	}
	return p.await(ctx, w)
}

// sharedGet is one lookup in the shared cache, traced.
func (s *Server) sharedGet(ctx context.Context, keys [][32]byte) [][]byte {
	ctx, span := s.tracer.Start(ctx, "redis GET", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.Int("sidecar.keys", len(keys))))
	defer span.End()
	vals := s.shared.Get(ctx, keys)
	hits := 0
	for _, v := range vals {
		if v != nil {
			hits++
		}
	}
	span.SetAttributes(attribute.Int("sidecar.hits", hits))
	return vals
}

// routeOf is the matched route, or "unmatched".
func routeOf(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}

// tracing is what the scheduler needs to trace calls: the tracer, and each
// flight's origin.
type origin struct {
	span  trace.SpanContext
	reqID string
}

// originOf is the origin of work a request creates.
func originOf(ctx context.Context) origin {
	return origin{span: trace.SpanContextFromContext(ctx), reqID: infoOf(ctx).id}
}

// callContext is the context a TEI call runs in: the first flight's trace
// (so TEI's spans join it) and request id, linked to every other request
// whose inputs ride in the same call.
func (s *Server) callContext(base context.Context, c *teiCall, route string) (context.Context, trace.Span) {
	first := c.flights[0].origin
	ctx := trace.ContextWithSpanContext(base, first.span)
	ctx = context.WithValue(ctx, callRequestIDKey{}, first.reqID)
	var links []trace.Link
	for _, f := range c.flights[1:] {
		if f.origin.span.IsValid() && !f.origin.span.Equal(first.span) {
			links = append(links, trace.Link{SpanContext: f.origin.span})
		}
	}
	ctx, span := s.tracer.Start(ctx, "TEI "+route, trace.WithSpanKind(trace.SpanKindInternal), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("sidecar.pool", c.r.pool.name),
			attribute.String("sidecar.replica", c.r.addr),
			attribute.Int("sidecar.inputs", c.n),
			attribute.Int("sidecar.requests", 1+len(links)),
		))
	return ctx, span
}

type callRequestIDKey struct{}

// headerTransport sends the request id of a call's first request to TEI.
type headerTransport struct{ next http.RoundTripper }

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if id, _ := r.Context().Value(callRequestIDKey{}).(string); id != "" {
		r = r.Clone(r.Context())
		r.Header.Set(requestIDHeader, id)
	}
	return t.next.RoundTrip(r)
}

// noopTracer is used when tracing is off.
var noopTracer = noop.NewTracerProvider().Tracer("")
