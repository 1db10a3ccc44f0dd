package main

import (
	"fmt"
	"io"
	"time"
)

// The proxy's targets on the miss path.
const (
	// addedP50Factor bounds the sidecar's added p50 at one client, as a
	// multiple of nginx's.
	addedP50Factor = 1.5
	// cpuPerMiss bounds the sidecar's CPU per miss at one client.
	cpuPerMiss = 120 * time.Microsecond
)

// target is one of the proxy's targets, judged on a run.
type target struct {
	what, figure string
	met          bool
}

// targets judges the run.
func (r *results) targets() []target {
	d, n, s := r.one[pathDirect], r.one[pathNginx], r.one[pathSidecar]
	addedN, addedS := n.p50-d.p50, s.p50-d.p50
	bound := time.Duration(addedP50Factor * float64(addedN))
	mn, ms := r.many[pathNginx], r.many[pathSidecar]
	ratio := 0.0
	if mn.throughput() > 0 {
		ratio = ms.throughput() / mn.throughput()
	}
	return []target{
		{fmt.Sprintf("added p50 at one client <= %.1f x nginx's", addedP50Factor),
			fmt.Sprintf("%s vs <= %s", us(addedS), us(bound)), addedS <= bound},
		{fmt.Sprintf("CPU per miss <= %s", us(cpuPerMiss)),
			us(s.cpuPerRequest), s.cpuPerRequest >= 0 && s.cpuPerRequest <= cpuPerMiss},
		{fmt.Sprintf("%d-client throughput >= nginx's", r.clients),
			fmt.Sprintf("%.0f vs %.0f requests/s (%.2fx)", ms.throughput(), mn.throughput(), ratio), ratio >= 1},
	}
}

// allMet reports whether the run met every target.
func (r *results) allMet() bool {
	for _, t := range r.targets() {
		if !t.met {
			return false
		}
	}
	return true
}

// writeReport prints the tables and the targets.
func writeReport(w io.Writer, r *results) error {
	p := &printer{w: w}
	nginx := "nginx"
	if r.nginxVersion != "" {
		nginx = r.nginxVersion
	}
	p.printf("Miss path: unique single-query embeds, %d-d answers (%s on tests/teisim, --sim-batch-cost 0 --sim-token-cost 0), loopback, %d CPUs\n", dims, model, r.cpus)
	p.printf("direct = the simulator; nginx = %s proxy_pass, upstream keep-alive, access_log off; sidecar = tei-sidecar serve, cache off (--embedding-cache-size 0, Cache-Control: no-cache), --no-access-log\n", nginx)
	p.printf("CPU/request = the proxy's /proc/PID/stat utime+stime over the phase (nginx: master and workers) / its requests\n")

	p.printf("\nOne client, the three paths in turn, %s\n", r.oneClient)
	p.printf("%-8s %9s %9s %9s %9s %14s %16s\n", "path", "requests", "p50 µs", "p90 µs", "p99 µs", "added p50 µs", "CPU/request µs")
	d := r.one[pathDirect]
	for _, name := range []string{pathDirect, pathNginx, pathSidecar} {
		s := r.one[name]
		added := "-"
		if name != pathDirect {
			added = usNum(s.p50 - d.p50)
		}
		p.printf("%-8s %9d %9s %9s %9s %14s %16s\n", name, s.requests, usNum(s.p50), usNum(s.p90), usNum(s.p99), added, cpu(s.cpuPerRequest))
	}

	p.printf("\n%d clients, %s a path\n", r.clients, r.perPath)
	p.printf("%-8s %9s %11s %9s %9s %16s\n", "path", "requests", "requests/s", "p50 µs", "p99 µs", "CPU/request µs")
	for _, name := range []string{pathDirect, pathNginx, pathSidecar} {
		s := r.many[name]
		p.printf("%-8s %9d %11.0f %9s %9s %16s\n", name, s.requests, s.throughput(), usNum(s.p50), usNum(s.p99), cpu(s.cpuPerRequest))
	}

	p.printf("\nTargets (the sidecar)\n")
	for _, t := range r.targets() {
		verdict := "missed"
		if t.met {
			verdict = "met"
		}
		p.printf("  %-42s %-36s %s\n", t.what, t.figure, verdict)
	}
	return p.err
}

func us(d time.Duration) string { return usNum(d) + " µs" }

func usNum(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }

func cpu(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return usNum(d)
}

// printer remembers the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
