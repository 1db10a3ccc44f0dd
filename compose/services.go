// Package compose writes TEI's services as a Docker Compose file, from a
// launch plan, for people who declare TEI in compose instead of letting the
// sidecar start it through the Docker socket. The file it writes runs as it
// is: one TEI service per planned replica, tuned for the hardware and
// reserving its GPU, the sidecar proxying to them, and a named volume for
// the model cache.
//
// It depends on nothing of Compose's own: the repository's tests check its
// output with Compose's loader, which stays out of the shipped binary.
package compose

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// Defaults of Options, shared with the compose files in this directory.
const (
	// DefaultSidecarImage is what compose.yaml builds the sidecar as.
	DefaultSidecarImage = "tei-sidecar:local"
	// DefaultModelCache is the model cache volume's name: the launcher's
	// default too, so models downloaded either way are shared.
	DefaultModelCache = "tei-sidecar-models"
	// VolumeKey is the volume's key in the file; its name comes from
	// TEI_MODEL_CACHE.
	VolumeKey = "model-cache"
	// SidecarService is the sidecar's service name.
	SidecarService = "sidecar"
	// SidecarBinary is where the image keeps tei-sidecar.
	SidecarBinary = "/usr/local/bin/tei-sidecar"
	// SidecarPort is the port the sidecar listens on inside its container.
	SidecarPort = 8080
	// dataDir is where TEI's images keep models.
	dataDir = "/data"
)

// ErrNative is returned for a plan that runs TEI natively (Apple Metal),
// which no container can.
var ErrNative = errors.New("TEI runs natively on Apple Silicon (Docker cannot reach Metal), so there is no container to declare: " +
	"run `brew install text-embeddings-inference` and `tei-sidecar serve` natively, or set EMBEDDING_DEVICE=cpu for CPU containers")

// Options shapes the file. Zero values are the defaults.
type Options struct {
	// SidecarImage is the sidecar's image. Empty means DefaultSidecarImage.
	SidecarImage string
	// NoSidecar leaves the sidecar service out: TEI's services and the
	// volume only.
	NoSidecar bool
}

// File is the part of the Compose specification this package writes.
// Field order is the order in the output.
type File struct {
	Name     string             `yaml:"name,omitempty"`
	Services map[string]Service `yaml:"services"`
	Volumes  map[string]Volume  `yaml:"volumes,omitempty"`
}

// Service is one service. A nil Environment value passes the variable from
// the environment compose runs in, and leaves it unset when absent there.
type Service struct {
	Image           string             `yaml:"image"`
	Command         Flow               `yaml:"command,omitempty"`
	Environment     map[string]*string `yaml:"environment,omitempty"`
	Ports           []string           `yaml:"ports,omitempty"`
	Volumes         []string           `yaml:"volumes,omitempty"`
	Deploy          *Deploy            `yaml:"deploy,omitempty"`
	Healthcheck     *Healthcheck       `yaml:"healthcheck,omitempty"`
	Restart         string             `yaml:"restart,omitempty"`
	StopGracePeriod string             `yaml:"stop_grace_period,omitempty"`
}

// Deploy holds the GPU reservation.
type Deploy struct {
	Resources Resources `yaml:"resources"`
}

// Resources holds reservations.
type Resources struct {
	Reservations Reservations `yaml:"reservations"`
}

// Reservations holds device requests.
type Reservations struct {
	Devices []Device `yaml:"devices"`
}

// Device asks Docker for GPUs, as `docker run --gpus device=N` does.
type Device struct {
	Driver       string   `yaml:"driver"`
	DeviceIDs    []string `yaml:"device_ids"`
	Capabilities []string `yaml:"capabilities"`
}

// Healthcheck runs a command in the container without a shell.
type Healthcheck struct {
	Test        Flow   `yaml:"test"`
	Interval    string `yaml:"interval,omitempty"`
	Timeout     string `yaml:"timeout,omitempty"`
	StartPeriod string `yaml:"start_period,omitempty"`
	Retries     int    `yaml:"retries,omitempty"`
}

// Flow is a list written on one line, as a command reads best.
type Flow []string

// MarshalYAML writes the list in flow style.
func (f Flow) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, s := range f {
		var item yaml.Node
		if err := item.Encode(s); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &item)
	}
	return n, nil
}

// Volume is a named volume.
type Volume struct {
	Name string `yaml:"name,omitempty"`
}

// ServiceName is a replica's service: "tei-" and the plan's name, so
// tei-embed, tei-embed-1, …, tei-rerank, tei-rerank-1, …. The first replica
// keeps the plain name, so a one-replica file is the file of before
// replicas, and the names match the containers the launcher starts under
// its default project (tei).
func ServiceName(p plan.Plan) string { return "tei-" + p.Name() }

// SidecarHealthcheck is the sidecar's health check: its own binary asks
// /ready, so the image needs no shell or curl.
func SidecarHealthcheck() *Healthcheck {
	return &Healthcheck{
		Test:     []string{"CMD", SidecarBinary, "healthcheck"},
		Interval: "15s", Timeout: "5s", StartPeriod: "10m", Retries: 3,
	}
}

// Build turns a plan into a compose file.
func Build(res plan.Result, opts Options) (File, error) {
	f := File{
		Services: map[string]Service{},
		Volumes:  map[string]Volume{VolumeKey: {Name: "${TEI_MODEL_CACHE:-" + DefaultModelCache + "}"}},
	}
	if len(res.Plans) == 0 {
		return File{}, errors.New("the plan launches nothing")
	}
	urls := map[plan.Role][]string{}
	for _, p := range res.Plans {
		if p.Backend == plan.BackendNative {
			return File{}, ErrNative
		}
		name := ServiceName(p)
		if p.Image == "" {
			return File{}, fmt.Errorf("the %s plan has no image", name)
		}
		if _, dup := f.Services[name]; dup {
			return File{}, fmt.Errorf("two plans are named %s", name)
		}
		f.Services[name] = teiService(p)
		urls[p.Role] = append(urls[p.Role], fmt.Sprintf("http://%s:%d", name, p.Port))
	}
	if !opts.NoSidecar {
		f.Services[SidecarService] = sidecarService(res, urls, opts)
	}
	return f, nil
}

// teiService declares one plan's TEI container.
func teiService(p plan.Plan) Service {
	s := Service{
		Image:       escape(p.Image),
		Command:     make(Flow, len(p.Args)),
		Environment: map[string]*string{},
		Volumes:     []string{VolumeKey + ":" + dataDir},
		Restart:     "unless-stopped",
	}
	for i, a := range p.Args {
		s.Command[i] = escape(a)
	}
	for k, v := range p.Env {
		if slices.Contains(p.SecretEnv, k) {
			// A reference: the value stays in the user's environment.
			v = "${" + k + "}"
		} else {
			v = escape(v)
		}
		s.Environment[k] = &v
	}
	if len(p.GPUIDs) > 0 {
		ids := make([]string, len(p.GPUIDs))
		for i, id := range p.GPUIDs {
			ids[i] = strconv.Itoa(id)
		}
		s.Deploy = &Deploy{Resources: Resources{Reservations: Reservations{Devices: []Device{
			{Driver: "nvidia", DeviceIDs: ids, Capabilities: []string{"gpu"}},
		}}}}
	}
	return s
}

// sidecarService declares the sidecar proxying to TEI at urls: each role's
// replicas as a comma-separated list, in replica order.
func sidecarService(res plan.Result, urls map[plan.Role][]string, opts Options) Service {
	env := map[string]*string{}
	set := func(k, v string) { env[k] = &v }
	set("TEI_LAUNCH", "none")
	set("TEI_EMBED_URL", strings.Join(urls[plan.RoleEmbedding], ","))
	if u, ok := urls[plan.RoleRerank]; ok {
		set("TEI_RERANK_URL", strings.Join(u, ","))
	}
	ps := res.Plugin
	set("EMBEDDING_CACHE_SIZE", strconv.Itoa(ps.CacheSize))
	set("RERANK_ENABLE", strconv.FormatBool(ps.RerankEnable))
	set("RERANK_K", strconv.Itoa(ps.RerankK))
	set("RERANK_FINAL_N", strconv.Itoa(ps.RerankFinalN))
	// Secrets and the user's own choices pass through from the
	// environment compose runs in, when set there.
	for _, k := range []string{"BEARER_TOKEN", "TEI_API_KEY", "MODEL_ALIASES", "EMBEDDING_MODEL_ALIASES", "RERANK_MODEL_ALIASES",
		"MODEL_ACCEPT_ANY", "CORS_ALLOW_ORIGIN", "CACHE_REDIS_URL", "CACHE_NAMESPACE", "ACCESS_LOG",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME",
		"LOG_LEVEL", "LOG_FORMAT"} {
		env[k] = nil
	}
	return Service{
		Image:           escape(cmp.Or(opts.SidecarImage, DefaultSidecarImage)),
		Environment:     env,
		Ports:           []string{fmt.Sprintf("127.0.0.1:${SIDECAR_PORT:-%d}:%d", SidecarPort, SidecarPort)},
		Healthcheck:     SidecarHealthcheck(),
		Restart:         "unless-stopped",
		StopGracePeriod: "30s",
	}
}

// Write writes f as YAML after a comment header that names the platform,
// the plans and their warnings.
func Write(w io.Writer, res plan.Result, f File) error {
	var b bytes.Buffer
	comment := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		b.WriteString("# " + strings.ReplaceAll(line, "\n", " ") + "\n")
	}
	comment("Generated by `tei-sidecar compose` for %s.", res.Platform)
	for _, p := range res.Plans {
		comment("%s: %s on %s with %s", ServiceName(p), p.Model, p.Device, p.Image)
	}
	for _, warn := range res.Warnings {
		comment("warning: %s", warn)
	}
	said := map[string]bool{}
	for _, p := range res.Plans {
		for _, warn := range p.Warnings {
			// A role's replicas mostly share their warnings: say each once.
			if key := string(p.Role) + "\x00" + warn; !said[key] {
				said[key] = true
				comment("warning (%s): %s", ServiceName(p), warn)
			}
		}
	}
	if _, ok := f.Services[SidecarService]; ok {
		comment("Run: docker compose -f <this file> up -d; the sidecar answers on http://127.0.0.1:${SIDECAR_PORT:-8080}.")
	}
	comment("Variables given as null pass through from the shell or .env when set there; ${NAME} ones are read from there.")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// escape keeps compose from interpolating a literal value: $ becomes $$.
func escape(s string) string { return strings.ReplaceAll(s, "$", "$$") }

// SecretKeys lists the environment keys of the plans that hold secrets, so a
// caller can tell the user which variables the file expects.
func SecretKeys(res plan.Result) []string {
	keys := map[string]bool{}
	for _, p := range res.Plans {
		for _, k := range p.SecretEnv {
			keys[k] = true
		}
	}
	return slices.Sorted(maps.Keys(keys))
}
