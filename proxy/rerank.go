package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strconv"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// rerankParams is one rerank call, with truncate resolved against the
// pool's auto_truncate.
type rerankParams struct {
	query      string
	texts      []string
	truncate   bool
	direction  string
	raw        bool
	returnText bool
}

// rankResult is a whole rerank answer: ranks sorted by score, descending,
// and the JSON TEI would write for them.
type rankResult struct {
	ranks  []tei.Rank // without their texts: body has them
	body   []byte
	tokens int // TEI's x-compute-tokens for it; -1 unknown
	size   int64
}

// rankOverhead approximates the bookkeeping bytes of one cached rank.
const rankOverhead = 64

func (r *rankResult) admit(bytesCharger) int64 { return r.size }
func (r *rankResult) release() int64           { return r.size }

// newRankResult keeps ranks and body, dropping the ranks' copies of the
// texts (body carries them) and counting every byte it holds.
func newRankResult(ranks []tei.Rank, body []byte) *rankResult {
	size := int64(len(body) + entryOverhead)
	for i := range ranks {
		ranks[i].Text = nil
		size += int64(len(ranks[i].RawScore) + rankOverhead)
	}
	return &rankResult{ranks: ranks, body: body, tokens: -1, size: size}
}

// rerankKey hashes everything that changes a rerank answer.
func rerankKey(info *tei.Info, p rerankParams) key {
	b := make([]byte, 0, 256)
	b = appendField(b, info.ModelID)
	b = appendField(b, info.Revision())
	b = appendField(b, p.query)
	b = strconv.AppendInt(b, int64(len(p.texts)), 10)
	for _, t := range p.texts {
		b = appendField(b, t)
	}
	b = strconv.AppendBool(b, p.raw)
	b = strconv.AppendBool(b, p.truncate)
	b = strconv.AppendBool(b, p.returnText)
	b = appendField(b, p.direction)
	return sha256.Sum256(b)
}

// rerank scores p.texts against p.query: from the cache, from an identical
// rerank in flight, or from TEI, in chunks no larger than each replica
// takes. The answer is TEI's own bytes when one call scored every text,
// and TEI's order otherwise.
func (s *Server) rerank(ctx context.Context, p *pool, rp rerankParams, ro reqOpts) (*rankResult, cacheCount, error) {
	cc := cacheCount{total: 1}
	ri := infoOf(ctx)
	ri.work(len(rp.texts), ro.prio)
	defer func() { ri.hit(cc.hits) }()
	if len(rp.texts) == 0 {
		return nil, cc, errEmptyTexts
	}
	info := p.info()
	if info.ModelType.Kind() != tei.KindReranker {
		return nil, cc, wrongModel("Backend error: model is not a re-ranker model")
	}
	k := rerankKey(info, rp)
	if !ro.noCache {
		if r, ok := s.rankCache.get(k); ok {
			s.m.cacheHits.WithLabelValues("rerank", "memory").Inc()
			cc.hits = 1
			return r, cc, nil
		}
		if s.shared != nil {
			if tokens, body, ok := decodeRanked(s.sharedGet(ctx, [][32]byte{k})[0]); ok {
				if ranks, err := tei.ParseRanks(body, len(rp.texts)); err == nil {
					r := newRankResult(ranks, append([]byte(nil), body...))
					r.tokens = tokens
					r = s.rankCache.add(k, r)
					s.m.cacheHits.WithLabelValues("rerank", "redis").Inc()
					cc.hits = 1
					return r, cc, nil
				}
			}
		}
	}
	if s.rankCache != nil || s.shared != nil {
		s.m.cacheMisses.WithLabelValues("rerank").Inc()
	}
	f := &flight{key: k, keyed: true, prio: ro.prio, origin: originOf(ctx), rerank: newRerankWork(rp)}
	f.keep.Store(!ro.noStore)
	w := newWaiter(1)
	if err := s.wait(ctx, p, w, []*flight{f}); err != nil {
		return nil, cc, err
	}
	if f = w.flights[0]; f.err != nil {
		return nil, cc, f.err
	}
	cc.resps, cc.tokens = f.rerank.resps, max(f.rank.tokens, 0)
	return f.rank, cc, nil
}

// encodeRanked is a rerank answer as the shared layer keeps it: TEI's
// token count (+1; 0 unknown), then TEI's bytes.
func encodeRanked(r *rankResult) []byte {
	b := binary.AppendUvarint(make([]byte, 0, len(r.body)+4), uint64(r.tokens+1))
	return append(b, r.body...)
}

// decodeRanked reads what encodeRanked wrote.
func decodeRanked(v []byte) (tokens int, body []byte, ok bool) {
	t, n := binary.Uvarint(v)
	if n <= 0 || len(v) == n {
		return 0, nil, false
	}
	return int(t) - 1, v[n:], true
}

// span is a range of texts, [lo, hi).
type span struct{ lo, hi int }

// rerankWork is a rerank in progress: its texts encoded once, the spans not
// yet sent, and the ranks scored so far. Guarded by pool.mu, except the
// final result, which the goroutine that saw it complete builds alone.
type rerankWork struct {
	texts      [][]byte // each text's JSON
	head, tail []byte   // the body around the list of texts
	pending    []span
	ranks      []tei.Rank // indices in the whole list
	resps      []*tei.Response
	scored     int
	calls      int
	whole      *tei.Response // TEI's answer, when one call scored every text
}

func newRerankWork(p rerankParams) *rerankWork {
	w := &rerankWork{texts: make([][]byte, len(p.texts)), pending: []span{{0, len(p.texts)}}}
	for i, t := range p.texts {
		w.texts[i] = appendJSONString(nil, t)
	}
	w.head = append(appendJSONString(append([]byte(nil), `{"query":`...), p.query), `,"texts":[`...)
	tail := append([]byte(nil), `],"truncate":`...)
	tail = strconv.AppendBool(tail, p.truncate)
	tail = append(tail, `,"truncation_direction":"`...)
	tail = append(tail, p.direction...)
	tail = append(tail, `","raw_scores":`...)
	tail = strconv.AppendBool(tail, p.raw)
	tail = append(tail, `,"return_text":`...)
	tail = strconv.AppendBool(tail, p.returnText)
	w.tail = append(tail, '}')
	return w
}

// unsent is how many texts wait to be sent.
func (w *rerankWork) unsent() int {
	n := 0
	for _, sp := range w.pending {
		n += sp.hi - sp.lo
	}
	return n
}

// fit returns how many of the k texts from lo fit in a body of limit
// bytes; at least one.
func (w *rerankWork) fit(lo, k, limit int) int {
	size := len(w.head) + len(w.tail)
	for i := range k {
		add := len(w.texts[lo+i])
		if i > 0 {
			add++
		}
		if i > 0 && size+add > limit {
			return i
		}
		size += add
	}
	return k
}

// body is the request for the texts of sp.
func (w *rerankWork) body(sp span) []byte {
	size := len(w.head) + len(w.tail) + sp.hi - sp.lo
	for _, t := range w.texts[sp.lo:sp.hi] {
		size += len(t)
	}
	b := append(make([]byte, 0, size), w.head...)
	for i, t := range w.texts[sp.lo:sp.hi] {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, t...)
	}
	return append(b, w.tail...)
}

// add takes a chunk's ranks; it reports whether every text is scored.
func (w *rerankWork) add(c *teiCall) bool {
	for _, r := range c.ranks {
		r.Index += c.span.lo
		w.ranks = append(w.ranks, r)
	}
	w.calls++
	w.resps = append(w.resps, c.resp)
	w.scored += c.span.hi - c.span.lo
	if w.calls == 1 && w.scored == len(w.texts) {
		w.whole = c.resp
	}
	return w.scored == len(w.texts) && len(w.pending) == 0
}

// unsend returns a failed chunk's texts to the pending ones.
func (w *rerankWork) unsend(sp span) { w.pending = slices.Insert(w.pending, 0, sp) }

// result builds the answer: TEI's bytes untouched when one call scored
// every text; otherwise the chunks' ranks in TEI's order (score
// descending; TEI sorts ascending and reverses, so among equal scores the
// higher index comes first).
func (w *rerankWork) result() *rankResult {
	r := w.build()
	r.tokens = 0
	for _, res := range w.resps {
		if n := res.ComputeTokens(); n >= 0 {
			r.tokens += n
		} else {
			r.tokens = -1
			break
		}
	}
	return r
}

func (w *rerankWork) build() *rankResult {
	if w.whole != nil {
		return newRankResult(w.ranks, w.whole.Body)
	}
	ranks := w.ranks
	slices.SortStableFunc(ranks, func(a, b tei.Rank) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return b.Index - a.Index
	})
	return newRankResult(ranks, appendRanks(nil, ranks))
}

// appendRanks writes ranks in TEI's field order, keeping TEI's score digits.
func appendRanks(b []byte, ranks []tei.Rank) []byte {
	b = append(b, '[')
	for i, r := range ranks {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(r.Index), 10)
		if r.Text != nil {
			b = append(b, `,"text":`...)
			b = appendJSONString(b, *r.Text)
		}
		b = append(b, `,"score":`...)
		b = append(b, r.RawScore...)
		b = append(b, '}')
	}
	return append(b, ']')
}
