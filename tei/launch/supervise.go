package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// StatusSink learns when a TEI goes down and comes back, and knows when it
// last answered; *proxy.Server is one. It must be safe for concurrent use.
type StatusSink interface {
	// SetDown is called with the pool's name ("embed" or "rerank"), the
	// replica's URL and why it cannot answer, and with an empty reason
	// once TEI is ready again.
	SetDown(pool, url, reason string)
	// Liveness says when the replica at url last answered a call (zero if
	// never) and the longest call it answered. TEI answers /health on its
	// backend thread, after the batch in progress, so on a busy TEI a slow
	// health check is not a dead one.
	Liveness(url string) (last time.Time, longest time.Duration)
}

// SuperviseOptions tunes a Supervisor. Zero values are the defaults.
type SuperviseOptions struct {
	// HealthEvery is the time between /health checks. Zero means 5s.
	HealthEvery time.Duration
	// Failures is how many failed checks in a row mean TEI is down. Zero
	// means 3.
	Failures int
	// RestartMin is the first restart's delay, doubled after each failed
	// restart. Zero means 1s.
	RestartMin time.Duration
	// RestartMax caps the delay; a TEI that stays up that long starts
	// again from RestartMin. Zero means 1m.
	RestartMax time.Duration
}

// DefaultSuperviseOptions returns the defaults documented on
// SuperviseOptions.
func DefaultSuperviseOptions() SuperviseOptions {
	return SuperviseOptions{HealthEvery: 5 * time.Second, Failures: 3, RestartMin: time.Second, RestartMax: time.Minute}
}

func (o SuperviseOptions) withDefaults() SuperviseOptions {
	d := DefaultSuperviseOptions()
	if o.HealthEvery <= 0 {
		o.HealthEvery = d.HealthEvery
	}
	if o.Failures <= 0 {
		o.Failures = d.Failures
	}
	if o.RestartMin <= 0 {
		o.RestartMin = d.RestartMin
	}
	if o.RestartMax <= 0 {
		o.RestartMax = d.RestartMax
	}
	o.RestartMax = max(o.RestartMax, o.RestartMin)
	return o
}

// Supervisor keeps one replica running: it launches it, with back-off
// while the launch fails, notices when TEI exits or stops answering
// /health, marks it down, launches it again and marks it up once it is
// ready. Every step it reports to the sink under the replica's URL, in
// words /ready may show (Summary's).
type Supervisor struct {
	launcher Launcher
	plan     plan.Plan
	url      string
	sink     StatusSink
	opts     SuperviseOptions
	log      *slog.Logger
}

// NewSupervisor returns a supervisor that runs p with l, reachable at url
// (the launcher's answer for p, known before the launch), and reports to
// sink.
func NewSupervisor(l Launcher, p plan.Plan, url string, sink StatusSink, opts SuperviseOptions, log *slog.Logger) *Supervisor {
	return &Supervisor{launcher: l, plan: p, url: url, sink: sink, opts: opts.withDefaults(), log: log.With("tei", p.Name())}
}

// releaseTimeout bounds stopping TEI when supervision ends.
const releaseTimeout = 30 * time.Second

// Run launches the replica and keeps it running until ctx ends; it then
// releases the instance it holds (Instance.Release: stopped, unless the
// launcher keeps it) and returns. It never gives up: a launch that fails
// is tried again after a delay that doubles up to RestartMax.
func (s *Supervisor) Run(ctx context.Context) {
	pool := ShortName(s.plan.Role)
	var inst *Instance
	defer func() {
		if inst != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			if err := inst.Release(rctx); err != nil {
				s.log.Warn("stopping TEI", "err", err.Error())
			}
		}
	}()
	b := newRestartBackoff(s.opts.RestartMin, s.opts.RestartMax, 0.2)
	var down time.Time // when it went down; zero before the first start
	why := ""
	for {
		inst = s.launch(ctx, b, why)
		if inst == nil {
			return // ctx ended
		}
		if inst.URL != s.url {
			s.log.Error("TEI came up at another URL than the proxy's: its calls will fail", "url", inst.URL, "want", s.url)
		}
		s.sink.SetDown(pool, s.url, "")
		if down.IsZero() {
			s.log.Info("TEI is up", "url", inst.URL, "id", inst.ID, "adopted", inst.Adopted)
		} else {
			s.log.Info("TEI recovered", "url", inst.URL, "id", inst.ID, "down_for", time.Since(down).Round(100*time.Millisecond).String())
		}
		upSince := time.Now()
		why = s.watch(ctx, inst)
		if ctx.Err() != nil {
			return
		}
		down = time.Now()
		s.sink.SetDown(pool, s.url, why)
		s.log.Warn("TEI is down: restarting it", "reason", why, "id", inst.ID)
		if time.Since(upSince) >= s.opts.RestartMax {
			b.Reset() // it had been up a while: not a crash loop
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		if err := inst.Stop(sctx); err != nil {
			s.log.Warn("removing the failed TEI", "err", err.Error())
		}
		cancel()
		inst = nil
	}
}

// launch starts the replica, and again after each failure, waiting the
// back-off's delay first when why (the reason it is down) is set. It
// returns nil when ctx ends first.
func (s *Supervisor) launch(ctx context.Context, b backoff.BackOff, why string) *Instance {
	pool := ShortName(s.plan.Role)
	for {
		if why != "" {
			delay := b.NextBackOff()
			s.sink.SetDown(pool, s.url, why+"; retrying in "+roundDelay(delay))
			s.log.Info("starting TEI again", "in", delay.Round(10*time.Millisecond).String())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
		}
		// Progress while this launch lasts only: a late phase line must not
		// mark a ready TEI down.
		var mu sync.Mutex
		live, last := true, ""
		progress := func(status string) {
			mu.Lock()
			defer mu.Unlock()
			if live && status != last {
				last = status
				s.sink.SetDown(pool, s.url, status)
			}
		}
		inst, err := s.launcher.Launch(ctx, s.plan, progress)
		mu.Lock()
		live = false
		mu.Unlock()
		if err == nil {
			return inst
		}
		if ctx.Err() != nil {
			return nil
		}
		why = Summary(err)
		s.log.Error("starting TEI failed", "reason", why, "err", err.Error())
	}
}

// roundDelay writes a back-off delay for people: whole seconds, or tenths
// under a second.
func roundDelay(d time.Duration) string {
	if d < time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// watch returns why inst is down, in Summary's words, or "" when ctx ends
// first.
func (s *Supervisor) watch(ctx context.Context, inst *Instance) string {
	c, done, err := probeClient(inst.URL, apiKey(inst.Plan))
	if err != nil {
		s.log.Error("cannot check TEI's health", "err", err.Error())
		return Summary(err)
	}
	defer done()
	t := time.NewTicker(s.opts.HealthEvery)
	defer t.Stop()
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-inst.Done():
			err := inst.Err()
			var ee *ExitError
			if errors.As(err, &ee) {
				if d := Diagnose(ee.Logs, inst.Plan); d.Advice != "" {
					s.log.Warn("TEI exited", "status", ee.Status, "diagnosis", d.Advice)
				}
				if len(ee.Logs) > 0 {
					s.log.Warn("TEI's last log lines", "lines", ee.Logs)
				}
			} else {
				s.log.Warn("TEI ended", "err", err.Error())
			}
			return Summary(err)
		case <-t.C:
			last, longest := s.sink.Liveness(s.url)
			hctx, cancel := context.WithTimeout(ctx, max(probeTimeout, 2*longest))
			err := c.Health(hctx)
			cancel()
			if ctx.Err() != nil {
				return ""
			}
			if err == nil {
				fails = 0
				continue
			}
			if window := max(s.opts.HealthEvery*time.Duration(s.opts.Failures), 2*longest); !last.IsZero() && time.Since(last) < window {
				// Busy, not dead: it answered a call within the window.
				s.log.Debug("TEI health check failed, but TEI answered a call recently", "ago", time.Since(last).String(), "err", err.Error())
				fails = 0
				continue
			}
			fails++
			s.log.Debug("TEI health check failed", "failures", fails, "err", err.Error())
			if fails >= s.opts.Failures {
				s.log.Warn("TEI failed its health checks", "failures", fails, "err", err.Error())
				return fmt.Sprintf("TEI failed %d health checks in a row", fails)
			}
		}
	}
}

// newRestartBackoff doubles from min to max, each delay varied by ±jitter
// (a fraction), and never gives up.
func newRestartBackoff(min, max time.Duration, jitter float64) backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     min,
		RandomizationFactor: jitter,
		Multiplier:          2,
		MaxInterval:         max,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}
