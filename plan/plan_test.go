package plan_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

func fact[T any](v T) hwdetect.Fact[T] { return hwdetect.Fact[T]{Value: v, Source: "test"} }

func gpu(index int, name, cc string, mib int64) hwdetect.GPU {
	g := hwdetect.GPU{Index: index, Name: fact(name), MemoryMiB: fact(mib)}
	if cc != "" {
		g.ComputeCap = fact(cc)
	}
	return g
}

// host is an 8-core, 32 GiB x86-64 Linux machine with the given GPUs.
func host(gpus ...hwdetect.GPU) hwdetect.Hardware {
	return hwdetect.Hardware{
		OS: "linux", Arch: "amd64",
		CPU: hwdetect.CPU{
			Model: fact("Test CPU"), LogicalCores: fact(8), UsableCores: fact(8),
			Features: fact([]string{"avx2"}),
		},
		Memory:        hwdetect.Memory{PhysicalBytes: fact(int64(32) << 30)},
		GPUs:          append([]hwdetect.GPU{}, gpus...),
		NVIDIARuntime: fact(true),
	}
}

func ptr[T any](v T) *T { return &v }

func mustMake(t *testing.T, hw hwdetect.Hardware, s plan.Settings) plan.Result {
	t.Helper()
	res, err := plan.Make(hw, s)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestValidate checks every message Validate gives, one setting at a time,
// and that they are reported together, in order.
func TestValidate(t *testing.T) {
	if err := (plan.Settings{}).Validate(); err != nil {
		t.Fatalf("zero settings: %v", err)
	}
	const refErr = " must be an image reference such as " + plan.Registry + ":cpu-1.9.3 (invalid reference format), got "
	tests := []struct {
		name string
		s    plan.Settings
		want string
	}{
		{"batch", plan.Settings{Batch: -1}, "EMBEDDING_BATCH must be at least 1, got -1"},
		{"max len", plan.Settings{MaxLen: -2}, "EMBEDDING_MAX_LEN must be at least 1, got -2"},
		{"cache", plan.Settings{CacheSize: ptr(-3)}, "EMBEDDING_CACHE_SIZE must not be negative, got -3"},
		{"rerank k", plan.Settings{RerankK: -1}, "RERANK_K must be at least 1, got -1"},
		{"final n", plan.Settings{RerankFinalN: -1}, "RERANK_FINAL_N must be at least 1, got -1"},
		{"final n over k", plan.Settings{RerankK: 3, RerankFinalN: 4}, "RERANK_FINAL_N (4) must not exceed RERANK_K (3)"},
		{"device", plan.Settings{Device: "gpu"}, `EMBEDDING_DEVICE must be auto, cpu, cuda, cuda:N or mps, got "gpu"`},
		{"rerank device", plan.Settings{RerankDevice: "cuda:x"}, `RERANK_DEVICE must be auto, cpu, cuda, cuda:N or mps, got "cuda:x"`},
		{"version", plan.Settings{TEIVersion: "latest"}, `TEI_VERSION must be a release number such as 1.9.3, got "latest"`},
		{"image with a space", plan.Settings{Image: "a b"}, "TEI_IMAGE" + refErr + `"a b"`},
		{"image in capitals", plan.Settings{Image: "Registry/TEI:1"}, `TEI_IMAGE must be an image reference such as ` + plan.Registry +
			`:cpu-1.9.3 (invalid reference format: repository name (TEI) must be lowercase), got "Registry/TEI:1"`},
		{"rerank image", plan.Settings{RerankImage: "c\td"}, "TEI_RERANK_IMAGE" + refErr + `"c\td"`},
		{"compute cap", plan.Settings{ComputeCap: "sm_86"}, `GPU_COMPUTE_CAP must look like 8.6, got "sm_86"`},
		{"port", plan.Settings{Port: 70000}, "TEI_PORT must be between 1 and 65535, got 70000"},
		{"concurrency", plan.Settings{MaxConcurrentRequests: -1}, "MAX_CONCURRENT_REQUESTS must be at least 1, got -1"},
		{"batch tokens", plan.Settings{MaxBatchTokens: -5}, "TEI_MAX_BATCH_TOKENS must be at least 1, got -5"},
		{"rerank batch tokens", plan.Settings{RerankMaxBatchTokens: -6}, "TEI_RERANK_MAX_BATCH_TOKENS must be at least 1, got -6"},
		{"client batch", plan.Settings{MaxClientBatchSize: -7}, "TEI_MAX_CLIENT_BATCH_SIZE must be at least 1, got -7"},
		{"embedding replicas below", plan.Settings{EmbeddingReplicas: -1}, "EMBEDDING_REPLICAS must be between 1 and 64, got -1"},
		{"embedding replicas above", plan.Settings{EmbeddingReplicas: 65}, "EMBEDDING_REPLICAS must be between 1 and 64, got 65"},
		{"rerank replicas", plan.Settings{RerankReplicas: 1000}, "RERANK_REPLICAS must be between 1 and 64, got 1000"},
		{"rerank replicas without a reranker", plan.Settings{RerankReplicas: 2, RerankEnable: ptr(false)},
			"RERANK_REPLICAS=2 asks for rerankers, but RERANK_ENABLE=false plans none"},
		{"replicas per GPU below", plan.Settings{ReplicasPerGPU: -1}, "TEI_REPLICAS_PER_GPU must be between 1 and 16, got -1"},
		{"replicas per GPU above", plan.Settings{ReplicasPerGPU: 17}, "TEI_REPLICAS_PER_GPU must be between 1 and 16, got 17"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Validate(); err == nil || err.Error() != tt.want {
				t.Errorf("Validate() = %v\nwant        %s", err, tt.want)
			}
			if _, err := plan.Make(host(), tt.s); err == nil || err.Error() != tt.want {
				t.Errorf("Make() = %v, want the same refusal", err)
			}
		})
	}
	all := plan.Settings{Batch: -1, Image: "a b", RerankImage: "c d", EmbeddingReplicas: -1, ReplicasPerGPU: 99}
	want := strings.Join([]string{
		"EMBEDDING_BATCH must be at least 1, got -1",
		"TEI_IMAGE" + refErr + `"a b"`,
		"TEI_RERANK_IMAGE" + refErr + `"c d"`,
		"EMBEDDING_REPLICAS must be between 1 and 64, got -1",
		"TEI_REPLICAS_PER_GPU must be between 1 and 16, got 99",
	}, "\n")
	if err := all.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
}

func TestForcedDevices(t *testing.T) {
	a100 := gpu(0, "A100", "8.0", 81920)
	t4 := gpu(1, "T4", "7.5", 15360)
	v100 := gpu(0, "V100", "7.0", 16160)
	apple := host()
	apple.OS, apple.Arch = "darwin", "arm64"
	apple.Apple = &hwdetect.Apple{Chip: fact("Apple M2"), UnifiedMemoryBytes: fact(int64(24) << 30)}
	arm := host(gpu(0, "GH200", "9.0", 97871))
	arm.Arch = "arm64"

	tests := []struct {
		name               string
		hw                 hwdetect.Hardware
		s                  plan.Settings
		embDevice, rerDev  string
		embImage, rerImage string
		wantErr            string
	}{
		{name: "cpu forced on a GPU machine", hw: host(a100), s: plan.Settings{Device: "cpu"},
			embDevice: "cpu", rerDev: "cpu", embImage: "cpu-1.9.3", rerImage: "cpu-1.9.3"},
		{name: "cuda:1 puts both on GPU 1", hw: host(a100, t4), s: plan.Settings{Device: "cuda:1"},
			embDevice: "cuda:1", rerDev: "cuda:1", embImage: "turing-1.9.3", rerImage: "turing-1.9.3"},
		{name: "cuda picks the best GPUs", hw: host(gpu(0, "T4", "7.5", 15360), gpu(1, "A100", "8.0", 40960)), s: plan.Settings{Device: "cuda"},
			embDevice: "cuda:1", rerDev: "cuda:0", embImage: "1.9.3", rerImage: "turing-1.9.3"},
		{name: "RERANK_DEVICE=cpu beside a GPU embedding", hw: host(a100), s: plan.Settings{RerankDevice: "cpu"},
			embDevice: "cuda:0", rerDev: "cpu", embImage: "1.9.3", rerImage: "cpu-1.9.3"},
		{name: "RERANK_DEVICE=auto beside a forced embedding GPU takes a free one", hw: host(a100, gpu(1, "A100", "8.0", 81920)),
			s:         plan.Settings{Device: "cuda:1", RerankDevice: "auto"},
			embDevice: "cuda:1", rerDev: "cuda:0", embImage: "1.9.3", rerImage: "1.9.3"},
		{name: "cpu forced on Apple Silicon runs the arm64 CPU image", hw: apple, s: plan.Settings{Device: "cpu"},
			embDevice: "cpu", rerDev: "cpu", embImage: "cpu-arm64-latest", rerImage: "cpu-arm64-latest"},
		{name: "mps off Apple Silicon", hw: host(), s: plan.Settings{Device: "mps"},
			wantErr: "EMBEDDING_DEVICE=mps needs Apple Silicon; this machine is linux/amd64"},
		{name: "RERANK_DEVICE=mps off Apple Silicon", hw: host(), s: plan.Settings{RerankDevice: "mps"},
			wantErr: "RERANK_DEVICE=mps needs Apple Silicon; this machine is linux/amd64"},
		{name: "cuda:3 with two GPUs", hw: host(a100, t4), s: plan.Settings{Device: "cuda:3"},
			wantErr: "EMBEDDING_DEVICE=cuda:3, but the detected GPUs are 0, 1"},
		{name: "cuda forced on a Volta", hw: host(v100), s: plan.Settings{Device: "cuda"},
			wantErr: "EMBEDDING_DEVICE=cuda: GPU 0 (V100): compute capability 7.0 is older than Turing (7.5), the oldest TEI 1.9.3 supports"},
		{name: "cuda forced on compute capability 10.3", hw: host(gpu(0, "B300", "10.3", 275040)), s: plan.Settings{Device: "cuda:0"},
			wantErr: "EMBEDDING_DEVICE=cuda: GPU 0 (B300): no TEI 1.9.3 build runs on compute capability 10.3 (builds beyond 8.x run only on their exact compute capability)"},
		{name: "cuda forced on arm64", hw: arm, s: plan.Settings{Device: "cuda"},
			wantErr: "EMBEDDING_DEVICE=cuda: TEI 1.9.3 publishes CUDA images for linux/amd64 only, and this machine is arm64; set TEI_IMAGE to a CUDA build for it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := plan.Make(tt.hw, tt.s)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Make() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			emb, rer := res.Plans[0], res.Plans[1]
			tag := func(p plan.Plan) string { return strings.TrimPrefix(p.Image, plan.Registry+":") }
			if emb.Device != tt.embDevice || rer.Device != tt.rerDev || tag(emb) != tt.embImage || tag(rer) != tt.rerImage {
				t.Errorf("embedding on %s (%s), reranker on %s (%s); want %s (%s), %s (%s)",
					emb.Device, tag(emb), rer.Device, tag(rer), tt.embDevice, tt.embImage, tt.rerDev, tt.rerImage)
			}
		})
	}
}

func TestPinnedImages(t *testing.T) {
	a100 := host(gpu(0, "A100", "8.0", 81920))
	armGH200 := host(gpu(0, "GH200", "9.0", 97871))
	armGH200.Arch = "arm64"
	tests := []struct {
		name               string
		hw                 hwdetect.Hardware
		s                  plan.Settings
		embImage, rerImage string
		embDType           string
		embGPUs            []int
	}{
		{"TEI_IMAGE pins both", a100, plan.Settings{Image: "registry.local/tei:custom"},
			"registry.local/tei:custom", "registry.local/tei:custom", "float16", []int{0}},
		{"a pinned CPU image runs on the CPU", a100, plan.Settings{Image: "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.0"},
			"ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.0", "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.0", "float32", []int{}},
		{"TEI_RERANK_IMAGE pins the reranker only", a100, plan.Settings{RerankImage: "registry.local/tei:rerank"},
			plan.Registry + ":1.9.3", "registry.local/tei:rerank", "float16", []int{0}},
		{"a pinned GPU image without a detected GPU", host(), plan.Settings{Image: "registry.local/tei:89-custom"},
			"registry.local/tei:89-custom", "registry.local/tei:89-custom", "float16", []int{0}},
		{"a pinned image on a Volta", host(gpu(0, "V100", "7.0", 16160)), plan.Settings{Image: "registry.local/tei:sm70"},
			"registry.local/tei:sm70", "registry.local/tei:sm70", "float16", []int{0}},
		{"a pinned image on arm64 uses the detected GPU", armGH200, plan.Settings{Image: "registry.local/tei:arm64-hopper"},
			"registry.local/tei:arm64-hopper", "registry.local/tei:arm64-hopper", "float16", []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustMake(t, tt.hw, tt.s)
			emb, rer := res.Plans[0], res.Plans[1]
			if emb.Image != tt.embImage || rer.Image != tt.rerImage || emb.DType != tt.embDType || !slices.Equal(emb.GPUIDs, tt.embGPUs) {
				t.Errorf("images %q, %q, dtype %s, GPUs %v; want %q, %q, %s, %v",
					emb.Image, rer.Image, emb.DType, emb.GPUIDs, tt.embImage, tt.rerImage, tt.embDType, tt.embGPUs)
			}
			if detected := len(tt.hw.GPUs) > 0; detected && strings.Contains(emb.Reasons[0].Why, "no GPU was detected") {
				t.Errorf("reason %q denies the detected GPU", emb.Reasons[0].Why)
			}
		})
	}
}

// TestArgs checks a whole plan's command line and environment.
func TestArgs(t *testing.T) {
	res := mustMake(t, host(gpu(0, "L4", "8.9", 23034)), plan.Settings{
		EmbeddingRevision:  "5617a9f61b028005a4858fdac845db406aefb181",
		RerankEnable:       ptr(false),
		MaxClientBatchSize: 48,
		Batch:              256, // the plugin's: it does not size TEI
		Port:               8080,
	})
	if len(res.Plans) != 1 {
		t.Fatalf("RERANK_ENABLE=false: %d plans, want 1", len(res.Plans))
	}
	p := res.Plans[0]
	want := []string{
		"--model-id", "BAAI/bge-m3", "--revision", "5617a9f61b028005a4858fdac845db406aefb181",
		"--dtype", "float16", "--max-batch-tokens", "32768", "--max-client-batch-size", "48",
		"--max-concurrent-requests", "512", "--tokenization-workers", "4",
		"--hostname", "0.0.0.0", "--port", "8080", "--json-output", "--huggingface-hub-cache", "/data",
	}
	if !slices.Equal(p.Args, want) {
		t.Errorf("Args = %q\nwant   %q", p.Args, want)
	}
	if len(p.Env) != 1 || p.Env["AUTO_TRUNCATE"] != "true" {
		t.Errorf("Env = %v, want only AUTO_TRUNCATE=true", p.Env)
	}
	if p.Backend != plan.BackendDocker || p.Image != plan.Registry+":89-1.9.3" || p.Port != 8080 {
		t.Errorf("backend %s image %s port %d", p.Backend, p.Image, p.Port)
	}
}

func TestNativeArgsAndPorts(t *testing.T) {
	hw := host()
	hw.OS, hw.Arch = "darwin", "arm64"
	hw.Apple = &hwdetect.Apple{Chip: fact("Apple M2 Pro"), UnifiedMemoryBytes: fact(int64(32) << 30)}
	res := mustMake(t, hw, plan.Settings{HFToken: "hf_native_secret"})
	emb, rer := res.Plans[0], res.Plans[1]
	if emb.Port != 3000 || rer.Port != 3001 {
		t.Errorf("ports %d, %d; want 3000, 3001", emb.Port, rer.Port)
	}
	if slices.Contains(emb.Args, "--huggingface-hub-cache") {
		t.Errorf("native args %q name the images' /data cache", emb.Args)
	}
	if emb.Env["HF_TOKEN"] != "hf_native_secret" || !slices.Equal(emb.SecretEnv, []string{"HF_TOKEN"}) {
		t.Errorf("Env %v SecretEnv %v: want HF_TOKEN passed and marked secret", emb.Env, emb.SecretEnv)
	}
	if _, ok := emb.Env["RAYON_NUM_THREADS"]; ok {
		t.Errorf("Metal plan sets RAYON_NUM_THREADS")
	}
	if !slices.Contains(res.Recommendations, "Install TEI natively on Apple Silicon: `brew install text-embeddings-inference` (it provides text-embeddings-router)") {
		t.Errorf("recommendations %q lack brew install", res.Recommendations)
	}
}

func TestSettingsShapePlans(t *testing.T) {
	l4 := host(gpu(0, "L4", "8.9", 23034))
	tests := []struct {
		name     string
		hw       hwdetect.Hardware
		s        plan.Settings
		check    func(p plan.Plan) bool
		wantText string
	}{
		{"EMBEDDING_FP16=false runs float32 on GPU", l4, plan.Settings{FP16: ptr(false)},
			func(p plan.Plan) bool { return p.DType == "float32" }, "float32"},
		{"EMBEDDING_FP16=true is ignored on CPU", host(), plan.Settings{FP16: ptr(true)},
			func(p plan.Plan) bool {
				return p.DType == "float32" && slices.Contains(p.Warnings, "EMBEDDING_FP16=true ignored: TEI's CPU backends run float32 only")
			}, "float32 with a warning"},
		{"EMBEDDING_MAX_LEN is capped at the model's", l4, plan.Settings{EmbeddingModel: "BAAI/bge-small-en-v1.5", MaxLen: 8192},
			func(p plan.Plan) bool { return p.MaxInputLength == 512 }, "max input 512"},
		{"a local directory is matched by name", l4, plan.Settings{EmbeddingModel: "/models/BAAI/bge-base-en-v1.5"},
			func(p plan.Plan) bool { return p.MaxInputLength == 512 && len(p.Warnings) == 0 }, "bge-base's 512"},
		{"TEI_MAX_BATCH_TOKENS overrides the sizing", l4, plan.Settings{MaxBatchTokens: 4096},
			func(p plan.Plan) bool {
				return p.MaxBatchTokens == 4096 && slices.Contains(p.Warnings, "TEI_MAX_BATCH_TOKENS=4096 is below the 8192-token inputs wanted: TEI truncates inputs to it")
			}, "4096 with a warning"},
		{"MAX_CONCURRENT_REQUESTS", l4, plan.Settings{MaxConcurrentRequests: 64},
			func(p plan.Plan) bool { return p.MaxConcurrentRequests == 64 }, "64"},
		{"an unknown model is sized conservatively, with a warning", l4, plan.Settings{EmbeddingModel: "acme/embedder-xl"},
			func(p plan.Plan) bool {
				return p.MaxInputLength == 8192 && p.MaxBatchTokens == 16384 && len(p.Warnings) == 1 &&
					strings.HasPrefix(p.Warnings[0], "acme/embedder-xl is not in the model table")
			}, "8192 input, 16384 tokens, a warning"},
		{"the usable cores become RAYON_NUM_THREADS on CPU", host(), plan.Settings{},
			func(p plan.Plan) bool { return p.Env["RAYON_NUM_THREADS"] == "8" && p.TokenizationWorkers == 2 }, "RAYON_NUM_THREADS=8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustMake(t, tt.hw, tt.s).Plans[0]
			if !tt.check(p) {
				t.Errorf("plan %+v, want %s", p, tt.wantText)
			}
		})
	}
}

func TestRerankBatchCoversRerankK(t *testing.T) {
	res := mustMake(t, host(gpu(0, "A100", "8.0", 81920)), plan.Settings{MaxClientBatchSize: 8, RerankK: 20, RerankFinalN: 5})
	emb, rer := res.Plans[0], res.Plans[1]
	if emb.MaxClientBatchSize != 8 || rer.MaxClientBatchSize != 20 {
		t.Errorf("client batch %d, %d; want 8, 20", emb.MaxClientBatchSize, rer.MaxClientBatchSize)
	}
	if res.Plugin.RerankK != 20 || res.Plugin.RerankFinalN != 5 {
		t.Errorf("plugin settings %+v", res.Plugin)
	}
}

// TestRerankDisabledTakesTheWholeGPU: alone on a GPU, the embedding model
// gets all of it, so a bigger budget than when shared.
func TestRerankDisabledTakesTheWholeGPU(t *testing.T) {
	a100 := host(gpu(0, "A100", "8.0", 40960))
	shared := mustMake(t, a100, plan.Settings{}).Plans[0].MaxBatchTokens
	alone := mustMake(t, a100, plan.Settings{RerankEnable: ptr(false)}).Plans[0].MaxBatchTokens
	if shared != 32768 || alone != 65536 {
		t.Errorf("max batch tokens shared %d, alone %d; want 32768, 65536", shared, alone)
	}
}

func TestHFTokenIsNeverPrinted(t *testing.T) {
	const token = "hf_verysecret_0123456789"
	res := mustMake(t, host(gpu(0, "A10G", "8.6", 23028)), plan.Settings{HFToken: token})
	p := res.Plans[0]
	if p.Env["HF_TOKEN"] != token {
		t.Fatalf("the launcher needs the token: Env = %v", p.Env)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), token) {
		t.Errorf("JSON carries the token: %s", b)
	}
	if !strings.Contains(string(b), `"HF_TOKEN":"[redacted]"`) {
		t.Errorf("JSON does not show HF_TOKEN redacted: %s", b)
	}
	for _, v := range res.EnvVars() {
		if strings.Contains(v.Value, token) || v.Key == "HF_TOKEN" {
			t.Errorf("EnvVars writes the token: %v", v)
		}
	}
	if p.Redact().Env["HF_TOKEN"] != plan.Redacted || p.Env["HF_TOKEN"] != token {
		t.Error("Redact changed the original plan or did not redact")
	}
}

func TestHash(t *testing.T) {
	hw := host(gpu(0, "A100", "8.0", 81920), gpu(1, "A100", "8.0", 81920))
	base := mustMake(t, hw, plan.Settings{HFToken: "one"}).Plans[0]
	if base.Hash() != mustMake(t, hw, plan.Settings{HFToken: "one"}).Plans[0].Hash() {
		t.Error("the same plan hashes differently")
	}
	if base.Hash() != mustMake(t, hw, plan.Settings{HFToken: "two"}).Plans[0].Hash() {
		t.Error("rotating HF_TOKEN changes the hash")
	}
	changes := map[string]plan.Settings{
		"arguments": {HFToken: "one", MaxClientBatchSize: 8},
		"image":     {HFToken: "one", TEIVersion: "1.9.2"},
		"GPUs":      {HFToken: "one", Device: "cuda:1"},
		"env keys":  {},
	}
	for what, s := range changes {
		if mustMake(t, hw, s).Plans[0].Hash() == base.Hash() {
			t.Errorf("changing the %s keeps the hash", what)
		}
	}
	var decoded struct {
		Hash string `json:"hash"`
	}
	b, _ := json.Marshal(base)
	if err := json.Unmarshal(b, &decoded); err != nil || decoded.Hash != base.Hash() {
		t.Errorf("JSON hash %q, want %q (%v)", decoded.Hash, base.Hash(), err)
	}
}

func TestAdvice(t *testing.T) {
	noRuntime := host(gpu(0, "A100", "8.0", 81920), gpu(1, "A100", "8.0", 81920), gpu(2, "V100", "7.0", 16160))
	noRuntime.NVIDIARuntime = hwdetect.Fact[bool]{Value: false, Source: "not on PATH"}
	res := mustMake(t, noRuntime, plan.Settings{})
	if !slices.Contains(res.Warnings, "NVIDIA GPUs are present but Docker's NVIDIA runtime was not found: containers cannot use the GPUs") {
		t.Errorf("warnings %q lack the missing runtime", res.Warnings)
	}
	wantRecs := []string{
		"Install the NVIDIA Container Toolkit, then run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`",
		"GPU 2 (V100): compute capability 7.0 is older than Turing (7.5), the oldest TEI 1.9.3 supports: unused",
		"Expected speed: fast (compute 8.0 with flash attention; the plugin measured bge-m3 at ~15 ms a query on an RTX 3090)",
	}
	if !slices.Equal(res.Recommendations, wantRecs) {
		t.Errorf("recommendations\n%q\nwant\n%q", res.Recommendations, wantRecs)
	}
	three := host(gpu(0, "A100", "8.0", 81920), gpu(1, "A100", "8.0", 81920), gpu(2, "A100", "8.0", 81920))
	idle := mustMake(t, three, plan.Settings{EmbeddingReplicas: 1})
	want := "GPU 1 unused: the replica counts asked for (EMBEDDING_REPLICAS, RERANK_REPLICAS, EMBEDDING_DEVICE) leave it idle; leave them unset to use every GPU"
	if !slices.Contains(idle.Recommendations, want) {
		t.Errorf("recommendations %q lack %q", idle.Recommendations, want)
	}
	cpu := mustMake(t, host(), plan.Settings{})
	if len(cpu.Warnings) != 0 || !strings.HasPrefix(cpu.Recommendations[0], "Expected speed: slow (CPU, 8 usable cores") {
		t.Errorf("CPU advice: %q %q", cpu.Warnings, cpu.Recommendations)
	}
}

func TestPluginSettings(t *testing.T) {
	tests := []struct {
		name string
		hw   hwdetect.Hardware
		s    plan.Settings
		want plan.PluginSettings
	}{{
		name: "CUDA defaults, reranker on the second GPU",
		hw:   host(gpu(0, "A100", "8.0", 81920), gpu(1, "A100", "8.0", 81920)),
		want: plan.PluginSettings{
			EmbeddingDevice: "cuda:0", RerankDevice: "cuda:1", EmbeddingModel: "BAAI/bge-m3", RerankModel: "BAAI/bge-reranker-v2-m3",
			Batch: 64, FP16: true, MaxLen: 8192, CacheSize: 2000, RerankEnable: true, RerankK: 10, RerankFinalN: 5,
		},
	}, {
		name: "CPU defaults",
		hw:   host(),
		want: plan.PluginSettings{
			EmbeddingDevice: "cpu", RerankDevice: "cpu", EmbeddingModel: "BAAI/bge-m3", RerankModel: "BAAI/bge-reranker-v2-m3",
			Batch: 16, FP16: false, MaxLen: 4096, CacheSize: 1000, RerankEnable: true, RerankK: 5, RerankFinalN: 3,
		},
	}, {
		name: "user settings win; cache size 0 disables",
		hw:   host(),
		s:    plan.Settings{CacheSize: ptr(0), RerankEnable: ptr(false), EmbeddingModel: "BAAI/bge-small-en-v1.5", MaxLen: 1024},
		want: plan.PluginSettings{
			EmbeddingDevice: "cpu", EmbeddingModel: "BAAI/bge-small-en-v1.5", RerankModel: "BAAI/bge-reranker-v2-m3",
			Batch: 16, FP16: false, MaxLen: 512, CacheSize: 0, RerankEnable: false, RerankK: 5, RerankFinalN: 3,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustMake(t, tt.hw, tt.s).Plugin; got != tt.want {
				t.Errorf("Plugin = %+v\nwant     %+v", got, tt.want)
			}
		})
	}
}

func TestLookupModel(t *testing.T) {
	tests := []struct {
		id      string
		known   bool
		maxLen  int
		paramsM int
	}{
		{"BAAI/bge-m3", true, 8192, 568},
		{"baai/BGE-M3", true, 8192, 568},
		{"BAAI/bge-reranker-v2-m3", true, 8192, 568},
		{"BAAI/bge-small-en-v1.5", true, 512, 33},
		{"BAAI/bge-base-en-v1.5", true, 512, 109},
		{"BAAI/bge-large-en-v1.5", true, 512, 335},
		{"sentence-transformers/all-MiniLM-L6-v2", true, 512, 22},
		{"/data/models/bge-m3/", true, 8192, 568},
		{"intfloat/e5-mistral-7b-instruct", false, 8192, 568},
	}
	for _, tt := range tests {
		m := plan.LookupModel(tt.id)
		if m.Known != tt.known || m.MaxLen != tt.maxLen || m.ParamsM != tt.paramsM || m.ID != tt.id {
			t.Errorf("LookupModel(%q) = %+v", tt.id, m)
		}
	}
}

// TestDigestPinnedCPUImageRunsOnTheCPU is the regression for reading a
// pinned image's tag as the text after its last colon: for a digest-pinned
// CPU image that is the digest, so the CPU image was planned onto GPU 0.
func TestDigestPinnedCPUImageRunsOnTheCPU(t *testing.T) {
	const ref = plan.Registry + ":cpu-1.9.3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	res := mustMake(t, host(gpu(0, "A100", "8.0", 81920)), plan.Settings{Image: ref})
	for _, p := range res.Plans {
		if p.Image != ref || p.Device != "cpu" || len(p.GPUIDs) != 0 || p.DType != "float32" {
			t.Errorf("%s plan: image %s on %s, GPUs %v, dtype %s; want the pinned CPU image on the CPU", p.Name(), p.Image, p.Device, p.GPUIDs, p.DType)
		}
	}
}

// TestRerankerTakesAFreeGPU is the regression for the reranker being given
// the embedding model's GPU while another was free: with the embedding model
// forced onto GPU 1 and the reranker left to choose, it shared GPU 1 and
// left GPU 0 idle.
func TestRerankerTakesAFreeGPU(t *testing.T) {
	three := host(gpu(0, "A100", "8.0", 81920), gpu(1, "A100", "8.0", 81920), gpu(2, "L4", "8.9", 23034))
	tests := []struct {
		name         string
		s            plan.Settings
		emb, rer     []int
		rerWhyPrefix string
	}{
		{"embedding forced to GPU 1, reranker auto", plan.Settings{Device: "cuda:1", RerankDevice: "auto"}, []int{1}, []int{0},
			"GPU 0 (A100, 81920 MiB): the reranker's own GPU"},
		{"embedding forced to GPU 0, reranker cuda", plan.Settings{Device: "cuda:0", RerankDevice: "cuda"}, []int{0}, []int{1},
			"GPU 1 (A100, 81920 MiB): RERANK_DEVICE=cuda; the reranker's own GPU"},
		{"both auto: the reranker takes the weakest, the embedding model the rest", plan.Settings{}, []int{0, 1}, []int{2},
			"GPU 2 (L4, 23034 MiB): the reranker's own GPU"},
		{"one GPU: shared", plan.Settings{Device: "cuda:2"}, []int{2}, []int{2},
			"GPU 2 (L4, 23034 MiB): EMBEDDING_DEVICE=cuda:2; shared with the embedding model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustMake(t, three, tt.s)
			if got := gpusOf(res.Replicas(plan.RoleEmbedding)); !slices.Equal(got, tt.emb) {
				t.Errorf("embedding GPUs %v, want %v", got, tt.emb)
			}
			rer := res.Replicas(plan.RoleRerank)
			if got := gpusOf(rer); !slices.Equal(got, tt.rer) {
				t.Errorf("reranker GPUs %v, want %v", got, tt.rer)
			}
			if why := rer[0].Reasons[0].Why; !strings.HasPrefix(why, tt.rerWhyPrefix) {
				t.Errorf("reranker's GPU reason %q, want it to start %q", why, tt.rerWhyPrefix)
			}
		})
	}
}

// gpusOf lists the plans' GPUs in order.
func gpusOf(plans []plan.Plan) []int {
	var ids []int
	for _, p := range plans {
		ids = append(ids, p.GPUIDs...)
	}
	return ids
}

// TestNativeRouterBindsLoopback is the regression for the native router's
// plan binding 0.0.0.0: the printed command exposed TEI on every interface,
// while the sidecar promises loopback. Images keep 0.0.0.0 inside their own
// network, where Docker publishes the port on loopback.
func TestNativeRouterBindsLoopback(t *testing.T) {
	apple := host()
	apple.OS, apple.Arch = "darwin", "arm64"
	apple.Apple = &hwdetect.Apple{Chip: fact("Apple M2"), UnifiedMemoryBytes: fact(int64(32) << 30)}
	for _, p := range mustMake(t, apple, plan.Settings{}).Plans {
		i := slices.Index(p.Args, "--hostname")
		if i < 0 || p.Args[i+1] != "127.0.0.1" || slices.Contains(p.Args, "0.0.0.0") {
			t.Errorf("%s native args %q: want --hostname 127.0.0.1", p.Name(), p.Args)
		}
	}
	for _, p := range mustMake(t, host(), plan.Settings{}).Plans {
		if i := slices.Index(p.Args, "--hostname"); i < 0 || p.Args[i+1] != "0.0.0.0" {
			t.Errorf("%s image args %q: want --hostname 0.0.0.0 inside the container", p.Name(), p.Args)
		}
	}
}

// TestImpossibleDevicesAreRefused is the regression for two silent
// outcomes of a forced device: EMBEDDING_DEVICE=cuda:0 on a machine without
// GPUs was "trusted" (detect exited 0, where the README promises 2), and a
// pinned CPU image with EMBEDDING_DEVICE=cuda silently gave a CPU plan.
func TestImpossibleDevicesAreRefused(t *testing.T) {
	a100 := host(gpu(0, "A100", "8.0", 81920))
	cpuImage := plan.Registry + ":cpu-1.9.3"
	tests := []struct {
		name string
		hw   hwdetect.Hardware
		s    plan.Settings
		want string
	}{
		{"cuda:0 without GPUs", host(), plan.Settings{Device: "cuda:0"},
			"EMBEDDING_DEVICE=cuda:0, but no NVIDIA GPU was detected (neither nvidia-smi nor the PCI bus shows one): set EMBEDDING_DEVICE=cpu, or auto to let the plan decide"},
		{"cuda without GPUs", host(), plan.Settings{Device: "cuda"},
			"EMBEDDING_DEVICE=cuda, but no NVIDIA GPU was detected (neither nvidia-smi nor the PCI bus shows one): set EMBEDDING_DEVICE=cpu, or auto to let the plan decide"},
		{"RERANK_DEVICE=cuda:0 without GPUs", host(), plan.Settings{RerankDevice: "cuda:0"},
			"RERANK_DEVICE=cuda:0, but no NVIDIA GPU was detected (neither nvidia-smi nor the PCI bus shows one): set RERANK_DEVICE=cpu, or auto to let the plan decide"},
		{"a pinned GPU image does not make cuda:0 work without GPUs", host(), plan.Settings{Device: "cuda:0", Image: plan.Registry + ":89-1.9.3"},
			"EMBEDDING_DEVICE=cuda:0, but no NVIDIA GPU was detected (neither nvidia-smi nor the PCI bus shows one): set EMBEDDING_DEVICE=cpu, or auto to let the plan decide"},
		{"a CPU image with cuda", a100, plan.Settings{Device: "cuda", Image: cpuImage},
			"EMBEDDING_DEVICE=cuda asks for a GPU, but TEI_IMAGE=" + cpuImage + " is a CPU image: pin a CUDA image, or set EMBEDDING_DEVICE=cpu"},
		{"a CPU image with cuda:0, without GPUs", host(), plan.Settings{Device: "cuda:0", Image: cpuImage},
			"EMBEDDING_DEVICE=cuda:0 asks for a GPU, but TEI_IMAGE=" + cpuImage + " is a CPU image: pin a CUDA image, or set EMBEDDING_DEVICE=cpu"},
		{"a CPU reranker image with RERANK_DEVICE=cuda:0", a100, plan.Settings{RerankDevice: "cuda:0", RerankImage: cpuImage},
			"RERANK_DEVICE=cuda:0 asks for a GPU, but TEI_RERANK_IMAGE=" + cpuImage + " is a CPU image: pin a CUDA image, or set RERANK_DEVICE=cpu"},
		{"a CUDA image with cpu", a100, plan.Settings{Device: "cpu", Image: plan.Registry + ":hopper-1.9.3"},
			"EMBEDDING_DEVICE=cpu, but TEI_IMAGE=" + plan.Registry + ":hopper-1.9.3 is a CUDA image: pin a CPU image (" + cpuImage + "), or unset EMBEDDING_DEVICE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := plan.Make(tt.hw, tt.s); err == nil || err.Error() != tt.want {
				t.Errorf("Make() error = %v\nwant %s", err, tt.want)
			}
		})
	}
	// An image the plan cannot read is the user's to answer for.
	res := mustMake(t, a100, plan.Settings{Device: "cpu", Image: "registry.local/tei:custom"})
	if p := res.Plans[0]; p.Device != "cpu" || p.Image != "registry.local/tei:custom" {
		t.Errorf("a custom image forced to the CPU: %s on %s", p.Image, p.Device)
	}
}

// TestPlansPerVersion plans with the image table of the TEI release asked
// for. It is the regression for a planner that knew 1.9.3's table only:
// with TEI_VERSION=1.8.x it picked 100- and 120- tags that did not exist
// before 1.9.0.
func TestPlansPerVersion(t *testing.T) {
	gb10 := host(gpu(0, "NVIDIA GB10", "12.1", 122880))
	gb10.Arch = "arm64"
	tests := []struct {
		name    string
		hw      hwdetect.Hardware
		version string
		image   string // the embedding plan's tag
	}{
		{"1.8.1 on B200: no Blackwell build yet, CPU", host(gpu(0, "B200", "10.0", 183359)), "1.8.1", "cpu-1.8.1"},
		{"1.8.1 on RTX 5090: CPU", host(gpu(0, "RTX 5090", "12.0", 32607)), "1.8.1", "cpu-1.8.1"},
		{"1.8.1 on H100", host(gpu(0, "H100", "9.0", 81559)), "1.8.1", "hopper-1.8.1"},
		{"1.9.0 on B200", host(gpu(0, "B200", "10.0", 183359)), "1.9.0", "100-1.9.0"},
		{"1.9.3 on 12.1 (amd64): its 12.0 build refuses 12.1, CPU", host(gpu(0, "GB10", "12.1", 122880)), "1.9.3", "cpu-1.9.3"},
		{"1.9.3 on GB10 (arm64): CPU, unversioned arm64 image", gb10, "1.9.3", "cpu-arm64-latest"},
		{"1.10.0 on 12.1 (amd64): the 12.0 build runs it", host(gpu(0, "GB10", "12.1", 122880)), "1.10.0", "120-1.10.0"},
		{"1.10.0 on GB10 (arm64): the arm64 12.1 build", gb10, "1.10.0", "121-1.10.0"},
		{"1.10.0 on arm64 without a GPU: the versioned arm64 CPU image", func() hwdetect.Hardware { h := host(); h.Arch = "arm64"; return h }(), "1.10.0", "cpu-arm64-1.10.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustMake(t, tt.hw, plan.Settings{TEIVersion: tt.version, RerankEnable: ptr(false)})
			if got := strings.TrimPrefix(res.Plans[0].Image, plan.Registry+":"); got != tt.image {
				t.Errorf("image %s, want %s (reasons %+v)", got, tt.image, res.Plans[0].Reasons)
			}
		})
	}
	_, err := plan.Make(host(gpu(0, "B200", "10.0", 183359)), plan.Settings{TEIVersion: "1.8.1", Device: "cuda"})
	want := "EMBEDDING_DEVICE=cuda: GPU 0 (B200): no TEI 1.8.1 build runs on compute capability 10.0 (builds beyond 8.x run only on their exact compute capability)"
	if err == nil || err.Error() != want {
		t.Errorf("forcing CUDA on a B200 with 1.8.1: %v, want %q", err, want)
	}
}

// TestDType is the regression for forcing --dtype float16 on every GPU
// plan: TEI refuses float16 for gemma3_text models such as
// google/embeddinggemma-300m ("Gemma3 is only supported in fp32
// precision"), so the plan must pass float32, and for a model whose
// architecture it cannot know it must leave the dtype to TEI, which knows.
func TestDType(t *testing.T) {
	l4 := host(gpu(0, "L4", "8.9", 23034))
	tests := []struct {
		name    string
		hw      hwdetect.Hardware
		s       plan.Settings
		dtype   string // "" : no --dtype
		warning string
	}{
		{"bge-m3 on a GPU: float16", l4, plan.Settings{}, "float16", ""},
		{"EmbeddingGemma on a GPU: float32", l4, plan.Settings{EmbeddingModel: "google/embeddinggemma-300m"}, "float32", ""},
		{"EmbeddingGemma with EMBEDDING_FP16=true: float32, with a warning", l4, plan.Settings{EmbeddingModel: "google/embeddinggemma-300m", FP16: ptr(true)}, "float32",
			"EMBEDDING_FP16=true ignored: TEI runs gemma3_text models (google/embeddinggemma-300m) in float32 only"},
		{"an unknown model on a GPU: TEI decides", l4, plan.Settings{EmbeddingModel: "acme/embedder"}, "", ""},
		{"an unknown model with EMBEDDING_FP16=true: TEI decides", l4, plan.Settings{EmbeddingModel: "acme/embedder", FP16: ptr(true)}, "", ""},
		{"an unknown model with EMBEDDING_FP16=false: float32", l4, plan.Settings{EmbeddingModel: "acme/embedder", FP16: ptr(false)}, "float32", ""},
		{"an unknown model on the CPU: float32", host(), plan.Settings{EmbeddingModel: "acme/embedder"}, "float32", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.RerankEnable = ptr(false)
			p := mustMake(t, tt.hw, tt.s).Plans[0]
			i := slices.Index(p.Args, "--dtype")
			switch {
			case p.DType != tt.dtype:
				t.Errorf("DType %q, want %q", p.DType, tt.dtype)
			case tt.dtype == "" && i >= 0:
				t.Errorf("args %q force a dtype", p.Args)
			case tt.dtype != "" && (i < 0 || p.Args[i+1] != tt.dtype):
				t.Errorf("args %q, want --dtype %s", p.Args, tt.dtype)
			}
			if tt.warning != "" && !slices.Contains(p.Warnings, tt.warning) {
				t.Errorf("warnings %q lack %q", p.Warnings, tt.warning)
			}
			r := reasonOf(t, p, "dtype")
			if tt.dtype == "" && (r.Choice != "TEI's choice" || !strings.Contains(r.Why, "architecture is unknown")) {
				t.Errorf("dtype reason %+v does not say why TEI decides", r)
			}
		})
	}
}

// reasonOf is the plan's reason for field.
func reasonOf(t *testing.T, p plan.Plan, field string) plan.Reason {
	t.Helper()
	for _, r := range p.Reasons {
		if r.Field == field {
			return r
		}
	}
	t.Fatalf("%s plan gives no %s reason: %+v", p.Name(), field, p.Reasons)
	return plan.Reason{}
}

// TestClientBatchIsNotEmbeddingBatch is the regression for EMBEDDING_BATCH
// sizing TEI: tune writes EMBEDDING_BATCH, the next plan made it TEI's
// --max-client-batch-size, and a later tune, bounded by that, could never
// recommend more. TEI's limit is TEI_MAX_CLIENT_BATCH_SIZE now; the
// plugin's batch goes to the plugin only.
func TestClientBatchIsNotEmbeddingBatch(t *testing.T) {
	a100 := host(gpu(0, "A100", "8.0", 81920))
	tuned := mustMake(t, a100, plan.Settings{Batch: 256})
	emb, _ := tuned.Plan(plan.RoleEmbedding)
	if emb.MaxClientBatchSize != 64 || tuned.Plugin.Batch != 256 {
		t.Errorf("EMBEDDING_BATCH=256: TEI's client batch %d (want 64), the plugin's %d (want 256)", emb.MaxClientBatchSize, tuned.Plugin.Batch)
	}
	if r := reasonOf(t, emb, "max_client_batch_size"); !strings.Contains(r.Why, "EMBEDDING_BATCH=256 goes to TEI in batches of 64") {
		t.Errorf("reason %q does not say how the plugin's batch is split", r.Why)
	}
	raised := mustMake(t, a100, plan.Settings{MaxClientBatchSize: 512})
	for _, p := range raised.Plans {
		if p.MaxClientBatchSize != 512 || !slices.Contains(p.Args, "512") {
			t.Errorf("%s: TEI_MAX_CLIENT_BATCH_SIZE=512 gives %d (%q)", p.Name(), p.MaxClientBatchSize, p.Args)
		}
	}
	if raised.Plugin.Batch != 64 {
		t.Errorf("TEI_MAX_CLIENT_BATCH_SIZE changed the plugin's EMBEDDING_BATCH to %d", raised.Plugin.Batch)
	}
	if v := envValue(raised.EnvVars(), "EMBEDDING_BATCH"); v != "64" {
		t.Errorf("EMBEDDING_BATCH written as %q, want the plugin's 64", v)
	}
}

func envValue(vars []plan.EnvVar, key string) string {
	for _, v := range vars {
		if v.Key == key {
			return v.Value
		}
	}
	return ""
}
