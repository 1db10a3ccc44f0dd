package compose_test

import (
	"bytes"
	"cmp"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tei-sidecar/tei-sidecar/compose"
	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tests/golden"
)

func fact[T any](v T) hwdetect.Fact[T] { return hwdetect.Fact[T]{Value: v, Source: "test"} }

// machine is an 8-core, 32 GiB x86-64 Linux host with the given GPUs
// (compute capabilities), each with 24 GiB.
func machine(ccs ...string) hwdetect.Hardware {
	hw := hwdetect.Hardware{
		OS: "linux", Arch: "amd64",
		CPU:           hwdetect.CPU{Model: fact("Test CPU"), LogicalCores: fact(8), UsableCores: fact(8)},
		Memory:        hwdetect.Memory{PhysicalBytes: fact(int64(32) << 30)},
		GPUs:          []hwdetect.GPU{},
		NVIDIARuntime: fact(true),
	}
	for i, cc := range ccs {
		hw.GPUs = append(hw.GPUs, hwdetect.GPU{Index: i, Name: fact("Test GPU"), ComputeCap: fact(cc), MemoryMiB: fact(int64(24576))})
	}
	return hw
}

func ptr[T any](v T) *T { return &v }

// TestBuildLoads writes plans for several machines, loads the result with
// Compose's loader and wants TEI's services to be exactly the plans: image,
// arguments, environment (secrets read from the environment at `up` time),
// GPUs, the model cache volume and a sidecar pointed at them.
func TestBuildLoads(t *testing.T) {
	const planToken, upToken = "hf_token_when_planned", "hf_token_at_up"
	tests := []struct {
		name     string
		hw       hwdetect.Hardware
		settings plan.Settings
		opts     compose.Options
		// gpus are the GPU ids of each TEI service; none listed: none.
		gpus map[string][]string
		// embedURLs and rerankURLs are the sidecar's TEI_EMBED_URL and
		// TEI_RERANK_URL; empty: the first replica's alone.
		embedURLs, rerankURLs string
	}{
		{name: "cpu", hw: machine()},
		{name: "one GPU", hw: machine("8.9"), gpus: map[string][]string{"tei-embed": {"0"}, "tei-rerank": {"0"}}},
		{name: "two GPUs", hw: machine("8.6", "8.6"), gpus: map[string][]string{"tei-embed": {"0"}, "tei-rerank": {"1"}}},
		{name: "four GPUs: a service per replica", hw: machine("9.0", "9.0", "9.0", "9.0"),
			gpus:      map[string][]string{"tei-embed": {"0"}, "tei-embed-1": {"1"}, "tei-embed-2": {"2"}, "tei-rerank": {"3"}},
			embedURLs: "http://tei-embed:80,http://tei-embed-1:80,http://tei-embed-2:80"},
		{name: "two replicas a GPU", hw: machine("8.9"), settings: plan.Settings{ReplicasPerGPU: 2},
			gpus:      map[string][]string{"tei-embed": {"0"}, "tei-embed-1": {"0"}, "tei-rerank": {"0"}, "tei-rerank-1": {"0"}},
			embedURLs: "http://tei-embed:80,http://tei-embed-1:80", rerankURLs: "http://tei-rerank:80,http://tei-rerank-1:80"},
		{name: "CPU replicas", hw: machine(), settings: plan.Settings{EmbeddingReplicas: 2, RerankEnable: ptr(false)},
			embedURLs: "http://tei-embed:80,http://tei-embed-1:80"},
		{name: "token", hw: machine(), settings: plan.Settings{HFToken: planToken}},
		{name: "dollar in a model id", hw: machine(), settings: plan.Settings{EmbeddingModel: "org/model$HOME", RerankEnable: ptr(false)}},
		{name: "no sidecar", hw: machine("9.0"), opts: compose.Options{NoSidecar: true}, gpus: map[string][]string{"tei-embed": {"0"}, "tei-rerank": {"0"}}},
		{name: "own sidecar image", hw: machine(), opts: compose.Options{SidecarImage: "registry.example/tei-sidecar:1.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := plan.Make(tt.hw, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			f, err := compose.Build(res, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := compose.Write(&out, res, f); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), planToken) {
				t.Fatalf("the file carries the token's value:\n%s", out.String())
			}
			path := filepath.Join(t.TempDir(), "tei.yaml")
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			p := load(t, []string{path}, nil, map[string]string{"HF_TOKEN": upToken})

			want := []string{}
			if !tt.opts.NoSidecar {
				want = append(want, compose.SidecarService)
			}
			for _, pl := range res.Plans {
				want = append(want, compose.ServiceName(pl))
			}
			if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				t.Fatalf("services %v, want %v\n%s", got, want, out.String())
			}
			checkLoopbackOnly(t, p)
			if vol := p.Volumes[compose.VolumeKey]; vol.Name != compose.DefaultModelCache {
				t.Errorf("volume %+v, want the named volume %s", vol, compose.DefaultModelCache)
			}

			for _, pl := range res.Plans {
				s := p.Services[compose.ServiceName(pl)]
				if s.Image != pl.Image {
					t.Errorf("%s image %q, want %q", s.Name, s.Image, pl.Image)
				}
				if !slices.Equal([]string(s.Command), pl.Args) {
					t.Errorf("%s command %q, want the plan's %q", s.Name, s.Command, pl.Args)
				}
				wantEnv := maps.Clone(pl.Env)
				for _, k := range pl.SecretEnv {
					wantEnv[k] = upToken
				}
				gotEnv := map[string]string{}
				for k, v := range s.Environment {
					gotEnv[k] = *v
				}
				if !maps.Equal(gotEnv, wantEnv) {
					t.Errorf("%s environment %v, want %v", s.Name, gotEnv, wantEnv)
				}
				if !mountsCache(s, "/data") {
					t.Errorf("%s volumes %+v: want %s at /data", s.Name, s.Volumes, compose.VolumeKey)
				}
				if got := gpuIDs(s); !slices.Equal(got, tt.gpus[s.Name]) {
					t.Errorf("%s GPUs %q, want %q", s.Name, got, tt.gpus[s.Name])
				}
			}

			if tt.opts.NoSidecar {
				return
			}
			s := p.Services[compose.SidecarService]
			wantImage := tt.opts.SidecarImage
			if wantImage == "" {
				wantImage = compose.DefaultSidecarImage
			}
			if s.Image != wantImage {
				t.Errorf("sidecar image %q, want %q", s.Image, wantImage)
			}
			emb, _ := res.Plan(plan.RoleEmbedding)
			wantEnv := map[string]string{
				"TEI_LAUNCH":           "none",
				"TEI_EMBED_URL":        cmp.Or(tt.embedURLs, "http://tei-embed:"+strconv.Itoa(emb.Port)),
				"TEI_RERANK_URL":       "<unset>",
				"EMBEDDING_CACHE_SIZE": strconv.Itoa(res.Plugin.CacheSize),
				"RERANK_ENABLE":        strconv.FormatBool(res.Plugin.RerankEnable),
				"BEARER_TOKEN":         "<unset>",
			}
			if rer, ok := res.Plan(plan.RoleRerank); ok {
				wantEnv["TEI_RERANK_URL"] = cmp.Or(tt.rerankURLs, "http://tei-rerank:"+strconv.Itoa(rer.Port))
			}
			for k, want := range wantEnv {
				if got := env1(s, k); got != want {
					t.Errorf("sidecar %s=%q, want %q", k, got, want)
				}
			}
			if hc := s.HealthCheck; hc == nil || !slices.Equal([]string(hc.Test), []string{"CMD", compose.SidecarBinary, "healthcheck"}) {
				t.Errorf("sidecar healthcheck %+v: want the binary's own check", hc)
			}
		})
	}
}

func gpuIDs(s types.ServiceConfig) []string {
	if s.Deploy == nil || s.Deploy.Resources.Reservations == nil {
		return nil
	}
	var ids []string
	for _, d := range s.Deploy.Resources.Reservations.Devices {
		if d.Driver == "nvidia" && slices.Contains(d.Capabilities, "gpu") {
			ids = append(ids, d.IDs...)
		}
	}
	return ids
}

// TestBuildRefusesNative: Apple Silicon's plan runs TEI natively, which no
// container can; the error says what to do.
func TestBuildRefusesNative(t *testing.T) {
	hw := machine()
	hw.OS, hw.Arch = "darwin", "arm64"
	hw.GPUs, hw.NVIDIARuntime = nil, hwdetect.Fact[bool]{}
	hw.Apple = &hwdetect.Apple{Chip: fact("Apple M2"), UnifiedMemoryBytes: fact(int64(16) << 30)}
	res, err := plan.Make(hw, plan.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compose.Build(res, compose.Options{}); !errors.Is(err, compose.ErrNative) {
		t.Fatalf("Build on Apple Silicon: %v, want ErrNative", err)
	}
	// Forcing the CPU gives containers.
	res, err = plan.Make(hw, plan.Settings{Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compose.Build(res, compose.Options{}); err != nil {
		t.Fatalf("Build with EMBEDDING_DEVICE=cpu on Apple Silicon: %v", err)
	}
}

// TestWriteGolden compares the file `tei-sidecar compose` writes for fixed
// machines with testdata/NAME.yaml: one TEI service per replica, each with
// its GPU, and the sidecar given every replica's URL. Run with -update to
// rewrite them after a deliberate change, and read the diff.
func TestWriteGolden(t *testing.T) {
	for _, tt := range []struct {
		name string
		hw   hwdetect.Hardware
		s    plan.Settings
	}{
		{"cpu", machine(), plan.Settings{}},
		{"four-gpus", machine("9.0", "9.0", "9.0", "9.0"), plan.Settings{HFToken: "hf_not_in_the_file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := plan.Make(tt.hw, tt.s)
			if err != nil {
				t.Fatal(err)
			}
			f, err := compose.Build(res, compose.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := compose.Write(&out, res, f); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tt.name+".yaml"), out.Bytes())
		})
	}
}
