package teisim

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config holds TEI's router settings plus the simulator's own knobs. Every
// field is a flag of the same name and also reads the upper-snake environment
// variable of that name (--max-batch-tokens and MAX_BATCH_TOKENS), the flag
// winning, as in TEI's CLI. The struct tags are the flag grammar.
type Config struct {
	// ModelID is the Hub id TEI would load. Required. The simulator loads
	// nothing: the id picks the model type, dimension and max input length.
	ModelID string `name:"model-id" placeholder:"MODEL_ID" help:"Model to simulate, e.g. BAAI/bge-small-en-v1.5 (required)."`
	// Revision is reported as /info model_sha; "" reports null.
	Revision string `name:"revision" help:"Model revision, reported as model_sha."`
	// TokenizationWorkers is reported in /info; 0 means cores-1 (at least 1).
	TokenizationWorkers int `name:"tokenization-workers" help:"Tokenization workers (default: cores-1)."`
	// DType is float16 or float32 (the default: the simulator is a CPU build).
	DType string `name:"dtype" default:"float32" help:"float16 or float32."`
	// Pooling overrides the model's pooling: cls, mean, splade or last-token;
	// "" keeps the model's own.
	Pooling string `name:"pooling" help:"Pooling: cls, mean, splade or last-token."`
	// MaxConcurrentRequests is the number of per-input permits; default 512.
	MaxConcurrentRequests int `name:"max-concurrent-requests" default:"512" help:"Per-input permits; a request that cannot take all of its permits at once gets 429."`
	// MaxBatchTokens is the backend's token budget per batch; default 16384.
	MaxBatchTokens int `name:"max-batch-tokens" default:"16384" help:"Token budget of one backend batch."`
	// MaxBatchRequests caps the entries of one backend batch; 0 means no cap
	// (reported as null). A CPU backend (--sim-backend candle or ort) forces
	// its own cap instead, as TEI does.
	MaxBatchRequests int `name:"max-batch-requests" help:"Entries per backend batch (default: no cap)."`
	// MaxClientBatchSize is the most inputs one request may carry; default 32.
	MaxClientBatchSize int `name:"max-client-batch-size" default:"32" help:"Most inputs in one request."`
	// AutoTruncate truncates over-long inputs when a request leaves truncate
	// unset; default true. Accepts --auto-truncate, --auto-truncate=false and
	// --auto-truncate false.
	AutoTruncate bool `name:"auto-truncate" type:"spacedbool" default:"true" help:"Truncate over-long inputs by default."`
	// DefaultPromptName names a prompt of Sim.Prompts applied when a request
	// names none; conflicts with DefaultPrompt.
	DefaultPromptName string `name:"default-prompt-name" help:"Prompt (from --sim-prompts) applied by default."`
	// DefaultPrompt is text prepended to every input when a request names no
	// prompt; conflicts with DefaultPromptName.
	DefaultPrompt string `name:"default-prompt" help:"Text prepended to every input by default."`
	// DensePath is accepted for compatibility and ignored.
	DensePath string `name:"dense-path" help:"Accepted and ignored."`
	// ServedModelName is the model name in OpenAI responses; "" means ModelID.
	ServedModelName string `name:"served-model-name" help:"Model name in OpenAI responses (default: model id)."`
	// HFToken is accepted and never logged.
	HFToken string `name:"hf-token" help:"Hub token (accepted, unused)."`
	// HFAPIToken is TEI's older spelling of HFToken.
	HFAPIToken string `name:"hf-api-token" hidden:"" help:"Deprecated spelling of --hf-token."`
	// Hostname is the address the binary listens on; default 0.0.0.0. A value
	// that is not an IP address falls back to 0.0.0.0 with a warning, as TEI does.
	Hostname string `name:"hostname" default:"0.0.0.0" help:"IP address to listen on."`
	// Port is the port the binary listens on; default 3000 (TEI's images set PORT=80).
	Port int `name:"port" short:"p" default:"3000" help:"Port to listen on."`
	// UDSPath is accepted for compatibility and ignored.
	UDSPath string `name:"uds-path" default:"/tmp/text-embeddings-inference-server" help:"Accepted and ignored."`
	// HuggingfaceHubCache is accepted and ignored (nothing is downloaded).
	HuggingfaceHubCache string `name:"huggingface-hub-cache" help:"Accepted and ignored."`
	// PayloadLimit is the largest JSON body in bytes; default 2000000.
	PayloadLimit int `name:"payload-limit" default:"2000000" help:"Largest request body in bytes."`
	// APIKey, when set, makes every route but the health and metrics ones
	// require "Authorization: Bearer <APIKey>".
	APIKey string `name:"api-key" help:"Require this bearer token."`
	// JSONOutput makes the binary log JSON lines.
	JSONOutput bool `name:"json-output" help:"Log JSON lines."`
	// DisableSpans is accepted and ignored.
	DisableSpans bool `name:"disable-spans" help:"Accepted and ignored."`
	// OTLPEndpoint is accepted and ignored.
	OTLPEndpoint string `name:"otlp-endpoint" help:"Accepted and ignored."`
	// OTLPServiceName is accepted and ignored.
	OTLPServiceName string `name:"otlp-service-name" default:"text-embeddings-inference.server" help:"Accepted and ignored."`
	// PrometheusPort is accepted and ignored: HTTP builds of TEI serve
	// /metrics on the main port.
	PrometheusPort int `name:"prometheus-port" default:"9000" help:"Accepted and ignored (metrics are on the main port)."`
	// CORSAllowOrigin lists the allowed origins; empty or "*" allows any.
	CORSAllowOrigin []string `name:"cors-allow-origin" placeholder:"ORIGIN" help:"Allowed CORS origins (default: any)."`

	// Sim holds the simulator's own knobs, flags --sim-*.
	Sim SimConfig `embed:"" prefix:"sim-"`
}

// SimConfig holds the simulator's knobs. Costs of zero make the backend
// answer at once, which is what most tests want.
type SimConfig struct {
	// ModelType overrides the type derived from the model id: embedding,
	// reranker, splade or classifier; "" derives it ("rerank" in the id →
	// reranker, "splade" → splade, else embedding).
	ModelType string `name:"model-type" help:"embedding, reranker, splade or classifier (default: from the model id)."`
	// Dim is the embedding dimension; 0 means the known model's, else 768.
	Dim int `name:"dim" help:"Embedding dimension (default: the known model's, else 768)."`
	// MaxInputLength is the model's token limit; 0 means the known model's,
	// else 512. /info reports it capped at MaxBatchTokens.
	MaxInputLength int `name:"max-input-length" help:"Model token limit (default: the known model's, else 512)."`
	// Backend is the TEI backend simulated: cuda (the default: no entry cap
	// beyond --max-batch-requests, no padding), candle (TEI's CPU candle
	// backend: at most 4 entries per batch) or ort (ONNX Runtime: at most 8).
	// The CPU backends pad a batch, so every entry costs the longest
	// entry's tokens, and count the padding against --max-batch-tokens.
	Backend string `name:"backend" default:"cuda" help:"TEI backend to simulate: cuda, candle (CPU, 4 entries per batch, padded) or ort (CPU ONNX, 8, padded)."`
	// Workers is the number of backend workers running batches; default 1,
	// as TEI's one backend thread.
	Workers int `name:"workers" default:"1" help:"Backend workers, each running one batch at a time."`
	// BatchCost is the fixed time one backend batch takes; default 2ms.
	BatchCost time.Duration `name:"batch-cost" default:"2ms" help:"Fixed time of one backend batch."`
	// TokenCost is the time each token adds to its batch; default 20µs.
	TokenCost time.Duration `name:"token-cost" default:"20us" help:"Time each token adds to its batch."`
	// StartupDelay delays the binary's port opening, like TEI's model load.
	StartupDelay time.Duration `name:"startup-delay" help:"Binary only: delay before the port opens."`
	// ErrorRate is the fraction of inference requests answered with
	// ErrorStatus, in [0, 1].
	ErrorRate float64 `name:"error-rate" placeholder:"RATE" help:"Fraction of inference requests that fail."`
	// ErrorStatus is the status of injected failures; default 424. The body
	// is TEI's error for that status (429 Overloaded, 503 Unhealthy, ...).
	ErrorStatus int `name:"error-status" default:"424" help:"Status of injected failures."`
	// ErrorPerBatch rolls ErrorRate once per backend batch instead of once
	// per request: a failing batch fails every request with an input in it,
	// and /health reports 503 until a probe passes, as a failing TEI backend
	// does.
	ErrorPerBatch bool `name:"error-per-batch" help:"Roll --sim-error-rate per backend batch, failing every request in it."`
	// ErrorMarker, when set, fails every backend batch holding an input whose
	// text contains it, with every request in that batch.
	ErrorMarker string `name:"error-marker" placeholder:"TEXT" help:"Fail every backend batch holding an input that contains this text."`
	// NaNMarker, when set, makes the model output NaN for every input whose
	// text contains it: vectors answer null entries (NaN bits in base64),
	// scores answer TEI's "score is NaN" error.
	NaNMarker string `name:"nan-marker" placeholder:"TEXT" help:"Inputs containing this text come out of the model as NaN."`
	// Stall delays every inference answer (holding its permits) until it
	// passes or the client goes away.
	Stall time.Duration `name:"stall" help:"Delay before every inference answer."`
	// Unhealthy makes /health answer 503.
	Unhealthy bool `name:"unhealthy" help:"Answer /health with 503."`
	// OOMAboveBatchTokens makes the binary fail its warm-up with a CUDA
	// out-of-memory error when MaxBatchTokens exceeds it; 0 disables.
	OOMAboveBatchTokens int `name:"oom-above-batch-tokens" help:"Binary only: fail warm-up with CUDA OOM when --max-batch-tokens exceeds this."`
	// FailComputeCap, as "RUNTIME:COMPILED" (e.g. "86:90"), makes the binary
	// fail at start with TEI's compute-capability mismatch error.
	FailComputeCap string `name:"fail-compute-cap" placeholder:"RUNTIME:COMPILED" help:"Binary only: fail at start with a compute cap mismatch, e.g. 86:90."`
	// Prompts are the model's sentence-transformers prompts, name=text; a
	// request's prompt_name must be one of them.
	Prompts map[string]string `name:"prompts" help:"Model prompts as name=text pairs, separated by ';'."`
}

// batchRequests is the entry cap of a backend batch, and /info's
// max_batch_requests: the CPU backend's own cap wins over
// --max-batch-requests, as in TEI; 0 means none.
func (c Config) batchRequests() int {
	return cmp.Or(BackendBatchCap(c.Sim.Backend), c.MaxBatchRequests)
}

// Model types accepted by --sim-model-type.
const (
	ModelTypeEmbedding  = "embedding"
	ModelTypeReranker   = "reranker"
	ModelTypeSplade     = "splade"
	ModelTypeClassifier = "classifier"
)

// DefaultConfig returns TEI's defaults. ModelID is empty, so New rejects the
// result until a model id is set.
func DefaultConfig() Config {
	cfg, err := parse(nil, func(string) string { return "" })
	if err != nil {
		// The defaults are literals in the struct tags; failing to parse
		// them is a programming error.
		panic(fmt.Sprintf("teisim: default config: %v", err))
	}
	return cfg
}

// Validate checks the settings as TEI's start-up does. Its messages follow
// TEI's where TEI has one.
func (c Config) Validate() error {
	if c.ModelID == "" {
		return errors.New("the following required arguments were not provided: --model-id <MODEL_ID>")
	}
	if c.DType != "float16" && c.DType != "float32" {
		return fmt.Errorf("invalid value '%s' for '--dtype <DTYPE>': possible values: float16, float32", c.DType)
	}
	if !slices.Contains([]string{"", "cls", "mean", "splade", "last-token"}, c.Pooling) {
		return fmt.Errorf("invalid value '%s' for '--pooling <POOLING>': possible values: cls, mean, splade, last-token", c.Pooling)
	}
	for _, f := range []struct {
		name  string
		value int
		min   int
	}{
		{"--max-concurrent-requests", c.MaxConcurrentRequests, 0},
		{"--max-batch-tokens", c.MaxBatchTokens, 1},
		{"--max-batch-requests", c.MaxBatchRequests, 0},
		{"--max-client-batch-size", c.MaxClientBatchSize, 0},
		{"--tokenization-workers", c.TokenizationWorkers, 0},
		{"--payload-limit", c.PayloadLimit, 0},
		{"--sim-dim", c.Sim.Dim, 0},
		{"--sim-max-input-length", c.Sim.MaxInputLength, 0},
		{"--sim-workers", c.Sim.Workers, 1},
		{"--sim-oom-above-batch-tokens", c.Sim.OOMAboveBatchTokens, 0},
	} {
		if f.value < f.min {
			return fmt.Errorf("invalid value '%d' for '%s': must be at least %d", f.value, f.name, f.min)
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("invalid value '%d' for '--port <PORT>': %d is not in 0..=65535", c.Port, c.Port)
	}
	if c.DefaultPrompt != "" && c.DefaultPromptName != "" {
		return errors.New("the argument '--default-prompt-name <DEFAULT_PROMPT_NAME>' cannot be used with '--default-prompt <DEFAULT_PROMPT>'")
	}
	if name := c.DefaultPromptName; name != "" {
		if len(c.Sim.Prompts) == 0 {
			return fmt.Errorf("`default-prompt-name` is set to `%s` but no prompts were found in the Sentence Transformers configuration", name)
		}
		if _, ok := c.Sim.Prompts[name]; !ok {
			return fmt.Errorf("`default-prompt-name` is set to `%s` but it was not found in the Sentence Transformers prompts. Available prompts: %s", name, promptNames(c.Sim.Prompts))
		}
	}
	if c.Sim.BatchCost < 0 || c.Sim.TokenCost < 0 || c.Sim.Stall < 0 || c.Sim.StartupDelay < 0 {
		return errors.New("--sim-batch-cost, --sim-token-cost, --sim-stall and --sim-startup-delay must not be negative")
	}
	if c.Sim.ErrorRate < 0 || c.Sim.ErrorRate > 1 {
		return fmt.Errorf("invalid value '%g' for '--sim-error-rate': must be in [0, 1]", c.Sim.ErrorRate)
	}
	if !slices.Contains([]string{BackendCUDA, BackendCandle, BackendORT}, c.Sim.Backend) {
		return fmt.Errorf("invalid value '%s' for '--sim-backend': possible values: cuda, candle, ort", c.Sim.Backend)
	}
	if c.Sim.ErrorStatus < 400 || c.Sim.ErrorStatus > 599 {
		return fmt.Errorf("invalid value '%d' for '--sim-error-status': must be an HTTP error status (400..599)", c.Sim.ErrorStatus)
	}
	if c.Sim.FailComputeCap != "" {
		if _, _, err := parseComputeCaps(c.Sim.FailComputeCap); err != nil {
			return err
		}
	}
	m, err := newModel(c)
	if err != nil {
		return err
	}
	if !c.AutoTruncate && m.modelMaxInputLength > c.MaxBatchTokens {
		return fmt.Errorf("`max_input_length` must be smaller than `max_batch_tokens` when `auto_truncate` is disabled (%d > %d)", m.modelMaxInputLength, c.MaxBatchTokens)
	}
	return nil
}

// ComputeCapMismatch reports the runtime and compile-time compute
// capabilities set by --sim-fail-compute-cap, and whether it is set.
func (c SimConfig) ComputeCapMismatch() (runtime, compiled int, ok bool) {
	if c.FailComputeCap == "" {
		return 0, 0, false
	}
	runtime, compiled, err := parseComputeCaps(c.FailComputeCap)
	return runtime, compiled, err == nil
}

func parseComputeCaps(s string) (runtime, compiled int, err error) {
	a, b, found := strings.Cut(s, ":")
	runtime, err1 := strconv.Atoi(a)
	compiled, err2 := strconv.Atoi(b)
	if !found || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("invalid value '%s' for '--sim-fail-compute-cap': want RUNTIME:COMPILED, e.g. 86:90", s)
	}
	return runtime, compiled, nil
}

// promptNames lists prompt names as TEI's message does, with Rust's Debug
// of the map's keys (["doc", "query"]); sorted, where Rust's HashMap order
// is arbitrary, so messages are stable.
func promptNames(prompts map[string]string) string {
	names := make([]string, 0, len(prompts))
	for name := range prompts {
		names = append(names, rustDebug(name))
	}
	slices.Sort(names)
	return "[" + strings.Join(names, ", ") + "]"
}
