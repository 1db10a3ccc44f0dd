// Package dockertest serves tests that need a Docker engine, in any package:
// Require skips them where no engine answers (or fails them when
// TEI_SIDECAR_REQUIRE_DOCKER=1, as CI with Docker should set), and
// BuildSimImage builds an image of the TEI simulator from scratch under a
// real TEI image tag, so launcher code can run "TEI" without pulling it.
//
// Nothing is ever pulled: the images are built FROM scratch.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// RequireEnv names the variable that turns a missing Docker engine from a
// skip into a failure.
const RequireEnv = "TEI_SIDECAR_REQUIRE_DOCKER"

// SimBinary is where the simulator sits in its image: TEI's binary name and
// path, so an image built here is a drop-in for TEI's.
const SimBinary = "/usr/local/bin/text-embeddings-router"

// healthTimeout bounds the engine check, so a hung socket skips quickly.
const healthTimeout = 10 * time.Second

// buildTimeout bounds compiling the simulator and building its image.
const buildTimeout = 5 * time.Minute

var configureOnce sync.Once

// configure sets what testcontainers needs on this kind of machine, unless
// the environment already says otherwise: no Ryuk reaper (its image cannot be
// pulled; tests terminate their containers themselves) and mapped ports on
// localhost. testcontainers reads these once, so they are set before its
// first use, process-wide.
func configure() {
	configureOnce.Do(func() {
		for k, v := range map[string]string{
			"TESTCONTAINERS_RYUK_DISABLED": "true",
			"TESTCONTAINERS_HOST_OVERRIDE": "localhost",
		} {
			if _, ok := os.LookupEnv(k); !ok {
				_ = os.Setenv(k, v)
			}
		}
	})
}

// Require returns a Docker provider whose engine answers. Where none does,
// it skips the test, or fails it when TEI_SIDECAR_REQUIRE_DOCKER=1. The
// client negotiates the API version, so old engines (Docker 20.10, API 1.41)
// work. The provider is closed when the test ends.
func Require(t testing.TB) *testcontainers.DockerProvider {
	t.Helper()
	configure()
	provider, err := healthyProvider(t.Context())
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("dockertest: no Docker engine, and %s=1: %v", RequireEnv, err)
		}
		t.Skipf("dockertest: no Docker engine (set %s=1 to fail instead): %v", RequireEnv, err)
	}
	t.Cleanup(func() { _ = provider.Close() })
	return provider
}

// healthyProvider connects to the engine and checks that it answers.
// testcontainers panics on some set-ups without an engine; that is an
// answer too.
func healthyProvider(ctx context.Context) (provider *testcontainers.DockerProvider, err error) {
	defer func() {
		if r := recover(); r != nil {
			provider, err = nil, fmt.Errorf("testcontainers panicked: %v", r)
		}
	}()
	provider, err = testcontainers.NewDockerProvider()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	if err := provider.Health(ctx); err != nil {
		_ = provider.Close()
		return nil, err
	}
	return provider, nil
}

// build is one image build, shared by every test in the process that asks
// for the same tag.
type build struct {
	once sync.Once
	err  error
}

var builds sync.Map // tag → *build

// BuildSimImage builds the simulator image under tag (for example
// "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3"), once per tag
// per process. The image mimics TEI's: the static binary at SimBinary,
// ENTRYPOINT ["text-embeddings-router"], CMD ["--json-output"],
// PORT=80, HUGGINGFACE_HUB_CACHE=/data, EXPOSE 80. Its labels say it is the
// simulator. It calls Require first, so it skips where there is no engine.
func BuildSimImage(t testing.TB, tag string) {
	t.Helper()
	provider := Require(t)
	v, _ := builds.LoadOrStore(tag, &build{})
	b := v.(*build)
	b.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		b.err = buildSimImage(ctx, provider, tag)
	})
	if b.err != nil {
		t.Fatalf("dockertest: build %s: %v", tag, b.err)
	}
}

func buildSimImage(ctx context.Context, provider *testcontainers.DockerProvider, tag string) error {
	dir, err := os.MkdirTemp("", "teisim-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Static, for an image FROM scratch, and for the engine's architecture.
	bin, err := teisim.BuildRouter(ctx, dir, "GOOS=linux", "GOARCH="+engineArch(ctx, provider))
	if err != nil {
		return err
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	archive, err := buildContext(binary)
	if err != nil {
		return err
	}

	repo, version := splitTag(tag)
	var log bytes.Buffer
	_, err = provider.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		ContextArchive: bytes.NewReader(archive),
		Repo:           repo,
		Tag:            version,
		KeepImage:      true,
		BuildLogWriter: &log,
	}})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, log.String())
	}
	return nil
}

// dockerfile mimics TEI's CPU image around the simulator.
const dockerfile = `FROM scratch
COPY text-embeddings-router ` + SimBinary + `
LABEL org.opencontainers.image.title="teisim" \
      org.opencontainers.image.description="Simulator of Hugging Face Text Embeddings Inference 1.9.3 for tests; not TEI"
ENV PATH=/usr/local/bin HUGGINGFACE_HUB_CACHE=/data PORT=80
EXPOSE 80
ENTRYPOINT ["text-embeddings-router"]
CMD ["--json-output"]
`

// buildContext is the tar the engine builds from: the Dockerfile and the
// binary.
func buildContext(binary []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(dockerfile)},
		{"text-embeddings-router", 0o755, binary},
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// engineArch is the engine's architecture as GOARCH spells it, falling back
// to this machine's.
func engineArch(ctx context.Context, provider *testcontainers.DockerProvider) string {
	res, err := provider.Client().Info(ctx, client.InfoOptions{})
	if err != nil {
		return runtime.GOARCH
	}
	switch res.Info.Architecture {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	}
	return runtime.GOARCH
}

// splitTag splits "registry/repo:tag" into repo and tag; the tag defaults
// to latest. A colon before the last slash belongs to a registry port.
func splitTag(ref string) (repo, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || i < strings.LastIndex(ref, "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}
