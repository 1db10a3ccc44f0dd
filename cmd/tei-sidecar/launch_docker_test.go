package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tei"
	"github.com/tei-sidecar/tei-sidecar/tei/launch"
	"github.com/tei-sidecar/tei-sidecar/tests/dockertest"
)

// Models the Docker test launches.
const (
	testEmbedModel  = "BAAI/bge-small-en-v1.5"
	testRerankModel = "BAAI/bge-reranker-v2-m3"
)

// expectedPlans are the plans serve makes on this machine for the test's
// models: the test detects the hardware as the sidecar will.
func expectedPlans(t *testing.T) map[plan.Role]plan.Plan {
	t.Helper()
	hw, err := hwdetect.Detect(t.Context(), hwdetect.DefaultProbes())
	if err != nil {
		t.Fatal(err)
	}
	res, err := plan.Make(hw, plan.Settings{EmbeddingModel: testEmbedModel, RerankModel: testRerankModel})
	if err != nil {
		t.Fatal(err)
	}
	out := map[plan.Role]plan.Plan{}
	for _, p := range res.Plans {
		if len(p.GPUIDs) > 0 {
			t.Skipf("this machine plans TEI on GPU %v; the simulator image stands in for CPU images only", p.GPUIDs)
		}
		out[p.Role] = p
	}
	return out
}

// teiContainers lists a project's containers by label, id → container.
func teiContainers(t *testing.T, api client.APIClient, project string) map[string]container.Summary {
	t.Helper()
	res, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", launch.LabelManagedBy+"=tei-sidecar", launch.LabelProject+"="+project)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]container.Summary{}
	for _, c := range res.Items {
		out[c.ID] = c
	}
	return out
}

// containerFor finds the container of a role.
func containerFor(t *testing.T, cs map[string]container.Summary, role plan.Role) string {
	t.Helper()
	for id, c := range cs {
		if c.Labels[launch.LabelRole] == string(role) {
			return id
		}
	}
	t.Fatalf("no %s container among %d", role, len(cs))
	return ""
}

// TestServeLaunchesDocker runs `tei-sidecar serve` with TEI's CPU image
// (the simulator under TEI's tag) for an embedding model and a reranker,
// and follows it through a life: the planned flags reach TEI, ports are
// bound to loopback only, calls work through the sidecar; a killed TEI is
// noticed, reported and restarted; a restarted sidecar adopts the running
// containers; SIGTERM leaves no container behind.
func TestServeLaunchesDocker(t *testing.T) {
	provider := dockertest.Require(t)
	api := provider.Client()
	plans := expectedPlans(t)
	dockertest.BuildSimImage(t, plan.Registry+":cpu-1.9.3")
	for _, p := range plans {
		dockertest.BuildSimImage(t, p.Image) // whatever the CPU plan picks here
	}
	bin := buildSidecar(t)
	project := fmt.Sprintf("servetest-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		for id := range teiContainers(t, api, project) {
			_, _ = api.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
		}
	})
	env := []string{
		"TEI_LAUNCH=auto", "TEI_EMBED_URL=", "TEI_RERANK_URL=", "BEARER_TOKEN=", "TEI_KEEP=false", "TEI_FALLBACK_CPU=false",
		"EMBEDDING_MODEL=" + testEmbedModel, "RERANK_MODEL=" + testRerankModel,
		"TEI_PROJECT=" + project, "TEI_HEALTH_INTERVAL=250ms", "STARTUP_TIMEOUT=60s",
	}

	sc := startSidecar(t, bin, env...)
	sc.waitReadyStatus(t, http.StatusOK, 90*time.Second)
	if rec := sc.records("launching TEI"); len(rec) != 1 || rec[0]["mode"] != "docker" {
		t.Errorf("launch records %v, want mode docker", rec)
	}

	cs := teiContainers(t, api, project)
	if len(cs) != 2 {
		t.Fatalf("%d containers, want 2", len(cs))
	}
	for role, p := range plans {
		id := containerFor(t, cs, role)
		res, err := api.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := res.Container
		// The plan's hash as detect shows it, without the API key TEI gets.
		hash := p.Hash()
		if c.Config.Image != p.Image || !slices.Equal(c.Args, p.Args) || c.Config.Labels[launch.LabelPlanHash] != hash {
			t.Errorf("%s container runs %s %q (hash %s), plan %s %q (%s)", role, c.Config.Image, c.Args,
				c.Config.Labels[launch.LabelPlanHash], p.Image, p.Args, hash)
		}
		hostPort := ""
		for port, bindings := range c.HostConfig.PortBindings {
			for _, b := range bindings {
				if b.HostIP.String() != "127.0.0.1" {
					t.Errorf("%s: %s is to be published on %s", role, port, b.HostIP)
				}
			}
		}
		for port, bindings := range c.NetworkSettings.Ports {
			for _, b := range bindings {
				if b.HostIP.String() != "127.0.0.1" {
					t.Errorf("%s: %s published on %s", role, port, b.HostIP)
				}
				hostPort = b.HostPort
			}
		}
		key := containerEnv(c.Config.Env, launch.APIKeyEnv)
		if len(key) != 64 || strings.Contains(sc.log(), key) {
			t.Errorf("%s: API key %q: want a generated one that no log line shows", role, key)
		}
		// TEI answers only the sidecar: a call without the key is refused.
		if st := teiCall(t, "http://127.0.0.1:"+hostPort, "/embed", "", `{"inputs":"around the sidecar"}`); st != http.StatusUnauthorized {
			t.Errorf("%s answered %d to a direct call without the API key, want 401", role, st)
		}
		info := teiInfo(t, "http://127.0.0.1:"+hostPort, key)
		if info.ModelID != p.Model || info.ModelDType != p.DType || info.MaxClientBatchSize != p.MaxClientBatchSize || info.MaxBatchTokens != p.MaxBatchTokens {
			t.Errorf("%s /info: %s %s batch %d tokens %d; plan %s %s %d %d", role, info.ModelID, info.ModelDType,
				info.MaxClientBatchSize, info.MaxBatchTokens, p.Model, p.DType, p.MaxClientBatchSize, p.MaxBatchTokens)
		}
	}
	if st, body := sc.post(t, "/embed", `{"inputs":["first","second"]}`); st != 200 || strings.Count(body, "],[") != 1 {
		t.Errorf("embed: %d %.200s", st, body)
	}
	if st, body := sc.post(t, "/rerank", `{"query":"q","texts":["a","b","c"]}`); st != 200 || !strings.Contains(body, `"index"`) {
		t.Errorf("rerank: %d %.200s", st, body)
	}

	// A killed TEI is noticed, reported and replaced.
	killed := containerFor(t, cs, plan.RoleEmbedding)
	if _, err := api.ContainerKill(t.Context(), killed, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	sc.waitReadyStatus(t, http.StatusServiceUnavailable, 10*time.Second)
	sc.waitReadyStatus(t, http.StatusOK, 60*time.Second)
	if st, _ := sc.post(t, "/embed", `{"inputs":"after the restart"}`); st != 200 {
		t.Errorf("embed after the restart: %d", st)
	}
	if len(sc.records("TEI recovered")) != 1 {
		t.Errorf("no recovery logged:\n%s", sc.log())
	}
	cs = teiContainers(t, api, project)
	if _, ok := cs[killed]; ok || len(cs) != 2 {
		t.Errorf("after the restart: %d containers, the killed one still there: %t", len(cs), ok)
	}

	// A sidecar that dies and starts again adopts what runs.
	_ = sc.cmd.Process.Kill()
	<-sc.ended
	again := startSidecar(t, bin, env...)
	again.waitReadyStatus(t, http.StatusOK, 60*time.Second)
	after := teiContainers(t, api, project)
	if !sameKeys(cs, after) {
		t.Errorf("containers before %v, after restarting the sidecar %v: want the same", keys(cs), keys(after))
	}
	if n := len(again.records("adopted a running TEI container")); n != 2 || len(again.records("started TEI container")) != 0 {
		t.Errorf("%d adoptions logged, want 2, and no new container:\n%s", n, again.log())
	}
	if st, _ := again.post(t, "/rerank", `{"query":"q","texts":["a","b"]}`); st != 200 {
		t.Errorf("rerank through the adopting sidecar: %d", st)
	}

	again.stop(t)
	if left := teiContainers(t, api, project); len(left) != 0 {
		t.Errorf("%d containers left after SIGTERM", len(left))
	}
}

// containerEnv is key's value in a container's KEY=VALUE environment.
func containerEnv(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// teiCall posts body to a TEI's path with key as bearer token ("" for
// none) and returns the status.
func teiCall(t *testing.T, base, path, key, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// teiInfo reads a TEI's /info with its API key.
func teiInfo(t *testing.T, base, key string) tei.Info {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/info", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/info: %d", base, resp.StatusCode)
	}
	var info tei.Info
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info
}

func keys(m map[string]container.Summary) []string {
	var out []string
	for k := range m {
		out = append(out, k[:12])
	}
	slices.Sort(out)
	return out
}

func sameKeys(a, b map[string]container.Summary) bool { return slices.Equal(keys(a), keys(b)) }

// hostURL is where a container publishes TEI's port on loopback.
func hostURL(t *testing.T, api client.APIClient, id string) string {
	t.Helper()
	res, err := api.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bindings := range res.Container.NetworkSettings.Ports {
		for _, b := range bindings {
			return "http://127.0.0.1:" + b.HostPort
		}
	}
	t.Fatalf("container %s publishes no port", id[:12])
	return ""
}

// requestCount reads te_request_count, the requests a TEI received, from
// its /metrics.
func requestCount(t *testing.T, base, key string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics: %v", base, err)
	}
	total := 0.0
	if f := families["te_request_count"]; f != nil {
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// embedWave sends n embed calls at once, each with texts of its own (no
// cache hits), and returns the statuses that were not 200.
func embedWave(sc *sidecar, wave, n int) []string {
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"inputs":["wave %d call %d a","wave %d call %d b","wave %d call %d c"]}`, wave, i, wave, i, wave, i)
			resp, err := http.Post(sc.base+"/embed", "application/json", strings.NewReader(body))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err.Error())
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed = append(failed, fmt.Sprintf("%d %.200s", resp.StatusCode, b))
			}
		})
	}
	wg.Wait()
	return failed
}

// TestServeReplicasDocker runs `serve` with EMBEDDING_REPLICAS=3 on the
// CPU: three containers named as compose names its services, the proxy
// balancing over them (each receives calls); one killed, the other two
// keep serving through the outage (every call answers 200) and the killed
// one is replaced under its name; SIGTERM leaves nothing behind.
func TestServeReplicasDocker(t *testing.T) {
	provider := dockertest.Require(t)
	api := provider.Client()
	plans := expectedPlans(t)
	dockertest.BuildSimImage(t, plans[plan.RoleEmbedding].Image)
	bin := buildSidecar(t)
	project := fmt.Sprintf("replicatest-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		for id := range teiContainers(t, api, project) {
			_, _ = api.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
		}
	})
	sc := startSidecar(t, bin,
		"TEI_LAUNCH=docker", "TEI_EMBED_URL=", "TEI_RERANK_URL=", "BEARER_TOKEN=", "TEI_KEEP=false", "TEI_API_KEY=",
		"EMBEDDING_MODEL="+testEmbedModel, "RERANK_ENABLE=false", "EMBEDDING_REPLICAS=3", "EMBEDDING_CACHE_SIZE=0",
		"TEI_PROJECT="+project, "TEI_HEALTH_INTERVAL=250ms", "STARTUP_TIMEOUT=60s", "TEI_RESTART_MAX_BACKOFF=2s")
	sc.waitReadyStatus(t, http.StatusOK, 90*time.Second)

	byName := map[string]string{} // container name → id
	for id, c := range teiContainers(t, api, project) {
		byName[strings.TrimPrefix(c.Names[0], "/")] = id
	}
	names := slices.Sorted(maps.Keys(byName))
	if want := []string{project + "-embed", project + "-embed-1", project + "-embed-2"}; !slices.Equal(names, want) {
		t.Fatalf("containers %q, want %q", names, want)
	}
	res, err := api.ContainerInspect(t.Context(), byName[project+"-embed"], client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := containerEnv(res.Container.Config.Env, launch.APIKeyEnv)
	urls := map[string]string{}
	for name, id := range byName {
		urls[name] = hostURL(t, api, id)
	}

	// Calls at once spread over the replicas: each gets some.
	for wave := 0; ; wave++ {
		if failed := embedWave(sc, wave, 24); len(failed) > 0 {
			t.Fatalf("wave %d: %d calls failed: %q", wave, len(failed), failed)
		}
		idle := 0
		for _, name := range names {
			if requestCount(t, urls[name], key) == 0 {
				idle++
			}
		}
		if idle == 0 {
			break
		}
		if wave == 50 {
			t.Fatalf("after %d waves %d replicas have had no call", wave+1, idle)
		}
	}

	// One replica killed: the others serve every call while it is replaced.
	killed := byName[project+"-embed-1"]
	if _, err := api.ContainerKill(t.Context(), killed, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	for wave := 100; ; wave++ {
		if failed := embedWave(sc, wave, 6); len(failed) > 0 {
			t.Fatalf("during the outage, wave %d: %d calls failed: %q", wave, len(failed), failed)
		}
		if len(sc.records("TEI recovered")) > 0 {
			break
		}
		select {
		case <-sc.ended:
			t.Fatalf("the sidecar exited:\n%s", sc.log())
		case <-time.After(50 * time.Millisecond):
		}
		if wave == 100+1200 {
			t.Fatalf("the killed replica was not replaced:\n%s", sc.log())
		}
	}
	rec := sc.records("TEI recovered")
	if len(rec) != 1 || rec[0]["tei"] != "embed-1" {
		t.Errorf("recoveries %v, want embed-1's alone", rec)
	}
	after := map[string]string{}
	for id, c := range teiContainers(t, api, project) {
		after[strings.TrimPrefix(c.Names[0], "/")] = id
	}
	if len(after) != 3 || after[project+"-embed-1"] == killed || after[project+"-embed"] != byName[project+"-embed"] || after[project+"-embed-2"] != byName[project+"-embed-2"] {
		t.Errorf("containers after the restart %v, before %v: want embed-1 replaced, the others kept", after, byName)
	}
	if u := hostURL(t, api, after[project+"-embed-1"]); u != urls[project+"-embed-1"] {
		t.Errorf("the replaced replica publishes %s, was %s: the proxy's URL broke", u, urls[project+"-embed-1"])
	}
	sc.waitReadyStatus(t, http.StatusOK, 30*time.Second)

	sc.stop(t)
	if left := teiContainers(t, api, project); len(left) != 0 {
		t.Errorf("%d containers left after SIGTERM", len(left))
	}
}

// TestServeSurvivesFailedPull is a regression test: a TEI image that could
// not be pulled made serve exit (under compose: a restart loop, and
// "connection refused" for the plugin). Now the sidecar stays up, answers
// 503 with the reason on /ready, retries, and serves once the image is
// there.
func TestServeSurvivesFailedPull(t *testing.T) {
	provider := dockertest.Require(t)
	api := provider.Client()
	expectedPlans(t) // skips on a GPU machine
	dockertest.BuildSimImage(t, plan.Registry+":cpu-1.9.3")
	stamp := time.Now().UnixNano()
	// No registry listens on localhost:1: the pull fails at once.
	absent := fmt.Sprintf("localhost:1/tei-sidecar-absent-%d:cpu-1.9.3", stamp)
	project := fmt.Sprintf("pulltest-%d", stamp)
	bin := buildSidecar(t)
	t.Cleanup(func() {
		for id := range teiContainers(t, api, project) {
			_, _ = api.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
		}
		_, _ = api.ImageRemove(context.Background(), absent, client.ImageRemoveOptions{})
	})
	sc := startSidecar(t, bin,
		"TEI_LAUNCH=docker", "TEI_EMBED_URL=", "TEI_RERANK_URL=", "BEARER_TOKEN=", "TEI_KEEP=false",
		"EMBEDDING_MODEL="+testEmbedModel, "RERANK_ENABLE=false", "TEI_IMAGE="+absent,
		"TEI_PROJECT="+project, "TEI_HEALTH_INTERVAL=250ms", "STARTUP_TIMEOUT=60s", "TEI_RESTART_MAX_BACKOFF=2s")

	want := "pulling " + absent + " failed: the registry cannot be reached; retrying in"
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(sc.base + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), want) {
			if strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "dial tcp") {
				t.Errorf("/ready shows a raw network error: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready answered %d %s; want 503 with %q\n%s", resp.StatusCode, body, want, sc.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, body := sc.post(t, "/embed", `{"inputs":"while the image is missing"}`); st != http.StatusServiceUnavailable {
		t.Errorf("embed without TEI: %d %s, want 503", st, body)
	}
	if len(sc.records("starting TEI failed")) == 0 {
		t.Errorf("the failure is not logged:\n%s", sc.log())
	}

	// The image appears (as after `docker load`): the next retry starts TEI.
	if _, err := api.ImageTag(t.Context(), client.ImageTagOptions{Source: plan.Registry + ":cpu-1.9.3", Target: absent}); err != nil {
		t.Fatal(err)
	}
	sc.waitReadyStatus(t, http.StatusOK, 60*time.Second)
	if st, body := sc.post(t, "/embed", `{"inputs":"once the image is there"}`); st != http.StatusOK {
		t.Errorf("embed after recovery: %d %s", st, body)
	}
	sc.stop(t)
	if left := teiContainers(t, api, project); len(left) != 0 {
		t.Errorf("%d containers left after SIGTERM", len(left))
	}
}
