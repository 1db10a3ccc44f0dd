package launch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// attachment is how TEI's containers are reached.
type attachment struct {
	// network, when set, is the sidecar's Docker network, which TEI joins
	// under its container name; nothing is published. Empty means the
	// sidecar runs on the host and TEI publishes its port on 127.0.0.1.
	network string
	// unknown is set when the sidecar runs in a container this engine
	// does not know (Docker in the same container or VM).
	unknown bool
}

// ErrSetup marks an error no retry can fix: the sidecar's own set-up
// keeps it from launching TEI, and must change.
var ErrSetup = errors.New("TEI cannot be launched from here")

// attachment finds how this sidecar reaches TEI. The answer is kept once
// found; a failure (the engine not answering) is not, so a later call
// tries again.
func (d *Docker) attachment(ctx context.Context) (attachment, error) {
	if !d.opts.InContainer {
		return attachment{}, nil
	}
	d.attachMu.Lock()
	defer d.attachMu.Unlock()
	if d.attach != nil {
		return *d.attach, nil
	}
	att, err := d.findNetwork(ctx, true)
	if err != nil {
		return attachment{}, fmt.Errorf("finding the sidecar's Docker network: %w", err)
	}
	if att.network != "" {
		d.log.Info("the sidecar runs in a container: TEI joins its network", "network", att.network)
	}
	d.attach = &att
	return att, nil
}

// findNetwork looks up the sidecar's own container and the network TEI
// should join; none when the sidecar shares the host's network or is not
// one of this engine's containers. On Docker's default bridge it creates a
// network and connects the sidecar to it, unless join is false (a dry run).
func (d *Docker) findNetwork(ctx context.Context, join bool) (attachment, error) {
	cgroup, _ := os.ReadFile("/proc/self/cgroup")
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	hostname, _ := os.Hostname()
	var self *container.InspectResponse
	for _, id := range selfIDCandidates(string(cgroup), string(mountinfo), hostname) {
		res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err == nil {
			self = &res.Container
			break
		}
		if !cerrdefs.IsNotFound(err) && !cerrdefs.IsInvalidArgument(err) {
			// Not an answer about this container: the engine failed.
			return attachment{}, fmt.Errorf("looking up the sidecar's own container: %w", err)
		}
	}
	if self == nil {
		// This process is in a container, but not one of this engine's:
		// the engine shares its network (Docker in the same container or
		// VM), so TEI is reached on loopback as on a host.
		if join { // a dry run says it in its report instead
			d.log.Warn("tei-sidecar runs in a container this Docker engine does not know: publishing TEI on 127.0.0.1 as on a host; " +
				"if TEI is then unreachable, mount the engine's socket into the sidecar's container and keep its default hostname")
		}
		return attachment{unknown: true}, nil
	}
	network, ok, err := networkFor(*self)
	if err != nil {
		return attachment{}, err
	}
	if !ok {
		return attachment{}, nil // host network: publish on loopback as on the host
	}
	if network == "bridge" {
		// Names do not resolve on Docker's default bridge; join the
		// sidecar to a network of its own where they do.
		network = d.opts.Project + "-net"
		if !join {
			return attachment{network: network}, nil
		}
		if err := d.joinNetwork(ctx, network, self.ID); err != nil {
			return attachment{}, err
		}
	}
	return attachment{network: network}, nil
}

var (
	cgroupIDRe    = regexp.MustCompile(`(?:docker[/-]|/containers/)([0-9a-f]{64})`)
	mountinfoIDRe = regexp.MustCompile(`/containers/([0-9a-f]{64})/`)
)

// selfIDCandidates lists the ids this container may have, likeliest first:
// from the cgroup path (cgroup v1, systemd scopes), from mountinfo (the
// container's /etc/hostname comes from /var/lib/docker/containers/<id>/),
// and the hostname, which Docker sets to the short id.
func selfIDCandidates(cgroup, mountinfo, hostname string) []string {
	var out []string
	add := func(id string) {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	for _, m := range cgroupIDRe.FindAllStringSubmatch(cgroup, -1) {
		add(m[1])
	}
	for _, m := range mountinfoIDRe.FindAllStringSubmatch(mountinfo, -1) {
		add(m[1])
	}
	add(strings.TrimSpace(hostname))
	return out
}

// networkFor picks the network of the sidecar's container self that TEI
// joins. ok is false for the host network, where TEI publishes on loopback
// as on the host. The default bridge comes back as "bridge".
func networkFor(self container.InspectResponse) (network string, ok bool, err error) {
	var mode string
	if self.HostConfig != nil {
		mode = string(self.HostConfig.NetworkMode)
	}
	switch {
	case mode == "host":
		return "", false, nil
	case mode == "none":
		return "", false, fmt.Errorf("%w: the sidecar's container has no network (--network none): it cannot reach TEI", ErrSetup)
	case strings.HasPrefix(mode, "container:"):
		return "", false, fmt.Errorf("%w: the sidecar's container shares another container's network (%s): run it on a user-defined network so TEI can join it", ErrSetup, mode)
	}
	var nets []string
	if self.NetworkSettings != nil {
		nets = slices.Sorted(maps.Keys(self.NetworkSettings.Networks))
	}
	if mode == "" || mode == "default" {
		mode = "bridge"
	}
	if slices.Contains(nets, mode) || len(nets) == 0 {
		return mode, true, nil
	}
	return nets[0], true, nil
}

// joinNetwork creates the user-defined network name if needed and connects
// the sidecar's container to it.
func (d *Docker) joinNetwork(ctx context.Context, name, selfID string) error {
	if _, err := d.api.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); cerrdefs.IsNotFound(err) {
		_, err := d.api.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge",
			Labels: map[string]string{LabelManagedBy: managedBy, LabelProject: d.opts.Project}})
		if err != nil && !cerrdefs.IsConflict(err) {
			return fmt.Errorf("creating network %s for TEI: %w", name, err)
		}
	} else if err != nil {
		return fmt.Errorf("inspecting network %s: %w", name, err)
	}
	_, err := d.api.NetworkConnect(ctx, name, client.NetworkConnectOptions{Container: selfID})
	if err != nil && !cerrdefs.IsConflict(err) && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("connecting the sidecar to network %s: %w", name, err)
	}
	return nil
}
