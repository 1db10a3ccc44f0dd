package compose_test

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tei-sidecar/tei-sidecar/compose"
)

// The compose files users run, relative to this package.
var (
	rootFile   = filepath.Join("..", "compose.yaml")
	staticFile = "static.yaml"
	envExample = ".env.example"
	pluginFile = filepath.Join("examples", "retrieval-plugin.yaml")
	dockerfile = filepath.Join("..", "Dockerfile")
)

// load reads compose files with Compose's own loader, as `docker compose`
// does: schema validation, interpolation, profiles, consistency checks. The
// environment is env alone, so a developer's shell or .env cannot change
// what the test sees.
func load(t *testing.T, files []string, profiles []string, env map[string]string) *types.Project {
	t.Helper()
	var vars []string
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithEnv(vars),
		cli.WithProfiles(profiles),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading %v with profiles %v: %v", files, profiles, err)
	}
	return p
}

// variant is one way users run the files.
type variant struct {
	name     string
	files    []string
	profiles []string
	// services are those enabled.
	services []string
}

var variants = []variant{
	{"compose.yaml", []string{rootFile}, nil, []string{"sidecar"}},
	{"static.yaml without a profile", []string{staticFile}, nil, []string{"sidecar"}},
	{"static.yaml --profile cpu", []string{staticFile}, []string{"cpu"}, []string{"sidecar", "tei-embed-cpu", "tei-rerank-cpu"}},
	{"static.yaml --profile gpu", []string{staticFile}, []string{"gpu"}, []string{"sidecar", "tei-embed-gpu", "tei-rerank-gpu"}},
}

func TestComposeFilesLoad(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			p := load(t, v.files, v.profiles, nil)
			if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, v.services) {
				t.Errorf("services %v, want %v", got, v.services)
			}
			sidecar := p.Services[compose.SidecarService]
			if sidecar.Image != compose.DefaultSidecarImage {
				t.Errorf("sidecar image %q, want %q", sidecar.Image, compose.DefaultSidecarImage)
			}
			// The image is built from the repository's Dockerfile.
			root, _ := filepath.Abs("..")
			if sidecar.Build == nil || sidecar.Build.Context != root {
				t.Errorf("sidecar build %+v, want context %s", sidecar.Build, root)
			}
		})
	}
}

// TestNothingPublishedOnAllInterfaces: every published port binds loopback,
// and no service shares the host's network.
func TestNothingPublishedOnAllInterfaces(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			p := load(t, v.files, append(v.profiles, "cpu", "gpu"), map[string]string{"SIDECAR_PORT": "18080"})
			checkLoopbackOnly(t, p)
			ports := p.Services[compose.SidecarService].Ports
			if len(ports) != 1 || ports[0].Published != "18080" || ports[0].Target != compose.SidecarPort {
				t.Errorf("sidecar ports %+v, want 127.0.0.1:18080->8080", ports)
			}
		})
	}
}

func checkLoopbackOnly(t *testing.T, p *types.Project) {
	t.Helper()
	for name, s := range p.Services {
		if s.NetworkMode == "host" {
			t.Errorf("%s uses the host's network", name)
		}
		for _, port := range s.Ports {
			ip, err := netip.ParseAddr(port.HostIP)
			if err != nil || !ip.IsLoopback() {
				t.Errorf("%s publishes %s on %q: want a loopback address", name, port.Published, port.HostIP)
			}
		}
	}
}

// TestModelCacheIsNamedVolume: TEI's /data, wherever TEI is declared, is the
// named volume whose name TEI_MODEL_CACHE sets, and the launcher is told the
// same name.
func TestModelCacheIsNamedVolume(t *testing.T) {
	for _, env := range []map[string]string{nil, {"TEI_MODEL_CACHE": "my-models"}} {
		want := compose.DefaultModelCache
		if env != nil {
			want = env["TEI_MODEL_CACHE"]
		}
		for _, v := range variants {
			t.Run(v.name+" "+want, func(t *testing.T) {
				p := load(t, v.files, v.profiles, env)
				vol, ok := p.Volumes[compose.VolumeKey]
				if !ok || vol.Name != want || bool(vol.External) || vol.Driver != "" {
					t.Fatalf("volume %s = %+v (declared %v), want a local named volume %q", compose.VolumeKey, vol, ok, want)
				}
				for name, s := range p.Services {
					if !strings.HasPrefix(name, "tei-") {
						continue
					}
					if !mountsCache(s, "/data") {
						t.Errorf("%s volumes %+v: want %s at /data", name, s.Volumes, compose.VolumeKey)
					}
				}
				if v.files[0] == rootFile {
					s := p.Services[compose.SidecarService]
					if got := env1(s, "TEI_MODEL_CACHE"); got != want {
						t.Errorf("sidecar TEI_MODEL_CACHE=%q, want %q", got, want)
					}
					if !mountsCache(s, "") {
						t.Errorf("sidecar does not mount %s, so compose would not create it", compose.VolumeKey)
					}
				}
			})
		}
	}
}

func mountsCache(s types.ServiceConfig, target string) bool {
	return slices.ContainsFunc(s.Volumes, func(m types.ServiceVolumeConfig) bool {
		return m.Type == types.VolumeTypeVolume && m.Source == compose.VolumeKey && (target == "" || m.Target == target)
	})
}

// env1 is a service's environment value; "<unset>" when absent or null.
func env1(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return "<unset>"
}

// TestSidecarHealthcheckNeedsNoShell: the compose files and the image check
// health with the sidecar's own binary, in exec form: the image has no shell.
func TestSidecarHealthcheckNeedsNoShell(t *testing.T) {
	want := []string{"CMD", compose.SidecarBinary, "healthcheck"}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			hc := load(t, v.files, v.profiles, nil).Services[compose.SidecarService].HealthCheck
			if hc == nil || !slices.Equal([]string(hc.Test), want) {
				t.Fatalf("healthcheck %+v, want test %q", hc, want)
			}
		})
	}
	t.Run("Dockerfile", func(t *testing.T) {
		df, err := os.ReadFile(dockerfile)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(df), "\\\n", " ")
		m := regexp.MustCompile(`(?m)^HEALTHCHECK\s.*\bCMD\s+(\[.*\])\s*$`).FindStringSubmatch(text)
		if m == nil || m[1] != `["`+compose.SidecarBinary+`", "healthcheck"]` {
			t.Fatalf("Dockerfile HEALTHCHECK %q: want the exec form of %s healthcheck", m, compose.SidecarBinary)
		}
		// The runtime stage is empty but for what the build puts there,
		// runs as a non-root user, and listens on the container's
		// interfaces.
		stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
		if len(stages) == 0 || stages[len(stages)-1][1] != "scratch" || stages[0][1] != "golang:1.26-bookworm" {
			t.Errorf("stages %q: want golang:1.26-bookworm, then scratch", stages)
		}
		for _, line := range []string{"USER 65532:65532", "ENV SIDECAR_LISTEN=0.0.0.0:8080", `ENTRYPOINT ["` + compose.SidecarBinary + `"]`} {
			if !strings.Contains(text, "\n"+line+"\n") {
				t.Errorf("Dockerfile lacks %q", line)
			}
		}
	})
}

// TestSidecarLaunchesThroughTheSocket: compose.yaml's sidecar launches TEI
// with Docker, names TEI's containers after the compose project, and takes
// every other setting from .env only when it is set there.
func TestSidecarLaunchesThroughTheSocket(t *testing.T) {
	p := load(t, []string{rootFile}, nil, map[string]string{"EMBEDDING_MODEL": "BAAI/bge-small-en-v1.5", "HF_TOKEN": "hf_secret"})
	s := p.Services[compose.SidecarService]
	for k, want := range map[string]string{
		"TEI_LAUNCH":      "docker",
		"TEI_PROJECT":     p.Name,
		"EMBEDDING_MODEL": "BAAI/bge-small-en-v1.5",
		"HF_TOKEN":        "hf_secret",
		"RERANK_MODEL":    "<unset>", // not in the environment: the sidecar's default applies
		"BEARER_TOKEN":    "<unset>",
		"SIDECAR_LISTEN":  "<unset>", // the image's 0.0.0.0:8080
		"TEI_EMBED_URL":   "<unset>",
	} {
		if got := env1(s, k); got != want {
			t.Errorf("sidecar %s=%q, want %q", k, got, want)
		}
	}
	if p.Name != "tei-sidecar" {
		t.Errorf("project name %q, want tei-sidecar", p.Name)
	}
	if !slices.ContainsFunc(s.Volumes, func(m types.ServiceVolumeConfig) bool {
		return m.Type == types.VolumeTypeBind && m.Source == "/var/run/docker.sock" && m.Target == "/var/run/docker.sock"
	}) {
		t.Errorf("sidecar volumes %+v: want the Docker socket", s.Volumes)
	}
	if s.StopGracePeriod == nil || *s.StopGracePeriod < types.Duration(30e9) {
		t.Errorf("stop_grace_period %v: want time to remove TEI's containers", s.StopGracePeriod)
	}
	// The static variant mounts no socket.
	for _, profile := range []string{"cpu", "gpu"} {
		for name, s := range load(t, []string{staticFile}, []string{profile}, nil).Services {
			for _, m := range s.Volumes {
				if strings.Contains(m.Source, "docker.sock") {
					t.Errorf("static.yaml %s mounts %s", name, m.Source)
				}
			}
		}
	}
}

// TestStaticProfiles: the TEI services of each profile answer under the
// names the sidecar uses, with TEI's flags, and the gpu profile reserves an
// NVIDIA GPU.
func TestStaticProfiles(t *testing.T) {
	for _, profile := range []string{"cpu", "gpu"} {
		t.Run(profile, func(t *testing.T) {
			p := load(t, []string{staticFile}, []string{profile}, map[string]string{"EMBEDDING_MODEL": "BAAI/bge-small-en-v1.5"})
			sidecar := p.Services[compose.SidecarService]
			if env1(sidecar, "TEI_LAUNCH") != "none" {
				t.Errorf("sidecar TEI_LAUNCH=%q, want none", env1(sidecar, "TEI_LAUNCH"))
			}
			for role, url := range map[string]string{"embed": "http://tei-embed:80", "rerank": "http://tei-rerank:80"} {
				if got := env1(sidecar, "TEI_"+strings.ToUpper(role)+"_URL"); got != url {
					t.Errorf("sidecar TEI_%s_URL=%q, want %q", strings.ToUpper(role), got, url)
				}
				s := p.Services["tei-"+role+"-"+profile]
				if aliases := s.Networks["default"]; aliases == nil || !slices.Contains(aliases.Aliases, "tei-"+role) {
					t.Errorf("%s networks %+v: want alias tei-%s", s.Name, s.Networks, role)
				}
				cmd := strings.Join(s.Command, " ")
				for _, want := range []string{"--hostname 0.0.0.0", "--port 80", "--json-output"} {
					if !strings.Contains(cmd, want) {
						t.Errorf("%s command %q lacks %q", s.Name, cmd, want)
					}
				}
				if role == "embed" && !strings.Contains(cmd, "--model-id BAAI/bge-small-en-v1.5") {
					t.Errorf("%s command %q: want EMBEDDING_MODEL as --model-id", s.Name, cmd)
				}
				if env1(s, "HF_TOKEN") != "<unset>" {
					t.Errorf("%s HF_TOKEN=%q with none in the environment: want it unset", s.Name, env1(s, "HF_TOKEN"))
				}
				gpu := s.Deploy != nil && s.Deploy.Resources.Reservations != nil &&
					slices.ContainsFunc(s.Deploy.Resources.Reservations.Devices, func(d types.DeviceRequest) bool {
						return d.Driver == "nvidia" && slices.Contains(d.Capabilities, "gpu") && slices.Equal(d.IDs, []string{"0"})
					})
				if gpu != (profile == "gpu") {
					t.Errorf("%s deploy %+v: GPU reservation %v, want %v", s.Name, s.Deploy, gpu, profile == "gpu")
				}
				wantImage := "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3"
				if profile == "gpu" {
					wantImage = "ghcr.io/huggingface/text-embeddings-inference:cuda-1.9.3"
				}
				if s.Image != wantImage {
					t.Errorf("%s image %q, want %q", s.Name, s.Image, wantImage)
				}
			}
		})
	}
}

// TestEnvExampleListsEverySetting: every variable the compose files read,
// by interpolation or by passing it through, is in .env.example with a
// comment above it.
func TestEnvExampleListsEverySetting(t *testing.T) {
	listed := envExampleKeys(t)
	for _, file := range []string{rootFile, staticFile, pluginFile} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, m := range regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
			want[m[1]] = true
		}
		files := []string{file}
		if file == pluginFile {
			files = []string{rootFile, pluginFile}
		}
		p := load(t, files, []string{"cpu", "gpu"}, pluginEnv)
		for _, s := range p.Services {
			for k, v := range s.Environment {
				if v == nil {
					want[k] = true // passed through
				}
			}
		}
		delete(want, "COMPOSE_PROJECT_NAME") // compose's own
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if !listed[k] {
				t.Errorf("%s reads %s, which %s does not list", file, k, envExample)
			}
		}
	}
}

// envExampleKeys reads the keys of .env.example's (commented) assignments
// and checks each has a comment line above it.
func envExampleKeys(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	assign := regexp.MustCompile(`^#? ?([A-Z_][A-Z0-9_]*)=`)
	keys := map[string]bool{}
	// A comment line, or a run of them, explains the assignments below it.
	commented := false
	for _, line := range strings.Split(string(raw), "\n") {
		switch m := assign.FindStringSubmatch(line); {
		case m != nil:
			if keys[m[1]] {
				t.Errorf("%s lists %s twice", envExample, m[1])
			}
			keys[m[1]] = true
			if !commented {
				t.Errorf("%s: %s has no comment above it", envExample, m[1])
			}
		case strings.HasPrefix(line, "# "):
			commented = true
		default: // blank lines and section headings
			commented = false
		}
	}
	return keys
}

// pluginEnv are the variables the plugin example requires.
var pluginEnv = map[string]string{"PLUGIN_IMAGE": "retrieval-plugin:test", "PLUGIN_BEARER_TOKEN": "plugin-token"}

// TestPluginExample: the retrieval plugin example merges with compose.yaml,
// reaches the sidecar by service name once it is healthy, and publishes on
// loopback only; without its required settings it does not load.
func TestPluginExample(t *testing.T) {
	p := load(t, []string{rootFile, pluginFile}, nil, pluginEnv)
	checkLoopbackOnly(t, p)
	plugin, ok := p.Services["retrieval-plugin"]
	if !ok {
		t.Fatalf("services %v: no retrieval-plugin", slices.Sorted(maps.Keys(p.Services)))
	}
	for k, want := range map[string]string{
		"OPENAI_API_BASE":     "http://sidecar:8080/v1",
		"EMBEDDING_MODEL":     "BAAI/bge-m3",
		"EMBEDDING_DIMENSION": "1024",
		"BEARER_TOKEN":        "plugin-token",
	} {
		if got := env1(plugin, k); got != want {
			t.Errorf("plugin %s=%q, want %q", k, got, want)
		}
	}
	if dep := plugin.DependsOn[compose.SidecarService]; dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("plugin depends_on %+v: want the sidecar healthy", plugin.DependsOn)
	}
	// The sidecar keeps its own BEARER_TOKEN: the plugin's is another.
	if got := env1(p.Services[compose.SidecarService], "BEARER_TOKEN"); got != "<unset>" {
		t.Errorf("sidecar BEARER_TOKEN=%q, want it untouched by the plugin's", got)
	}

	// Only PLUGIN_IMAGE is missing: compose reports missing variables in no
	// fixed order, so the test leaves it just one to report.
	opts, err := cli.NewProjectOptions([]string{rootFile, pluginFile}, cli.WithEnv([]string{"PLUGIN_BEARER_TOKEN=plugin-token"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.LoadProject(context.Background()); err == nil || !strings.Contains(err.Error(), "PLUGIN_IMAGE") {
		t.Errorf("loading without PLUGIN_IMAGE: %v, want an error naming it", err)
	}
}
