package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBenchMissPathParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ticks      int64
		ppid       int
		err        string
	}{
		{name: "plain", line: "4242 (nginx) S 4241 4242 4242 0 -1 4194624 120 0 0 0 37 12 0 0 20 0 1 0 100 1000 10 0 0 0",
			ticks: 49, ppid: 4241},
		{name: "a command name with spaces and parentheses", line: "77 (tei (side) car) R 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 9 0 1 1 1",
			ticks: 11, ppid: 1},
		{name: "cut short", line: "77 (x) R 1 2 3", err: "fields"},
		{name: "no name", line: "77 x R 1", err: "no command name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ticks, ppid, err := parseStat(tc.line)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || ticks != tc.ticks || ppid != tc.ppid {
				t.Errorf("ticks %d, ppid %d, err %v; want %d, %d", ticks, ppid, err, tc.ticks, tc.ppid)
			}
		})
	}
	// This process's own line reads.
	if _, ppid, err := statTicks(os.Getpid()); err != nil || ppid != os.Getppid() {
		t.Errorf("own stat: ppid %d, err %v; want %d", ppid, err, os.Getppid())
	}
}

func TestBenchMissPathPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	s := ms(1, 2, 3, 4, 5)
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 3 * time.Millisecond}, {90, 4600 * time.Microsecond}, {0, time.Millisecond}, {100, 5 * time.Millisecond}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("p%g = %s, want %s", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

// TestBenchMissPathNginxConf checks the written configuration with nginx's own test.
func TestBenchMissPathNginxConf(t *testing.T) {
	bin := requireNginx(t)
	dir := t.TempDir()
	conf, err := writeNginxConf(dir, 18081, 18080)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", conf, "-e", dir+"/test-error.log").CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(conf)
	for _, want := range []string{"listen 127.0.0.1:18081;", "server 127.0.0.1:18080;", "keepalive 64;", `proxy_set_header Connection "";`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, b)
		}
	}
}

// TestBenchMissPathQuick runs the whole measurement for a few seconds: three
// paths in both tables, the targets judged, and no process left behind.
func TestBenchMissPathQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar and runs for seconds")
	}
	requireNginx(t)
	var out, errb bytes.Buffer
	if code := run([]string{"-quick"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out.String(), errb.String())
	}
	text := out.String()
	row := regexp.MustCompile(`(?m)^(direct|nginx|sidecar) +(\d+) `)
	rows := row.FindAllStringSubmatch(text, -1)
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 3 paths in 2 tables:\n%s", len(rows), text)
	}
	for _, r := range rows {
		if n, _ := strconv.Atoi(r[2]); n == 0 {
			t.Errorf("%s served no request:\n%s", r[1], text)
		}
	}
	if n := len(regexp.MustCompile(`(?m) (met|missed)$`).FindAllString(text, -1)); n != 3 {
		t.Errorf("%d targets judged, want 3:\n%s", n, text)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("processes left behind: %v", kids)
	}
}

// children lists this process's child processes.
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := statTicks(pid); err == nil && ppid == os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}

// requireNginx returns nginx's path, or skips the test without it; with
// TEI_SIDECAR_REQUIRE_NGINX=1 (CI sets it) a missing nginx fails the test
// instead, so that CI never passes a skipped check.
func requireNginx(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("TEI_SIDECAR_REQUIRE_NGINX") == "1" {
			t.Fatal("nginx is not installed, and TEI_SIDECAR_REQUIRE_NGINX=1")
		}
		t.Skip("nginx is not installed")
	}
	return bin
}
