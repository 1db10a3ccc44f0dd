// Command misspath measures what the sidecar adds to a cache miss, beside
// what nginx's proxy_pass adds to the same call, on this machine, in one
// run: one client sends unique single-query embeds (1024-d answers, the
// shape of BAAI/bge-m3) to a zero-cost TEI simulator (a) directly, (b)
// through nginx and (c) through the sidecar with its cache off, in turn,
// then eight clients drive each path for a few seconds. It prints p50
// latency, the p50 added over direct, each proxy's CPU per request (its
// /proc/PID/stat utime+stime over the requests it served) and throughput,
// against the proxy's targets.
//
// It is a benchmark, not a test: run it on an idle machine,
//
//	go run ./bench/misspath
//
// It builds the sidecar and the simulator (or takes -sidecar-bin and
// -teisim-bin), listens on loopback only, and stops every process it
// started, on an interrupt too.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// options are the command line.
type options struct {
	oneClient   time.Duration // the interleaved one-client phase
	perPath     time.Duration // each path's share of the eight-client phase
	clients     int
	sidecarBin  string
	teisimBin   string
	nginxBin    string
	strict      bool
	quick       bool
	keepWorkDir bool
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("misspath", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.oneClient, "one-client", 12*time.Second, "length of the one-client phase, the three paths in turn")
	fs.DurationVar(&o.perPath, "clients-time", 3*time.Second, "length of each path's run in the many-client phase")
	fs.IntVar(&o.clients, "clients", 8, "clients of the many-client phase")
	fs.StringVar(&o.sidecarBin, "sidecar-bin", "", "the tei-sidecar binary (default: go build ./cmd/tei-sidecar)")
	fs.StringVar(&o.teisimBin, "teisim-bin", "", "the simulator's binary (default: go build ./tests/teisim/cmd/teisim)")
	fs.StringVar(&o.nginxBin, "nginx", "nginx", "the nginx binary")
	fs.BoolVar(&o.strict, "strict", false, "exit 1 when a target is missed")
	fs.BoolVar(&o.quick, "quick", false, "a run of a few seconds that checks the machinery, not the figures")
	fs.BoolVar(&o.keepWorkDir, "keep", false, "keep the work directory (logs, nginx.conf) and print its path")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.quick {
		o.oneClient, o.perPath = time.Second, 300*time.Millisecond
	}
	if o.oneClient <= 0 || o.perPath <= 0 || o.clients < 1 {
		return o, fmt.Errorf("-one-client, -clients-time and -clients must be positive")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "misspath:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := measure(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "misspath:", err)
		return 1
	}
	if err := writeReport(stdout, res); err != nil {
		fmt.Fprintln(stderr, "misspath:", err)
		return 1
	}
	if o.strict && !res.allMet() {
		return 1
	}
	return 0
}
