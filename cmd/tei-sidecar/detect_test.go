package main

import (
	"bytes"
	"cmp"
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
	"go.yaml.in/yaml/v3"

	"github.com/tei-sidecar/tei-sidecar/charts"
	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tests/golden"
)

// settingsEnv are the variables detect reads; tests start with none set.
var settingsEnv = []string{
	"EMBEDDING_MODEL", "EMBEDDING_REVISION", "RERANK_MODEL", "RERANK_REVISION", "RERANK_ENABLE",
	"EMBEDDING_BATCH", "EMBEDDING_FP16", "EMBEDDING_MAX_LEN", "EMBEDDING_CACHE_SIZE", "RERANK_K",
	"RERANK_FINAL_N", "EMBEDDING_DEVICE", "RERANK_DEVICE", "TEI_VERSION", "TEI_IMAGE", "TEI_RERANK_IMAGE",
	"GPU_COMPUTE_CAP", "TEI_PORT", "MAX_CONCURRENT_REQUESTS", "TEI_MAX_BATCH_TOKENS",
	"TEI_RERANK_MAX_BATCH_TOKENS", "HF_TOKEN", "LOG_LEVEL", "LOG_FORMAT", "BEARER_TOKEN", "DATASTORE",
	"TEI_MAX_CLIENT_BATCH_SIZE", "EMBEDDING_REPLICAS", "RERANK_REPLICAS", "TEI_REPLICAS_PER_GPU",
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
		Replica               int               `json:"replica"`
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
		MemoryBudgetMiB       int64             `json:"memory_budget_mib"`
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
		if p.Replica != 0 || p.MemoryBudgetMiB != live.Plans[i].MemoryBudgetMiB || p.MemoryBudgetMiB <= 0 {
			t.Errorf("%s replica %d, memory budget %d MiB; want replica 0, %d MiB", role, p.Replica, p.MemoryBudgetMiB, live.Plans[i].MemoryBudgetMiB)
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
	// The user's .env is read as settings: its EMBEDDING_BATCH is the
	// plugin's, kept, and does not size TEI.
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
	if r.Plugin["EMBEDDING_BATCH"] != 24.0 || r.Plans[0].MaxClientBatchSize != 16 {
		t.Errorf("EMBEDDING_BATCH=24 from .env: the plugin's %v (want 24), TEI's %d (want the CPU default 16)", r.Plugin["EMBEDDING_BATCH"], r.Plans[0].MaxClientBatchSize)
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
		// The regression: cuda:0 without a GPU was trusted, exit 0.
		{map[string]string{"EMBEDDING_DEVICE": "cuda:0"},
			"tei-sidecar: EMBEDDING_DEVICE=cuda:0, but no NVIDIA GPU was detected (neither nvidia-smi nor the PCI bus shows one): set EMBEDDING_DEVICE=cpu, or auto to let the plan decide\n"},
		{map[string]string{"EMBEDDING_REPLICAS": "0x"},
			"tei-sidecar: error: --embedding-replicas: expected a valid 64 bit int but got \"0x\" (from envar EMBEDDING_REPLICAS=\"0x\")\n"},
		{map[string]string{"TEI_REPLICAS_PER_GPU": "99"},
			"tei-sidecar: error: detect: TEI_REPLICAS_PER_GPU must be between 1 and 16, got 99\n"},
	}
	for _, tt := range tests {
		cleanDetectEnv(t)
		if runtime.GOOS != "linux" {
			t.Skip("messages name linux")
		}
		cpuOnly(t)
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		_, errOut := runDetect(t, 2)
		if errOut != tt.wantErr {
			t.Errorf("stderr = %q, want %q", errOut, tt.wantErr)
		}
	}
}

func fact[T any](v T) hwdetect.Fact[T] { return hwdetect.Fact[T]{Value: v, Source: "test"} }

// goldenHost is a 32-core, 256 GiB x86-64 Linux host with n H100s and
// Docker's NVIDIA runtime: fixed facts, so its report is stable.
func goldenHost(n int) hwdetect.Hardware {
	hw := hwdetect.Hardware{
		OS: "linux", Arch: "amd64",
		CPU: hwdetect.CPU{Model: fact("Test CPU"), LogicalCores: fact(32), UsableCores: fact(32),
			Features: fact([]string{"avx2", "avx512f"})},
		Memory:        hwdetect.Memory{PhysicalBytes: fact(int64(256) << 30)},
		GPUs:          []hwdetect.GPU{},
		NVIDIARuntime: fact(true),
	}
	for i := range n {
		hw.GPUs = append(hw.GPUs, hwdetect.GPU{Index: i, Name: fact("NVIDIA H100 80GB HBM3"),
			PCIDeviceID: fact("0x2330"), ComputeCap: fact("9.0"), MemoryMiB: fact(int64(81559))})
	}
	return hw
}

// TestDetectReportGolden compares detect's report, text and JSON, for fixed
// machines with testdata/detect/NAME.{txt,json}. Run with -update to
// rewrite them after a deliberate change, and read the diff.
func TestDetectReportGolden(t *testing.T) {
	apple := goldenHost(0)
	apple.OS, apple.Arch, apple.NVIDIARuntime = "darwin", "arm64", hwdetect.Fact[bool]{}
	apple.Apple = &hwdetect.Apple{Chip: fact("Apple M3 Max"), UnifiedMemoryBytes: fact(int64(48) << 30),
		PerformanceCores: fact(12), EfficiencyCores: fact(4)}
	tests := []struct {
		name     string
		hw       hwdetect.Hardware
		s        plan.Settings
		wroteEnv string
	}{
		{"cpu", goldenHost(0), plan.Settings{}, ""},
		{"one-h100", goldenHost(1), plan.Settings{}, ".env.optimized"},
		{"eight-h100", goldenHost(8), plan.Settings{}, ""},
		{"apple", apple, plan.Settings{}, ".env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := plan.Make(tt.hw, tt.s)
			if err != nil {
				t.Fatal(err)
			}
			r := newDetectReport(tt.hw, res, tt.wroteEnv)
			var text bytes.Buffer
			if err := writeText(&text, r); err != nil {
				t.Fatal(err)
			}
			js, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "detect", tt.name+".txt"), text.Bytes())
			golden.Check(t, filepath.Join("testdata", "detect", tt.name+".json"), append(js, '\n'))
			decodeReport(t, string(js)) // the documented schema, no field unknown
		})
	}
}

// TestDetectNextSteps is the regression for three wrong next steps: they
// named the volume tei-data while serve and compose use tei-sidecar-models
// (models downloaded twice), never suggested plain `tei-sidecar serve`, and
// after `--write-env .env` told the user to run `--write-env .env`.
func TestDetectNextSteps(t *testing.T) {
	t.Chdir(t.TempDir())
	res, err := plan.Make(goldenHost(8), plan.Settings{HFToken: "hf_secret"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		wroteEnv, first string
	}{
		{"", "Save these settings: `tei-sidecar detect --write-env` writes .env.optimized; `--write-env .env` updates only the keys it owns in your .env"},
		{".env", "Review .env: `tei-sidecar serve` run in this directory reads it"},
		{"./.env", "Review ./.env: `tei-sidecar serve` run in this directory reads it"},
		{".env.optimized", "Review .env.optimized; to use it, run `tei-sidecar detect --write-env .env`, which updates only the keys it owns in .env (`tei-sidecar serve` reads .env)"},
	} {
		t.Run(cmp.Or(tc.wroteEnv, "none"), func(t *testing.T) {
			steps := nextSteps(res, tc.wroteEnv)
			if steps[0] != tc.first {
				t.Errorf("first step %q\nwant %q", steps[0], tc.first)
			}
			if steps[1] != "Run it all: `tei-sidecar serve` plans as above, starts its 8 TEIs through Docker and proxies to them" {
				t.Errorf("second step %q does not offer plain serve", steps[1])
			}
			all := strings.Join(steps, "\n")
			if strings.Contains(all, "tei-data") || strings.Count(all, "-v tei-sidecar-models:/data") != 8 {
				t.Errorf("steps do not mount the launcher's model volume in each of 8 commands:\n%s", all)
			}
			if isDotEnv(tc.wroteEnv) && strings.Contains(all, "--write-env .env") {
				t.Errorf("after writing .env the steps say to write it:\n%s", all)
			}
			if strings.Contains(all, "hf_secret") || !strings.Contains(all, " -e HF_TOKEN ") {
				t.Errorf("HF_TOKEN not passed by name only:\n%s", all)
			}
			for _, want := range []string{
				"docker run -d --name tei-embed --gpus device=0 -p 127.0.0.1:8081:80 ",
				"docker run -d --name tei-embed-6 --gpus device=6 -p 127.0.0.1:8087:80 ",
				"docker run -d --name tei-rerank --gpus device=7 -p 127.0.0.1:8088:80 ",
				"tei-sidecar serve --tei-embed-url http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083,http://127.0.0.1:8084,http://127.0.0.1:8085,http://127.0.0.1:8086,http://127.0.0.1:8087 --tei-rerank-url http://127.0.0.1:8088",
			} {
				if !strings.Contains(all, want) {
					t.Errorf("steps lack %q:\n%s", want, all)
				}
			}
		})
	}
}

// TestDetectHelmValues runs `detect --helm-values` on recorded nvidia-smi
// output of eight H100s: a values file the chart reads, every field known,
// asking for the plan's seven embedding pods and one reranker pod of one
// GPU each, with the Hopper image, on nodes with that GPU.
func TestDetectHelmValues(t *testing.T) {
	smi, err := filepath.Abs("../../hwdetect/testdata/nvidia-smi/eight-h100")
	if err != nil {
		t.Fatal(err)
	}
	cleanDetectEnv(t)
	t.Setenv("PATH", smi+string(os.PathListSeparator)+os.Getenv("PATH"))
	const token = "hf_do_not_print_0123456789abcdef"
	t.Setenv("HF_TOKEN", token)
	out, _ := runDetect(t, 0, "--helm-values")

	var v charts.Values
	dec := yaml.NewDecoder(strings.NewReader(out))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("--helm-values output does not parse: %v\n%s", err, out)
	}
	hopper := plan.Registry + ":hopper-1.9.3"
	for _, m := range []struct {
		name     string
		got      charts.Model
		replicas int
	}{{"embed", v.TEI.Embed, 7}, {"rerank", v.TEI.Rerank, 1}} {
		if !m.got.Enabled || m.got.Replicas != m.replicas || m.got.GPUs != 1 || m.got.Image != hopper || m.got.Port != charts.TEIPort {
			t.Errorf("%s: %+v, want %d replicas of 1 GPU, %s on port %d", m.name, m.got, m.replicas, hopper, charts.TEIPort)
		}
		if m.got.NodeSelector["nvidia.com/gpu.product"] != "NVIDIA-H100-80GB-HBM3" || len(m.got.Tolerations) != 1 {
			t.Errorf("%s: node selector %v, tolerations %v", m.name, m.got.NodeSelector, m.got.Tolerations)
		}
		if !slices.Contains(m.got.Args, "float16") || slices.ContainsFunc(m.got.Env, func(e charts.EnvVar) bool { return e.Name == "HF_TOKEN" }) {
			t.Errorf("%s: args %q, env %v", m.name, m.got.Args, m.got.Env)
		}
	}
	if v.Sidecar.Settings["RERANK_K"] != "10" {
		t.Errorf("sidecar settings %v", v.Sidecar.Settings)
	}
	if strings.Contains(out, token) || strings.Contains(out, "Docker") || !strings.HasPrefix(out, "# Values for the tei-sidecar Helm chart") {
		t.Errorf("the values file shows the token, speaks of Docker or lacks its header:\n%s", out)
	}
}

// TestDetectHelmValuesGolden compares the values files for fixed machines
// with testdata/detect/NAME.helm.yaml (-update rewrites them).
func TestDetectHelmValuesGolden(t *testing.T) {
	for _, tt := range []struct {
		name string
		hw   hwdetect.Hardware
	}{{"cpu", goldenHost(0)}, {"eight-h100", goldenHost(8)}} {
		t.Run(tt.name, func(t *testing.T) {
			hw, res, err := charts.Plan(tt.hw, plan.Settings{})
			if err != nil {
				t.Fatal(err)
			}
			v, err := charts.Build(hw, res)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := charts.Write(&b, res, v); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "detect", tt.name+".helm.yaml"), b.Bytes())
		})
	}
}

// TestDetectHelmValuesAlone checks that --helm-values, which replaces the
// report, refuses the flags that shape or write the report.
func TestDetectHelmValuesAlone(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--helm-values", "--json"}, "tei-sidecar: error: --json and --helm-values can't be used together\n"},
		{[]string{"--helm-values", "--write-env"}, "tei-sidecar: error: --write-env and --helm-values can't be used together\n"},
	} {
		cleanDetectEnv(t)
		_, errOut := runDetect(t, 2, tt.args...)
		if !strings.HasPrefix(errOut, tt.wantErr) {
			t.Errorf("detect %q: stderr %q, want %q", tt.args, errOut, tt.wantErr)
		}
		if _, err := os.Stat(".env.optimized"); err == nil {
			t.Errorf("detect %q wrote .env.optimized", tt.args)
		}
	}
}
