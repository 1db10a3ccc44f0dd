package dockertest

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestSplitTag(t *testing.T) {
	tests := []struct {
		ref, repo, tag string
	}{
		{"ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.3", "ghcr.io/huggingface/text-embeddings-inference", "cpu-1.9.3"},
		{"teisim", "teisim", "latest"},
		{"localhost:5000/teisim", "localhost:5000/teisim", "latest"},
		{"localhost:5000/teisim:v1", "localhost:5000/teisim", "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			repo, tag := splitTag(tt.ref)
			if repo != tt.repo || tag != tt.tag {
				t.Errorf("splitTag(%q) = %q, %q; want %q, %q", tt.ref, repo, tag, tt.repo, tt.tag)
			}
		})
	}
}

// TestBuildContext checks the image mimics TEI's: binary name and path,
// entrypoint, default CMD, port and cache variables.
func TestBuildContext(t *testing.T) {
	archive, err := buildContext([]byte("binary"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	modes := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name], modes[hdr.Name] = string(data), hdr.Mode
	}
	if files["text-embeddings-router"] != "binary" || modes["text-embeddings-router"]&0o111 == 0 {
		t.Errorf("binary missing or not executable: %v", modes)
	}
	for _, want := range []string{
		"FROM scratch",
		"COPY text-embeddings-router /usr/local/bin/text-embeddings-router",
		`ENTRYPOINT ["text-embeddings-router"]`,
		`CMD ["--json-output"]`,
		"PORT=80", "HUGGINGFACE_HUB_CACHE=/data", "EXPOSE 80", "not TEI",
	} {
		if !strings.Contains(files["Dockerfile"], want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, files["Dockerfile"])
		}
	}
}
