package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tei"
)

// TuneOptions configures Tune. Zero values of all fields but URL are
// working defaults.
type TuneOptions struct {
	// URL is TEI's base URL (or the sidecar's, which serves TEI's API);
	// host:port and a bare host mean http://.
	URL string
	// Token is sent as a bearer token; "" sends none.
	Token string
	// FoundVia is the sidecar whose GET /status named URL; a 401 then
	// explains how to share TEI's API key.
	FoundVia string
	// MaxBatch is the largest client batch tried; 0 means TEI's
	// max_client_batch_size from GET /info. A larger value allows batches
	// TEI will refuse (422), which stops the batch direction; the sidecar
	// splits them.
	MaxBatch int
	// MaxConcurrency is the most concurrent requests tried; 0 means 64.
	MaxConcurrency int
	// StepDuration bounds each setting's measurement; 0 means 2s.
	StepDuration time.Duration
	// StepRequests bounds each setting's measured requests; 0 means 400.
	StepRequests int
	// MaxLatency is the p95 request latency above which a setting is too
	// slow and the concurrency direction stops; 0 means 2s.
	MaxLatency time.Duration
	// Knee is the share of the best throughput the recommendation must
	// reach; 0 means 0.95.
	Knee float64
	// Timeout bounds each request; 0 means 30s. A request that runs out of
	// it makes its setting too slow.
	Timeout time.Duration
	// Texts are the inputs, cycled, each sent with a unique suffix; nil
	// means the plugin's 50-document set.
	Texts []string
	// Pool, when it names a sidecar with two or more ready embed
	// replicas, adds the pool check to the advice on TEI_REPLICAS_PER_GPU.
	Pool *PoolOptions
	// Live, when set, gets the report's header once GET /info is read and
	// each step's line as soon as it is measured, so that a tune of a
	// minute shows its progress even in a pipe.
	Live io.Writer
	// HTTPClient sends the requests; nil means a pooled client.
	HTTPClient *http.Client
}

// Defaults of TuneOptions' zero values.
const (
	DefaultMaxConcurrency = 64
	DefaultStepDuration   = 2 * time.Second
	DefaultStepRequests   = 400
	DefaultMaxLatency     = 2 * time.Second
	DefaultKnee           = 0.95
)

// TuneSchemaVersion is the version of TuneReport's JSON, with the same
// rules as SchemaVersion.
const TuneSchemaVersion = 1

// TuneReport is Tune's result and tune's --json document.
type TuneReport struct {
	SchemaVersion int          `json:"schema_version"`
	StartedAt     time.Time    `json:"started_at"`
	Target        TuneTarget   `json:"target"`
	Settings      TuneSettings `json:"settings"`
	// Steps are the settings measured, in order: batch sizes ascending,
	// and for each, concurrency ascending.
	Steps []Step `json:"steps"`
	// Best is the step of highest throughput.
	Best Choice `json:"best"`
	// Recommended is the smallest setting reaching Knee × Best's
	// throughput.
	Recommended Choice `json:"recommended"`
	// Env is what --write-env writes: EMBEDDING_BATCH, the client's batch.
	// The recommended concurrency is advice to clients; no setting reads it.
	Env []plan.EnvVar `json:"env"`
	// Replicas is the advice on TEI_REPLICAS_PER_GPU, never written.
	Replicas *ReplicaAdvice `json:"replicas"`
}

// TuneTarget is the server tuned, as its GET /info describes it.
type TuneTarget struct {
	URL string `json:"url"`
	// FoundVia is the sidecar whose GET /status named URL.
	FoundVia string `json:"found_via,omitempty"`
	// Simulator names the TEI simulator behind URL; empty for TEI.
	Simulator             string `json:"simulator,omitempty"`
	ModelID               string `json:"model_id"`
	TEIVersion            string `json:"tei_version"`
	MaxClientBatchSize    int    `json:"max_client_batch_size"`
	MaxBatchTokens        int    `json:"max_batch_tokens"`
	MaxConcurrentRequests int    `json:"max_concurrent_requests"`
}

// TuneSettings are the limits the sweep ran under.
type TuneSettings struct {
	MaxBatch       int     `json:"max_batch"`
	MaxConcurrency int     `json:"max_concurrency"`
	StepDurationS  float64 `json:"step_duration_s"`
	StepRequests   int     `json:"step_requests"`
	MaxLatencyS    float64 `json:"max_latency_s"`
	Knee           float64 `json:"knee"`
}

// Step outcomes.
const (
	// OutcomeOK: every request succeeded within the latency limit.
	OutcomeOK = "ok"
	// OutcomeRefused: the server answered 413, 422, 429 or 5xx.
	OutcomeRefused = "refused"
	// OutcomeSlow: p95 latency was above the limit, or a request timed out.
	OutcomeSlow = "slow"
	// OutcomeSkipped: batch × concurrency inputs exceed TEI's
	// max_concurrent_requests permits, which TEI would answer with 429.
	OutcomeSkipped = "skipped"
)

// Step is one setting's measurement.
type Step struct {
	Batch       int `json:"batch"`
	Concurrency int `json:"concurrency"`
	// Requests and Inputs count the measured requests and their inputs.
	Requests  int     `json:"requests"`
	Inputs    int     `json:"inputs"`
	DurationS float64 `json:"duration_s"`
	// Throughput is inputs per second of wall time.
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50_s"`
	P95        float64 `json:"p95_s"`
	P99        float64 `json:"p99_s"`
	Outcome    string  `json:"outcome"`
	// Reason says why a step is not ok.
	Reason string `json:"reason,omitempty"`
}

// Choice is a setting picked from the steps.
type Choice struct {
	Batch       int     `json:"batch"`
	Concurrency int     `json:"concurrency"`
	Throughput  float64 `json:"throughput"`
	P95         float64 `json:"p95_s"`
}

// EnvBatch is the setting tune writes: the client's batch, the texts the
// plugin (or any client) sends in one embed call.
const EnvBatch = "EMBEDDING_BATCH"

// EnvTEIMaxClientBatch is TEI's own limit on texts per call (its
// --max-client-batch-size), which the sidecar passes to the TEI it
// launches. A client batch above it needs it raised.
const EnvTEIMaxClientBatch = "TEI_MAX_CLIENT_BATCH_SIZE"

// Tune sweeps client batch size and concurrency against TEI and
// recommends the throughput knee. See TuneOptions for the bounds.
func Tune(ctx context.Context, o TuneOptions) (*TuneReport, error) {
	o = o.withDefaults()
	if o.MaxBatch < 0 || o.MaxConcurrency < 1 || o.StepRequests < 1 || o.StepDuration <= 0 || o.MaxLatency <= 0 || o.Knee <= 0 || o.Knee > 1 {
		return nil, errors.New("tune: batch, concurrency, step bounds and latency limit must be positive, and the knee in (0, 1]")
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: tei.NewTransport()}
	}
	c, err := newClient(ctx, Target{URL: o.URL, Token: o.Token, FoundVia: o.FoundVia}, hc, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("tune: %w", err)
	}
	rep := &TuneReport{
		SchemaVersion: TuneSchemaVersion,
		StartedAt:     time.Now().UTC(),
		Target:        TuneTarget{URL: c.embed.BaseURL(), FoundVia: o.FoundVia, Simulator: c.simulator},
	}
	if c.info == nil {
		return nil, fmt.Errorf("tune: GET %s/info: %w", rep.Target.URL, c.infoErr)
	}
	i := c.info
	rep.Target.ModelID, rep.Target.TEIVersion = i.ModelID, i.Version
	rep.Target.MaxClientBatchSize, rep.Target.MaxBatchTokens, rep.Target.MaxConcurrentRequests = i.MaxClientBatchSize, i.MaxBatchTokens, i.MaxConcurrentRequests
	if o.MaxBatch == 0 {
		if i.MaxClientBatchSize == 0 {
			return nil, fmt.Errorf("tune: GET %s/info gave no max_client_batch_size; set the largest batch to try", rep.Target.URL)
		}
		o.MaxBatch = i.MaxClientBatchSize
	}
	rep.Settings = TuneSettings{
		MaxBatch: o.MaxBatch, MaxConcurrency: o.MaxConcurrency,
		StepDurationS: o.StepDuration.Seconds(), StepRequests: o.StepRequests,
		MaxLatencyS: o.MaxLatency.Seconds(), Knee: o.Knee,
	}

	var live *printer
	if o.Live != nil {
		live = &printer{w: o.Live}
		tuneHeader(live, rep)
	}
	// One call tells the tokens an input makes, for the advice on
	// replicas. A TEI that refuses it gives no figure: the sweep's first
	// step meets the same refusal and says what it means.
	tpi, err := tokensPerInput(ctx, c, o.Texts, i.MaxClientBatchSize)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	batches, concs := doublings(o.MaxBatch), doublings(o.MaxConcurrency)
	measure := func(ctx context.Context, b, n int) (Step, error) {
		st, _, err := measureStep(ctx, c, o, b, n, nil)
		return st, c.explain(err)
	}
	onStep := func(st Step) {
		if live != nil {
			tuneStep(live, st)
		}
	}
	rep.Steps, err = sweepGrid(ctx, batches, concs, rep.Target.MaxConcurrentRequests, measure, onStep)
	if err != nil {
		return nil, err
	}
	best, rec, ok := knee(rep.Steps, o.Knee)
	if !ok {
		return rep, fmt.Errorf("tune: no setting succeeded; the first answer was: %s", firstReason(rep.Steps))
	}
	rep.Best, rep.Recommended = best, rec
	rep.Env = []plan.EnvVar{{Key: EnvBatch, Value: strconv.Itoa(rec.Batch)}}
	var pool *PoolCheck
	if p := o.Pool; p != nil && p.Ready >= 2 {
		if pool, err = tunePool(ctx, o, hc, rec.Batch, bestAt(rep.Steps, rec.Batch), live); err != nil {
			return nil, fmt.Errorf("tune: the pool through the sidecar: %w", err)
		}
	}
	rep.Replicas = adviseReplicas(rep, tpi, pool)
	return rep, nil
}

// tunePool runs the pool check through the sidecar o.Pool names.
func tunePool(ctx context.Context, o TuneOptions, hc *http.Client, batch int, single float64, live *printer) (*PoolCheck, error) {
	sc, err := newClient(ctx, Target{URL: o.Pool.Sidecar, Token: o.Pool.Token}, hc, o.Timeout)
	if err != nil {
		return nil, err
	}
	if sc.noCache == nil {
		return nil, fmt.Errorf("%s does not answer GET /status as the sidecar does", o.Pool.Sidecar)
	}
	m, err := newMeter(ctx, sc.embed)
	if err != nil {
		return nil, err
	}
	var onStep func(PoolStep)
	if live != nil {
		poolHeader(live, o.Pool.Sidecar, o.Pool.Ready, batch)
		onStep = func(ps PoolStep) { poolStepLine(live, ps) }
	}
	return checkPool(ctx, sc, m, o, batch, single, onStep)
}

func (o TuneOptions) withDefaults() TuneOptions {
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = DefaultMaxConcurrency
	}
	if o.StepDuration == 0 {
		o.StepDuration = DefaultStepDuration
	}
	if o.StepRequests == 0 {
		o.StepRequests = DefaultStepRequests
	}
	if o.MaxLatency == 0 {
		o.MaxLatency = DefaultMaxLatency
	}
	if o.Knee == 0 {
		o.Knee = DefaultKnee
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if len(o.Texts) == 0 {
		o.Texts = longDocs
	}
	return o
}

// doublings are 1, 2, 4, ... up to limit, and limit itself.
func doublings(limit int) []int {
	var out []int
	for v := 1; v < limit; v *= 2 {
		out = append(out, v)
	}
	return append(out, limit)
}

// measureFunc measures one setting. An error ends the whole sweep; a
// refusal or slowness is a Step outcome.
type measureFunc func(ctx context.Context, batch, concurrency int) (Step, error)

// sweepGrid walks batch sizes upward and, for each, concurrency upward.
// A step that is refused or too slow stops its concurrency direction, and
// later batches stay below that concurrency, since more inputs in flight
// fare no better; when even one client fails, the batch direction stops.
// Settings needing more inputs in flight than TEI's permits are skipped.
// onStep (which may be nil) gets each step as it is decided.
func sweepGrid(ctx context.Context, batches, concs []int, permits int, measure measureFunc, onStep func(Step)) ([]Step, error) {
	if onStep == nil {
		onStep = func(Step) {}
	}
	var steps []Step
	limit := len(concs)
	for _, b := range batches {
		okAny := false
		for i := range limit {
			n := concs[i]
			if permits > 0 && b*n > permits {
				st := Step{Batch: b, Concurrency: n, Outcome: OutcomeSkipped,
					Reason: fmt.Sprintf("%d inputs in flight exceed TEI's max_concurrent_requests %d", b*n, permits)}
				steps = append(steps, st)
				onStep(st)
				limit = i
				break
			}
			st, err := measure(ctx, b, n)
			if err != nil {
				return steps, err
			}
			steps = append(steps, st)
			onStep(st)
			if st.Outcome != OutcomeOK {
				limit = i
				break
			}
			okAny = true
		}
		if !okAny {
			break
		}
	}
	return steps, nil
}

// knee picks the best step and the recommendation: of the ok steps
// reaching frac × the best throughput, the one with the fewest inputs in
// flight (batch × concurrency), then the fewest concurrent requests, then
// the lowest p95.
func knee(steps []Step, frac float64) (best, rec Choice, ok bool) {
	var bestStep, recStep *Step
	for i := range steps {
		s := &steps[i]
		if s.Outcome == OutcomeOK && (bestStep == nil || s.Throughput > bestStep.Throughput) {
			bestStep = s
		}
	}
	if bestStep == nil {
		return Choice{}, Choice{}, false
	}
	for i := range steps {
		s := &steps[i]
		if s.Outcome != OutcomeOK || s.Throughput < frac*bestStep.Throughput {
			continue
		}
		if recStep == nil || less(s, recStep) {
			recStep = s
		}
	}
	choice := func(s *Step) Choice {
		return Choice{Batch: s.Batch, Concurrency: s.Concurrency, Throughput: s.Throughput, P95: s.P95}
	}
	return choice(bestStep), choice(recStep), true
}

func less(a, b *Step) bool {
	if fa, fb := a.Batch*a.Concurrency, b.Batch*b.Concurrency; fa != fb {
		return fa < fb
	}
	if a.Concurrency != b.Concurrency {
		return a.Concurrency < b.Concurrency
	}
	return a.P95 < b.P95
}

func firstReason(steps []Step) string {
	for _, s := range steps {
		if s.Reason != "" {
			return fmt.Sprintf("batch %d × %d: %s", s.Batch, s.Concurrency, s.Reason)
		}
	}
	return "no step ran"
}

// measureStep warms up with one request per client, then drives TEI with
// concurrency clients sending batch unique inputs each. With a meter, the
// measured part (not the warm-up) is watched through the sidecar's
// metrics.
func measureStep(ctx context.Context, c *client, o TuneOptions, batch, concurrency int, m *meter) (Step, []PoolUse, error) {
	st := Step{Batch: batch, Concurrency: concurrency}
	var next atomic.Int64
	call := func(ctx context.Context, _ int) error {
		first := int(next.Add(int64(batch))) - batch
		texts := make([]string, batch)
		for i := range texts {
			texts[i] = unique(o.Texts[(first+i)%len(o.Texts)])
		}
		return c.teiEmbed(ctx, texts, nil)
	}
	l, err := drive(ctx, concurrency, o.StepDuration+o.Timeout, concurrency, call)
	var uses []PoolUse
	if err == nil {
		measured := func() (time.Duration, error) {
			l, err = drive(ctx, concurrency, o.StepDuration, o.StepRequests, call)
			return l.elapsed, err
		}
		if m != nil {
			var merr error
			uses, merr = m.measure(ctx, measured)
			if err == nil {
				err = merr
			}
		} else {
			_, err = measured()
		}
	}
	if err != nil {
		st, err = classifyStep(ctx, st, err)
		return st, nil, err
	}
	s := summarize(seconds(l.latencies), 1)
	st.Requests = len(l.latencies)
	st.Inputs = st.Requests * batch
	st.DurationS = l.elapsed.Seconds()
	if l.elapsed > 0 {
		st.Throughput = float64(st.Inputs) / l.elapsed.Seconds()
	}
	st.P50, st.P95, st.P99 = s.P50, s.P95, s.P99
	st.Outcome = OutcomeOK
	if p95 := time.Duration(s.P95 * float64(time.Second)); p95 > o.MaxLatency {
		st.Outcome = OutcomeSlow
		st.Reason = fmt.Sprintf("p95 %s above the limit %s", p95.Round(time.Millisecond), o.MaxLatency)
	}
	return st, uses, nil
}

// classifyStep turns a failed step into an outcome, or returns the error
// when it is not the server's limit speaking: a caller error (400, 401,
// 404, ...), a refused connection, or the tune itself being stopped.
func classifyStep(ctx context.Context, st Step, err error) (Step, error) {
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		switch s := se.Status; {
		case s == http.StatusRequestEntityTooLarge, s == http.StatusUnprocessableEntity, s == http.StatusTooManyRequests, s >= 500:
			st.Outcome, st.Reason = OutcomeRefused, fmt.Sprintf("HTTP %d: %s", s, se.Body)
			return st, nil
		}
		return st, fmt.Errorf("batch %d × %d: %w", st.Batch, st.Concurrency, err)
	}
	if te, ok := errors.AsType[*tei.TransportError](err); ok && te.Kind == tei.KindTimeout {
		st.Outcome, st.Reason = OutcomeSlow, "a request ran out of its timeout"
		return st, nil
	}
	return st, fmt.Errorf("batch %d × %d: %w", st.Batch, st.Concurrency, err)
}
