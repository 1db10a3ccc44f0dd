package teisim_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// env returns a getenv over a fixed map, so tests never read the process
// environment.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestDefaultConfigIsTEIs(t *testing.T) {
	c := teisim.DefaultConfig()
	checks := []struct {
		name      string
		got, want any
	}{
		{"max-concurrent-requests", c.MaxConcurrentRequests, 512},
		{"max-batch-tokens", c.MaxBatchTokens, 16384},
		{"max-batch-requests", c.MaxBatchRequests, 0},
		{"max-client-batch-size", c.MaxClientBatchSize, 32},
		{"auto-truncate", c.AutoTruncate, true},
		{"hostname", c.Hostname, "0.0.0.0"},
		{"port", c.Port, 3000},
		{"payload-limit", c.PayloadLimit, 2000000},
		{"dtype", c.DType, "float32"},
		{"model-id", c.ModelID, ""},
		{"sim-workers", c.Sim.Workers, 1},
		{"sim-error-status", c.Sim.ErrorStatus, 424},
		{"sim-batch-cost", c.Sim.BatchCost, 2 * time.Millisecond},
		{"sim-token-cost", c.Sim.TokenCost, 20 * time.Microsecond},
		{"sim-backend", c.Sim.Backend, "cuda"},
		{"sim-error-per-batch", c.Sim.ErrorPerBatch, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if _, err := teisim.New(teisim.DefaultConfig()); err == nil {
		t.Error("New(DefaultConfig()) succeeded without a model id")
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c teisim.Config)
	}{
		{
			name: "flags",
			args: []string{"--model-id", "BAAI/bge-m3", "--max-client-batch-size", "16", "--dtype", "float16", "-p", "8080", "--revision", "abc"},
			check: func(t *testing.T, c teisim.Config) {
				if c.ModelID != "BAAI/bge-m3" || c.MaxClientBatchSize != 16 || c.DType != "float16" || c.Port != 8080 || c.Revision != "abc" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "environment",
			args: nil,
			env:  map[string]string{"MODEL_ID": "BAAI/bge-small-en-v1.5", "MAX_CLIENT_BATCH_SIZE": "8", "PORT": "80", "HF_TOKEN": "secret", "SIM_DIM": "64", "SIM_BATCH_COST": "0"},
			check: func(t *testing.T, c teisim.Config) {
				if c.ModelID != "BAAI/bge-small-en-v1.5" || c.MaxClientBatchSize != 8 || c.Port != 80 || c.HFToken != "secret" || c.Sim.Dim != 64 || c.Sim.BatchCost != 0 {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "flag beats environment",
			args: []string{"--model-id", "x", "--max-client-batch-size", "4"},
			env:  map[string]string{"MAX_CLIENT_BATCH_SIZE": "8", "MODEL_ID": "y"},
			check: func(t *testing.T, c teisim.Config) {
				if c.MaxClientBatchSize != 4 || c.ModelID != "x" {
					t.Errorf("got batch %d model %q, want 4 and x", c.MaxClientBatchSize, c.ModelID)
				}
			},
		},
		{
			name: "empty environment value is unset",
			args: []string{"--model-id", "x"},
			env:  map[string]string{"MAX_BATCH_TOKENS": ""},
			check: func(t *testing.T, c teisim.Config) {
				if c.MaxBatchTokens != 16384 {
					t.Errorf("max batch tokens %d, want 16384", c.MaxBatchTokens)
				}
			},
		},
		{
			name:  "auto-truncate alone",
			args:  []string{"--model-id", "x", "--auto-truncate"},
			env:   map[string]string{"AUTO_TRUNCATE": "false"},
			check: wantAutoTruncate(true),
		},
		{
			name:  "auto-truncate=false",
			args:  []string{"--model-id", "x", "--auto-truncate=false"},
			check: wantAutoTruncate(false),
		},
		{
			name:  "auto-truncate false",
			args:  []string{"--auto-truncate", "false", "--model-id", "x"},
			check: wantAutoTruncate(false),
		},
		{
			name:  "auto-truncate true then flag",
			args:  []string{"--auto-truncate", "true", "--model-id", "x"},
			check: wantAutoTruncate(true),
		},
		{
			name:  "AUTO_TRUNCATE=false",
			args:  []string{"--model-id", "x"},
			env:   map[string]string{"AUTO_TRUNCATE": "false"},
			check: wantAutoTruncate(false),
		},
		{
			name: "hf-api-token is hf-token",
			args: []string{"--model-id", "x", "--hf-api-token", "t"},
			check: func(t *testing.T, c teisim.Config) {
				if c.HFToken != "t" {
					t.Errorf("hf token %q", c.HFToken)
				}
			},
		},
		{
			name: "sim knobs",
			args: []string{"--model-id", "x", "--sim-error-rate", "0.5", "--sim-error-status", "503", "--sim-stall", "1s", "--sim-unhealthy", "--sim-prompts", "query=query: ;doc=passage: "},
			check: func(t *testing.T, c teisim.Config) {
				s := c.Sim
				if s.ErrorRate != 0.5 || s.ErrorStatus != 503 || s.Stall != time.Second || !s.Unhealthy || s.Prompts["query"] != "query: " || s.Prompts["doc"] != "passage: " {
					t.Errorf("got %+v", s)
				}
			},
		},
		{
			name: "fault and backend knobs",
			args: []string{"--model-id", "x", "--sim-error-per-batch", "--sim-error-marker", "BAD", "--sim-nan-marker", "NAN", "--sim-backend", "ort"},
			env:  map[string]string{"SIM_NAN_MARKER": "ignored: the flag wins"},
			check: func(t *testing.T, c teisim.Config) {
				s := c.Sim
				if !s.ErrorPerBatch || s.ErrorMarker != "BAD" || s.NaNMarker != "NAN" || s.Backend != "ort" {
					t.Errorf("got %+v", s)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := teisim.ParseArgs(tt.args, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func wantAutoTruncate(want bool) func(*testing.T, teisim.Config) {
	return func(t *testing.T, c teisim.Config) {
		t.Helper()
		if c.AutoTruncate != want {
			t.Errorf("auto-truncate %v, want %v", c.AutoTruncate, want)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the error
	}{
		{"unknown flag", []string{"--model-id", "x", "--max-batch-size", "3"}, "unknown flag --max-batch-size"},
		{"unknown sim flag", []string{"--model-id", "x", "--sim-nope"}, "unknown flag --sim-nope"},
		{"missing model id", nil, "--model-id <MODEL_ID>"},
		{"bad dtype", []string{"--model-id", "x", "--dtype", "bfloat8"}, "--dtype"},
		{"bad pooling", []string{"--model-id", "x", "--pooling", "max"}, "--pooling"},
		{"bad number", []string{"--model-id", "x", "--max-batch-tokens", "lots"}, "max-batch-tokens"},
		{"port range", []string{"--model-id", "x", "--port", "70000"}, "--port"},
		{"prompt conflict", []string{"--model-id", "x", "--default-prompt", "q: ", "--default-prompt-name", "q", "--sim-prompts", "q=q: "}, "cannot be used with"},
		{"unknown default prompt", []string{"--model-id", "x", "--default-prompt-name", "q"}, "no prompts were found"},
		{"auto-truncate off and model longer than batch", []string{"--model-id", "BAAI/bge-m3", "--max-batch-tokens", "4096", "--auto-truncate", "false"}, "(8192 > 4096)"},
		{"splade pooling on a BERT", []string{"--model-id", "BAAI/bge-small-en-v1.5", "--pooling", "splade"}, "Splade pooling is not supported"},
		{"bad model type", []string{"--model-id", "x", "--sim-model-type", "llm"}, "--sim-model-type"},
		{"error rate", []string{"--model-id", "x", "--sim-error-rate", "2"}, "--sim-error-rate"},
		{"error status", []string{"--model-id", "x", "--sim-error-status", "200"}, "--sim-error-status"},
		{"compute cap", []string{"--model-id", "x", "--sim-fail-compute-cap", "86"}, "RUNTIME:COMPILED"},
		{"backend", []string{"--model-id", "x", "--sim-backend", "gpu"}, "invalid value 'gpu' for '--sim-backend': possible values: cuda, candle, ort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := teisim.ParseArgs(tt.args, env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseArgsHelpAndVersion(t *testing.T) {
	if _, err := teisim.ParseArgs([]string{"--help"}, env(nil)); !errors.Is(err, teisim.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if _, err := teisim.ParseArgs([]string{"-V"}, env(nil)); !errors.Is(err, teisim.ErrVersion) {
		t.Errorf("-V: %v", err)
	}
	help := teisim.Help()
	for _, want := range []string{"simulat", "not TEI", "--model-id", "--max-client-batch-size", "--sim-batch-cost"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
