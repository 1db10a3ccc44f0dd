package teisim_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/dockertest"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// teiImage is the real TEI CPU image's tag; the simulator is built under it
// so the container looks like TEI to a launcher.
const teiImage = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3"

// TestDockerImage runs the simulator's image as TEI's would be run: with
// arguments replacing the default CMD, on the image's port 80.
func TestDockerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a container")
	}
	dockertest.BuildSimImage(t, teiImage)
	ctx := t.Context()
	c, err := testcontainers.Run(ctx, teiImage,
		testcontainers.WithCmd("--model-id", "BAAI/bge-small-en-v1.5", "--max-client-batch-size", "8", "--json-output"),
		testcontainers.WithExposedPorts("80/tcp"),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/health").WithPort("80/tcp").WithStartupTimeout(60*time.Second)),
	)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		t.Fatal(err)
	}
	base, err := c.PortEndpoint(ctx, "80/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}

	info := decode[map[string]any](t, get(t, base+"/info"))
	if info["model_id"] != "BAAI/bge-small-en-v1.5" || info["max_client_batch_size"] != 8.0 || info["docker_label"] != "teisim" || info["simulator"] != "teisim" || info["version"] != "1.9.3" {
		t.Errorf("/info: %v", info)
	}
	vecs := decode[[][]float32](t, post(t, base+"/embed", map[string]any{"inputs": []string{"hello", "world"}}))
	if len(vecs) != 2 || len(vecs[0]) != 384 {
		t.Errorf("/embed: %d vectors", len(vecs))
	}
	if r := post(t, base+"/embed", map[string]any{"inputs": strings.Split("a b c d e f g h i", " ")}); r.status != http.StatusUnprocessableEntity {
		t.Errorf("9 inputs: %d, want 422", r.status)
	}

	// HOSTNAME (set by Docker to the container id) is read as --hostname,
	// and TEI falls back to 0.0.0.0; the JSON logs say so, then "Ready".
	logs, err := c.Logs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	text, err := io.ReadAll(logs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"message":"Invalid hostname, defaulting to 0.0.0.0"`, `"message":"Ready"`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("logs lack %s:\n%s", want, text)
		}
	}
}
