package proxy

import (
	"context"
	"slices"
	"strconv"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// outputKind is what an embedding call produces; it is part of the cache
// key, while the HTTP route is not, so every API face shares entries.
type outputKind string

const (
	dense  outputKind = "dense"
	sparse outputKind = "sparse"
)

// embedParams are the settings of an embedding call that change its output.
type embedParams struct {
	kind       outputKind
	normalize  bool
	truncate   bool   // resolved against the upstream's auto_truncate
	direction  string // "Right" or "Left"
	dims       int    // 0: the model's own
	promptName string
}

// keyPrefix encodes the model's identity and p for cache keys.
func (p embedParams) keyPrefix(info *tei.Info) string {
	b := make([]byte, 0, 96)
	b = appendField(b, info.ModelID)
	b = appendField(b, info.Revision())
	b = appendField(b, string(p.kind))
	b = appendField(b, strconv.FormatBool(p.normalize))
	b = appendField(b, strconv.FormatBool(p.truncate))
	b = appendField(b, p.direction)
	b = appendField(b, strconv.Itoa(p.dims))
	b = appendField(b, p.promptName)
	return string(b)
}

// request builds TEI's request for inputs under p.
func (p embedParams) request(inputs []tei.Input) tei.EmbedRequest {
	req := tei.EmbedRequest{
		Inputs:              inputs,
		Truncate:            &p.truncate,
		TruncationDirection: p.direction,
		PromptName:          p.promptName,
	}
	if p.kind == dense {
		req.Normalize = &p.normalize
		if p.dims > 0 {
			req.Dimensions = &p.dims
		}
	}
	return req
}

// flight is one call to TEI in progress for a chunk of distinct missed
// inputs. Requests that miss on one of its keys wait on it instead of
// calling TEI again.
type flight struct {
	done  chan struct{}
	items []*entry // by position in the chunk, set before done is closed
	err   error

	// ctx bounds the call; cancel ends it early.
	ctx    context.Context
	cancel context.CancelFunc

	// Guarded by Server.mu.
	keys []key // keys registered in Server.inflight for this flight
	refs int   // requests waiting on it; at zero the call is cancelled
}

// slot is where a request finds the answer for one distinct missed input.
type slot struct {
	f   *flight
	pos int  // index in f.items
	led bool // this request started f
}

// embed returns the entry of every input, in input order: hits from the
// cache, misses from TEI. Distinct misses go upstream once, in chunks no
// larger than TEI accepts, sent concurrently; a miss already in flight for
// another request is waited on instead. If any chunk fails the whole call
// fails with that error.
func (s *Server) embed(ctx context.Context, up *upstream, p embedParams, inputs []tei.Input) ([]*entry, error) {
	out := make([]*entry, len(inputs))
	info := up.info.Load()
	prefix := p.keyPrefix(info)
	cache := s.cache

	// Look every input up; collect distinct misses and where they go.
	var (
		missKeys  []key
		missText  []tei.Input
		missPos   [][]int // positions in inputs, per distinct miss
		index     map[key]int
		uncached  []tei.Input
		uncachPos []int
	)
	for i, in := range inputs {
		if in.IDs != nil {
			uncached = append(uncached, in)
			uncachPos = append(uncachPos, i)
			continue
		}
		k := textKey(prefix, in.Text)
		if e, ok := cache.get(k); ok {
			out[i] = e
			s.m.cacheHits.Inc()
			continue
		}
		if cache != nil {
			s.m.cacheMisses.Inc()
		}
		if index == nil {
			index = make(map[key]int)
		}
		if j, ok := index[k]; ok {
			missPos[j] = append(missPos[j], i)
			continue
		}
		index[k] = len(missKeys)
		missKeys = append(missKeys, k)
		missText = append(missText, in)
		missPos = append(missPos, []int{i})
	}
	if len(missKeys) == 0 && len(uncached) == 0 {
		return out, nil
	}

	follow := true
	for attempt := 0; ; attempt++ {
		slots := s.startFlights(ctx, up, p, missKeys, missText, uncached, follow)
		failed, err := s.await(ctx, slots)
		if err != nil {
			return nil, err
		}
		for j, sl := range slots[:len(missKeys)] {
			if sl.f.err != nil {
				continue
			}
			for _, i := range missPos[j] {
				out[i] = sl.f.items[sl.pos]
			}
		}
		for j, sl := range slots[len(missKeys):] {
			out[uncachPos[j]] = sl.f.items[sl.pos]
		}
		if len(failed) == 0 {
			return out, nil
		}
		// Another request's call failed for inputs we share. Its error may
		// concern only its own inputs (one too long, say), so try ours
		// ourselves, once, rather than take it on.
		if attempt > 0 {
			return nil, slots[failed[0]].f.err
		}
		follow = false
		var k2 []key
		var t2 []tei.Input
		var p2 [][]int
		for _, j := range failed {
			k2, t2, p2 = append(k2, missKeys[j]), append(t2, missText[j]), append(p2, missPos[j])
		}
		missKeys, missText, missPos, uncached = k2, t2, p2, nil
	}
}

// startFlights finds or starts the flight for each distinct miss (and for
// uncached inputs, which never join another request's flight). It returns
// one slot per key, then one per uncached input. The request holds one
// reference on every flight its slots name.
func (s *Server) startFlights(ctx context.Context, up *upstream, p embedParams, keys []key, texts, uncached []tei.Input, follow bool) []slot {
	slots := make([]slot, len(keys)+len(uncached))
	limit := up.batchLimit()
	var chunks []*flight
	var chunkInputs [][]tei.Input
	add := func(i int, in tei.Input, k *key) {
		n := len(chunks)
		if n == 0 || len(chunkInputs[n-1]) == limit {
			chunks = append(chunks, &flight{done: make(chan struct{}), refs: 1})
			chunkInputs = append(chunkInputs, make([]tei.Input, 0, min(limit, len(slots)-i)))
			n++
		}
		f, pos := chunks[n-1], len(chunkInputs[n-1])
		if k != nil {
			f.keys = append(f.keys, *k)
			s.inflight[*k] = slot{f: f, pos: pos}
		}
		slots[i] = slot{f: f, pos: pos, led: true}
		chunkInputs[n-1] = append(chunkInputs[n-1], in)
	}

	s.mu.Lock()
	var followed map[*flight]bool
	for i, k := range keys {
		if sl, ok := s.inflight[k]; ok && follow {
			if !followed[sl.f] {
				if followed == nil {
					followed = make(map[*flight]bool)
				}
				followed[sl.f] = true
				sl.f.refs++
			}
			slots[i] = sl
			s.m.coalesced.Inc()
			continue
		}
		add(i, texts[i], &keys[i])
	}
	for j, in := range uncached {
		add(len(keys)+j, in, nil)
	}
	for _, f := range chunks {
		// The call must outlive this request if others wait on it, so it
		// is detached from ctx's cancellation but keeps its deadline; it
		// is cancelled when its last waiter leaves.
		f.ctx, f.cancel = detach(ctx)
	}
	s.mu.Unlock()

	for i, f := range chunks {
		s.wg.Add(1)
		go s.fly(f, up, p, chunkInputs[i])
	}
	return slots
}

// detach returns a context that keeps ctx's values and deadline but not its
// cancellation.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(d, dl)
	}
	return context.WithCancel(d)
}

// fly makes the call to TEI for flight f and publishes its result.
func (s *Server) fly(f *flight, up *upstream, p embedParams, inputs []tei.Input) {
	defer s.wg.Done()
	defer f.cancel()
	ctx := f.ctx
	route := "/embed"
	if p.kind == sparse {
		route = "/embed_sparse"
	}
	var res *tei.Embeddings
	err := up.call(ctx, route, len(inputs), func(ctx context.Context) error {
		var err error
		if p.kind == sparse {
			res, err = up.client.EmbedSparse(ctx, p.request(inputs))
		} else {
			res, err = up.client.Embed(ctx, p.request(inputs))
		}
		return err
	})
	var items []*entry
	if err == nil {
		items = makeEntries(inputs, res)
		for i, k := range f.keys {
			s.cache.add(k, items[i])
		}
	}
	s.mu.Lock()
	for _, k := range f.keys {
		if sl, ok := s.inflight[k]; ok && sl.f == f {
			delete(s.inflight, k)
		}
	}
	f.keys = nil
	f.items, f.err = items, err
	close(f.done)
	s.mu.Unlock()
}

// makeEntries copies each item out of TEI's answer and shares its
// x-compute-tokens among the inputs by length, exactly when there is one.
func makeEntries(inputs []tei.Input, res *tei.Embeddings) []*entry {
	items := make([]*entry, len(res.Items))
	total := res.Response.ComputeTokens()
	var weight, sum int
	for _, in := range inputs {
		weight += inputWeight(in)
	}
	for i, it := range res.Items {
		e := &entry{json: append([]byte(nil), it...)}
		if total >= 0 && weight > 0 {
			w := inputWeight(inputs[i])
			e.tokens = total * w / weight
			sum += e.tokens
			if i == len(res.Items)-1 {
				e.tokens += total - sum
			}
		}
		items[i] = e
	}
	return items
}

func inputWeight(in tei.Input) int {
	if in.IDs != nil {
		return len(in.IDs)
	}
	return len(in.Text) + 1
}

// await waits for every slot's flight. It returns the indices of slots whose
// flight, started by another request, failed; an error when a flight this
// request started failed or ctx ended. It releases the request's reference
// on every flight.
func (s *Server) await(ctx context.Context, slots []slot) (failed []int, err error) {
	flights := make([]*flight, 0, 1)
	for _, sl := range slots {
		if len(flights) == 0 || flights[len(flights)-1] != sl.f && !slices.Contains(flights, sl.f) {
			flights = append(flights, sl.f)
		}
	}
	for i, f := range flights {
		select {
		case <-f.done:
		case <-ctx.Done():
			s.leave(flights[i:])
			return nil, ctx.Err()
		}
		s.leave(flights[i : i+1])
	}
	for i, sl := range slots {
		if sl.f.err == nil {
			continue
		}
		if sl.led {
			return nil, sl.f.err
		}
		failed = append(failed, i)
	}
	return failed, nil
}

// leave drops this request's reference on each flight, cancelling a call
// nobody waits on any more.
func (s *Server) leave(flights []*flight) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range flights {
		f.refs--
		if f.refs > 0 {
			continue
		}
		select {
		case <-f.done:
		default:
			// Nobody wants the answer: stop the call, and let a later
			// request start afresh rather than join a dying flight.
			for _, k := range f.keys {
				if cur, ok := s.inflight[k]; ok && cur.f == f {
					delete(s.inflight, k)
				}
			}
			f.cancel()
		}
	}
}
