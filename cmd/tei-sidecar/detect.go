package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/alecthomas/kong"

	"github.com/tei-sidecar/tei-sidecar/charts"
	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
	"github.com/tei-sidecar/tei-sidecar/tei/launch"
)

// detectSchemaVersion is the --json schema's version. It changes only when a
// field is removed or changes meaning; new fields may appear within a
// version.
const detectSchemaVersion = 1

// defaultEnvFile is where --write-env writes when given no file.
const defaultEnvFile = ".env.optimized"

// detectCmd detects the hardware and prints the TEI launch plan.
type detectCmd struct {
	Settings plan.Settings `embed:""`

	JSON       bool        `name:"json" xor:"format" help:"Print the report as JSON (schema_version 1) instead of text."`
	WriteEnv   envFileFlag `name:"write-env" xor:"env" placeholder:"FILE" help:"Write the plan's settings to a .env file: alone, .env.optimized; --write-env FILE, that file. Only the keys it owns change; an existing file is kept as FILE.bak."`
	HelmValues bool        `name:"helm-values" xor:"format,env" help:"Print, instead of the report, a values file for the Helm chart (charts/tei-sidecar) that runs this plan on Kubernetes: run it on a node like the cluster's GPU nodes."`
}

// envFileFlag is --write-env's value: a flag that takes an optional file
// name (--write-env, --write-env FILE, --write-env=FILE). Empty means not
// given.
type envFileFlag string

// Decode takes the next argument as the file unless it is a flag.
func (f *envFileFlag) Decode(ctx *kong.DecodeContext) error {
	*f = defaultEnvFile
	switch tok := ctx.Scan.Peek(); {
	case tok.Type == kong.FlagValueToken,
		tok.Type == kong.UntypedToken && !strings.HasPrefix(tok.String(), "-") && tok.String() != "":
		ctx.Scan.Pop()
		*f = envFileFlag(tok.String())
	}
	return nil
}

// IsBool lets the flag stand alone without a value.
func (f *envFileFlag) IsBool() bool { return true }

// detectReport is the --json document. Result's fields (platform, device,
// tei_version, plans, plugin, warnings, recommendations) sit at the top
// level beside these. plans has one element per TEI replica, the embedding
// model's first: each carries its role, replica (0-based within the role),
// gpu_ids (one GPU, or none), memory_budget_mib (what it is sized for; 0
// unknown) and reasons, among them "replica" (why that many) and
// "memory_budget" (how its share was reckoned). New fields may appear
// within schema_version 1; none is removed or changes meaning.
type detectReport struct {
	SchemaVersion int `json:"schema_version"`
	plan.Result
	Hardware  hwdetect.Hardware `json:"hardware"`
	Env       []plan.EnvVar     `json:"env"`
	NextSteps []string          `json:"next_steps"`
	EnvFile   *envFileReport    `json:"env_file,omitempty"`
}

// envFileReport says what --write-env did.
type envFileReport struct {
	Path   string `json:"path"`
	Backup string `json:"backup,omitempty"`
}

func (c *detectCmd) Run(g *globals) error {
	if c.HelmValues {
		return c.helmValues(g)
	}
	// kong has already called c.Settings.Validate (it validates every
	// parsed node), and plan.Make checks again.
	hw, res, err := detectAndPlan(g, c.Settings)
	if err != nil {
		return err
	}
	report := newDetectReport(hw, res, string(c.WriteEnv))
	if c.WriteEnv != "" {
		backup, err := plan.WriteEnvFile(string(c.WriteEnv), res)
		if err != nil {
			return err
		}
		report.EnvFile = &envFileReport{Path: string(c.WriteEnv), Backup: backup}
		g.log.Info("wrote settings", "file", string(c.WriteEnv), "backup", backup)
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	return writeText(g.stdout, report)
}

// newDetectReport is the report of a plan for hw; wroteEnv is the file
// --write-env writes, if any.
func newDetectReport(hw hwdetect.Hardware, res plan.Result, wroteEnv string) detectReport {
	return detectReport{
		SchemaVersion: detectSchemaVersion,
		Result:        res,
		Hardware:      hw,
		Env:           res.EnvVars(),
		NextSteps:     nextSteps(res, wroteEnv),
	}
}

// Host ports the next steps publish TEI on, one a replica from
// firstHostPort in plan order (embedding replicas, then the reranker's), and
// the sidecar's own.
const (
	firstHostPort = 8081
	sidecarAddr   = "127.0.0.1:8080"
)

// nextSteps tells the user how to run the plan: the settings file, `serve`
// (which launches everything), or each TEI by hand with `serve` in front.
func nextSteps(res plan.Result, wroteEnv string) []string {
	var steps []string
	switch {
	case wroteEnv == "":
		steps = append(steps, "Save these settings: `tei-sidecar detect --write-env` writes .env.optimized; `--write-env .env` updates only the keys it owns in your .env")
	case isDotEnv(wroteEnv):
		steps = append(steps, fmt.Sprintf("Review %s: `tei-sidecar serve` run in this directory reads it", wroteEnv))
	default:
		steps = append(steps, fmt.Sprintf("Review %s; to use it, run `tei-sidecar detect --write-env .env`, which updates only the keys it owns in .env (`tei-sidecar serve` reads .env)", wroteEnv))
	}
	how := "through Docker"
	if slices.ContainsFunc(res.Plans, func(p plan.Plan) bool { return p.Backend == plan.BackendNative }) {
		how = "as native processes"
	}
	steps = append(steps, fmt.Sprintf("Run it all: `tei-sidecar serve` plans as above, starts %s %s and proxies to them", teiCount(res), how))

	urls := map[plan.Role][]string{}
	hostPort := firstHostPort
	for _, p := range res.Plans {
		port := hostPort
		if p.Backend == plan.BackendNative {
			port = p.Port
		} else {
			hostPort++
		}
		urls[p.Role] = append(urls[p.Role], fmt.Sprintf("http://127.0.0.1:%d", port))
		what := fmt.Sprintf("the %s model", p.Role)
		if n := len(res.Replicas(p.Role)); n > 1 {
			what += fmt.Sprintf(" (replica %d of %d)", p.Replica, n)
		}
		step := fmt.Sprintf("Start %s: %s", what, launchCommand(p, port))
		if len(urls) == 1 && len(urls[p.Role]) == 1 {
			step = fmt.Sprintf("Or, by hand: start %s: %s", what, launchCommand(p, port))
		}
		steps = append(steps, step)
	}
	serve := "tei-sidecar serve --tei-embed-url " + strings.Join(urls[plan.RoleEmbedding], ",")
	if u, ok := urls[plan.RoleRerank]; ok {
		serve += " --tei-rerank-url " + strings.Join(u, ",")
	}
	steps = append(steps,
		"Then start the sidecar in front of them: "+serve,
		fmt.Sprintf("Point the retrieval plugin at it: OPENAI_API_BASE=http://%s/v1, EMBEDDING_MODEL=%s", sidecarAddr, res.Plugin.EmbeddingModel),
	)
	return steps
}

// isDotEnv reports whether path is the .env that serve reads: the one in
// the working directory.
func isDotEnv(path string) bool {
	abs, err1 := filepath.Abs(path)
	dot, err2 := filepath.Abs(".env")
	return err1 == nil && err2 == nil && abs == dot
}

// teiCount says how many TEIs the plan runs, for people.
func teiCount(res plan.Result) string {
	if len(res.Plans) == 1 {
		return "its TEI"
	}
	return fmt.Sprintf("its %d TEIs", len(res.Plans))
}

// launchCommand renders a plan as a command to paste. Secret variables are
// passed by name only (`-e HF_TOKEN`), so Docker reads them from the caller's
// environment and the value is never printed. Containers are named as the
// launcher and compose name them (tei-embed, tei-embed-1, …) and share the
// launcher's model volume, so models download once.
func launchCommand(p plan.Plan, hostPort int) string {
	var b strings.Builder
	env := func(k string) {
		if slices.Contains(p.SecretEnv, k) {
			fmt.Fprintf(&b, " -e %s", k)
		} else {
			fmt.Fprintf(&b, " -e %s=%s", k, p.Env[k])
		}
	}
	if p.Backend == plan.BackendNative {
		for _, k := range slices.Sorted(maps.Keys(p.Env)) {
			if !slices.Contains(p.SecretEnv, k) {
				fmt.Fprintf(&b, "%s=%s ", k, p.Env[k])
			}
		}
		b.WriteString(p.Binary)
	} else {
		fmt.Fprintf(&b, "docker run -d --name tei-%s", p.Name())
		for _, id := range p.GPUIDs {
			fmt.Fprintf(&b, " --gpus device=%d", id)
		}
		fmt.Fprintf(&b, " -p 127.0.0.1:%d:%d -v %s:/data", hostPort, p.Port, launch.DefaultModelVolume)
		for _, k := range slices.Sorted(maps.Keys(p.Env)) {
			env(k)
		}
		b.WriteString(" " + p.Image)
	}
	for _, a := range p.Args {
		b.WriteString(" " + a)
	}
	return b.String()
}

// writeText prints the report for people.
func writeText(w io.Writer, r detectReport) error {
	out := &errWriter{w: w}
	hw := r.Hardware
	out.printf("Hardware\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	row("platform", r.Platform)
	row("os/arch", fmt.Sprintf("%s/%s (%s)", hw.OS, hw.Arch, containerText(hw.Container)))
	row("cpu", cpuText(hw.CPU))
	row("memory", memoryText(hw))
	if hw.Apple != nil {
		row("apple", appleText(hw.Apple))
	}
	if len(hw.GPUs) == 0 {
		row("gpus", "none")
	}
	for _, g := range hw.GPUs {
		row(fmt.Sprintf("gpu %d", g.Index), gpuText(g))
	}
	if hw.OS != "darwin" {
		row("nvidia runtime", runtimeText(hw.NVIDIARuntime))
	}
	_ = tw.Flush()
	for _, n := range hw.Notes {
		out.printf("  note: %s\n", n)
	}

	out.printf("\nReplicas\n")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, role := range []plan.Role{plan.RoleEmbedding, plan.RoleRerank} {
		reps := r.Replicas(role)
		if len(reps) == 0 {
			continue
		}
		where := make([]string, len(reps))
		for i, p := range reps {
			where[i] = p.Device
		}
		row(string(role), fmt.Sprintf("%d: %s", len(reps), strings.Join(where, " ")))
	}
	_ = tw.Flush()

	for _, p := range r.Plans {
		reps := r.Replicas(p.Role)
		title := fmt.Sprintf("Plan: %s model %s on %s", p.Role, p.Model, p.Device)
		if len(reps) > 1 {
			title += fmt.Sprintf(" (replica %d of %d, %s)", p.Replica, len(reps), p.Name())
		}
		out.printf("\n%s\n", title)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
		if p.Backend == plan.BackendNative {
			row("run", p.Binary+" (native)")
		} else {
			row("image", p.Image)
		}
		row("dtype", cmp.Or(p.DType, "TEI's choice"))
		row("memory budget", budgetText(p.MemoryBudgetMiB))
		row("max batch tokens", fmt.Sprint(p.MaxBatchTokens))
		row("client batch size", fmt.Sprint(p.MaxClientBatchSize))
		row("max input length", fmt.Sprint(p.MaxInputLength))
		if len(p.GPUIDs) > 0 {
			row("gpus", strings.Trim(fmt.Sprint(p.GPUIDs), "[]"))
		}
		row("hash", p.Hash()[:12])
		_ = tw.Flush()
		// A role's later replicas show only the reasons that differ from
		// its first, which come just before.
		reasons, first := p.Redact().Reasons, reps[0].Redact().Reasons
		if p.Replica == 0 {
			out.printf("  why:\n")
		} else {
			out.printf("  why (as %s, except):\n", reps[0].Name())
		}
		for _, reason := range reasons {
			if p.Replica > 0 && slices.Contains(first, reason) {
				continue
			}
			out.printf("    %s = %s: %s\n", reason.Field, reason.Choice, reason.Why)
		}
		for _, warn := range p.Warnings {
			if p.Replica > 0 && slices.Contains(reps[0].Warnings, warn) {
				continue
			}
			out.printf("  warning: %s\n", warn)
		}
	}

	section := func(title string, lines []string, numbered bool) {
		if len(lines) == 0 {
			return
		}
		out.printf("\n%s\n", title)
		for i, l := range lines {
			if numbered {
				out.printf("  %d. %s\n", i+1, l)
			} else {
				out.printf("  - %s\n", l)
			}
		}
	}
	section("Warnings", r.Warnings, false)
	section("Recommendations", r.Recommendations, false)
	var env []string
	for _, v := range r.Env {
		env = append(env, v.Key+"="+v.Value)
	}
	section("Settings (what --write-env writes)", env, false)
	if r.EnvFile != nil {
		msg := "wrote " + r.EnvFile.Path
		if r.EnvFile.Backup != "" {
			msg += " (previous version kept as " + r.EnvFile.Backup + ")"
		}
		out.printf("\n%s\n", msg)
	}
	section("Next steps", r.NextSteps, true)
	return out.err
}

func budgetText(mib int64) string {
	if mib <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d MiB", mib)
}

func containerText(c hwdetect.Container) string {
	if !c.InContainer {
		return "not in a container"
	}
	return "in a container: " + c.Evidence
}

func cpuText(c hwdetect.CPU) string {
	s := cmp.Or(c.Model.Value, "unknown model")
	if c.UsableCores.Known() {
		s += fmt.Sprintf(", %d usable cores (%s)", c.UsableCores.Value, c.UsableCores.Source)
		if c.LogicalCores.Known() {
			s += fmt.Sprintf(" of %d logical", c.LogicalCores.Value)
		}
	}
	if c.Features.Known() {
		s += ", features: " + cmp.Or(strings.Join(c.Features.Value, " "), "none that matter")
	}
	return s
}

func memoryText(hw hwdetect.Hardware) string {
	m := hw.Memory
	s := "unknown"
	if m.PhysicalBytes.Known() {
		s = fmt.Sprintf("%d MiB (%s)", m.PhysicalBytes.Value>>20, m.PhysicalBytes.Source)
	}
	if m.LimitBytes.Known() {
		s += fmt.Sprintf(", limited to %d MiB (%s)", m.LimitBytes.Value>>20, m.LimitBytes.Source)
	}
	return s
}

func appleText(a *hwdetect.Apple) string {
	s := cmp.Or(a.Chip.Value, "Apple Silicon")
	if a.UnifiedMemoryBytes.Known() {
		s += fmt.Sprintf(", %d MiB unified memory", a.UnifiedMemoryBytes.Value>>20)
	}
	if a.PerformanceCores.Known() {
		s += fmt.Sprintf(", %d performance + %d efficiency cores", a.PerformanceCores.Value, a.EfficiencyCores.Value)
	}
	return s
}

func gpuText(g hwdetect.GPU) string {
	fact := func(v, source string) string {
		if source == "" {
			return "unknown"
		}
		return v + " (" + source + ")"
	}
	s := fact(g.Name.Value, g.Name.Source)
	s += ", compute " + fact(g.ComputeCap.Value, g.ComputeCap.Source)
	s += ", memory " + fact(fmt.Sprintf("%d MiB", g.MemoryMiB.Value), g.MemoryMiB.Source)
	s += ", device id " + fact(g.PCIDeviceID.Value, g.PCIDeviceID.Source)
	if g.PCIAddress != "" {
		s += ", " + g.PCIAddress
	}
	return s
}

func runtimeText(f hwdetect.Fact[bool]) string {
	switch {
	case !f.Known():
		return "unknown (the host's Docker cannot be seen from inside a container)"
	case f.Value:
		return "present (" + f.Source + ")"
	}
	return "missing (" + f.Source + ")"
}

// errWriter remembers the first write error, so a report is written
// without checking every line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// helmValues prints the chart's values for TEI's pods on nodes like this
// machine. A plan no pod can run (Apple Silicon's native TEI, replicas of
// one model on unlike GPUs) is a usage error (exit 2), as a settings error
// is.
func (c *detectCmd) helmValues(g *globals) error {
	hw, err := detectHardware(g)
	if err != nil {
		return err
	}
	hw, res, err := charts.Plan(hw, c.Settings)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	v, err := charts.Build(hw, res)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	return charts.Write(g.stdout, res, v)
}

// detectHardware looks at this machine.
func detectHardware(g *globals) (hwdetect.Hardware, error) {
	probes := hwdetect.DefaultProbes()
	probes.Log = g.log
	return hwdetect.Detect(g.ctx, probes)
}

// detectAndPlan looks at this machine and plans TEI for it under s. A
// settings error is a usage error (exit 2).
func detectAndPlan(g *globals, s plan.Settings) (hwdetect.Hardware, plan.Result, error) {
	hw, err := detectHardware(g)
	if err != nil {
		return hw, plan.Result{}, err
	}
	res, err := plan.Make(hw, s)
	if err != nil {
		return hw, res, exitError{code: 2, msg: err.Error()}
	}
	return hw, res, nil
}
