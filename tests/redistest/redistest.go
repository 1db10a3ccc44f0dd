// Package redistest runs real redis-server processes for tests: one server
// (Start), an n-master Cluster (StartCluster) or a Sentinel watching a
// server (StartSentinel), each on free loopback ports, with persistence off,
// in a temporary directory, and stopped when the test ends.
//
// Tests that need them call Require first (Start and the others do): where
// redis-server or redis-cli is missing the test is skipped, or failed when
// TEI_SIDECAR_REQUIRE_REDIS=1, as CI sets, so that a missing package cannot
// pass for a green run.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv names the variable that turns missing Redis binaries from a
// skip into a failure.
const RequireEnv = "TEI_SIDECAR_REQUIRE_REDIS"

// readyTimeout bounds the wait for a started server to answer PING, and for
// a cluster or sentinel to report itself ready.
const readyTimeout = 15 * time.Second

// startAttempts is how often Start tries fresh ports when another process
// takes the chosen one between the probe and redis-server's bind.
const startAttempts = 5

// Require skips the test, or fails it when TEI_SIDECAR_REQUIRE_REDIS=1,
// unless redis-server and redis-cli are on PATH.
func Require(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv(RequireEnv) == "1" {
				t.Fatalf("redistest: %s not found, and %s=1: %v", bin, RequireEnv, err)
			}
			t.Skipf("redistest: %s not found (install redis-server; set %s=1 to fail instead): %v", bin, RequireEnv, err)
		}
	}
}

// Server is one redis-server process on 127.0.0.1. Its methods are safe for
// concurrent use but are meant to be called from the test's goroutine.
type Server struct {
	t testing.TB
	// Addr is the server's host:port, which stays the same across Restart.
	Addr string
	// Dir is the server's working directory: its log (redis.log) and, for a
	// cluster node, its nodes.conf.
	Dir string

	conf string   // configuration file, first on the command line; may be empty
	args []string // everything but the port and conf

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error
}

// Start runs a redis-server and waits until it answers PING. Extra
// arguments go to redis-server after the defaults (for example "--maxmemory",
// "1mb"). The server is killed when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	Require(t)
	return startIn(t, t.TempDir(), "", func(int) []string { return args })
}

// startIn runs redis-server in dir on a free port, with conf (if not empty)
// as its configuration file; extra returns the arguments that depend on the
// chosen port.
func startIn(t testing.TB, dir, conf string, extra func(port int) []string) *Server {
	t.Helper()
	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s := &Server{
			t:    t,
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Dir:  dir,
			conf: conf,
			args: append([]string{
				"--bind", "127.0.0.1",
				"--save", "",
				"--appendonly", "no",
				"--dir", dir,
				"--logfile", filepath.Join(dir, "redis.log"),
				"--daemonize", "no",
			}, extra(port)...),
		}
		if lastErr = s.launch(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
		s.Kill()
	}
	t.Fatalf("redistest: redis-server did not start: %v\n%s", lastErr, tailLog(dir))
	return nil
}

// URL is the server's address as a redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Port is the server's TCP port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// launch starts the process and waits for PING to answer.
func (s *Server) launch() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(append(args, "--port", port), s.args...)
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = s.Dir
	setParentDeath(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			s.mu.Lock()
			err := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("redis-server on %s exited: %v", s.Addr, err)
		default:
		}
		if err := ping(s.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %s: %v", s.Addr, readyTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signal sends sig to the running process, if any, and reports whether it
// was running.
func (s *Server) signal(sig syscall.Signal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	return true
}

// wait blocks until the process has exited.
func (s *Server) wait() {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	if exited != nil {
		<-exited
	}
}

// Stop shuts the server down with SIGTERM (resuming it first if paused) and
// waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.signal(syscall.SIGCONT)
	if s.signal(syscall.SIGTERM) {
		s.wait()
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit. Its clients see their connections reset. Killing a stopped server
// does nothing.
func (s *Server) Kill() {
	if s.signal(syscall.SIGKILL) {
		s.wait()
	}
}

// Pause stops the process with SIGSTOP: connections stay open and new ones
// are still accepted by the kernel, but nothing answers, as with a
// black-holed or stalled node.
func (s *Server) Pause() {
	s.t.Helper()
	if !s.signal(syscall.SIGSTOP) {
		s.t.Fatalf("redistest: Pause: redis-server on %s is not running", s.Addr)
	}
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() {
	s.t.Helper()
	if !s.signal(syscall.SIGCONT) {
		s.t.Fatalf("redistest: Resume: redis-server on %s is not running", s.Addr)
	}
}

// Restart kills the server (if running) and starts a new, empty one on the
// same port, waiting until it answers PING. A cluster node keeps its
// identity and slots through its nodes.conf.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		s.Kill()
		s.t.Fatalf("redistest: restart: %v\n%s", err, tailLog(s.Dir))
	}
}

// CLI runs redis-cli against the server with args and returns its output
// without the trailing newline. Replies of the error type come back as
// errors.
func (s *Server) CLI(args ...string) (string, error) {
	_, port, _ := net.SplitHostPort(s.Addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", "127.0.0.1", "-p", port}, args...)...).CombinedOutput()
	text := strings.TrimRight(string(out), "\n")
	if err != nil {
		return text, fmt.Errorf("redis-cli %s: %w: %s", strings.Join(args, " "), err, text)
	}
	if strings.HasPrefix(text, "ERR ") || strings.HasPrefix(text, "(error)") {
		return text, errors.New(text)
	}
	return text, nil
}

// Cluster is n redis-server processes forming one Redis Cluster of n
// masters and no replicas, with the 16384 slots spread evenly.
type Cluster struct {
	// Nodes are the masters, in the order of their ports given to
	// redis-cli --cluster create.
	Nodes []*Server
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// StartCluster starts n (at least 3, Redis's minimum of masters) cluster
// nodes, joins them with redis-cli --cluster create, and waits until every
// node reports cluster_state:ok. The nodes are killed when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	Require(t)
	if n < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, got %d", n)
	}
	c := &Cluster{}
	for range n {
		busPort, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		c.Nodes = append(c.Nodes, startIn(t, t.TempDir(), "", func(int) []string {
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				// The bus port is chosen too, since port+10000 may be in
				// use or past 65535.
				"--cluster-port", strconv.Itoa(busPort),
				"--cluster-node-timeout", "5000",
			}
		}))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(readyTimeout)
	for _, node := range c.Nodes {
		for {
			info, err := node.CLI("cluster", "info")
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ready within %s: %v\n%s", node.Addr, readyTimeout, err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// StartSentinel starts a Sentinel that monitors master under the name
// masterName, and waits until it reports the master's address. The
// Sentinel is killed when the test ends.
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	host, port, _ := net.SplitHostPort(master.Addr)
	// Sentinel rewrites its configuration file, so it gets one of its own.
	body := fmt.Sprintf("sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 5000\n", masterName, host, port, masterName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := startIn(t, dir, conf, func(int) []string { return []string{"--sentinel"} })
	deadline := time.Now().Add(readyTimeout)
	for {
		out, err := s.CLI("sentinel", "get-master-addr-by-name", masterName)
		if err == nil && strings.Contains(out, port) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel %s does not report master %q within %s: %v %s", s.Addr, masterName, readyTimeout, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis-server binds it; start then tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends one RESP PING and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// tailLog returns the end of the server log in dir, for failure messages.
func tailLog(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "redis.log"))
	if err != nil {
		return "(no redis.log: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
