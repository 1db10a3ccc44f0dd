package launch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// Container labels. A sidecar manages the containers labelled with its
// project; it adopts one whose role, replica and plan hash match a plan of
// its own and replaces one whose hash differs, or whose replica is no
// longer planned.
const (
	LabelManagedBy = "tei-sidecar.managed-by"
	LabelProject   = "tei-sidecar.project"
	LabelRole      = "tei-sidecar.role"
	// LabelReplica is the replica's index within its role (plan.Plan's
	// Replica); a container without it, from before replicas, is replica 0.
	LabelReplica = "tei-sidecar.replica"
	// LabelPlanHash is plan.Hash of the plan the sidecar asked for.
	LabelPlanHash = "tei-sidecar.plan-hash"
	// LabelMaxBatchTokens is the --max-batch-tokens TEI runs with, which an
	// out-of-memory step-down may have lowered below the plan's.
	LabelMaxBatchTokens = "tei-sidecar.max-batch-tokens"
	// LabelFallback is "cpu" when the CPU plan replaced a GPU one.
	LabelFallback = "tei-sidecar.fallback"

	managedBy = "tei-sidecar"
)

// Defaults of DockerOptions.
const (
	DefaultProject     = "tei"
	DefaultModelVolume = "tei-sidecar-models"
	// dataDir is where TEI's images keep models.
	dataDir = "/data"
)

// DockerOptions configures a Docker launcher. Zero values are the defaults.
type DockerOptions struct {
	// Project names the containers (<project>-embed, <project>-embed-1, …,
	// <project>-rerank, …: <project>- and plan.Plan.Name) and scopes adoption: sidecars with different projects on one Docker
	// engine leave each other's containers alone (TEI_PROJECT). Empty means
	// "tei".
	Project string
	// ModelCache is mounted at /data, where TEI keeps downloaded models: a
	// named volume, or a host directory when it is an absolute path
	// (TEI_MODEL_CACHE). Empty means the volume tei-sidecar-models.
	ModelCache string
	// Keep leaves containers running when the sidecar stops (TEI_KEEP); a
	// restarted sidecar adopts them.
	Keep bool
	// CPUFallback re-plans a replica for the CPU (see CPUFallback); the
	// launcher calls it when Docker cannot hand the container a GPU. Nil
	// makes that a failure (TEI_FALLBACK_CPU=false).
	CPUFallback func(plan.Plan) (plan.Plan, error)
	// PullProgress receives per-layer progress bars while an image is
	// pulled, when it is a terminal; otherwise progress is logged every few
	// seconds.
	PullProgress io.Writer
	// InContainer says the sidecar itself runs in a container: TEI then
	// joins the sidecar's network under an alias and publishes no port.
	InContainer bool
	// StartupTimeout bounds the wait for a started TEI to be ready (model
	// download, load and warm-up), image pulls excluded. Zero means no
	// bound but Launch's context.
	StartupTimeout time.Duration
}

// Docker runs TEI's images through the Docker Engine API. It negotiates
// the API version, so engines from 20.10 on work. Each replica is a
// container of its own, named <project>-<plan.Plan.Name>.
type Docker struct {
	api  *client.Client
	opts DockerOptions
	log  *slog.Logger
	adj  adjuster
	// ports are the replicas' loopback ports when the sidecar runs on the
	// host.
	ports portBook

	attachMu sync.Mutex
	attach   *attachment // nil until found
}

var _ Launcher = (*Docker)(nil)

// NewDocker returns a launcher for the Docker engine that DOCKER_HOST (or
// the default socket) names. It does not contact the engine; Ping does.
func NewDocker(opts DockerOptions, log *slog.Logger) (*Docker, error) {
	if opts.Project == "" {
		opts.Project = DefaultProject
	}
	if opts.ModelCache == "" {
		opts.ModelCache = DefaultModelVolume
	}
	api, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Docker{api: api, opts: opts, log: log, adj: adjuster{log: log, fallback: opts.CPUFallback}}, nil
}

// Ping checks that the engine answers, and settles the API version.
func (d *Docker) Ping(ctx context.Context) error {
	_, err := d.api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	return err
}

// Close lets go of the ports held for TEI and releases the API client's
// connections. Call it once every Instance has been stopped or released.
func (d *Docker) Close() error {
	d.ports.close()
	return d.api.Close()
}

// ContainerName is the name of a replica's container: <project>- and
// plan.Plan.Name, so tei-embed, tei-embed-1, …, tei-rerank, as `tei-sidecar
// compose` names its services.
func (d *Docker) ContainerName(p plan.Plan) string { return d.opts.Project + "-" + p.Name() }

// Check reports why Launch can never run p, nil when it can.
func (d *Docker) Check(p plan.Plan) error {
	if p.Image == "" {
		return fmt.Errorf("the %s plan has no image (backend %s): run it with --launch process", p.Name(), p.Backend)
	}
	return nil
}

// Address is the base URL replica p has once launched, before it is: on
// the sidecar's network, http://<container name>:<port>; on the host, a
// loopback port kept for p from now on (the one a running container that
// Launch would adopt publishes, else a free one, held until TEI starts).
// It asks the engine, and fails when it cannot answer.
func (d *Docker) Address(ctx context.Context, p plan.Plan) (string, error) {
	att, err := d.attachment(ctx)
	if err != nil {
		return "", err
	}
	if att.network != "" {
		return fmt.Sprintf("http://%s:%d", d.ContainerName(p), p.Port), nil
	}
	if port, ok := d.ports.lookup(p.Name()); ok {
		return loopbackURL(port), nil
	}
	existing, err := d.managed(ctx, p)
	if err != nil {
		return "", err
	}
	if adopt, _ := decideAdoption(existing, planHash(p)); adopt != "" {
		res, err := d.api.ContainerInspect(ctx, adopt, client.ContainerInspectOptions{})
		if err == nil {
			if _, hostPort, err := d.urlOf(res.Container, p.Port, att); err == nil {
				if port, err := strconv.Atoi(hostPort); err == nil {
					d.ports.assign(p.Name(), port)
					return loopbackURL(port), nil
				}
			}
		}
	}
	port, err := d.ports.reserve(p.Name())
	if err != nil {
		return "", fmt.Errorf("reserving a loopback port for %s: %w", p.Name(), err)
	}
	return loopbackURL(port), nil
}

func loopbackURL(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }

// Prune stops and removes the project's containers that no plan of plans
// runs: replicas beyond the counts planned now (EMBEDDING_REPLICAS was
// lowered), or a role no longer planned (RERANK_ENABLE=false).
func (d *Docker) Prune(ctx context.Context, plans []plan.Plan) error {
	all, err := d.projectContainers(ctx)
	if err != nil {
		return err
	}
	planned := func(c managedContainer) bool {
		return slices.ContainsFunc(plans, func(p plan.Plan) bool { return p.Role == c.Role && p.Replica == c.Replica })
	}
	for _, c := range all {
		if planned(c) {
			continue
		}
		d.log.Info("removing a TEI container no longer planned", "container", c.Name, "id", shortID(c.ID))
		if err := d.remove(ctx, c.ID); err != nil {
			return err
		}
	}
	return nil
}

// KeptAPIKey is the API key that the running containers Launch would adopt
// for plans were started with: the key most of them share (see
// commonKey), "" when there are none. A sidecar that starts again with no
// TEI_API_KEY set reuses it, so that it can adopt what an earlier sidecar
// left running (TEI_KEEP, or a crash); containers with another key are
// then replaced, not adopted, as the proxy would get 401 from them.
func (d *Docker) KeptAPIKey(ctx context.Context, plans []plan.Plan) (string, error) {
	all, err := d.projectContainers(ctx)
	if err != nil {
		return "", err
	}
	var keys []string
	for _, p := range plans {
		adopt, _ := decideAdoption(replicaContainers(all, p), planHash(p))
		if adopt == "" {
			continue
		}
		res, err := d.api.ContainerInspect(ctx, adopt, client.ContainerInspectOptions{})
		if err != nil {
			continue // gone since listed: nothing to adopt
		}
		if res.Container.Config != nil {
			keys = append(keys, envValue(res.Container.Config.Env, APIKeyEnv))
		}
	}
	return commonKey(keys), nil
}

// envValue is key's value in a KEY=VALUE list, "" when absent.
func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// errKeyDiffers is a container to adopt that was started with another API
// key than the sidecar's.
var errKeyDiffers = errors.New("it was started with another API key than the sidecar's (TEI_API_KEY)")

// errLostTrack is a container whose exit the engine can no longer report.
var errLostTrack = errors.New("lost track of TEI's container")

// Launch adopts the running container that matches p (its replica, plan
// hash and API key), or replaces stale ones and starts a new container,
// then waits until TEI is ready.
func (d *Docker) Launch(ctx context.Context, p plan.Plan, progress Progress) (*Instance, error) {
	if err := d.Check(p); err != nil {
		return nil, err
	}
	att, err := d.attachment(ctx)
	if err != nil {
		return nil, err
	}
	log := d.log.With("tei", p.Name())
	existing, err := d.managed(ctx, p)
	if err != nil {
		return nil, err
	}
	adopt, remove := decideAdoption(existing, planHash(p))
	for _, r := range remove {
		log.Info("removing a TEI container", "id", shortID(r.ID), "why", r.Why)
		if err := d.remove(ctx, r.ID); err != nil {
			return nil, err
		}
	}
	if adopt != "" {
		inst, err := d.adopt(ctx, p, adopt, att)
		if err == nil {
			return inst, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		log.Warn("not adopting the running TEI container: replacing it", "id", shortID(adopt), "why", err.Error())
		if err := d.remove(ctx, adopt); err != nil {
			return nil, err
		}
	}
	return d.adj.run(ctx, p, func(ctx context.Context, hash string, eff plan.Plan, adj adjustment) (*Instance, error) {
		return d.start(ctx, hash, eff, adj, att, progress)
	})
}

// managedContainer is what adoption decisions need of a container.
type managedContainer struct {
	ID      string
	Name    string
	Role    plan.Role
	Replica int
	Hash    string
	Running bool
	Created int64
}

// removal is a container to remove and why.
type removal struct{ ID, Why string }

// decideAdoption picks, among a replica's containers, the newest running one
// whose plan hash is hash to adopt; every other one is removed: stale (its
// plan changed), exited, or a duplicate.
func decideAdoption(existing []managedContainer, hash string) (adopt string, remove []removal) {
	sorted := slices.Clone(existing)
	slices.SortFunc(sorted, func(a, b managedContainer) int { return cmp.Compare(b.Created, a.Created) })
	for _, c := range sorted {
		switch {
		case c.Hash != hash:
			remove = append(remove, removal{c.ID, "its plan changed (stale)"})
		case !c.Running:
			remove = append(remove, removal{c.ID, "it is not running"})
		case adopt == "":
			adopt = c.ID
		default:
			remove = append(remove, removal{c.ID, "a duplicate"})
		}
	}
	return adopt, remove
}

// projectContainers lists the project's containers, running or not.
func (d *Docker) projectContainers(ctx context.Context) ([]managedContainer, error) {
	f := client.Filters{}.Add("label", LabelManagedBy+"="+managedBy, LabelProject+"="+d.opts.Project)
	res, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing TEI containers: %w", err)
	}
	out := make([]managedContainer, 0, len(res.Items))
	for _, c := range res.Items {
		replica, err := strconv.Atoi(c.Labels[LabelReplica])
		if err != nil {
			replica = 0 // started before replicas existed
		}
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, managedContainer{ID: c.ID, Name: name, Role: plan.Role(c.Labels[LabelRole]), Replica: replica,
			Hash: c.Labels[LabelPlanHash], Running: c.State == container.StateRunning, Created: c.Created})
	}
	return out, nil
}

// replicaContainers are those of all that run p's replica.
func replicaContainers(all []managedContainer, p plan.Plan) []managedContainer {
	var out []managedContainer
	for _, c := range all {
		if c.Role == p.Role && c.Replica == p.Replica {
			out = append(out, c)
		}
	}
	return out
}

// managed lists the project's containers of p's replica, running or not.
func (d *Docker) managed(ctx context.Context, p plan.Plan) ([]managedContainer, error) {
	all, err := d.projectContainers(ctx)
	if err != nil {
		return nil, err
	}
	return replicaContainers(all, p), nil
}

// labels are a container's labels for the plan asked for (hash) as
// adjusted.
func (d *Docker) labels(p plan.Plan, hash string, eff plan.Plan, adj adjustment) map[string]string {
	l := map[string]string{
		LabelManagedBy:      managedBy,
		LabelProject:        d.opts.Project,
		LabelRole:           string(p.Role),
		LabelReplica:        strconv.Itoa(p.Replica),
		LabelPlanHash:       hash,
		LabelMaxBatchTokens: strconv.Itoa(eff.MaxBatchTokens),
	}
	if adj.cpu {
		l[LabelFallback] = "cpu"
	}
	return l
}

// adjustmentFrom reads back from labels what adjusted a container's plan.
func adjustmentFrom(labels map[string]string, planned plan.Plan) adjustment {
	var adj adjustment
	adj.cpu = labels[LabelFallback] == "cpu"
	if n, err := strconv.Atoi(labels[LabelMaxBatchTokens]); err == nil && (adj.cpu || n != planned.MaxBatchTokens) {
		adj.maxBatchTokens = n
	}
	return adj
}

// containerEnv is the container's environment: the plan's, sorted. It
// never holds HOSTNAME, which TEI would read as --hostname.
func containerEnv(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if k != "HOSTNAME" {
			out = append(out, k+"="+env[k])
		}
	}
	return out
}

// gpuRequests asks the NVIDIA runtime for the plan's GPUs.
func gpuRequests(ids []int) []container.DeviceRequest {
	if len(ids) == 0 {
		return nil
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: s, Capabilities: [][]string{{"gpu"}}}}
}

// composeVolumeLabels make the default model cache volume, when the sidecar
// creates it, look like compose.yaml's own volume model-cache of project
// tei-sidecar, so that a later `docker compose up` uses it without warning
// that it "already exists but was not created by Docker Compose" (and
// `docker compose down --volumes` removes it, as it would have).
var composeVolumeLabels = map[string]string{
	"com.docker.compose.project": "tei-sidecar",
	"com.docker.compose.volume":  "model-cache",
	LabelManagedBy:               "tei-sidecar",
}

// ensureVolume creates the model cache volume, when it is one and does not
// exist yet, rather than let Docker create it bare when mounting it.
func (d *Docker) ensureVolume(ctx context.Context) error {
	name := d.opts.ModelCache
	if filepath.IsAbs(name) {
		return nil
	}
	if _, err := d.api.VolumeInspect(ctx, name, client.VolumeInspectOptions{}); err == nil || !cerrdefs.IsNotFound(err) {
		return nil // there already, or Docker will say what is wrong when mounting it
	}
	opts := client.VolumeCreateOptions{Name: name, Labels: map[string]string{LabelManagedBy: "tei-sidecar"}}
	if name == DefaultModelVolume {
		opts.Labels = composeVolumeLabels
	}
	if _, err := d.api.VolumeCreate(ctx, opts); err != nil && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("creating the model cache volume %s: %w", name, err)
	}
	return nil
}

// cacheMount mounts the model cache at /data.
func (d *Docker) cacheMount() mount.Mount {
	if filepath.IsAbs(d.opts.ModelCache) {
		return mount.Mount{Type: mount.TypeBind, Source: d.opts.ModelCache, Target: dataDir}
	}
	return mount.Mount{Type: mount.TypeVolume, Source: d.opts.ModelCache, Target: dataDir}
}

// spec is the container to create for eff; hostPort is the loopback port
// to publish on ("" lets Docker pick).
func (d *Docker) spec(hash string, eff plan.Plan, adj adjustment, att attachment, hostPort string) client.ContainerCreateOptions {
	name := d.ContainerName(eff)
	port := teiPort(eff.Port)
	cfg := &container.Config{
		Image:        eff.Image,
		Cmd:          eff.Args,
		Env:          containerEnv(eff.Env),
		Labels:       d.labels(eff, hash, eff, adj),
		ExposedPorts: network.PortSet{port: {}},
	}
	hc := &container.HostConfig{
		Mounts:        []mount.Mount{d.cacheMount()},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources:     container.Resources{DeviceRequests: gpuRequests(eff.GPUIDs)},
	}
	var nc *network.NetworkingConfig
	if att.network == "" {
		hc.PortBindings = network.PortMap{port: {{HostIP: netip.AddrFrom4([4]byte{127, 0, 0, 1}), HostPort: hostPort}}}
	} else {
		hc.NetworkMode = container.NetworkMode(att.network)
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			att.network: {Aliases: []string{name}},
		}}
	}
	return client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc, NetworkingConfig: nc}
}

func teiPort(n int) network.Port {
	p, _ := network.PortFrom(uint16(n), network.TCP)
	return p
}

// urlOf is where the sidecar reaches TEI in container c, and the host port
// it is published on ("" when on the sidecar's network).
func (d *Docker) urlOf(c container.InspectResponse, port int, att attachment) (url, hostPort string, err error) {
	if att.network != "" {
		return fmt.Sprintf("http://%s:%d", strings.TrimPrefix(c.Name, "/"), port), "", nil
	}
	if c.NetworkSettings != nil {
		for _, b := range c.NetworkSettings.Ports[teiPort(port)] {
			if b.HostPort != "" {
				return "http://127.0.0.1:" + b.HostPort, b.HostPort, nil
			}
		}
	}
	return "", "", fmt.Errorf("container %s publishes no host port for %d/tcp", shortID(c.ID), port)
}

// start creates and starts a container for eff and waits until it is ready.
func (d *Docker) start(ctx context.Context, hash string, eff plan.Plan, adj adjustment, att attachment, progress Progress) (*Instance, error) {
	name := eff.Name()
	log := d.log.With("tei", name)
	if err := d.ensureImage(ctx, eff.Image, progress); err != nil {
		return nil, err
	}
	if filepath.IsAbs(d.opts.ModelCache) && att.network == "" {
		if err := os.MkdirAll(d.opts.ModelCache, 0o755); err != nil {
			return nil, fmt.Errorf("TEI_MODEL_CACHE: %w", err)
		}
	}
	if err := d.ensureVolume(ctx); err != nil {
		return nil, err
	}
	hostPort := ""
	if att.network == "" {
		port, err := d.ports.reserve(name)
		if err != nil {
			return nil, fmt.Errorf("reserving a loopback port for %s: %w", name, err)
		}
		hostPort = strconv.Itoa(port)
	}
	spec := d.spec(hash, eff, adj, att, hostPort)
	created, err := d.api.ContainerCreate(ctx, spec)
	if cerrdefs.IsConflict(err) {
		return nil, fmt.Errorf("creating container %s: %w: %w", spec.Name, errNameTaken, err)
	}
	if err != nil {
		return nil, fmt.Errorf("creating container %s: %w", spec.Name, err)
	}
	id := created.ID
	begun := time.Now()
	progress.report("starting TEI's container")
	d.ports.release(name) // TEI's port is published from now on
	if _, err := d.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		d.cleanup(id)
		d.ports.hold(name)
		return nil, launchError(eff, eff.Image, fmt.Errorf("docker start: %w", err), nil)
	}
	res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		d.cleanup(id)
		d.ports.hold(name)
		return nil, fmt.Errorf("inspecting container %s: %w", spec.Name, err)
	}
	url, _, urlErr := d.urlOf(res.Container, eff.Port, att)
	sl := newStartLog(log, true, eff, progress)
	inst := d.watch(id, url, name, eff, sl, "")
	if urlErr != nil {
		// A TEI that fails at once has exited before it was inspected, and
		// Docker has released its port: its log says why.
		select {
		case <-inst.Done():
			urlErr = inst.Err()
		case <-time.After(logsWait):
		}
		d.stopFailed(inst)
		return nil, launchError(eff, eff.Image, urlErr, sl.tail())
	}
	log.Info("started TEI container", "container", spec.Name, "id", shortID(id), "image", eff.Image,
		"url", url, "gpus", eff.GPUIDs, "max_batch_tokens", eff.MaxBatchTokens)
	rctx, cancel := d.readyContext(ctx)
	defer cancel()
	if err := waitReady(rctx, url, eff, inst.Done()); err != nil {
		if errors.Is(err, errExited) {
			err = inst.Err()
		}
		d.stopFailed(inst)
		return nil, launchError(eff, eff.Image, err, sl.tail())
	}
	log.Info("TEI is ready", "container", spec.Name, "url", url, "took", time.Since(begun).Round(100*time.Millisecond).String())
	return inst, nil
}

// cleanupTimeout bounds stopping and removing one container.
const cleanupTimeout = 30 * time.Second

// cleanup removes container id after a failed start, logging what it
// could not do.
func (d *Docker) cleanup(id string) {
	if err := d.remove(context.Background(), id); err != nil {
		d.log.Warn("removing a TEI container that failed to start", "id", shortID(id), "err", err.Error())
	}
}

// stopFailed stops an instance whose start failed, logging what it could
// not do.
func (d *Docker) stopFailed(inst *Instance) {
	if err := inst.Stop(context.Background()); err != nil {
		d.log.Warn("removing a TEI container that failed to start", "id", inst.ID, "err", err.Error())
	}
}

func (d *Docker) readyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.opts.StartupTimeout > 0 {
		return context.WithTimeout(ctx, d.opts.StartupTimeout)
	}
	return context.WithCancel(ctx)
}

// adopt takes over the running container id, started for p by an earlier
// sidecar, once it answers as its labels say it should. It refuses one
// started with another API key than p's, or publishing another port than
// the one booked for p, whose URL the proxy already has.
func (d *Docker) adopt(ctx context.Context, p plan.Plan, id string, att attachment) (*Instance, error) {
	res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, err
	}
	c := res.Container
	var labels map[string]string
	var env []string
	if c.Config != nil {
		labels, env = c.Config.Labels, c.Config.Env
	}
	adj := adjustmentFrom(labels, p)
	eff, err := d.adj.apply(p, adj)
	if err != nil {
		return nil, err
	}
	if envValue(env, APIKeyEnv) != apiKey(eff) {
		return nil, errKeyDiffers
	}
	url, hostPort, err := d.urlOf(c, eff.Port, att)
	if err != nil {
		return nil, err
	}
	if hostPort != "" {
		port, err := strconv.Atoi(hostPort)
		if err != nil {
			return nil, fmt.Errorf("container %s publishes port %q", shortID(id), hostPort)
		}
		if booked, ok := d.ports.lookup(p.Name()); ok && booked != port {
			return nil, fmt.Errorf("it publishes port %d, not %d, where the sidecar expects %s", port, booked, p.Name())
		}
		d.ports.assign(p.Name(), port)
	}
	log := d.log.With("tei", p.Name())
	sl := newStartLog(log, true, eff, nil)
	inst := d.watch(id, url, p.Name(), eff, sl, strconv.FormatInt(time.Now().Unix(), 10))
	rctx, cancel := d.readyContext(ctx)
	defer cancel()
	if err := waitReady(rctx, url, eff, inst.Done()); err != nil {
		// Stop watching it; Launch removes it.
		if rerr := inst.Release(context.WithoutCancel(ctx)); rerr != nil {
			log.Warn("removing a TEI container that could not be adopted", "id", shortID(id), "err", rerr.Error())
		}
		return nil, err
	}
	d.adj.remember(planHash(p), adj)
	inst.Adopted = true
	log.Info("adopted a running TEI container", "container", strings.TrimPrefix(c.Name, "/"), "id", shortID(id), "url", url)
	return inst, nil
}

// logsWait bounds how long an exit waits for the log stream's last lines.
const logsWait = 2 * time.Second

// watch follows container id's log (from since, "" for all) and its exit.
// name is the replica's, whose booked port is held again once TEI has let
// go of it.
func (d *Docker) watch(id, url, name string, p plan.Plan, sl *startLog, since string) *Instance {
	wctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var stopping atomic.Bool
	logsDone := make(chan struct{})
	var inst *Instance
	inst = newInstance(url, p, shortID(id), d.opts.Keep, func(ctx context.Context, keep bool) error {
		stopping.Store(true)
		var err error
		if !keep {
			err = d.remove(ctx, id)
			d.ports.hold(name)
		}
		cancel()
		wg.Wait()
		inst.exited(ErrStopped)
		return err
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(logsDone)
		d.follow(wctx, id, since, sl)
	}()
	go func() {
		defer wg.Done()
		w := d.api.ContainerWait(wctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		select {
		case r := <-w.Result:
			select {
			case <-logsDone:
			case <-time.After(logsWait):
			}
			if stopping.Load() {
				inst.exited(ErrStopped)
				return
			}
			d.ports.hold(name)
			inst.exited(&ExitError{Status: int(r.StatusCode), Logs: sl.tail(), Phase: sl.currentPhase()})
		case err := <-w.Error:
			if stopping.Load() || wctx.Err() != nil {
				inst.exited(ErrStopped)
				return
			}
			inst.exited(fmt.Errorf("%w %s: %w", errLostTrack, shortID(id), err))
		}
	}()
	return inst
}

// follow streams the container's log into sl until it ends or ctx does.
func (d *Docker) follow(ctx context.Context, id, since string, sl *startLog) {
	rc, err := d.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Since: since})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("cannot follow TEI's log", "id", shortID(id), "err", err.Error())
		}
		return
	}
	defer rc.Close()
	stdout, stderr := &lineWriter{fn: sl.line}, &lineWriter{fn: sl.line}
	_, _ = stdcopy.StdCopy(stdout, stderr, rc)
	stdout.flush()
	stderr.flush()
}

// stopTimeout is how long TEI may take to exit before Docker kills it.
const stopTimeout = 10

// remove stops and removes container id, within cleanupTimeout; a missing
// one is not an error.
func (d *Docker) remove(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	timeout := stopTimeout
	if _, err := d.api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		d.log.Warn("stopping TEI container", "id", shortID(id), "err", err.Error())
	}
	if _, err := d.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: %w", shortID(id), err)
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Describe says what Launch would run for p, for --dry-run. It asks the
// engine only where the sidecar runs in a container, and changes nothing.
func (d *Docker) Describe(ctx context.Context, p plan.Plan) Description {
	hash := planHash(p)
	p = p.Redact()
	desc := Description{
		Role:    p.Role,
		Kind:    "docker",
		Program: p.Image,
		Name:    d.ContainerName(p),
		Args:    p.Args,
		Env:     containerEnv(p.Env),
		GPUs:    p.GPUIDs,
		Labels:  d.labels(p, hash, p, adjustment{}),
	}
	m := d.cacheMount()
	desc.ModelCache = fmt.Sprintf("%s %s at %s", m.Type, m.Source, m.Target)
	var att attachment
	var err error
	if d.opts.InContainer {
		att, err = d.findNetwork(ctx, false) // changes nothing
	}
	switch {
	case err != nil:
		desc.Address = "unknown: " + err.Error()
	case att.network != "":
		desc.Address = fmt.Sprintf("http://%s:%d on the sidecar's Docker network %s; no port published", desc.Name, p.Port, att.network)
	default:
		desc.Address = fmt.Sprintf("127.0.0.1:<a free port, reserved at start> -> %d/tcp (loopback only)", p.Port)
		if att.unknown {
			desc.Address += "; the sidecar runs in a container this engine does not know, so TEI is published as on a host"
		}
	}
	switch _, err := d.api.ImageInspect(ctx, p.Image); {
	case err == nil:
		desc.Image = "present locally"
	case cerrdefs.IsNotFound(err):
		desc.Image = "not present locally: it will be pulled at start (or `docker load` it where no registry is reachable)"
	default:
		desc.Image = "unknown: " + err.Error()
	}
	return desc
}
