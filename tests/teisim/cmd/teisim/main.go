// Command teisim is a simulator of Hugging Face Text Embeddings Inference
// 1.9.3's HTTP API, for tests and benchmarks. It takes TEI's router flags and
// environment variables, so a launcher can start it where it would start
// TEI (the Docker tests ship it as text-embeddings-router), and it logs
// TEI's start-up steps. It is not TEI and runs no model: its first log line
// says so, as do --help and --version, and /info carries "simulator":
// "teisim" (and docker_label "teisim").
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// shutdownGrace is how long a SIGTERM waits for requests in flight.
const shutdownGrace = 5 * time.Second

// run starts the simulator and serves until ctx ends (SIGTERM or interrupt).
// It returns the exit status: 0 after a clean shutdown, 1 for a failed start
// (as TEI's failed warm-up), 2 for bad arguments.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := teisim.ParseArgs(args, getenv)
	switch {
	case errors.Is(err, teisim.ErrHelp):
		fmt.Fprint(stdout, teisim.Help())
		return 0
	case errors.Is(err, teisim.ErrVersion):
		fmt.Fprintln(stdout, teisim.VersionLine)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "error: %v\n\nFor more information, try '--help'.\n", err)
		return 2
	}
	log := newLogger(stdout, cfg.JSONOutput)

	// The first line says what this is, so nobody reading the logs of a
	// container named like TEI's mistakes it for TEI.
	log.Warn("This is teisim, a simulator of text-embeddings-inference " + teisim.Version +
		" for tests and benchmarks, not TEI: it runs no model, and its vectors and scores are stand-ins")
	// Secrets (hf-token, api-key) are never logged.
	log.Info("teisim "+teisim.Version+": a simulator of text-embeddings-inference, not TEI",
		"model_id", cfg.ModelID, "dtype", cfg.DType, "max_batch_tokens", cfg.MaxBatchTokens,
		"max_client_batch_size", cfg.MaxClientBatchSize, "max_concurrent_requests", cfg.MaxConcurrentRequests,
		"auto_truncate", cfg.AutoTruncate, "sim_backend", cfg.Sim.Backend, "port", cfg.Port)
	if err := startUp(ctx, log, cfg); err != nil {
		if ctx.Err() != nil {
			log.Info("signal received before the server started")
			return 0
		}
		log.Error(err.Error())
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}

	sim, err := teisim.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	defer sim.Close()

	host := listenHost(log, cfg)
	addr := net.JoinHostPort(host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "Error: Could not bind TCP Listener on %s\n\nCaused by:\n    %v\n", addr, err)
		return 1
	}
	// With --port 0 the kernel picks the port; log the one it picked.
	addr = net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("Starting HTTP server: " + addr)
	log.Info("Ready")

	select {
	case err := <-served:
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("signal received, starting graceful shutdown")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Stalled requests outlived the grace period: end them.
		sim.Close()
		_ = srv.Close()
	}
	return 0
}

// startUp logs TEI's start-up steps, spreading --sim-startup-delay over them
// (the port opens only afterwards, as TEI's does after download, load and
// warm-up), and fails where the knobs say TEI would.
func startUp(ctx context.Context, log *slog.Logger, cfg teisim.Config) error {
	delay := cfg.Sim.StartupDelay
	log.Info("Starting download")
	if err := sleep(ctx, delay/2); err != nil {
		return err
	}
	log.Info("Model artifacts downloaded in " + (delay / 2).String())
	workers := cfg.TokenizationWorkers
	if workers == 0 {
		workers = max(runtime.NumCPU()-1, 1)
	}
	log.Info("Starting " + strconv.Itoa(workers) + " tokenization workers")
	log.Info("Starting model backend")
	if rt, compiled, ok := cfg.Sim.ComputeCapMismatch(); ok {
		return fmt.Errorf("Could not create backend\n\nCaused by:\n    Could not start backend: Runtime compute cap %d is not compatible with compile time compute cap %d", rt, compiled)
	}
	if err := sleep(ctx, delay/4); err != nil {
		return err
	}
	log.Info("Warming up model")
	if limit := cfg.Sim.OOMAboveBatchTokens; limit > 0 && cfg.MaxBatchTokens > limit {
		return errors.New("Model backend is not healthy\n\nCaused by:\n    DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")")
	}
	if err := sleep(ctx, delay-delay/2-delay/4); err != nil {
		return err
	}
	if n := teisim.BackendBatchCap(cfg.Sim.Backend); n > 0 {
		log.Warn("Backend does not support a batch size > " + strconv.Itoa(n))
		log.Warn("forcing `max_batch_requests=" + strconv.Itoa(n) + "`")
	}
	return nil
}

// listenHost is --hostname; one that is not an IP address becomes 0.0.0.0
// with TEI's warning (Docker's HOSTNAME variable does this to TEI).
func listenHost(log *slog.Logger, cfg teisim.Config) string {
	if net.ParseIP(cfg.Hostname) == nil {
		log.Warn("Invalid hostname, defaulting to 0.0.0.0")
		return "0.0.0.0"
	}
	return cfg.Hostname
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
