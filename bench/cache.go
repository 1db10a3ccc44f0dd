package bench

import "sync"

// CacheHeader is the answer header by which the sidecar says where an
// answer came from: HIT (every text from its cache), MISS (every text
// from TEI) or PARTIAL.
const CacheHeader = "X-Cache"

// Cache says what answered one server's calls of a row.
type Cache string

// Cache values.
const (
	// CacheHit: every call was answered from a cache.
	CacheHit Cache = "hit"
	// CacheMiss: every call went to the model.
	CacheMiss Cache = "miss"
	// CachePartial: some calls, or some texts of a call, came from a cache.
	CachePartial Cache = "partial"
	// CacheNone: the server has no cache (TEI itself); printed "-".
	CacheNone Cache = "none"
)

// How a row's Cache was known.
const (
	// CacheFromHeader: the answers' X-Cache headers said so.
	CacheFromHeader = "x-cache"
	// CacheFromTexts: the server is a caching sidecar that sent no
	// X-Cache, so repeated texts are taken as hits and unique ones as
	// misses.
	CacheFromTexts = "texts"
)

// tally counts the X-Cache headers of a row's answers on one server. A nil
// tally counts nothing. It is safe for concurrent use, as split calls are.
type tally struct {
	mu                        sync.Mutex
	hit, miss, partial, other int
}

func (t *tally) record(header string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch header {
	case "HIT":
		t.hit++
	case "MISS":
		t.miss++
	case "PARTIAL":
		t.partial++
	default:
		t.other++
	}
}

// verdict is what answered the row: from the headers when any answer had
// one, else inferred from the texts on a caching server, else none.
func (t *tally) verdict(caching, unique bool) (Cache, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch seen := t.hit + t.miss + t.partial; {
	case seen > 0 && t.hit == seen && t.other == 0:
		return CacheHit, CacheFromHeader
	case seen > 0 && t.miss == seen && t.other == 0:
		return CacheMiss, CacheFromHeader
	case seen > 0:
		return CachePartial, CacheFromHeader
	case !caching:
		return CacheNone, ""
	case unique:
		return CacheMiss, CacheFromTexts
	}
	return CacheHit, CacheFromTexts
}
