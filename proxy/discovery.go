package proxy

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Discovery: a pool entry "dns+http://tei-embed.default.svc:80" stands for
// every address its name resolves to, as a Kubernetes headless Service
// answers with one address per ready pod. The name is resolved again every
// DiscoveryInterval: new addresses join the pool (and take work once their
// /info is read and matches the pool's model), vanished ones drain: they
// take no new work, and leave once their calls in flight are done. Plain
// DNS, no Kubernetes client.

// Resolver looks up a host name's addresses. *net.Resolver is one. It is
// called from one goroutine per discovered name, at most once per
// interval.
type Resolver interface {
	LookupHost(ctx context.Context, host string) (addrs []string, err error)
}

var _ Resolver = (*net.Resolver)(nil)

// dnsPrefix marks a discovered entry.
const dnsPrefix = "dns+"

// isDiscovered reports whether a configured entry is resolved by DNS.
func isDiscovered(entry string) bool { return strings.HasPrefix(entry, dnsPrefix) }

// discover keeps p's replicas for the DNS entry in step with what its name
// resolves to, until ctx ends. It runs in a goroutine the server owns.
func (s *Server) discover(ctx context.Context, p *pool, entry string) {
	u, err := url.Parse(strings.TrimPrefix(entry, dnsPrefix))
	if err != nil {
		return // Validate refused it
	}
	log := s.log.With("pool", p.name, "discovery", u.Redacted())
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	t := time.NewTicker(s.cfg.DiscoveryInterval)
	defer t.Stop()
	var lastErr string
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := s.cfg.Resolver.LookupHost(lctx, u.Hostname())
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// Keep what is known: a DNS hiccup must not empty the pool.
			if err.Error() != lastErr {
				log.Warn("resolving TEI's replicas failed; keeping the known ones", "err", err.Error())
				lastErr = err.Error()
			}
		default:
			lastErr = ""
			want := make([]string, 0, len(addrs))
			for _, a := range addrs {
				r := *u
				r.Host = net.JoinHostPort(a, port)
				want = append(want, r.String())
			}
			slices.Sort(want)
			p.sync(ctx, entry, want)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sync makes the replicas that came from entry exactly want: it adds the
// new ones and drains those gone.
func (p *pool) sync(ctx context.Context, entry string, want []string) {
	p.mu.Lock()
	var have []string
	// A copy: draining may take replicas out of p.replicas as it goes.
	for _, r := range slices.Clone(p.replicas) {
		if r.source == entry && r.state != stateDraining {
			have = append(have, r.raw)
			if !slices.Contains(want, r.raw) {
				p.s.log.Info("TEI replica gone from DNS: draining it", "pool", p.name, "replica", r)
				p.setStateLocked(r, stateDraining, "gone from DNS")
				p.removeIfIdleLocked(r)
			}
		}
	}
	p.mu.Unlock()
	for _, raw := range want {
		if slices.Contains(have, raw) {
			continue
		}
		c, err := p.s.client(raw)
		if err != nil {
			p.s.log.Warn("discovered replica has an unusable URL", "pool", p.name, "err", err.Error())
			continue
		}
		p.s.log.Info("TEI replica found in DNS", "pool", p.name, "url", raw)
		p.add(ctx, raw, entry, c)
	}
}

// removeIfIdleLocked takes a draining replica out of the pool once no call
// of it is in flight.
func (p *pool) removeIfIdleLocked(r *replica) {
	if r.state != stateDraining || r.calls > 0 {
		return
	}
	i := slices.Index(p.replicas, r)
	if i < 0 {
		return
	}
	p.replicas = slices.Delete(p.replicas, i, i+1)
	r.removed = true
	r.stop()
	p.s.m.forgetReplica(p.name, r.addr)
	p.s.log.Info("TEI replica left the pool", "pool", p.name, "replica", r)
}
