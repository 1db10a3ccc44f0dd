package tei_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// countingServer is an httptest server that counts the connections it
// accepted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func post(t *testing.T, hc *http.Client, ctx context.Context, url, body string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestTransportReusesConnections: sequential calls, answered with a length
// or chunked, share one connection, and each gets its own answer.
func TestTransportReusesConnections(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.Write([]byte("chunk one,"))
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "echo %s %s", r.URL.Path, b)
	})
	tr := tei.NewTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for i := range 20 {
		path := "/length"
		want := fmt.Sprintf("echo /length body %d", i)
		if i%2 == 1 {
			path = "/chunked"
			want = fmt.Sprintf("chunk one,echo /chunked body %d", i)
		}
		st, got, err := post(t, hc, t.Context(), srv.URL+path, fmt.Sprintf("body %d", i))
		if err != nil || st != 200 || got != want {
			t.Fatalf("call %d: %d %q %v, want %q", i, st, got, err, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 20 sequential calls, want 1", n)
	}
}

// TestTransportConcurrentCalls: concurrent calls each get their own
// answer, and come back to a pool no larger than the concurrency.
func TestTransportConcurrentCalls(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	tr := tei.NewTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				body := fmt.Sprintf("g%d i%d %s", g, i, strings.Repeat("x", i*100))
				if st, got, err := post(t, hc, t.Context(), srv.URL, body); err != nil || st != 200 || got != body {
					t.Errorf("g%d i%d: %d %v, %d bytes back for %d", g, i, st, err, len(got), len(body))
					return
				}
			}
		})
	}
	wg.Wait()
	if n := conns.Load(); n > 8 {
		t.Errorf("%d connections for 8 concurrent clients", n)
	}
}

// TestTransportRedialsAClosedIdleConnection: a server that closes each
// connection after one answer (without saying so) costs the next call
// nothing but a fresh connection, its body sent again whole.
func TestTransportRedialsAClosedIdleConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				b, _ := io.ReadAll(req.Body)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	tr := tei.NewTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String()
	for i := range 3 {
		body := fmt.Sprintf("call %d", i)
		if st, got, err := post(t, hc, t.Context(), url+"/embed", body); err != nil || st != 200 || got != body {
			t.Fatalf("call %d: %d %q %v", i, st, got, err)
		}
		time.Sleep(20 * time.Millisecond) // the close reaches the client
	}
	// A call without a body (the probers' GET /info) is sent again too.
	resp, err := hc.Get(url + "/info")
	if err != nil {
		t.Fatalf("GET after a closed idle connection: %v", err)
	}
	resp.Body.Close()
	if n := accepted.Load(); n != 4 {
		t.Errorf("%d connections, want 4", n)
	}
}

// TestTransportCancelUnblocks: a call whose context ends while the server
// says nothing returns at once with the context's error, and its
// connection is not reused; nor is one whose answer was left unread, or
// that the server asked to close.
func TestTransportCancelUnblocks(t *testing.T) {
	release := make(chan struct{})
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stall":
			<-release
		case "/close":
			w.Header().Set("Connection", "close")
		case "/big":
			w.Write([]byte(strings.Repeat("y", 1<<20)))
			return
		}
		w.Write([]byte("ok"))
	})
	defer close(release)
	tr := tei.NewTransport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := post(t, hc, ctx, srv.URL+"/stall", "x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled call: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the cancelled call returned after %v", d)
	}
	// Each step's connections so far: the stall's was dropped; /close's
	// answer closes the one it came on; an unread body drops its own.
	steps := []struct {
		method, path string
		read         bool
		conns        int32
	}{
		{http.MethodPost, "/ok", true, 2},    // a new one, kept
		{http.MethodPost, "/close", true, 2}, // reuses it, then closes it
		{http.MethodPost, "/ok", true, 3},    // a new one, kept
		{http.MethodGet, "/big", false, 3},   // reuses it, left unread: dropped
		{http.MethodPost, "/ok", true, 4},    // a new one
		{http.MethodPost, "/ok", true, 4},    // reuses it
	}
	for _, s := range steps {
		req, _ := http.NewRequest(s.method, srv.URL+s.path, strings.NewReader("x"))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", s.path, err)
		}
		if s.read {
			if b, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 200 || string(b) != "ok" {
				t.Fatalf("%s: %d %q %v", s.path, resp.StatusCode, b, err)
			}
		}
		resp.Body.Close()
		if n := conns.Load(); n != s.conns {
			t.Errorf("after %s: %d connections, want %d", s.path, n, s.conns)
		}
	}
}
