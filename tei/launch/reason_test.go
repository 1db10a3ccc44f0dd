package launch

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// TestSummary wants every launch failure said in words /ready may show:
// what failed and what to do, never an address or a raw network error.
func TestSummary(t *testing.T) {
	const img = plan.Registry + ":cpu-1.9.3"
	pull := func(msg string) error { return &PullError{Image: img, Err: errors.New(msg)} }
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"manifest unknown", pull("manifest for " + img + " not found: manifest unknown: manifest unknown"),
			"pulling " + img + " failed: manifest unknown"},
		{"registry unreachable", pull(`Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io on 10.0.0.2:53: no such host`),
			"pulling " + img + " failed: the registry cannot be reached"},
		{"no such repository", pull("pull access denied for tei-x, repository does not exist or may require 'docker login': denied"),
			"pulling " + img + " failed: no such repository, or it needs a login (pull private images beforehand)"},
		{"rate limit", pull("toomanyrequests: retry later"), "pulling " + img + " failed: the registry's rate limit was reached"},
		{"anything else", pull("something 192.168.1.1 said"),
			"pulling " + img + " failed: the Docker engine refused the pull (the sidecar's log says why)"},
		{"wrapped", fmt.Errorf("starting: %w", pull("manifest unknown")), "pulling " + img + " failed: manifest unknown"},
		{"exit while downloading", &LaunchError{Err: &ExitError{Status: 1, Phase: PhaseDownloading}},
			"TEI exited with status 1 while downloading the model"},
		{"killed after it served", &ExitError{Status: 137, Phase: PhaseReady}, "TEI exited with status 137"},
		{"killed by a signal", &ExitError{Status: -1}, "TEI was killed"},
		{"no GPU runtime", &LaunchError{Err: errors.New("docker start"), Diagnosis: Diagnosis{Cause: CauseNoGPURuntime}},
			"Docker cannot give TEI's container a GPU: install the NVIDIA Container Toolkit, or set TEI_FALLBACK_CPU=true"},
		{"not ready in time", &LaunchError{Err: errNotReady}, "TEI was not ready in time (STARTUP_TIMEOUT)"},
		{"plan mismatch", &LaunchError{Err: fmt.Errorf("%w: model_id is \"x\"", errMismatch)},
			"TEI's /info does not match the plan (the sidecar's log says how)"},
		{"name taken", fmt.Errorf("creating container tei-embed: %w: %w", errNameTaken, errors.New("Conflict")),
			"a container tei-sidecar does not manage has TEI's container name (the sidecar's log names it)"},
		{"lost track", fmt.Errorf("%w abc: %w", errLostTrack, errors.New("unexpected EOF from 10.0.0.1")),
			"the sidecar lost track of TEI's container"},
		{"port taken (Docker)", &LaunchError{Err: errors.New("docker start: Bind for 127.0.0.1:41234 failed: port is already allocated")},
			"another program took the loopback port kept for TEI"},
		{"port taken (the router)", &LaunchError{Err: &ExitError{Status: 1, Phase: PhaseWarmingUp},
			Logs: []string{"Error: Address already in use (os error 98)"}}, "another program took the loopback port kept for TEI"},
		{"unknown", errors.New("dial unix /var/run/docker.sock: connect: permission denied"),
			"TEI failed to start (the sidecar's log says why)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summary(tc.err); got != tc.want {
				t.Errorf("Summary = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAPIKey: a generated key is 32 random bytes in hex; WithAPIKey passes
// it to TEI as a secret, redacted when shown, and left out of the hash.
func TestAPIKey(t *testing.T) {
	a, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewAPIKey()
	if len(a) != 64 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Errorf("keys %q and %q: want two different 64-digit hex strings", a, b)
	}
	p := plan.Plan{Role: plan.RoleEmbedding, Env: map[string]string{"HF_TOKEN": "hf"}, SecretEnv: []string{"HF_TOKEN"}}
	withA, withB := WithAPIKey(p, a), WithAPIKey(p, b)
	if withA.Env[APIKeyEnv] != a || apiKey(withA) != a || p.Env[APIKeyEnv] != "" {
		t.Errorf("env %v (and the original's %v)", withA.Env, p.Env)
	}
	if withA.Hash() != withB.Hash() {
		t.Error("the key's value changes the plan's hash")
	}
	if planHash(withA) != p.Hash() || planHash(p) != p.Hash() {
		t.Error("containers are not labelled with the plan's hash as detect shows it")
	}
	if withA.Env["HF_TOKEN"] != "hf" || len(withA.SecretEnv) != 2 {
		t.Errorf("planHash changed its argument: %v %v", withA.Env, withA.SecretEnv)
	}
	if shown := withA.Redact().Env[APIKeyEnv]; shown != plan.Redacted {
		t.Errorf("shown as %q", shown)
	}
	if again := WithAPIKey(withA, a); len(again.SecretEnv) != 2 {
		t.Errorf("secret keys %v after a second WithAPIKey", again.SecretEnv)
	}
	if same := WithAPIKey(p, ""); same.Env[APIKeyEnv] != "" || len(same.SecretEnv) != 1 {
		t.Errorf("an empty key changed the plan: %v", same.Env)
	}
}

func TestCommonKey(t *testing.T) {
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{nil, ""},
		{[]string{"", ""}, ""},
		{[]string{"a", "a", "a"}, "a"},
		{[]string{"a", "b"}, "a"},
		{[]string{"a", "b", "b"}, "b"},
		{[]string{"", "b", "a"}, "b"},
	} {
		if got := commonKey(tc.keys); got != tc.want {
			t.Errorf("commonKey(%q) = %q, want %q", tc.keys, got, tc.want)
		}
	}
}

// TestPortBook: a replica keeps its port; the book holds it (refusing
// nothing, but answering nobody) while TEI does not listen there, and lets
// TEI have it.
func TestPortBook(t *testing.T) {
	var b portBook
	defer b.close()
	p1, err := b.reserve("embed")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := b.reserve("embed"); again != p1 {
		t.Errorf("embed reserved %d, then %d", p1, again)
	}
	p2, _ := b.reserve("embed-1")
	if p2 == p1 {
		t.Errorf("two replicas share port %d", p1)
	}
	addr := "127.0.0.1:" + strconv.Itoa(p1)
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatal("a held port could be bound by another program")
	}
	// A client of a held port is closed on, not left hanging.
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the holder answered")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("the holder left the connection hanging")
	}
	c.Close()

	b.release("embed")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TEI cannot bind its released port: %v", err)
	}
	b.hold("embed") // TEI still listens: best effort, no error
	ln.Close()
	b.hold("embed")
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Error("the port was not held again after TEI let go of it")
	}
	if got, ok := b.lookup("embed"); !ok || got != p1 {
		t.Errorf("lookup = %d, %t", got, ok)
	}
	b.assign("embed-1", 1) // an adopted container's port
	if got, _ := b.lookup("embed-1"); got != 1 {
		t.Errorf("assigned port %d", got)
	}
	if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p2)); err != nil {
		t.Errorf("embed-1's old port is still held: %v", err)
	} else {
		ln.Close()
	}
}
