package proxy

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveTest serves a trivial handler with cfg's connection settings and
// returns the address.
func serveTest(t *testing.T, cfg HTTPConfig) string {
	t.Helper()
	_, addr := serveTestListener(t, cfg)
	return addr
}

// serveTestListener is serveTest, with the server's listener.
func serveTestListener(t *testing.T, cfg HTTPConfig) (*Listener, string) {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	hs := NewHTTPServer(h, ln, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close(); <-done })
	return ln, ln.Addr().String()
}

// waitIdle waits until l holds n idle connections: the server marks a
// connection idle after the client may already have read its answer.
func waitIdle(t *testing.T, l *Listener, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		got := l.idle.Len()
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections, want %d", got, n)
		}
	}
}

// closedByServer reports whether the server closes c within d.
func closedByServer(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestIdleConnectionsAreClosed is a regression test: only a header timeout
// was set, and 2000 idle keep-alive connections were still open after
// 60 s.
func TestIdleConnectionsAreClosed(t *testing.T) {
	addr := serveTest(t, HTTPConfig{IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !closedByServer(t, c, 5*time.Second) {
		t.Error("an idle keep-alive connection stayed open past the idle timeout")
	}
}

// TestSlowBodiesAreCut is a regression test: 500 slow-body uploads were
// still open after 45 s, past the request timeout.
func TestSlowBodiesAreCut(t *testing.T) {
	addr := serveTest(t, HTTPConfig{ReadTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nstarted but never finished"); err != nil {
		t.Fatal(err)
	}
	if !closedByServer(t, c, 5*time.Second) {
		t.Error("a slow upload held its connection past the read timeout")
	}
}

// TestConnectionCapLetsNewClientsIn is a regression test: with a 256-file
// limit, 244 idle connections locked new clients out. Open connections
// are capped below the file limit, and at the cap the longest-idle one is
// closed for a new client — only when one comes: the listener used to
// close one as soon as the cap was reached, and which one raced with the
// server marking connections idle.
func TestConnectionCapLetsNewClientsIn(t *testing.T) {
	ln, addr := serveTestListener(t, HTTPConfig{MaxConnections: 4, IdleTimeout: time.Minute})
	var idle []net.Conn
	for i := range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		idle = append(idle, c)
		// In this order: the first is the longest idle.
		waitIdle(t, ln, i+1)
	}
	// A fifth client gets in: the server makes room.
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a new client was locked out: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("body %q", b)
	}
	if !closedByServer(t, idle[0], 5*time.Second) {
		t.Error("the longest-idle connection was not the one closed")
	}
}

// TestConnectionCapFollowsFileLimit: the cap stays under three quarters
// of the file limit, whatever is asked.
func TestConnectionCapFollowsFileLimit(t *testing.T) {
	got := HTTPConfig{MaxConnections: 1 << 30}.connCap()
	if got <= 0 || got >= 1<<30 {
		t.Errorf("cap %d for a limit of 2^30", got)
	}
	if got := (HTTPConfig{MaxConnections: 8}).connCap(); got != 8 {
		t.Errorf("cap %d, want 8", got)
	}
}

// TestHTTPServerLogsThroughSlog: the server's own errors (bad TLS, bad
// requests) go to the service's logger, not to stderr unformatted.
func TestHTTPServerLogsThroughSlog(t *testing.T) {
	var logs syncBuf
	ln, err := Listen("127.0.0.1:0", HTTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(http.NotFoundHandler(), ln, HTTPConfig{}, slog.New(slog.NewTextHandler(&logs, nil)))
	hs.ErrorLog.Print("http: something went wrong")
	_ = ln.Close()
	if !strings.Contains(logs.String(), "something went wrong") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("log: %q", logs.String())
	}
}
