package launch

import (
	"context"
	"fmt"
	"time"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// External is the launcher for TEI servers someone else runs (TEI_EMBED_URL,
// TEI_RERANK_URL): it launches nothing and hands out their URLs.
type External struct {
	// EmbedURL is the embedding TEI's base URL.
	EmbedURL string
	// RerankURL is the reranker's; empty means EmbedURL.
	RerankURL string
	// StartupTimeout bounds the wait for /health. Zero means no bound but
	// Launch's context.
	StartupTimeout time.Duration
}

var _ Launcher = External{}

// Launch waits until the TEI at the role's URL answers /health; it checks
// nothing against p but the role, since the plan did not start it. The
// Instance's Stop does nothing.
func (e External) Launch(ctx context.Context, p plan.Plan) (*Instance, error) {
	url := e.EmbedURL
	if p.Role == plan.RoleRerank && e.RerankURL != "" {
		url = e.RerankURL
	}
	if url == "" {
		return nil, fmt.Errorf("no URL for the %s TEI: set TEI_EMBED_URL", p.Role)
	}
	c, done, err := probeClient(url)
	if err != nil {
		return nil, err
	}
	defer done()
	if e.StartupTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.StartupTimeout)
		defer cancel()
	}
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for {
		hctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := c.Health(hctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the %s TEI at %s did not answer /health: %w (last: %v)", p.Role, url, ctx.Err(), err)
		case <-t.C:
		}
	}
	var inst *Instance
	inst = newInstance(url, p, url, false, func(context.Context, bool) error {
		inst.exited(ErrStopped)
		return nil
	})
	return inst, nil
}
