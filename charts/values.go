// Package charts holds tei-sidecar's Helm chart (the tei-sidecar folder
// beside this file) and writes the part of its values that a launch plan
// decides: for each model, TEI's image and arguments, the replicas and the
// GPUs each takes, the resources to request and where to schedule. `detect
// --helm-values` prints them, so the chart never carries an image table of
// its own: what the plan knows is what the chart gets.
//
// The chart's tests render it with Helm's SDK; this package itself depends
// on nothing of Helm's or Kubernetes', so the shipped binary stays free of
// them.
package charts

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// Chart is the chart's folder, relative to this package's.
const Chart = "tei-sidecar"

// TEIPort is the port TEI listens on in its pods unless TEI_PORT is set:
// above 1023, so that a user without privileges may bind it.
const TEIPort = 8080

// GPUProductLabel is the node label NVIDIA's GPU feature discovery (part of
// the GPU operator and the device plugin) writes with the GPU's name, its
// spaces made dashes.
const GPUProductLabel = "nvidia.com/gpu.product"

// GPUTaint is the taint GPU node pools commonly carry; TEI's pods on GPUs
// tolerate it.
const GPUTaint = "nvidia.com/gpu"

// Host memory a TEI on a GPU is given: its weights at four bytes a
// parameter (they pass through host memory while they load) and this much
// for the router, the tokenizers and the CUDA runtime; rounded up to whole
// GiB.
const gpuHostOverheadMiB = 2048

// unknownModelParamsM is what the plan sizes a model it does not know as.
const unknownModelParamsM = 568

// ErrNative is returned for a plan that runs TEI natively (Apple Metal):
// no container, so nothing for Kubernetes.
var ErrNative = errors.New("TEI runs natively on Apple Silicon (containers cannot reach Metal), so there is nothing to deploy: " +
	"run detect on a node of the cluster (or in a Job there), or set EMBEDDING_DEVICE=cpu for CPU pods")

// Values is the part of the chart's values a plan decides. Layered over the
// chart's defaults (helm install -f FILE), it replaces each of them: lists
// replace lists, and its maps set every key the defaults set.
type Values struct {
	TEI     TEI     `yaml:"tei"`
	Sidecar Sidecar `yaml:"sidecar"`
}

// TEI holds the two models' workloads.
type TEI struct {
	Embed  Model `yaml:"embed"`
	Rerank Model `yaml:"rerank"`
}

// Model is one model's TEI workload: Replicas pods alike, each running
// Image with Args. A disabled model carries nothing else.
type Model struct {
	Enabled bool `yaml:"enabled"`
	// Replicas is the number of pods, one a planned TEI.
	Replicas int `yaml:"replicas,omitempty"`
	// Image is TEI's full image reference, for the GPUs' compute capability.
	Image string `yaml:"image,omitempty"`
	// Args are TEI's arguments, complete (they replace the image's CMD).
	Args []string `yaml:"args,omitempty"`
	// Env is TEI's environment beyond the secrets the chart adds.
	Env []EnvVar `yaml:"env,omitempty"`
	// Port is the port TEI listens on in its pod.
	Port int `yaml:"port,omitempty"`
	// GPUs is the number of GPUs each pod requests; 0 on CPU.
	GPUs int `yaml:"gpus"`
	// Resources are the CPU and memory requests and limits; the chart adds
	// the GPUs.
	Resources Resources `yaml:"resources,omitempty"`
	// NodeSelector schedules the pods on nodes with the planned GPU.
	NodeSelector map[string]string `yaml:"nodeSelector"`
	// Tolerations let the pods onto tainted GPU nodes.
	Tolerations []Toleration `yaml:"tolerations"`
}

// MarshalYAML writes a disabled model as enabled: false alone.
func (m Model) MarshalYAML() (any, error) {
	if !m.Enabled {
		return map[string]bool{"enabled": false}, nil
	}
	type plain Model
	return plain(m), nil
}

// EnvVar is one variable, as a container's env lists it.
type EnvVar struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// Resources are a container's requests and limits, quantities as strings.
type Resources struct {
	Requests map[string]string `yaml:"requests,omitempty"`
	Limits   map[string]string `yaml:"limits,omitempty"`
}

// Toleration is a pod's toleration of a taint.
type Toleration struct {
	Key      string `yaml:"key"`
	Operator string `yaml:"operator"`
	Effect   string `yaml:"effect"`
}

// Sidecar holds the sidecar's settings that go with the plan.
type Sidecar struct {
	// Settings are environment variables of the sidecar, by name.
	Settings map[string]string `yaml:"settings"`
}

// Plan plans TEI for pods on a node like hw under s, as for Docker but
// for two differences. Kubernetes' NVIDIA device plugin, not Docker's NVIDIA
// runtime, gives pods their GPUs, so the plan neither warns that Docker
// lacks it nor asks to install it. And TEI listens on TEIPort unless
// TEI_PORT says otherwise: its pods run as a user without privileges, who
// may not bind the images' port 80 on every container runtime. It returns
// hw as planned for.
func Plan(hw hwdetect.Hardware, s plan.Settings) (hwdetect.Hardware, plan.Result, error) {
	if len(hw.GPUs) > 0 {
		hw.NVIDIARuntime = hwdetect.Fact[bool]{Value: true, Source: "Kubernetes: the NVIDIA device plugin gives pods their GPUs"}
	}
	s.Port = cmp.Or(s.Port, TEIPort)
	res, err := plan.Make(hw, s)
	return hw, res, err
}

// Build turns a plan for hw into the chart's values. It refuses a plan
// that no Deployment can run: a native TEI, or replicas of one model that
// differ in more than their GPU (a Deployment's pods share one template).
func Build(hw hwdetect.Hardware, res plan.Result) (Values, error) {
	if len(res.Plans) == 0 {
		return Values{}, errors.New("the plan launches nothing")
	}
	v := Values{Sidecar: Sidecar{Settings: sidecarSettings(res.Plugin)}}
	for _, rm := range []struct {
		role plan.Role
		m    *Model
	}{{plan.RoleEmbedding, &v.TEI.Embed}, {plan.RoleRerank, &v.TEI.Rerank}} {
		reps := res.Replicas(rm.role)
		if len(reps) == 0 {
			continue
		}
		built, err := model(hw, reps)
		if err != nil {
			return Values{}, err
		}
		*rm.m = built
	}
	if !v.TEI.Embed.Enabled {
		return Values{}, errors.New("the plan has no embedding model")
	}
	return v, nil
}

// model builds one model's workload from its replicas' plans.
func model(hw hwdetect.Hardware, reps []plan.Plan) (Model, error) {
	p := reps[0]
	if p.Backend == plan.BackendNative {
		return Model{}, ErrNative
	}
	if p.Image == "" {
		return Model{}, fmt.Errorf("tei-%s: the plan has no image", p.Name())
	}
	for _, r := range reps[1:] {
		if r.Image != p.Image || !slices.Equal(r.Args, p.Args) || !maps.Equal(r.Env, p.Env) || len(r.GPUIDs) != len(p.GPUIDs) {
			return Model{}, fmt.Errorf("the %s model's replicas differ (tei-%s runs %s %s, tei-%s runs %s %s), but one Deployment runs them from one pod template: "+
				"run detect on a node of one GPU type, or pin the devices (EMBEDDING_DEVICE, RERANK_DEVICE) and replicas (EMBEDDING_REPLICAS, RERANK_REPLICAS)",
				p.Role, p.Name(), p.Image, strings.Join(p.Args, " "), r.Name(), r.Image, strings.Join(r.Args, " "))
		}
	}
	m := Model{
		Enabled:      true,
		Replicas:     len(reps),
		Image:        p.Image,
		Args:         slices.Clone(p.Args),
		Port:         p.Port,
		GPUs:         len(p.GPUIDs),
		NodeSelector: map[string]string{},
		Tolerations:  []Toleration{},
	}
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		// Secrets (HF_TOKEN) come from the chart's Secrets, never from a
		// values file.
		if !slices.Contains(p.SecretEnv, k) {
			m.Env = append(m.Env, EnvVar{Name: k, Value: p.Env[k]})
		}
	}
	if m.GPUs == 0 {
		// CPU: the cores the plan gave TEI's threads, and the memory it
		// sized the batches for.
		cores := max(p.TokenizationWorkers, 1)
		if n, err := strconv.Atoi(p.Env["RAYON_NUM_THREADS"]); err == nil && n > 0 {
			cores = n
		}
		mem := mib(max(p.MemoryBudgetMiB, 1024))
		m.Resources = Resources{
			Requests: map[string]string{"cpu": strconv.Itoa(cores), "memory": mem},
			Limits:   map[string]string{"memory": mem},
		}
		return m, nil
	}
	params := int64(unknownModelParamsM)
	if info := plan.LookupModel(p.Model); info.Known {
		params = int64(info.ParamsM)
	}
	mem := mib(params*4*1_000_000>>20 + gpuHostOverheadMiB)
	m.Resources = Resources{
		Requests: map[string]string{"cpu": strconv.Itoa(max(p.TokenizationWorkers, 1)), "memory": mem},
		Limits:   map[string]string{"memory": mem},
	}
	m.Tolerations = []Toleration{{Key: GPUTaint, Operator: "Exists", Effect: "NoSchedule"}}
	if product, ok := gpuProduct(hw, reps); ok {
		m.NodeSelector[GPUProductLabel] = product
	}
	return m, nil
}

// labelValue is what a Kubernetes label value may be: 63 characters at
// most, alphanumerics at both ends, '-', '_' and '.' between.
var labelValue = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$`)

// gpuProduct is the product label of the GPUs reps run on, when they all
// have one name and it makes a valid label.
func gpuProduct(hw hwdetect.Hardware, reps []plan.Plan) (string, bool) {
	names := map[string]bool{}
	for _, p := range reps {
		for _, id := range p.GPUIDs {
			i := slices.IndexFunc(hw.GPUs, func(g hwdetect.GPU) bool { return g.Index == id })
			if i < 0 || !hw.GPUs[i].Name.Known() {
				return "", false
			}
			names[hw.GPUs[i].Name.Value] = true
		}
	}
	if len(names) != 1 {
		return "", false
	}
	for name := range names {
		product := ProductLabel(name)
		return product, labelValue.MatchString(product)
	}
	return "", false
}

// ProductLabel is the value GPU feature discovery gives GPUProductLabel for
// a GPU named name (as nvidia-smi names it): its spaces made dashes. With
// time-slicing that does not rename the resource it appends "-SHARED".
func ProductLabel(name string) string { return strings.ReplaceAll(strings.TrimSpace(name), " ", "-") }

// mib writes a quantity of MiB as Kubernetes reads it: whole GiB when it
// divides, else rounded up to whole GiB, so requests stay readable.
func mib(n int64) string {
	return strconv.FormatInt(int64(math.Ceil(float64(n)/1024)), 10) + "Gi"
}

// sidecarSettings are the plugin's settings the sidecar reads. Whether it
// reranks follows tei.rerank.enabled, so it is not among them.
func sidecarSettings(ps plan.PluginSettings) map[string]string {
	return map[string]string{
		"EMBEDDING_CACHE_SIZE": strconv.Itoa(ps.CacheSize),
		"RERANK_K":             strconv.Itoa(ps.RerankK),
		"RERANK_FINAL_N":       strconv.Itoa(ps.RerankFinalN),
	}
}

// Write writes v as a values file, after comments that say what the plan
// chose for each model and what to heed.
func Write(w io.Writer, res plan.Result, v Values) error {
	var b bytes.Buffer
	// Comments wrap at 100 columns, their later lines indented.
	comment := func(format string, args ...any) {
		line, prefix := "#", " "
		for _, word := range strings.Fields(fmt.Sprintf(format, args...)) {
			if len(line)+1+len(word) > 100 && len(line) > 4 {
				b.WriteString(line + "\n")
				line, prefix = "#  ", " "
			}
			line += prefix + word
		}
		b.WriteString(line + "\n")
	}
	comment("Values for the tei-sidecar Helm chart, written by `tei-sidecar detect --helm-values` for %s.", res.Platform)
	for _, role := range []plan.Role{plan.RoleEmbedding, plan.RoleRerank} {
		reps := res.Replicas(role)
		if len(reps) == 0 {
			continue
		}
		p := reps[0]
		where := "CPU"
		if n := len(p.GPUIDs); n > 0 {
			where = fmt.Sprintf("%d GPU each", n)
		}
		comment("tei-%s: %d × %s (%s), %s, dtype %s, max batch tokens %d, on %s",
			p.Name(), len(reps), p.Model, where, plan.ImageTag(p.Image), cmp.Or(p.DType, "TEI's choice"), p.MaxBatchTokens, devices(reps))
	}
	for _, warn := range res.Warnings {
		comment("warning: %s", warn)
	}
	said := map[string]bool{}
	for _, p := range res.Plans {
		for _, warn := range p.Warnings {
			if key := string(p.Role) + "\x00" + warn; !said[key] {
				said[key] = true
				comment("warning (tei-%s): %s", p.Name(), warn)
			}
		}
	}
	for _, s := range sharedGPUs(res) {
		comment("warning: %s", s)
	}
	for _, k := range secretKeys(res) {
		comment("%s is left out: give it through the chart's secrets (secrets.%s), never in a values file.", k, secretValue(k))
	}
	comment("Install: helm install RELEASE charts/tei-sidecar -f THIS_FILE (values given later override it).")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// devices lists where a role's replicas run.
func devices(reps []plan.Plan) string {
	out := make([]string, len(reps))
	for i, p := range reps {
		out[i] = p.Device
	}
	return strings.Join(slices.Compact(out), " ")
}

// sharedGPUs says which GPUs the plan gives to more than one TEI: on
// Kubernetes each pod gets whole GPUs, so those pods wait for a GPU of
// their own unless the device plugin shares GPUs.
func sharedGPUs(res plan.Result) []string {
	users := map[int][]string{}
	for _, p := range res.Plans {
		for _, id := range p.GPUIDs {
			users[id] = append(users[id], "tei-"+p.Name())
		}
	}
	var out []string
	for _, id := range slices.Sorted(maps.Keys(users)) {
		if u := users[id]; len(u) > 1 {
			out = append(out, fmt.Sprintf("the plan puts %s on GPU %d, sized to share it; Kubernetes gives each pod whole GPUs, "+
				"so on one such node all but one wait unless the NVIDIA device plugin shares GPUs (time-slicing; GPU feature discovery then labels the product with -SHARED), "+
				"or the node pool has a GPU for each", strings.Join(u, " and "), id))
		}
	}
	return out
}

// secretKeys are the plans' secret variables, each once.
func secretKeys(res plan.Result) []string {
	var keys []string
	for _, p := range res.Plans {
		keys = append(keys, p.SecretEnv...)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// secretValue names the chart's value that carries a secret variable.
func secretValue(k string) string {
	if k == "HF_TOKEN" {
		return "hfToken"
	}
	return k
}
