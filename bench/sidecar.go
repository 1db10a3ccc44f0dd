package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// ReplicaReady is the state of a replica that takes calls in the
// sidecar's /status; the others are draining, down, refused and starting.
const ReplicaReady = "ready"

// Pool names in the sidecar's /status.
const (
	PoolEmbed  = "embed"
	PoolRerank = "rerank"
)

// sidecarStatus is the part of the sidecar's GET /status the tools read.
type sidecarStatus struct {
	Pools map[string]struct {
		ModelID  string          `json:"model_id"`
		Replicas []statusReplica `json:"replicas"`
	} `json:"pools"`
}

// statusReplica is one replica in the sidecar's /status.
type statusReplica struct {
	URL   string `json:"url"`
	State string `json:"state"`
	// Inflight and Limit are the inputs in flight to it and the most it
	// may take at once (which the sidecar's scheduler adapts).
	Inflight int `json:"inflight_inputs"`
	Limit    int `json:"limit"`
}

// SidecarTEI is the TEI behind a sidecar, as its GET /status names it.
type SidecarTEI struct {
	// Sidecar is the sidecar's base URL.
	Sidecar string `json:"sidecar"`
	// Embed is the embedding pool; Rerank the reranking pool, nil when the
	// sidecar has none or none of its replicas is ready.
	Embed  *SidecarPool `json:"embed"`
	Rerank *SidecarPool `json:"rerank,omitempty"`
	// Notes say what a person should know about the choice: other ready
	// replicas left out, credentials dropped, no reranker.
	Notes []string `json:"notes,omitempty"`
}

// SidecarPool is one pool: the replica the tools call and how many there are.
type SidecarPool struct {
	ModelID string `json:"model_id"`
	// URL is the first ready replica's, without the credentials /status
	// redacts.
	URL string `json:"url"`
	// URLs are every ready replica's, URL first, without credentials: the
	// load scenarios spread a baseline's clients over them.
	URLs []string `json:"urls"`
	// Ready and Replicas count the pool's ready replicas and all of them.
	Ready    int `json:"ready"`
	Replicas int `json:"replicas"`
}

// FindTEI reads the sidecar's GET /status and picks, in each pool, the
// first replica whose state is ready. token is the sidecar's bearer token
// ("" sends none). A sidecar without a ready embedding replica is an error
// naming the states it reported.
func FindTEI(ctx context.Context, sidecarURL, token string, hc *http.Client) (*SidecarTEI, error) {
	base, err := NormalizeURL(sidecarURL)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	if hc == nil {
		hc = &http.Client{Transport: tei.NewTransport()}
	}
	opts := []tei.Option{tei.WithHTTPClient(hc)}
	if token != "" {
		opts = append(opts, tei.WithAPIKey(token))
	}
	c, err := tei.NewClient(base, opts...)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(ctx, http.MethodGet, "/status", nil)
	if err != nil {
		if te, ok := errors.AsType[*tei.Error](err); ok {
			switch te.Status {
			case http.StatusUnauthorized:
				return nil, fmt.Errorf("GET %s/status: HTTP 401: the sidecar wants its bearer token (BEARER_TOKEN, the first of its list)", base)
			case http.StatusNotFound:
				return nil, fmt.Errorf("GET %s/status: HTTP 404: is %s the sidecar? TEI itself has no /status (give TEI's URL with --target)", base, base)
			}
		}
		return nil, fmt.Errorf("GET %s/status: %w", base, err)
	}
	var st sidecarStatus
	if err := json.Unmarshal(resp.Body, &st); err != nil {
		return nil, fmt.Errorf("GET %s/status: unexpected answer: %w", base, err)
	}
	if st.Pools == nil {
		return nil, fmt.Errorf("GET %s/status lists no pools: the sidecar is older than this tool, or %s is not the sidecar (give TEI's URL with --target)", base, base)
	}
	out := &SidecarTEI{Sidecar: base}
	for _, name := range []string{PoolEmbed, PoolRerank} {
		p, ok := st.Pools[name]
		if !ok {
			continue
		}
		pool := &SidecarPool{ModelID: p.ModelID, Replicas: len(p.Replicas)}
		var states []string
		for _, r := range p.Replicas {
			states = append(states, r.State)
			if r.State != ReplicaReady {
				continue
			}
			pool.Ready++
			u, dropped, err := withoutCredentials(r.URL)
			if err != nil {
				return nil, fmt.Errorf("GET %s/status: %s replica %q: %w", base, name, r.URL, err)
			}
			pool.URLs = append(pool.URLs, u)
			if pool.URL != "" {
				continue
			}
			pool.URL = u
			if dropped {
				out.Notes = append(out.Notes, fmt.Sprintf("the %s replica's URL carries credentials, which /status redacts; none are sent", name))
			}
		}
		if pool.URL == "" {
			if name == PoolEmbed {
				return nil, fmt.Errorf("the sidecar at %s has no ready embedding replica (states: %s); wait for it to be ready (GET /ready) and try again", base, orNone(states))
			}
			out.Notes = append(out.Notes, fmt.Sprintf("the sidecar's rerank pool has no ready replica (states: %s)", orNone(states)))
			continue
		}
		if pool.Ready > 1 {
			out.Notes = append(out.Notes, fmt.Sprintf("the %s pool has %d ready replicas (%s); the first is the one called straight", name, pool.Ready, strings.Join(pool.URLs, ", ")))
		}
		if name == PoolEmbed {
			out.Embed = pool
		} else {
			out.Rerank = pool
		}
	}
	if out.Embed == nil {
		return nil, fmt.Errorf("GET %s/status has no embed pool", base)
	}
	return out, nil
}

func orNone(states []string) string {
	if len(states) == 0 {
		return "no replicas"
	}
	return strings.Join(states, ", ")
}

// withoutCredentials drops the user info /status redacts: sending the
// redacted text would only earn a 401.
func withoutCredentials(raw string) (string, bool, error) {
	s, err := NormalizeURL(raw)
	if err != nil {
		return "", false, err
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", false, err
	}
	if u.User == nil {
		return s, false, nil
	}
	u.User = nil
	return u.String(), true, nil
}

// AuthError is a 401 from a TEI found through the sidecar's /status. The
// sidecar may start TEI with an API key of its own, which the tools cannot
// read; its message says how to share one.
type AuthError struct {
	// Sidecar is the sidecar's URL; Err, which names TEI's, the 401.
	Sidecar string
	// KeySent says whether an API key was sent (and refused).
	KeySent bool
	Err     error
}

func (e *AuthError) Error() string {
	if e.KeySent {
		return fmt.Sprintf("%v\nTEI (found through the sidecar at %s) refused the API key sent: it must be the key the sidecar gives TEI. "+
			"Set TEI_API_KEY in .env, restart the sidecar (it passes TEI_API_KEY to TEI), and run this tool with the same TEI_API_KEY.", e.Err, e.Sidecar)
	}
	return fmt.Sprintf("%v\nTEI wants an API key: the sidecar at %s launched TEI with a key of its own, which this tool cannot know. "+
		"Set TEI_API_KEY in .env (the sidecar then passes it to TEI) and run this tool with the same TEI_API_KEY in its environment or .env.", e.Err, e.Sidecar)
}

func (e *AuthError) Unwrap() error { return e.Err }

// unauthorized reports whether err is a 401 answer.
func unauthorized(err error) bool {
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se.Status == http.StatusUnauthorized
	}
	if te, ok := errors.AsType[*tei.Error](err); ok {
		return te.Status == http.StatusUnauthorized
	}
	return false
}

// explainAuth turns a 401 from a TEI found through a sidecar into an
// AuthError; other errors pass unchanged.
func explainAuth(err error, sidecar string, keySent bool) error {
	if err == nil || sidecar == "" || !unauthorized(err) {
		return err
	}
	if _, ok := errors.AsType[*AuthError](err); ok {
		return err
	}
	return &AuthError{Sidecar: sidecar, KeySent: keySent, Err: err}
}
