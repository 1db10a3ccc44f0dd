package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// userHZ is the unit of /proc/PID/stat's utime and stime: USER_HZ, which
// Linux fixes at 100 for user space whatever the kernel's tick.
const userHZ = 100

// proc is a process this program started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // its stdout and stderr
	done chan struct{}
	err  error // Wait's, once done is closed
}

// start runs bin with args in dir, its output to dir/name.log, with an
// environment of PATH and HOME alone, so neither the caller's settings nor
// a .env can reach it. It dies with this program (SIGKILL on our death).
func start(name, dir, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to end (SIGTERM), then kills it after a grace.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of the process's log, for an error message.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before ours binds it; waitReady then fails with the log.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls url until it answers 200, the process ends, or 30s pass.
func waitReady(ctx context.Context, p *proc, url string) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s ended before it was ready (%v):\n%s", p.name, p.err, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after 30s:\n%s", p.name, url, p.tail())
		}
	}
}

// build compiles a package of this module into dir.
func build(ctx context.Context, dir, name, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if root == "." || root == "" {
		return "", errors.New("not inside the module: run from the repository")
	}
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return bin, nil
}

// nginxConf is a minimal reverse proxy: one upstream kept alive, no
// access log, temporary files in the work directory.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`# misspath: nginx's proxy_pass in front of the simulator, loopback only.
worker_processes auto;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/client_body;
    proxy_temp_path {{.Dir}}/proxy;
    fastcgi_temp_path {{.Dir}}/fastcgi;
    uwsgi_temp_path {{.Dir}}/uwsgi;
    scgi_temp_path {{.Dir}}/scgi;
    upstream tei {
        server 127.0.0.1:{{.Upstream}};
        keepalive 64;
    }
    server {
        listen 127.0.0.1:{{.Port}};
        client_max_body_size 2m;
        location / {
            proxy_pass http://tei;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`))

// writeNginxConf writes nginx.conf into dir for a proxy on port in front of
// upstream.
func writeNginxConf(dir string, port, upstream int) (string, error) {
	var b bytes.Buffer
	if err := nginxConf.Execute(&b, struct {
		Dir            string
		Port, Upstream int
	}{dir, port, upstream}); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}

// cpuTicks is the user and system CPU of pid and of its children (nginx's
// workers), in USER_HZ ticks, from /proc.
func cpuTicks(pid int) (int64, error) {
	total, _, err := statTicks(pid)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		ticks, ppid, err := statTicks(child)
		if err == nil && ppid == pid {
			total += ticks
		}
	}
	return total, nil
}

// statTicks reads utime+stime and the parent of pid from /proc/PID/stat.
func statTicks(pid int) (ticks int64, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(string(b))
}

// parseStat reads utime (field 14), stime (15) and ppid (4) of a
// /proc/PID/stat line; the command name (2) is in parentheses and may
// hold spaces and parentheses itself.
func parseStat(line string) (ticks int64, ppid int, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc stat %q: no command name", line)
	}
	f := strings.Fields(line[i+1:]) // from field 3, the state
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc stat %q: %d fields", line, len(f)+2)
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("/proc stat ppid: %w", err)
	}
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc stat times: %w", err)
		}
		ticks += v
	}
	return ticks, ppid, nil
}
