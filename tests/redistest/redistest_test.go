package redistest

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeTB records what Require would do to a test, without doing it.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	skipped string
	fatal   string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// TestRequireWithoutBinaries checks that missing binaries skip a test, and
// fail it when CI asks for Redis, so a machine without the package cannot
// pass CI by skipping.
func TestRequireWithoutBinaries(t *testing.T) {
	tests := []struct {
		env       string
		wantSkip  bool
		wantFatal bool
	}{
		{env: "", wantSkip: true},
		{env: "0", wantSkip: true},
		{env: "1", wantFatal: true},
	}
	for _, tt := range tests {
		t.Run("env="+tt.env, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv(RequireEnv, tt.env)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Require(f)
			}()
			<-done
			if got := f.skipped != ""; got != tt.wantSkip {
				t.Errorf("skipped = %v (%q), want %v", got, f.skipped, tt.wantSkip)
			}
			if got := f.fatal != ""; got != tt.wantFatal {
				t.Errorf("failed = %v (%q), want %v", got, f.fatal, tt.wantFatal)
			}
			if msg := f.skipped + f.fatal; !strings.Contains(msg, "redis-server") || !strings.Contains(msg, RequireEnv) {
				t.Errorf("message %q does not name the binary and %s", msg, RequireEnv)
			}
		})
	}
}

func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	if out, err := s.CLI("set", "k", "v"); err != nil || out != "OK" {
		t.Fatalf("SET = %q, %v", out, err)
	}
	// redis-cli prints a setting's name, then its value: "save" then an
	// empty line means no snapshots.
	if out, err := s.CLI("config", "get", "save"); err != nil || out != "save" {
		t.Errorf("CONFIG GET save = %q, %v; want persistence off", out, err)
	}
	if out, err := s.CLI("config", "get", "appendonly"); err != nil || out != "appendonly\nno" {
		t.Errorf("CONFIG GET appendonly = %q, %v; want no", out, err)
	}

	s.Pause()
	if err := ping(s.Addr); err == nil {
		t.Error("a paused server answered PING")
	}
	s.Resume()
	if err := ping(s.Addr); err != nil {
		t.Errorf("PING after Resume: %v", err)
	}

	port := s.Port()
	s.Restart()
	if s.Port() != port {
		t.Errorf("Restart moved the server from port %d to %d", port, s.Port())
	}
	if out, err := s.CLI("get", "k"); err != nil || out != "" {
		t.Errorf("GET k after Restart = %q, %v; want an empty server", out, err)
	}

	s.Kill()
	if err := ping(s.Addr); err == nil {
		t.Error("a killed server answered PING")
	}
	s.Kill() // killing a dead server does nothing
	s.Stop()
	s.Restart()
	if err := ping(s.Addr); err != nil {
		t.Errorf("PING after Restart of a killed server: %v", err)
	}
	s.Pause()
	s.Stop() // a paused server still stops
	if err := ping(s.Addr); err == nil {
		t.Error("a stopped server answered PING")
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs())
	}
	nodes, err := c.Nodes[0].CLI("cluster", "nodes")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(nodes, "master"); got != 3 {
		t.Errorf("cluster nodes lists %d masters, want 3:\n%s", got, nodes)
	}
	for _, addr := range c.Addrs() {
		if !strings.Contains(nodes, addr) {
			t.Errorf("cluster nodes lacks %s:\n%s", addr, nodes)
		}
	}
}

func TestStartSentinel(t *testing.T) {
	master := Start(t)
	s := StartSentinel(t, master, "mymaster")
	out, err := s.CLI("sentinel", "get-master-addr-by-name", "mymaster")
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1\n" + fmt.Sprint(master.Port()); out != want {
		t.Errorf("get-master-addr-by-name = %q, want %q", out, want)
	}
}
