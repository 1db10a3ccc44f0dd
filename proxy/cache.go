package proxy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// key identifies one cached answer: a SHA-256 over everything that changes
// the output (see embedParams.keyPrefix) and the text.
type key [sha256.Size]byte

// entry is one input's embedding as TEI wrote it. Entries are shared between
// requests and never modified after creation, except for the lazily added
// base64 form.
type entry struct {
	// json is the item's JSON bytes exactly as TEI produced them, in a slice
	// of its own so that caching one item keeps no other response alive.
	json []byte
	// tokens is the item's share of TEI's x-compute-tokens (exact when the
	// item went upstream alone, apportioned by length otherwise).
	tokens int
	// b64 caches the OpenAI base64 form (little-endian float32), computed at
	// most once.
	b64 atomic.Pointer[string]
}

// base64 returns the item as base64 of little-endian float32, computing it
// on first use.
func (e *entry) base64() (string, error) {
	if p := e.b64.Load(); p != nil {
		return *p, nil
	}
	v, err := tei.DecodeVector(e.json)
	if err != nil {
		return "", err
	}
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	s := base64.StdEncoding.EncodeToString(raw)
	e.b64.CompareAndSwap(nil, &s)
	return *e.b64.Load(), nil
}

// entryOverhead approximates the bookkeeping bytes of one cache entry (LRU
// element, map slot, key, entry struct) for the byte budget.
const entryOverhead = 160

func (e *entry) size() int64 {
	n := int64(len(e.json) + entryOverhead)
	if p := e.b64.Load(); p != nil {
		n += int64(len(*p))
	}
	return n
}

// embedCache is the per-text LRU: at most maxEntries entries and about
// maxBytes bytes. It is safe for concurrent use.
type embedCache struct {
	lru      *lru.Cache[key, *entry]
	maxBytes int64
	bytes    atomic.Int64
	m        *metrics
}

// newEmbedCache returns a cache, or nil when maxEntries is 0 (disabled).
func newEmbedCache(maxEntries int, maxBytes int64, m *metrics) *embedCache {
	if maxEntries <= 0 {
		return nil
	}
	c := &embedCache{maxBytes: maxBytes, m: m}
	c.lru, _ = lru.NewWithEvict(maxEntries, func(_ key, e *entry) {
		c.bytes.Add(-e.size())
		m.cacheEvictions.Inc()
	})
	return c
}

// get returns the entry for k. A nil cache always misses.
func (c *embedCache) get(k key) (*entry, bool) {
	if c == nil {
		return nil, false
	}
	return c.lru.Get(k)
}

// add stores e under k unless k is already present, then trims the cache
// to its byte budget.
func (c *embedCache) add(k key, e *entry) {
	if c == nil {
		return
	}
	if _, ok, _ := c.lru.PeekOrAdd(k, e); ok {
		return
	}
	c.bytes.Add(e.size())
	for c.maxBytes > 0 && c.bytes.Load() > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// stats reports entries and bytes.
func (c *embedCache) stats() (entries int, bytes int64) {
	if c == nil {
		return 0, 0
	}
	return c.lru.Len(), c.bytes.Load()
}

var keyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// textKey hashes prefix (the request's settings) and text into a key.
func textKey(prefix, text string) key {
	bp := keyBufPool.Get().(*[]byte)
	b := appendField(append((*bp)[:0], prefix...), text)
	k := key(sha256.Sum256(b))
	if cap(b) <= 1<<20 { // do not pin huge buffers in the pool
		*bp = b[:0]
		keyBufPool.Put(bp)
	}
	return k
}

// appendField appends a length-prefixed field to a key prefix.
func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}
