package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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
	truncate   bool   // resolved against the pool's auto_truncate
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

// batch is the TEI call shape for p: inputs with equal batch keys are sent
// together.
func (p embedParams) batch() *batchSpec {
	route := "/embed"
	if p.kind == sparse {
		route = "/embed_sparse"
	}
	tail := append(make([]byte, 0, 128), `],"truncate":`...)
	tail = strconv.AppendBool(tail, p.truncate)
	tail = append(tail, `,"truncation_direction":"`...)
	tail = append(tail, p.direction...)
	tail = append(tail, '"')
	if p.promptName != "" {
		tail = append(tail, `,"prompt_name":`...)
		tail = appendJSONString(tail, p.promptName)
	}
	if p.kind == dense {
		tail = append(tail, `,"normalize":`...)
		tail = strconv.AppendBool(tail, p.normalize)
		if p.dims > 0 {
			tail = append(tail, `,"dimensions":`...)
			tail = strconv.AppendInt(tail, int64(p.dims), 10)
		}
	}
	tail = append(tail, '}')
	return &batchSpec{route: route, key: route + string(tail), head: []byte(`{"inputs":[`), tail: tail}
}

// checkKind answers what TEI would refuse for the pool's model, without
// calling TEI: /embed on a reranker or classifier, normalize on a SPLADE
// model, /embed_sparse on a dense one, dimensions beyond the model's. These
// are the caller's mistakes and must not count against TEI. The checks and
// messages follow TEI's order.
func checkKind(info *tei.Info, ep embedParams, dim int) error {
	k := info.ModelType.Kind()
	switch {
	case ep.kind == sparse && k != tei.KindSparse:
		return wrongModel("Backend error: Model is not an embedding model with SPLADE pooling")
	case ep.kind == sparse:
		return nil
	case k != tei.KindEmbedding && k != tei.KindSparse:
		return wrongModel("Backend error: Model is not an embedding model")
	case k == tei.KindSparse && ep.normalize:
		return wrongModel("Backend error: `normalize` is not available for SPLADE models")
	case ep.dims > 0 && dim > 0 && ep.dims > dim:
		return &requestError{status: 422, typ: tei.TypeValidation, param: "dimensions",
			msg: "Input validation error: `dimensions` should be smaller than the maximum embedding dimension."}
	}
	return nil
}

// reqOpts are what a request asks of the scheduler and the caches.
type reqOpts struct {
	prio priority
	// noCache skips the cache lookups (Cache-Control: no-cache); the
	// answer is still stored.
	noCache bool
	// noStore keeps the answer out of the caches (Cache-Control: no-store).
	noStore bool
}

// cacheCount is how many of a request's inputs came from a cache, and the
// TEI work behind the rest: the calls that computed them (none when all
// came from a cache) and this request's share of their tokens and
// characters (a call may carry other requests' inputs too).
type cacheCount struct {
	hits, total   int
	resps         []*tei.Response
	tokens, chars int
}

// String is the X-Cache header: HIT when every input came from a cache,
// MISS when none did, PARTIAL otherwise.
func (c cacheCount) String() string {
	switch c.hits {
	case c.total:
		return "HIT"
	case 0:
		return "MISS"
	}
	return "PARTIAL"
}

// embed returns the entry of every input, in input order: hits from the
// in-process cache, then from the shared one (one round trip for all the
// request's remaining keys), misses from TEI through the pool's scheduler.
// Distinct misses are computed once, whoever else wants them; token-id
// inputs are not cached. If any input fails, the whole call fails with
// that input's error.
func (s *Server) embed(ctx context.Context, p *pool, ep embedParams, inputs []tei.Input, ro reqOpts) ([]*entry, cacheCount, error) {
	cc := cacheCount{total: len(inputs)}
	ri := infoOf(ctx)
	ri.work(len(inputs), ro.prio)
	defer func() { ri.hit(cc.hits) }()
	info := p.info()
	if err := checkKind(info, ep, int(p.dim.Load())); err != nil {
		return nil, cc, err
	}
	out := make([]*entry, len(inputs))
	prefix := ep.keyPrefix(info)
	cache := s.cache

	// Look every input up in memory; collect distinct misses and where
	// they go.
	var (
		keys   []key
		keyIn  []tei.Input
		where  [][]int // positions in inputs, per distinct key
		index  map[key]int
		uncach []int // token-id inputs
	)
	for i, in := range inputs {
		if in.IDs != nil {
			uncach = append(uncach, i)
			continue
		}
		k := textKey(prefix, in.Text)
		if !ro.noCache {
			if e, ok := cache.get(k); ok {
				out[i] = e
				cc.hits++
				s.m.cacheHits.WithLabelValues("embed", "memory").Inc()
				continue
			}
		}
		if index == nil {
			index = make(map[key]int)
		}
		if j, ok := index[k]; ok {
			where[j] = append(where[j], i)
			continue
		}
		index[k] = len(keys)
		keys, keyIn, where = append(keys, k), append(keyIn, in), append(where, []int{i})
	}

	// The shared layer, for what memory lacks.
	var found []*entry
	if len(keys) > 0 && s.shared != nil && !ro.noCache {
		found = make([]*entry, len(keys))
		vals := s.sharedGet(ctx, toRaw(keys))
		for j, v := range vals {
			e, ok := decodeEntry(v)
			if !ok {
				continue
			}
			e = cache.add(keys[j], e) // promoted to memory
			found[j] = e
			for _, i := range where[j] {
				out[i] = e
				cc.hits++
			}
			s.m.cacheHits.WithLabelValues("embed", "redis").Add(float64(len(where[j])))
		}
	}

	var (
		flights []*flight
		fwhere  [][]int
		spec    *batchSpec
		org     = originOf(ctx)
	)
	miss := func(in tei.Input, k key, keyed bool, at []int) {
		if spec == nil {
			spec = ep.batch()
		}
		f := &flight{key: k, keyed: keyed, prio: ro.prio, origin: org,
			embed: &embedWork{batch: spec, input: appendInput(nil, in), weight: inputWeight(in)}}
		f.keep.Store(!ro.noStore)
		flights = append(flights, f)
		fwhere = append(fwhere, at)
	}
	for j, k := range keys {
		if found != nil && found[j] != nil {
			continue
		}
		if cache != nil || s.shared != nil {
			s.m.cacheMisses.WithLabelValues("embed").Add(float64(len(where[j])))
		}
		miss(keyIn[j], k, true, where[j])
	}
	for _, i := range uncach {
		miss(inputs[i], key{}, false, []int{i})
	}
	if len(flights) == 0 {
		return out, cc, nil
	}
	w := newWaiter(len(flights))
	if err := s.wait(ctx, p, w, flights); err != nil {
		return nil, cc, err
	}
	for j, f := range w.flights {
		if f.err != nil {
			return nil, cc, f.err
		}
		for _, i := range fwhere[j] {
			out[i] = f.entry
		}
		if f.resp != nil && !slices.Contains(cc.resps, f.resp) {
			cc.resps = append(cc.resps, f.resp)
		}
		cc.tokens += f.entry.tokens
		in := inputs[fwhere[j][0]]
		if in.IDs != nil {
			cc.chars += len(in.IDs)
		} else {
			cc.chars += utf8.RuneCountInString(in.Text)
		}
	}
	return out, cc, nil
}

// toRaw gives keys the shared layer's type.
func toRaw(keys []key) [][32]byte {
	out := make([][32]byte, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}

// encodeEntry is an entry as the shared layer keeps it: its share of TEI's
// token count, then TEI's JSON bytes untouched, so an answer from Redis is
// byte for byte TEI's and a hit never formats a float.
func encodeEntry(e *entry) []byte {
	b := binary.AppendUvarint(make([]byte, 0, len(e.json)+4), uint64(e.tokens)+1)
	return append(b, e.json...)
}

// decodeEntry reads what encodeEntry wrote; ok is false for anything else,
// which is then a miss. The vector must be a JSON list of finite numbers.
func decodeEntry(v []byte) (*entry, bool) {
	tokens, n := binary.Uvarint(v)
	if n <= 0 || tokens == 0 {
		return nil, false
	}
	js := v[n:]
	if len(js) < 2 || (js[0] != '[') || bytes.Contains(js, []byte("null")) {
		return nil, false
	}
	return &entry{json: append([]byte(nil), js...), tokens: int(tokens - 1)}, true
}

func inputWeight(in tei.Input) int {
	if in.IDs != nil {
		return len(in.IDs)
	}
	return len(in.Text) + 1
}

// requestOpts reads a request's X-Priority and Cache-Control: prio is
// its priority when X-Priority says nothing; n its inputs.
func (s *Server) requestOpts(h http.Header, n int) reqOpts {
	ro := reqOpts{prio: s.priorityOf(h.Get("X-Priority"), n)}
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "no-cache":
				ro.noCache = true
			case "no-store":
				ro.noStore = true
			}
		}
	}
	return ro
}

// priorityOf classifies a request of n inputs: a few inputs are someone's
// query; more are ingest. X-Priority may lower any request to bulk, and
// raise one to interactive only when the server allows it.
func (s *Server) priorityOf(header string, n int) priority {
	switch header {
	case "bulk":
		return bulk
	case "interactive":
		if s.cfg.PriorityAllowRaise {
			return interactive
		}
	}
	if n <= s.cfg.PriorityInteractiveMaxInputs {
		return interactive
	}
	return bulk
}
