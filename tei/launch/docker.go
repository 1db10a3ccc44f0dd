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
// project; it adopts one whose role and plan hash match its plan and
// replaces one whose hash differs.
const (
	LabelManagedBy = "tei-sidecar.managed-by"
	LabelProject   = "tei-sidecar.project"
	LabelRole      = "tei-sidecar.role"
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
	// Project names the containers (<project>-embed, <project>-rerank) and
	// scopes adoption: sidecars with different projects on one Docker
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
	// CPUFallback re-plans a role for the CPU; the launcher calls it when
	// Docker cannot hand the container a GPU. Nil makes that a failure
	// (TEI_FALLBACK_CPU=false).
	CPUFallback func(plan.Role) (plan.Plan, error)
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
// the API version, so engines from 20.10 on work.
type Docker struct {
	api  *client.Client
	opts DockerOptions
	log  *slog.Logger
	adj  adjuster

	mu        sync.Mutex
	hostPorts map[plan.Role]string

	attachOnce sync.Once
	attach     attachment
	attachErr  error
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

// Close releases the API client's connections.
func (d *Docker) Close() error { return d.api.Close() }

// ContainerName is the name of a role's container: <project>-embed or
// <project>-rerank.
func (d *Docker) ContainerName(role plan.Role) string { return d.opts.Project + "-" + ShortName(role) }

// Launch adopts the running container that matches p, or replaces stale
// ones and starts a new container, then waits until TEI is ready.
func (d *Docker) Launch(ctx context.Context, p plan.Plan) (*Instance, error) {
	if p.Image == "" {
		return nil, fmt.Errorf("the %s plan has no image (backend %s): run it with --launch process", p.Role, p.Backend)
	}
	att, err := d.attachment(ctx)
	if err != nil {
		return nil, err
	}
	log := d.log.With("tei", ShortName(p.Role))
	existing, err := d.managed(ctx, p.Role)
	if err != nil {
		return nil, err
	}
	adopt, remove := decideAdoption(existing, p.Hash())
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
		log.Warn("not adopting the running TEI container: replacing it", "id", shortID(adopt), "err", err.Error())
	}
	return d.adj.run(ctx, p, func(ctx context.Context, hash string, eff plan.Plan, adj adjustment) (*Instance, error) {
		return d.start(ctx, hash, eff, adj, att)
	})
}

// managedContainer is what adoption decisions need of a container.
type managedContainer struct {
	ID      string
	Hash    string
	Running bool
	Created int64
}

// removal is a container to remove and why.
type removal struct{ ID, Why string }

// decideAdoption picks, among a role's containers, the newest running one
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

// managed lists the project's containers for role, running or not.
func (d *Docker) managed(ctx context.Context, role plan.Role) ([]managedContainer, error) {
	f := client.Filters{}.Add("label",
		LabelManagedBy+"="+managedBy, LabelProject+"="+d.opts.Project, LabelRole+"="+string(role))
	res, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing TEI containers: %w", err)
	}
	out := make([]managedContainer, 0, len(res.Items))
	for _, c := range res.Items {
		out = append(out, managedContainer{ID: c.ID, Hash: c.Labels[LabelPlanHash],
			Running: c.State == container.StateRunning, Created: c.Created})
	}
	return out, nil
}

// labels are a container's labels for the plan asked for (hash) as
// adjusted.
func (d *Docker) labels(role plan.Role, hash string, eff plan.Plan, adj adjustment) map[string]string {
	l := map[string]string{
		LabelManagedBy:      managedBy,
		LabelProject:        d.opts.Project,
		LabelRole:           string(role),
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
	name := d.ContainerName(eff.Role)
	port := teiPort(eff.Port)
	cfg := &container.Config{
		Image:        eff.Image,
		Cmd:          eff.Args,
		Env:          containerEnv(eff.Env),
		Labels:       d.labels(eff.Role, hash, eff, adj),
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

func (d *Docker) hostPort(role plan.Role) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hostPorts[role]
}

// rememberPort keeps the role's host port, so a restart keeps the URL.
func (d *Docker) rememberPort(role plan.Role, port string) {
	if port == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hostPorts == nil {
		d.hostPorts = map[plan.Role]string{}
	}
	d.hostPorts[role] = port
}

// start creates and starts a container for eff and waits until it is ready.
func (d *Docker) start(ctx context.Context, hash string, eff plan.Plan, adj adjustment, att attachment) (*Instance, error) {
	log := d.log.With("tei", ShortName(eff.Role))
	if err := d.ensureImage(ctx, eff.Image); err != nil {
		return nil, err
	}
	if filepath.IsAbs(d.opts.ModelCache) && att.network == "" {
		if err := os.MkdirAll(d.opts.ModelCache, 0o755); err != nil {
			return nil, fmt.Errorf("TEI_MODEL_CACHE: %w", err)
		}
	}
	spec := d.spec(hash, eff, adj, att, d.hostPort(eff.Role))
	created, err := d.api.ContainerCreate(ctx, spec)
	if cerrdefs.IsConflict(err) {
		return nil, fmt.Errorf("creating container %s: the name is taken by a container tei-sidecar does not manage: remove it or set TEI_PROJECT: %w", spec.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("creating container %s: %w", spec.Name, err)
	}
	id := created.ID
	begun := time.Now()
	if _, err := d.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		_ = d.remove(context.WithoutCancel(ctx), id)
		return nil, launchError(eff, eff.Image, fmt.Errorf("docker start: %w", err), nil)
	}
	res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		_ = d.remove(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("inspecting container %s: %w", spec.Name, err)
	}
	url, hostPort, urlErr := d.urlOf(res.Container, eff.Port, att)
	sl := newStartLog(log, true)
	inst := d.watch(id, url, eff, sl, "")
	if urlErr != nil {
		// A TEI that fails at once has exited before it was inspected, and
		// Docker has released its port: its log says why.
		select {
		case <-inst.Done():
			urlErr = inst.Err()
		case <-time.After(logsWait):
		}
		_ = inst.Stop(context.WithoutCancel(ctx))
		return nil, launchError(eff, eff.Image, urlErr, sl.tail())
	}
	d.rememberPort(eff.Role, hostPort)
	log.Info("started TEI container", "container", spec.Name, "id", shortID(id), "image", eff.Image,
		"url", url, "gpus", eff.GPUIDs, "max_batch_tokens", eff.MaxBatchTokens)
	rctx, cancel := d.readyContext(ctx)
	defer cancel()
	if err := waitReady(rctx, url, eff, inst.Done()); err != nil {
		if errors.Is(err, errExited) {
			err = inst.Err()
		}
		_ = inst.Stop(context.WithoutCancel(ctx))
		return nil, launchError(eff, eff.Image, err, sl.tail())
	}
	log.Info("TEI is ready", "container", spec.Name, "url", url, "took", time.Since(begun).Round(100*time.Millisecond).String())
	return inst, nil
}

func (d *Docker) readyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.opts.StartupTimeout > 0 {
		return context.WithTimeout(ctx, d.opts.StartupTimeout)
	}
	return context.WithCancel(ctx)
}

// adopt takes over the running container id, started for p by an earlier
// sidecar, once it answers as its labels say it should.
func (d *Docker) adopt(ctx context.Context, p plan.Plan, id string, att attachment) (*Instance, error) {
	res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, err
	}
	c := res.Container
	var labels map[string]string
	if c.Config != nil {
		labels = c.Config.Labels
	}
	adj := adjustmentFrom(labels, p)
	eff, err := d.adj.apply(p, adj)
	if err != nil {
		return nil, err
	}
	url, hostPort, err := d.urlOf(c, eff.Port, att)
	if err != nil {
		return nil, err
	}
	log := d.log.With("tei", ShortName(p.Role))
	sl := newStartLog(log, true)
	inst := d.watch(id, url, eff, sl, strconv.FormatInt(time.Now().Unix(), 10))
	rctx, cancel := d.readyContext(ctx)
	defer cancel()
	if err := waitReady(rctx, url, eff, inst.Done()); err != nil {
		_ = inst.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	d.adj.remember(p.Hash(), adj)
	d.rememberPort(p.Role, hostPort)
	inst.Adopted = true
	log.Info("adopted a running TEI container", "container", strings.TrimPrefix(c.Name, "/"), "id", shortID(id), "url", url)
	return inst, nil
}

// logsWait bounds how long an exit waits for the log stream's last lines.
const logsWait = 2 * time.Second

// watch follows container id's log (from since, "" for all) and its exit.
func (d *Docker) watch(id, url string, p plan.Plan, sl *startLog, since string) *Instance {
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
			inst.exited(&ExitError{Status: int(r.StatusCode), Logs: sl.tail()})
		case err := <-w.Error:
			if stopping.Load() || wctx.Err() != nil {
				inst.exited(ErrStopped)
				return
			}
			inst.exited(fmt.Errorf("lost track of container %s: %w", shortID(id), err))
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

// remove stops and removes container id; a missing one is not an error.
func (d *Docker) remove(ctx context.Context, id string) error {
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
	hash := p.Hash()
	p = p.Redact()
	desc := Description{
		Role:    p.Role,
		Kind:    "docker",
		Program: p.Image,
		Name:    d.ContainerName(p.Role),
		Args:    p.Args,
		Env:     containerEnv(p.Env),
		GPUs:    p.GPUIDs,
		Labels:  d.labels(p.Role, hash, p, adjustment{}),
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
		desc.Address = fmt.Sprintf("127.0.0.1:<port Docker picks> -> %d/tcp (loopback only)", p.Port)
	}
	return desc
}
