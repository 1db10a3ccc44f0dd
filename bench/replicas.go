package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// The sidecar's metrics the tools read, labelled by pool and replica (TEI's
// host:port).
const (
	metricInputs = "sidecar_upstream_inputs_total"
	metricCalls  = "sidecar_upstream_calls_total"
)

// PoolUse is how the sidecar spread one load's inputs over a pool's
// replicas: the deltas of its /metrics over the load, and what its /status
// said of each replica when the load ended.
type PoolUse struct {
	Pool     string       `json:"pool"`
	Replicas []ReplicaUse `json:"replicas"`
	// Spread is the largest distance of a replica's share from an even
	// share, as a fraction of the even share: 0 is perfectly even, 1 means
	// a replica got twice its share or none. The even share counts the
	// replicas that were ready or got inputs.
	Spread float64 `json:"spread"`
}

// ReplicaUse is one replica's part of a load.
type ReplicaUse struct {
	// Replica is TEI's host:port, the metrics' replica label.
	Replica string `json:"replica"`
	// URL, State and Limit come from /status when the load ended (Limit:
	// the most inputs in flight the scheduler lets it take); absent when
	// /status no longer lists the replica.
	URL   string `json:"url,omitempty"`
	State string `json:"state,omitempty"`
	Limit int    `json:"limit,omitempty"`
	// Inputs and Calls were sent to it during the load; FailedCalls are
	// the calls whose outcome was not ok.
	Inputs      int `json:"inputs"`
	Calls       int `json:"calls"`
	FailedCalls int `json:"failed_calls"`
	// InputsPerS is Inputs over the load's wall time.
	InputsPerS float64 `json:"inputs_per_s"`
	// Share is the replica's part of the pool's inputs, 0 to 1.
	Share float64 `json:"share"`
}

// replicaKey names one replica of one pool in /metrics.
type replicaKey struct{ pool, replica string }

// upstreamCounts are one replica's counters at one moment.
type upstreamCounts struct{ inputs, calls, failed float64 }

// counters are every replica's counters at one moment.
type counters map[replicaKey]upstreamCounts

// meter reads the sidecar's /metrics and /status around a load, to tell
// what each replica did during it. It is safe for concurrent use.
type meter struct {
	c *tei.Client
}

// newMeter reads the sidecar at base once, so a sidecar whose metrics
// cannot be read is known before any load: the error says why.
func newMeter(ctx context.Context, c *tei.Client) (*meter, error) {
	m := &meter{c: c}
	if _, err := m.scrape(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// scrape reads the upstream counters from /metrics.
func (m *meter) scrape(ctx context.Context) (counters, error) {
	resp, err := m.c.Do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s/metrics: %w", m.c.BaseURL(), err)
	}
	return parseCounters(resp.Body)
}

// parseCounters reads the upstream counters from a Prometheus text
// exposition.
func parseCounters(body []byte) (counters, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("the sidecar's /metrics: %w", err)
	}
	// A counter with labels is exposed from its first call on: before,
	// its absence means zero.
	out := counters{}
	for _, mt := range fams[metricInputs].GetMetric() {
		k := keyOf(mt)
		c := out[k]
		c.inputs += mt.GetCounter().GetValue()
		out[k] = c
	}
	if f := fams[metricCalls]; f != nil {
		for _, mt := range f.GetMetric() {
			k := keyOf(mt)
			c := out[k]
			v := mt.GetCounter().GetValue()
			c.calls += v
			if label(mt, "outcome") != "ok" {
				c.failed += v
			}
			out[k] = c
		}
	}
	return out, nil
}

func keyOf(m *dto.Metric) replicaKey {
	return replicaKey{pool: label(m, "pool"), replica: label(m, "replica")}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// replicas reads what /status says of every replica, by pool and
// host:port. A failure gives none: the counters still tell the load.
func (m *meter) replicas(ctx context.Context) map[replicaKey]statusReplica {
	resp, err := m.c.Do(ctx, http.MethodGet, "/status", nil)
	if err != nil {
		return nil
	}
	var st sidecarStatus
	if json.Unmarshal(resp.Body, &st) != nil {
		return nil
	}
	out := map[replicaKey]statusReplica{}
	for name, p := range st.Pools {
		for _, r := range p.Replicas {
			u, _, err := withoutCredentials(r.URL)
			if err != nil {
				continue
			}
			r.URL = u
			pu, err := url.Parse(u)
			if err != nil {
				continue
			}
			out[replicaKey{pool: name, replica: pu.Host}] = r
		}
	}
	return out
}

// measure runs load and returns how the sidecar spread its inputs, or nil
// when the metrics could not be read after it (the load's own error wins).
func (m *meter) measure(ctx context.Context, load func() (time.Duration, error)) ([]PoolUse, error) {
	before, err := m.scrape(ctx)
	if err != nil {
		return nil, err
	}
	elapsed, err := load()
	if err != nil {
		return nil, err
	}
	after, err := m.scrape(ctx)
	if err != nil {
		return nil, err
	}
	return poolUse(before, after, m.replicas(ctx), elapsed), nil
}

// poolUse is the difference of two scrapes, by pool, replicas in the order
// of their addresses; pools that got no inputs are left out.
func poolUse(before, after counters, status map[replicaKey]statusReplica, elapsed time.Duration) []PoolUse {
	byPool := map[string][]ReplicaUse{}
	keys := map[replicaKey]bool{}
	for k := range after {
		keys[k] = true
	}
	for k, r := range status {
		if r.State == ReplicaReady {
			keys[k] = true
		}
	}
	for k := range keys {
		a, b := after[k], before[k]
		u := ReplicaUse{
			Replica:     k.replica,
			Inputs:      int(math.Round(a.inputs - b.inputs)),
			Calls:       int(math.Round(a.calls - b.calls)),
			FailedCalls: int(math.Round(a.failed - b.failed)),
		}
		st, listed := status[k]
		if listed {
			u.URL, u.State, u.Limit = st.URL, st.State, st.Limit
		}
		// A replica that neither took part nor can is not the load's.
		if u.Inputs == 0 && u.Calls == 0 && (!listed || st.State != ReplicaReady) {
			continue
		}
		if elapsed > 0 {
			u.InputsPerS = float64(u.Inputs) / elapsed.Seconds()
		}
		byPool[k.pool] = append(byPool[k.pool], u)
	}
	var out []PoolUse
	for _, name := range slices.Sorted(maps.Keys(byPool)) {
		rs := byPool[name]
		total := 0
		for _, r := range rs {
			total += r.Inputs
		}
		if total == 0 {
			continue
		}
		slices.SortFunc(rs, func(a, b ReplicaUse) int { return compareAddr(a.Replica, b.Replica) })
		even := 1 / float64(len(rs))
		pu := PoolUse{Pool: name, Replicas: rs}
		for i := range rs {
			rs[i].Share = float64(rs[i].Inputs) / float64(total)
			pu.Spread = max(pu.Spread, math.Abs(rs[i].Share-even)/even)
		}
		out = append(out, pu)
	}
	return out
}

// compareAddr orders host:port addresses by host, then by port as a number.
func compareAddr(a, b string) int {
	ha, pa := splitAddr(a)
	hb, pb := splitAddr(b)
	if c := strings.Compare(ha, hb); c != 0 {
		return c
	}
	return pa - pb
}

func splitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// poolOf returns the named pool's use, or nil.
func poolOf(uses []PoolUse, name string) *PoolUse {
	for i := range uses {
		if uses[i].Pool == name {
			return &uses[i]
		}
	}
	return nil
}
