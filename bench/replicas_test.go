package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// exposition builds the sidecar's upstream counters as /metrics writes
// them: inputs by pool and replica, calls by outcome too.
func exposition(inputs map[replicaKey]float64, calls map[replicaKey]map[string]float64) []byte {
	var b strings.Builder
	b.WriteString("# HELP sidecar_upstream_inputs_total Inputs sent to TEI by pool and replica.\n# TYPE sidecar_upstream_inputs_total counter\n")
	for k, v := range inputs {
		fmt.Fprintf(&b, "sidecar_upstream_inputs_total{pool=%q,replica=%q} %g\n", k.pool, k.replica, v)
	}
	b.WriteString("# HELP sidecar_upstream_calls_total Calls to TEI.\n# TYPE sidecar_upstream_calls_total counter\n")
	for k, byOutcome := range calls {
		for o, v := range byOutcome {
			fmt.Fprintf(&b, "sidecar_upstream_calls_total{outcome=%q,pool=%q,replica=%q,route=\"/embed\"} %g\n", o, k.pool, k.replica, v)
		}
	}
	b.WriteString("# TYPE go_goroutines gauge\ngo_goroutines 12\n")
	return []byte(b.String())
}

// TestBenchPoolUse checks the per-replica figures from two scrapes: deltas,
// shares, the spread from an even share, failed calls, and which replicas
// count.
func TestBenchPoolUse(t *testing.T) {
	a := replicaKey{PoolEmbed, "10.0.0.1:8080"}
	b := replicaKey{PoolEmbed, "10.0.0.1:9080"}
	c := replicaKey{PoolEmbed, "10.0.0.2:80"}
	r := replicaKey{PoolRerank, "10.0.0.3:80"}
	before, err := parseCounters(exposition(
		map[replicaKey]float64{a: 100, b: 50, r: 7},
		map[replicaKey]map[string]float64{a: {"ok": 10}, b: {"ok": 5, "http_503": 1}, r: {"ok": 7}}))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseCounters(exposition(
		map[replicaKey]float64{a: 400, b: 150, r: 7},
		map[replicaKey]map[string]float64{a: {"ok": 40}, b: {"ok": 14, "http_503": 2}, r: {"ok": 7}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		status map[replicaKey]statusReplica
		want   string
	}{
		{name: "without /status", want: "embed spread 0.50: 10.0.0.1:8080 300 30/0 0.75 150/s -/0; 10.0.0.1:9080 100 10/1 0.25 50/s -/0"},
		{name: "a ready replica that got nothing counts in the even share",
			status: map[replicaKey]statusReplica{
				a: {URL: "http://10.0.0.1:8080", State: "ready", Limit: 64},
				b: {URL: "http://10.0.0.1:9080", State: "draining", Limit: 8},
				c: {URL: "http://10.0.0.2:80", State: "ready", Limit: 32},
			},
			want: "embed spread 1.25: 10.0.0.1:8080 300 30/0 0.75 150/s ready/64; 10.0.0.1:9080 100 10/1 0.25 50/s draining/8; 10.0.0.2:80 0 0/0 0.00 0/s ready/32"},
		{name: "a replica neither ready nor used is left out",
			status: map[replicaKey]statusReplica{c: {URL: "http://10.0.0.2:80", State: "down"}},
			want:   "embed spread 0.50: 10.0.0.1:8080 300 30/0 0.75 150/s -/0; 10.0.0.1:9080 100 10/1 0.25 50/s -/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The rerank pool got no inputs during the load: left out.
			uses := poolUse(before, after, tc.status, 2*time.Second)
			var parts []string
			for _, u := range uses {
				var rs []string
				for _, ru := range u.Replicas {
					rs = append(rs, fmt.Sprintf("%s %d %d/%d %.2f %.0f/s %s/%d", ru.Replica, ru.Inputs, ru.Calls, ru.FailedCalls, ru.Share, ru.InputsPerS, orDash(ru.State), ru.Limit))
				}
				parts = append(parts, fmt.Sprintf("%s spread %.2f: %s", u.Pool, u.Spread, strings.Join(rs, "; ")))
			}
			if got := strings.Join(parts, " | "); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestBenchCountersBeforeAnyCall checks that a sidecar which has not yet
// called TEI, and so exposes no upstream counters (a labelled counter
// appears with its first call), reads as zero, not as an error.
func TestBenchCountersBeforeAnyCall(t *testing.T) {
	got, err := parseCounters([]byte("# TYPE go_goroutines gauge\ngo_goroutines 9\n"))
	if err != nil || len(got) != 0 {
		t.Errorf("counters %v, err %v; want none and no error", got, err)
	}
	if _, err := parseCounters([]byte("not { a metric")); err == nil {
		t.Error("a malformed exposition gave no error")
	}
}

// TestBenchScaling checks the capacity ratio: best level against best level,
// the replica count from the sidecar's best level.
func TestBenchScaling(t *testing.T) {
	use := func(n int) []PoolUse {
		rs := make([]ReplicaUse, n)
		return []PoolUse{{Pool: PoolEmbed, Replicas: rs}}
	}
	levels := []SweepLevel{
		{Clients: 4, Target: Load{Throughput: 300, Replicas: use(3)}, Baseline: &Load{Throughput: 250}},
		{Clients: 16, Target: Load{Throughput: 900, Replicas: use(3)}, Baseline: &Load{Throughput: 400}},
		{Clients: 64, Target: Load{Throughput: 1100, Replicas: use(3)}, Baseline: &Load{Throughput: 380}},
	}
	sc := scaling(levels)
	if sc == nil {
		t.Fatal("no scaling")
	}
	if got := fmt.Sprintf("%d %g@%d %g@%d %.3f %.3f %v", sc.Replicas, sc.Target, sc.TargetClients, sc.Baseline, sc.BaselineClients, sc.Ratio, sc.Efficiency, sc.BaselineSaturated); got != "3 1100@64 400@16 2.750 0.917 true" {
		t.Errorf("scaling = %s", got)
	}
	// One replica at its best at the last level: saturated only when that
	// level gained less than 10%.
	for _, tc := range []struct {
		last float64
		want bool
	}{{439, true}, {441, false}} {
		levels[2].Baseline.Throughput = tc.last
		if sc := scaling(levels); sc.BaselineClients != 64 || sc.BaselineSaturated != tc.want {
			t.Errorf("last level at %g after 400: saturated %v, want %v", tc.last, sc.BaselineSaturated, tc.want)
		}
	}
	if sc := scaling(levels[:1]); sc.BaselineSaturated {
		t.Error("a one-level sweep cannot show saturation")
	}
	if scaling([]SweepLevel{{Clients: 1, Target: Load{Throughput: 1}}}) != nil {
		t.Error("scaling without a baseline")
	}
	if scaling([]SweepLevel{{Clients: 1, Target: Load{Throughput: 1}, Baseline: &Load{Throughput: 1}}}) != nil {
		t.Error("scaling without figures per replica")
	}
}
