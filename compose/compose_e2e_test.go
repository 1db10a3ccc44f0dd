package compose_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tccompose "github.com/testcontainers/testcontainers-go/modules/compose"

	"github.com/tei-sidecar/tei-sidecar/compose"
	"github.com/tei-sidecar/tei-sidecar/tei/launch"
	"github.com/tei-sidecar/tei-sidecar/tests/dockertest"
)

// Images the end-to-end test uses. TEI's CPU image is the simulator under
// TEI's tag; the sidecar's is built from the repository's Dockerfile.
const (
	teiCPUImage  = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3"
	e2eImage     = "tei-sidecar:compose-e2e"
	golangImage  = "golang:1.26-bookworm"
	e2eEmbedding = "BAAI/bge-small-en-v1.5"
)

// Compose's labels.
const (
	composeProject = "com.docker.compose.project"
	composeService = "com.docker.compose.service"
)

// TestComposeUpServesEmbedAndRerank brings up compose.yaml, the file
// `docker compose up` runs, with the sidecar image built from the real
// Dockerfile and the simulator as TEI's CPU image. The sidecar must launch
// TEI through the mounted socket on the project's network, answer embed and
// rerank on the loopback port it publishes, report healthy through its
// shell-less health check, and on `compose down` remove what it launched,
// so that nothing of the project is left.
func TestComposeUpServesEmbedAndRerank(t *testing.T) {
	s := upStack(t, []string{rootFile}, nil)

	// TEI runs as two containers the sidecar launched, named after the
	// project, on the project's network, publishing nothing.
	launched := launchedContainers(t, s.api, s.project)
	if len(launched) != 2 {
		t.Fatalf("launched containers %v, want embed and rerank", names(launched))
	}
	for _, c := range launched {
		if c.Image != teiCPUImage {
			t.Errorf("%s runs %s, want %s", c.Names, c.Image, teiCPUImage)
		}
		for _, p := range c.Ports {
			if p.PublicPort != 0 {
				t.Errorf("%s publishes %+v", c.Names, p)
			}
		}
		if c.NetworkSettings == nil || c.NetworkSettings.Networks[s.project+"_default"] == nil {
			t.Errorf("%s is not on %s_default", c.Names, s.project)
		}
		if !mountsVolume(c, s.volume) {
			t.Errorf("%s mounts %+v, want the volume %s at /data", c.Names, c.Mounts, s.volume)
		}
	}

	s.checkEmbedAndRerank(t)
	// Docker's own health check, run in the image without a shell.
	waitHealthy(t, s.api, s.sidecar, time.Minute)

	// compose down: SIGTERM to the sidecar, which removes what it launched
	// (else the network could not be removed either); then compose removes
	// its containers, network and volume.
	s.down(t)
	if left := launchedContainers(t, s.api, s.project); len(left) > 0 {
		t.Errorf("the sidecar left its TEI containers behind: %v", names(left))
	}
}

// TestComposeStaticProfileServes brings up compose/static.yaml with the cpu
// profile: TEI declared in compose, no Docker socket.
func TestComposeStaticProfileServes(t *testing.T) {
	s := upStack(t, []string{staticFile}, []string{"cpu"})
	for _, svc := range []string{"tei-embed-cpu", "tei-rerank-cpu"} {
		serviceContainer(t, s.api, s.project, svc)
	}
	sc := inspect(t, s.api, s.sidecar)
	for _, m := range sc.Mounts {
		if strings.Contains(m.Source, "docker.sock") {
			t.Errorf("the static sidecar mounts %s", m.Source)
		}
	}
	s.checkEmbedAndRerank(t)
	s.down(t)
}

// stack is a compose project the test brought up.
type stack struct {
	*tccompose.DockerCompose
	api     client.APIClient
	project string
	volume  string
	base    string // the sidecar's published address
	sidecar string // its container id
}

// upStack builds the images, brings up files with profiles under a project
// of its own and waits until the sidecar is ready. Whatever happens, nothing
// of the project outlives the test.
func upStack(t *testing.T, files, profiles []string) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("builds images and runs compose")
	}
	provider := dockertest.Require(t)
	api := provider.Client()
	dockertest.BuildSimImage(t, teiCPUImage)
	sidecarImage(t, provider)

	s := &stack{api: api, project: fmt.Sprintf("tei-compose-e2e-%d", time.Now().UnixNano()%1e9)}
	s.volume = s.project + "-models"
	port := freePort(t)
	s.base = "http://127.0.0.1:" + strconv.Itoa(port)
	// compose reads the environment it runs in; testcontainers' compose
	// refuses a variable given twice, so they are set here alone.
	t.Setenv("SIDECAR_IMAGE", e2eImage)
	t.Setenv("SIDECAR_PORT", strconv.Itoa(port))
	t.Setenv("TEI_MODEL_CACHE", s.volume)
	t.Setenv("EMBEDDING_MODEL", e2eEmbedding)
	t.Setenv("LOG_FORMAT", "json")
	t.Cleanup(func() { forceRemove(t, api, s.project, s.volume) })

	dc, err := tccompose.NewDockerComposeWith(tccompose.WithStackFiles(files...), tccompose.StackIdentifier(s.project), tccompose.WithProfiles(profiles...))
	if err != nil {
		t.Fatal(err)
	}
	s.DockerCompose = dc
	t.Cleanup(func() { _ = dc.Close() })
	start := time.Now()
	if err := dc.Up(t.Context(), tccompose.RemoveOrphans(true)); err != nil {
		t.Fatalf("compose up: %v", err)
	}
	s.sidecar = serviceContainer(t, api, s.project, compose.SidecarService)
	// Its logs, followed from the start, outlive its container.
	logs := followLogs(t, api, s.sidecar)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sidecar logs:\n%s", logs())
		}
	})

	waitReady(t, s.base+"/ready", 3*time.Minute)
	t.Logf("compose up to ready in %s", time.Since(start).Round(time.Second))
	// The sidecar publishes on loopback only.
	for _, b := range inspect(t, api, s.sidecar).HostConfig.PortBindings {
		for _, hb := range b {
			if !hb.HostIP.IsLoopback() {
				t.Errorf("sidecar binds %s:%s", hb.HostIP, hb.HostPort)
			}
		}
	}
	return s
}

// checkEmbedAndRerank calls the sidecar through its published port.
func (s *stack) checkEmbedAndRerank(t *testing.T) {
	t.Helper()
	var info struct {
		ModelID string `json:"model_id"`
	}
	call(t, http.MethodGet, s.base+"/info", "", &info)
	if info.ModelID != e2eEmbedding {
		t.Errorf("/info model_id %q, want EMBEDDING_MODEL from the environment, %q", info.ModelID, e2eEmbedding)
	}
	var vectors [][]float32
	call(t, http.MethodPost, s.base+"/embed", `{"inputs": ["What is deep learning?", "Cooking pasta"]}`, &vectors)
	if len(vectors) != 2 || len(vectors[0]) != 384 {
		t.Errorf("/embed answered %d vectors of %d dimensions, want 2 of 384", len(vectors), dim(vectors))
	}
	var ranks []struct {
		Index int     `json:"index"`
		Score float64 `json:"score"`
	}
	call(t, http.MethodPost, s.base+"/rerank", `{"query": "What is deep learning?", "texts": ["Deep learning is...", "Cooking pasta", "Neural networks"]}`, &ranks)
	if len(ranks) != 3 || ranks[0].Score < ranks[2].Score {
		t.Errorf("/rerank answered %+v, want 3 results by score", ranks)
	}
}

// down runs `compose down --remove-orphans --volumes` and checks that none
// of the project's containers, networks or its volume are left.
func (s *stack) down(t *testing.T) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	start := time.Now()
	if err := s.Down(ctx, tccompose.RemoveOrphans(true), tccompose.RemoveVolumes(true)); err != nil {
		t.Fatalf("compose down: %v", err)
	}
	t.Logf("compose down in %s", time.Since(start).Round(time.Second))
	if left := listContainers(t, s.api, composeProject+"="+s.project); len(left) > 0 {
		t.Errorf("compose down left containers: %v", names(left))
	}
	nets, err := s.api.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", composeProject+"="+s.project)})
	if err != nil {
		t.Fatal(err)
	}
	if len(nets.Items) > 0 {
		t.Errorf("compose down left %d networks", len(nets.Items))
	}
	vols, err := s.api.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("name", s.volume)})
	if err != nil {
		t.Fatal(err)
	}
	if len(vols.Items) > 0 {
		t.Errorf("compose down --volumes left the volume %s", s.volume)
	}
}

var sidecarBuild struct {
	once sync.Once
	err  error
}

// sidecarImage builds the sidecar's image once per test process, with its
// build stage made available first, and checks it.
func sidecarImage(t *testing.T, provider *testcontainers.DockerProvider) {
	t.Helper()
	sidecarBuild.once.Do(func() {
		start := time.Now()
		if sidecarBuild.err = ensureGolangImage(t.Context()); sidecarBuild.err != nil {
			return
		}
		t.Logf("%s ready in %s", golangImage, time.Since(start).Round(time.Second))
		start = time.Now()
		if sidecarBuild.err = buildSidecarImage(t.Context(), provider, e2eImage); sidecarBuild.err != nil {
			return
		}
		t.Logf("%s built from the Dockerfile in %s", e2eImage, time.Since(start).Round(time.Second))
		checkImage(t, provider.Client(), e2eImage)
	})
	if sidecarBuild.err != nil {
		t.Fatal(sidecarBuild.err)
	}
}

// ensureGolangImage makes golang:1.26-bookworm, the Dockerfile's build
// stage, available without a registry: testdata/make-golang-image.sh builds
// a stand-in once per machine and does nothing when the image exists.
func ensureGolangImage(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", filepath.Join("testdata", "make-golang-image.sh"), golangImage).CombinedOutput()
	if err != nil {
		return fmt.Errorf("making %s: %w\n%s", golangImage, err, out)
	}
	return nil
}

// buildSidecarImage builds the repository's Dockerfile as users do, from a
// copy of the working tree that carries vendor/ (made by `go mod vendor`),
// so the build needs no network. The copy leaves out tests, whose
// dependencies the image does not need.
func buildSidecarImage(ctx context.Context, provider *testcontainers.DockerProvider, tag string) error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tei-sidecar-context-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files, err := exec.CommandContext(ctx, "git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard", "-z").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		if f == "" || strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "vendor/") || strings.HasPrefix(f, "tests/") ||
			strings.Contains("/"+f, "/testdata/") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	vendor := exec.CommandContext(ctx, "go", "mod", "vendor")
	vendor.Dir = dir
	vendor.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := vendor.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod vendor: %w\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	version := "compose-e2e"
	repo, tagName, _ := strings.Cut(tag, ":")
	var log bytes.Buffer
	_, err = provider.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context:        dir,
		Dockerfile:     "Dockerfile",
		Repo:           repo,
		Tag:            tagName,
		BuildArgs:      map[string]*string{"VERSION": &version},
		KeepImage:      true,
		BuildLogWriter: &log,
	}})
	if err != nil {
		return fmt.Errorf("docker build: %w\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "building offline") {
		return fmt.Errorf("the build did not use vendor/:\n%s", log.String())
	}
	return nil
}

// checkImage logs the image's size and checks what the Dockerfile promises:
// a non-root user, the listen address, a shell-less health check, and a
// binary free of the test-only compose modules.
func checkImage(t *testing.T, api client.APIClient, tag string) {
	t.Helper()
	res, err := api.ImageInspect(t.Context(), tag)
	if err != nil {
		t.Fatal(err)
	}
	img := res.InspectResponse
	t.Logf("%s: %.1f MB", tag, float64(img.Size)/1e6)
	// The binary carries bench's and tune's plots (gonum/plot embeds its
	// fonts, about 4.5 MB), the Redis client and the tracing SDK.
	if img.Size > 50e6 {
		t.Errorf("%s is %d bytes, over the 50 MB target", tag, img.Size)
	}
	cfg := img.Config
	if cfg == nil {
		t.Fatalf("%s has no config", tag)
	}
	if cfg.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532", cfg.User)
	}
	if !strings.Contains(strings.Join(cfg.Env, " "), "SIDECAR_LISTEN=0.0.0.0:8080") {
		t.Errorf("image env %q lacks SIDECAR_LISTEN=0.0.0.0:8080", cfg.Env)
	}
	if hc := cfg.Healthcheck; hc == nil || strings.Join(hc.Test, " ") != "CMD "+compose.SidecarBinary+" healthcheck" {
		t.Errorf("image healthcheck %+v, want the exec form of %s healthcheck", hc, compose.SidecarBinary)
	}

	// The binary in the image, by `go version -m`.
	created, err := api.ContainerCreate(t.Context(), client.ContainerCreateOptions{Config: &container.Config{Image: tag}})
	if err != nil {
		t.Fatal(err)
	}
	defer api.ContainerRemove(context.WithoutCancel(t.Context()), created.ID, client.ContainerRemoveOptions{Force: true})
	bin := filepath.Join(t.TempDir(), "tei-sidecar")
	copied, err := api.CopyFromContainer(t.Context(), created.ID, client.CopyFromContainerOptions{SourcePath: compose.SidecarBinary})
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Content.Close()
	tr := tar.NewReader(copied.Content)
	if _, err := tr.Next(); err != nil {
		t.Fatalf("reading the binary from the image: %v", err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	for _, want := range []string{"\tbuild\t-trimpath=true\n", "\tbuild\tCGO_ENABLED=0\n", "\tdep\tgithub.com/alecthomas/kong\t"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the image's binary lacks %q in `go version -m`:\n%s", strings.TrimSpace(want), out)
		}
	}
	// Vendored modules carry no checksums in the build information.
	if strings.Contains(string(out), "h1:") {
		t.Errorf("the image's binary was built from downloaded modules, not vendor/:\n%s", out)
	}
	// The static binary runs here too: its version is the build argument.
	if v, err := exec.Command(bin, "version").Output(); err != nil || string(v) != "tei-sidecar compose-e2e\n" {
		t.Errorf("the image's binary says %q (%v), want the VERSION build argument", v, err)
	}
	for _, banned := range []string{"compose-spec/compose-go", "testcontainers-go/modules/compose", "docker/compose"} {
		if strings.Contains(string(out), banned) {
			t.Errorf("the image's binary links %s", banned)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func listContainers(t *testing.T, api client.APIClient, labels ...string) []container.Summary {
	t.Helper()
	res, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", labels...)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Items
}

// launchedContainers are the TEI containers the project's sidecar started:
// compose.yaml names them after the project (TEI_PROJECT).
func launchedContainers(t *testing.T, api client.APIClient, project string) []container.Summary {
	t.Helper()
	return listContainers(t, api, launch.LabelManagedBy+"=tei-sidecar", launch.LabelProject+"="+project)
}

func serviceContainer(t *testing.T, api client.APIClient, project, service string) string {
	t.Helper()
	cs := listContainers(t, api, composeProject+"="+project, composeService+"="+service)
	if len(cs) != 1 {
		t.Fatalf("%d containers for service %s", len(cs), service)
	}
	return cs[0].ID
}

func inspect(t *testing.T, api client.APIClient, id string) container.InspectResponse {
	t.Helper()
	res, err := api.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Container
}

func names(cs []container.Summary) []string {
	var out []string
	for _, c := range cs {
		out = append(out, strings.Join(c.Names, ","))
	}
	return out
}

func mountsVolume(c container.Summary, volume string) bool {
	for _, m := range c.Mounts {
		if m.Type == "volume" && m.Name == volume && m.Destination == "/data" {
			return true
		}
	}
	return false
}

func dim(vs [][]float32) int {
	if len(vs) == 0 {
		return 0
	}
	return len(vs[0])
}

// waitReady polls url until it answers 200.
func waitReady(t *testing.T, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := "no answer"
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status + ": " + string(body)
		} else {
			last = err.Error()
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s not ready after %s: %s", url, limit, last)
}

// waitHealthy waits for Docker's health check to pass.
func waitHealthy(t *testing.T, api client.APIClient, id string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c := inspect(t, api, id)
		if c.State == nil || c.State.Health == nil {
			t.Fatal("the sidecar's container has no health check")
		}
		h := c.State.Health
		if h.Status == container.Healthy {
			return
		}
		if time.Now().After(deadline) {
			var log []string
			for _, r := range h.Log {
				log = append(log, fmt.Sprintf("exit %d: %s", r.ExitCode, r.Output))
			}
			t.Fatalf("sidecar health %s after %s:\n%s", h.Status, limit, strings.Join(log, "\n"))
		}
		time.Sleep(time.Second)
	}
}

// call sends one request and decodes the 200 answer into out.
func call(t *testing.T, method, url, body string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, url, err, raw)
	}
}

// followLogs collects a container's logs as they come, until the test
// ends; the function returns what came so far.
func followLogs(t *testing.T, api client.APIClient, id string) func() string {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rc, err := api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
		if err != nil {
			fmt.Fprintf(w, "logs: %v\n", err)
			return
		}
		defer rc.Close()
		_, _ = stdcopy.StdCopy(w, w, rc)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// forceRemove removes, whatever state the test left them in, the project's
// containers (compose's and those its sidecar launched), networks and
// model volume.
func forceRemove(t *testing.T, api client.APIClient, project, volume string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, label := range [][]string{{composeProject + "=" + project}, {launch.LabelManagedBy + "=tei-sidecar", launch.LabelProject + "=" + project}} {
		res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label...)})
		if err != nil {
			t.Logf("cleanup: listing containers: %v", err)
			continue
		}
		for _, c := range res.Items {
			if _, err := api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
				t.Logf("cleanup: removing %v: %v", c.Names, err)
			}
		}
	}
	nets, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", composeProject+"="+project)})
	if err == nil {
		for _, n := range nets.Items {
			if _, err := api.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
				t.Logf("cleanup: removing network %s: %v", n.Name, err)
			}
		}
	}
	if _, err := api.VolumeRemove(ctx, volume, client.VolumeRemoveOptions{Force: true}); err != nil && !strings.Contains(err.Error(), "No such volume") && !strings.Contains(err.Error(), "not found") {
		t.Logf("cleanup: removing volume %s: %v", volume, err)
	}
}
