package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
)

// Target kinds: where a model runs.
const (
	kindCPU   = "cpu"
	kindCUDA  = "cuda"
	kindMetal = "metal"
)

// target is where one model runs and the image that runs it.
type target struct {
	kind string
	// gpu is the detected GPU for kindCUDA; nil when CUDA was forced (or an
	// image pinned) without a detected GPU, at gpuIndex.
	gpu      *hwdetect.GPU
	gpuIndex int
	image    string
	// reasons and warnings gathered while choosing.
	reasons  []Reason
	warnings []string
}

func (t target) device() string {
	switch t.kind {
	case kindCUDA:
		return "cuda:" + itoa(t.gpuIndex)
	case kindMetal:
		return "mps"
	}
	return "cpu"
}

func (t target) platform() platform {
	switch t.kind {
	case kindCUDA:
		return platformCUDA
	case kindMetal:
		return platformApple
	}
	return platformCPU
}

// sameDevice reports whether two targets share memory.
func (t target) sameDevice(o target) bool {
	return t.kind == o.kind && (t.kind != kindCUDA || t.gpuIndex == o.gpuIndex)
}

// maker holds one Make call's inputs.
type maker struct {
	hw      hwdetect.Hardware
	s       Settings
	version string
}

// Make plans TEI for the hardware and settings. It fails on invalid settings
// and on a forced device that cannot work (EMBEDDING_DEVICE=mps off Apple
// Silicon, cuda:N for a missing GPU, CUDA on a GPU no TEI build runs on).
func Make(hw hwdetect.Hardware, s Settings) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, err
	}
	m := &maker{hw: applyComputeCap(hw, s.ComputeCap), s: s, version: s.teiVersion()}

	emb, err := m.target(RoleEmbedding, parseDevice(s.Device), "EMBEDDING_DEVICE", nil)
	if err != nil {
		return Result{}, err
	}
	targets := []target{emb}
	if s.rerankEnabled() {
		dev, envName := parseDevice(s.RerankDevice), "RERANK_DEVICE"
		if s.RerankDevice == "" {
			dev, envName = parseDevice(s.Device), "EMBEDDING_DEVICE"
		}
		rer, err := m.target(RoleRerank, dev, envName, &emb)
		if err != nil {
			return Result{}, err
		}
		targets = append(targets, rer)
	}

	res := Result{Device: emb.device(), Platform: m.platformSummary(), TEIVersion: m.version}
	roles := []Role{RoleEmbedding, RoleRerank}
	for i, t := range targets {
		sharing := 0
		for _, o := range targets {
			if o.sameDevice(t) {
				sharing++
			}
		}
		res.Plans = append(res.Plans, m.plan(roles[i], t, sharing))
	}
	res.Plugin = m.pluginSettings(targets)
	res.Warnings, res.Recommendations = m.advice(res)
	return res, nil
}

// applyComputeCap returns hw with every GPU's compute capability overridden
// by GPU_COMPUTE_CAP, when set.
func applyComputeCap(hw hwdetect.Hardware, cc string) hwdetect.Hardware {
	if cc == "" {
		return hw
	}
	gpus := slices.Clone(hw.GPUs)
	for i := range gpus {
		gpus[i].ComputeCap = hwdetect.Fact[string]{Value: cc, Source: hwdetect.SourceOverride}
	}
	hw.GPUs = gpus
	return hw
}

// target decides where role runs. dev is the device forced by the setting
// envName; emb is the embedding model's target when role is the reranker.
func (m *maker) target(role Role, dev device, envName string, emb *target) (target, error) {
	pin := m.s.Image
	pinName := "TEI_IMAGE"
	if role == RoleRerank && m.s.RerankImage != "" {
		pin, pinName = m.s.RerankImage, "TEI_RERANK_IMAGE"
	}
	switch dev.kind {
	case "mps":
		if m.hw.Apple == nil {
			return target{}, fmt.Errorf("%s=mps needs Apple Silicon; this machine is %s/%s", envName, m.hw.OS, m.hw.Arch)
		}
		return m.metalTarget(envName + "=mps"), nil
	case "cpu":
		return m.cpuTarget(envName+"=cpu forces the CPU", pin, pinName), nil
	case "cuda":
		gpu, idx, why, err := m.forcedGPU(role, dev, emb, envName)
		if err != nil {
			return target{}, err
		}
		return m.cudaTarget(gpu, idx, why, pin, pinName, envName)
	}

	// auto
	if pin != "" && isCPUImage(pin) {
		return m.cpuTarget(pinName+" names a CPU image", pin, pinName), nil
	}
	if pin == "" && m.hw.Apple != nil {
		return m.metalTarget("Apple Silicon: TEI runs natively on Metal; Docker cannot reach the GPU"), nil
	}
	if role == RoleRerank && emb != nil && emb.kind == kindCPU && pin == "" {
		return m.cpuTarget("as the embedding model: no GPU TEI can use", pin, pinName), nil
	}
	ranked, rejected := m.rankGPUs(pin != "")
	if len(ranked) == 0 {
		if pin != "" {
			// A pinned GPU image is trusted without a detected GPU.
			return m.cudaTarget(nil, 0, pinName+" names a GPU image; no GPU was detected, so GPU 0 is assumed", pin, pinName, "")
		}
		return m.cpuTarget(m.noGPUWhy(rejected), "", pinName), nil
	}
	pick, why := ranked[0], m.gpuWhy(ranked[0], "the best GPU TEI can use")
	if role == RoleRerank && emb != nil {
		if len(ranked) > 1 && emb.kind == kindCUDA && ranked[0].Index == emb.gpuIndex {
			pick, why = ranked[1], m.gpuWhy(ranked[1], "the second GPU, so embedding and reranking do not compete (TEI uses one GPU per process)")
		} else if emb.kind == kindCUDA {
			for _, g := range ranked {
				if g.Index == emb.gpuIndex {
					pick, why = g, m.gpuWhy(g, "shared with the embedding model: the only GPU TEI can use")
				}
			}
		}
	}
	return m.cudaTarget(&pick, pick.Index, why, pin, pinName, "")
}

// forcedGPU resolves EMBEDDING_DEVICE=cuda or cuda:N.
func (m *maker) forcedGPU(role Role, dev device, emb *target, envName string) (*hwdetect.GPU, int, string, error) {
	gpus := m.hw.GPUs
	if dev.index >= 0 {
		for i := range gpus {
			if gpus[i].Index == dev.index {
				return &gpus[i], dev.index, fmt.Sprintf("%s=cuda:%d", envName, dev.index), nil
			}
		}
		if len(gpus) > 0 {
			return nil, 0, "", fmt.Errorf("%s=cuda:%d, but the detected GPUs are %s", envName, dev.index, gpuIndexes(gpus))
		}
		return nil, dev.index, fmt.Sprintf("%s=cuda:%d; no GPU was detected, so it is trusted", envName, dev.index), nil
	}
	pinned := m.s.Image != "" || (role == RoleRerank && m.s.RerankImage != "")
	ranked, _ := m.rankGPUs(pinned)
	if len(ranked) == 0 {
		if len(gpus) > 0 {
			// Let cudaTarget explain why the first GPU cannot run TEI.
			return &gpus[0], gpus[0].Index, envName + "=cuda", nil
		}
		return nil, 0, envName + "=cuda; no GPU was detected, so GPU 0 is assumed", nil
	}
	pick := ranked[0]
	if role == RoleRerank && emb != nil && len(ranked) > 1 && ranked[0].Index == emb.gpuIndex {
		pick = ranked[1]
	}
	return &pick, pick.Index, m.gpuWhy(pick, envName+"=cuda"), nil
}

// rankGPUs orders the GPUs TEI can use, best first: a known build before an
// unknown compute capability, then more memory, newer architecture, lower
// index. rejected explains each GPU left out. With a pinned image every GPU
// is a candidate: the user brings the build.
func (m *maker) rankGPUs(pinned bool) (ranked []hwdetect.GPU, rejected []string) {
	for _, g := range m.hw.GPUs {
		switch {
		case pinned:
			ranked = append(ranked, g)
		case m.hw.Arch != "amd64":
			rejected = append(rejected, fmt.Sprintf("GPU %d (%s): TEI %s publishes CUDA images for linux/amd64 only", g.Index, g.Name.Value, m.version))
		case !g.ComputeCap.Known():
			ranked = append(ranked, g)
		default:
			if _, ok := buildFor(g.ComputeCap.Value); ok {
				ranked = append(ranked, g)
			} else {
				rejected = append(rejected, fmt.Sprintf("GPU %d (%s): %s", g.Index, g.Name.Value, noBuildWhy(g.ComputeCap.Value, m.version)))
			}
		}
	}
	slices.SortStableFunc(ranked, func(a, b hwdetect.GPU) int {
		if c := cmp.Compare(boolInt(b.ComputeCap.Known()), boolInt(a.ComputeCap.Known())); c != 0 {
			return c
		}
		if c := cmp.Compare(b.MemoryMiB.Value, a.MemoryMiB.Value); c != 0 {
			return c
		}
		an, _ := ccNumber(a.ComputeCap.Value)
		bn, _ := ccNumber(b.ComputeCap.Value)
		if c := cmp.Compare(bn, an); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
	})
	return ranked, rejected
}

// noBuildWhy says why no TEI build runs on compute capability cc.
func noBuildWhy(cc, version string) string {
	if n, err := ccNumber(cc); err == nil && n < 75 {
		return fmt.Sprintf("compute capability %s is older than Turing (7.5), the oldest TEI %s supports", cc, version)
	}
	return fmt.Sprintf("no TEI %s build runs on compute capability %s (builds beyond 8.x run only on their exact compute capability)", version, cc)
}

func (m *maker) noGPUWhy(rejected []string) string {
	if len(rejected) == 0 {
		return "no NVIDIA GPU detected"
	}
	return strings.Join(rejected, "; ") + ": running on the CPU instead"
}

func (m *maker) gpuWhy(g hwdetect.GPU, role string) string {
	return fmt.Sprintf("GPU %d (%s, %s): %s", g.Index, g.Name.Value, describeMemory(g.MemoryMiB), role)
}

func describeMemory(f hwdetect.Fact[int64]) string {
	if !f.Known() {
		return "memory unknown"
	}
	return fmt.Sprintf("%d MiB", f.Value)
}

func (m *maker) metalTarget(why string) target {
	return target{kind: kindMetal, reasons: []Reason{
		{"backend", string(BackendNative), why},
		{"binary", Binary, "TEI's native router built with Metal: brew install text-embeddings-inference"},
	}}
}

// cpuTarget runs on the CPU image for this architecture.
func (m *maker) cpuTarget(why, pin, pinName string) target {
	t := target{kind: kindCPU, reasons: []Reason{{"device", "cpu", why}}}
	if pin != "" {
		t.image = pin
		t.reasons = append(t.reasons, Reason{"image", pin, "pinned by " + pinName})
		return t
	}
	arch := m.hw.Arch
	if m.hw.OS == "darwin" && m.hw.Apple != nil {
		arch = "arm64"
		t.warnings = append(t.warnings, "Docker on macOS runs TEI in a Linux VM without Metal: expect CPU speed; EMBEDDING_DEVICE=mps runs it natively on the GPU")
	}
	ref, pinned := cpuImage(arch, m.version)
	t.image = ref
	if !pinned {
		t.reasons = append(t.reasons, Reason{"image", ref, fmt.Sprintf("arm64 CPU: TEI %s has no versioned arm64 image; cpu-arm64-latest is the tag that exists", m.version)})
		t.warnings = append(t.warnings, fmt.Sprintf("%s follows TEI's main branch, not release %s: pin TEI_IMAGE to a digest once it works for you", ref, m.version))
		return t
	}
	t.reasons = append(t.reasons, Reason{"image", ref, fmt.Sprintf("TEI %s's %s CPU image", m.version, arch)})
	return t
}

// cudaTarget runs on gpu (nil when not detected) at index. forcedBy names
// the setting that forced CUDA, if any; "no build runs here" is then an error
// rather than a fallback (auto never picks such a GPU).
func (m *maker) cudaTarget(gpu *hwdetect.GPU, index int, why, pin, pinName, forcedBy string) (target, error) {
	t := target{kind: kindCUDA, gpu: gpu, gpuIndex: index, reasons: []Reason{{"gpu", itoa(index), why}}}
	if pin != "" {
		if isCPUImage(pin) {
			return m.cpuTarget(pinName+" names a CPU image", pin, pinName), nil
		}
		t.image = pin
		t.reasons = append(t.reasons, Reason{"image", pin, "pinned by " + pinName})
		return t, nil
	}
	if forcedBy != "" && m.hw.Arch != "amd64" && m.hw.Arch != "" {
		return target{}, fmt.Errorf("%s=cuda: TEI %s publishes CUDA images for linux/amd64 only, and this machine is %s; set TEI_IMAGE to a CUDA build for it", forcedBy, m.version, m.hw.Arch)
	}
	if gpu == nil || !gpu.ComputeCap.Known() {
		t.image = imageRef("cuda-" + m.version)
		t.reasons = append(t.reasons, Reason{"image", t.image, "compute capability unknown: the all-in-one image picks its build from the GPU at start"})
		t.warnings = append(t.warnings, fmt.Sprintf("GPU %d's compute capability is unknown (no nvidia-smi, device id not in the table): using the all-in-one cuda-%s image; set GPU_COMPUTE_CAP (e.g. 8.6) to pin the exact image", index, m.version))
		return t, nil
	}
	cc := gpu.ComputeCap.Value
	b, ok := buildFor(cc)
	if !ok {
		return target{}, fmt.Errorf("%s=cuda: GPU %d (%s): %s", cmp.Or(forcedBy, "EMBEDDING_DEVICE"), index, gpu.Name.Value, noBuildWhy(cc, m.version))
	}
	t.image = imageRef(b.prefix + m.version)
	rule := "exact match"
	if n, _ := ccNumber(cc); n != b.cc {
		rule = fmt.Sprintf("TEI's rule lets a %d.%d build run on %s", b.cc/10, b.cc%10, cc)
	}
	t.reasons = append(t.reasons, Reason{"image", t.image,
		fmt.Sprintf("compute capability %s (from %s): TEI's %s build, %s", cc, gpu.ComputeCap.Source, b.label, rule)})
	if b.cc == 75 || b.cc >= 100 {
		t.warnings = append(t.warnings, fmt.Sprintf("TEI marks its %s build experimental", b.label))
	}
	return t, nil
}

// plan builds one model's plan on t; sharing counts the models on t's
// memory (itself included).
func (m *maker) plan(role Role, t target, sharing int) Plan {
	modelID, revision := m.s.embeddingModel(), m.s.EmbeddingRevision
	batchOverride := m.s.MaxBatchTokens
	if role == RoleRerank {
		modelID, revision = m.s.rerankModel(), m.s.RerankRevision
		batchOverride = m.s.RerankMaxBatchTokens
	}
	model := LookupModel(modelID)
	defs := defaultsFor[t.platform()]
	p := Plan{
		Role:     role,
		Model:    modelID,
		Revision: revision,
		Env:      map[string]string{},
		GPUIDs:   []int{},
		Device:   t.device(),
		Reasons:  slices.Clone(t.reasons),
		Warnings: append([]string{}, t.warnings...), // [] in JSON, not null
	}
	reason := func(field, choice, why string) {
		p.Reasons = append(p.Reasons, Reason{field, choice, why})
	}

	if t.kind == kindMetal {
		p.Backend, p.Binary = BackendNative, Binary
	} else {
		p.Backend, p.Image = BackendDocker, t.image
		reason("backend", string(BackendDocker), "TEI's images carry the right CUDA or CPU build")
	}
	if t.kind == kindCUDA {
		p.GPUIDs = []int{t.gpuIndex}
	}
	if !model.Known {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s is not in the model table: sized as a 568M-parameter, 8192-token model; check TEI supports it", modelID))
	} else if model.Note != "" {
		reason("model", modelID, model.Note)
	}

	// dtype
	p.DType = "float16"
	switch {
	case t.kind == kindCPU:
		p.DType = "float32"
		if m.s.FP16 != nil && *m.s.FP16 {
			p.Warnings = append(p.Warnings, "EMBEDDING_FP16=true ignored: TEI's CPU backends run float32 only")
		}
		reason("dtype", p.DType, "TEI's CPU backends run float32")
	case m.s.FP16 != nil && !*m.s.FP16:
		p.DType = "float32"
		reason("dtype", p.DType, "EMBEDDING_FP16=false")
	default:
		reason("dtype", p.DType, "half precision: TEI's default on CUDA and Metal, about twice as fast with practically the same embeddings")
	}
	dtypeBytes := 2
	if p.DType == "float32" {
		dtypeBytes = 4
	}

	// Input length.
	want, wantWhy := m.s.MaxLen, "EMBEDDING_MAX_LEN"
	if want == 0 {
		want, wantWhy = defs.MaxLen, fmt.Sprintf("the plugin's %s default", t.platform())
	}
	p.MaxInputLength = want
	if model.Known && want > model.MaxLen {
		p.MaxInputLength = model.MaxLen
		wantWhy += fmt.Sprintf(" (%d) capped at the model's %d", want, model.MaxLen)
	}
	reason("max_input_length", itoa(p.MaxInputLength), wantWhy)

	// Batch tokens.
	if batchOverride > 0 {
		p.MaxBatchTokens = batchOverride
		name := "TEI_MAX_BATCH_TOKENS"
		if role == RoleRerank {
			name = "TEI_RERANK_MAX_BATCH_TOKENS"
		}
		reason("max_batch_tokens", itoa(p.MaxBatchTokens), "set by "+name)
		if batchOverride < p.MaxInputLength {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s=%d is below the %d-token inputs wanted: TEI truncates inputs to it", name, batchOverride, p.MaxInputLength))
		}
	} else {
		b := m.budget(t, model, dtypeBytes, sharing)
		b.floor = p.MaxInputLength
		tokens, why, warning := b.size()
		p.MaxBatchTokens = tokens
		reason("max_batch_tokens", itoa(tokens), why)
		if warning != "" {
			p.Warnings = append(p.Warnings, warning)
		}
	}

	// Client batch size.
	batch, batchWhy := m.s.Batch, "EMBEDDING_BATCH"
	if batch == 0 {
		batch, batchWhy = defs.Batch, fmt.Sprintf("the plugin's %s default EMBEDDING_BATCH", t.platform())
	}
	if role == RoleRerank {
		k := cmp.Or(m.s.RerankK, defs.RerankK)
		if k > batch {
			batch, batchWhy = k, "RERANK_K: every candidate goes in one rerank call"
		}
	}
	p.MaxClientBatchSize = batch
	reason("max_client_batch_size", itoa(batch), batchWhy+"; the sidecar splits larger batches")

	p.MaxConcurrentRequests = cmp.Or(m.s.MaxConcurrentRequests, DefaultMaxConcurrentRequests)
	if m.s.MaxConcurrentRequests > 0 {
		reason("max_concurrent_requests", itoa(p.MaxConcurrentRequests), "MAX_CONCURRENT_REQUESTS")
	} else {
		reason("max_concurrent_requests", itoa(p.MaxConcurrentRequests), "TEI's default; admission counts inputs, and 429s beyond it are back-pressure the sidecar retries")
	}

	cores := m.hw.CPU.UsableCores.Value
	workers, workersWhy := tokenizationWorkers(t.kind, cores)
	if m.hw.CPU.UsableCores.Source == hwdetect.SourceCgroup {
		workersWhy += "; TEI's own default counts the host's cores, not the cgroup quota"
	}
	p.TokenizationWorkers = workers
	reason("tokenization_workers", itoa(workers), workersWhy)

	// Port.
	portWhy := "TEI_PORT"
	p.Port = m.s.Port
	switch {
	case p.Port == 0 && p.Backend == BackendNative:
		p.Port, portWhy = 3000, "the native router's default"
	case p.Port == 0:
		p.Port, portWhy = 80, "the images' PORT; each container has its own network"
	}
	if role == RoleRerank && p.Backend == BackendNative {
		p.Port++
		portWhy = fmt.Sprintf("the port after the embedding router's %d (%s): both native routers share this machine's network", p.Port-1, portWhy)
	}
	reason("port", itoa(p.Port), portWhy)

	// Environment.
	p.Env["AUTO_TRUNCATE"] = "true"
	reason("AUTO_TRUNCATE", "true", "inputs over the limit are cut, not refused; given as the variable, which TEI reads the same whether its --auto-truncate flag is a switch (before 1.9) or takes a value")
	if t.kind == kindCPU {
		if cores > 0 {
			p.Env["RAYON_NUM_THREADS"] = itoa(cores)
			reason("RAYON_NUM_THREADS", itoa(cores), fmt.Sprintf("the usable cores (from %s) instead of the image's fixed 8; a query's embed and rerank calls run one after the other, so each may use all", m.hw.CPU.UsableCores.Source))
		} else {
			reason("RAYON_NUM_THREADS", "8", "usable cores unknown: the image's default")
		}
	}
	if m.s.HFToken != "" {
		p.Env["HF_TOKEN"] = m.s.HFToken
		p.SecretEnv = []string{"HF_TOKEN"}
		reason("HF_TOKEN", Redacted, "passed through for gated or private models; never printed")
	}

	// Arguments.
	args := []string{"--model-id", modelID}
	if revision != "" {
		args = append(args, "--revision", revision)
		reason("revision", revision, "pinned by "+strings.ToUpper(string(role))+"_REVISION")
	}
	args = append(args,
		"--dtype", p.DType,
		"--max-batch-tokens", itoa(p.MaxBatchTokens),
		"--max-client-batch-size", itoa(p.MaxClientBatchSize),
		"--max-concurrent-requests", itoa(p.MaxConcurrentRequests),
		"--tokenization-workers", itoa(p.TokenizationWorkers),
		"--hostname", "0.0.0.0",
		"--port", itoa(p.Port),
		"--json-output",
	)
	reason("hostname", "0.0.0.0", "explicit: TEI reads the HOSTNAME variable as --hostname, and Docker sets it to the container id")
	if p.Backend == BackendDocker {
		reason("json_output", "--json-output", "the images' default CMD, which passing arguments replaces")
	} else {
		reason("json_output", "--json-output", "structured logs, as the images write them")
	}
	if p.Backend == BackendDocker {
		args = append(args, "--huggingface-hub-cache", "/data")
		reason("huggingface_hub_cache", "/data", "the images' cache directory: mount a volume there to keep downloads")
	}
	p.Args = args
	if revision == "" {
		reason("revision", "main", fmt.Sprintf("no %s_REVISION: the Hub's main branch", strings.ToUpper(string(role))))
	}
	return p
}

// budget describes the memory one model may use on t.
func (m *maker) budget(t target, model Model, dtypeBytes, sharing int) budget {
	b := budget{model: model, dtypeBytes: dtypeBytes, ceiling: teiDefaultBatchTokens}
	switch t.kind {
	case kindCUDA:
		b.where = fmt.Sprintf("GPU %d's memory", t.gpuIndex)
		if t.gpu != nil && t.gpu.MemoryMiB.Known() {
			mem := t.gpu.MemoryMiB.Value
			b.where = fmt.Sprintf("GPU %d's %d MiB", t.gpuIndex, mem)
			b.shareMiB = (mem*gpuUsablePercent/100 - gpuReserveMiB) / int64(sharing)
			b.ceiling = gpuCeiling(b.shareMiB)
		}
		n, err := ccNumber(t.ccValue())
		b.quadratic = err != nil || n < 80 // flash attention from 8.0; unknown: assume none
	case kindMetal:
		b.where = "unified memory"
		b.quadratic = true
		if a := m.hw.Apple; a != nil && a.UnifiedMemoryBytes.Known() {
			mem := a.UnifiedMemoryBytes.Value >> 20
			b.where = fmt.Sprintf("%d MiB of unified memory", mem)
			b.shareMiB = (mem*appleUsablePercent/100 - appleReserveMiB) / int64(sharing)
		}
	default:
		b.where = "main memory"
		b.quadratic = true
		if mem := m.hw.Memory.UsableBytes() >> 20; mem > 0 {
			b.where = fmt.Sprintf("%d MiB of main memory", mem)
			b.shareMiB = mem * cpuUsablePercent / 100 / int64(sharing)
		}
	}
	if sharing > 1 {
		b.where += fmt.Sprintf(" (shared by %d models)", sharing)
	}
	return b
}

func (t target) ccValue() string {
	if t.gpu == nil {
		return ""
	}
	return t.gpu.ComputeCap.Value
}

// tokenizationWorkers sizes TEI's tokenizer pool, which by default takes
// every core of the host. On GPU and Metal,
// tokenizing feeds the accelerator, so it gets half the cores (1–8); on CPU
// the model needs the cores, so it gets a quarter (1–4).
func tokenizationWorkers(kind string, cores int) (int, string) {
	if cores <= 0 {
		return 1, "usable cores unknown"
	}
	if kind == kindCPU {
		return min(max(cores/4, 1), 4), fmt.Sprintf("a quarter of the %d usable cores (1–4): inference needs the rest", cores)
	}
	return min(max(cores/2, 1), 8), fmt.Sprintf("half of the %d usable cores (1–8), to keep the accelerator fed", cores)
}

// pluginSettings fills the plugin's .env values from the plans.
func (m *maker) pluginSettings(targets []target) PluginSettings {
	emb := targets[0]
	defs := defaultsFor[emb.platform()]
	ps := PluginSettings{
		EmbeddingDevice: emb.device(),
		EmbeddingModel:  m.s.embeddingModel(),
		RerankModel:     m.s.rerankModel(),
		Batch:           cmp.Or(m.s.Batch, defs.Batch),
		FP16:            emb.kind != kindCPU && (m.s.FP16 == nil || *m.s.FP16),
		CacheSize:       defs.CacheSize,
		RerankEnable:    m.s.rerankEnabled(),
		RerankK:         cmp.Or(m.s.RerankK, defs.RerankK),
		RerankFinalN:    cmp.Or(m.s.RerankFinalN, defs.RerankFinalN),
	}
	ps.RerankFinalN = min(ps.RerankFinalN, ps.RerankK)
	if m.s.CacheSize != nil {
		ps.CacheSize = *m.s.CacheSize
	}
	ps.MaxLen = cmp.Or(m.s.MaxLen, defs.MaxLen)
	if model := LookupModel(ps.EmbeddingModel); model.Known {
		ps.MaxLen = min(ps.MaxLen, model.MaxLen)
	}
	if len(targets) > 1 {
		ps.RerankDevice = targets[1].device()
	}
	return ps
}

func gpuIndexes(gpus []hwdetect.GPU) string {
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = itoa(g.Index)
	}
	return strings.Join(ids, ", ")
}

func itoa(n int) string { return strconv.Itoa(n) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
