package hwdetect

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// unlimited is the smallest value treated as "no limit": cgroup v1 writes
// unlimited memory as a page-rounded 2^63-1.
const unlimited = int64(1) << 60

// detectCgroup lowers usable cores to the CPU quota and records the memory
// limit, from cgroup v2 (cpu.max, memory.max) or v1 (cpu.cfs_quota_us and
// cpu.cfs_period_us, memory.limit_in_bytes). Limits of every ancestor of
// this process's cgroup apply, so the smallest wins.
func (d *detector) detectCgroup() {
	root := d.p.CgroupRoot
	if root == "" {
		return
	}
	self := selfCgroups(d.path("proc", "self", "cgroup"))
	var quota float64
	var memLimit int64
	if exists(filepath.Join(root, "cgroup.controllers")) {
		for _, dir := range ancestry(root, self[""]) {
			quota = minPositive(quota, readCPUMax(filepath.Join(dir, "cpu.max")))
			memLimit = minPositiveInt(memLimit, readLimit(filepath.Join(dir, "memory.max")))
		}
	} else {
		for _, name := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
			base := filepath.Join(root, name)
			if !exists(base) {
				continue
			}
			for _, dir := range ancestry(base, self["cpu"]) {
				quota = minPositive(quota, readCFS(dir))
			}
			break
		}
		for _, dir := range ancestry(filepath.Join(root, "memory"), self["memory"]) {
			memLimit = minPositiveInt(memLimit, readLimit(filepath.Join(dir, "memory.limit_in_bytes")))
		}
	}
	if quota > 0 {
		cores := int(quota)
		if float64(cores) < quota {
			cores++ // as Go's GOMAXPROCS does: a 1.5-core quota keeps 2 threads busy
		}
		cpu := &d.hw.CPU
		if !cpu.UsableCores.Known() || cores < cpu.UsableCores.Value {
			cpu.UsableCores = known(cores, SourceCgroup)
		}
	}
	if memLimit > 0 {
		d.hw.Memory.LimitBytes = known(memLimit, SourceCgroup)
	}
}

// selfCgroups reads /proc/self/cgroup into controller → path; the cgroup v2
// line ("0::/path") is under "". A missing file yields an empty map, so only
// the root's limits are read (as inside a cgroup namespace).
func selfCgroups(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// ancestry lists base/rel and each of its parents up to base, keeping those
// that exist. When rel is not under base (a cgroup namespace shows its own
// cgroup as the root), only base is left.
func ancestry(base, rel string) []string {
	var dirs []string
	rel = filepath.Clean("/" + rel)
	for {
		dir := filepath.Join(base, rel)
		if exists(dir) {
			dirs = append(dirs, dir)
		}
		if rel == "/" {
			return dirs
		}
		rel = filepath.Dir(rel)
	}
}

// readCPUMax parses cgroup v2 cpu.max ("200000 100000" or "max 100000") into
// cores; 0 means no quota.
func readCPUMax(path string) float64 {
	fields := strings.Fields(readTrim(path))
	if len(fields) != 2 || fields[0] == "max" {
		return 0
	}
	return ratio(fields[0], fields[1])
}

// readCFS parses cgroup v1's quota and period into cores; 0 means no quota
// (the quota is -1).
func readCFS(dir string) float64 {
	return ratio(readTrim(filepath.Join(dir, "cpu.cfs_quota_us")), readTrim(filepath.Join(dir, "cpu.cfs_period_us")))
}

func ratio(quota, period string) float64 {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return q / p
}

// readLimit parses a memory limit in bytes; 0 means none ("max", unlimited,
// or missing).
func readLimit(path string) int64 {
	v, err := strconv.ParseInt(readTrim(path), 10, 64)
	if err != nil || v <= 0 || v >= unlimited {
		return 0
	}
	return v
}

func minPositive(a, b float64) float64 {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

func minPositiveInt(a, b int64) int64 {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// MemoryLimit reads only the cgroup memory limit of this process, as
// Detect does (the smallest over its cgroup's ancestors), without probing
// anything else; ok is false when there is none.
func MemoryLimit(p Probes) (limit int64, ok bool) {
	d := &detector{p: p.withDefaults(), hw: &Hardware{}}
	d.detectCgroup()
	return d.hw.Memory.LimitBytes.Value, d.hw.Memory.LimitBytes.Known()
}
