package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The simulator's model and what its answers must be.
const (
	model = "BAAI/bge-m3"
	dims  = 1024
	query = "What is machine learning?"
)

// Paths, in the order of the tables.
const (
	pathDirect  = "direct"
	pathNginx   = "nginx"
	pathSidecar = "sidecar"
)

// path is one way to the simulator.
type path struct {
	name string
	url  string // base URL
	pid  int    // the proxy's process; 0 for direct
}

// pathStats is one path's figures in one phase.
type pathStats struct {
	requests      int
	elapsed       time.Duration
	p50, p90, p99 time.Duration
	// cpuPerRequest is the proxy's CPU over the phase ÷ requests; -1 for
	// direct or when /proc could not be read.
	cpuPerRequest time.Duration
}

func (s pathStats) throughput() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.requests) / s.elapsed.Seconds()
}

// results is a whole run.
type results struct {
	oneClient, perPath time.Duration
	clients            int
	cpus               int
	nginxVersion       string
	one, many          map[string]pathStats
}

// measure starts the simulator, nginx and the sidecar, runs both phases
// and stops them.
func measure(ctx context.Context, o options, stderr io.Writer) (*results, error) {
	dir, err := os.MkdirTemp("", "misspath-")
	if err != nil {
		return nil, err
	}
	if o.keepWorkDir {
		fmt.Fprintln(stderr, "misspath: work directory", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	nginxBin, err := exec.LookPath(o.nginxBin)
	if err != nil {
		return nil, fmt.Errorf("nginx: %w (install nginx, or give -nginx)", err)
	}
	if o.sidecarBin == "" || o.teisimBin == "" {
		fmt.Fprintln(stderr, "misspath: building the sidecar and the simulator")
	}
	if o.sidecarBin == "" {
		if o.sidecarBin, err = build(ctx, dir, "tei-sidecar", "./cmd/tei-sidecar"); err != nil {
			return nil, err
		}
	}
	if o.teisimBin == "" {
		if o.teisimBin, err = build(ctx, dir, "teisim", "./tests/teisim/cmd/teisim"); err != nil {
			return nil, err
		}
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	simPort, nginxPort, sidePort := ports[0], ports[1], ports[2]

	sim, err := start("teisim", dir, o.teisimBin, "--model-id", model, "--sim-batch-cost", "0", "--sim-token-cost", "0",
		"--hostname", "127.0.0.1", "--port", strconv.Itoa(simPort))
	if err != nil {
		return nil, err
	}
	defer sim.stop()
	simURL := fmt.Sprintf("http://127.0.0.1:%d", simPort)
	if err := waitReady(ctx, sim, simURL+"/health"); err != nil {
		return nil, err
	}

	conf, err := writeNginxConf(dir, nginxPort, simPort)
	if err != nil {
		return nil, err
	}
	ngx, err := start("nginx", dir, nginxBin, "-p", dir, "-c", conf, "-e", dir+"/nginx-error.log", "-g", "daemon off;")
	if err != nil {
		return nil, err
	}
	defer ngx.stop()
	nginxURL := fmt.Sprintf("http://127.0.0.1:%d", nginxPort)
	if err := waitReady(ctx, ngx, nginxURL+"/health"); err != nil {
		return nil, err
	}

	side, err := start("sidecar", dir, o.sidecarBin, "serve", "--launch", "none", "--tei-embed-url", simURL,
		"--listen", fmt.Sprintf("127.0.0.1:%d", sidePort), "--embedding-cache-size", "0", "--no-access-log")
	if err != nil {
		return nil, err
	}
	defer side.stop()
	sideURL := fmt.Sprintf("http://127.0.0.1:%d", sidePort)
	if err := waitReady(ctx, side, sideURL+"/ready"); err != nil {
		return nil, err
	}

	paths := []path{
		{name: pathDirect, url: simURL},
		{name: pathNginx, url: nginxURL, pid: ngx.cmd.Process.Pid},
		{name: pathSidecar, url: sideURL, pid: side.cmd.Process.Pid},
	}
	c := newCaller(o.clients)
	for _, p := range paths {
		if err := c.checkAnswer(ctx, p); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(stderr, "misspath: warming up")
	for _, p := range paths {
		for range 200 {
			if _, err := c.call(ctx, p.url); err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
		}
		if _, err := c.drive(ctx, p, o.clients, 200*time.Millisecond); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}

	res := &results{oneClient: o.oneClient, perPath: o.perPath, clients: o.clients, cpus: runtime.NumCPU(), nginxVersion: nginxVersion(nginxBin)}
	fmt.Fprintf(stderr, "misspath: one client, %s\n", o.oneClient)
	if res.one, err = c.interleaved(ctx, paths, o.oneClient); err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "misspath: %d clients, %s a path\n", o.clients, o.perPath)
	res.many = map[string]pathStats{}
	for _, p := range paths {
		if res.many[p.name], err = c.drive(ctx, p, o.clients, o.perPath); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return res, nil
}

// nginxVersion is what nginx -v says, or "".
func nginxVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	v := strings.TrimSpace(string(out))
	return strings.TrimPrefix(v, "nginx version: ")
}

// caller sends the embeds.
type caller struct {
	hc     *http.Client
	prefix string
	n      atomic.Int64
}

func newCaller(clients int) *caller {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(64, 2*clients)
	t.DisableCompression = true // no proxy here compresses; keep the bytes equal
	return &caller{hc: &http.Client{Transport: t, Timeout: 30 * time.Second}, prefix: fmt.Sprintf("%08x", rand.Uint32())}
}

// body is a new query, never sent before: no cache could answer it.
func (c *caller) body() []byte {
	b, _ := json.Marshal(map[string][]string{"inputs": {fmt.Sprintf("%s #%s-%d", query, c.prefix, c.n.Add(1))}})
	return b
}

// call sends one embed and reads the whole answer.
func (c *caller) call(ctx context.Context, base string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/embed", bytes.NewReader(c.body()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// The sidecar's cache is off; the header says so again, and the
	// others pass it on unread.
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || len(b) == 0 || b[0] != '[' {
		return nil, fmt.Errorf("POST %s/embed: HTTP %d: %.200s", base, resp.StatusCode, b)
	}
	return b, nil
}

// checkAnswer checks that the path answers one vector of the model's
// dimensions.
func (c *caller) checkAnswer(ctx context.Context, p path) error {
	b, err := c.call(ctx, p.url)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	var v [][]float64
	if err := json.Unmarshal(b, &v); err != nil || len(v) != 1 || len(v[0]) != dims {
		return fmt.Errorf("%s: want one %d-d vector, got %.120s (%v)", p.name, dims, b, err)
	}
	return nil
}

// interleaved sends one request at a time, to each path in turn, the
// first path of a round rotating, until d has passed, so a drift of the
// machine falls on every path alike; each proxy's CPU is read around the
// phase, when only its own requests ran through it.
func (c *caller) interleaved(ctx context.Context, paths []path, d time.Duration) (map[string]pathStats, error) {
	before := make([]int64, len(paths))
	for i, p := range paths {
		before[i] = ticksOf(p)
	}
	lat := make([][]time.Duration, len(paths))
	begin := time.Now()
	for round := 0; time.Since(begin) < d; round++ {
		for k := range paths {
			i := (round + k) % len(paths)
			t0 := time.Now()
			if _, err := c.call(ctx, paths[i].url); err != nil {
				return nil, fmt.Errorf("%s: %w", paths[i].name, err)
			}
			lat[i] = append(lat[i], time.Since(t0))
		}
	}
	elapsed := time.Since(begin)
	out := map[string]pathStats{}
	for i, p := range paths {
		out[p.name] = summarize(lat[i], elapsed, cpuPer(p, before[i], len(lat[i])))
	}
	return out, nil
}

// drive runs clients workers on one path for d.
func (c *caller) drive(ctx context.Context, p path, clients int, d time.Duration) (pathStats, error) {
	before := ticksOf(p)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		lat      = make([][]time.Duration, clients)
	)
	begin := time.Now()
	deadline := begin.Add(d)
	for w := range clients {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				if _, err := c.call(ctx, p.url); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if firstErr != nil {
		return pathStats{}, firstErr
	}
	all := slices.Concat(lat...)
	return summarize(all, elapsed, cpuPer(p, before, len(all))), nil
}

// ticksOf reads a proxy's CPU ticks; -1 for direct or when unreadable.
func ticksOf(p path) int64 {
	if p.pid == 0 {
		return -1
	}
	t, err := cpuTicks(p.pid)
	if err != nil {
		return -1
	}
	return t
}

// cpuPer is the proxy's CPU since before, per request; -1 when unknown.
func cpuPer(p path, before int64, requests int) time.Duration {
	after := ticksOf(p)
	if before < 0 || after < 0 || requests == 0 {
		return -1
	}
	return time.Duration(after-before) * (time.Second / userHZ) / time.Duration(requests)
}

// summarize sorts the latencies and takes their percentiles.
func summarize(lat []time.Duration, elapsed, cpu time.Duration) pathStats {
	s := slices.Sorted(slices.Values(lat))
	return pathStats{
		requests: len(s), elapsed: elapsed, cpuPerRequest: cpu,
		p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99),
	}
}

// percentile interpolates linearly between the closest ranks.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(rank)
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + time.Duration(float64(sorted[hi]-sorted[lo])*(rank-float64(lo)))
}
