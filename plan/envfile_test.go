package plan_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/joho/godotenv"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

func TestEnvVars(t *testing.T) {
	res := mustMake(t, host(gpu(0, "T4", "7.5", 15360), gpu(1, "A100", "8.0", 40960)), plan.Settings{HFToken: "hf_x"})
	got := res.EnvVars()
	want := []plan.EnvVar{
		{Key: "EMBEDDING_DEVICE", Value: "cuda:1"},
		{Key: "EMBEDDING_MODEL", Value: "BAAI/bge-m3"},
		{Key: "EMBEDDING_BATCH", Value: "64"},
		{Key: "EMBEDDING_FP16", Value: "true"},
		{Key: "EMBEDDING_MAX_LEN", Value: "8192"},
		{Key: "EMBEDDING_CACHE_SIZE", Value: "2000"},
		{Key: "RERANK_ENABLE", Value: "true"},
		{Key: "RERANK_DEVICE", Value: "cuda:0"},
		{Key: "RERANK_MODEL", Value: "BAAI/bge-reranker-v2-m3"},
		{Key: "RERANK_K", Value: "10"},
		{Key: "RERANK_FINAL_N", Value: "5"},
		{Key: "TEI_VERSION", Value: "1.9.3"},
		{Key: "TEI_IMAGE", Value: plan.Registry + ":1.9.3"},
		{Key: "TEI_RERANK_IMAGE", Value: plan.Registry + ":turing-1.9.3"},
		{Key: "TEI_MAX_BATCH_TOKENS", Value: "65536"},
		{Key: "TEI_RERANK_MAX_BATCH_TOKENS", Value: "16384"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("EnvVars() =\n%v\nwant\n%v", got, want)
	}
	for _, v := range got {
		if !slices.Contains(plan.OwnedKeys(), v.Key) {
			t.Errorf("%s is written but not owned", v.Key)
		}
	}
}

// TestUpdateEnvKeepsTheUsersLines is the regression the plugin's platform
// script had: copying its file over .env dropped BEARER_TOKEN and the
// datastore settings.
func TestUpdateEnvKeepsTheUsersLines(t *testing.T) {
	old := strings.Join([]string{
		"# my retrieval plugin",
		"BEARER_TOKEN=abc,def",
		"DATASTORE=qdrant",
		"export EMBEDDING_BATCH=8",
		"QDRANT_URL=\"http://qdrant:6333\" # the vector store",
		"",
		"EMBEDDING_DEVICE=mps",
		"TEI_RERANK_IMAGE=old/image:tag",
		"# EMBEDDING_MAX_LEN=1024",
		"EMBEDDING_DEVICE=cpu",
		"",
	}, "\n")
	header := []string{"# tei-sidecar detect: linux/amd64, one GPU"}
	vars := []plan.EnvVar{
		{Key: "EMBEDDING_DEVICE", Value: "cuda:0"},
		{Key: "EMBEDDING_BATCH", Value: "64"},
		{Key: "EMBEDDING_MODEL", Value: "/models/my model"},
		{Key: "TEI_IMAGE", Value: plan.Registry + ":1.9.3"},
	}
	want := strings.Join([]string{
		"# tei-sidecar detect: linux/amd64, one GPU",
		"# my retrieval plugin",
		"BEARER_TOKEN=abc,def",
		"DATASTORE=qdrant",
		"export EMBEDDING_BATCH=64",
		"QDRANT_URL=\"http://qdrant:6333\" # the vector store",
		"",
		"EMBEDDING_DEVICE=cuda:0",
		"# TEI_RERANK_IMAGE=old/image:tag  # unset by tei-sidecar detect: this plan does not use it",
		"# EMBEDDING_MAX_LEN=1024",
		"EMBEDDING_DEVICE=cuda:0",
		"",
		`EMBEDDING_MODEL="/models/my model"`,
		"TEI_IMAGE=" + plan.Registry + ":1.9.3",
		"",
	}, "\n")
	got := string(plan.UpdateEnv([]byte(old), header, vars))
	if got != want {
		t.Errorf("UpdateEnv() =\n%s\nwant\n%s", got, want)
	}

	// A second run with a new header replaces the old one and changes
	// nothing else.
	again := string(plan.UpdateEnv([]byte(got), []string{"# tei-sidecar detect: new"}, vars))
	if wantAgain := "# tei-sidecar detect: new\n" + strings.TrimPrefix(want, header[0]+"\n"); again != wantAgain {
		t.Errorf("second UpdateEnv() =\n%s\nwant\n%s", again, wantAgain)
	}

	parsed, err := godotenv.Unmarshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"BEARER_TOKEN": "abc,def", "DATASTORE": "qdrant", "QDRANT_URL": "http://qdrant:6333",
		"EMBEDDING_DEVICE": "cuda:0", "EMBEDDING_BATCH": "64", "EMBEDDING_MODEL": "/models/my model",
	} {
		if parsed[k] != v {
			t.Errorf("parsed %s = %q, want %q", k, parsed[k], v)
		}
	}
	if _, ok := parsed["TEI_RERANK_IMAGE"]; ok {
		t.Error("TEI_RERANK_IMAGE is still set")
	}
}

func TestWriteEnvFile(t *testing.T) {
	res := mustMake(t, host(), plan.Settings{})
	dir := t.TempDir()
	path := filepath.Join(dir, ".env.optimized")

	backup, err := plan.WriteEnvFile(path, res)
	if err != nil || backup != "" {
		t.Fatalf("first write: backup %q, %v", backup, err)
	}
	fresh, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.HasPrefix(string(fresh), "# tei-sidecar detect: linux/amd64, CPU only") {
		t.Errorf("new file starts %q", strings.SplitN(string(fresh), "\n", 2)[0])
	}

	user := "BEARER_TOKEN=secret\nEMBEDDING_DEVICE=mps\n"
	if err := os.WriteFile(path, []byte(user), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	backup, err = plan.WriteEnvFile(path, res)
	if err != nil || backup != path+".bak" {
		t.Fatalf("update: backup %q, %v", backup, err)
	}
	if b, _ := os.ReadFile(backup); string(b) != user {
		t.Errorf("backup holds %q, want the old file", b)
	}
	updated, _ := os.ReadFile(path)
	env, err := godotenv.Unmarshal(string(updated))
	if err != nil {
		t.Fatal(err)
	}
	if env["BEARER_TOKEN"] != "secret" || env["EMBEDDING_DEVICE"] != "cpu" || env["TEI_IMAGE"] != plan.Registry+":cpu-1.9.3" {
		t.Errorf("updated file:\n%s", updated)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the user's 0640 kept", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d files, want the file and its backup (no temporary files)", len(entries))
	}
}

// TestSetEnvKeys checks that setting a few keys (as tune does) leaves
// detect's header and the other keys detect owns alone.
func TestSetEnvKeys(t *testing.T) {
	type EnvVar = plan.EnvVar
	SetEnvKeys := plan.SetEnvKeys
	old := "# tei-sidecar detect: platform linux/amd64\nEMBEDDING_BATCH=16\nTEI_IMAGE=x\n# mine\nBEARER_TOKEN=t\n"
	got := string(SetEnvKeys([]byte(old), []EnvVar{{Key: "EMBEDDING_BATCH", Value: "32"}, {Key: "EMBEDDING_CONCURRENCY", Value: "4"}}))
	want := "# tei-sidecar detect: platform linux/amd64\nEMBEDDING_BATCH=32\nTEI_IMAGE=x\n# mine\nBEARER_TOKEN=t\n\nEMBEDDING_CONCURRENCY=4\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
