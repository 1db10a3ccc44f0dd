package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Load scenarios: loads that show how the sidecar's scheduler orders work,
// run after the sweep, each on the target and then on the baseline.
const (
	// LoadIngest is IngestClients clients sending IngestBatch texts a call
	// while one client sends single queries: the queries must not wait
	// behind the ingest, and the ingest must not lose throughput.
	LoadIngest = "ingest"
	// LoadFlood is FloodClients clients of single queries.
	LoadFlood = "flood"
	// LoadMisses is MissClients clients of single queries: concurrent
	// cache misses.
	LoadMisses = "misses"
)

// Loads lists the load scenarios in the order they run.
var Loads = []string{LoadIngest, LoadFlood, LoadMisses}

// The load scenarios' shapes, fixed so that runs compare.
const (
	IngestClients = 8
	IngestBatch   = 32
	FloodClients  = 256
	MissClients   = 8
	// DefaultLoadDuration bounds each load scenario on each server.
	DefaultLoadDuration = 5 * time.Second
)

// Goals of the ingest scenario, as target ÷ baseline.
const (
	// GoalQueryP99 is the most the queries' p99 through the sidecar may be,
	// as a share of the same load's straight to TEI.
	GoalQueryP99 = 0.25
	// GoalIngestThroughput is the least share of TEI's own ingest
	// throughput the sidecar must keep.
	GoalIngestThroughput = 0.9
)

// LoadReport is one load scenario on the target and the baseline.
type LoadReport struct {
	// Name is LoadIngest, LoadFlood or LoadMisses; Title says what it sends.
	Name  string `json:"name"`
	Title string `json:"title"`
	// DurationS bounds the measurement on each server, warm-up excluded.
	DurationS float64     `json:"duration_s"`
	Target    LoadResult  `json:"target"`
	Baseline  *LoadResult `json:"baseline,omitempty"`
	// Compare holds target ÷ baseline figures; empty without a baseline.
	Compare []Comparison `json:"compare"`
}

// LoadResult is one server's share of a load scenario.
type LoadResult struct {
	// Queries are the single-query requests; Ingest, of the ingest
	// scenario only, the batches.
	Queries Traffic  `json:"queries"`
	Ingest  *Traffic `json:"ingest,omitempty"`
	// Replicas is how the sidecar spread the load's inputs (its /metrics);
	// absent when the server is not the sidecar.
	Replicas []PoolUse `json:"replicas,omitempty"`
	// PinnedTo counts the TEI replicas the clients were spread over, client
	// i on the (i mod n)th; absent when they all called one server.
	PinnedTo int `json:"pinned_to,omitempty"`
}

// Traffic is what one group of clients of a load did.
type Traffic struct {
	Clients int `json:"clients"`
	// Batch is the texts of one request.
	Batch int `json:"batch"`
	// Requests and Inputs completed while measured; Refused counts the
	// requests answered 429 (turned away for load), which are retried
	// after 10ms and not in the latencies.
	Requests  int     `json:"requests"`
	Inputs    int     `json:"inputs"`
	Refused   int     `json:"refused"`
	DurationS float64 `json:"duration_s"`
	// RequestsPerS and InputsPerS are over DurationS.
	RequestsPerS float64 `json:"requests_per_s"`
	InputsPerS   float64 `json:"inputs_per_s"`
	// Mean and the percentiles are request latencies in seconds.
	Mean float64 `json:"mean_s"`
	P50  float64 `json:"p50_s"`
	P95  float64 `json:"p95_s"`
	P99  float64 `json:"p99_s"`
}

// Comparison is one figure of a load on both servers.
type Comparison struct {
	// Metric names the figure and its unit: query_p50_s, query_p99_s,
	// ingest_inputs_per_s, queries_per_s, p99_s.
	Metric   string  `json:"metric"`
	Target   float64 `json:"target"`
	Baseline float64 `json:"baseline"`
	// Ratio is Target ÷ Baseline.
	Ratio float64 `json:"ratio"`
	// GoalMax and GoalMin bound Ratio where the scenario sets a goal; Met
	// says whether Ratio is within it.
	GoalMax *float64 `json:"goal_max,omitempty"`
	GoalMin *float64 `json:"goal_min,omitempty"`
	Met     *bool    `json:"met,omitempty"`
}

// loadTitle says what a load scenario sends.
func loadTitle(name string) string {
	switch name {
	case LoadIngest:
		return fmt.Sprintf("Ingest + queries: %d clients of %d-text batches, 1 client of single queries", IngestClients, IngestBatch)
	case LoadFlood:
		return fmt.Sprintf("Flood: %d clients of single queries", FloodClients)
	case LoadMisses:
		return fmt.Sprintf("Concurrent misses: %d clients of single queries", MissClients)
	}
	return name
}

// runLoad runs one load scenario on every participant in turn.
func runLoad(ctx context.Context, name string, parts []participant, duration, timeout time.Duration, tick func(string)) (LoadReport, error) {
	rep := LoadReport{Name: name, Title: loadTitle(name), DurationS: duration.Seconds(), Compare: []Comparison{}}
	for _, p := range parts {
		res, err := p.loadOn(ctx, name, duration, timeout)
		if err != nil {
			return rep, fmt.Errorf("%s on the %s: %w", rep.Title, p.name, p.c.explain(err))
		}
		if p.name == "target" {
			rep.Target = res
		} else {
			rep.Baseline = &res
		}
		tick(name)
	}
	if b := rep.Baseline; b != nil {
		rep.Compare = compareLoads(name, rep.Target, *b)
	}
	return rep, nil
}

// loadOn runs one load scenario on p: a warm-up of one request per client,
// then the load for duration, watched through the sidecar's metrics when
// p is the sidecar.
func (p participant) loadOn(ctx context.Context, name string, duration, timeout time.Duration) (LoadResult, error) {
	var res LoadResult
	if n := len(p.c.pool); n > 1 && p.c.noCache == nil {
		res.PinnedTo = n
	}
	run := func(warm bool) (time.Duration, error) {
		d, n := duration, math.MaxInt
		if warm {
			d = timeout
		}
		switch name {
		case LoadIngest:
			if warm {
				n = IngestClients
			}
			q, in, err := ingestLoad(ctx, p.c, d, n, warm)
			if !warm {
				res.Queries, res.Ingest = q, &in
			}
			return time.Duration(in.DurationS * float64(time.Second)), err
		case LoadFlood, LoadMisses:
			clients := FloodClients
			if name == LoadMisses {
				clients = MissClients
			}
			if warm {
				n = clients
			}
			l, err := drive(ctx, clients, d, n, func(ctx context.Context, w int) error {
				return refusal(p.c.forLoad(w).query(ctx, unique(ShortQuery), nil))
			})
			if !warm {
				res.Queries = traffic(l, clients, 1)
			}
			return l.elapsed, err
		}
		return 0, fmt.Errorf("unknown load scenario %q", name)
	}
	if _, err := run(true); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	if p.m == nil {
		_, err := run(false)
		return res, err
	}
	uses, err := p.m.measure(ctx, func() (time.Duration, error) { return run(false) })
	res.Replicas = uses
	return res, err
}

// ingestLoad drives IngestClients clients of IngestBatch unique texts a
// call and one client of unique single queries at once, for duration or
// until each group has started n requests. The first error stops both.
func ingestLoad(ctx context.Context, c *client, duration time.Duration, n int, warm bool) (queries, ingest Traffic, err error) {
	var next atomic.Int64
	var ql, il load
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		qn := n
		if warm {
			qn = 1
		}
		ql, err = drive(gctx, 1, duration, qn, func(ctx context.Context, w int) error {
			return refusal(c.forLoad(w).query(ctx, unique(ShortQuery), nil))
		})
		return err
	})
	g.Go(func() error {
		var err error
		il, err = drive(gctx, IngestClients, duration, n, func(ctx context.Context, w int) error {
			first := int(next.Add(IngestBatch)) - IngestBatch
			texts := make([]string, IngestBatch)
			for i := range texts {
				texts[i] = unique(longDocs[(first+i)%len(longDocs)])
			}
			// Worker w+1 so that with several replicas the query client
			// and the first ingest client are not pinned together.
			return refusal(c.forLoad(w+1).documents(ctx, texts, nil))
		})
		return err
	})
	err = g.Wait()
	return traffic(ql, 1, 1), traffic(il, IngestClients, IngestBatch), err
}

// refusal marks a 429 as errRefused, which a load counts and goes on.
func refusal(err error) error {
	if se, ok := errors.AsType[*StatusError](err); ok && se.Status == http.StatusTooManyRequests {
		return fmt.Errorf("%w: %w", errRefused, err)
	}
	return err
}

// traffic summarises a group's load.
func traffic(l load, clients, batch int) Traffic {
	st := summarize(seconds(l.latencies), 1)
	t := Traffic{
		Clients: clients, Batch: batch,
		Requests: len(l.latencies), Inputs: len(l.latencies) * batch, Refused: l.refused,
		DurationS: l.elapsed.Seconds(),
		Mean:      st.Mean, P50: st.P50, P95: st.P95, P99: st.P99,
	}
	if l.elapsed > 0 {
		t.RequestsPerS = float64(t.Requests) / l.elapsed.Seconds()
		t.InputsPerS = float64(t.Inputs) / l.elapsed.Seconds()
	}
	return t
}

// compareLoads sets the scenario's figures side by side, with its goals.
func compareLoads(name string, t, b LoadResult) []Comparison {
	cmp := func(metric string, tv, bv float64) Comparison {
		c := Comparison{Metric: metric, Target: tv, Baseline: bv}
		if bv != 0 {
			c.Ratio = tv / bv
		}
		return c
	}
	goalMax := func(c Comparison, g float64) Comparison {
		met := c.Baseline != 0 && c.Ratio <= g
		c.GoalMax, c.Met = &g, &met
		return c
	}
	goalMin := func(c Comparison, g float64) Comparison {
		met := c.Baseline != 0 && c.Ratio >= g
		c.GoalMin, c.Met = &g, &met
		return c
	}
	switch name {
	case LoadIngest:
		out := []Comparison{
			cmp("query_p50_s", t.Queries.P50, b.Queries.P50),
			goalMax(cmp("query_p99_s", t.Queries.P99, b.Queries.P99), GoalQueryP99),
		}
		if t.Ingest != nil && b.Ingest != nil {
			out = append(out, goalMin(cmp("ingest_inputs_per_s", t.Ingest.InputsPerS, b.Ingest.InputsPerS), GoalIngestThroughput))
		}
		return out
	case LoadFlood:
		return []Comparison{
			cmp("queries_per_s", t.Queries.RequestsPerS, b.Queries.RequestsPerS),
			cmp("p99_s", t.Queries.P99, b.Queries.P99),
		}
	}
	return []Comparison{
		cmp("queries_per_s", t.Queries.RequestsPerS, b.Queries.RequestsPerS),
		cmp("p50_s", t.Queries.P50, b.Queries.P50),
	}
}
