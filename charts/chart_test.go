package charts_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tests/golden"
)

// Names the release's objects get.
const (
	embedName   = release + "-tei-embed"
	rerankName  = release + "-tei-rerank"
	sidecarName = release + "-sidecar"
	gpu         = corev1.ResourceName("nvidia.com/gpu")
)

// secretEnv are the variables that hold secrets: each must come from a
// Secret, never a plain value.
var secretEnv = []string{"BEARER_TOKEN", "TEI_API_KEY", "API_KEY", "HF_TOKEN", "CACHE_REDIS_URL"}

// fleet is what a rendering must run.
type fleet struct {
	imageTag          string // TEI's image tag, both models
	embeds, reranks   int32  // replicas
	gpusPerPod        int64  // 0 on CPU
	product           string // the GPU product label the pods select; "" none
	dtype, batch      string // --dtype and --max-batch-tokens of the embedding model
	valuesFileWarning string // a warning the values file must carry; "" none
}

// TestHelmRender renders the chart at its defaults (CPU) and with the
// values `detect --helm-values` writes on recorded machines, checks each
// rendering object by object, lints it, and compares it with
// testdata/render/NAME.yaml.
func TestHelmRender(t *testing.T) {
	tests := []struct {
		name string
		smi  string // recorded nvidia-smi; "" for the chart's defaults
		want fleet
	}{
		{"cpu-defaults", "", fleet{imageTag: "cpu-1.9.3", embeds: 1, reranks: 1, dtype: "float32", batch: "4096"}},
		{"eight-h100", "eight-h100", fleet{imageTag: "hopper-1.9.3", embeds: 7, reranks: 1, gpusPerPod: 1,
			product: "NVIDIA-H100-80GB-HBM3", dtype: "float16", batch: "65536"}},
		{"two-l4", "two-l4", fleet{imageTag: "89-1.9.3", embeds: 1, reranks: 1, gpusPerPod: 1,
			product: "NVIDIA-L4", dtype: "float16", batch: "32768"}},
		{"t4", "t4", fleet{imageTag: "turing-1.9.3", embeds: 1, reranks: 1, gpusPerPod: 1,
			product: "Tesla-T4", dtype: "float16", batch: "8192",
			valuesFileWarning: "the plan puts tei-embed and tei-rerank on GPU 0, sized to share it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files [][]byte
			if tt.smi != "" {
				file := helmValues(t, recordedGPUs(t, tt.smi), plan.Settings{})
				golden.Check(t, filepath.Join("testdata", "values", tt.smi+".yaml"), file)
				if w := tt.want.valuesFileWarning; w != "" && !strings.Contains(string(file), w) {
					t.Errorf("the values file lacks %q:\n%s", w, file)
				}
				files = append(files, file)
			}
			vals := values(t, files)
			o, manifest := render(t, vals)
			golden.Check(t, filepath.Join("testdata", "render", tt.name+".yaml"), []byte(manifest))
			lint(t, vals)

			checkEveryPod(t, o)
			checkSecretsFromSecrets(t, o)
			checkTEI(t, o, tt.want)
			checkSidecar(t, o, true)
			if o.count != 8 {
				t.Errorf("%d objects, want 8: 2 TEI workloads and their headless Services, the sidecar's Deployment, Service, PDB and HPA", o.count)
			}
		})
	}
}

// TestHelmEverythingOn renders the 8×H100 values with every option on:
// per-pod claims (StatefulSets), secrets both existing and chart-made, the
// TEI API key, Valkey, NetworkPolicies, a ServiceMonitor and KEDA.
func TestHelmEverythingOn(t *testing.T) {
	const apiKey, hfToken = "tei-key-never-in-plain-sight", "hf_never_in_plain_sight"
	vals := values(t, [][]byte{helmValues(t, recordedGPUs(t, "eight-h100"), plan.Settings{})},
		"tei.modelCache.type=perPodPVC",
		"tei.modelCache.storageClassName=fast",
		"secrets.bearerToken.existingSecret=rag-auth",
		"secrets.bearerToken.key=tokens",
		"secrets.teiApiKey.value="+apiKey,
		"secrets.hfToken.value="+hfToken,
		"valkey.enabled=true",
		"networkPolicy.enabled=true",
		"serviceMonitor.enabled=true",
		"keda.enabled=true",
		"sidecar.env={LOG_FORMAT: json}",
		"sidecar.preStopSleepSeconds=5",
	)
	o, manifest := render(t, vals)
	golden.Check(t, filepath.Join("testdata", "render", "everything-on.yaml"), []byte(manifest))
	lint(t, vals)
	checkEveryPod(t, o)
	checkSecretsFromSecrets(t, o)
	checkSidecar(t, o, true)

	if strings.Contains(manifest, apiKey) || strings.Contains(manifest, hfToken) {
		t.Error("a secret given as a value appears in plain text in the manifest")
	}
	sec, ok := o.secrets[release+"-secrets"]
	if !ok {
		t.Fatal("no chart-made Secret")
	}
	if got := map[string]string{"TEI_API_KEY": string(sec.Data["TEI_API_KEY"]), "HF_TOKEN": string(sec.Data["HF_TOKEN"])}; got["TEI_API_KEY"] != apiKey || got["HF_TOKEN"] != hfToken || len(sec.Data) != 2 {
		t.Errorf("Secret data %v, want TEI_API_KEY and HF_TOKEN only", sec.Data)
	}

	if len(o.deployments) != 2 || len(o.statefulSets) != 2 {
		t.Fatalf("%d Deployments and %d StatefulSets, want the sidecar's and Valkey's, and TEI's two", len(o.deployments), len(o.statefulSets))
	}
	for _, name := range []string{embedName, rerankName} {
		ss := o.statefulSets[name]
		if ss == nil {
			t.Fatalf("no StatefulSet %s", name)
		}
		if ss.Spec.ServiceName != name || ss.Spec.Replicas != nil || ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("%s: serviceName %q, replicas %v (KEDA owns them), policy %q", name, ss.Spec.ServiceName, ss.Spec.Replicas, ss.Spec.PodManagementPolicy)
		}
		if n := len(ss.Spec.VolumeClaimTemplates); n != 1 {
			t.Fatalf("%s: %d claim templates", name, n)
		}
		claim := ss.Spec.VolumeClaimTemplates[0]
		if claim.Name != "model-cache" || !slices.Equal(claim.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) ||
			claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != "fast" || claim.Spec.Resources.Requests.Storage().String() != "20Gi" {
			t.Errorf("%s: claim template %+v", name, claim)
		}
		c := container(t, ss.Spec.Template.Spec, "tei")
		if slices.ContainsFunc(ss.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "model-cache" }) {
			t.Errorf("%s: a model-cache volume beside the claim template", name)
		}
		// The API key guards /health too: probes check the port.
		for what, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "http" || p.HTTPGet != nil {
				t.Errorf("%s: %s probe %+v, want tcpSocket on http", name, what, p)
			}
		}
		wantRef(t, name, c, "API_KEY", release+"-secrets", "TEI_API_KEY")
		wantRef(t, name, c, "HF_TOKEN", release+"-secrets", "HF_TOKEN")
	}
	sc := container(t, o.deployments[sidecarName].Spec.Template.Spec, "sidecar")
	wantRef(t, sidecarName, sc, "TEI_API_KEY", release+"-secrets", "TEI_API_KEY")
	wantRef(t, sidecarName, sc, "BEARER_TOKEN", "rag-auth", "tokens")
	wantValue(t, sidecarName, sc, "CACHE_REDIS_URL", "redis://"+release+"-valkey:6379")
	wantValue(t, sidecarName, sc, "LOG_FORMAT", "json")
	if l := sc.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds != 5 {
		t.Errorf("sidecar lifecycle %+v, want a 5 s sleep action", l)
	}

	if _, ok := o.deployments[release+"-valkey"]; !ok {
		t.Error("no Valkey Deployment")
	}
	if _, ok := o.services[release+"-valkey"]; !ok {
		t.Error("no Valkey Service")
	}
	for _, name := range []string{embedName, rerankName, release + "-valkey"} {
		np, ok := o.netpols[name]
		if !ok {
			t.Errorf("no NetworkPolicy %s", name)
			continue
		}
		from := np.Spec.Ingress[0].From[0].PodSelector.MatchLabels["app.kubernetes.io/component"]
		if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != strings.TrimPrefix(name, release+"-") || from != "sidecar" {
			t.Errorf("NetworkPolicy %s selects %v, from %q", name, np.Spec.PodSelector.MatchLabels, from)
		}
	}

	sm, ok := o.unstructured["ServiceMonitor/"+sidecarName]
	if !ok {
		t.Fatal("no ServiceMonitor")
	}
	if got := lookup(sm, "spec", "endpoints", 0, "port"); got != "http" {
		t.Errorf("ServiceMonitor scrapes port %v", got)
	}
	if got := lookup(sm, "spec", "selector", "matchLabels", "app.kubernetes.io/component"); got != "sidecar" {
		t.Errorf("ServiceMonitor selects %v", got)
	}
	for name, max := range map[string]float64{embedName: 7, rerankName: 1} {
		so, ok := o.unstructured["ScaledObject/"+name]
		if !ok {
			t.Errorf("no ScaledObject %s", name)
			continue
		}
		pool := strings.TrimPrefix(name, release+"-tei-")
		query := fmt.Sprintf(`sum(sidecar_queue_inputs{namespace="%s",service="%s",pool="%s"})`, namespace, sidecarName, pool)
		if lookup(so, "spec", "scaleTargetRef", "kind") != "StatefulSet" || lookup(so, "spec", "scaleTargetRef", "name") != name ||
			lookup(so, "spec", "maxReplicaCount") != max || lookup(so, "spec", "triggers", 0, "type") != "prometheus" ||
			lookup(so, "spec", "triggers", 0, "metadata", "query") != query {
			t.Errorf("ScaledObject %s: %v", name, so["spec"])
		}
	}
}

// TestHelmModelCache checks each kind of model cache but perPodPVC
// (TestHelmEverythingOn's).
func TestHelmModelCache(t *testing.T) {
	tests := []struct {
		sets      []string
		claim     string // the claim TEI's pods mount; "" for emptyDir
		chartMade bool
	}{
		{nil, "", false},
		{[]string{"tei.modelCache.type=sharedPVC", "tei.modelCache.size=100Gi"}, release + "-model-cache", true},
		{[]string{"tei.modelCache.type=existingClaim", "tei.modelCache.existingClaim=models"}, "models", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.sets, ","), func(t *testing.T) {
			o, _ := render(t, values(t, nil, tt.sets...))
			checkEveryPod(t, o)
			for _, name := range []string{embedName, rerankName} {
				spec := o.deployments[name].Spec.Template.Spec
				i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "model-cache" })
				if i < 0 {
					t.Fatalf("%s has no model-cache volume", name)
				}
				v := spec.Volumes[i]
				switch {
				case tt.claim == "" && v.EmptyDir == nil:
					t.Errorf("%s: model cache %+v, want an emptyDir", name, v.VolumeSource)
				case tt.claim != "" && (v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != tt.claim):
					t.Errorf("%s: model cache %+v, want claim %s", name, v.VolumeSource, tt.claim)
				}
				if m := container(t, spec, "tei").VolumeMounts; !slices.ContainsFunc(m, func(m corev1.VolumeMount) bool { return m.Name == "model-cache" && m.MountPath == "/data" }) {
					t.Errorf("%s: model cache not at /data: %+v", name, m)
				}
			}
			pvc, made := o.claims[tt.claim]
			if made != tt.chartMade || len(o.claims) != map[bool]int{true: 1}[tt.chartMade] {
				t.Fatalf("claims %v", o.claims)
			}
			if made && (pvc.Spec.Resources.Requests.Storage().String() != "100Gi" || pvc.Spec.AccessModes[0] != corev1.ReadWriteMany) {
				t.Errorf("claim %+v", pvc.Spec)
			}
		})
	}
}

// TestHelmRefusesBadValues checks that values no rendering can honour fail
// with a message naming the value.
func TestHelmRefusesBadValues(t *testing.T) {
	tests := []struct {
		sets    []string
		wantErr string
	}{
		{[]string{"tei.modelCache.type=hostPath"}, `tei.modelCache.type must be one of emptyDir, sharedPVC, existingClaim, perPodPVC, got "hostPath"`},
		{[]string{"tei.modelCache.type=existingClaim"}, "tei.modelCache.type existingClaim needs tei.modelCache.existingClaim"},
		{[]string{"tei.embed.enabled=false"}, "tei.embed.enabled must be true: the sidecar needs an embedding model"},
		{[]string{"tei.rerank.replicas=0"}, "tei.rerank.replicas must be at least 1, got 0"},
		{[]string{"valkey.enabled=true", "secrets.redisUrl.existingSecret=redis"}, "valkey.enabled and secrets.redisUrl both give the sidecar a Redis: choose one"},
		{[]string{"sidecar.env={TEI_LAUNCH: docker}"}, "sidecar.env.TEI_LAUNCH is the chart's to set"},
		{[]string{"sidecar.env={BEARER_TOKEN: plain}"}, "sidecar.env.BEARER_TOKEN is the chart's to set"},
		{[]string{"sidecar.env={RERANK_K: 9}"}, "sidecar.env.RERANK_K is in sidecar.settings too"},
		{[]string{"sidecar.autoscaling.targetCPUUtilizationPercentage=0"}, "sidecar.autoscaling needs targetCPUUtilizationPercentage or metrics"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.sets, ","), func(t *testing.T) {
			_, err := install(t, values(t, nil, tt.sets...))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestHelmRerankOff checks that without a reranker the sidecar is told so
// and given no rerank URL.
func TestHelmRerankOff(t *testing.T) {
	o, _ := render(t, values(t, nil, "tei.rerank.enabled=false"))
	if _, ok := o.deployments[rerankName]; ok {
		t.Error("a reranker Deployment though disabled")
	}
	if _, ok := o.services[rerankName]; ok {
		t.Error("a reranker Service though disabled")
	}
	c := container(t, o.deployments[sidecarName].Spec.Template.Spec, "sidecar")
	wantValue(t, sidecarName, c, "RERANK_ENABLE", "false")
	if _, ok := env(c, "TEI_RERANK_URL"); ok {
		t.Error("TEI_RERANK_URL set without a reranker")
	}
}

// checkEveryPod checks every pod template: hardened, nothing of the host.
func checkEveryPod(t *testing.T, o objects) {
	t.Helper()
	pods := map[string]corev1.PodSpec{}
	for name, d := range o.deployments {
		pods[name] = d.Spec.Template.Spec
	}
	for name, s := range o.statefulSets {
		pods[name] = s.Spec.Template.Spec
	}
	if len(pods) == 0 {
		t.Fatal("no pods")
	}
	for name, spec := range pods {
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Errorf("%s shares the host's namespaces", name)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s mounts a service account token it has no use for", name)
		}
		for _, v := range spec.Volumes {
			if v.HostPath != nil {
				t.Errorf("%s has a hostPath volume %s", name, v.Name)
			}
		}
		psc := spec.SecurityContext
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod security context %+v, want seccomp RuntimeDefault", name, psc)
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s/%s has no security context", name, c.Name)
				continue
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s/%s is privileged", name, c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s may escalate privileges", name, c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s/%s has a writable root file system", name, c.Name)
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
				t.Errorf("%s/%s may run as root", name, c.Name)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s/%s keeps capabilities: %+v", name, c.Name, sc.Capabilities)
			}
		}
	}
}

// checkSecretsFromSecrets checks that every secret variable of every
// container comes from a Secret.
func checkSecretsFromSecrets(t *testing.T, o objects) {
	t.Helper()
	check := func(name string, spec corev1.PodSpec) {
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				if !slices.Contains(secretEnv, e.Name) {
					continue
				}
				if name == release+"-sidecar" && e.Name == "CACHE_REDIS_URL" && e.ValueFrom == nil && strings.HasPrefix(e.Value, "redis://"+release+"-valkey:") {
					continue // the bundled Valkey has no password
				}
				if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					t.Errorf("%s/%s: %s is not read from a Secret: %+v", name, c.Name, e.Name, e)
				}
			}
		}
	}
	for name, d := range o.deployments {
		check(name, d.Spec.Template.Spec)
	}
	for name, s := range o.statefulSets {
		check(name, s.Spec.Template.Spec)
	}
}

// teiPod is one model's TEI workload, whichever kind.
type teiPod struct {
	replicas *int32
	spec     corev1.PodTemplateSpec
}

func teiWorkload(t *testing.T, o objects, name string) teiPod {
	t.Helper()
	if d, ok := o.deployments[name]; ok {
		return teiPod{d.Spec.Replicas, d.Spec.Template}
	}
	if s, ok := o.statefulSets[name]; ok {
		return teiPod{s.Spec.Replicas, s.Spec.Template}
	}
	t.Fatalf("no TEI workload %s", name)
	return teiPod{}
}

// checkTEI checks both models' workloads and headless Services.
func checkTEI(t *testing.T, o objects, want fleet) {
	t.Helper()
	var gpus int64
	for _, m := range []struct {
		name     string
		replicas int32
	}{{embedName, want.embeds}, {rerankName, want.reranks}} {
		w := teiWorkload(t, o, m.name)
		if w.replicas == nil || *w.replicas != m.replicas {
			t.Errorf("%s: replicas %v, want %d", m.name, w.replicas, m.replicas)
		} else {
			gpus += int64(*w.replicas) * w.spec.Spec.Containers[0].Resources.Limits.Name(gpu, "").Value()
		}
		spec := w.spec.Spec
		c := container(t, spec, "tei")
		if want := plan.Registry + ":" + want.imageTag; c.Image != want {
			t.Errorf("%s: image %s, want %s", m.name, c.Image, want)
		}
		limits, requests := c.Resources.Limits, c.Resources.Requests
		if n := limits.Name(gpu, "").Value(); n != want.gpusPerPod {
			t.Errorf("%s: %d GPUs a pod, want %d", m.name, n, want.gpusPerPod)
		}
		if requests.Cpu().IsZero() || requests.Memory().IsZero() || limits.Memory().Cmp(*requests.Memory()) != 0 {
			t.Errorf("%s: resources %+v, want CPU and memory requested, memory limited to its request", m.name, c.Resources)
		}
		if got := spec.NodeSelector["nvidia.com/gpu.product"]; got != want.product {
			t.Errorf("%s: GPU product selected %q, want %q", m.name, got, want.product)
		}
		tolerates := slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool { return tl.Key == "nvidia.com/gpu" })
		if tolerates != (want.gpusPerPod > 0) {
			t.Errorf("%s: tolerations %+v", m.name, spec.Tolerations)
		}
		_, rayon := env(c, "RAYON_NUM_THREADS")
		if rayon != (want.gpusPerPod == 0) {
			t.Errorf("%s: RAYON_NUM_THREADS set %v: the CPU defaults' variables must not outlive a GPU values file", m.name, rayon)
		}
		if m.name == embedName {
			if got := flagValue(c.Args, "--dtype"); got != want.dtype {
				t.Errorf("%s: --dtype %s, want %s", m.name, got, want.dtype)
			}
			if got := flagValue(c.Args, "--max-batch-tokens"); got != want.batch {
				t.Errorf("%s: --max-batch-tokens %s, want %s", m.name, got, want.batch)
			}
		}
		if flagValue(c.Args, "--huggingface-hub-cache") != "/data" || flagValue(c.Args, "--hostname") != "0.0.0.0" {
			t.Errorf("%s: args %q", m.name, c.Args)
		}
		port := c.Ports[0]
		if port.Name != "http" || fmt.Sprint(port.ContainerPort) != flagValue(c.Args, "--port") {
			t.Errorf("%s: port %+v, args %q", m.name, port, c.Args)
		}
		// TEI opens its port only once the model is loaded: the startup
		// probe must wait out a download.
		sp := c.StartupProbe
		if sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != "/health" || sp.PeriodSeconds*sp.FailureThreshold < 1800 {
			t.Errorf("%s: startup probe %+v, want /health for at least 30 minutes", m.name, sp)
		}
		if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/health" || rp.HTTPGet.Port.String() != "http" {
			t.Errorf("%s: readiness probe %+v, want /health", m.name, rp)
		}
		if lp := c.LivenessProbe; lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/health" {
			t.Errorf("%s: liveness probe %+v, want /health", m.name, lp)
		}
		// Sidecars find a stopping pod gone only at their next lookup.
		if l := c.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Exec == nil || !slices.Equal(l.PreStop.Exec.Command, []string{"sleep", "15"}) ||
			*spec.TerminationGracePeriodSeconds <= 15 {
			t.Errorf("%s: lifecycle %+v, grace %d s; want a 15 s sleep before TEI stops, within the grace period", m.name, l, *spec.TerminationGracePeriodSeconds)
		}

		svc, ok := o.services[m.name]
		if !ok {
			t.Fatalf("no Service %s", m.name)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: Service is not headless over ready pods: %+v", m.name, svc.Spec)
		}
		if !selects(svc.Spec.Selector, w.spec.Labels) || svc.Spec.Ports[0].Port != port.ContainerPort || svc.Spec.Ports[0].TargetPort.String() != "http" {
			t.Errorf("%s: Service %+v does not reach pods %v on %d", m.name, svc.Spec, w.spec.Labels, port.ContainerPort)
		}
	}
	if total := int64(want.embeds+want.reranks) * want.gpusPerPod; gpus != total {
		t.Errorf("%d GPUs requested in all, want %d", gpus, total)
	}
}

// checkSidecar checks the sidecar's Deployment, Service, PDB and HPA.
func checkSidecar(t *testing.T, o objects, rerank bool) {
	t.Helper()
	d, ok := o.deployments[sidecarName]
	if !ok {
		t.Fatal("no sidecar Deployment")
	}
	spec := d.Spec.Template.Spec
	c := container(t, spec, "sidecar")
	if c.Image != "tei-sidecar:local" || !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("sidecar runs %s %q", c.Image, c.Args)
	}
	wantValue(t, sidecarName, c, "TEI_LAUNCH", "none")
	wantValue(t, sidecarName, c, "SIDECAR_LISTEN", "0.0.0.0:8080")
	wantValue(t, sidecarName, c, "TEI_EMBED_URL", "dns+http://"+embedName+"."+namespace+".svc.cluster.local:8080")
	if rerank {
		wantValue(t, sidecarName, c, "TEI_RERANK_URL", "dns+http://"+rerankName+"."+namespace+".svc.cluster.local:8080")
		wantValue(t, sidecarName, c, "RERANK_ENABLE", "true")
	}
	if spec.SecurityContext.RunAsUser == nil || *spec.SecurityContext.RunAsUser != 65532 || *c.SecurityContext.RunAsUser != 65532 {
		t.Errorf("sidecar does not run as 65532: %+v %+v", spec.SecurityContext, c.SecurityContext)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" || p.HTTPGet.Port.String() != "http" {
		t.Errorf("sidecar readiness probe %+v, want /ready", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/health" {
		t.Errorf("sidecar liveness probe %+v, want /health", p)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("sidecar replicas %d set beside its autoscaler", *d.Spec.Replicas)
	}
	labels := d.Spec.Template.Labels
	if svc, ok := o.services[sidecarName]; !ok || !selects(svc.Spec.Selector, labels) || svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("sidecar Service %+v", svc)
	}
	if pdb, ok := o.pdbs[sidecarName]; !ok || !selects(pdb.Spec.Selector.MatchLabels, labels) || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("sidecar PDB %+v", pdb)
	}
	hpa, ok := o.hpas[sidecarName]
	if !ok {
		t.Fatal("no sidecar HPA")
	}
	m := hpa.Spec.Metrics
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != sidecarName || *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 10 ||
		len(m) != 1 || m[0].Resource == nil || m[0].Resource.Name != corev1.ResourceCPU || *m[0].Resource.Target.AverageUtilization != 70 {
		t.Errorf("sidecar HPA %+v", hpa.Spec)
	}
	if c.Resources.Requests.Cpu().IsZero() {
		t.Error("the sidecar requests no CPU: its autoscaler has nothing to measure utilisation against")
	}
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %s", name)
	}
	return spec.Containers[i]
}

func env(c corev1.Container, name string) (corev1.EnvVar, bool) {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return corev1.EnvVar{}, false
	}
	return c.Env[i], true
}

func wantValue(t *testing.T, who string, c corev1.Container, name, value string) {
	t.Helper()
	if e, ok := env(c, name); !ok || e.Value != value || e.ValueFrom != nil {
		t.Errorf("%s: %s = %+v, want %q", who, name, e, value)
	}
}

func wantRef(t *testing.T, who string, c corev1.Container, name, secret, key string) {
	t.Helper()
	e, ok := env(c, name)
	if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
		e.ValueFrom.SecretKeyRef.Name != secret || e.ValueFrom.SecretKeyRef.Key != key {
		t.Errorf("%s: %s = %+v, want Secret %s's key %s", who, name, e, secret, key)
	}
}

// flagValue is the argument after flag in args.
func flagValue(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

// selects reports whether a selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// lookup walks an unstructured object by keys and indexes.
func lookup(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}
