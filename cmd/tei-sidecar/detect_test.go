package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/joho/godotenv"
	"go.uber.org/goleak"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// settingsEnv are the variables detect reads; tests start with none set.
var settingsEnv = []string{
	"EMBEDDING_MODEL", "EMBEDDING_REVISION", "RERANK_MODEL", "RERANK_REVISION", "RERANK_ENABLE",
	"EMBEDDING_BATCH", "EMBEDDING_FP16", "EMBEDDING_MAX_LEN", "EMBEDDING_CACHE_SIZE", "RERANK_K",
	"RERANK_FINAL_N", "EMBEDDING_DEVICE", "RERANK_DEVICE", "TEI_VERSION", "TEI_IMAGE", "TEI_RERANK_IMAGE",
	"GPU_COMPUTE_CAP", "TEI_PORT", "MAX_CONCURRENT_REQUESTS", "TEI_MAX_BATCH_TOKENS",
	"TEI_RERANK_MAX_BATCH_TOKENS", "HF_TOKEN", "LOG_LEVEL", "LOG_FORMAT", "BEARER_TOKEN", "DATASTORE",
}

// cleanDetectEnv runs the test in an empty directory (run loads ./.env)
// with none of detect's variables set; whatever .env sets is undone after.
func cleanDetectEnv(t *testing.T) string {
	t.Helper()
	for _, k := range settingsEnv {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

// runDetect runs `tei-sidecar detect args...` and checks no goroutine
// outlives it.
func runDetect(t *testing.T, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("os/signal.loop"))
	var out, errb bytes.Buffer
	if code := run(append([]string{"detect"}, args...), &out, &errb); code != wantCode {
		t.Fatalf("detect %q exited %d, want %d; stderr:\n%s", args, code, wantCode, errb.String())
	}
	return out.String(), errb.String()
}

// cpuOnly skips tests that expect this machine's CPU plan on a machine with
// a GPU or Apple Silicon.
func cpuOnly(t *testing.T) plan.Result {
	t.Helper()
	hw, err := hwdetect.Detect(context.Background(), hwdetect.DefaultProbes())
	if err != nil {
		t.Fatal(err)
	}
	if len(hw.GPUs) > 0 || hw.Apple != nil {
		t.Skip("not a CPU-only machine")
	}
	res, err := plan.Make(hw, plan.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// jsonReport is the --json schema as a client reads it.
type jsonReport struct {
	SchemaVersion int    `json:"schema_version"`
	Platform      string `json:"platform"`
	Device        string `json:"device"`
	TEIVersion    string `json:"tei_version"`
	Plans         []struct {
		Role                  string            `json:"role"`
		Model                 string            `json:"model"`
		Revision              string            `json:"revision"`
		Backend               string            `json:"backend"`
		Image                 string            `json:"image"`
		Binary                string            `json:"binary"`
		Args                  []string          `json:"args"`
		Env                   map[string]string `json:"env"`
		SecretEnv             []string          `json:"secret_env"`
		GPUIDs                []int             `json:"gpu_ids"`
		Device                string            `json:"device"`
		DType                 string            `json:"dtype"`
		Port                  int               `json:"port"`
		MaxBatchTokens        int               `json:"max_batch_tokens"`
		MaxClientBatchSize    int               `json:"max_client_batch_size"`
		MaxConcurrentRequests int               `json:"max_concurrent_requests"`
		MaxInputLength        int               `json:"max_input_length"`
		TokenizationWorkers   int               `json:"tokenization_workers"`
		Reasons               []plan.Reason     `json:"reasons"`
		Warnings              []string          `json:"warnings"`
		Hash                  string            `json:"hash"`
	} `json:"plans"`
	Plugin          map[string]any    `json:"plugin"`
	Hardware        hwdetect.Hardware `json:"hardware"`
	Env             []plan.EnvVar     `json:"env"`
	Warnings        []string          `json:"warnings"`
	Recommendations []string          `json:"recommendations"`
	NextSteps       []string          `json:"next_steps"`
	EnvFile         *struct {
		Path   string `json:"path"`
		Backup string `json:"backup"`
	} `json:"env_file"`
}

func decodeReport(t *testing.T, out string) jsonReport {
	t.Helper()
	var r jsonReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	return r
}

func wantCPUImage() string {
	if runtime.GOARCH == "arm64" {
		return plan.Registry + ":cpu-arm64-latest"
	}
	return plan.Registry + ":cpu-1.9.3"
}

func TestDetectJSONOnThisMachine(t *testing.T) {
	cleanDetectEnv(t)
	live := cpuOnly(t)
	out, _ := runDetect(t, 0, "--json")
	r := decodeReport(t, out)

	if r.SchemaVersion != 1 || r.Device != "cpu" || r.TEIVersion != "1.9.3" || len(r.Plans) != 2 {
		t.Fatalf("schema %d, device %q, version %q, %d plans", r.SchemaVersion, r.Device, r.TEIVersion, len(r.Plans))
	}
	for i, p := range r.Plans {
		role := []string{"embedding", "rerank"}[i]
		if p.Role != role || p.Backend != "docker" || p.Image != wantCPUImage() || p.DType != "float32" ||
			p.MaxClientBatchSize != 16 || len(p.GPUIDs) != 0 || p.Device != "cpu" || p.Port != 80 {
			t.Errorf("%s plan: %+v", role, p)
		}
		if want := live.Plans[i].MaxBatchTokens; p.MaxBatchTokens != want || !slices.Contains([]int{4096, 8192, 16384}, want) {
			t.Errorf("%s max_batch_tokens = %d, want %d (4096 to 16384)", role, p.MaxBatchTokens, want)
		}
		if p.Hash != live.Plans[i].Hash() || len(p.Reasons) == 0 {
			t.Errorf("%s hash %q, want %q; %d reasons", role, p.Hash, live.Plans[i].Hash(), len(p.Reasons))
		}
		if p.Env["RAYON_NUM_THREADS"] == "" || !slices.Contains(p.Args, "--json-output") {
			t.Errorf("%s env %v args %q", role, p.Env, p.Args)
		}
	}
	if r.Plans[0].Model != "BAAI/bge-m3" || r.Plans[1].Model != "BAAI/bge-reranker-v2-m3" {
		t.Errorf("models %s, %s", r.Plans[0].Model, r.Plans[1].Model)
	}
	if r.Plugin["EMBEDDING_DEVICE"] != "cpu" || r.Plugin["RERANK_K"] != 5.0 || r.Plugin["EMBEDDING_CACHE_SIZE"] != 1000.0 {
		t.Errorf("plugin %v", r.Plugin)
	}
	if len(r.Env) == 0 || r.Env[0] != (plan.EnvVar{Key: "EMBEDDING_DEVICE", Value: "cpu"}) {
		t.Errorf("env %v", r.Env)
	}
	if !r.Hardware.CPU.UsableCores.Known() || r.Hardware.GPUs == nil || len(r.NextSteps) == 0 || r.EnvFile != nil {
		t.Errorf("hardware %+v, next steps %q, env file %v", r.Hardware.CPU, r.NextSteps, r.EnvFile)
	}
}

func TestDetectTextOnThisMachine(t *testing.T) {
	cleanDetectEnv(t)
	cpuOnly(t)
	out, _ := runDetect(t, 0)
	for _, want := range []string{
		"Hardware\n",
		"Plan: embedding model BAAI/bge-m3 on cpu\n",
		"Plan: rerank model BAAI/bge-reranker-v2-m3 on cpu\n",
		"  image              " + wantCPUImage() + "\n",
		"  dtype              float32\n",
		"  client batch size  16\n",
		"    device = cpu: no NVIDIA GPU detected\n",
		"\nRecommendations\n  - Expected speed: slow (CPU",
		"\nSettings (what --write-env writes)\n  - EMBEDDING_DEVICE=cpu\n",
		"\nNext steps\n  1. ",
		"tei-sidecar serve --tei-embed-url http://127.0.0.1:8081 --tei-rerank-url http://127.0.0.1:8082",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestDetectWriteEnvKeepsUsersKeys: --write-env over an existing file keeps
// the user's other settings and comments, and keeps the old file.
func TestDetectWriteEnvKeepsUsersKeys(t *testing.T) {
	dir := cleanDetectEnv(t)
	cpuOnly(t)
	// The user's .env is read as settings: its EMBEDDING_BATCH shapes the plan.
	if err := os.WriteFile(".env", []byte("EMBEDDING_BATCH=24\nBEARER_TOKEN=from-dotenv\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	existing := strings.Join([]string{
		"# my settings",
		"BEARER_TOKEN=tok1,tok2",
		"DATASTORE=qdrant",
		"EMBEDDING_DEVICE=mps",
		"RERANK_K=7",
		"",
	}, "\n")
	if err := os.WriteFile(".env.optimized", []byte(existing), 0o600); err != nil {
		t.Fatal(err)
	}

	out, _ := runDetect(t, 0, "--write-env", "--json")
	r := decodeReport(t, out)
	if r.EnvFile == nil || r.EnvFile.Path != ".env.optimized" || r.EnvFile.Backup != ".env.optimized.bak" {
		t.Fatalf("env_file = %+v", r.EnvFile)
	}
	if r.Plans[0].MaxClientBatchSize != 24 {
		t.Errorf("EMBEDDING_BATCH from .env not used: %d", r.Plans[0].MaxClientBatchSize)
	}
	b, err := os.ReadFile(filepath.Join(dir, ".env.optimized"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.HasPrefix(text, "# tei-sidecar detect: ") || !strings.Contains(text, "\n# my settings\n") {
		t.Errorf("header or comment missing:\n%s", text)
	}
	env, err := godotenv.Unmarshal(text)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"BEARER_TOKEN": "tok1,tok2", "DATASTORE": "qdrant", "EMBEDDING_DEVICE": "cpu",
		"EMBEDDING_BATCH": "24", "RERANK_K": "5", "TEI_IMAGE": wantCPUImage(), "TEI_VERSION": "1.9.3",
	} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q in:\n%s", k, env[k], v, text)
		}
	}
	if strings.Index(text, "BEARER_TOKEN") > strings.Index(text, "EMBEDDING_DEVICE=cpu") {
		t.Errorf("order changed:\n%s", text)
	}
	if bak, _ := os.ReadFile(".env.optimized.bak"); string(bak) != existing {
		t.Errorf("backup = %q, want the old file", bak)
	}

	// An explicit file, in both spellings.
	for _, args := range [][]string{{"--write-env", "plugin.env"}, {"--write-env=plugin2.env"}} {
		runDetect(t, 0, args...)
		name := strings.TrimPrefix(args[len(args)-1], "--write-env=")
		if _, err := os.Stat(name); err != nil {
			t.Errorf("detect %q did not write %s: %v", args, name, err)
		}
	}
}

func TestDetectNeverPrintsHFToken(t *testing.T) {
	cleanDetectEnv(t)
	const token = "hf_do_not_print_0123456789abcdef"
	t.Setenv("HF_TOKEN", token)
	for _, args := range [][]string{{}, {"--json"}, {"--write-env", "--log-level=debug"}} {
		out, errOut := runDetect(t, 0, args...)
		if strings.Contains(out, token) || strings.Contains(errOut, token) {
			t.Errorf("detect %q printed the token", args)
		}
		if !strings.Contains(out, plan.Redacted) {
			t.Errorf("detect %q does not show the token as redacted", args)
		}
	}
	if b, _ := os.ReadFile(".env.optimized"); bytes.Contains(b, []byte(token)) {
		t.Error("--write-env wrote the token")
	}
}

func TestDetectRefusesBadSettings(t *testing.T) {
	tests := []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"EMBEDDING_BATCH": "-1", "TEI_VERSION": "latest"},
			"tei-sidecar: error: detect: EMBEDDING_BATCH must be at least 1, got -1\n" +
				"                    TEI_VERSION must be a release number such as 1.9.3, got \"latest\"\n"},
		{map[string]string{"EMBEDDING_DEVICE": "mps"},
			"tei-sidecar: EMBEDDING_DEVICE=mps needs Apple Silicon; this machine is linux/" + runtime.GOARCH + "\n"},
	}
	for _, tt := range tests {
		cleanDetectEnv(t)
		if runtime.GOOS != "linux" {
			t.Skip("messages name linux")
		}
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		_, errOut := runDetect(t, 2)
		if errOut != tt.wantErr {
			t.Errorf("stderr = %q, want %q", errOut, tt.wantErr)
		}
	}
}
