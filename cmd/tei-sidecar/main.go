// Command tei-sidecar runs Hugging Face Text Embeddings Inference (TEI) for a
// retrieval service: it detects the hardware, plans and launches TEI, and
// proxies embed and rerank calls through a cache.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/joho/godotenv"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// globals holds what every subcommand may need; it is bound into kong so a
// command's Run method can ask for it.
type globals struct {
	ctx    context.Context
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
}

// cli is the whole command line. Every flag also reads the environment
// variable named in its env tag, as TEI's own CLI does.
type cli struct {
	LogLevel  slog.Level `name:"log-level" env:"LOG_LEVEL" default:"info" help:"Log level: debug, info, warn or error."`
	LogFormat string     `name:"log-format" env:"LOG_FORMAT" enum:"text,json" default:"text" help:"Log format: text or json."`

	Serve   serveCmd   `cmd:"" help:"Detect, plan, launch and supervise TEI, and proxy embed and rerank calls to it through a cache."`
	Detect  detectCmd  `cmd:"" help:"Detect the hardware and print the TEI launch plan."`
	Bench   benchCmd   `cmd:"" help:"Run the retrieval plugin's benchmark over HTTP."`
	Tune    tuneCmd    `cmd:"" help:"Find the best client batch size and concurrency against a live TEI."`
	Version versionCmd `cmd:"" help:"Print the version."`

	Compose     composeCmd     `cmd:"" help:"Print a Docker Compose file of TEI's services planned for this machine, with the sidecar."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 when the sidecar at --listen is ready, 1 otherwise (the image's health check)."`
}

// run parses args, loads .env, and runs the chosen subcommand. It returns the
// process exit code so that deferred calls run before main exits.
func run(args []string, stdout, stderr io.Writer) int {
	// A .env in the working directory fills in variables not already set.
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "tei-sidecar: reading .env: %v\n", err)
		return 2
	}
	unsetEmpty()

	var c cli
	parser, err := kong.New(&c,
		kong.Name("tei-sidecar"),
		kong.Description("Run Hugging Face Text Embeddings Inference beside a retrieval service: detect, launch, cache, proxy."),
		kong.UsageOnError(),
		defaultVars(),
		kong.Writers(stdout, stderr),
	)
	if err != nil {
		fmt.Fprintf(stderr, "tei-sidecar: %v\n", err)
		return 2
	}
	// Bare tei-sidecar and `tei-sidecar help [command]` print the help:
	// every command with a one-line summary, or the command's flags.
	switch {
	case len(args) == 0:
		args = []string{"--help"}
	case args[0] == "help":
		args = append(args[1:], "--help")
	}
	kctx, code, done := parse(parser, args)
	if done {
		return code
	}

	var handler slog.Handler
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		handler = slog.NewJSONHandler(stderr, opts)
	} else {
		handler = slog.NewTextHandler(stderr, opts)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{ctx: ctx, log: slog.New(handler), stdout: stdout, stderr: stderr}
	if err := kctx.Run(g); err != nil {
		var ec exitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintf(stderr, "tei-sidecar: %s\n", msg)
			}
			return ec.ExitCode()
		}
		fmt.Fprintf(stderr, "tei-sidecar: %v\n", err)
		return 1
	}
	return 0
}

// kongExit is the panic value used to unwind out of kong when it asks to exit
// (after --help, or on a usage error), so run can return instead.
type kongExit struct{}

// parse runs kong's parser, turning its exit requests into a return value.
func parse(p *kong.Kong, args []string) (kctx *kong.Context, code int, done bool) {
	code = -1
	p.Exit = func(c int) { code = c; panic(kongExit{}) }
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(kongExit); !ok {
				panic(r)
			}
			done = true
		}
	}()
	kctx, err := p.Parse(args)
	if err != nil {
		p.Errorf("%s", err)
		if kctx != nil && kctx.Error != nil {
			_ = kctx.PrintUsage(true)
		}
		return nil, 2, true
	}
	return kctx, 0, false
}

// exitCoder is an error that chooses the process exit code.
type exitCoder interface {
	error
	ExitCode() int
}

// exitError carries an exit code and an optional message.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
func (e exitError) ExitCode() int { return e.code }

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type versionCmd struct{}

func (versionCmd) Run(g *globals) error {
	fmt.Fprintf(g.stdout, "tei-sidecar %s\n", version)
	return nil
}

// unsetEmpty removes variables set to the empty string, so that `NAME=` in a
// .env or the environment means "not set" (the default) for every flag,
// not a value that an integer, boolean or choice cannot parse.
func unsetEmpty() {
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && v == "" && k != "" {
			_ = os.Unsetenv(k)
		}
	}
}
