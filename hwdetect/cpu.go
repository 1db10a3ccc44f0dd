package hwdetect

import (
	"context"
	"log/slog"

	"github.com/jaypipes/ghw"
)

// featureNames maps /proc/cpuinfo flags to the feature names we report: the
// ones that decide how fast TEI's CPU backends (candle with MKL, ONNX
// Runtime) run.
var featureNames = []struct{ flag, name string }{
	{"avx2", "avx2"},
	{"avx512f", "avx512f"},
	{"amx_tile", "amx"},
	{"asimd", "neon"},
	{"sve", "sve"},
}

// ghwArgs are the options every ghw call gets: the probes' root, no external
// tools (ghw would otherwise run programs such as ethtool), and ghw's
// warnings demoted to debug on the probes' logger.
func (d *detector) ghwArgs() []any {
	return []any{
		ghw.WithChroot(d.p.Root),
		ghw.WithDisableTools(),
		ghw.WithDisableTopology(),
		ghw.WithLogger(slog.New(demoted{d.p.Log.Handler()}).With("component", "ghw")),
	}
}

func (d *detector) detectCPU() {
	info, err := ghw.CPU(d.ghwArgs()...)
	if err != nil {
		d.note("CPU: %v", err)
		return
	}
	cpu := &d.hw.CPU
	if n := int(info.TotalHardwareThreads); n > 0 {
		cpu.LogicalCores = known(n, SourceGHW)
		cpu.UsableCores = known(n, SourceGHW)
	}
	if len(info.Processors) == 0 {
		return
	}
	p := info.Processors[0]
	if p.Model != "" {
		cpu.Model = known(p.Model, SourceGHW)
	}
	present := map[string]bool{}
	for _, c := range p.Capabilities {
		present[c] = true
	}
	features := []string{}
	for _, f := range featureNames {
		if present[f.flag] {
			features = append(features, f.name)
		}
	}
	cpu.Features = known(features, SourceGHW)
}

func (d *detector) detectMemory() {
	info, err := ghw.Memory(d.ghwArgs()...)
	if err != nil {
		d.note("memory: %v", err)
		return
	}
	if info.TotalPhysicalBytes > 0 {
		d.hw.Memory.PhysicalBytes = known(info.TotalPhysicalBytes, SourceGHW)
	}
}

// detectAffinity lowers the usable cores to the affinity mask (taskset,
// docker --cpuset-cpus).
func (d *detector) detectAffinity() {
	if d.p.AffinityCPUs == nil {
		return
	}
	n := d.p.AffinityCPUs()
	cpu := &d.hw.CPU
	if n > 0 && (!cpu.UsableCores.Known() || n < cpu.UsableCores.Value) {
		cpu.UsableCores = known(n, SourceAffinity)
	}
}

// demoted passes records on at debug level: ghw warns about things that are
// normal in containers (no DMI tables, no physical memory size), which are
// not the user's business unless they ask for debug logs.
type demoted struct{ h slog.Handler }

func (d demoted) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.h.Handle(ctx, r)
}

func (d demoted) WithAttrs(attrs []slog.Attr) slog.Handler { return demoted{d.h.WithAttrs(attrs)} }
func (d demoted) WithGroup(name string) slog.Handler       { return demoted{d.h.WithGroup(name)} }
