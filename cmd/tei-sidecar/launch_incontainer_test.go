package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tei/launch"
	"github.com/tei-sidecar/tei-sidecar/tests/dockertest"
)

// sidecarDockerfile runs a static tei-sidecar from an empty image.
const sidecarDockerfile = `FROM scratch
COPY tei-sidecar /tei-sidecar
ENTRYPOINT ["/tei-sidecar", "serve"]
`

// buildSidecarImage builds a static tei-sidecar into an image named tag.
func buildSidecarImage(t *testing.T, api client.APIClient, tag string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tei-sidecar")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(sidecarDockerfile)}, {"tei-sidecar", 0o755, binary}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := api.ImageBuild(t.Context(), &ctxTar, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if bytes.Contains(out, []byte(`"errorDetail"`)) {
		t.Fatalf("building the sidecar image: %s", out)
	}
	t.Cleanup(func() {
		_, _ = api.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
}

// TestServeInContainerJoinsItsNetwork runs the sidecar itself in a
// container on a user-defined network, with the engine's socket: TEI's
// containers join that network under their names and publish nothing, the
// sidecar reaches them by name, and stopping the sidecar's container
// removes them.
func TestServeInContainerJoinsItsNetwork(t *testing.T) {
	provider := dockertest.Require(t)
	if h := os.Getenv("DOCKER_HOST"); h != "" && h != "unix:///var/run/docker.sock" {
		t.Skipf("mounts the engine's socket into a container; DOCKER_HOST=%s is not the default socket", h)
	}
	api := provider.Client()
	plans := expectedPlans(t)
	for _, p := range plans {
		dockertest.BuildSimImage(t, p.Image)
	}
	stamp := time.Now().UnixNano()
	project := fmt.Sprintf("incontainer-%d", stamp)
	image := fmt.Sprintf("tei-sidecar-test:%d", stamp)
	netName := project + "-net"
	buildSidecarImage(t, api, image)

	ctx := context.Background()
	if _, err := api.NetworkCreate(ctx, netName, client.NetworkCreateOptions{Driver: "bridge"}); err != nil {
		t.Fatal(err)
	}
	var sidecarID string
	t.Cleanup(func() {
		if sidecarID != "" {
			_, _ = api.ContainerRemove(ctx, sidecarID, client.ContainerRemoveOptions{Force: true})
		}
		for id := range teiContainers(t, api, project) {
			_, _ = api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
		}
		_, _ = api.NetworkRemove(ctx, netName, client.NetworkRemoveOptions{})
	})

	port, _ := network.PortFrom(8080, network.TCP)
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: project + "-sidecar",
		Config: &container.Config{
			Image: image,
			Env: []string{"SIDECAR_LISTEN=0.0.0.0:8080", "LOG_FORMAT=json", "TEI_PROJECT=" + project,
				"EMBEDDING_MODEL=" + testEmbedModel, "RERANK_MODEL=" + testRerankModel, "STARTUP_TIMEOUT=60s"},
			ExposedPorts: network.PortSet{port: {}},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:  container.NetworkMode(netName),
			PortBindings: network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1")}}},
			Mounts:       []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sidecarID = created.ID
	if _, err := api.ContainerStart(ctx, sidecarID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	logs := func() string {
		rc, err := api.ContainerLogs(ctx, sidecarID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			return err.Error()
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	res, err := api.ContainerInspect(ctx, sidecarID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:" + res.Container.NetworkSettings.Ports[port][0].HostPort

	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(base + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar in a container never became ready:\n%s", logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := http.Post(base+"/embed", "application/json", strings.NewReader(`{"inputs":"from inside"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("embed through the sidecar's container: %d", resp.StatusCode)
	}

	cs := teiContainers(t, api, project)
	if len(cs) != 2 {
		t.Fatalf("%d TEI containers, want 2:\n%s", len(cs), logs())
	}
	for id, c := range cs {
		res, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		name := project + "-" + launch.ShortName(plan.Role(c.Labels[launch.LabelRole]))
		if n := len(res.Container.HostConfig.PortBindings); n != 0 {
			t.Errorf("%s publishes %d ports, want none", name, n)
		}
		ep := res.Container.NetworkSettings.Networks[netName]
		if ep == nil || !strings.Contains(strings.Join(ep.Aliases, " "), name) {
			t.Errorf("%s is not on %s as %s: %+v", name, netName, name, res.Container.NetworkSettings.Networks)
		}
	}
	if !strings.Contains(logs(), `"url":"http://`+project+`-embed:80"`) {
		t.Errorf("the sidecar does not reach TEI by name:\n%s", logs())
	}

	timeout := 30
	if _, err := api.ContainerStop(ctx, sidecarID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	res, err = api.ContainerInspect(ctx, sidecarID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if code := res.Container.State.ExitCode; code != 0 {
		t.Errorf("the sidecar exited with %d:\n%s", code, logs())
	}
	if left := teiContainers(t, api, project); len(left) != 0 {
		t.Errorf("%d TEI containers left after stopping the sidecar", len(left))
	}
}
