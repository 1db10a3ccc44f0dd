package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

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
		if c.Config.Image != p.Image || !slices.Equal(c.Args, p.Args) || c.Config.Labels[launch.LabelPlanHash] != p.Hash() {
			t.Errorf("%s container runs %s %q (hash %s), plan %s %q (%s)", role, c.Config.Image, c.Args,
				c.Config.Labels[launch.LabelPlanHash], p.Image, p.Args, p.Hash())
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
		info := teiInfo(t, "http://127.0.0.1:"+hostPort)
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

// teiInfo reads a TEI's /info.
func teiInfo(t *testing.T, base string) tei.Info {
	t.Helper()
	resp, err := http.Get(base + "/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
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
