// Package plan turns detected hardware and the user's settings into what to
// launch: for each model (the embedding model, and the reranker unless
// disabled) a pool of TEI replicas, each with its image or native binary,
// its arguments and environment, the GPU it runs on, and a one-line reason
// for every choice.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
)

// Role is what a plan's model does.
type Role string

// Roles.
const (
	RoleEmbedding Role = "embedding"
	RoleRerank    Role = "rerank"
)

// Backend is how TEI is run.
type Backend string

// Backends.
const (
	// BackendDocker runs a TEI image.
	BackendDocker Backend = "docker"
	// BackendNative runs the text-embeddings-router binary (Apple Metal).
	BackendNative Backend = "native"
)

// Redacted replaces secret values wherever a plan is shown.
const Redacted = "[redacted]"

// Reason explains one choice.
type Reason struct {
	// Field is what was chosen ("image", "max_batch_tokens", ...).
	Field string `json:"field"`
	// Choice is the value, as it appears in the plan.
	Choice string `json:"choice"`
	// Why is one line.
	Why string `json:"why"`
}

// Plan is how to launch one TEI: one replica of one model. The launcher
// consumes it; its fields, and their JSON names in detect's --json report
// (schema_version 1), are stable: new fields may appear, none change
// meaning.
type Plan struct {
	Role Role `json:"role"`
	// Replica is this TEI's index among its role's replicas, from 0. A
	// launcher names each replica apart (Name) and gives it GPUIDs alone.
	Replica  int     `json:"replica"`
	Model    string  `json:"model"`
	Revision string  `json:"revision,omitempty"`
	Backend  Backend `json:"backend"`
	// Image is the full image reference (registry, name and tag) for
	// BackendDocker.
	Image string `json:"image,omitempty"`
	// Binary is the program for BackendNative.
	Binary string `json:"binary,omitempty"`
	// Args are TEI's arguments, complete: they replace the image's CMD.
	Args []string `json:"args"`
	// Env is TEI's environment. Keys listed in SecretEnv hold secrets: the
	// launcher passes them on, and every printed form redacts them.
	Env       map[string]string `json:"env"`
	SecretEnv []string          `json:"secret_env,omitempty"`
	// GPUIDs are the GPUs (nvidia-smi indexes) given to the container:
	// one, as TEI serves one GPU per process; empty on CPU and Metal.
	GPUIDs []int `json:"gpu_ids"`
	// Device is the plugin's name for where it runs: cpu, cuda:N or mps.
	Device string `json:"device"`
	// DType is float16 or float32, passed as --dtype; empty when the plan
	// does not know the model's architecture and leaves it to TEI.
	DType string `json:"dtype"`
	// MemoryBudgetMiB is the memory this TEI is sized for: its share of its
	// GPU's (or the host's) usable memory, split between the TEIs on it.
	// Zero when the memory is unknown. Its reason says how.
	MemoryBudgetMiB int64 `json:"memory_budget_mib"`
	// Port is the port TEI listens on (inside the container for Docker).
	Port                  int `json:"port"`
	MaxBatchTokens        int `json:"max_batch_tokens"`
	MaxClientBatchSize    int `json:"max_client_batch_size"`
	MaxConcurrentRequests int `json:"max_concurrent_requests"`
	// MaxInputLength is the longest input in tokens the plan sized for.
	MaxInputLength      int      `json:"max_input_length"`
	TokenizationWorkers int      `json:"tokenization_workers"`
	Reasons             []Reason `json:"reasons"`
	Warnings            []string `json:"warnings"`
}

// Name tells a role's replicas apart: "embed", "embed-1", …, "rerank",
// "rerank-1", …. Replica 0 keeps the plain name, so a one-replica pool is
// named as before replicas existed. Launchers and compose files prefix it
// ("tei-embed-1").
func (p Plan) Name() string { return replicaName(p.Role, p.Replica) }

// Hash identifies what defines the launch: the image or binary, the
// arguments, the environment, the GPUs and the replica index. A launcher
// labels containers with it and replaces one whose label differs. Secret
// values are left out, so rotating a token does not restart TEI. Replica 0
// hashes without its index, as plans did before replicas, so a one-replica
// pool's containers survive the upgrade; every other replica's index is
// hashed, so no two replicas share a hash, even on one GPU.
func (p Plan) Hash() string {
	h := sha256.New()
	write := func(parts ...string) {
		for _, s := range parts {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	write(string(p.Backend), p.Image, p.Binary)
	write(p.Args...)
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		v := p.Env[k]
		if slices.Contains(p.SecretEnv, k) {
			v = Redacted
		}
		write(k, v)
	}
	ids := make([]string, len(p.GPUIDs))
	for i, id := range p.GPUIDs {
		ids[i] = itoa(id)
	}
	write(ids...)
	if p.Replica > 0 {
		write("replica", itoa(p.Replica))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Redact returns a copy whose secret environment values are replaced by
// Redacted.
func (p Plan) Redact() Plan {
	if len(p.SecretEnv) == 0 {
		return p
	}
	env := maps.Clone(p.Env)
	for _, k := range p.SecretEnv {
		if _, ok := env[k]; ok {
			env[k] = Redacted
		}
	}
	p.Env = env
	return p
}

// MarshalJSON writes the plan with secrets redacted and its hash, so no
// printed plan carries a token.
func (p Plan) MarshalJSON() ([]byte, error) {
	type plain Plan
	return json.Marshal(struct {
		plain
		Hash string `json:"hash"`
	}{plain(p.Redact()), p.Hash()})
}

// Result is a whole plan: the platform, one Plan per replica, and what to
// tell the user.
type Result struct {
	// Platform summarises the hardware in one line.
	Platform string `json:"platform"`
	// Device is where the embedding model's first replica runs: cpu,
	// cuda:N or mps.
	Device string `json:"device"`
	// TEIVersion is the TEI release the images are pinned to.
	TEIVersion string `json:"tei_version"`
	// Plans has one plan per replica: the embedding model's, by Replica,
	// then the reranker's if enabled.
	Plans []Plan `json:"plans"`
	// Plugin is the retrieval plugin's settings that go with the plans.
	Plugin          PluginSettings `json:"plugin"`
	Warnings        []string       `json:"warnings"`
	Recommendations []string       `json:"recommendations"`
}

// Plan returns the first replica's plan for role, if any.
func (r Result) Plan(role Role) (Plan, bool) {
	for _, p := range r.Plans {
		if p.Role == role {
			return p, true
		}
	}
	return Plan{}, false
}

// Replicas returns role's plans, by Replica; none when the role is not
// planned.
func (r Result) Replicas(role Role) []Plan {
	var out []Plan
	for _, p := range r.Plans {
		if p.Role == role {
			out = append(out, p)
		}
	}
	return out
}

// PluginSettings are the retrieval plugin's .env values for this plan.
type PluginSettings struct {
	EmbeddingDevice string `json:"EMBEDDING_DEVICE"`
	RerankDevice    string `json:"RERANK_DEVICE,omitempty"`
	EmbeddingModel  string `json:"EMBEDDING_MODEL"`
	RerankModel     string `json:"RERANK_MODEL"`
	Batch           int    `json:"EMBEDDING_BATCH"`
	FP16            bool   `json:"EMBEDDING_FP16"`
	MaxLen          int    `json:"EMBEDDING_MAX_LEN"`
	CacheSize       int    `json:"EMBEDDING_CACHE_SIZE"`
	RerankEnable    bool   `json:"RERANK_ENABLE"`
	RerankK         int    `json:"RERANK_K"`
	RerankFinalN    int    `json:"RERANK_FINAL_N"`
}
