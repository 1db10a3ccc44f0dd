package charts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/tei-sidecar/tei-sidecar/charts"
	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/hwdetect/hwtest"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// The release every test renders: its name and namespace show in names and
// discovery URLs.
const (
	release   = "rag"
	namespace = "retrieval"
)

// The recorded machines live with the detector that reads them.
const machines = "../hwdetect/testdata"

// snapshots are the recorded machines, unpacked once and shared.
var snapshots *hwtest.Snapshots

func TestMain(m *testing.M) { hwtest.Main(m, filepath.Join(machines, "snapshots"), &snapshots) }

// recordedGPUs is a recorded machine: the 24-core Xeon's /proc and /sys
// with an nvidia-smi stand-in from hwdetect/testdata/nvidia-smi.
func recordedGPUs(t *testing.T, smi string) hwdetect.Hardware {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(machines, "nvidia-smi", smi))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nvidia-smi")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	hw, err := hwdetect.Detect(context.Background(), hwdetect.Probes{
		GOOS: "linux", GOARCH: "amd64",
		Root:      snapshots.Recorded(t, "linux-amd64-xeon-24core.tar.gz"),
		NvidiaSMI: hwdetect.DefaultProbes().NvidiaSMI,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(hw.GPUs) == 0 {
		t.Fatalf("no GPU detected with %s", dir)
	}
	return hw
}

// defaultPod is the machine the chart's defaults are planned for: a CPU
// pod of 4 cores and 16 GiB on an x86-64 node.
func defaultPod() hwdetect.Hardware {
	return hwdetect.Hardware{
		OS: "linux", Arch: "amd64",
		CPU: hwdetect.CPU{UsableCores: hwdetect.Fact[int]{Value: 4, Source: hwdetect.SourceCgroup}},
		Memory: hwdetect.Memory{
			PhysicalBytes: hwdetect.Fact[int64]{Value: 64 << 30, Source: hwdetect.SourceGHW},
			LimitBytes:    hwdetect.Fact[int64]{Value: 16 << 30, Source: hwdetect.SourceCgroup},
		},
		GPUs:      []hwdetect.GPU{},
		Container: hwdetect.Container{InContainer: true, Evidence: "test"},
	}
}

// helmValues is what `detect --helm-values` prints for hw under s.
func helmValues(t *testing.T, hw hwdetect.Hardware, s plan.Settings) []byte {
	t.Helper()
	hw, res, err := charts.Plan(hw, s)
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
	return b.Bytes()
}

// values reads values files as `helm install -f` does, later ones over
// earlier ones, then sets each "path=YAML" of sets as --set would.
func values(t *testing.T, files [][]byte, sets ...string) map[string]any {
	t.Helper()
	merged := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValues(f)
		if err != nil {
			t.Fatalf("values file does not parse: %v\n%s", err, f)
		}
		merged = mergeMaps(merged, v)
	}
	for _, s := range sets {
		path, value, _ := strings.Cut(s, "=")
		var v any
		if err := yaml.Unmarshal([]byte(value), &v); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		keys := strings.Split(path, ".")
		m := merged
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = v
	}
	return merged
}

// mergeMaps is Helm's merge of two values files: b's maps merged into a's,
// everything else replaced.
func mergeMaps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bv, ok := v.(map[string]any); ok {
			if av, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(av, bv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// chart loads the chart from its folder.
func chart(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(charts.Chart)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// install renders the chart as `helm install --dry-run` does without a
// cluster (what `helm template` does), returning the manifest.
func install(t *testing.T, vals map[string]any) (string, error) {
	t.Helper()
	ch, err := loader.Load(chart(t))
	if err != nil {
		t.Fatal(err)
	}
	client := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	client.DryRun, client.DryRunOption = true, "client"
	client.ClientOnly, client.Replace = true, true
	client.ReleaseName, client.Namespace = release, namespace
	rel, err := client.Run(ch, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

// objects are a rendering, decoded.
type objects struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	claims       map[string]*corev1.PersistentVolumeClaim
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	netpols      map[string]*networkingv1.NetworkPolicy
	// unstructured holds the kinds k8s.io/api lacks (KEDA's ScaledObject,
	// the Prometheus Operator's ServiceMonitor), by kind and name.
	unstructured map[string]map[string]any
	count        int
}

// render installs the chart with vals and decodes every object strictly:
// an unknown or duplicate field, or a kind the tests do not know, fails.
func render(t *testing.T, vals map[string]any) (objects, string) {
	t.Helper()
	manifest, err := install(t, vals)
	if err != nil {
		t.Fatalf("rendering failed: %v", err)
	}
	o := objects{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		claims: map[string]*corev1.PersistentVolumeClaim{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		unstructured: map[string]map[string]any{},
	}
	for _, doc := range releaseutil.SplitManifests(manifest) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := sigsyaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("object does not parse: %v\n%s", err, doc)
		}
		if head.Kind == "" {
			continue // a template that rendered to comments only
		}
		if err := o.add(head.APIVersion, head.Kind, head.Metadata.Name, []byte(doc)); err != nil {
			t.Errorf("%s %s: %v\n%s", head.Kind, head.Metadata.Name, err, doc)
		}
	}
	return o, manifest
}

// add decodes one object into its k8s.io/api type.
func (o *objects) add(apiVersion, kind, name string, doc []byte) error {
	strict := func(dst any) error { return sigsyaml.UnmarshalStrict(doc, dst) }
	var err error
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		err = decodeInto(strict, o.deployments, name)
	case "apps/v1 StatefulSet":
		err = decodeInto(strict, o.statefulSets, name)
	case "v1 Service":
		err = decodeInto(strict, o.services, name)
	case "v1 Secret":
		err = decodeInto(strict, o.secrets, name)
	case "v1 PersistentVolumeClaim":
		err = decodeInto(strict, o.claims, name)
	case "policy/v1 PodDisruptionBudget":
		err = decodeInto(strict, o.pdbs, name)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		err = decodeInto(strict, o.hpas, name)
	case "networking.k8s.io/v1 NetworkPolicy":
		err = decodeInto(strict, o.netpols, name)
	case "keda.sh/v1alpha1 ScaledObject", "monitoring.coreos.com/v1 ServiceMonitor":
		var m map[string]any
		if err = strict(&m); err == nil {
			o.unstructured[kind+"/"+name] = m
		}
	default:
		return fmt.Errorf("unexpected kind %s %s", apiVersion, kind)
	}
	if err == nil {
		o.count++
	}
	return err
}

// decodeInto decodes into a new T stored under name; two of a name fail.
func decodeInto[T any](decode func(any) error, into map[string]*T, name string) error {
	if _, dup := into[name]; dup {
		return errors.New("rendered twice")
	}
	v := new(T)
	if err := decode(v); err != nil {
		return err
	}
	into[name] = v
	return nil
}

// lint runs `helm lint --strict` on the chart with vals.
func lint(t *testing.T, vals map[string]any) {
	t.Helper()
	l := action.NewLint()
	l.Strict, l.Namespace = true, namespace
	res := l.Run([]string{chart(t)}, vals)
	for _, err := range res.Errors {
		t.Errorf("helm lint --strict: %v", err)
	}
	for _, m := range res.Messages {
		// Strict fails on warnings; information (a missing icon) passes.
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint --strict: %v", m)
		}
	}
}
