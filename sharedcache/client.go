package sharedcache

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// newClient builds the go-redis client for t: a plain client, a Sentinel
// failover client or a Cluster client, by t.mode. Its settings are chosen
// so that no round trip outlives its context: go-redis honours context
// deadlines only with ContextTimeoutEnabled, and its own dialer ignores
// them for TLS.
func newClient(cfg Config, t target) redis.UniversalClient {
	var tlsConf *tls.Config
	if t.tls {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// Socket deadlines cap every read and write; each call's context
	// brings its own, shorter one.
	ioTimeout := max(cfg.Timeout, cfg.WriteTimeout)
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:            t.addrs,
		MasterName:       t.master,
		IsClusterMode:    t.mode == ModeCluster,
		DB:               t.db,
		Username:         t.username,
		Password:         t.password,
		SentinelUsername: t.sentinelUsername,
		SentinelPassword: t.sentinelPassword,
		TLSConfig:        tlsConf,
		Dialer:           dialer(cfg.DialTimeout, tlsConf),

		ContextTimeoutEnabled: true,
		ReadTimeout:           ioTimeout,
		WriteTimeout:          ioTimeout,
		PoolTimeout:           ioTimeout,
		DialTimeout:           cfg.DialTimeout,
		// One dial attempt: go-redis's default of five, 100ms apart, would
		// keep a background dial alive long after its caller gave up.
		DialerRetries: 1,
		// One immediate retry, within the same deadline, for a connection
		// that died between the pool's health check and its use.
		MaxRetries:      1,
		MinRetryBackoff: -1,
		MaxRetryBackoff: -1,

		PoolSize:              cfg.PoolSize,
		MinIdleConns:          cfg.MinIdleConns,
		ConnMaxIdleTime:       cfg.ConnMaxIdleTime,
		ConnMaxLifetime:       cfg.ConnMaxLifetime,
		ConnMaxLifetimeJitter: cfg.ConnMaxLifetime / 10,
		// Pipelines (all this package sends) use the main pool, so that
		// PoolSize and MinIdleConns govern the connections lookups use.
		// The read buffer stays at go-redis's 32 KiB: values this large
		// are read past it, straight from the socket (BenchmarkGet32x1024
		// showed no gain from 128 or 512 KiB).
		PipelinePoolSize: -1,

		// No CLIENT SETINFO round trip per connection, and none of the
		// maintenance-notification machinery (background workers) that
		// only Redis Enterprise and Cloud speak.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// dialer opens TCP (and TLS) connections that honour the context, which
// go-redis's own dialer does not for TLS. The server name for TLS comes
// from each address, so Cluster nodes and Sentinels verify as themselves.
func dialer(timeout time.Duration, tlsConf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{
		Timeout: timeout,
		// Find a peer that vanished without a FIN (a dead host, a dropped
		// NAT entry) in about 45s even on an idle connection.
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3},
	}
	if tlsConf == nil {
		return nd.DialContext
	}
	td := &tls.Dialer{NetDialer: nd, Config: tlsConf}
	return td.DialContext
}
