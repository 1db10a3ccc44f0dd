package proxy

import (
	"container/list"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// HTTPConfig is how the sidecar's HTTP server treats connections: no client
// may hold one, idle or slow, for ever, and their number stays below the
// process's file limit so that the calls to TEI always find a descriptor.
type HTTPConfig struct {
	// ReadTimeout bounds reading a whole request, headers and body
	// (HTTP_READ_TIMEOUT, default 30s): a slow upload cannot hold a
	// connection past it. Zero means the default.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle that long
	// (HTTP_IDLE_TIMEOUT, default 30s). Zero means the default.
	IdleTimeout time.Duration
	// MaxConnections caps open client connections (HTTP_MAX_CONNECTIONS,
	// default 4096), lowered to three quarters of the file limit. At the
	// cap the longest-idle keep-alive connection is closed when a new
	// client comes; when none is idle, new clients wait until a
	// connection closes. Zero means the default.
	MaxConnections int
}

// DefaultHTTPConfig returns the defaults documented on HTTPConfig.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{ReadTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second, MaxConnections: 4096}
}

func (c HTTPConfig) withDefaults() HTTPConfig {
	d := DefaultHTTPConfig()
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = d.MaxConnections
	}
	return c
}

// connCap is MaxConnections lowered below the file limit: a quarter of the
// descriptors stay for the connections to TEI, Redis and files.
func (c HTTPConfig) connCap() int {
	n := c.withDefaults().MaxConnections
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur > 0 && lim.Cur < 1<<31 {
		n = min(n, max(int(lim.Cur)*3/4-16, 16))
	}
	return n
}

// Listener is a TCP listener that caps open connections and, at the cap,
// makes room by closing the connection that has been idle longest.
type Listener struct {
	net.Listener
	slots chan struct{}

	mu   sync.Mutex
	idle *list.List // *capConn, longest idle first

	closed    chan struct{}
	closeOnce sync.Once
}

// Listen listens on addr (TCP) with at most cfg's connection cap open.
func Listen(addr string, cfg HTTPConfig) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Listener{Listener: ln, slots: make(chan struct{}, cfg.connCap()), idle: list.New(), closed: make(chan struct{})}, nil
}

// Accept accepts a connection, then takes a slot for it: at the cap it
// closes the longest-idle connection for it, or waits for one to close.
// (Taking the slot first closed an idle connection as soon as the cap was
// reached, before any new client came.)
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	default:
		l.closeOldestIdle()
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
	return &capConn{Conn: c, l: l}, nil
}

// Close stops accepting; a client waiting for a slot is let go.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *Listener) closeOldestIdle() {
	l.mu.Lock()
	e := l.idle.Front()
	var c *capConn
	if e != nil {
		c = e.Value.(*capConn)
		l.idle.Remove(e)
		c.elem = nil
	}
	l.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// connState is the http.Server's ConnState hook: it tracks idle
// connections.
func (l *Listener) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*capConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
	if st == http.StateIdle {
		c.elem = l.idle.PushBack(c)
	}
}

// capConn gives its slot back when closed.
type capConn struct {
	net.Conn
	l    *Listener
	elem *list.Element // in l.idle while idle; l.mu
	once sync.Once
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.idle.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}

// NewHTTPServer returns the server for h on ln: header, body and idle
// timeouts, the connection tracking ln needs, and an error log through
// log (TLS and protocol errors would otherwise go to stderr unformatted).
func NewHTTPServer(h http.Handler, ln *Listener, cfg HTTPConfig, log *slog.Logger) *http.Server {
	cfg = cfg.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ConnState:         ln.connState,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
