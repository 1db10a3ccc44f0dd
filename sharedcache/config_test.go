package sharedcache

import (
	"bytes"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"zero is off and valid", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"single", Config{URL: "redis://127.0.0.1:6379/0"}, ""},
		{"tls with password", Config{URL: "rediss://user:s3cret@cache.internal:6380/2"}, ""},
		{"sentinel", Config{URL: "redis+sentinel://:pw@h1:26379,h2/mymaster/1?sentinel_password=sp"}, ""},
		{"cluster", Config{URL: "redis+cluster://h1:7000,h2:7001,[::1]:7002"}, ""},
		{"ttl 1h", Config{TTL: time.Hour}, ""},

		{"no scheme", Config{URL: "localhost:6379"}, "CACHE_REDIS_URL is not a URL: want redis://host:port, rediss://…, redis+sentinel://… or redis+cluster://…"},
		{"http scheme", Config{URL: "http://localhost:6379"}, `CACHE_REDIS_URL scheme "http" is not redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster`},
		{"no host", Config{URL: "redis://"}, "CACHE_REDIS_URL names no host"},
		{"bad port", Config{URL: "redis://h:0"}, `CACHE_REDIS_URL: host "h:0" has port "0", not 1 to 65535`},
		{"port not a number", Config{URL: "redis://h:abc"}, `CACHE_REDIS_URL: host "h:abc" has port "abc", not 1 to 65535`},
		{"stray comma", Config{URL: "redis+cluster://h1,,h2"}, "CACHE_REDIS_URL: empty host in the host list (check for a stray comma)"},
		{"bare ipv6", Config{URL: "redis://::1:6379"}, `CACHE_REDIS_URL: host "::1:6379": bracket IPv6 addresses, as in [::1]:6379`},
		{"two hosts single", Config{URL: "redis://h1,h2"}, "CACHE_REDIS_URL names 2 hosts; use redis+cluster:// for a Cluster or redis+sentinel:// for Sentinel"},
		{"db not a number", Config{URL: "redis://h/x"}, `CACHE_REDIS_URL database "x" is not a number of 0 or more`},
		{"path too deep", Config{URL: "redis://h/1/2"}, `CACHE_REDIS_URL path "/1/2" is not /db`},
		{"sentinel without master", Config{URL: "redis+sentinel://h1,h2"}, "CACHE_REDIS_URL: redis+sentinel:// takes the master's name and an optional db as its path, e.g. redis+sentinel://h1:26379,h2:26379/mymaster/0"},
		{"cluster with db", Config{URL: "redis+cluster://h1,h2/3"}, `CACHE_REDIS_URL: a Cluster has only database 0; drop the path "/3"`},
		{"unknown parameter", Config{URL: "redis://h?protocol=2"}, `CACHE_REDIS_URL has unknown parameter "protocol" (redis:// takes none)`},
		{"unknown sentinel parameter", Config{URL: "redis+sentinel://h/m?password=x"}, `CACHE_REDIS_URL has unknown parameter "password" (known: sentinel_username, sentinel_password)`},
		{"fragment", Config{URL: "redis://h/0#x"}, "CACHE_REDIS_URL may not have a #fragment"},
		{"bad escape in password", Config{URL: "redis://u:%zz@h"}, "CACHE_REDIS_URL has a badly escaped password"},

		{"namespace with space", Config{Namespace: "a b"}, `CACHE_NAMESPACE "a b" may hold only printable ASCII without spaces or braces (a brace makes a Cluster hash tag)`},
		{"namespace hash tag", Config{Namespace: "{x}:"}, `CACHE_NAMESPACE "{x}:" may hold only printable ASCII without spaces or braces (a brace makes a Cluster hash tag)`},
		{"namespace too long", Config{Namespace: strings.Repeat("n", 129)}, "CACHE_NAMESPACE is 129 bytes long, at most 128"},
		{"negative ttl", Config{TTL: -time.Second}, "CACHE_REDIS_TTL must be 0 (no expiry) or at least 1ms, got -1s"},
		{"sub-millisecond ttl", Config{TTL: time.Microsecond}, "CACHE_REDIS_TTL must be 0 (no expiry) or at least 1ms, got 1µs"},
		{"fractional ttl", Config{TTL: 1500 * time.Microsecond}, "CACHE_REDIS_TTL must be whole milliseconds, got 1.5ms"},
		{"negative timeout", Config{Timeout: -1}, "CACHE_REDIS_TIMEOUT must not be negative, got -1ns"},
		{"negative write timeout", Config{WriteTimeout: -1}, "CACHE_REDIS_WRITE_TIMEOUT must not be negative, got -1ns"},
		{"negative dial timeout", Config{DialTimeout: -1}, "CACHE_REDIS_DIAL_TIMEOUT must not be negative, got -1ns"},
		{"negative queue", Config{QueueSize: -1}, "CACHE_REDIS_QUEUE must not be negative, got -1"},
		{"negative pool", Config{PoolSize: -1}, "CACHE_REDIS_POOL_SIZE must not be negative, got -1"},
		{"negative min idle", Config{MinIdleConns: -1}, "CACHE_REDIS_MIN_IDLE_CONNS must not be negative, got -1"},
		{"negative idle time", Config{ConnMaxIdleTime: -1}, "CACHE_REDIS_CONN_MAX_IDLE must not be negative, got -1ns"},
		{"negative lifetime", Config{ConnMaxLifetime: -1}, "CACHE_REDIS_CONN_MAX_LIFETIME must be 0 (no limit) or more, got -1ns"},
		{"negative failures", Config{BreakerFailures: -1}, "CACHE_REDIS_BREAKER_FAILURES must not be negative, got -1"},
		{"negative open for", Config{BreakerOpenFor: -1}, "CACHE_REDIS_BREAKER_OPEN_FOR must not be negative, got -1ns"},
		{"min idle over pool", Config{PoolSize: 4, MinIdleConns: 5}, "CACHE_REDIS_MIN_IDLE_CONNS (5) must not exceed CACHE_REDIS_POOL_SIZE (4)"},
		{"min idle over default pool", Config{MinIdleConns: 33}, "CACHE_REDIS_MIN_IDLE_CONNS (33) must not exceed CACHE_REDIS_POOL_SIZE (32)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q\nwant        %q", got, tt.want)
			}
		})
	}
}

// TestValidateNeverQuotesPassword checks that no error about a URL repeats
// its password: Validate's errors end up in logs.
func TestValidateNeverQuotesPassword(t *testing.T) {
	for _, raw := range []string{
		"redis://u:hunter2@h:notaport",
		"redis://:hunter2@h1,h2",
		"redis://:hunter2@h/x",
		"http://:hunter2@h",
		"redis+sentinel://:hunter2@h?x=1",
		"redis://:hunter2@/0",
		"redis://:hun%zzter2@h",
		"redis+sentinel://h/m?sentinel_password=hunter2&x=1",
	} {
		err := Config{URL: raw}.Validate()
		if err == nil {
			t.Errorf("Validate(%q) = nil, want an error", raw)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hun") {
			t.Errorf("Validate(%q) = %q quotes the password", raw, err)
		}
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw  string
		want target
	}{
		{"redis://localhost", target{mode: ModeSingle, addrs: []string{"localhost:6379"}}},
		{"REDIS://h:7000/3", target{mode: ModeSingle, addrs: []string{"h:7000"}, db: 3}},
		{"rediss://default:p%40ss%3Aw%2Fd@h", target{mode: ModeSingle, tls: true, addrs: []string{"h:6379"}, username: "default", password: "p@ss:w/d"}},
		{"redis://:p@ss/word@h/1", target{mode: ModeSingle, addrs: []string{"h:6379"}, password: "p@ss/word", db: 1}},
		{"redis://[::1]:6380", target{mode: ModeSingle, addrs: []string{"[::1]:6380"}}},
		{"redis://[::1]", target{mode: ModeSingle, addrs: []string{"[::1]:6379"}}},
		{"redis+sentinel://h1,h2:26380/mymaster", target{mode: ModeSentinel, addrs: []string{"h1:26379", "h2:26380"}, master: "mymaster"}},
		{"rediss+sentinel://u:p@h1/my%20master/2?sentinel_username=su&sentinel_password=sp", target{
			mode: ModeSentinel, tls: true, addrs: []string{"h1:26379"}, master: "my master", db: 2,
			username: "u", password: "p", sentinelUsername: "su", sentinelPassword: "sp"}},
		{"redis+cluster://h1", target{mode: ModeCluster, addrs: []string{"h1:6379"}}},
		{"rediss+cluster://:pw@h1:7000,h2:7001,[::1]:7002", target{mode: ModeCluster, tls: true, addrs: []string{"h1:7000", "h2:7001", "[::1]:7002"}, password: "pw"}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := parseURL(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseURL(%q)\n got %+v\nwant %+v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"", ""},
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"redis://user@h", "redis://user@h"},
		{"redis://user:s3cret@h:6379/0", "redis://user:xxxxx@h:6379/0"},
		{"redis://:s3c@r/et@h", "redis://:xxxxx@h"},
		{"rediss+sentinel://:s3cret@h1,h2/m?sentinel_username=su&sentinel_password=s3cret", "rediss+sentinel://:xxxxx@h1,h2/m?sentinel_username=su&sentinel_password=xxxxx"},
		{"redis://:s3cret@h:notaport", "redis://:xxxxx@h:notaport"},
		{"s3cret", "(not a URL)"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			if got := (Config{URL: tt.raw}).Redacted(); got != tt.want {
				t.Errorf("Redacted() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestConfigPrintingHidesPassword checks every way a Config reaches a log:
// fmt's verbs and slog.
func TestConfigPrintingHidesPassword(t *testing.T) {
	cfg := Config{URL: "redis+sentinel://u:s3cret@h1/m?sentinel_password=s3cret2", Timeout: 5 * time.Millisecond}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cache", cfg)
	for _, out := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%s", cfg), cfg.String(),
		logged.String(),
	} {
		if strings.Contains(out, "s3cret") {
			t.Errorf("password printed: %s", out)
		}
		if !strings.Contains(out, "xxxxx") || !strings.Contains(out, "5ms") {
			t.Errorf("output lacks the redacted URL or the timeout: %s", out)
		}
	}
}

func TestDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	want := DefaultConfig()
	// Zero means "none" for these, not "the default".
	want.MinIdleConns, want.ConnMaxLifetime = 0, 0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Config{}.withDefaults() = %+v\nwant %+v", got, want)
	}
	if d := DefaultConfig(); d.withDefaults() != d {
		t.Errorf("DefaultConfig().withDefaults() changed it: %+v", d.withDefaults())
	}
}
