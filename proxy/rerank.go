package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strconv"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/errgroup"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// rerankParams is one rerank call, with truncate resolved against the
// upstream's auto_truncate.
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
	ranks []tei.Rank
	body  []byte
}

// rerankCache keeps whole rerank answers; nil when disabled.
type rerankCache struct {
	lru *lru.Cache[key, *rankResult]
}

func newRerankCache(n int, m *metrics) *rerankCache {
	if n <= 0 {
		return nil
	}
	c, _ := lru.NewWithEvict(n, func(key, *rankResult) { m.cacheEvictions.Inc() })
	return &rerankCache{lru: c}
}

func (c *rerankCache) get(k key) (*rankResult, bool) {
	if c == nil {
		return nil, false
	}
	return c.lru.Get(k)
}

func (c *rerankCache) add(k key, r *rankResult) {
	if c != nil {
		c.lru.Add(k, r)
	}
}

func (c *rerankCache) stats() (int, int64) {
	if c == nil {
		return 0, 0
	}
	n := 0
	for _, r := range c.lru.Values() {
		n += len(r.body)
	}
	return c.lru.Len(), int64(n)
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
// call in flight, or from TEI. More texts than TEI accepts in one call are
// split into chunks sent concurrently; their indices are mapped back and the
// results re-sorted. Any failed chunk fails the whole call.
func (s *Server) rerank(ctx context.Context, up *upstream, p rerankParams) (*rankResult, error) {
	if len(p.texts) == 0 {
		return nil, &requestError{status: 400, typ: tei.TypeEmpty, msg: "`texts` cannot be empty", param: "documents"}
	}
	k := rerankKey(up.info.Load(), p)
	if r, ok := s.rankCache.get(k); ok {
		s.m.cacheHits.Inc()
		return r, nil
	}
	if s.rankCache != nil {
		s.m.cacheMisses.Inc()
	}
	ch := s.rankGroup.DoChan(string(k[:]), func() (any, error) {
		// Detached so that one caller leaving does not fail the others.
		fctx, cancel := detach(ctx)
		defer cancel()
		r, err := s.rerankUpstream(fctx, up, p)
		if err == nil {
			s.rankCache.add(k, r)
		}
		return r, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		if res.Shared {
			s.m.coalesced.Inc()
		}
		return res.Val.(*rankResult), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Server) rerankUpstream(ctx context.Context, up *upstream, p rerankParams) (*rankResult, error) {
	limit := up.batchLimit()
	n := (len(p.texts) + limit - 1) / limit
	parts := make([][]tei.Rank, n)
	var single *tei.Response
	g, gctx := errgroup.WithContext(ctx)
	for i := range n {
		lo, hi := i*limit, min((i+1)*limit, len(p.texts))
		g.Go(func() error {
			req := tei.RerankRequest{Query: p.query, Texts: p.texts[lo:hi], Truncate: &p.truncate,
				TruncationDirection: p.direction, RawScores: p.raw, ReturnText: p.returnText}
			return up.call(gctx, "/rerank", hi-lo, func(ctx context.Context) error {
				ranks, res, err := up.client.Rerank(ctx, req)
				if err != nil {
					return err
				}
				for j := range ranks {
					ranks[j].Index += lo
				}
				parts[i] = ranks
				if n == 1 {
					single = res
				}
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if n == 1 {
		// TEI's own bytes, untouched.
		return &rankResult{ranks: parts[0], body: single.Body}, nil
	}
	ranks := slices.Concat(parts...)
	slices.SortStableFunc(ranks, func(a, b tei.Rank) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return a.Index - b.Index
	})
	return &rankResult{ranks: ranks, body: appendRanks(nil, ranks)}, nil
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
			t, _ := json.Marshal(*r.Text)
			b = append(b, t...)
		}
		b = append(b, `,"score":`...)
		b = append(b, r.RawScore...)
		b = append(b, '}')
	}
	return append(b, ']')
}
