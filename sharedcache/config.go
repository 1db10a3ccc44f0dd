package sharedcache

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is the shared cache's whole configuration. DefaultConfig gives the
// defaults; each field says what its zero value means, so a zero Config
// with a URL works too.
type Config struct {
	// URL names the Redis or Valkey deployment (CACHE_REDIS_URL). Empty
	// turns the shared layer off. Three spellings, each with an rediss…
	// form for TLS:
	//
	//	redis://[user:pass@]host[:6379][/db]                           one server
	//	redis+sentinel://[user:pass@]h1[:26379],h2[:26379]/master[/db]  Sentinel
	//	redis+cluster://[user:pass@]h1[:6379],h2[:6379]                 Cluster seed nodes
	//
	// user:pass authenticate to the data nodes (percent-encode ':', '@',
	// '/', '?' and '%' in them). Sentinels that need credentials of their
	// own take ?sentinel_username=…&sentinel_password=…. Passwords are
	// secrets: Redacted, String and LogValue hide them.
	URL string
	// Namespace prefixes every key (CACHE_NAMESPACE, default "teisc:v1:");
	// a key is the namespace and the 64 lowercase hex digits of the
	// first-layer key. Printable ASCII without spaces or braces (a brace
	// would make a Cluster hash tag and pile every key on one node), at
	// most 128 bytes. Empty means the default.
	Namespace string
	// TTL is each entry's time to live (CACHE_REDIS_TTL, default 0). Zero
	// means no expiry: Redis's maxmemory-policy (e.g. allkeys-lru) evicts.
	TTL time.Duration

	// Timeout is the deadline of one lookup round trip, inside the caller's
	// own deadline (CACHE_REDIS_TIMEOUT, default 20ms). A lookup that takes
	// longer is a miss. Zero means the default.
	Timeout time.Duration
	// WriteTimeout is the deadline of one write-behind round trip
	// (CACHE_REDIS_WRITE_TIMEOUT, default 250ms); no caller waits for it.
	// Zero means the default.
	WriteTimeout time.Duration
	// DialTimeout bounds opening one connection, TLS handshake included
	// (CACHE_REDIS_DIAL_TIMEOUT, default 1s). A lookup never waits longer
	// than Timeout for a dial; the pool keeps dialing in the background.
	// Zero means the default.
	DialTimeout time.Duration

	// QueueSize is how many writes may wait for the write-behind writer
	// (CACHE_REDIS_QUEUE, default 1024); more are dropped and counted.
	// Zero means the default.
	QueueSize int
	// PoolSize is the most connections kept per Redis node
	// (CACHE_REDIS_POOL_SIZE, default 32). Zero means the default.
	PoolSize int
	// MinIdleConns is how many idle connections per node are kept open
	// ahead of need (CACHE_REDIS_MIN_IDLE_CONNS, default 2), so a lookup
	// rarely pays for a dial. Zero keeps none.
	MinIdleConns int
	// ConnMaxIdleTime closes connections idle this long
	// (CACHE_REDIS_CONN_MAX_IDLE, default 5m), below the usual server and
	// load-balancer idle timeouts. Zero means the default.
	ConnMaxIdleTime time.Duration
	// ConnMaxLifetime closes connections this old, give or take a tenth
	// (CACHE_REDIS_CONN_MAX_LIFETIME, default 30m), so connections move
	// to new nodes after a failover or DNS change. Zero means no limit.
	ConnMaxLifetime time.Duration

	// BreakerFailures is how many round trips in a row that time out or
	// fail to connect open the circuit breaker (CACHE_REDIS_BREAKER_FAILURES,
	// default 5). Zero means the default.
	BreakerFailures int
	// BreakerOpenFor is how long an open breaker answers every lookup with
	// a miss, without touching the network, before one probe may pass
	// (CACHE_REDIS_BREAKER_OPEN_FOR, default 5s). Zero means the default.
	BreakerOpenFor time.Duration
}

// DefaultNamespace is the default key prefix. Its version part changes
// when the stored format does, so old entries are never misread.
const DefaultNamespace = "teisc:v1:"

// maxNamespace bounds the key prefix, which every key carries.
const maxNamespace = 128

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Namespace:       DefaultNamespace,
		Timeout:         20 * time.Millisecond,
		WriteTimeout:    250 * time.Millisecond,
		DialTimeout:     time.Second,
		QueueSize:       1024,
		PoolSize:        32,
		MinIdleConns:    2,
		ConnMaxIdleTime: 5 * time.Minute,
		ConnMaxLifetime: 30 * time.Minute,
		BreakerFailures: 5,
		BreakerOpenFor:  5 * time.Second,
	}
}

// withDefaults fills the fields whose zero value means "the default".
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Namespace == "" {
		c.Namespace = d.Namespace
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.QueueSize == 0 {
		c.QueueSize = d.QueueSize
	}
	if c.PoolSize == 0 {
		c.PoolSize = d.PoolSize
	}
	if c.ConnMaxIdleTime == 0 {
		c.ConnMaxIdleTime = d.ConnMaxIdleTime
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = d.BreakerFailures
	}
	if c.BreakerOpenFor == 0 {
		c.BreakerOpenFor = d.BreakerOpenFor
	}
	return c
}

// Validate reports the first setting that cannot work. An empty URL is
// valid: the layer is off. No message quotes a password.
func (c Config) Validate() error {
	if c.URL != "" {
		if _, err := parseURL(c.URL); err != nil {
			return err
		}
	}
	if err := checkNamespace(c.Namespace); err != nil {
		return err
	}
	switch {
	case c.TTL < 0 || (c.TTL > 0 && c.TTL < time.Millisecond):
		return fmt.Errorf("CACHE_REDIS_TTL must be 0 (no expiry) or at least 1ms, got %s", c.TTL)
	case c.TTL%time.Millisecond != 0:
		return fmt.Errorf("CACHE_REDIS_TTL must be whole milliseconds, got %s", c.TTL)
	case c.Timeout < 0:
		return fmt.Errorf("CACHE_REDIS_TIMEOUT must not be negative, got %s", c.Timeout)
	case c.WriteTimeout < 0:
		return fmt.Errorf("CACHE_REDIS_WRITE_TIMEOUT must not be negative, got %s", c.WriteTimeout)
	case c.DialTimeout < 0:
		return fmt.Errorf("CACHE_REDIS_DIAL_TIMEOUT must not be negative, got %s", c.DialTimeout)
	case c.QueueSize < 0:
		return fmt.Errorf("CACHE_REDIS_QUEUE must not be negative, got %d", c.QueueSize)
	case c.PoolSize < 0:
		return fmt.Errorf("CACHE_REDIS_POOL_SIZE must not be negative, got %d", c.PoolSize)
	case c.MinIdleConns < 0:
		return fmt.Errorf("CACHE_REDIS_MIN_IDLE_CONNS must not be negative, got %d", c.MinIdleConns)
	case c.ConnMaxIdleTime < 0:
		return fmt.Errorf("CACHE_REDIS_CONN_MAX_IDLE must not be negative, got %s", c.ConnMaxIdleTime)
	case c.ConnMaxLifetime < 0:
		return fmt.Errorf("CACHE_REDIS_CONN_MAX_LIFETIME must be 0 (no limit) or more, got %s", c.ConnMaxLifetime)
	case c.BreakerFailures < 0:
		return fmt.Errorf("CACHE_REDIS_BREAKER_FAILURES must not be negative, got %d", c.BreakerFailures)
	case c.BreakerOpenFor < 0:
		return fmt.Errorf("CACHE_REDIS_BREAKER_OPEN_FOR must not be negative, got %s", c.BreakerOpenFor)
	}
	if d := c.withDefaults(); d.MinIdleConns > d.PoolSize {
		return fmt.Errorf("CACHE_REDIS_MIN_IDLE_CONNS (%d) must not exceed CACHE_REDIS_POOL_SIZE (%d)", d.MinIdleConns, d.PoolSize)
	}
	return nil
}

func checkNamespace(ns string) error {
	if len(ns) > maxNamespace {
		return fmt.Errorf("CACHE_NAMESPACE is %d bytes long, at most %d", len(ns), maxNamespace)
	}
	for i := range len(ns) {
		if b := ns[i]; b <= ' ' || b >= 0x7f || b == '{' || b == '}' {
			return fmt.Errorf("CACHE_NAMESPACE %q may hold only printable ASCII without spaces or braces (a brace makes a Cluster hash tag)", ns)
		}
	}
	return nil
}

// Redacted returns the URL with its passwords replaced by "xxxxx", fit for
// logs and /status. A URL too broken to parse keeps only its scheme.
func (c Config) Redacted() string { return redactURL(c.URL) }

// String renders the configuration for a log line, with passwords hidden.
func (c Config) String() string {
	d := c.withDefaults()
	return fmt.Sprintf("url=%s namespace=%s ttl=%s timeout=%s write_timeout=%s dial_timeout=%s queue=%d pool_size=%d min_idle_conns=%d conn_max_idle=%s conn_max_lifetime=%s breaker_failures=%d breaker_open_for=%s",
		c.Redacted(), d.Namespace, d.TTL, d.Timeout, d.WriteTimeout, d.DialTimeout, d.QueueSize, d.PoolSize, d.MinIdleConns, d.ConnMaxIdleTime, d.ConnMaxLifetime, d.BreakerFailures, d.BreakerOpenFor)
}

// GoString keeps %#v from printing the password.
func (c Config) GoString() string { return "sharedcache.Config{" + c.String() + "}" }

// LogValue logs the configuration as a group, with passwords hidden.
func (c Config) LogValue() slog.Value {
	d := c.withDefaults()
	return slog.GroupValue(
		slog.String("url", c.Redacted()),
		slog.String("namespace", d.Namespace),
		slog.Duration("ttl", d.TTL),
		slog.Duration("timeout", d.Timeout),
		slog.Duration("write_timeout", d.WriteTimeout),
		slog.Int("queue", d.QueueSize),
		slog.Int("pool_size", d.PoolSize),
		slog.Int("min_idle_conns", d.MinIdleConns),
		slog.Int("breaker_failures", d.BreakerFailures),
		slog.Duration("breaker_open_for", d.BreakerOpenFor),
	)
}

var _ slog.LogValuer = Config{}

// Mode is how the deployment is reached.
type Mode string

// The modes, as Status reports them.
const (
	ModeOff      Mode = "off" // no URL: the layer is off
	ModeSingle   Mode = "single"
	ModeSentinel Mode = "sentinel"
	ModeCluster  Mode = "cluster"
)

// target is a parsed CACHE_REDIS_URL.
type target struct {
	mode             Mode
	tls              bool
	addrs            []string
	master           string // Sentinel's master name
	db               int
	username         string
	password         string
	sentinelUsername string
	sentinelPassword string
}

var schemes = map[string]struct {
	mode Mode
	tls  bool
	port string
}{
	"redis":           {ModeSingle, false, "6379"},
	"rediss":          {ModeSingle, true, "6379"},
	"redis+sentinel":  {ModeSentinel, false, "26379"},
	"rediss+sentinel": {ModeSentinel, true, "26379"},
	"redis+cluster":   {ModeCluster, false, "6379"},
	"rediss+cluster":  {ModeCluster, true, "6379"},
}

// urlParts splits raw into scheme, userinfo, host list, path and query
// without decoding. The userinfo ends at the last '@' before the query, so
// a password with an unescaped '@' or '/' is still taken whole (and
// hidden by redactURL).
func urlParts(raw string) (scheme, userinfo, hosts, path, query string, ok bool) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", "", "", "", "", false
	}
	rest, query, _ = strings.Cut(rest, "?")
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo, rest = rest[:at], rest[at+1:]
	}
	hosts, path = rest, ""
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		hosts, path = rest[:slash], rest[slash:]
	}
	return scheme, userinfo, hosts, path, query, true
}

// parseURL reads CACHE_REDIS_URL. Its errors never quote the userinfo.
func parseURL(raw string) (target, error) {
	const name = "CACHE_REDIS_URL"
	var t target
	scheme, userinfo, hosts, path, query, ok := urlParts(raw)
	if !ok {
		return t, fmt.Errorf("%s is not a URL: want redis://host:port, rediss://…, redis+sentinel://… or redis+cluster://…", name)
	}
	s, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		return t, fmt.Errorf("%s scheme %q is not redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", name, scheme)
	}
	t.mode, t.tls = s.mode, s.tls
	if strings.ContainsRune(path+query, '#') {
		return t, fmt.Errorf("%s may not have a #fragment", name)
	}

	if userinfo != "" {
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if t.username, err = url.PathUnescape(user); err != nil {
			return t, fmt.Errorf("%s has a badly escaped user name", name)
		}
		if hasPass {
			if t.password, err = url.PathUnescape(pass); err != nil {
				return t, fmt.Errorf("%s has a badly escaped password", name)
			}
		}
	}

	if hosts == "" {
		return t, fmt.Errorf("%s names no host", name)
	}
	for h := range strings.SplitSeq(hosts, ",") {
		addr, err := hostPort(h, s.port)
		if err != nil {
			return t, fmt.Errorf("%s: %w", name, err)
		}
		t.addrs = append(t.addrs, addr)
	}
	if t.mode == ModeSingle && len(t.addrs) > 1 {
		return t, fmt.Errorf("%s names %d hosts; use redis+cluster:// for a Cluster or redis+sentinel:// for Sentinel", name, len(t.addrs))
	}

	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	dbSeg := ""
	switch t.mode {
	case ModeSingle:
		if len(segs) > 1 {
			return t, fmt.Errorf("%s path %q is not /db", name, path)
		}
		if len(segs) == 1 {
			dbSeg = segs[0]
		}
	case ModeSentinel:
		if len(segs) == 0 || len(segs) > 2 {
			return t, fmt.Errorf("%s: redis+sentinel:// takes the master's name and an optional db as its path, e.g. redis+sentinel://h1:26379,h2:26379/mymaster/0", name)
		}
		var err error
		if t.master, err = url.PathUnescape(segs[0]); err != nil {
			return t, fmt.Errorf("%s has a badly escaped master name %q", name, segs[0])
		}
		if len(segs) == 2 {
			dbSeg = segs[1]
		}
	case ModeCluster:
		if len(segs) > 0 {
			return t, fmt.Errorf("%s: a Cluster has only database 0; drop the path %q", name, path)
		}
	}
	if dbSeg != "" {
		db, err := strconv.Atoi(dbSeg)
		if err != nil || db < 0 {
			return t, fmt.Errorf("%s database %q is not a number of 0 or more", name, dbSeg)
		}
		t.db = db
	}

	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return t, fmt.Errorf("%s has a badly escaped query", name)
		}
		for k, v := range q {
			switch {
			case t.mode == ModeSentinel && k == "sentinel_username":
				t.sentinelUsername = v[len(v)-1]
			case t.mode == ModeSentinel && k == "sentinel_password":
				t.sentinelPassword = v[len(v)-1]
			case t.mode == ModeSentinel:
				return t, fmt.Errorf("%s has unknown parameter %q (known: sentinel_username, sentinel_password)", name, k)
			default:
				return t, fmt.Errorf("%s has unknown parameter %q (%s:// takes none)", name, k, strings.ToLower(scheme))
			}
		}
	}
	return t, nil
}

// hostPort checks one host[:port] of the host list and adds the default
// port. IPv6 literals are bracketed, as in [::1]:6379.
func hostPort(h, defaultPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty host in the host list (check for a stray comma)")
	}
	host, port := h, defaultPort
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		var err error
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			host = h[1 : len(h)-1]
		} else if host, port, err = net.SplitHostPort(h); err != nil {
			return "", fmt.Errorf("host %q is not host[:port]", h)
		}
	} else if strings.Contains(h, ":") {
		return "", fmt.Errorf("host %q: bracket IPv6 addresses, as in [::1]:6379", h)
	}
	if host == "" {
		return "", fmt.Errorf("host %q has no name", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q has port %q, not 1 to 65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// redacted replaces a secret in a URL.
const redacted = "xxxxx"

// redactURL hides the password and sentinel_password of raw, parsed or not.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	scheme, userinfo, hosts, path, query, ok := urlParts(raw)
	if !ok {
		return "(not a URL)"
	}
	var b strings.Builder
	b.WriteString(scheme + "://")
	if userinfo != "" {
		if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
			b.WriteString(user + ":" + redacted + "@")
		} else {
			b.WriteString(userinfo + "@")
		}
	}
	b.WriteString(hosts + path)
	if query != "" {
		parts := strings.Split(query, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			if k, err := url.QueryUnescape(k); err != nil || strings.Contains(strings.ToLower(k), "password") {
				parts[i] = k + "=" + redacted
			}
		}
		b.WriteString("?" + strings.Join(parts, "&"))
	}
	return b.String()
}
