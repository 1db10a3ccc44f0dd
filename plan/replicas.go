package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// How replicas are counted and placed.
//
// TEI serves one GPU per process, so a pool of TEIs per model is how a plan
// uses every GPU. By default, with two or more GPUs TEI can use, the
// reranker gets one GPU (the last in the ranking, so the best go to the
// embedding model, which sees far more calls) and the embedding model one
// replica on each of the others; with one GPU both share it. CPU and Apple
// get one TEI per model. EMBEDDING_REPLICAS and RERANK_REPLICAS set the
// counts; TEI_REPLICAS_PER_GPU lets several TEIs of one model share a GPU
// (small models on short texts are bound by TEI's CPU side, where
// co-located replicas gave 1.8–2.6× the throughput) and multiplies the
// default counts.
//
// Over-subscription: a role never puts more than TEI_REPLICAS_PER_GPU TEIs
// on one GPU, so asking for more than its GPUs hold is an error. When the
// embedding replicas asked for do not fit on the GPUs the reranker leaves
// free, the rest go onto the reranker's GPUs, sharing their memory, with a
// warning: the two models then compete on those GPUs, which is what one GPU
// does by default anyway.

// replica is one TEI to plan: its role's index-th of count.
type replica struct {
	role         Role
	index, count int
	countWhy     string
	target       target
	// sharers name the TEIs on the same memory, itself included.
	sharers []string
	// nativeOrdinal numbers the native routers, which share the host's
	// ports.
	nativeOrdinal int
}

func (r replica) name() string { return replicaName(r.role, r.index) }

// replicaName is "embed", "embed-1", …, "rerank", "rerank-1", …: replica 0
// keeps the role's plain name, so a one-replica pool is named as before
// replicas existed.
func replicaName(role Role, index int) string {
	name := "embed"
	if role == RoleRerank {
		name = "rerank"
	}
	if index > 0 {
		name += "-" + itoa(index)
	}
	return name
}

// noun is how reasons name a role's model.
func (r Role) noun() string {
	if r == RoleRerank {
		return "reranker"
	}
	return "embedding model"
}

// assign counts each role's replicas and, on CUDA, gives each its GPU. The
// reranker is placed first: the GPUs it takes shape the embedding model's.
func (m *maker) assign(emb, rer *placement) error {
	k := m.s.perGPU()
	onCUDA := func(pl *placement) bool { return pl != nil && pl.kind == kindCUDA }
	if k > 1 && !onCUDA(emb) && !onCUDA(rer) {
		m.warnings = append(m.warnings, fmt.Sprintf("TEI_REPLICAS_PER_GPU=%d ignored: no model runs on a GPU", k))
	}
	var rerGPUs []gpuRef
	if rer != nil {
		if onCUDA(rer) {
			var err error
			if rerGPUs, err = m.assignRerankGPUs(rer, emb); err != nil {
				return err
			}
		} else {
			m.assignHost(rer)
		}
	}
	if onCUDA(emb) {
		if err := m.assignEmbeddingGPUs(emb, rerGPUs, rer); err != nil {
			return err
		}
	} else {
		m.assignHost(emb)
	}
	describeGPUs(emb, rer, k)
	if rer != nil {
		describeGPUs(rer, emb, k)
	}
	return nil
}

// assignHost counts a CPU or Metal role's TEIs, which share the host.
func (m *maker) assignHost(pl *placement) {
	n, name := m.replicasSetting(pl.role)
	pl.count = max(n, 1)
	switch {
	case n > 0:
		pl.countWhy = name
	case pl.kind == kindMetal:
		pl.countWhy = fmt.Sprintf("one native router on Apple Silicon's one GPU; %s runs more, splitting its memory", name)
	default:
		pl.countWhy = fmt.Sprintf("one TEI on the CPU, which uses every core it is given; %s runs more, splitting the cores and memory", name)
	}
}

// assignRerankGPUs places the reranker's replicas and returns its GPUs.
func (m *maker) assignRerankGPUs(rer, emb *placement) ([]gpuRef, error) {
	k := m.s.perGPU()
	n, name := m.replicasSetting(RoleRerank)
	count := cmp.Or(n, k)
	if rer.only != "" {
		if err := m.holdToOne(rer, count, n > 0); err != nil {
			return nil, err
		}
		return rer.gpus[:1], nil
	}
	if count > len(rer.gpus)*k {
		return nil, m.tooMany(name, count, len(rer.gpus))
	}
	need := (count + k - 1) / k
	var chosen []gpuRef
	if emb.kind == kindCUDA && emb.only == "" {
		// Leave the best GPUs to the embedding replicas, which see far
		// more calls: the reranker takes the last in the ranking.
		chosen = rer.gpus[len(rer.gpus)-need:]
	} else {
		// The embedding model is held to one GPU or not on a GPU: the best
		// of the others, then its GPU if there are too few.
		held := func(g gpuRef) bool { return emb.kind == kindCUDA && g.index == emb.gpus[0].index }
		for _, g := range rer.gpus {
			if !held(g) && len(chosen) < need {
				chosen = append(chosen, g)
			}
		}
		for _, g := range rer.gpus {
			if held(g) && len(chosen) < need {
				chosen = append(chosen, g)
			}
		}
	}
	rer.count, rer.slots = count, spread(chosen, count)
	rer.countWhy = name
	if n == 0 {
		rer.countWhy = fmt.Sprintf("one GPU's worth (TEI_REPLICAS_PER_GPU=%d); %s runs more", k, name)
	}
	return chosen, nil
}

// assignEmbeddingGPUs places the embedding replicas: on every GPU the
// reranker (on rerGPUs) leaves free, or on all of them when none is.
func (m *maker) assignEmbeddingGPUs(emb *placement, rerGPUs []gpuRef, rer *placement) error {
	k := m.s.perGPU()
	n, name := m.replicasSetting(RoleEmbedding)
	if emb.only != "" {
		return m.holdToOne(emb, cmp.Or(n, k), n > 0)
	}
	all := emb.gpus
	if n > len(all)*k {
		return m.tooMany(name, n, len(all))
	}
	taken := func(g gpuRef) bool {
		return slices.ContainsFunc(rerGPUs, func(r gpuRef) bool { return r.index == g.index })
	}
	var free, shared []gpuRef
	for _, g := range all {
		if taken(g) {
			shared = append(shared, g)
		} else {
			free = append(free, g)
		}
	}
	perGPU := ""
	if k > 1 {
		perGPU = fmt.Sprintf(" (TEI_REPLICAS_PER_GPU=%d a GPU)", k)
	}
	if len(free) == 0 {
		emb.count = cmp.Or(n, len(all)*k)
		emb.slots = spread(all, emb.count)
		emb.countWhy = fmt.Sprintf("every GPU TEI can use is shared with the reranker: %s on each%s", eachWord(k), perGPU)
		if len(all) == 1 {
			emb.countWhy = fmt.Sprintf("the only GPU TEI can use, shared with the reranker%s", perGPU)
		}
		if n > 0 {
			emb.countWhy = name
		}
		return nil
	}
	emb.count = cmp.Or(n, len(free)*k)
	fit := min(emb.count, len(free)*k)
	emb.slots = append(spread(free, fit), spread(shared, emb.count-fit)...)
	switch {
	case n > 0:
		emb.countWhy = name
	case rer != nil && rer.kind == kindCUDA:
		emb.countWhy = fmt.Sprintf("%s on each of the %d GPUs the reranker leaves free%s", eachWord(k), len(free), perGPU)
	default:
		emb.countWhy = fmt.Sprintf("%s on each of the %d GPUs TEI can use%s", eachWord(k), len(free), perGPU)
	}
	if over := emb.count - fit; over > 0 {
		verb := "go"
		if over == 1 {
			verb = "goes"
		}
		m.warnings = append(m.warnings, fmt.Sprintf("%s=%d does not fit on the %s the reranker leaves free at TEI_REPLICAS_PER_GPU=%d: %s %s on the reranker's GPU %s, competing with it for memory and compute",
			name, n, plural(len(free), "GPU"), k, plural(over, "embedding replica"), verb, refIndexes(shared)))
	}
	return nil
}

// plural is "1 GPU" or "2 GPUs".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return itoa(n) + " " + word + "s"
}

// eachWord is k as a reason says it.
func eachWord(k int) string {
	if k == 1 {
		return "one"
	}
	return itoa(k)
}

// holdToOne places count replicas on a placement held to its one GPU.
func (m *maker) holdToOne(pl *placement, count int, set bool) error {
	k := m.s.perGPU()
	_, name := m.replicasSetting(pl.role)
	if count > k {
		msg := fmt.Sprintf("%s=%d puts %d TEIs on GPU %d (%s), but TEI_REPLICAS_PER_GPU=%d allows %d on a GPU: raise TEI_REPLICAS_PER_GPU",
			name, count, count, pl.gpus[0].index, pl.only, k, k)
		if pl.forcedBy != "" {
			msg += fmt.Sprintf(", or set %s=cuda to spread them over the GPUs", pl.forcedBy)
		}
		return fmt.Errorf("%s", msg)
	}
	pl.count, pl.slots = count, spread(pl.gpus[:1], count)
	pl.countWhy = name
	if !set {
		pl.countWhy = fmt.Sprintf("TEI_REPLICAS_PER_GPU=%d on its one GPU (%s); %s runs more", k, pl.only, name)
	}
	return nil
}

// tooMany refuses more replicas than gpus GPUs hold.
func (m *maker) tooMany(name string, count, gpus int) error {
	k := m.s.perGPU()
	return fmt.Errorf("%s=%d needs more TEIs than %d GPUs hold at TEI_REPLICAS_PER_GPU=%d (%d): lower %s, or raise TEI_REPLICAS_PER_GPU",
		name, count, gpus, k, gpus*k, name)
}

// spread deals n replicas over gpus in turn, best first, so each GPU gets
// at most ⌈n/len(gpus)⌉.
func spread(gpus []gpuRef, n int) []gpuRef {
	out := make([]gpuRef, 0, n)
	for i := range n {
		out = append(out, gpus[i%len(gpus)])
	}
	return out
}

// describeGPUs sets pl.gpuWhy: why each replica runs on its GPU, given the
// other role's placement.
func describeGPUs(pl, other *placement, k int) {
	if pl.kind != kindCUDA {
		return
	}
	on := func(p *placement, g gpuRef) int {
		if p == nil || p.kind != kindCUDA {
			return 0
		}
		n := 0
		for _, s := range p.slots {
			if s.index == g.index {
				n++
			}
		}
		return n
	}
	otherOnGPU := other != nil && other.kind == kindCUDA
	pl.gpuWhy = func(g gpuRef) string {
		var parts []string
		if pl.forcedWhy != "" {
			parts = append(parts, pl.forcedWhy)
		}
		mine, theirs := on(pl, g), on(other, g)
		switch {
		case theirs > 0:
			parts = append(parts, fmt.Sprintf("shared with the %s (%d TEIs on this GPU, each sized for its share of the memory)", other.role.noun(), mine+theirs))
		case otherOnGPU && pl.role == RoleRerank:
			parts = append(parts, "the reranker's own GPU, the last in the ranking, so embedding and reranking do not compete (TEI uses one GPU per process)")
		case otherOnGPU:
			parts = append(parts, "one of the GPUs the reranker leaves free (TEI uses one GPU per process)")
		case pl.forcedWhy == "" && pl.count == 1:
			parts = append(parts, "the best GPU TEI can use")
		case pl.forcedWhy == "":
			parts = append(parts, "one of the GPUs TEI can use (TEI uses one GPU per process)")
		}
		if mine > 1 {
			parts = append(parts, fmt.Sprintf("%d %s replicas on this GPU (TEI_REPLICAS_PER_GPU=%d)", mine, pl.role.noun(), k))
		}
		if g.gpu == nil {
			return strings.Join(parts, "; ")
		}
		return fmt.Sprintf("GPU %d (%s, %s): %s", g.index, g.gpu.Name.Value, describeMemory(g.gpu.MemoryMiB), strings.Join(parts, "; "))
	}
}

func refIndexes(gpus []gpuRef) string {
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = itoa(g.index)
	}
	return strings.Join(ids, ", ")
}
