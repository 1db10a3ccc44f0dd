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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// key identifies one cached answer: a SHA-256 over everything that changes
// the output (see embedParams.keyPrefix) and the text.
type key [sha256.Size]byte

// sized is a value kept in an lruCache. The cache charges admit's bytes when
// the value enters and subtracts release's when it leaves; a value whose
// size grows while cached (an entry gaining its base64 form) charges the
// growth through the cache it was admitted to, so that what is subtracted
// is always exactly what was charged.
type sized interface {
	// admit records that the value entered c and returns its bytes.
	admit(c bytesCharger) int64
	// release records that it left and returns every byte charged for it.
	release() int64
}

// bytesCharger is what a cached value charges later growth to.
type bytesCharger interface{ charge(n int64) }

// lruCache is an LRU bounded by entries and bytes, safe for concurrent use.
// A nil *lruCache is a disabled cache: it misses and keeps nothing.
type lruCache[V sized] struct {
	lru       *lru.Cache[key, V]
	maxBytes  int64
	bytes     atomic.Int64
	evictions prometheus.Counter
}

// newLRU returns a cache of at most maxEntries entries and about maxBytes
// bytes (0: no byte bound), or nil when maxEntries is 0.
func newLRU[V sized](maxEntries int, maxBytes int64, evictions prometheus.Counter) *lruCache[V] {
	if maxEntries <= 0 {
		return nil
	}
	c := &lruCache[V]{maxBytes: maxBytes, evictions: evictions}
	c.lru, _ = lru.NewWithEvict(maxEntries, func(_ key, v V) {
		c.bytes.Add(-v.release())
		evictions.Inc()
	})
	return c
}

// get returns the value for k.
func (c *lruCache[V]) get(k key) (V, bool) {
	if c == nil {
		var zero V
		return zero, false
	}
	return c.lru.Get(k)
}

// add stores v under k unless k is already present, then trims the cache to
// its byte budget. It returns the value cached under k.
func (c *lruCache[V]) add(k key, v V) V {
	if c == nil {
		return v
	}
	if old, ok, _ := c.lru.PeekOrAdd(k, v); ok {
		return old
	}
	c.charge(v.admit(c))
	return v
}

// charge adds n bytes to the cache's count and evicts the oldest entries
// while it is over budget.
func (c *lruCache[V]) charge(n int64) {
	c.bytes.Add(n)
	for c.maxBytes > 0 && c.bytes.Load() > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// stats reports entries and bytes.
func (c *lruCache[V]) stats() (entries int, bytes int64) {
	if c == nil {
		return 0, 0
	}
	return c.lru.Len(), c.bytes.Load()
}

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

	mu      sync.Mutex
	b64     atomic.Pointer[string] // the OpenAI base64 form, computed at most once
	cache   bytesCharger           // where it is cached; nil when not (or no longer)
	charged int64                  // bytes charged to cache
}

// entryOverhead approximates the bookkeeping bytes of one cache entry (LRU
// element, map slot, key, entry struct) for the byte budget.
const entryOverhead = 200

func (e *entry) admit(c bytesCharger) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cache = c
	e.charged = int64(len(e.json) + entryOverhead)
	if p := e.b64.Load(); p != nil {
		e.charged += int64(len(*p))
	}
	return e.charged
}

func (e *entry) release() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cache = nil
	return e.charged
}

// base64 returns the item as base64 of little-endian float32, computing it
// on first use and charging it to the cache that holds the entry.
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
	e.mu.Lock()
	if !e.b64.CompareAndSwap(nil, &s) {
		e.mu.Unlock()
		return *e.b64.Load(), nil
	}
	c := e.cache
	if c != nil {
		e.charged += int64(len(s))
	}
	e.mu.Unlock()
	if c != nil {
		// Outside e.mu: charging may evict entries, this one included.
		c.charge(int64(len(s)))
	}
	return s, nil
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
