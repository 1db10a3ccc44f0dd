package tei

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Transport is the HTTP transport for calls to TEI. Plain-HTTP calls with
// no proxy in the way go over connections it pools itself, each exchange
// written and read on the caller's goroutine: net/http's transport hands
// every call to two goroutines of its own (a connection's write and read
// loops), and on a small machine those hand-offs (a thread woken, a
// context switch each) cost more than the exchange. Everything else
// (https, a proxy from the environment, a protocol upgrade, Expect, a
// request that asks to close) goes through net/http's transport.
//
// The request and answer are net/http's own (Request.Write, ReadResponse):
// this type decides only which connection carries them, and when it may
// be reused. A call's context cancels it at once, its connection closed,
// as with net/http.
type Transport struct {
	fallback *http.Transport
	dialer   net.Dialer

	mu   sync.Mutex
	idle map[string][]*conn // by host:port, most recently used last
}

// maxIdlePerHost bounds the idle connections kept per host, and
// idleTimeout how long one is kept unused.
const (
	maxIdlePerHost = 1024
	idleTimeout    = 90 * time.Second
)

// NewTransport returns a transport sized for a proxy that sends many
// concurrent calls to one TEI: net/http's default keeps only two idle
// connections per host, which would redial under load.
func NewTransport() *Transport {
	fb := http.DefaultTransport.(*http.Transport).Clone()
	fb.MaxIdleConns = maxIdlePerHost
	fb.MaxIdleConnsPerHost = maxIdlePerHost
	fb.IdleConnTimeout = idleTimeout
	return &Transport{
		fallback: fb,
		dialer:   net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		idle:     map[string][]*conn{},
	}
}

// conn is one pooled connection.
type conn struct {
	addr     string // the pool's key
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	idleFrom time.Time
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	addr := canonicalAddr(req)
	for attempt := 0; ; attempt++ {
		c, reused := t.get(addr)
		if c == nil {
			var err error
			if c, err = t.dial(ctx, addr); err != nil {
				closeBody(req)
				return nil, err
			}
		}
		resp, err := t.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		_ = c.nc.Close()
		// A pooled connection the server closed while it sat idle fails
		// before any answer: the call is made again on a fresh one, as
		// net/http does. TEI's calls change nothing, so sending one twice
		// is safe.
		if reused && attempt == 0 && ctx.Err() == nil && errors.Is(err, errNoAnswer) {
			if again, rerr := rewind(req); rerr == nil {
				req = again
				continue
			}
		}
		closeBody(req)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return nil, err
	}
}

// rewind returns req ready to be sent again: as it is when it has no
// body, else a copy with its body made anew.
func rewind(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	if req.GetBody == nil {
		return nil, errors.New("tei: the request's body cannot be sent again")
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	req.Body = body
	return req, nil
}

// handles reports whether t carries req itself rather than net/http.
func (t *Transport) handles(req *http.Request) bool {
	if req.URL.Scheme != "http" || req.Close || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return false
	}
	if t.fallback.Proxy != nil {
		if u, err := t.fallback.Proxy(req); err != nil || u != nil {
			return false
		}
	}
	return true
}

// errNoAnswer marks a connection that failed before any byte of the answer
// came back.
var errNoAnswer = errors.New("tei: connection closed before an answer")

// exchange writes req on c and reads the answer's head. The body is read
// by the caller through the returned response; c goes back to the pool
// when it has been read to the end and closed.
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request) (*http.Response, error) {
	// A cancelled call unblocks at once: its connection's deadline is
	// moved to the past, and the connection is not reused.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	if _, err := c.br.Peek(1); err != nil {
		stop()
		return nil, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		stop()
		return nil, err
	}
	if resp.StatusCode < 200 {
		// TEI sends no informational answers; one here is a stranger.
		stop()
		resp.Body.Close()
		return nil, fmt.Errorf("tei: unexpected informational answer %s", resp.Status)
	}
	resp.Body = &body{rc: resp.Body, t: t, c: c, stop: stop, reuse: !resp.Close}
	return resp, nil
}

// body returns its connection to the pool once read to the end.
type body struct {
	rc    io.ReadCloser
	t     *Transport
	c     *conn
	stop  func() bool
	reuse bool // the answer leaves the connection usable once read
	eof   bool
	done  bool
	mu    sync.Mutex
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, errors.New("tei: read on a closed response body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return nil
	}
	b.done = true
	// stop reports false once the context has fired, when the
	// connection's deadline is already in the past.
	if b.stop() && b.eof && b.reuse {
		b.t.put(b.c)
		return nil
	}
	return b.c.nc.Close()
}

// get takes the most recently used idle connection to addr, closing (out
// of the lock) any idle for longer than idleTimeout: being older, those
// lie before it. reused is true when it found one.
func (t *Transport) get(addr string) (c *conn, reused bool) {
	var stale []*conn
	t.mu.Lock()
	cs := t.idle[addr]
	if n := len(cs); n > 0 {
		c, cs[n-1] = cs[n-1], nil
		cs = cs[:n-1]
		if time.Since(c.idleFrom) > idleTimeout {
			stale, cs, c = append(cs, c), nil, nil
		}
	}
	if len(cs) == 0 {
		delete(t.idle, addr)
	} else {
		t.idle[addr] = cs
	}
	t.mu.Unlock()
	for _, s := range stale {
		_ = s.nc.Close()
	}
	return c, c != nil
}

// put returns c to the pool, or closes it when the pool is full.
func (t *Transport) put(c *conn) {
	c.idleFrom = time.Now()
	t.mu.Lock()
	if len(t.idle[c.addr]) < maxIdlePerHost {
		t.idle[c.addr] = append(t.idle[c.addr], c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = c.nc.Close()
}

func (t *Transport) dial(ctx context.Context, addr string) (*conn, error) {
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 32<<10), bw: bufio.NewWriterSize(nc, 16<<10)}, nil
}

// CloseIdleConnections closes the pooled connections; those in use close
// when their calls end. The transport stays usable.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*conn{}
	t.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			_ = c.nc.Close()
		}
	}
	t.fallback.CloseIdleConnections()
}

// canonicalAddr is req's host:port, port 80 when the URL names none.
func canonicalAddr(req *http.Request) string {
	if port := req.URL.Port(); port != "" {
		return net.JoinHostPort(req.URL.Hostname(), port)
	}
	return net.JoinHostPort(req.URL.Hostname(), "80")
}

// closeBody closes a request's body, as a RoundTripper must.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
