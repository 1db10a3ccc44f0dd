package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
)

// plan builds one replica's plan: TEI's arguments and environment on its
// target.
func (m *maker) plan(r replica) Plan {
	role, t := r.role, r.target
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
		Replica:  r.index,
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
	reason("replica", fmt.Sprintf("%d of %d", r.index, r.count), r.countWhy)

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

	dtypeBytes := m.dtype(&p, t, model, reason)

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

	// Memory and batch tokens.
	b := m.budget(t, model, dtypeBytes, r.sharers)
	b.floor = p.MaxInputLength
	p.MemoryBudgetMiB = max(b.shareMiB, 0)
	reason("memory_budget", b.choice(), b.why())
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
		tokens, why, warning := b.size()
		p.MaxBatchTokens = tokens
		reason("max_batch_tokens", itoa(tokens), why)
		if warning != "" {
			p.Warnings = append(p.Warnings, warning)
		}
	}

	// Client batch size: TEI's own limit, apart from the plugin's batch.
	batch, batchWhy := m.s.MaxClientBatchSize, "TEI_MAX_CLIENT_BATCH_SIZE"
	if batch == 0 {
		batch = defs.Batch
		batchWhy = fmt.Sprintf("the %s default (the plugin's default EMBEDDING_BATCH); TEI_MAX_CLIENT_BATCH_SIZE changes it, EMBEDDING_BATCH does not", t.platform())
	}
	if role == RoleRerank {
		if k := cmp.Or(m.s.RerankK, defs.RerankK); k > batch {
			batch, batchWhy = k, "RERANK_K: every candidate goes in one rerank call"
		}
	}
	p.MaxClientBatchSize = batch
	batchWhy += "; the sidecar splits larger batches"
	if role == RoleEmbedding && m.s.Batch > batch {
		batchWhy += fmt.Sprintf(", so the plugin's EMBEDDING_BATCH=%d goes to TEI in batches of %d", m.s.Batch, batch)
	}
	reason("max_client_batch_size", itoa(batch), batchWhy)

	p.MaxConcurrentRequests = cmp.Or(m.s.MaxConcurrentRequests, DefaultMaxConcurrentRequests)
	if m.s.MaxConcurrentRequests > 0 {
		reason("max_concurrent_requests", itoa(p.MaxConcurrentRequests), "MAX_CONCURRENT_REQUESTS")
	} else {
		reason("max_concurrent_requests", itoa(p.MaxConcurrentRequests), "TEI's default; admission counts inputs, and 429s beyond it are back-pressure the sidecar retries")
	}

	// CPU: a role's replicas serve calls at the same time, so they split
	// the cores; embed and rerank calls of a query run one after the
	// other, so the roles need not.
	cpu := m.hw.CPU.UsableCores
	cores := cpu.Value
	share, shareWhy := cores, fmt.Sprintf("the %d usable cores (from %s)", cores, cpu.Source)
	if cores > 0 && r.count > 1 {
		share = max(cores/r.count, 1)
		shareWhy = fmt.Sprintf("%d of the %d usable cores (from %s), split between the %d %s replicas", share, cores, cpu.Source, r.count, role.noun())
	}
	workers, workersWhy := tokenizationWorkers(t.kind, share, shareWhy)
	if cpu.Source == hwdetect.SourceCgroup {
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
	if p.Backend == BackendNative && r.nativeOrdinal > 0 {
		p.Port += r.nativeOrdinal
		portWhy = fmt.Sprintf("%d ports after the first native router's %d (%s): native routers share this machine's network", r.nativeOrdinal, p.Port-r.nativeOrdinal, portWhy)
	}
	reason("port", itoa(p.Port), portWhy)

	// Environment.
	p.Env["AUTO_TRUNCATE"] = "true"
	reason("AUTO_TRUNCATE", "true", "inputs over the limit are cut, not refused; given as the variable, which TEI reads the same whether its --auto-truncate flag is a switch (before 1.9) or takes a value")
	if t.kind == kindCPU {
		if share > 0 {
			p.Env["RAYON_NUM_THREADS"] = itoa(share)
			why := shareWhy + " instead of the image's fixed 8; a query's embed and rerank calls run one after the other, so each model may use them all"
			reason("RAYON_NUM_THREADS", itoa(share), why)
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
	if p.DType != "" {
		args = append(args, "--dtype", p.DType)
	}
	hostname, hostnameWhy := "0.0.0.0", "explicit: TEI reads the HOSTNAME variable as --hostname, and Docker sets it to the container id"
	if p.Backend == BackendNative {
		hostname, hostnameWhy = "127.0.0.1", "loopback only: the native router shares this machine's network, and only the sidecar should reach it"
	}
	args = append(args,
		"--max-batch-tokens", itoa(p.MaxBatchTokens),
		"--max-client-batch-size", itoa(p.MaxClientBatchSize),
		"--max-concurrent-requests", itoa(p.MaxConcurrentRequests),
		"--tokenization-workers", itoa(p.TokenizationWorkers),
		"--hostname", hostname,
		"--port", itoa(p.Port),
		"--json-output",
	)
	reason("hostname", hostname, hostnameWhy)
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

// dtype sets p.DType (empty: no --dtype, TEI decides) with its reason and
// returns the bytes per value that memory is sized for.
func (m *maker) dtype(p *Plan, t target, model Model, reason func(field, choice, why string)) int {
	fp16 := m.s.FP16
	switch {
	case t.kind == kindCPU:
		p.DType = "float32"
		if fp16 != nil && *fp16 {
			p.Warnings = append(p.Warnings, "EMBEDDING_FP16=true ignored: TEI's CPU backends run float32 only")
		}
		reason("dtype", p.DType, "TEI's CPU backends run float32")
	case model.Float32Only():
		p.DType = "float32"
		if fp16 != nil && *fp16 {
			p.Warnings = append(p.Warnings, fmt.Sprintf("EMBEDDING_FP16=true ignored: TEI runs %s models (%s) in float32 only", model.Arch, model.ID))
		}
		reason("dtype", p.DType, fmt.Sprintf("TEI runs %s models in float32 only: it refuses float16 for them", model.Arch))
	case fp16 != nil && !*fp16:
		p.DType = "float32"
		reason("dtype", p.DType, "EMBEDDING_FP16=false")
	case model.Arch == "":
		p.DType = ""
		reason("dtype", "TEI's choice", "the model's architecture is unknown to the plan, so no --dtype: TEI picks float16 on CUDA and Metal except for the architectures it keeps at float32 (gemma3_text), for which a forced float16 would fail; memory is sized for float16")
	default:
		p.DType = "float16"
		reason("dtype", p.DType, "half precision: TEI's default on CUDA and Metal, about twice as fast with practically the same embeddings")
	}
	if p.DType == "float32" {
		return 4
	}
	return 2
}

// budget describes the memory one TEI may use on t; sharers name the TEIs
// on the same memory, itself included.
func (m *maker) budget(t target, model Model, dtypeBytes int, sharers []string) budget {
	sharing := int64(max(len(sharers), 1))
	b := budget{model: model, dtypeBytes: dtypeBytes, ceiling: teiDefaultBatchTokens}
	switch t.kind {
	case kindCUDA:
		b.where = fmt.Sprintf("GPU %d's memory", t.gpuIndex)
		if t.gpu != nil && t.gpu.MemoryMiB.Known() {
			mem := t.gpu.MemoryMiB.Value
			b.where = fmt.Sprintf("GPU %d's %d MiB", t.gpuIndex, mem)
			b.rule = fmt.Sprintf("%d %% of it less %d MiB for the CUDA context", gpuUsablePercent, gpuReserveMiB)
			b.shareMiB = (mem*gpuUsablePercent/100 - gpuReserveMiB) / sharing
			b.ceiling = gpuCeiling(b.shareMiB)
		}
		// Flash attention needs compute capability 8.0 and float16; an
		// unknown compute capability is assumed to have none.
		n, err := ccNumber(t.ccValue())
		b.quadratic = err != nil || n < 80 || dtypeBytes == 4
	case kindMetal:
		b.where = "unified memory"
		b.quadratic = true
		if a := m.hw.Apple; a != nil && a.UnifiedMemoryBytes.Known() {
			mem := a.UnifiedMemoryBytes.Value >> 20
			b.where = fmt.Sprintf("%d MiB of unified memory", mem)
			b.rule = fmt.Sprintf("%d %% of it less %d MiB for macOS and apps", appleUsablePercent, appleReserveMiB)
			b.shareMiB = (mem*appleUsablePercent/100 - appleReserveMiB) / sharing
		}
	default:
		b.where = "main memory"
		b.quadratic = true
		if mem := m.hw.Memory.UsableBytes() >> 20; mem > 0 {
			b.where = fmt.Sprintf("%d MiB of main memory", mem)
			b.rule = fmt.Sprintf("%d %% of it, leaving room for the datastore and the plugin", cpuUsablePercent)
			b.shareMiB = mem * cpuUsablePercent / 100 / sharing
		}
	}
	if sharing > 1 {
		b.where += fmt.Sprintf(" (shared by %d TEIs)", sharing)
		b.sharers = sharers
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
// every core of the host, from the cores this TEI may use (coresWhy says
// which). On GPU and Metal, tokenizing feeds the accelerator, so it gets
// half of them (1–8); on CPU the model needs the cores, so it gets a
// quarter (1–4).
func tokenizationWorkers(kind string, cores int, coresWhy string) (int, string) {
	if cores <= 0 {
		return 1, "usable cores unknown"
	}
	if kind == kindCPU {
		return min(max(cores/4, 1), 4), fmt.Sprintf("a quarter (1–4) of %s: inference needs the rest", coresWhy)
	}
	return min(max(cores/2, 1), 8), fmt.Sprintf("half (1–8) of %s, to keep the accelerator fed", coresWhy)
}

// pluginSettings fills the plugin's .env values from the plans.
func (m *maker) pluginSettings(res Result) PluginSettings {
	emb, _ := res.Plan(RoleEmbedding)
	plat := platformCPU
	switch {
	case emb.Backend == BackendNative:
		plat = platformApple
	case len(emb.GPUIDs) > 0:
		plat = platformCUDA
	}
	defs := defaultsFor[plat]
	ps := PluginSettings{
		EmbeddingDevice: emb.Device,
		EmbeddingModel:  m.s.embeddingModel(),
		RerankModel:     m.s.rerankModel(),
		Batch:           cmp.Or(m.s.Batch, defs.Batch),
		// The plugin's own default when TEI decides the dtype.
		FP16:         emb.DType == "float16" || (emb.DType == "" && (m.s.FP16 == nil || *m.s.FP16)),
		CacheSize:    defs.CacheSize,
		RerankEnable: m.s.rerankEnabled(),
		RerankK:      cmp.Or(m.s.RerankK, defs.RerankK),
		RerankFinalN: cmp.Or(m.s.RerankFinalN, defs.RerankFinalN),
	}
	ps.RerankFinalN = min(ps.RerankFinalN, ps.RerankK)
	if m.s.CacheSize != nil {
		ps.CacheSize = *m.s.CacheSize
	}
	ps.MaxLen = cmp.Or(m.s.MaxLen, defs.MaxLen)
	if model := LookupModel(ps.EmbeddingModel); model.Known {
		ps.MaxLen = min(ps.MaxLen, model.MaxLen)
	}
	if rer, ok := res.Plan(RoleRerank); ok {
		ps.RerankDevice = rer.Device
	}
	return ps
}
