package plan

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
)

// Settings are the user's choices that shape a plan. Names are the retrieval
// plugin's where it has one, so an existing .env keeps working; the struct
// tags make each field a flag that also reads its environment variable.
// Zero values mean "decide from the hardware".
type Settings struct {
	// EmbeddingModel is the embedding model's Hub id or local directory
	// (EMBEDDING_MODEL). Empty means BAAI/bge-m3.
	EmbeddingModel string `name:"embedding-model" env:"EMBEDDING_MODEL" help:"Embedding model, a Hub id or local directory (default BAAI/bge-m3)."`
	// EmbeddingRevision pins the embedding model to a commit or branch
	// (EMBEDDING_REVISION). Empty passes no --revision: the Hub's main.
	EmbeddingRevision string `name:"embedding-revision" env:"EMBEDDING_REVISION" help:"Embedding model revision (default: the Hub's main)."`
	// RerankModel is the reranker's Hub id or local directory
	// (RERANK_MODEL). Empty means BAAI/bge-reranker-v2-m3.
	RerankModel string `name:"rerank-model" env:"RERANK_MODEL" help:"Reranker model (default BAAI/bge-reranker-v2-m3)."`
	// RerankRevision pins the reranker (RERANK_REVISION). Empty: main.
	RerankRevision string `name:"rerank-revision" env:"RERANK_REVISION" help:"Reranker model revision (default: the Hub's main)."`
	// RerankEnable plans a reranker (RERANK_ENABLE). Nil means true.
	RerankEnable *bool `name:"rerank-enable" env:"RERANK_ENABLE" help:"Plan a reranker too (default true; --rerank-enable=false disables)."`
	// Batch is the retrieval plugin's texts per embed call
	// (EMBEDDING_BATCH), written to its .env; `tune` recommends it. It does
	// not size TEI: MaxClientBatchSize does, so a tune can recommend more
	// than the last plan allowed. Zero means the plugin's platform default:
	// 32 Apple, 64 CUDA, 16 CPU.
	Batch int `name:"embedding-batch" env:"EMBEDDING_BATCH" help:"The plugin's texts per embed call (default 32 Apple, 64 CUDA, 16 CPU); TEI's limit is --tei-max-client-batch-size."`
	// MaxClientBatchSize is TEI's --max-client-batch-size, the most texts
	// one request to TEI may carry (TEI_MAX_CLIENT_BATCH_SIZE); the sidecar
	// splits larger batches. Zero means the platform default of
	// EMBEDDING_BATCH (32 Apple, 64 CUDA, 16 CPU); the reranker's is raised
	// to RERANK_K either way.
	MaxClientBatchSize int `name:"tei-max-client-batch-size" env:"TEI_MAX_CLIENT_BATCH_SIZE" help:"TEI's --max-client-batch-size (default 32 Apple, 64 CUDA, 16 CPU; the reranker's at least RERANK_K)."`
	// FP16 chooses half precision (EMBEDDING_FP16). Nil means the platform
	// default: float16 on CUDA and Metal, float32 on CPU (where TEI has no
	// float16). False forces float32 everywhere. Models TEI runs in float32
	// only (gemma3_text) get float32 whatever it says; for a model whose
	// architecture the plan does not know, true and nil pass no --dtype and
	// TEI decides (float16 on CUDA and Metal unless it keeps the model at
	// float32).
	FP16 *bool `name:"embedding-fp16" env:"EMBEDDING_FP16" help:"Half precision (default: on for CUDA and Metal, off on CPU; --embedding-fp16=false disables)."`
	// MaxLen is the longest input, in tokens, that must fit
	// (EMBEDDING_MAX_LEN), capped at the model's limit. Zero means the
	// plugin's default: 8192 Apple and CUDA, 4096 CPU.
	MaxLen int `name:"embedding-max-len" env:"EMBEDDING_MAX_LEN" help:"Longest input in tokens (default 8192 Apple/CUDA, 4096 CPU; capped at the model's)."`
	// CacheSize is the sidecar's query cache in entries
	// (EMBEDDING_CACHE_SIZE). Nil means 2000 on GPU and Apple, 1000 on
	// CPU; zero disables the cache.
	CacheSize *int `name:"embedding-cache-size" env:"EMBEDDING_CACHE_SIZE" placeholder:"INT" help:"Query cache entries, 0 disables (default 2000 GPU/Apple, 1000 CPU)."`
	// RerankK is how many hits are reranked (RERANK_K). Zero means 5
	// Apple, 10 CUDA, 5 CPU.
	RerankK int `name:"rerank-k" env:"RERANK_K" help:"Candidates to rerank (default 5 Apple, 10 CUDA, 5 CPU)."`
	// RerankFinalN is how many reranked hits are kept (RERANK_FINAL_N), at
	// most RerankK. Zero means 3 Apple, 5 CUDA, 3 CPU.
	RerankFinalN int `name:"rerank-final-n" env:"RERANK_FINAL_N" help:"Reranked results kept (default 3 Apple, 5 CUDA, 3 CPU)."`
	// Device forces where the models run (EMBEDDING_DEVICE): auto, cpu,
	// cuda (the best GPUs), cuda:N (GPU N) or mps (Apple Metal). Empty
	// means auto.
	Device string `name:"embedding-device" env:"EMBEDDING_DEVICE" help:"auto, cpu, cuda, cuda:N or mps (default auto)."`
	// RerankDevice forces the reranker's device (RERANK_DEVICE), with the
	// values of Device. Empty means as Device: on two or more GPUs TEI can
	// use, the plan gives the reranker the last in its ranking (the
	// weakest) and the embedding model the others; on one, both share it.
	RerankDevice string `name:"rerank-device" env:"RERANK_DEVICE" help:"Reranker device, as --embedding-device (default: decided by the plan)."`
	// TEIVersion is the TEI release images are pinned to (TEI_VERSION).
	// Empty means 1.9.3.
	TEIVersion string `name:"tei-version" env:"TEI_VERSION" help:"TEI release to pin images to (default 1.9.3)."`
	// Image pins the TEI image outright, for both models unless
	// RerankImage is set (TEI_IMAGE). Empty means chosen from the GPU's
	// compute capability.
	Image string `name:"tei-image" env:"TEI_IMAGE" help:"Pin the TEI image (default: chosen from the hardware)."`
	// RerankImage pins the reranker's image (TEI_RERANK_IMAGE). Empty
	// means Image, or chosen from the reranker's GPU.
	RerankImage string `name:"tei-rerank-image" env:"TEI_RERANK_IMAGE" help:"Pin the reranker's TEI image (default: as the embedding image, or chosen)."`
	// ComputeCap overrides every GPU's compute capability, "8.6"
	// (GPU_COMPUTE_CAP). Empty means detected.
	ComputeCap string `name:"gpu-compute-cap" env:"GPU_COMPUTE_CAP" help:"Override the GPUs' compute capability, e.g. 8.6 (default: detected)."`
	// Port is the port TEI listens on (TEI_PORT). Zero means 80 inside
	// images and 3000 for the native binary; a native reranker takes the
	// next port.
	Port int `name:"tei-port" env:"TEI_PORT" help:"Port TEI listens on (default 80 in images, 3000 native)."`
	// MaxConcurrentRequests is TEI's --max-concurrent-requests, counted in
	// inputs (MAX_CONCURRENT_REQUESTS). Zero means TEI's 512.
	MaxConcurrentRequests int `name:"max-concurrent-requests" env:"MAX_CONCURRENT_REQUESTS" help:"TEI's admission limit in inputs (default 512)."`
	// MaxBatchTokens overrides the embedding model's --max-batch-tokens
	// (TEI_MAX_BATCH_TOKENS). Zero means sized from memory and model.
	MaxBatchTokens int `name:"tei-max-batch-tokens" env:"TEI_MAX_BATCH_TOKENS" help:"Override the embedding model's --max-batch-tokens (default: sized from memory)."`
	// RerankMaxBatchTokens overrides the reranker's --max-batch-tokens
	// (TEI_RERANK_MAX_BATCH_TOKENS). Zero means sized from memory.
	RerankMaxBatchTokens int `name:"tei-rerank-max-batch-tokens" env:"TEI_RERANK_MAX_BATCH_TOKENS" help:"Override the reranker's --max-batch-tokens (default: sized from memory)."`
	// EmbeddingReplicas is how many TEIs serve the embedding model
	// (EMBEDDING_REPLICAS), each on one GPU. Zero means one on each GPU the
	// reranker leaves free (times ReplicasPerGPU), or one on CPU and Apple.
	EmbeddingReplicas int `name:"embedding-replicas" env:"EMBEDDING_REPLICAS" help:"TEIs serving the embedding model (default: one per GPU the reranker leaves free; one on CPU and Apple)."`
	// RerankReplicas is how many TEIs serve the reranker (RERANK_REPLICAS).
	// Zero means one GPU's worth (ReplicasPerGPU), or one on CPU and Apple.
	RerankReplicas int `name:"rerank-replicas" env:"RERANK_REPLICAS" help:"TEIs serving the reranker (default: one GPU's worth; one on CPU and Apple)."`
	// ReplicasPerGPU is how many TEIs of one model may share a GPU
	// (TEI_REPLICAS_PER_GPU): for small models, whose short texts leave a
	// single TEI bound by its CPU side. It also multiplies the default
	// replica counts. Zero means 1.
	ReplicasPerGPU int `name:"tei-replicas-per-gpu" env:"TEI_REPLICAS_PER_GPU" help:"TEIs of one model per GPU, for small models (default 1)."`
	// HFToken is passed to TEI as HF_TOKEN for gated or private models
	// (HF_TOKEN). It is never printed. Empty passes none.
	HFToken string `name:"hf-token" env:"HF_TOKEN" help:"Hugging Face token for private models; passed to TEI, never printed."`
}

// Defaults used where a setting is zero.
const (
	DefaultEmbeddingModel = "BAAI/bge-m3"
	DefaultRerankModel    = "BAAI/bge-reranker-v2-m3"
	DefaultTEIVersion     = "1.9.3"
	// DefaultMaxConcurrentRequests is TEI's own default.
	DefaultMaxConcurrentRequests = 512
	// MaxReplicas bounds EMBEDDING_REPLICAS and RERANK_REPLICAS: more TEIs
	// than that on one machine is a typo, not a plan.
	MaxReplicas = 64
	// MaxReplicasPerGPU bounds TEI_REPLICAS_PER_GPU.
	MaxReplicasPerGPU = 16
)

var (
	versionPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	devicePattern  = regexp.MustCompile(`^(auto|cpu|cuda|cuda:[0-9]+|mps)$`)
)

// Validate reports every invalid setting, one line each.
func (s Settings) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Batch < 0 {
		add("EMBEDDING_BATCH must be at least 1, got %d", s.Batch)
	}
	if s.MaxLen < 0 {
		add("EMBEDDING_MAX_LEN must be at least 1, got %d", s.MaxLen)
	}
	if s.CacheSize != nil && *s.CacheSize < 0 {
		add("EMBEDDING_CACHE_SIZE must not be negative, got %d", *s.CacheSize)
	}
	if s.RerankK < 0 {
		add("RERANK_K must be at least 1, got %d", s.RerankK)
	}
	if s.RerankFinalN < 0 {
		add("RERANK_FINAL_N must be at least 1, got %d", s.RerankFinalN)
	}
	if s.RerankK > 0 && s.RerankFinalN > s.RerankK {
		add("RERANK_FINAL_N (%d) must not exceed RERANK_K (%d)", s.RerankFinalN, s.RerankK)
	}
	if d := strings.ToLower(s.Device); d != "" && !devicePattern.MatchString(d) {
		add("EMBEDDING_DEVICE must be auto, cpu, cuda, cuda:N or mps, got %q", s.Device)
	}
	if d := strings.ToLower(s.RerankDevice); d != "" && !devicePattern.MatchString(d) {
		add("RERANK_DEVICE must be auto, cpu, cuda, cuda:N or mps, got %q", s.RerankDevice)
	}
	if s.TEIVersion != "" && !versionPattern.MatchString(s.TEIVersion) {
		add("TEI_VERSION must be a release number such as 1.9.3, got %q", s.TEIVersion)
	}
	if err := checkImage(s.Image); err != nil {
		add("TEI_IMAGE must be an image reference such as %s:cpu-%s (%v), got %q", Registry, DefaultTEIVersion, err, s.Image)
	}
	if err := checkImage(s.RerankImage); err != nil {
		add("TEI_RERANK_IMAGE must be an image reference such as %s:cpu-%s (%v), got %q", Registry, DefaultTEIVersion, err, s.RerankImage)
	}
	if s.ComputeCap != "" && !hwdetect.ValidComputeCap(s.ComputeCap) {
		add("GPU_COMPUTE_CAP must look like 8.6, got %q", s.ComputeCap)
	}
	if s.Port < 0 || s.Port > 65535 {
		add("TEI_PORT must be between 1 and 65535, got %d", s.Port)
	}
	if s.MaxConcurrentRequests < 0 {
		add("MAX_CONCURRENT_REQUESTS must be at least 1, got %d", s.MaxConcurrentRequests)
	}
	if s.MaxBatchTokens < 0 {
		add("TEI_MAX_BATCH_TOKENS must be at least 1, got %d", s.MaxBatchTokens)
	}
	if s.RerankMaxBatchTokens < 0 {
		add("TEI_RERANK_MAX_BATCH_TOKENS must be at least 1, got %d", s.RerankMaxBatchTokens)
	}
	if s.MaxClientBatchSize < 0 {
		add("TEI_MAX_CLIENT_BATCH_SIZE must be at least 1, got %d", s.MaxClientBatchSize)
	}
	if s.EmbeddingReplicas < 0 || s.EmbeddingReplicas > MaxReplicas {
		add("EMBEDDING_REPLICAS must be between 1 and %d, got %d", MaxReplicas, s.EmbeddingReplicas)
	}
	if s.RerankReplicas < 0 || s.RerankReplicas > MaxReplicas {
		add("RERANK_REPLICAS must be between 1 and %d, got %d", MaxReplicas, s.RerankReplicas)
	}
	if s.RerankReplicas > 0 && !s.rerankEnabled() {
		add("RERANK_REPLICAS=%d asks for rerankers, but RERANK_ENABLE=false plans none", s.RerankReplicas)
	}
	if s.ReplicasPerGPU < 0 || s.ReplicasPerGPU > MaxReplicasPerGPU {
		add("TEI_REPLICAS_PER_GPU must be between 1 and %d, got %d", MaxReplicasPerGPU, s.ReplicasPerGPU)
	}
	return errors.Join(errs...)
}

// checkImage parses a pinned image reference as Docker does; empty is
// fine (nothing pinned).
func checkImage(ref string) error {
	if ref == "" {
		return nil
	}
	_, err := reference.ParseNormalizedNamed(ref)
	return err
}

// platform is the plugin's platform class, which picks its defaults.
type platform string

const (
	platformApple platform = "apple"
	platformCUDA  platform = "cuda"
	platformCPU   platform = "cpu"
)

// pluginDefaults is the retrieval plugin's table of per-platform values.
type pluginDefaults struct {
	Batch, MaxLen, CacheSize, RerankK, RerankFinalN int
}

var defaultsFor = map[platform]pluginDefaults{
	platformApple: {Batch: 32, MaxLen: 8192, CacheSize: 2000, RerankK: 5, RerankFinalN: 3},
	platformCUDA:  {Batch: 64, MaxLen: 8192, CacheSize: 2000, RerankK: 10, RerankFinalN: 5},
	platformCPU:   {Batch: 16, MaxLen: 4096, CacheSize: 1000, RerankK: 5, RerankFinalN: 3},
}

func (s Settings) embeddingModel() string { return or(s.EmbeddingModel, DefaultEmbeddingModel) }
func (s Settings) rerankModel() string    { return or(s.RerankModel, DefaultRerankModel) }
func (s Settings) teiVersion() string     { return or(s.TEIVersion, DefaultTEIVersion) }
func (s Settings) rerankEnabled() bool    { return s.RerankEnable == nil || *s.RerankEnable }
func (s Settings) perGPU() int            { return max(s.ReplicasPerGPU, 1) }

func or(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}

// device is a parsed EMBEDDING_DEVICE.
type device struct {
	kind  string // "auto", "cpu", "cuda", "mps"
	index int    // GPU for cuda:N; -1 for plain cuda
}

func parseDevice(s string) device {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "" || s == "auto":
		return device{kind: "auto", index: -1}
	case strings.HasPrefix(s, "cuda:"):
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "cuda:"))
		return device{kind: "cuda", index: n}
	default:
		return device{kind: s, index: -1}
	}
}
