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

func TestValidate(t *testing.T) {
	if err := (plan.Settings{}).Validate(); err != nil {
		t.Fatalf("zero settings: %v", err)
	}
	bad := plan.Settings{
		Batch: -1, MaxLen: -2, CacheSize: ptr(-3), RerankK: 3, RerankFinalN: 4,
		Device: "gpu", RerankDevice: "cuda:x", TEIVersion: "latest", Image: "a b",
		RerankImage: "c\td", ComputeCap: "sm_86", Port: 70000, MaxConcurrentRequests: -1,
		MaxBatchTokens: -5, RerankMaxBatchTokens: -6,
	}
	want := strings.Join([]string{
		"EMBEDDING_BATCH must be at least 1, got -1",
		"EMBEDDING_MAX_LEN must be at least 1, got -2",
		"EMBEDDING_CACHE_SIZE must not be negative, got -3",
		"RERANK_FINAL_N (4) must not exceed RERANK_K (3)",
		`EMBEDDING_DEVICE must be auto, cpu, cuda, cuda:N or mps, got "gpu"`,
		`RERANK_DEVICE must be auto, cpu, cuda, cuda:N or mps, got "cuda:x"`,
		`TEI_VERSION must be a release number such as 1.9.3, got "latest"`,
		`TEI_IMAGE must be an image reference without spaces, got "a b"`,
		`TEI_RERANK_IMAGE must be an image reference without spaces, got "c\td"`,
		`GPU_COMPUTE_CAP must look like 8.6, got "sm_86"`,
		"TEI_PORT must be between 1 and 65535, got 70000",
		"MAX_CONCURRENT_REQUESTS must be at least 1, got -1",
		"TEI_MAX_BATCH_TOKENS must be at least 1, got -5",
		"TEI_RERANK_MAX_BATCH_TOKENS must be at least 1, got -6",
	}, "\n")
	err := bad.Validate()
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
	if _, err := plan.Make(host(), bad); err == nil || err.Error() != want {
		t.Errorf("Make did not refuse invalid settings: %v", err)
	}
	neg := plan.Settings{RerankK: -1, RerankFinalN: -1}
	wantNeg := "RERANK_K must be at least 1, got -1\nRERANK_FINAL_N must be at least 1, got -1"
	if err := neg.Validate(); err == nil || err.Error() != wantNeg {
		t.Errorf("Validate() = %v, want %q", err, wantNeg)
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
		{name: "cuda forced with no GPU detected is trusted", hw: host(), s: plan.Settings{Device: "cuda"},
			embDevice: "cuda:0", rerDev: "cuda:0", embImage: "cuda-1.9.3", rerImage: "cuda-1.9.3"},
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
		EmbeddingRevision: "5617a9f61b028005a4858fdac845db406aefb181",
		RerankEnable:      ptr(false),
		Batch:             48,
		Port:              8080,
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
	res := mustMake(t, host(gpu(0, "A100", "8.0", 81920)), plan.Settings{Batch: 8, RerankK: 20, RerankFinalN: 5})
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
		"arguments": {HFToken: "one", Batch: 8},
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
	noRuntime := host(gpu(0, "A100", "8.0", 81920), gpu(1, "A100", "8.0", 81920), gpu(2, "A100", "8.0", 81920))
	noRuntime.NVIDIARuntime = hwdetect.Fact[bool]{Value: false, Source: "not on PATH"}
	res := mustMake(t, noRuntime, plan.Settings{})
	if !slices.Contains(res.Warnings, "NVIDIA GPUs are present but Docker's NVIDIA runtime was not found: containers cannot use the GPUs") {
		t.Errorf("warnings %q lack the missing runtime", res.Warnings)
	}
	wantRecs := []string{
		"Install the NVIDIA Container Toolkit, then run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`",
		"GPU 2 unused: TEI serves one GPU per process, so more replicas would be needed to use them",
		"Expected speed: fast (compute 8.0 with flash attention; the plugin measured bge-m3 at ~15 ms a query on an RTX 3090)",
	}
	if !slices.Equal(res.Recommendations, wantRecs) {
		t.Errorf("recommendations\n%q\nwant\n%q", res.Recommendations, wantRecs)
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
