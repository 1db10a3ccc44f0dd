package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// replicaState is where a replica stands in its pool.
type replicaState int

// Replica states. Only ready replicas are sent work.
const (
	// stateStarting: its /info has not been read yet (TEI is loading, or
	// came back from a restart and is being checked again).
	stateStarting replicaState = iota
	// stateReady: it serves the pool's model and takes work.
	stateReady
	// stateDown: a supervisor says it cannot answer, or it refused the
	// sidecar's API key.
	stateDown
	// stateDraining: it is leaving the pool (gone from discovery): no new
	// work, work in flight finishes.
	stateDraining
	// stateRefused: it serves another model or revision than the pool, so
	// its vectors must never mix with the pool's.
	stateRefused
)

func (s replicaState) String() string {
	return [...]string{"starting", "ready", "down", "draining", "refused"}[s]
}

// replica is one TEI server of a pool: its client, its own limits from
// /info, its breaker and its share of the pool's work. Fields marked
// "pool.mu" are guarded by its pool's mutex.
type replica struct {
	pool   *pool
	raw    string // the URL as configured, credentials included
	source string // the configured entry it came from: raw, or a dns+ entry
	addr   string // host:port, the metrics label
	shown  string // the URL with credentials removed, for logs and /status
	client *tei.Client

	info    atomic.Pointer[tei.Info]
	dim     atomic.Int64 // dense embedding dimension; 0 when not an embedder
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	// open mirrors the breaker's open state, so that the common case
	// (closed) costs no lock; breakerOpen asks the breaker itself, which
	// moves to half-open when its time is up.
	open atomic.Bool
	// lastAnswer is when TEI last answered a call (any status): proof of
	// life that a slow /health (it waits behind the running batch) is not.
	lastAnswer atomic.Int64
	// longestCall is the longest successful call seen, in nanoseconds: a
	// health check waits behind one batch, so its timeout scales with it.
	longestCall atomic.Int64
	// wake asks the replica's prober to read /info again.
	wake chan struct{}
	stop context.CancelFunc // ends the prober

	// pool.mu
	removed      bool // left the pool: nothing may touch its metrics again
	held         bool // down by a supervisor's word: stays down until it says up
	state        replicaState
	reason       string         // why it is not ready, for /status and logs
	inflight     int            // inputs in flight
	bulkInflight int            // of which bulk work's
	calls        int            // calls in flight
	limit        int            // most inputs in flight: lim's, or TEI's max_concurrent_requests
	lim          *gradientLimit // nil when the limit is static
	byteLimit    int            // largest request body to send
	maxBatch     int            // most inputs in one call
}

func newReplica(p *pool, raw, source string, c *tei.Client) *replica {
	r := &replica{pool: p, raw: raw, source: source, client: c, wake: make(chan struct{}, 1), byteLimit: int(p.s.cfg.UpstreamPayloadLimit)}
	r.shown, r.addr = redactURL(raw)
	r.breaker = newBreaker(p, r)
	return r
}

// redactURL returns raw without its user information, and its host:port.
func redactURL(raw string) (shown, addr string) {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>", "invalid"
	}
	u.User = nil
	return u.String(), u.Host
}

// LogValue keeps credentials out of every log line that names a replica.
func (r *replica) LogValue() slog.Value { return slog.StringValue(r.shown) }

// breakerOpen reports whether the breaker refuses calls now.
func (r *replica) breakerOpen() bool {
	return r.open.Load() && r.breaker.State() == gobreaker.StateOpen
}

// free is how many more inputs it may take now. pool.mu.
func (r *replica) free(prio priority) int {
	if prio == interactive && r.lim != nil {
		// Queries get up to one batch of room beyond the adaptive limit
		// while bulk work holds it, so that a query never waits in the
		// sidecar for a bulk call to finish: inside TEI it waits only for
		// the batch running and what little the limit let queue. TEI's own
		// permits still bound it.
		room := min(r.maxBatch, r.bulkInflight)
		return min(r.limit+room, r.info.Load().MaxConcurrentRequests) - r.inflight
	}
	return r.limit - r.inflight
}

// answered records that TEI answered a call that took d.
func (r *replica) answered(d time.Duration, ok bool) {
	r.lastAnswer.Store(time.Now().UnixNano())
	if ok && int64(d) > r.longestCall.Load() {
		r.longestCall.Store(int64(d))
	}
}

// healthTimeout bounds a /health check: TEI answers it on the backend
// thread, after the batch in progress, so it may take as long as the
// longest call seen.
func (r *replica) healthTimeout() time.Duration {
	return max(2*time.Second, 2*time.Duration(r.longestCall.Load()))
}

// alive reports whether TEI answered a call within d.
func (r *replica) alive(d time.Duration) bool {
	last := r.lastAnswer.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < d
}

// probe reads /info and, for a dense embedder, learns its dimension from
// one short embedding (/info does not report it) unless the replica's model
// is unchanged since it was last learned.
func (r *replica) probe(ctx context.Context) (*tei.Info, int, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := r.client.Info(cctx)
	if err != nil {
		return nil, 0, err
	}
	if info.ModelType.Kind() != tei.KindEmbedding {
		return info, 0, nil
	}
	if prev := r.info.Load(); prev != nil && sameModel(prev, info) && r.dim.Load() > 0 {
		return info, int(r.dim.Load()), nil
	}
	res, err := r.client.Embed(cctx, tei.EmbedRequest{Inputs: tei.Texts("tei-sidecar dimension probe")})
	if err != nil {
		return nil, 0, err
	}
	v, err := tei.DecodeVector(res.Items[0])
	if err != nil {
		return nil, 0, fmt.Errorf("dimension probe: %w", err)
	}
	return info, len(v), nil
}

// run is the replica's prober: it reads /info while the replica is
// starting (retrying with back-off while TEI loads its model), hands the
// answer to the pool, and reads it again whenever woken (TEI restarted, or
// its breaker closed after an outage). It ends with ctx.
func (r *replica) run(ctx context.Context) {
	log := r.pool.s.log.With("pool", r.pool.name, "replica", r)
	start := time.Now()
	delay := 200 * time.Millisecond
	var lastLog time.Time
	for {
		info, dim, err := r.probe(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			r.pool.accept(r, info, dim, time.Since(start))
			delay = 200 * time.Millisecond
			t := time.NewTimer(recheckEvery)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-r.wake:
				t.Stop()
			case <-t.C:
			}
			start = time.Now()
			continue
		case isTEIAuth(err):
			r.pool.setState(r, stateDown, reasonAPIKey)
			log.Error("TEI refused the sidecar's API key: set TEI_API_KEY to the key TEI was started with", "err", err.Error())
			delay = 30 * time.Second
		case tei.IsCallerError(err):
			r.pool.setState(r, stateDown, "TEI refused /info")
			log.Error("TEI refused /info", "err", err.Error())
			delay = 30 * time.Second
		default:
			if time.Since(lastLog) > 5*time.Second {
				log.Info("waiting for TEI to start (downloading or loading the model)",
					"elapsed", time.Since(start).Round(time.Second).String(), "last_error", err.Error())
				lastLog = time.Now()
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// recheck asks the prober to read /info again.
func (r *replica) recheck() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// reasonAPIKey is why a replica that refuses the sidecar's key is down.
const reasonAPIKey = "TEI refused the sidecar's API key (TEI_API_KEY)"

// recheckEvery is how often a ready replica's /info is read again, so that
// a TEI restarted behind the sidecar's back (another revision, other
// limits) is noticed even when nothing failed in between.
const recheckEvery = 30 * time.Second

// isTEIAuth reports whether TEI refused the sidecar's own API key.
func isTEIAuth(err error) bool {
	var te *tei.Error
	return errors.As(err, &te) && te.Status == 401
}
