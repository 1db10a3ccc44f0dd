package main

import (
	"bytes"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeCommand prints this machine's file and wants secrets given
// by reference only.
func TestComposeCommand(t *testing.T) {
	const token = "hf_do_not_print_me"
	var stdout, stderr bytes.Buffer
	code := run([]string{"compose", "--embedding-device", "cpu", "--hf-token", token, "--sidecar-image", "tei-sidecar:test"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"\n  tei-embed:\n", "\n  tei-rerank:\n", "\n  sidecar:\n", "image: tei-sidecar:test\n", "HF_TOKEN: ${HF_TOKEN}\n", "127.0.0.1:${SIDECAR_PORT:-8080}:8080"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+stderr.String(), token) {
		t.Errorf("the token's value was printed:\n%s\n%s", out, stderr.String())
	}

	stdout.Reset()
	if code := run([]string{"compose", "--embedding-device", "cpu", "--no-sidecar"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--no-sidecar: exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stdout.String(), "\n  sidecar:\n") {
		t.Errorf("--no-sidecar printed the sidecar:\n%s", stdout.String())
	}
}

// envNames lists the environment variables a kong command struct reads,
// embedded structs included.
func envNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if f.Tag.Get("embed") != "" || (f.Anonymous && f.Type.Kind() == reflect.Struct) {
			names = append(names, envNames(f.Type)...)
			continue
		}
		for _, n := range strings.Split(f.Tag.Get("env"), ",") {
			if n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

// notPassedThrough are serve's settings that compose.yaml must not take
// from .env: inside the container they would break its set-up.
var notPassedThrough = []string{
	"SIDECAR_LISTEN",  // the image listens on 0.0.0.0:8080
	"TEI_LAUNCH",      // set: docker
	"TEI_PROJECT",     // set: the compose project
	"TEI_MODEL_CACHE", // set: the compose volume's name
	"TEI_EMBED_URL",   // would launch nothing
	"TEI_RERANK_URL",
	"TEI_BINARY", // a host path
}

// TestComposeYAMLPassesEveryServeSetting: every variable `serve` reads is
// either set by compose.yaml or passed through from .env, and listed in
// compose/.env.example. A new serve setting fails here until it is added.
func TestComposeYAMLPassesEveryServeSetting(t *testing.T) {
	raw, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Environment map[string]*string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	env := file.Services["sidecar"].Environment
	example, err := os.ReadFile("../../compose/.env.example")
	if err != nil {
		t.Fatal(err)
	}

	names := append(envNames(reflect.TypeFor[serveCmd]()), envNames(reflect.TypeFor[cli]())...)
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		v, inFile := env[name]
		switch {
		case slices.Contains(notPassedThrough, name):
			if inFile && v == nil {
				t.Errorf("compose.yaml passes %s through from .env; it must set it or leave it out", name)
			}
		case !inFile:
			t.Errorf("compose.yaml's sidecar does not pass %s through (add `%s:` to its environment)", name, name)
		case v != nil:
			t.Errorf("compose.yaml sets %s=%q; serve settings pass through from .env", name, *v)
		}
		if !regexp.MustCompile(`(?m)^# ` + name + `=`).Match(example) {
			t.Errorf("compose/.env.example does not list %s", name)
		}
	}
}
