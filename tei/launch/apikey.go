package launch

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// APIKeyEnv is the variable TEI reads as --api-key. With it set, TEI
// answers every route, /health included, only to "Authorization: Bearer
// <key>", so no process on the host and no container on the network can
// call TEI around the sidecar's BEARER_TOKEN.
const APIKeyEnv = "API_KEY"

// NewAPIKey returns a fresh random key for one launch set: 32 bytes from
// crypto/rand, hex-encoded.
func NewAPIKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// WithAPIKey returns p with key passed to TEI as API_KEY, marked secret:
// every printed form of the plan redacts it. Containers are labelled with
// the plan's hash without it (planHash), as `detect` shows it, so a new key
// alone makes no container stale; adoption compares the key itself. An
// empty key returns p as it is.
func WithAPIKey(p plan.Plan, key string) plan.Plan {
	if key == "" {
		return p
	}
	p.Env = maps.Clone(p.Env)
	if p.Env == nil {
		p.Env = map[string]string{}
	}
	p.Env[APIKeyEnv] = key
	if !slices.Contains(p.SecretEnv, APIKeyEnv) {
		p.SecretEnv = append(slices.Clone(p.SecretEnv), APIKeyEnv)
	}
	return p
}

// planHash is p's hash as the planner made p, without the API key the
// launch added: what containers are labelled with and adopted by, and
// what `detect` shows.
func planHash(p plan.Plan) string {
	if _, ok := p.Env[APIKeyEnv]; !ok {
		return p.Hash()
	}
	p.Env = maps.Clone(p.Env)
	delete(p.Env, APIKeyEnv)
	p.SecretEnv = slices.DeleteFunc(slices.Clone(p.SecretEnv), func(k string) bool { return k == APIKeyEnv })
	return p.Hash()
}

// apiKey is the key TEI is launched with for p; "" when none.
func apiKey(p plan.Plan) string { return p.Env[APIKeyEnv] }

// withSecrets returns to, a plan made again (the CPU fallback), with from's
// secret variables, which were added at launch and are not the planner's.
func withSecrets(to, from plan.Plan) plan.Plan {
	for _, k := range from.SecretEnv {
		v, ok := from.Env[k]
		if !ok {
			continue
		}
		to.Env = maps.Clone(to.Env)
		if to.Env == nil {
			to.Env = map[string]string{}
		}
		to.Env[k] = v
		if !slices.Contains(to.SecretEnv, k) {
			to.SecretEnv = append(slices.Clone(to.SecretEnv), k)
		}
	}
	return to
}

// commonKey picks the key a restarted sidecar reuses from the containers
// it will adopt, in plan order: the key most of them were started with,
// the first one's on a tie. Containers with another key are then replaced
// rather than adopted (the proxy would get 401 from them). "" when keys is
// empty or holds only empty keys.
func commonKey(keys []string) string {
	counts := map[string]int{}
	best := ""
	for _, k := range keys {
		if k == "" {
			continue
		}
		counts[k]++
		if counts[k] > counts[best] || best == "" {
			best = k
		}
	}
	return best
}
