package proxy

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// slowOne is a simulator taking 4 inputs at a time in 60 ms batches, and a
// proxy keeping at most 4 inputs in flight to it (a static limit), so that
// work queues in the proxy.
func slowOne(t *testing.T, edit func(*Config)) (*teisim.Server, *Server, string) {
	t.Helper()
	sim, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-concurrent-requests", "4",
		"--max-client-batch-size", "4", "--sim-batch-cost", "60ms", "--sim-token-cost", "0s")
	cfg := testConfig(url)
	cfg.CacheSize = 0
	cfg.AdaptiveConcurrency = false
	if edit != nil {
		edit(&cfg)
	}
	srv, p := startProxy(t, cfg)
	return sim, srv, p
}

// TestQueriesGoFirst: with bulk work queued, a query arriving later is
// sent before it.
func TestQueriesGoFirst(t *testing.T) {
	_, srv, p := slowOne(t, nil)
	type done struct {
		name string
		at   time.Time
	}
	finished := make(chan done, 16)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inputs := []string{fmt.Sprintf("doc %d a", i), fmt.Sprintf("doc %d b", i), fmt.Sprintf("doc %d c", i),
				fmt.Sprintf("doc %d d", i), fmt.Sprintf("doc %d e", i)} // 5 inputs: bulk
			if st, _, b, err := tryPost(p, "/embed", inputsJSON(inputs)); err != nil || st != 200 {
				t.Errorf("bulk: %d %s %v", st, b, err)
			}
			finished <- done{"bulk", time.Now()}
		}()
	}
	waitUntil(t, 5*time.Second, func() bool { return metricWith(t, srv, "sidecar_queue_inputs", "priority", "bulk") >= 20 })
	wg.Add(1)
	go func() {
		defer wg.Done()
		if st, _, b, err := tryPost(p, "/embed", `{"inputs":"an urgent query"}`); err != nil || st != 200 {
			t.Errorf("query: %d %s %v", st, b, err)
		}
		finished <- done{"query", time.Now()}
	}()
	wg.Wait()
	close(finished)
	var order []string
	for d := range finished {
		order = append(order, d.name)
	}
	// Channel order is completion order: the query must not come last
	// among work that was queued before it.
	pos := -1
	for i, n := range order {
		if n == "query" {
			pos = i
		}
	}
	if pos < 0 || pos > 3 {
		t.Errorf("completion order %v: the query finished behind most of the bulk work queued before it", order)
	}
}

// TestBulkIsNeverStarved: a flood of queries keeps the replica busy; a
// bulk request still gets its share and finishes.
func TestBulkIsNeverStarved(t *testing.T) {
	_, _, p := slowOne(t, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, _, err := tryPost(p, "/embed", fmt.Sprintf(`{"inputs":"flood %d %d"}`, w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	st, _, b := post(t, p, "/embed", inputsJSON([]string{"bulk 1", "bulk 2", "bulk 3", "bulk 4", "bulk 5", "bulk 6"}))
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if st != 200 {
		t.Fatalf("bulk under a flood of queries: %d %s", st, b)
	}
	// With the replica taking one 4-input call every 60 ms and bulk
	// guaranteed every fifth call, it needs two of its calls: well under
	// the request timeout, where starvation would take it.
	if took > 10*time.Second {
		t.Errorf("bulk took %v under a flood of queries", took)
	}
}

// TestLeavingReleasesQueuedInputs: a request whose client leaves, or whose
// deadline passes, while its inputs wait in the queue takes them out.
func TestLeavingReleasesQueuedInputs(t *testing.T) {
	// The replica takes 4 inputs at once and holds them (stalled). A query
	// takes them first; bulk work queues behind it, and a second query,
	// sent later, goes ahead of that bulk when the first query's deadline
	// frees the room. So the bulk requests' deadlines pass while their
	// inputs wait in the queue: 429 with Retry-After, every one; and a bulk
	// client that goes away meanwhile takes its inputs out at once. (Six
	// requests sent at once made which ones waited a race with the first
	// deadline. Each step waits for the queue to show the last one, and
	// leaves 300ms between arrivals, so that a slow machine cannot reorder
	// the deadlines: on CI, under -race, bulk requests that reached the
	// sidecar late outlived the second query and were sent.)
	//
	// The room is the sidecar's, not TEI's: the adaptive limit starts at
	// one batch (4 inputs) and, with every call stalled, learns nothing,
	// while TEI has its 512 permits. With TEI's permits as the bound, the
	// second query raced TEI noticing that the first had gone: TEI
	// answered it 429, and the bulk work took the room.
	const timeout = 2 * time.Second
	sim, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "4",
		"--sim-batch-cost", "60ms", "--sim-token-cost", "0s")
	cfg := testConfig(url)
	cfg.CacheSize = 0
	cfg.AdaptiveConcurrency = true
	cfg.RequestTimeout = timeout
	srv, p := startProxy(t, cfg)
	sim.SetFault(teisim.Fault{Stall: 5 * time.Second}) // the replica holds what it has
	type result struct {
		name string
		st   int
	}
	results := make(chan result, 8)
	var wg sync.WaitGroup
	send := func(name string, n int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inputs := make([]string, n)
			for i := range inputs {
				inputs[i] = fmt.Sprintf("%s %d", name, i)
			}
			st, h, _, err := tryPost(p, "/embed", inputsJSON(inputs))
			if err != nil {
				t.Error(err)
			}
			if st == 429 && h.Get("Retry-After") == "" {
				t.Errorf("%s: 429 without Retry-After", name)
			}
			results <- result{name, st}
		}()
	}
	inflight := func(want float64) {
		for deadline := time.Now().Add(5 * time.Second); metricWith(t, srv, "sidecar_inflight_inputs", "pool", "embed") != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never %v inputs in flight", want)
			}
		}
	}
	queued := func(want float64) {
		t.Helper()
		for deadline := time.Now().Add(timeout / 2); counterValue(t, srv, "sidecar_queue_inputs") != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%v inputs queued, want %v", counterValue(t, srv, "sidecar_queue_inputs"), want)
			}
		}
	}
	send("query 1", 4) // t=0: takes the replica's 4 inputs; leaves at 2s
	inflight(4)
	time.Sleep(300 * time.Millisecond)
	for i := range 3 {
		send(fmt.Sprintf("bulk %d", i), 5) // t≥0.3s: queued; deadlines ≥2.3s
	}
	queued(3 * 5)
	time.Sleep(300 * time.Millisecond)
	send("query 2", 4) // t≥0.6s: queued ahead of the bulk; sent at 2s, leaves ≥2.6s
	queued(3*5 + 4)
	// A bulk client that goes away while its inputs wait takes them out
	// of the queue at once, long before its deadline.
	ctx, leave := context.WithCancel(t.Context())
	gone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p+"/embed", strings.NewReader(inputsJSON([]string{"leaver 0", "leaver 1", "leaver 2", "leaver 3", "leaver 4"})))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	queued(3*5 + 4 + 5)
	leave()
	if err := <-gone; err == nil {
		t.Error("the leaving client got an answer")
	}
	queued(3*5 + 4)
	wg.Wait()
	close(results)
	for r := range results {
		want := http.StatusTooManyRequests // waited in the queue past its deadline
		if strings.HasPrefix(r.name, "query") {
			want = http.StatusGatewayTimeout // its deadline passed in TEI
		}
		if r.st != want {
			t.Errorf("%s: %d, want %d", r.name, r.st, want)
		}
	}
	if n := counterValue(t, srv, "sidecar_queue_inputs"); n != 0 {
		t.Errorf("%v inputs left in the queue after every waiter left", n)
	}
	srv.embedP.mu.Lock()
	left := len(srv.embedP.sched.flights)
	srv.embedP.mu.Unlock()
	if left != 0 {
		t.Errorf("%d flights left in the table", left)
	}
}

// TestHugeRequestSucceeds is a regression test: a request of more inputs
// than TEI's permits plus the queue (4608 by default) got 429 on an idle
// server, which every SDK retries in vain. It is scheduled chunk by chunk.
func TestHugeRequestSucceeds(t *testing.T) {
	sim, url := startSim(t, "--model-id", "BAAI/bge-small-en-v1.5")
	cfg := testConfig(url)
	cfg.BodyLimit = 4_000_000
	_, p := startProxy(t, cfg)
	inputs := make([]string, 6000)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("i%d", i)
	}
	st, _, b := post(t, p, "/embed", inputsJSON(inputs))
	if st != 200 {
		t.Fatalf("%d %.300s", st, b)
	}
	checkVectors(t, sim, inputs[:1], []byte(`[`+strings.SplitN(string(b[1:]), "],", 2)[0]+`]]`))
}

// TestGradientLimitFindsTheKnee feeds the limiter a model of TEI: latency
// is one batch time while the inputs in flight fit in a batch of knee, and
// grows with the queue beyond. It must settle near the knee, well below
// TEI's 512 permits, and back off when TEI gets slower.
func TestGradientLimitFindsTheKnee(t *testing.T) {
	const knee = 16
	// TEI: a call with inflight inputs ahead and beside it waits for the
	// batches before its own.
	tei := func(inflight int, batch time.Duration, staged bool) sample {
		batches := math.Ceil(float64(inflight) / knee)
		return sample{rtt: time.Duration(batches * float64(batch)), queue: time.Duration((batches - 1) * float64(batch)),
			inference: batch, staged: staged, inflight: inflight}
	}
	for _, staged := range []bool{true, false} {
		t.Run(fmt.Sprintf("stage times %t", staged), func(t *testing.T) {
			g := newGradientLimit(4, 4, 512)
			for range 2000 {
				g.observe(tei(g.current(), 20*time.Millisecond, staged)) // a saturated client keeps the limit full
			}
			if got := g.current(); got < knee || got > 3*knee {
				t.Errorf("settled at %d inputs in flight, want within [%d, %d]", got, knee, 3*knee)
			}
			// From far above the knee it comes down.
			g = newGradientLimit(512, 4, 512)
			g.observe(tei(16, 20*time.Millisecond, staged)) // one unloaded call first
			for range 300 {
				g.observe(tei(g.current(), 20*time.Millisecond, staged))
			}
			if got := g.current(); got > 3*knee {
				t.Errorf("from 512 it came down only to %d", got)
			}
		})
	}
	// Queueing rises (TEI got slower for these texts): it backs off.
	g := newGradientLimit(4, 4, 512)
	for range 500 {
		g.observe(tei(g.current(), 20*time.Millisecond, true))
	}
	before := g.current()
	for range 20 {
		s := tei(g.current(), 20*time.Millisecond, true)
		s.queue *= 3
		g.observe(s)
	}
	if got := g.current(); got >= before {
		t.Errorf("TEI's queue grew and the limit went %d → %d", before, got)
	}
	// Unused room is not grown.
	g2 := newGradientLimit(32, 4, 512)
	for range 500 {
		g2.observe(sample{rtt: 10 * time.Millisecond, inference: 10 * time.Millisecond, staged: true, inflight: 2})
	}
	if got := g2.current(); got != 32 {
		t.Errorf("an idle limit grew to %d", got)
	}
}

// TestAdaptiveLimitOnTheSimulator: against a simulator with one backend
// worker and batches of at most 8, the limit the proxy keeps comes down
// from TEI's 512 permits to near the batch, and work never fails.
func TestAdaptiveLimitOnTheSimulator(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-small-en-v1.5", "--sim-workers", "1", "--max-batch-requests", "8",
		"--sim-batch-cost", "10ms", "--sim-token-cost", "0s")
	cfg := testConfig(url)
	cfg.CacheSize = 0
	srv, p := startProxy(t, cfg)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if st, _, b, err := tryPost(p, "/embed", fmt.Sprintf(`{"inputs":"load %d %d"}`, w, i)); err != nil || st != 200 {
					t.Errorf("%d %s %v", st, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	limit := metricWith(t, srv, "sidecar_concurrency_limit", "pool", "embed")
	// Near the batch: a few batches' worth (queries get one batch of room
	// beyond it), far below TEI's 512 permits.
	if limit < 8 || limit > 96 {
		t.Errorf("the adaptive limit is %v inputs, want near the batch of 8 (8..96)", limit)
	}
}

// TestGradientLimitLearnsTheShortBatchUnloaded: TEI's shortest batch was
// learned only from calls made while the limit was at least half used, so
// the first unloaded queries taught it nothing, the first bulk batch (many
// times longer) became "the shortest", and on a backend whose batch time
// grows with its tokens the limit grew until queries waited behind two
// long batches inside TEI. A query answered before the load now sets the
// reference, and long batches under load bring the limit down.
func TestGradientLimitLearnsTheShortBatchUnloaded(t *testing.T) {
	g := newGradientLimit(32, 4, 512)
	// One query, alone: a 7 ms batch.
	g.observe(sample{rtt: 8 * time.Millisecond, inference: 7 * time.Millisecond, staged: true, inflight: 1, inputs: 1})
	// Then bulk keeps the limit full: everything in flight runs as one
	// batch of 5 ms plus 5.4 ms an input, and waits about half a batch.
	for range 200 {
		n := g.current()
		batch := 5*time.Millisecond + time.Duration(n)*5400*time.Microsecond
		g.observe(sample{rtt: batch * 3 / 2, queue: batch / 2, inference: batch, staged: true, inflight: n})
	}
	// A call's wait, queue and batch, about latencyBudget times the
	// shortest batch: no more than half as much again.
	got := g.current()
	batch := 5*time.Millisecond + time.Duration(got)*5400*time.Microsecond
	if wait, most := batch*3/2, time.Duration(1.5*latencyBudget*float64(7*time.Millisecond)); wait > most {
		t.Errorf("the limit is %d inputs (calls waiting %s), want at most %s", got, wait, most)
	}
}

// TestGradientLimitHoldsOnAlternatingBatches: on a CPU backend TEI takes
// everything queued as its next batch, so with the limit full batches
// alternate long and short: the short one holds what came during the long
// one, and its inputs waited out the long batch. Compared with their own
// short batch, that wait looked like a queue building up, and the limit
// shrank until TEI's fixed cost per batch ate a sixth of ingest's
// throughput. It must hold where a call's wait is about latencyBudget
// times the shortest batch.
func TestGradientLimitHoldsOnAlternatingBatches(t *testing.T) {
	const batchCost, inputCost = 5 * time.Millisecond, 5400 * time.Microsecond
	cost := func(inputs float64) time.Duration { return batchCost + time.Duration(inputs*float64(inputCost)) }
	g := newGradientLimit(32, 4, 512)
	g.observe(sample{rtt: 8 * time.Millisecond, inference: 7 * time.Millisecond, staged: true, inflight: 1, inputs: 1}) // one query, alone
	for range 500 {
		n := g.current()
		long, short := cost(0.7*float64(n)), cost(0.3*float64(n))
		// The long batch's calls came while the short one ran; the
		// short batch's, while the long one ran.
		g.observe(sample{rtt: short/5 + long, queue: short / 5, inference: long, staged: true, inflight: n})
		g.observe(sample{rtt: long*9/10 + short, queue: long * 9 / 10, inference: short, staged: true, inflight: n})
	}
	n := float64(g.current())
	// The longest wait: most of the long batch, then the short one.
	wait := cost(0.7*n)*9/10 + cost(0.3*n)
	budget := time.Duration(latencyBudget * float64(7*time.Millisecond))
	if wait < budget/2 || wait > budget*3/2 {
		t.Errorf("the limit is %.0f inputs: calls wait up to %s, want about %s (the budget)", n, wait, budget)
	}
}

// TestGradientLimitUnderAFloodOfSingleCalls: a flood of queries sends one
// call per query, a hundred or more to one TEI batch, and they come back
// together. Each call cut the limit again (it fell from hundreds to its
// floor in one batch) and grew it whole (it outgrew the clients), and the
// shortest batch drifted up with calls that merely left half the limit
// unused, until the limit reached TEI's permits. Now a round of calls cuts
// once and grows by one allowance, and the shortest batch moves only with
// calls that had TEI to themselves: the limit holds near the budget.
func TestGradientLimitUnderAFloodOfSingleCalls(t *testing.T) {
	const batchCost, queryCost = 5 * time.Millisecond, 1900 * time.Microsecond
	cost := func(inputs int) time.Duration { return batchCost + time.Duration(inputs)*queryCost }
	g := newGradientLimit(32, 4, 512)
	g.observe(sample{rtt: 8 * time.Millisecond, inference: cost(1), staged: true, inflight: 1, inputs: 1, seq: g.start()})
	shortest := g.minBatch
	budget := time.Duration(latencyBudget * shortest * float64(time.Second))
	// round runs the limit's worth of single calls, or clients' worth if
	// fewer, in flight together: TEI runs them as one batch, and the last
	// of them waited out the one before. It returns the lowest limit seen.
	round := func(clients int) (n, low int) {
		n = min(g.current(), clients)
		seqs := make([]uint64, n)
		for i := range seqs {
			seqs[i] = g.start()
		}
		batch := cost(n)
		low = g.current()
		for i, seq := range seqs {
			g.observe(sample{rtt: batch + batch*time.Duration(i)/time.Duration(n), queue: batch * time.Duration(i) / time.Duration(n),
				inference: batch, staged: true, inflight: n, inputs: 1, seq: seq})
			low = min(low, g.current())
		}
		return n, low
	}
	// From far above the budget, the first batch's calls all come back
	// late: one cut, not one per call.
	g.limit = 300
	if n, low := round(512); low < n*3/4 {
		t.Fatalf("one batch's calls cut the limit from %d to %d", n, low)
	}
	for i := range 300 {
		if n, low := round(256); i > 100 && low < n*3/4 {
			t.Fatalf("round %d: one batch's calls cut the limit from %d to %d", i, n, low)
		}
	}
	n := g.current()
	if wait := 2 * cost(n); wait < budget/2 || wait > 2*budget {
		t.Errorf("the limit is %d queries: the last of a batch waits %s, want about %s (the budget)", n, wait, budget)
	}
	// Fewer clients than half the limit: the limit is unused, but TEI is
	// busy with their batches, and those say nothing of the shortest.
	for range 300 {
		round(n / 3)
	}
	if g.minBatch != shortest {
		t.Errorf("the shortest batch moved from %.1f ms to %.1f ms with calls under load", shortest*1e3, g.minBatch*1e3)
	}
}

// TestGradientLimitHalvesOncePerRoundOn429: when TEI refuses the calls of
// one round with 429, the limit halves once, not once per refused call.
func TestGradientLimitHalvesOncePerRoundOn429(t *testing.T) {
	g := newGradientLimit(256, 4, 512)
	seqs := make([]uint64, 32)
	for i := range seqs {
		seqs[i] = g.start()
	}
	for _, seq := range seqs {
		g.overloaded(seq)
	}
	if got := g.current(); got != 128 {
		t.Errorf("32 refused calls of one round took the limit from 256 to %d, want 128", got)
	}
	g.overloaded(g.start()) // a call of the next round
	if got := g.current(); got != 64 {
		t.Errorf("a refused call of the next round left the limit at %d, want 64", got)
	}
}
