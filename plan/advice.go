package plan

import (
	"fmt"
	"slices"
	"strings"
)

// platformSummary describes the hardware in one line.
func (m *maker) platformSummary() string {
	hw := m.hw
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s", hw.OS, hw.Arch)
	switch {
	case hw.Apple != nil:
		fmt.Fprintf(&b, ", %s", or(hw.Apple.Chip.Value, "Apple Silicon"))
		if hw.Apple.UnifiedMemoryBytes.Known() {
			fmt.Fprintf(&b, " with %d MiB unified memory", hw.Apple.UnifiedMemoryBytes.Value>>20)
		}
	case len(hw.GPUs) == 0:
		b.WriteString(", CPU only")
	default:
		parts := make([]string, len(hw.GPUs))
		for i, g := range hw.GPUs {
			parts[i] = fmt.Sprintf("GPU %d %s (compute %s, %s)", g.Index, g.Name.Value, or(g.ComputeCap.Value, "unknown"), describeMemory(g.MemoryMiB))
		}
		fmt.Fprintf(&b, ", %s", strings.Join(parts, "; "))
	}
	cpu := hw.CPU
	fmt.Fprintf(&b, "; CPU %s", or(cpu.Model.Value, "unknown"))
	if cpu.UsableCores.Known() {
		fmt.Fprintf(&b, ", %d usable cores", cpu.UsableCores.Value)
		if cpu.LogicalCores.Known() && cpu.LogicalCores.Value != cpu.UsableCores.Value {
			fmt.Fprintf(&b, " of %d", cpu.LogicalCores.Value)
		}
	}
	if mem := hw.Memory.UsableBytes(); mem > 0 && hw.Apple == nil {
		fmt.Fprintf(&b, ", %d MiB memory", mem>>20)
		if hw.Memory.LimitBytes.Known() {
			b.WriteString(" (cgroup limit)")
		}
	}
	if hw.Container.InContainer {
		b.WriteString("; in a container")
	}
	return b.String()
}

// advice gathers the warnings and recommendations that concern the whole
// result rather than one plan.
func (m *maker) advice(res Result) (warnings, recs []string) {
	warnings, recs = append([]string{}, m.warnings...), []string{}
	hw := m.hw
	var used []int
	cuda, metal := false, false
	for _, p := range res.Plans {
		used = append(used, p.GPUIDs...)
		cuda = cuda || len(p.GPUIDs) > 0
		metal = metal || p.Backend == BackendNative
	}

	if cuda {
		switch rt := hw.NVIDIARuntime; {
		case rt.Known() && !rt.Value:
			warnings = append(warnings, "NVIDIA GPUs are present but Docker's NVIDIA runtime was not found: containers cannot use the GPUs")
			recs = append(recs, "Install the NVIDIA Container Toolkit, then run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`")
		case !rt.Known():
			recs = append(recs, "Make sure the Docker host has the NVIDIA Container Toolkit, so TEI's containers get the GPUs")
		}
	}
	if metal {
		recs = append(recs, "Install TEI natively on Apple Silicon: `brew install text-embeddings-inference` (it provides text-embeddings-router)")
	}
	if hw.Apple != nil && hw.Apple.Rosetta {
		recs = append(recs, "This tei-sidecar is an amd64 build running under Rosetta: use the arm64 build")
	}

	if cuda {
		recs = append(recs, m.unusedGPUs(used)...)
	}

	if emb, ok := res.Plan(RoleEmbedding); ok {
		recs = append(recs, m.speed(emb))
		if emb.Device == "cpu" && LookupModel(emb.Model).ParamsM > 200 {
			recs = append(recs, "On CPU a small model is far faster: BAAI/bge-small-en-v1.5 (33M parameters, 384 dimensions) runs about 15 times quicker than bge-m3, at lower quality and English only; changing models means re-embedding your documents")
		}
	}
	return warnings, recs
}

// speed names the expected speed class of the embedding plan, with the
// plugin's published figures for bge-m3 as yardsticks.
func (m *maker) speed(p Plan) string {
	const yard = "the plugin measured bge-m3 at"
	switch {
	case p.Backend == BackendNative:
		return fmt.Sprintf("Expected speed: moderate (Apple Metal; %s ~50 ms a query on an M1, faster on Pro/Max chips)", yard)
	case len(p.GPUIDs) > 0:
		cc := ""
		for _, g := range m.hw.GPUs {
			if g.Index == p.GPUIDs[0] {
				cc = g.ComputeCap.Value
			}
		}
		n, err := ccNumber(cc)
		switch {
		case err != nil:
			return "Expected speed: fast, depending on the GPU (compute capability unknown)"
		case n >= 90:
			return fmt.Sprintf("Expected speed: very fast (datacenter GPU, compute %s; %s ~15 ms a query on an RTX 3090, and this is faster)", cc, yard)
		case n >= 80:
			return fmt.Sprintf("Expected speed: fast (compute %s with flash attention; %s ~15 ms a query on an RTX 3090)", cc, yard)
		default:
			return "Expected speed: moderate (Turing runs without flash attention; between the plugin's bge-m3 figures of ~15 ms a query on an RTX 3090 and ~250 ms on CPU)"
		}
	}
	cores := m.hw.CPU.UsableCores.Value
	extra := ""
	if m.hw.CPU.HasFeature("avx512f") {
		extra = "; AVX-512 helps"
	}
	return fmt.Sprintf("Expected speed: slow (CPU, %d usable cores%s; %s ~250 ms a query on CPU)", cores, extra, yard)
}

// unusedGPUs explains each GPU no plan uses: one TEI cannot run on it, or
// the replica counts asked for leave it idle.
func (m *maker) unusedGPUs(used []int) []string {
	_, rejected := m.rankGPUs(false)
	var idle, recs []string
	for _, g := range m.hw.GPUs {
		if slices.Contains(used, g.Index) {
			continue
		}
		prefix := fmt.Sprintf("GPU %d (%s): ", g.Index, g.Name.Value)
		if i := slices.IndexFunc(rejected, func(r string) bool { return strings.HasPrefix(r, prefix) }); i >= 0 {
			recs = append(recs, rejected[i]+": unused")
			continue
		}
		idle = append(idle, itoa(g.Index))
	}
	if len(idle) > 0 {
		recs = append(recs, fmt.Sprintf("GPU %s unused: the replica counts asked for (EMBEDDING_REPLICAS, RERANK_REPLICAS, EMBEDDING_DEVICE) leave it idle; leave them unset to use every GPU", strings.Join(idle, ", ")))
	}
	return recs
}
