package teisim

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/alecthomas/kong"
)

// Version is the TEI version the simulator mimics, as /info reports it.
const Version = "1.9.3"

// DockerLabel is /info's docker_label; it lets a human tell the simulator
// from TEI while clients see TEI's version.
const DockerLabel = "teisim"

// ErrHelp is returned by ParseArgs for -h/--help; Help gives the text.
var ErrHelp = errors.New("help requested")

// ErrVersion is returned by ParseArgs for -V/--version.
var ErrVersion = errors.New("version requested")

// VersionLine is what the binary prints for --version: TEI's line, marked as
// the simulator.
const VersionLine = "text-embeddings-router " + Version + " (teisim simulator, not TEI)"

// grammar is the command line: Config's fields plus the flags that end
// parsing. It embeds flagFields, not Config, because kong runs a Validate
// method it finds during parsing, which would refuse --help without a model id.
type grammar struct {
	flagFields
	Help    bool `short:"h" help:"Print help."`
	Version bool `short:"V" help:"Print version."`
}

// flagFields is Config without its methods.
type flagFields Config

// ParseArgs parses TEI's router flags and the --sim-* knobs. A flag that is
// absent reads the upper-snake environment variable of its name through
// getenv (an empty value counts as unset), then the default. Unknown flags
// are errors. The result is validated.
func ParseArgs(args []string, getenv func(string) string) (Config, error) {
	cfg, err := parse(args, getenv)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Help returns the binary's --help text.
func Help() string {
	var buf bytes.Buffer
	var g grammar
	k, err := newParser(&g, &buf)
	if err != nil {
		return err.Error()
	}
	ctx, err := kong.Trace(k, nil)
	if err != nil {
		return err.Error()
	}
	if err := kong.DefaultHelpPrinter(kong.HelpOptions{ValueFormatter: kong.DefaultHelpValueFormatter, WrapUpperBound: 100}, ctx); err != nil {
		return err.Error()
	}
	return buf.String()
}

// parse applies args, environment and defaults without validating, so
// DefaultConfig can use it.
func parse(args []string, getenv func(string) string) (Config, error) {
	var g grammar
	parser, err := newParser(&g, nil, kong.Resolvers(envResolver(getenv)))
	if err != nil {
		return Config{}, err
	}
	if _, err := parser.Parse(args); err != nil {
		return Config{}, err
	}
	switch {
	case g.Help:
		return Config{}, ErrHelp
	case g.Version:
		return Config{}, ErrVersion
	}
	cfg := Config(g.flagFields)
	if cfg.HFToken == "" {
		cfg.HFToken = cfg.HFAPIToken
	}
	return cfg, nil
}

func newParser(g *grammar, stdout *bytes.Buffer, opts ...kong.Option) (*kong.Kong, error) {
	opts = append([]kong.Option{
		kong.Name("teisim"),
		kong.Description("teisim simulates the HTTP API of Hugging Face Text Embeddings Inference " + Version + " for tests and benchmarks. " +
			"It is not TEI and runs no model: vectors and scores are deterministic stand-ins. " +
			"It takes TEI's router flags (each also read from its upper-snake environment variable) plus --sim-* knobs."),
		kong.NoDefaultHelp(),
		kong.NamedMapper("spacedbool", spacedBoolMapper{}),
		kong.Exit(func(int) {}),
	}, opts...)
	if stdout != nil {
		opts = append(opts, kong.Writers(stdout, stdout))
	}
	return kong.New(g, opts...)
}

// envResolver reads a flag's value from its upper-snake environment variable
// (MAX_BATCH_TOKENS for --max-batch-tokens, SIM_DIM for --sim-dim), which is
// how TEI's clap CLI names them. Kong consults it only for flags absent from
// the command line, so a flag beats its variable.
func envResolver(getenv func(string) string) kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		if flag.Name == "help" || flag.Name == "version" {
			return nil, nil
		}
		v := getenv(strings.ToUpper(strings.ReplaceAll(flag.Name, "-", "_")))
		if v == "" {
			return nil, nil
		}
		return v, nil
	})
}

// spacedBoolMapper decodes a boolean flag that may stand alone (true) or take
// its value after "=" or as the next argument: --auto-truncate,
// --auto-truncate=false, --auto-truncate false. Launchers write all three.
type spacedBoolMapper struct{}

// Decode implements kong.Mapper.
func (spacedBoolMapper) Decode(ctx *kong.DecodeContext, target reflect.Value) error {
	next := ctx.Scan.Peek()
	value, isString := next.Value.(string)
	switch {
	case next.Type == kong.FlagValueToken:
		ctx.Scan.Pop()
	case (next.Type == kong.UntypedToken || next.Type == kong.PositionalArgumentToken) && isString && isBoolWord(value):
		ctx.Scan.Pop()
	default:
		target.SetBool(true)
		return nil
	}
	switch strings.ToLower(fmt.Sprint(next.Value)) {
	case "true", "1", "yes":
		target.SetBool(true)
	case "false", "0", "no":
		target.SetBool(false)
	default:
		return fmt.Errorf("invalid value '%v' for '--%s': want true or false", next.Value, ctx.Value.Name)
	}
	return nil
}

// IsBool implements kong.BoolMapper so the flag needs no value.
func (spacedBoolMapper) IsBool() bool { return true }

func isBoolWord(s string) bool {
	switch strings.ToLower(s) {
	case "true", "false":
		return true
	}
	return false
}
