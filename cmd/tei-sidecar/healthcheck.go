package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckCmd asks a running sidecar whether it is ready. It exists so
// that the container image, which has no shell and no curl, can run its own
// health check: `tei-sidecar healthcheck` exits 0 when /ready answers 2xx
// and 1 otherwise.
type healthcheckCmd struct {
	// Listen is the sidecar's listen address; an unspecified host (0.0.0.0,
	// ::, empty) is reached on loopback.
	Listen  string        `name:"listen" env:"SIDECAR_LISTEN" default:"127.0.0.1:8080" help:"The sidecar's listen address; 0.0.0.0 or :: is reached on loopback."`
	Path    string        `name:"path" default:"/ready" help:"Route to ask: /ready (TEI reachable) or /health (process alive)."`
	Timeout time.Duration `name:"timeout" default:"3s" help:"How long to wait for the answer."`
}

func (c *healthcheckCmd) Run(g *globals) error {
	url, err := c.url()
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	ctx, cancel := context.WithTimeout(g.ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return exitError{code: 1, msg: "unhealthy: " + err.Error()}
	}
	defer resp.Body.Close()
	// /ready's body says why it is not ready; Docker keeps the output of
	// the last checks, so show it.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return exitError{code: 1, msg: fmt.Sprintf("unhealthy: %s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))}
	}
	fmt.Fprintf(g.stdout, "healthy: %s answered %s\n", url, resp.Status)
	return nil
}

// url is where the check goes: the listen address with an unspecified host
// replaced by loopback.
func (c *healthcheckCmd) url() (string, error) {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", c.Listen, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("--listen %q: the port must be given", c.Listen)
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	path := c.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
