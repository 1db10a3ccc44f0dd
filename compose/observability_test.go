package compose_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/tei-sidecar/tei-sidecar/compose"
	"github.com/tei-sidecar/tei-sidecar/proxy"
	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// The observability profile's files, relative to this package.
var (
	observabilityDir = "observability"
	promConfigFile   = filepath.Join(observabilityDir, "prometheus", "prometheus.yml")
	rulesFile        = filepath.Join(observabilityDir, "prometheus", "alerts.yml")
	dashboardFile    = filepath.Join(observabilityDir, "grafana", "dashboards", "tei-sidecar.json")
	provisioningDir  = filepath.Join(observabilityDir, "grafana", "provisioning")
	datasourcesFile  = filepath.Join(provisioningDir, "datasources", "prometheus.yaml")
	dashboardsFile   = filepath.Join(provisioningDir, "dashboards", "tei-sidecar.yaml")
)

// The observability profile's services.
const (
	observabilityProfile = "observability"
	prometheusService    = "prometheus"
	grafanaService       = "grafana"
	prometheusPort       = 9090
	grafanaPort          = 3000
)

// dsInput is the dashboard's data source input: Grafana's import asks for
// it, and provisioning resolves it as the dashboard variable of that name.
const dsInput = "DS_PROMETHEUS"

// pendingMetric is the request-duration histogram that the access-log and
// tracing work adds to the sidecar. The dashboard's latency-by-face panels
// read it; until it is exported its absence, and only its, is tolerated.
// Once exported it is checked as every other name is.
const pendingMetric = "sidecar_request_duration_seconds"

// prometheusOwn are series Prometheus makes itself, for every target, with
// their labels.
var prometheusOwn = map[string][]string{"up": {"job", "instance"}}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// grafanaIntervals stand in for Grafana's interval variables, so that a
// panel's query parses as PromQL once Grafana has substituted them.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// promConfig is the part of Prometheus's configuration that prometheus.yml
// uses, decoded strictly. Prometheus's own loader (its config package)
// pulls service discovery for every cloud and Kubernetes into the test
// build; this file uses none of it.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// grafanaDatasources is Grafana's data source provisioning file.
type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string         `yaml:"name"`
		UID       string         `yaml:"uid"`
		Type      string         `yaml:"type"`
		Access    string         `yaml:"access"`
		URL       string         `yaml:"url"`
		IsDefault bool           `yaml:"isDefault"`
		Editable  bool           `yaml:"editable"`
		JSONData  map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

// grafanaDashboards is Grafana's dashboard provider provisioning file.
type grafanaDashboards struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name            string `yaml:"name"`
		Type            string `yaml:"type"`
		DisableDeletion bool   `yaml:"disableDeletion"`
		AllowUIUpdates  bool   `yaml:"allowUiUpdates"`
		Options         struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// decodeStrict decodes a YAML file into v, refusing unknown keys.
func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// dashboard is the part of Grafana's dashboard model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Inputs        []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// promDatasource is every panel's data source: the input variable.
var promDatasource = datasourceRef{Type: "prometheus", UID: "${" + dsInput + "}"}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// query is one PromQL expression the observability files run, and where.
type query struct {
	where, expr string
}

// queries are every PromQL expression of the dashboard (panel targets and
// the selectors of label_values variables) and of the alerting rules.
func queries(t *testing.T) []query {
	t.Helper()
	var qs []query
	d := readDashboard(t)
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			qs = append(qs, query{fmt.Sprintf("dashboard panel %q %s", p.Title, tg.RefID), grafanaIntervals.Replace(tg.Expr)})
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := variableQuery(t, v.Query)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("dashboard variable %s: query %q is not label_values(selector, label)", v.Name, q)
		}
		qs = append(qs, query{"dashboard variable " + v.Name, m[1]})
	}
	for _, g := range parseRules(t).Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{"alert " + r.Alert, r.Expr})
		}
	}
	return qs
}

// variableQuery is a query variable's PromQL, which Grafana stores as a
// string or, from version 10, as an object holding it.
func variableQuery(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("variable query %s: %v", raw, err)
	}
	return o.Query
}

// selector is a vector selector's metric name and the labels it matches on.
type selector struct {
	name   string
	labels []string
}

// selectors parses expr as Prometheus does and returns its vector
// selectors.
func selectors(expr string) ([]selector, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []selector
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{name: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				if s.name == "" && m.Type == labels.MatchEqual {
					s.name = m.Value
				}
				continue
			}
			s.labels = append(s.labels, m.Name)
		}
		if s.name == "" {
			bad = fmt.Errorf("selector %s names no metric", vs)
		}
		out = append(out, s)
		return nil
	})
	return out, bad
}

// TestSelectorsFindEveryMetric: the extractor finds names in every place
// PromQL puts a selector, so the check on exported names sees them all.
func TestSelectorsFindEveryMetric(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`a`, []string{"a"}},
		{`sum by (x) (rate(b_total{y="1"}[5m])) / on (x) group_left () c`, []string{"b_total", "c"}},
		{`histogram_quantile(0.99, sum by (le) (rate(d_bucket[1m])))`, []string{"d_bucket"}},
		{`max_over_time(e[1m]) == 2 and f > 1 unless g`, []string{"e", "f", "g"}},
		{`{__name__="h", job="j"}`, []string{"h"}},
		{`deriv(sum(i)[10m:1m])`, []string{"i"}},
		{`label_replace(j, "a", "$1", "b", "(.*)") or vector(0)`, []string{"j"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := selectors(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range got {
				names = append(names, s.name)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("names %v, want %v", names, tt.want)
			}
		})
	}
	if _, err := selectors(`{job="j"}`); err == nil {
		t.Error(`{job="j"}: want an error for a selector without a metric name`)
	}
	if _, err := selectors(`rate(x[$__rate_interval])`); err == nil {
		t.Error("a Grafana variable left in a duration: want a parse error")
	}
}

// TestObservabilityQueriesExportedMetrics: every metric the dashboard and
// the alerting rules query is one a real sidecar serves on /metrics, with
// the labels they match on; and every sidecar_ metric it serves is on the
// dashboard.
func TestObservabilityQueriesExportedMetrics(t *testing.T) {
	fams := scrapeSidecar(t)
	queried := map[string]bool{}
	dashboardNames := map[string]bool{}
	tolerated := false
	for _, q := range queries(t) {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Errorf("%s: %q does not parse as PromQL: %v", q.where, q.expr, err)
			continue
		}
		for _, s := range sels {
			base, labels, ok := exported(fams, s.name)
			if !ok && base == pendingMetric {
				tolerated = true
				continue
			}
			if !ok {
				t.Errorf("%s queries %s, which the sidecar does not export", q.where, s.name)
				continue
			}
			queried[base] = true
			if strings.HasPrefix(q.where, "dashboard") {
				dashboardNames[base] = true
			}
			for _, l := range s.labels {
				if !slices.Contains(labels, l) {
					t.Errorf("%s matches %s on label %q; its labels are %v", q.where, s.name, l, labels)
				}
			}
		}
	}
	if tolerated {
		t.Logf("%s is not exported yet: its panels stay empty until it is", pendingMetric)
	}
	for _, name := range slices.Sorted(maps.Keys(fams)) {
		if strings.HasPrefix(name, "sidecar_") && !dashboardNames[name] {
			t.Errorf("the sidecar exports %s, which no dashboard panel shows", name)
		}
	}
	for _, want := range []string{"sidecar_breaker_state", "sidecar_queue_inputs", "sidecar_cache_redis_breaker_state", "sidecar_nonfinite_embeddings_total"} {
		if !queried[want] {
			t.Errorf("nothing queries %s", want)
		}
	}
}

// exported finds the family behind a queried name (a histogram's _bucket,
// _sum and _count are its own name; a summary's _sum and _count too) and
// returns its name and labels, those Prometheus adds included. Prometheus's
// own series (up) count as exported. For a name not found it returns the
// name it would have had.
func exported(fams map[string]*dto.MetricFamily, name string) (string, []string, bool) {
	if l, ok := prometheusOwn[name]; ok {
		return name, l, true
	}
	if f, ok := fams[name]; ok {
		return name, familyLabels(f, ""), true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, found := fams[base]
		switch {
		case found && f.GetType() == dto.MetricType_HISTOGRAM:
			return base, familyLabels(f, suffix), true
		case found && f.GetType() == dto.MetricType_SUMMARY && suffix != "_bucket":
			return base, familyLabels(f, suffix), true
		case !found:
			return base, nil, false
		}
	}
	return name, nil, false
}

// familyLabels are the label names of a family's series, with le on a
// histogram's buckets and quantile on a summary's quantiles.
func familyLabels(f *dto.MetricFamily, suffix string) []string {
	labels := slices.Clone(targetLabels)
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName())
		}
	}
	switch {
	case f.GetType() == dto.MetricType_HISTOGRAM && suffix == "_bucket":
		labels = append(labels, "le")
	case f.GetType() == dto.MetricType_SUMMARY && suffix == "":
		labels = append(labels, "quantile")
	}
	slices.Sort(labels)
	return slices.Compact(labels)
}

// scrapeSidecar runs a real sidecar, on simulated TEI replicas (embedding
// and reranking) and a shared cache, drives it until every metric it has
// holds a series (a labelled metric shows up only once it does), and
// returns what /metrics then serves.
func scrapeSidecar(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	fast := []string{"--sim-batch-cost", "0s", "--sim-token-cost", "0s"}
	embed, embedURL := teisim.Start(t, append([]string{"--model-id", "BAAI/bge-small-en-v1.5"}, fast...)...)
	_, rerankURL := teisim.Start(t, append([]string{"--model-id", "BAAI/bge-reranker-v2-m3"}, fast...)...)
	redis := miniredis.RunT(t)

	cfg := proxy.DefaultConfig()
	cfg.EmbedURLs = []string{embedURL}
	cfg.RerankURLs = []string{rerankURL}
	cfg.Shared.URL = "redis://" + redis.Addr()
	cfg.CacheSize = 2 // three inputs evict one
	cfg.BreakerFailures = 1
	cfg.Shared.BreakerFailures = 1
	cfg.StartupTimeout = 30 * time.Second
	srv, err := proxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), cfg.StartupTimeout)
	defer cancel()
	if err := srv.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	must := func(path, body string) {
		t.Helper()
		if st, b, err := send(t.Context(), hs.URL+path, body); err != nil || st != http.StatusOK {
			t.Fatalf("POST %s %s: %d %s %v", path, body, st, b, err)
		}
	}
	// Misses, calls to TEI, an eviction, a hit in memory, a rerank.
	must("/embed", `{"inputs":["one","two","three"]}`)
	must("/embed", `{"inputs":["three"]}`)
	must("/rerank", `{"query":"q","texts":["a b","c d"]}`)

	// A second request for a text in flight joins the first.
	release := embed.HoldBatches()
	first := sendAsync(t.Context(), hs.URL+"/embed", `{"inputs":["same"]}`)
	waitFor(t, "the first request to reach TEI", func() bool { n, _ := embed.Backlog(); return n > 0 })
	second := sendAsync(t.Context(), hs.URL+"/embed", `{"inputs":["same"]}`)
	waitFor(t, "the second request to join the first", func() bool { return scrape(t, hs.URL)["sidecar_coalesced_inputs_total"] != nil })
	release()
	for _, r := range []<-chan result{first, second} {
		if res := <-r; res.err != nil || res.status != http.StatusOK {
			t.Fatalf("coalesced request: %d %s %v", res.status, res.body, res.err)
		}
	}

	// TEI answers NaN: refused, counted.
	embed.SetFault(teisim.Fault{NaNMarker: "nan!"})
	if st, b, err := send(t.Context(), hs.URL+"/embed", `{"inputs":["nan! here"]}`); err != nil || st == http.StatusOK {
		t.Fatalf("a NaN embedding: %d %s %v, want an error", st, b, err)
	}

	// TEI fails: the breaker opens and the work waits to be retried,
	// until the caller gives up.
	embed.SetFault(teisim.Fault{ErrorRate: 1, ErrorStatus: http.StatusInternalServerError})
	failing, giveUp := context.WithCancel(t.Context())
	failed := sendAsync(failing, hs.URL+"/embed", `{"inputs":["fails"]}`)
	waitFor(t, "the breaker to open and the call to be retried", func() bool {
		fams := scrape(t, hs.URL)
		return fams["sidecar_breaker_transitions_total"] != nil && fams["sidecar_upstream_retries_total"] != nil
	})
	giveUp()
	<-failed
	embed.SetFault(teisim.Fault{})

	// The shared cache goes away: its breaker opens.
	redis.Close()
	n := 0
	waitFor(t, "the shared cache's breaker to open", func() bool {
		n++ // a new text each time: a text seen before is a hit in memory, asking Redis nothing
		if _, _, err := send(t.Context(), hs.URL+"/embed", fmt.Sprintf(`{"inputs":["after redis %d"]}`, n)); err != nil {
			t.Fatal(err)
		}
		return scrape(t, hs.URL)["sidecar_cache_redis_breaker_transitions_total"] != nil
	})

	return scrape(t, hs.URL)
}

// result is what sendAsync's request got.
type result struct {
	status int
	body   []byte
	err    error
}

// send posts body as JSON; it is safe from any goroutine.
func send(ctx context.Context, url, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// sendAsync posts in a goroutine of its own and delivers the result.
func sendAsync(ctx context.Context, url, body string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		st, b, err := send(ctx, url, body)
		ch <- result{st, b, err}
	}()
	return ch
}

// waitFor polls cond until it holds; a generous deadline stops a broken
// test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrape reads the sidecar's /metrics as Prometheus would.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return fams
}

// parseRules reads the rules file with Prometheus's own parser, which
// checks each expression and annotation template as Prometheus does when
// it loads them.
func parseRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

// TestAlertRulesLoad: the rules file loads in Prometheus; every rule is an
// alert with a for, a severity and annotations a person can act on, and
// reads only the job prometheus.yml scrapes.
func TestAlertRulesLoad(t *testing.T) {
	groups := parseRules(t)
	var cfg promConfig
	decodeStrict(t, promConfigFile, &cfg)
	jobs := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = true
	}
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			switch {
			case name == "":
				t.Errorf("group %s: rule %q is not an alert", g.Name, r.Record)
				continue
			case seen[name]:
				t.Errorf("alert %s defined twice", name)
			case !strings.HasPrefix(name, "TEISidecar"):
				t.Errorf("alert %s: want the TEISidecar prefix", name)
			}
			seen[name] = true
			if r.For <= 0 {
				t.Errorf("alert %s has no for: one bad scrape would page", name)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s severity %q, want critical or warning", name, s)
			}
			for _, a := range []string{"summary", "description"} {
				if len(strings.Fields(r.Annotations[a])) < 4 {
					t.Errorf("alert %s annotation %s %q: want a sentence", name, a, r.Annotations[a])
				}
			}
			e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Fatal(err) // rulefmt parsed it already
			}
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					for _, m := range vs.LabelMatchers {
						if m.Name == "job" && !jobs[m.Value] {
							t.Errorf("alert %s reads job %q, which %s does not scrape", name, m.Value, promConfigFile)
						}
					}
				}
				return nil
			})
		}
	}
	for _, want := range []string{"TEISidecarReplicaBreakerOpen", "TEISidecarNoReadyReplica", "TEISidecarCacheHitRatioCollapse",
		"TEISidecarQueueSaturated", "TEISidecarRedisBreakerOpen", "TEISidecarNonFiniteEmbeddings"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// TestDashboardImportable: the dashboard is JSON Grafana can import (its
// data source an input, DS_PROMETHEUS) and provision (the same name as a
// data source variable, defaulting to the provisioned Prometheus); every
// panel has that data source and queries, laid out on Grafana's 24-column
// grid without overlaps, and uses only variables it defines.
func TestDashboardImportable(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want all set", d.UID, d.Title, d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != dsInput || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs %+v: want one Prometheus data source input %s", d.Inputs, dsInput)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			if v.Name != dsInput || variableQuery(t, v.Query) != "prometheus" {
				t.Errorf("data source variable %s of %q: want %s of prometheus", v.Name, variableQuery(t, v.Query), dsInput)
			}
		case "query":
			if v.Datasource == nil || *v.Datasource != promDatasource {
				t.Errorf("variable %s data source %+v, want %+v", v.Name, v.Datasource, promDatasource)
			}
		}
	}
	if !vars[dsInput] {
		t.Errorf("no data source variable %s: provisioned, the panels would name no data source", dsInput)
	}

	ids := map[int]bool{}
	var boxes []panel
	variable := regexp.MustCompile(`\$(\{)?([A-Za-z_][A-Za-z0-9_]*)`)
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q gridPos %+v: off Grafana's 24-column grid", p.Title, g)
		}
		for _, o := range boxes {
			if g.X < o.GridPos.X+o.GridPos.W && o.GridPos.X < g.X+g.W && g.Y < o.GridPos.Y+o.GridPos.H && o.GridPos.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", p.Title, o.Title)
			}
		}
		boxes = append(boxes, p)
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || *p.Datasource != promDatasource {
			t.Errorf("panel %q data source %+v, want %+v", p.Title, p.Datasource, promDatasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q target %q: want an expression and a refId of its own", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && *tg.Datasource != promDatasource {
				t.Errorf("panel %q target %s data source %+v, want the panel's", p.Title, tg.RefID, tg.Datasource)
			}
			for _, m := range variable.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[2]] && !strings.HasPrefix(m[2], "__") {
					t.Errorf("panel %q uses $%s, which the dashboard does not define", p.Title, m[2])
				}
			}
		}
	}
}

// TestObservabilityProfile: `--profile observability` adds Prometheus and
// Grafana, each image pinned by tag, reachable on loopback only, reading
// the files of compose/observability read-only where their configuration
// expects them; Prometheus scrapes the sidecar's service and port and
// loads the rules, Grafana's default data source is that Prometheus and
// its dashboard provider reads the folder the dashboard is mounted in. The
// sidecar is the same with the profile as without.
func TestObservabilityProfile(t *testing.T) {
	p := load(t, []string{rootFile}, []string{observabilityProfile}, nil)
	if got, want := slices.Sorted(maps.Keys(p.Services)), []string{grafanaService, prometheusService, compose.SidecarService}; !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	checkLoopbackOnly(t, p)
	if without := load(t, []string{rootFile}, nil, nil).Services[compose.SidecarService]; !reflect.DeepEqual(without, p.Services[compose.SidecarService]) {
		t.Error("the observability profile changes the sidecar service")
	}
	for _, name := range []string{prometheusService, grafanaService} {
		s := p.Services[name]
		if !slices.Equal(s.Profiles, []string{observabilityProfile}) {
			t.Errorf("%s profiles %v, want [%s]", name, s.Profiles, observabilityProfile)
		}
		ref, err := reference.ParseNormalizedNamed(s.Image)
		if err != nil {
			t.Errorf("%s image %q: %v", name, s.Image, err)
		} else if tagged, ok := ref.(reference.Tagged); !ok || tagged.Tag() == "latest" {
			t.Errorf("%s image %q: want it pinned by a tag other than latest", name, s.Image)
		}
		for _, m := range s.Volumes {
			if m.Type != types.VolumeTypeBind || !m.ReadOnly {
				t.Errorf("%s mounts %s at %s: want a read-only bind mount", name, m.Source, m.Target)
			}
		}
	}

	// Prometheus: its configuration, the rules beside it, the sidecar.
	prom := p.Services[prometheusService]
	promDir := mountedAt(t, prom, filepath.Dir(promConfigFile))
	configFlag := ""
	for _, arg := range prom.Command {
		if v, ok := strings.CutPrefix(arg, "--config.file="); ok {
			configFlag = v
		}
	}
	if configFlag != path.Join(promDir, filepath.Base(promConfigFile)) {
		t.Errorf("prometheus --config.file=%q, want %s/%s", configFlag, promDir, filepath.Base(promConfigFile))
	}
	checkPort(t, prom, prometheusPort)
	var cfg promConfig
	decodeStrict(t, promConfigFile, &cfg)
	if len(cfg.RuleFiles) != 1 || filepath.Join(filepath.Dir(promConfigFile), cfg.RuleFiles[0]) != rulesFile {
		t.Errorf("rule_files %v, want %s, relative to the configuration", cfg.RuleFiles, filepath.Base(rulesFile))
	}
	target := fmt.Sprintf("%s:%d", compose.SidecarService, compose.SidecarPort)
	if len(cfg.ScrapeConfigs) != 1 || cfg.ScrapeConfigs[0].MetricsPath != "/metrics" || len(cfg.ScrapeConfigs[0].StaticConfigs) != 1 ||
		!slices.Equal(cfg.ScrapeConfigs[0].StaticConfigs[0].Targets, []string{target}) {
		t.Errorf("scrape_configs %+v, want one job scraping %s/metrics", cfg.ScrapeConfigs, target)
	}
	for _, d := range []string{cfg.Global.ScrapeInterval, cfg.Global.EvaluationInterval} {
		if _, err := model.ParseDuration(d); err != nil {
			t.Errorf("global interval %q: %v", d, err)
		}
	}

	// Grafana: provisioning where Grafana reads it, the data source,
	// the dashboard where its provider looks.
	graf := p.Services[grafanaService]
	if got := mountedAt(t, graf, provisioningDir); got != "/etc/grafana/provisioning" {
		t.Errorf("grafana provisioning at %s, want /etc/grafana/provisioning", got)
	}
	checkPort(t, graf, grafanaPort)
	if _, ok := graf.DependsOn[prometheusService]; !ok {
		t.Errorf("grafana depends_on %v: want %s", slices.Collect(maps.Keys(graf.DependsOn)), prometheusService)
	}
	var ds grafanaDatasources
	decodeStrict(t, datasourcesFile, &ds)
	wantURL := fmt.Sprintf("http://%s:%d", prometheusService, prometheusPort)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || !ds.Datasources[0].IsDefault || ds.Datasources[0].URL != wantURL || ds.Datasources[0].UID == "" {
		t.Errorf("data sources %+v: want one default Prometheus at %s", ds.Datasources, wantURL)
	}
	var dp grafanaDashboards
	decodeStrict(t, dashboardsFile, &dp)
	dashDir := mountedAt(t, graf, filepath.Dir(dashboardFile))
	if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options.Path != dashDir {
		t.Errorf("dashboard providers %+v: want one reading %s", dp.Providers, dashDir)
	}
	if home := env1(graf, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"); home != path.Join(dashDir, filepath.Base(dashboardFile)) {
		t.Errorf("grafana home dashboard %q, want %s/%s", home, dashDir, filepath.Base(dashboardFile))
	}
}

// mountedAt returns where service s mounts the folder dir of this package.
func mountedAt(t *testing.T, s types.ServiceConfig, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Volumes {
		if m.Source == abs {
			return m.Target
		}
	}
	t.Fatalf("%s does not mount %s (volumes %+v)", s.Name, abs, s.Volumes)
	return ""
}

// checkPort wants s to publish its port on loopback.
func checkPort(t *testing.T, s types.ServiceConfig, port uint32) {
	t.Helper()
	if !slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool { return p.Target == port && p.HostIP == "127.0.0.1" }) {
		t.Errorf("%s ports %+v: want %d on 127.0.0.1", s.Name, s.Ports, port)
	}
}
