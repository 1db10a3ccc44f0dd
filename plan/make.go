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

// target is where one TEI runs and the image that runs it.
type target struct {
	kind string
	// gpu is the detected GPU for kindCUDA; nil when an image was pinned
	// without a detected GPU, at gpuIndex.
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

// gpuRef is a GPU a role may run on: detected, or (gpu nil) assumed at
// index for a pinned image.
type gpuRef struct {
	gpu   *hwdetect.GPU
	index int
}

// placement is where one role's TEIs may run, before they are counted:
// the device kind and, on CUDA, the candidate GPUs, best first.
type placement struct {
	role Role
	kind string
	gpus []gpuRef
	// only is set when the role is held to its one GPU (cuda:N, or the
	// GPU assumed for a pinned image): what holds it, for messages.
	only string
	// deviceEnv is the setting that chose the device (EMBEDDING_DEVICE or
	// RERANK_DEVICE); forcedBy is it when it forced CUDA, else empty.
	deviceEnv, forcedBy string
	// forcedWhy prefixes the GPU reasons of a forced device.
	forcedWhy    string
	pin, pinName string
	// base is the target of CPU and Metal placements.
	base target

	// Set by assign: each replica's GPU (CUDA) and why there are this many.
	slots    []gpuRef
	count    int
	countWhy string
	// gpuWhy explains the GPU of a replica on g.
	gpuWhy func(g gpuRef) string
}

// replicasSetting is the role's replica count setting, and its name.
func (m *maker) replicasSetting(role Role) (int, string) {
	if role == RoleRerank {
		return m.s.RerankReplicas, "RERANK_REPLICAS"
	}
	return m.s.EmbeddingReplicas, "EMBEDDING_REPLICAS"
}

// maker holds one Make call's inputs.
type maker struct {
	hw      hwdetect.Hardware
	s       Settings
	version string
	images  images
	// warnings concern the whole result; advice adds its own.
	warnings []string
}

// arch is the platform images are chosen for: Go's name, amd64 when
// unknown.
func (m *maker) arch() string { return cmp.Or(m.hw.Arch, archAMD64) }

// Make plans TEI for the hardware and settings: one Plan per replica. It
// fails on invalid settings and on a forced device that cannot work
// (EMBEDDING_DEVICE=mps off Apple Silicon, cuda or cuda:N without that GPU,
// CUDA on a GPU no TEI build runs on, a CUDA device with a CPU image
// pinned or the CPU with a CUDA image), and on replica counts the GPUs
// cannot hold.
func Make(hw hwdetect.Hardware, s Settings) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, err
	}
	version := s.teiVersion()
	m := &maker{hw: applyComputeCap(hw, s.ComputeCap), s: s, version: version, images: imagesFor(version)}

	emb, err := m.place(RoleEmbedding, parseDevice(s.Device), "EMBEDDING_DEVICE")
	if err != nil {
		return Result{}, err
	}
	var rer *placement
	if s.rerankEnabled() {
		dev, envName := parseDevice(s.RerankDevice), "RERANK_DEVICE"
		if s.RerankDevice == "" {
			dev, envName = parseDevice(s.Device), "EMBEDDING_DEVICE"
		}
		if rer, err = m.place(RoleRerank, dev, envName); err != nil {
			return Result{}, err
		}
	}
	if err := m.assign(emb, rer); err != nil {
		return Result{}, err
	}

	var reps []replica
	for _, pl := range []*placement{emb, rer} {
		if pl == nil {
			continue
		}
		for i := range pl.count {
			t, err := m.replicaTarget(pl, i)
			if err != nil {
				return Result{}, err
			}
			reps = append(reps, replica{role: pl.role, index: i, count: pl.count, countWhy: pl.countWhy, target: t})
		}
	}
	native := 0
	for i := range reps {
		for _, o := range reps {
			if o.target.sameDevice(reps[i].target) {
				reps[i].sharers = append(reps[i].sharers, o.name())
			}
		}
		if reps[i].target.kind == kindMetal {
			reps[i].nativeOrdinal = native
			native++
		}
	}

	res := Result{Platform: m.platformSummary(), TEIVersion: m.version}
	for _, r := range reps {
		res.Plans = append(res.Plans, m.plan(r))
	}
	res.Device = res.Plans[0].Device
	res.Plugin = m.pluginSettings(res)
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

// place decides where role's TEIs may run. dev is the device forced by the
// setting envName.
func (m *maker) place(role Role, dev device, envName string) (*placement, error) {
	pl := &placement{role: role, deviceEnv: envName, pin: m.s.Image, pinName: "TEI_IMAGE"}
	if role == RoleRerank && m.s.RerankImage != "" {
		pl.pin, pl.pinName = m.s.RerankImage, "TEI_RERANK_IMAGE"
	}
	asCPU := func(why string) *placement {
		pl.kind, pl.base = kindCPU, m.cpuTarget(why, pl.pin, pl.pinName)
		return pl
	}
	switch dev.kind {
	case "mps":
		if m.hw.Apple == nil {
			return nil, fmt.Errorf("%s=mps needs Apple Silicon; this machine is %s/%s", envName, m.hw.OS, m.hw.Arch)
		}
		pl.kind, pl.base = kindMetal, m.metalTarget(envName+"=mps")
		return pl, nil
	case "cpu":
		if pl.pin != "" && kindOfImage(pl.pin) == imageCUDA {
			return nil, fmt.Errorf("%s=cpu, but %s=%s is a CUDA image: pin a CPU image (%s), or unset %s",
				envName, pl.pinName, pl.pin, imageRef("cpu-"+m.version), envName)
		}
		return asCPU(envName + "=cpu forces the CPU"), nil
	case "cuda":
		return m.placeForcedCUDA(pl, dev)
	}

	// auto
	if pl.pin != "" && isCPUImage(pl.pin) {
		return asCPU(pl.pinName + " names a CPU image"), nil
	}
	if pl.pin == "" && m.hw.Apple != nil {
		pl.kind, pl.base = kindMetal, m.metalTarget("Apple Silicon: TEI runs natively on Metal; Docker cannot reach the GPU")
		return pl, nil
	}
	ranked, rejected := m.rankGPUs(pl.pin != "")
	if len(ranked) == 0 {
		if pl.pin != "" {
			// A pinned GPU image is trusted without a detected GPU.
			pl.kind, pl.gpus = kindCUDA, []gpuRef{{nil, 0}}
			pl.only = "the GPU assumed for " + pl.pinName
			pl.forcedWhy = pl.pinName + " names a GPU image; no GPU was detected, so GPU 0 is assumed"
			return pl, nil
		}
		return asCPU(m.noGPUWhy(rejected)), nil
	}
	pl.kind = kindCUDA
	for i := range ranked {
		pl.gpus = append(pl.gpus, gpuRef{&ranked[i], ranked[i].Index})
	}
	return pl, nil
}

// placeForcedCUDA resolves EMBEDDING_DEVICE=cuda or cuda:N. A forced
// device that cannot work is an error, never a fallback.
func (m *maker) placeForcedCUDA(pl *placement, dev device) (*placement, error) {
	setting := fmt.Sprintf("%s=cuda", pl.deviceEnv)
	if dev.index >= 0 {
		setting += ":" + itoa(dev.index)
	}
	if pl.pin != "" && isCPUImage(pl.pin) {
		return nil, fmt.Errorf("%s asks for a GPU, but %s=%s is a CPU image: pin a CUDA image, or set %s=cpu",
			setting, pl.pinName, pl.pin, pl.deviceEnv)
	}
	gpus := m.hw.GPUs
	if len(gpus) == 0 {
		return nil, fmt.Errorf("%s, but no NVIDIA GPU was detected (neither nvidia-smi nor the PCI bus shows one): set %s=cpu, or auto to let the plan decide",
			setting, pl.deviceEnv)
	}
	pl.kind, pl.forcedBy, pl.forcedWhy = kindCUDA, pl.deviceEnv, setting
	if dev.index >= 0 {
		i := slices.IndexFunc(gpus, func(g hwdetect.GPU) bool { return g.Index == dev.index })
		if i < 0 {
			return nil, fmt.Errorf("%s, but the detected GPUs are %s", setting, gpuIndexes(gpus))
		}
		pl.gpus, pl.only = []gpuRef{{&gpus[i], dev.index}}, setting
	} else {
		ranked, _ := m.rankGPUs(pl.pin != "")
		for i := range ranked {
			pl.gpus = append(pl.gpus, gpuRef{&ranked[i], ranked[i].Index})
		}
		if len(pl.gpus) == 0 {
			// None can run TEI: the first GPU's target says why.
			pl.gpus, pl.only = []gpuRef{{&gpus[0], gpus[0].Index}}, setting
		}
	}
	// Fail now on a GPU no build runs on, before counting replicas.
	for _, g := range pl.gpus {
		if _, err := m.cudaTarget(g.gpu, g.index, "", pl.pin, pl.pinName, pl.forcedBy); err != nil {
			return nil, err
		}
	}
	return pl, nil
}

// rankGPUs orders the GPUs TEI can use, best first: a known build before an
// unknown compute capability, then more memory, newer architecture, lower
// index. rejected explains each GPU left out. With a pinned image every GPU
// is a candidate: the user brings the build.
func (m *maker) rankGPUs(pinned bool) (ranked []hwdetect.GPU, rejected []string) {
	arch := m.arch()
	for _, g := range m.hw.GPUs {
		switch {
		case pinned:
			ranked = append(ranked, g)
		case !g.ComputeCap.Known() && arch == archAMD64:
			ranked = append(ranked, g) // the all-in-one image picks its build
		case !g.ComputeCap.Known():
			rejected = append(rejected, fmt.Sprintf("GPU %d (%s): compute capability unknown, and TEI %s's all-in-one CUDA image is linux/amd64 only", g.Index, g.Name.Value, m.version))
		default:
			if _, ok := m.images.buildFor(g.ComputeCap.Value, arch); ok {
				ranked = append(ranked, g)
			} else {
				rejected = append(rejected, fmt.Sprintf("GPU %d (%s): %s", g.Index, g.Name.Value, m.images.noBuildWhy(g.ComputeCap.Value, arch)))
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

func (m *maker) noGPUWhy(rejected []string) string {
	if len(rejected) == 0 {
		return "no NVIDIA GPU detected"
	}
	return strings.Join(rejected, "; ") + ": running on the CPU instead"
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
		arch = archARM64
		t.warnings = append(t.warnings, "Docker on macOS runs TEI in a Linux VM without Metal: expect CPU speed; EMBEDDING_DEVICE=mps runs it natively on the GPU")
	}
	ref, pinned := m.images.cpuImage(arch)
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
		t.image = pin
		t.reasons = append(t.reasons, Reason{"image", pin, "pinned by " + pinName})
		return t, nil
	}
	forced := cmp.Or(forcedBy, "EMBEDDING_DEVICE")
	arch := m.arch()
	if !m.images.hasCUDA(arch) {
		return target{}, fmt.Errorf("%s=cuda: TEI %s publishes CUDA images for linux/amd64 only, and this machine is %s; set TEI_IMAGE to a CUDA build for it", forced, m.version, arch)
	}
	if gpu == nil || !gpu.ComputeCap.Known() {
		if arch != archAMD64 {
			return target{}, fmt.Errorf("%s=cuda: GPU %d's compute capability is unknown, and TEI %s's all-in-one CUDA image is linux/amd64 only: set GPU_COMPUTE_CAP or TEI_IMAGE", forced, index, m.version)
		}
		t.image = imageRef("cuda-" + m.version)
		t.reasons = append(t.reasons, Reason{"image", t.image, "compute capability unknown: the all-in-one image picks its build from the GPU at start"})
		t.warnings = append(t.warnings, fmt.Sprintf("GPU %d's compute capability is unknown (no nvidia-smi, device id not in the table): using the all-in-one cuda-%s image; set GPU_COMPUTE_CAP (e.g. 8.6) to pin the exact image", index, m.version))
		return t, nil
	}
	cc := gpu.ComputeCap.Value
	b, ok := m.images.buildFor(cc, arch)
	if !ok {
		return target{}, fmt.Errorf("%s=cuda: GPU %d (%s): %s", forced, index, gpu.Name.Value, m.images.noBuildWhy(cc, arch))
	}
	t.image = imageRef(b.prefix + m.version)
	rule := "exact match"
	if n, _ := ccNumber(cc); n != b.cc {
		rule = fmt.Sprintf("TEI %s's rule lets a %d.%d build run on %s", m.version, b.cc/10, b.cc%10, cc)
	}
	t.reasons = append(t.reasons, Reason{"image", t.image,
		fmt.Sprintf("compute capability %s (from %s): TEI %s's %s build, %s", cc, gpu.ComputeCap.Source, m.version, b.label, rule)})
	if b.cc == 75 || b.cc >= 100 {
		t.warnings = append(t.warnings, fmt.Sprintf("TEI marks its %s build experimental", b.label))
	}
	return t, nil
}

// replicaTarget is the target of pl's replica i.
func (m *maker) replicaTarget(pl *placement, i int) (target, error) {
	if pl.kind != kindCUDA {
		t := pl.base
		t.reasons = slices.Clone(t.reasons)
		return t, nil
	}
	g := pl.slots[i]
	return m.cudaTarget(g.gpu, g.index, pl.gpuWhy(g), pl.pin, pl.pinName, pl.forcedBy)
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
