package compose_test

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// step is both the scrape and the rule evaluation interval of
// prometheus.yml.
const step = 15 * time.Second

// series is one made-up time series: a sample every step from time 0.
type series struct {
	metric string // PromQL notation: name{label="value",...}
	values []float64
}

// flat is n samples of v.
func flat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// counter is a counter that grows by each segment's rate (per second)
// for its duration, in turn, from 0.
func counter(segments ...segment) []float64 {
	var out []float64
	v := 0.0
	for _, s := range segments {
		for range int(s.d / step) {
			out = append(out, v)
			v += s.perSecond * step.Seconds()
		}
	}
	return out
}

type segment struct {
	perSecond float64
	d         time.Duration
}

// alternate is n samples alternating between a and b.
func alternate(a, b float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = a
		if i%2 == 1 {
			out[i] = b
		}
	}
	return out
}

// steps is the number of samples in d.
func steps(d time.Duration) int { return int(d / step) }

// The labels every made-up sidecar series carries, as a scrape adds them.
const target = `job="tei-sidecar",instance="sidecar:8080"`

// alertCase is one history of series and whether an alert fires at its
// end.
type alertCase struct {
	alert  string
	name   string
	series []series
	at     time.Duration
	fires  bool
}

var alertCases = []alertCase{
	{"TEISidecarDown", "not scraped", []series{{`up{` + target + `}`, flat(0, steps(5*time.Minute))}}, 4 * time.Minute, true},
	{"TEISidecarDown", "scraped", []series{{`up{` + target + `}`, flat(1, steps(5*time.Minute))}}, 4 * time.Minute, false},

	{"TEISidecarReplicaBreakerOpen", "open, probing and failing", []series{
		{`sidecar_breaker_state{` + target + `,pool="embed",replica="tei-1:80"}`, alternate(2, 1, steps(5*time.Minute))},
		{`sidecar_breaker_state{` + target + `,pool="embed",replica="tei-2:80"}`, flat(0, steps(5*time.Minute))},
	}, 4 * time.Minute, true},
	{"TEISidecarReplicaBreakerOpen", "open for a minute, then closed", []series{
		{`sidecar_breaker_state{` + target + `,pool="embed",replica="tei-1:80"}`, append(flat(2, steps(time.Minute)), flat(0, steps(4*time.Minute))...)},
	}, 4 * time.Minute, false},
	{"TEISidecarReplicaBreakerOpen", "half-open and idle", []series{
		{`sidecar_breaker_state{` + target + `,pool="embed",replica="tei-1:80"}`, flat(1, steps(5*time.Minute))},
	}, 4 * time.Minute, false},

	{"TEISidecarNoReadyReplica", "every replica down", []series{
		{`sidecar_replica_state{` + target + `,pool="embed",replica="tei-1:80",state="ready"}`, flat(0, steps(10*time.Minute))},
		{`sidecar_replica_state{` + target + `,pool="embed",replica="tei-1:80",state="down"}`, flat(1, steps(10*time.Minute))},
		{`sidecar_replica_state{` + target + `,pool="embed",replica="tei-2:80",state="ready"}`, flat(0, steps(10*time.Minute))},
		{`sidecar_replica_state{` + target + `,pool="embed",replica="tei-2:80",state="starting"}`, flat(1, steps(10*time.Minute))},
	}, 8 * time.Minute, true},
	{"TEISidecarNoReadyReplica", "one replica of two ready", []series{
		{`sidecar_replica_state{` + target + `,pool="embed",replica="tei-1:80",state="ready"}`, flat(0, steps(10*time.Minute))},
		{`sidecar_replica_state{` + target + `,pool="embed",replica="tei-1:80",state="down"}`, flat(1, steps(10*time.Minute))},
		{`sidecar_replica_state{` + target + `,pool="embed",replica="tei-2:80",state="ready"}`, flat(1, steps(10*time.Minute))},
	}, 8 * time.Minute, false},

	// An hour at 90% hits, shared between the layers, then the shared
	// layer stops answering: 30%.
	{"TEISidecarCacheHitRatioCollapse", "the shared layer gone", []series{
		{`sidecar_cache_hits_total{` + target + `,cache="embed",layer="memory"}`, counter(segment{3, time.Hour}, segment{3, 20 * time.Minute})},
		{`sidecar_cache_hits_total{` + target + `,cache="embed",layer="redis"}`, counter(segment{6, time.Hour}, segment{0, 20 * time.Minute})},
		{`sidecar_cache_misses_total{` + target + `,cache="embed"}`, counter(segment{1, time.Hour}, segment{7, 20 * time.Minute})},
	}, 80 * time.Minute, true},
	{"TEISidecarCacheHitRatioCollapse", "the same fall with little traffic", []series{
		{`sidecar_cache_hits_total{` + target + `,cache="embed",layer="memory"}`, counter(segment{0.09, time.Hour}, segment{0.03, 20 * time.Minute})},
		{`sidecar_cache_misses_total{` + target + `,cache="embed"}`, counter(segment{0.01, time.Hour}, segment{0.07, 20 * time.Minute})},
	}, 80 * time.Minute, false},
	{"TEISidecarCacheHitRatioCollapse", "steady", []series{
		{`sidecar_cache_hits_total{` + target + `,cache="embed",layer="memory"}`, counter(segment{9, 80 * time.Minute})},
		{`sidecar_cache_misses_total{` + target + `,cache="embed"}`, counter(segment{1, 80 * time.Minute})},
	}, 80 * time.Minute, false},
	{"TEISidecarCacheHitRatioCollapse", "never much to lose", []series{
		{`sidecar_cache_hits_total{` + target + `,cache="embed",layer="memory"}`, counter(segment{1, time.Hour}, segment{0.2, 20 * time.Minute})},
		{`sidecar_cache_misses_total{` + target + `,cache="embed"}`, counter(segment{9, time.Hour}, segment{9.8, 20 * time.Minute})},
	}, 80 * time.Minute, false},

	{"TEISidecarQueueSaturated", "full for 7 minutes, over both priorities", []series{
		{`sidecar_queue_inputs{` + target + `,pool="embed",priority="interactive"}`, flat(1000, steps(7*time.Minute))},
		{`sidecar_queue_inputs{` + target + `,pool="embed",priority="bulk"}`, flat(2500, steps(7*time.Minute))},
	}, 6 * time.Minute, true},
	{"TEISidecarQueueSaturated", "full for 3 minutes", []series{
		{`sidecar_queue_inputs{` + target + `,pool="embed",priority="bulk"}`, append(flat(2900, steps(4*time.Minute)), flat(3500, steps(3*time.Minute))...)},
	}, 7 * time.Minute, false},

	{"TEISidecarQueueGrowing", "40 more a minute from 1000", []series{
		{`sidecar_queue_inputs{` + target + `,pool="embed",priority="bulk"}`, ramp(1000, 10, steps(25*time.Minute))},
	}, 25 * time.Minute, true},
	{"TEISidecarQueueGrowing", "long but steady", []series{
		{`sidecar_queue_inputs{` + target + `,pool="embed",priority="bulk"}`, flat(2000, steps(25*time.Minute))},
	}, 25 * time.Minute, false},
	{"TEISidecarQueueGrowing", "growing but short", []series{
		{`sidecar_queue_inputs{` + target + `,pool="embed",priority="bulk"}`, ramp(0, 10, steps(20*time.Minute))},
	}, 20 * time.Minute, false},

	{"TEISidecarRedisBreakerOpen", "open", []series{
		{`sidecar_cache_redis_breaker_state{` + target + `}`, alternate(2, 1, steps(5*time.Minute))},
	}, 4 * time.Minute, true},
	{"TEISidecarRedisBreakerOpen", "closed", []series{
		{`sidecar_cache_redis_breaker_state{` + target + `}`, flat(0, steps(5*time.Minute))},
	}, 4 * time.Minute, false},

	{"TEISidecarNonFiniteEmbeddings", "one NaN", []series{
		{`sidecar_nonfinite_embeddings_total{` + target + `,pool="embed"}`, append(flat(0, steps(5*time.Minute)), flat(1, steps(5*time.Minute))...)},
	}, 7 * time.Minute, true},
	{"TEISidecarNonFiniteEmbeddings", "none since long ago", []series{
		{`sidecar_nonfinite_embeddings_total{` + target + `,pool="embed"}`, flat(3, steps(20*time.Minute))},
	}, 19 * time.Minute, false},

	{"TEISidecarServerErrors", "10% 503", []series{
		{`sidecar_requests_total{` + target + `,route="/embed",status="200"}`, counter(segment{9, 15 * time.Minute})},
		{`sidecar_requests_total{` + target + `,route="/embed",status="503"}`, counter(segment{1, 15 * time.Minute})},
	}, 14 * time.Minute, true},
	{"TEISidecarServerErrors", "1% 503, many 4xx", []series{
		{`sidecar_requests_total{` + target + `,route="/embed",status="200"}`, counter(segment{5, 15 * time.Minute})},
		{`sidecar_requests_total{` + target + `,route="/embed",status="429"}`, counter(segment{4, 15 * time.Minute})},
		{`sidecar_requests_total{` + target + `,route="/embed",status="503"}`, counter(segment{0.1, 15 * time.Minute})},
	}, 14 * time.Minute, false},
}

// ramp is n samples from start, growing by by each step.
func ramp(start, by float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = start + by*float64(i)
	}
	return out
}

// TestAlertsFire runs each alert's expression through Prometheus's PromQL
// engine over made-up series and evaluates it as Prometheus's rule manager
// does, every evaluation interval, firing once it has held for its `for`.
// Each alert has a history that must fire it and one that must not; the
// labels its annotations name are on what fires. (Prometheus's rules
// package would do the evaluating itself, but it brings the notifier and
// with it cloud SDKs into the build; the engine alone does not.)
func TestAlertsFire(t *testing.T) {
	rules := map[string]rulefmt.Rule{}
	for _, g := range parseRules(t).Groups {
		for _, r := range g.Rules {
			rules[r.Alert] = r
		}
	}
	covered := map[string][2]bool{}
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	labelRef := regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	for _, c := range alertCases {
		t.Run(c.alert+"/"+c.name, func(t *testing.T) {
			r, ok := rules[c.alert]
			if !ok {
				t.Fatalf("no alert %s in %s", c.alert, rulesFile)
			}
			cov := covered[c.alert]
			if c.fires {
				cov[0] = true
			} else {
				cov[1] = true
			}
			covered[c.alert] = cov
			q := queryable(t, c.series)
			var last promql.Vector
			held := true
			for at := c.at - time.Duration(r.For); at <= c.at; at += step {
				last = evalAt(t, eng, q, r.Expr, at)
				held = held && len(last) > 0
			}
			if held != c.fires {
				t.Fatalf("fires %v at %v, want %v (last evaluation: %v)", held, c.at, c.fires, last)
			}
			if !c.fires {
				return
			}
			named := map[string]bool{}
			for _, m := range labelRef.FindAllStringSubmatch(r.Annotations["summary"]+" "+r.Annotations["description"], -1) {
				named[m[1]] = true
			}
			for _, s := range last {
				for _, l := range slices.Sorted(maps.Keys(named)) {
					if !s.Metric.Has(l) {
						t.Errorf("the annotations name $labels.%s, which %v lacks", l, s.Metric)
					}
				}
			}
		})
	}
	for _, name := range slices.Sorted(maps.Keys(rules)) {
		if cov := covered[name]; !cov[0] || !cov[1] {
			t.Errorf("alert %s: want a case that fires it and one that does not (have %v)", name, cov)
		}
	}
}

// evalAt evaluates expr at offset at from time 0.
func evalAt(t *testing.T, eng *promql.Engine, q storage.Queryable, expr string, at time.Duration) promql.Vector {
	t.Helper()
	qry, err := eng.NewInstantQuery(context.Background(), q, nil, expr, time.UnixMilli(0).Add(at))
	if err != nil {
		t.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("at %v: %v", at, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("at %v: %v", at, err)
	}
	return v
}

// queryable serves the series from memory.
func queryable(t *testing.T, ss []series) storage.Queryable {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	var all []storage.Series
	for _, s := range ss {
		lset, err := p.ParseMetric(s.metric)
		if err != nil {
			t.Fatalf("%s: %v", s.metric, err)
		}
		samples := make([]chunks.Sample, len(s.values))
		for i, v := range s.values {
			samples[i] = floatSample{t: (time.Duration(i) * step).Milliseconds(), f: v}
		}
		all = append(all, storage.NewListSeries(lset, samples))
	}
	slices.SortFunc(all, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return storage.QueryableFunc(func(int64, int64) (storage.Querier, error) {
		return &storage.MockQuerier{SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			var out []storage.Series
			for _, s := range all {
				if matchesAll(s.Labels(), ms) {
					out = append(out, s)
				}
			}
			return &seriesSet{series: out}
		}}, nil
	})
}

func matchesAll(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// seriesSet iterates over series already sorted.
type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                      { s.i++; return s.i <= len(s.series) }
func (s *seriesSet) At() storage.Series              { return s.series[s.i-1] }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }

// floatSample is one float sample.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                    { return s.t }
func (floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                  { return s.f }
func (floatSample) H() *histogram.Histogram       { return nil }
func (floatSample) FH() *histogram.FloatHistogram { return nil }
func (floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample         { return s }
