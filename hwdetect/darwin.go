package hwdetect

import (
	"context"
	"strconv"
	"strings"
)

// detectDarwin reads a Mac through sysctl: ghw's GPU, memory and PCI
// support stops at Linux and Windows. It runs on any GOOS given darwin
// probes, so it is tested on Linux.
func (d *detector) detectDarwin(ctx context.Context) {
	if d.p.Sysctl == nil {
		d.note("no sysctl probe: CPU and memory unknown")
		return
	}
	get := func(name string) (string, bool) {
		v, err := d.p.Sysctl(ctx, name)
		v = strings.TrimSpace(v)
		return v, err == nil && v != ""
	}
	getInt := func(name string) (int64, bool) {
		v, ok := get(name)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil && n > 0
	}

	cpu := &d.hw.CPU
	brand, hasBrand := get("machdep.cpu.brand_string")
	if hasBrand {
		cpu.Model = known(brand, SourceSysctl)
	}
	if n, ok := getInt("hw.logicalcpu"); ok {
		cpu.LogicalCores = known(int(n), SourceSysctl)
		cpu.UsableCores = known(int(n), SourceSysctl)
	} else if n, ok := getInt("hw.ncpu"); ok {
		cpu.LogicalCores = known(int(n), SourceSysctl)
		cpu.UsableCores = known(int(n), SourceSysctl)
	}
	mem, hasMem := getInt("hw.memsize")
	if hasMem {
		d.hw.Memory.PhysicalBytes = known(mem, SourceSysctl)
	}

	arm64, _ := getInt("hw.optional.arm64")
	translated, _ := getInt("sysctl.proc_translated")
	if d.p.GOARCH != "arm64" && arm64 != 1 && translated != 1 && !strings.HasPrefix(brand, "Apple") {
		// An Intel Mac: x86 features would need machdep.cpu.features.
		if f, ok := get("machdep.cpu.leaf7_features"); ok {
			cpu.Features = known(intelFeatures(f), SourceSysctl)
		}
		return
	}
	apple := &Apple{Rosetta: translated == 1}
	if hasBrand {
		apple.Chip = known(brand, SourceSysctl)
	}
	if hasMem {
		apple.UnifiedMemoryBytes = known(mem, SourceSysctl)
	}
	if n, ok := getInt("hw.perflevel0.physicalcpu"); ok {
		apple.PerformanceCores = known(int(n), SourceSysctl)
	}
	if n, ok := getInt("hw.perflevel1.physicalcpu"); ok {
		apple.EfficiencyCores = known(int(n), SourceSysctl)
	}
	d.hw.Apple = apple
	d.hw.Arch = "arm64"
	cpu.Features = known([]string{"neon"}, SourceSysctl)
	if apple.Rosetta {
		d.note("this amd64 build runs under Rosetta on Apple Silicon; an arm64 build is faster")
	}
}

// intelFeatures picks the reported features out of macOS's leaf-7 feature
// list ("AVX2 AVX512F ...").
func intelFeatures(list string) []string {
	features := []string{}
	for _, f := range strings.Fields(list) {
		switch strings.ToLower(f) {
		case "avx2":
			features = append(features, "avx2")
		case "avx512f":
			features = append(features, "avx512f")
		}
	}
	return features
}
