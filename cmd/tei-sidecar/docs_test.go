package main

// The documentation's tests: README.md and docs/*.md are read as a user
// reads them, and what they tell a user to run is run, or checked, here.
// A command that no longer works as written, a link to a heading that was
// renamed, a setting missing from docs/configuration.md fails a test
// rather than a newcomer's first hour.

import (
	"bytes"
	"fmt"
	"go/build"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/alecthomas/kong"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
	"go.yaml.in/yaml/v3"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/tei-sidecar/tei-sidecar/proxy"
	"github.com/tei-sidecar/tei-sidecar/tests/dockertest"
)

// readmeMaxLines is the README's budget: a front door, not the reference.
const readmeMaxLines = 400

// repoRoot is the repository's absolute path, taken before any test
// changes directory.
var repoRoot = func() string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}()

// mdPage is one Markdown page of the documentation.
type mdPage struct {
	path    string // relative to the repository, with slashes
	src     []byte
	blocks  []shBlock
	links   []string
	anchors map[string]bool
}

// shBlock is a fenced `sh` code block and the page line of its first line.
type shBlock struct {
	line int
	text string
}

// docPages lists README.md and every page under docs/.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md"}
	for _, p := range pages {
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, filepath.ToSlash(rel))
	}
	return out
}

// readPage parses a page with goldmark (GitHub's Markdown, tables
// included), collecting its sh blocks, its links and its headings' anchors.
func readPage(t *testing.T, path string) *mdPage {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	p := &mdPage{path: path, src: src, anchors: map[string]bool{}}
	md := goldmark.New(goldmark.WithExtensions(extension.GFM))
	doc := md.Parser().Parse(text.NewReader(src))
	seen := map[string]int{}
	err = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.FencedCodeBlock:
			if lang := string(n.Language(src)); lang == "sh" || lang == "bash" {
				var b strings.Builder
				lines := n.Lines()
				for i := range lines.Len() {
					seg := lines.At(i)
					b.Write(seg.Value(src))
				}
				line := 1
				if lines.Len() > 0 {
					line = bytes.Count(src[:lines.At(0).Start], []byte("\n")) + 1
				}
				p.blocks = append(p.blocks, shBlock{line: line, text: b.String()})
			}
		case *ast.Heading:
			slug := githubSlug(plainText(n, src))
			if k := seen[slug]; k > 0 {
				p.anchors[fmt.Sprintf("%s-%d", slug, k)] = true
			} else {
				p.anchors[slug] = true
			}
			seen[slug]++
		case *ast.Link:
			p.links = append(p.links, string(n.Destination))
		case *ast.Image:
			p.links = append(p.links, string(n.Destination))
		}
		return ast.WalkContinue, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// plainText is a heading's text as GitHub renders it: code spans keep
// their content, markup goes.
func plainText(n ast.Node, src []byte) string {
	var b strings.Builder
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if entering {
			switch c := c.(type) {
			case *ast.Text:
				b.Write(c.Segment.Value(src))
			case *ast.String:
				b.Write(c.Value)
			}
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}

// githubSlug is the anchor GitHub gives a heading: lower case, each space
// a hyphen, and every character that is not a letter, a digit, a mark, a
// hyphen or a connector such as '_' dropped. (A repeated heading gets -1,
// -2, …; readPage adds those.)
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-', unicode.IsLetter(r), unicode.IsNumber(r), unicode.IsMark(r), unicode.Is(unicode.Pc, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocsGithubSlug pins the anchor rule against headings of these pages.
func TestDocsGithubSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Run it: docker compose up":                      "run-it-docker-compose-up",
		"Without the Docker socket: compose/static.yaml": "without-the-docker-socket-composestaticyaml",
		"How many TEIs on one GPU: TEI_REPLICAS_PER_GPU": "how-many-teis-on-one-gpu-tei_replicas_per_gpu",
		"--write-env [FILE]":                             "--write-env-file",
		"TEI's API (unchanged shapes)":                   "teis-api-unchanged-shapes",
		"Cohere / Jina rerank":                           "cohere--jina-rerank",
		"Ünïcode Straße 2":                               "ünïcode-straße-2",
	} {
		if got := githubSlug(heading); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestDocsReadmeLength keeps README.md a front door: the reference lives in
// docs/.
func TestDocsReadmeLength(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(src, []byte("\n")); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, more than %d: move the reference into docs/", n, readmeMaxLines)
	}
}

// TestDocsLinks checks that every relative link of README.md and docs/*.md
// names a file of the repository, and every #anchor a heading of its page.
func TestDocsLinks(t *testing.T) {
	pages := map[string]*mdPage{}
	page := func(path string) *mdPage {
		if pages[path] == nil {
			pages[path] = readPage(t, path)
		}
		return pages[path]
	}
	for _, from := range docPages(t) {
		p := page(from)
		for _, dest := range p.links {
			if strings.Contains(dest, "://") || strings.HasPrefix(dest, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(dest, "#")
			target := from
			if path != "" {
				target = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(from), path)))
			}
			if target == ".." || strings.HasPrefix(target, "../") {
				t.Errorf("%s: link %q leaves the repository", from, dest)
				continue
			}
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(target))); err != nil {
				t.Errorf("%s: link %q: %s does not exist", from, dest, target)
				continue
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				t.Errorf("%s: link %q: an anchor into %s, which is not a page", from, dest, target)
				continue
			}
			if !page(target).anchors[anchor] {
				t.Errorf("%s: link %q: %s has no heading whose anchor is #%s", from, dest, target, anchor)
			}
		}
	}
}

// TestDocsConfigurationNamesEveryFlag checks that docs/configuration.md,
// "every setting of every command", names each flag of each command and
// each environment variable a flag reads.
func TestDocsConfigurationNamesEveryFlag(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	parser, err := kong.New(&cli{}, kong.Name("tei-sidecar"), kong.Exit(func(int) {}), defaultVars())
	if err != nil {
		t.Fatal(err)
	}
	check := func(cmd string, f *kong.Flag) {
		if f.Name == "help" {
			return
		}
		re := regexp.MustCompile(`--(\[no-\])?` + regexp.QuoteMeta(f.Name) + `([^a-z0-9-]|$)`)
		if !re.MatchString(doc) {
			t.Errorf("docs/configuration.md does not name %s's flag --%s", cmd, f.Name)
		}
		for _, env := range f.Envs {
			if !strings.Contains(doc, "`"+env+"`") {
				t.Errorf("docs/configuration.md does not name %s, which %s's --%s reads", env, cmd, f.Name)
			}
		}
	}
	for _, f := range parser.Model.Flags {
		check("every command", f)
	}
	for _, cmd := range parser.Model.Children {
		for _, f := range cmd.Flags {
			check(cmd.Name, f)
		}
	}
}

// TestDocsCommands follows the sh blocks of README.md and docs/*.md. Each
// command is run, or checked, as far as this machine allows; those that
// need Docker Compose, root, a GPU or another OS are skipped, saying so.
// See docs/development.md, "The documentation", for the rules.
func TestDocsCommands(t *testing.T) {
	ci := ciTestCommand(t)
	sidecar := startDocsSidecar(t)
	for _, path := range docPages(t) {
		p := readPage(t, path)
		for _, b := range p.blocks {
			f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(b.text), path)
			if err != nil {
				t.Errorf("%s:%d: the sh block does not parse: %v", path, b.line, err)
				continue
			}
			// One scratch directory per block: a command's output files
			// (tei-sidecar compose > tei.yaml) are there for the next.
			d := &docsCmd{ci: ci, sidecar: sidecar, scratch: t.TempDir()}
			for _, c := range leafCommands(f.Stmts) {
				line := b.line + int(c.stmt.Pos().Line()) - 1
				name := fmt.Sprintf("%s:%d %s", path, line, shortCommand(c.stmt))
				t.Run(name, func(t *testing.T) { d.check(t, c) })
			}
		}
	}
}

// TestDocsReadmeShowsCITestCommand checks that an sh block of README.md
// runs exactly the go test command .ci/run runs, so that "test it" in the
// README is what CI does.
func TestDocsReadmeShowsCITestCommand(t *testing.T) {
	ci := ciTestCommand(t)
	for _, b := range readPage(t, "README.md").blocks {
		f, err := syntax.NewParser().Parse(strings.NewReader(b.text), "README.md")
		if err != nil {
			continue // TestDocsCommands reports it
		}
		for _, c := range leafCommands(f.Stmts) {
			if c.call == nil {
				continue
			}
			if args, err := expand.Fields(&expand.Config{}, c.call.Args...); err == nil && slices.Equal(args, ci) {
				return
			}
		}
	}
	t.Errorf("README.md has no sh block with .ci/run's test command, %s", strings.Join(ci, " "))
}

// leaf is one simple command of a block, with the redirections of the
// statement it is in.
type leaf struct {
	stmt   *syntax.Stmt
	call   *syntax.CallExpr   // nil for a declaration
	decl   *syntax.DeclClause // export FOO=...
	redirs []*syntax.Redirect
}

// leafCommands flattens a && b, a || b and pipelines into their commands.
func leafCommands(stmts []*syntax.Stmt) []leaf {
	var out []leaf
	for _, s := range stmts {
		switch c := s.Cmd.(type) {
		case *syntax.BinaryCmd:
			out = append(out, leafCommands([]*syntax.Stmt{c.X, c.Y})...)
		case *syntax.CallExpr:
			out = append(out, leaf{stmt: s, call: c, redirs: s.Redirs})
		case *syntax.DeclClause:
			out = append(out, leaf{stmt: s, decl: c})
		default:
			out = append(out, leaf{stmt: s})
		}
	}
	return out
}

// shortCommand names a command in a subtest: its first words.
func shortCommand(s *syntax.Stmt) string {
	var b strings.Builder
	_ = syntax.NewPrinter().Print(&b, s)
	words := strings.Fields(b.String())
	if len(words) > 4 {
		words = words[:4]
	}
	return strings.Join(words, " ")
}

// docsCmd checks the commands of one block.
type docsCmd struct {
	ci      []string // .ci/run's test command
	sidecar string   // base URL of the in-process proxy in front of teisim
	scratch string   // the block's working directory
}

// check runs or checks one command.
func (d *docsCmd) check(t *testing.T, c leaf) {
	if c.call == nil {
		if c.decl != nil {
			t.Skip("an environment setting, not a command")
		}
		t.Fatalf("no rule for this kind of statement (%T): say in docs_test.go how to check it", c.stmt.Cmd)
	}
	if len(c.call.Args) == 0 {
		t.Skip("an environment setting (a .env line), not a command")
	}
	args, err := expand.Fields(&expand.Config{}, c.call.Args...)
	if err != nil {
		// Command substitutions ($(git describe)) are left to a shell.
		if c.call.Args[0].Lit() == "echo" {
			d.echo(t, c)
			return
		}
		if c.call.Args[0].Lit() == "docker" {
			t.Skip("docker with a command substitution: not run, it needs Docker and a shell")
		}
		if c.call.Args[0].Lit() == "kubectl" {
			t.Skip("kubectl: not run, no Kubernetes cluster runs here")
		}
		t.Fatalf("cannot expand the command's words: %v", err)
	}
	env := map[string]string{}
	for _, a := range c.call.Assigns {
		v, err := expand.Literal(&expand.Config{}, a.Value)
		if err != nil {
			t.Fatalf("cannot expand %s=: %v", a.Name.Value, err)
		}
		env[a.Name.Value] = v
	}
	switch args[0] {
	case "go":
		d.goCommand(t, args[1:], env)
	case "tei-sidecar", "./tei-sidecar":
		d.sidecarCommand(t, args[1:], env, c.redirs)
	case "curl":
		d.curl(t, args[1:])
	case "cp":
		if len(args) != 3 {
			t.Fatalf("cp with %d arguments, want a source and a destination", len(args)-1)
		}
		if _, err := os.Stat(filepath.Join(repoRoot, args[1])); err != nil {
			t.Errorf("cp %s: no such file in the repository", args[1])
		}
	case "echo":
		d.echo(t, c)
	case "docker":
		d.docker(t, args[1:])
	case "sudo", "systemctl", "nvidia-ctk":
		t.Skipf("%s: not run, it needs root and the NVIDIA Container Toolkit", args[0])
	case "brew":
		t.Skip("brew: not run, it is macOS's")
	case "helm":
		helmCommand(t, args[1:])
	case "kubectl":
		t.Skip("kubectl: not run, no Kubernetes cluster runs here")
	case "bash":
		bashScript(t, args[1:], env)
	default:
		t.Errorf("no rule for %q: say in docs_test.go how to run or check it", args[0])
	}
}

// bashScript checks bash SCRIPT: a script of the repository that bash
// parses, and that reads every variable the command sets. It is not run:
// the repository's scripts are benchmarks, minutes long.
func bashScript(t *testing.T, args []string, env map[string]string) {
	t.Helper()
	if len(args) != 1 {
		t.Fatalf("bash with %d arguments, want one script", len(args))
	}
	path := filepath.Join(repoRoot, filepath.FromSlash(args[0]))
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("bash %s: no such script in the repository", args[0])
	}
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("bash -n %s: %v\n%s", args[0], err, out)
	}
	for name := range env {
		if !bytes.Contains(src, []byte("${"+name)) && !bytes.Contains(src, []byte("$"+name)) {
			t.Errorf("%s=… bash %s: the script never reads %s", name, args[0], name)
		}
	}
}

// helmCommand checks helm install, upgrade and template: the chart is the
// repository's, and every --set names a value the chart has. The chart's
// own rendering is tested in charts/.
func helmCommand(t *testing.T, args []string) {
	if len(args) == 0 || !slices.Contains([]string{"install", "upgrade", "template"}, args[0]) {
		t.Fatalf("helm %s: no rule for it", strings.Join(args, " "))
	}
	var positional, sets []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--set" || a == "--set-string":
			i++
			sets = append(sets, args[i])
		case a == "-f" || a == "--values" || a == "-n" || a == "--namespace" || a == "--version":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) != 2 {
		t.Fatalf("helm %s: want a release name and the chart, got %q", args[0], positional)
	}
	chart := filepath.Join(repoRoot, filepath.FromSlash(positional[1]))
	raw, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		t.Fatalf("helm %s: %s is not the repository's chart: %v", args[0], positional[1], err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	for _, set := range sets {
		key, _, ok := strings.Cut(set, "=")
		if !ok {
			t.Errorf("--set %s: no value", set)
			continue
		}
		var node any = values
		for _, part := range strings.Split(key, ".") {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node, ok = m[part]
			if !ok {
				node = nil
				break
			}
		}
		if node == nil {
			t.Errorf("--set %s: the chart has no value %s", set, key)
		}
	}
}

// goCommand checks go build, go run and go test.
func (d *docsCmd) goCommand(t *testing.T, args []string, env map[string]string) {
	if len(args) == 0 {
		t.Fatal("a bare go")
	}
	switch args[0] {
	case "test":
		if !slices.Contains(args, "-bench") {
			if !slices.Equal(append([]string{"go"}, args...), d.ci) {
				t.Errorf("go %s: a test command other than .ci/run's (%s)", strings.Join(args, " "), strings.Join(d.ci, " "))
			}
			return
		}
		checkBenchmarks(t, args[1:])
	case "build":
		var pkgs []string
		for i := 1; i < len(args); i++ {
			switch {
			case args[i] == "-o":
				i++
			case strings.HasPrefix(args[i], "-"):
			default:
				pkgs = append(pkgs, args[i])
			}
		}
		if len(pkgs) == 0 {
			t.Fatal("go build names no package")
		}
		for _, p := range pkgs {
			mainPackage(t, p)
		}
	case "run":
		if len(args) < 2 {
			t.Fatal("go run names no package")
		}
		pkg, rest := args[1], args[2:]
		if pkg == "./cmd/tei-sidecar" {
			d.sidecarCommand(t, rest, env, nil)
			return
		}
		dir := mainPackage(t, pkg)
		for _, a := range rest {
			if name, ok := strings.CutPrefix(a, "-"); ok {
				name, _, _ = strings.Cut(strings.TrimPrefix(name, "-"), "=")
				if !definesFlag(t, dir, name) {
					t.Errorf("go run %s: the program defines no flag -%s", pkg, name)
				}
			}
		}
	default:
		t.Errorf("no rule for go %s", args[0])
	}
}

// mainPackage checks that pattern names a main package of the repository
// and returns its directory.
func mainPackage(t *testing.T, pattern string) string {
	t.Helper()
	dir := filepath.Join(repoRoot, filepath.FromSlash(pattern))
	pkg, err := build.ImportDir(dir, 0)
	if err != nil {
		t.Errorf("%s: %v", pattern, err)
		return dir
	}
	if pkg.Name != "main" {
		t.Errorf("%s is package %s, not a command", pattern, pkg.Name)
	}
	return dir
}

// definesFlag reports whether the Go files of dir define a flag called name
// with the flag package (fs.BoolVar(&x, "name", …), flag.String("name", …)).
func definesFlag(t *testing.T, dir, name string) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\.(Bool|String|Int|Int64|Uint|Duration|Float64|Func|Var)(Var)?\((&?[\w.]+, )?"` + regexp.QuoteMeta(name) + `"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if re.Match(src) {
			return true
		}
	}
	return false
}

// checkBenchmarks checks that each alternative of a go test -bench pattern
// names at least one benchmark of the packages the command lists.
func checkBenchmarks(t *testing.T, args []string) {
	t.Helper()
	var pattern string
	var dirs []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-bench":
			i++
			pattern = args[i]
		case a == "-run", a == "-benchtime", a == "-timeout", a == "-count":
			i++
		case strings.HasPrefix(a, "-"):
		case a == "./...":
			dirs = append(dirs, allPackageDirs(t)...)
		default:
			dir := filepath.Join(repoRoot, filepath.FromSlash(a))
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				t.Errorf("go test %s: no such package", a)
				continue
			}
			dirs = append(dirs, dir)
		}
	}
	var names []string
	decl := regexp.MustCompile(`(?m)^func (Benchmark\w*)\(`)
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range decl.FindAllSubmatch(src, -1) {
				names = append(names, string(m[1]))
			}
		}
	}
	top, _, _ := strings.Cut(pattern, "/")
	for _, alt := range strings.Split(top, "|") {
		re, err := regexp.Compile(alt)
		if err != nil {
			t.Errorf("-bench %q: %v", pattern, err)
			continue
		}
		if !slices.ContainsFunc(names, re.MatchString) {
			t.Errorf("-bench %q: %q matches no benchmark of those packages", pattern, alt)
		}
	}
}

// allPackageDirs lists the repository's directories holding Go files.
func allPackageDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(repoRoot, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && path != repoRoot && (strings.HasPrefix(e.Name(), ".") || e.Name() == "testdata" || e.Name() == "vendor") {
			return filepath.SkipDir
		}
		if e.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// sidecarCommand parses a tei-sidecar command line with the binary's own
// parser (an unknown command or flag exits 2) and runs what is safe to run
// here: detect, compose and version for real, serve as --dry-run; the
// others, which need a live sidecar or TEI, with --help appended.
func (d *docsCmd) sidecarCommand(t *testing.T, args []string, env map[string]string, redirs []*syntax.Redirect) {
	t.Helper()
	cleanCLIEnv(t, d.scratch)
	for k, v := range env {
		t.Setenv(k, v)
	}
	help := func() {
		t.Helper()
		if code, out, errOut := runCmd(t, append(slices.Clone(args), "--help")...); code != 0 {
			t.Fatalf("tei-sidecar %s --help exited %d:\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if len(args) == 0 {
		help()
		return
	}
	switch args[0] {
	case "detect", "compose", "version":
		code, out, errOut := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("tei-sidecar %s exited %d:\n%s", strings.Join(args, " "), code, errOut)
		}
		for _, r := range redirs {
			if r.Op == syntax.RdrOut {
				if err := os.WriteFile(filepath.Join(d.scratch, r.Word.Lit()), []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	case "serve":
		if !slices.Contains(args, "--tei-embed-url") {
			// Without TEI's URLs, the plan asks the engine what it has:
			// where none answers, the flags are checked and no more.
			help()
			dockertest.Require(t)
		}
		if !slices.Contains(args, "--dry-run") {
			args = append(slices.Clone(args), "--dry-run")
		}
		code, out, errOut := runCmd(t, args...)
		if code != 0 || !strings.Contains(out, "nothing was started") {
			t.Fatalf("tei-sidecar %s exited %d:\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	default:
		help()
	}
}

// cleanCLIEnv starts a command as on a machine without settings: every
// variable a flag reads unset, the scratch directory as the working
// directory, and whatever a .env there loads undone afterwards.
func cleanCLIEnv(t *testing.T, dir string) {
	t.Helper()
	before := os.Environ()
	t.Cleanup(func() {
		os.Clearenv()
		for _, kv := range before {
			k, v, _ := strings.Cut(kv, "=")
			_ = os.Setenv(k, v)
		}
	})
	for _, env := range cliEnvNames() {
		t.Setenv(env, "")
		_ = os.Unsetenv(env)
	}
	t.Chdir(dir)
}

// cliEnvNames are the variables the command line's flags read (built once:
// building kong's model is most of a --help's cost).
var cliEnvNames = sync.OnceValue(func() []string {
	parser, err := kong.New(&cli{}, kong.Name("tei-sidecar"), kong.Exit(func(int) {}), defaultVars())
	if err != nil {
		panic(err)
	}
	flags := slices.Clone(parser.Model.Flags)
	for _, c := range parser.Model.Children {
		flags = append(flags, c.Flags...)
	}
	var names []string
	for _, f := range flags {
		names = append(names, f.Envs...)
	}
	return names
})

// curl sends the curl command's request to the in-process sidecar and
// wants 200.
func (d *docsCmd) curl(t *testing.T, args []string) {
	t.Helper()
	method, body := http.MethodGet, ""
	var target string
	header := http.Header{}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-s", "-S", "-f", "--silent", "--fail":
		case "-H":
			i++
			k, v, ok := strings.Cut(args[i], ":")
			if !ok {
				t.Fatalf("curl -H %q: not a header", args[i])
			}
			header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d", "--data", "--data-raw":
			i++
			method, body = http.MethodPost, args[i]
		case "-X":
			i++
			method = args[i]
		default:
			if strings.HasPrefix(a, "-") {
				t.Fatalf("curl %s: a flag this test does not model; teach it in docs_test.go", a)
			}
			target = a
		}
	}
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("curl %s: %v", target, err)
	}
	if h := u.Hostname(); (h != "127.0.0.1" && h != "localhost") || u.Port() != "8080" {
		t.Errorf("curl %s: not the sidecar's default address (127.0.0.1:8080)", target)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, d.sidecar+u.RequestURI(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s %s answered %d: %s", method, u.RequestURI(), resp.StatusCode, got)
	}
}

// sidecarUserRe is the SIDECAR_USER compose must read: the image's user and
// the socket's group as a number.
var sidecarUserRe = regexp.MustCompile(`^65532:[0-9]+$`)

// echo runs an `echo … >> .env` in the block's directory with a shell
// interpreter, then reads .env with compose's own parser: the values must
// be what the command meant, not shell text compose would take literally.
func (d *docsCmd) echo(t *testing.T, c leaf) {
	t.Helper()
	toEnv := false
	for _, r := range c.redirs {
		if (r.Op == syntax.AppOut || r.Op == syntax.RdrOut) && r.Word.Lit() == ".env" {
			toEnv = true
		}
	}
	if !toEnv {
		t.Fatal("an echo that writes no .env: say in docs_test.go how to check it")
	}
	var printed strings.Builder
	_ = syntax.NewPrinter().Print(&printed, c.stmt)
	if strings.Contains(printed.String(), "/var/run/docker.sock") {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			t.Skip("no Docker socket on this machine to take the group of")
		}
	}
	var stderr bytes.Buffer
	r, err := interp.New(interp.Dir(d.scratch), interp.StdIO(nil, io.Discard, &stderr),
		interp.Env(expand.ListEnviron(os.Environ()...)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context(), c.stmt); err != nil || stderr.Len() > 0 {
		t.Fatalf("%s: %v %s", printed.String(), err, stderr.String())
	}
	vars, err := dotenv.Read(filepath.Join(d.scratch, ".env"))
	if err != nil {
		t.Fatalf("compose cannot read the .env it wrote: %v", err)
	}
	for k, v := range vars {
		if strings.ContainsAny(v, "$`") {
			t.Errorf("compose reads %s=%q: shell text, not a value", k, v)
		}
	}
	if v, ok := vars["SIDECAR_USER"]; ok && !sidecarUserRe.MatchString(v) {
		t.Errorf("compose reads SIDECAR_USER=%q, want 65532:<the socket's group id>", v)
	}
}

// profilesRe finds a compose file's profiles: lists.
var profilesRe = regexp.MustCompile(`profiles:\s*\[([^\]]*)\]`)

// docker checks what a docker compose command names — its files exist (in
// the repository, or written by an earlier command of the block), its
// profiles are declared there — then skips: running it needs Docker
// Compose v2 and TEI's images.
func (d *docsCmd) docker(t *testing.T, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "compose" {
		t.Skipf("docker %s: not run, it needs Docker and TEI's images", strings.Join(args, " "))
	}
	// Compose's own options come before its subcommand (up, down, logs -f).
	var files, profiles []string
	for i := 1; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		switch args[i] {
		case "-f", "--file":
			i++
			files = append(files, args[i])
		case "--profile":
			i++
			profiles = append(profiles, args[i])
		case "--env-file", "-p", "--project-name", "--project-directory":
			i++
		}
	}
	if len(files) == 0 {
		files = []string{"compose.yaml"}
	}
	declared := map[string]bool{}
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(f)))
		if err != nil {
			src, err = os.ReadFile(filepath.Join(d.scratch, f))
		}
		if err != nil {
			t.Errorf("docker compose -f %s: no such file in the repository, and no earlier command wrote it", f)
			continue
		}
		for _, m := range profilesRe.FindAllSubmatch(src, -1) {
			for _, p := range strings.Split(string(m[1]), ",") {
				declared[strings.TrimSpace(p)] = true
			}
		}
	}
	for _, p := range profiles {
		if !declared[p] {
			t.Errorf("docker compose --profile %s: no service of %s is in that profile", p, strings.Join(files, ", "))
		}
	}
	t.Skip("docker compose: files and profiles checked; not run, it needs Docker Compose v2 and TEI's images")
}

// ciTestCommand is the last go test command of .ci/run, the one the
// README must show.
func ciTestCommand(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := syntax.NewParser().Parse(bytes.NewReader(src), ".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var last []string
	syntax.Walk(f, func(n syntax.Node) bool {
		if c, ok := n.(*syntax.CallExpr); ok && len(c.Args) > 1 && c.Args[0].Lit() == "go" && c.Args[1].Lit() == "test" {
			if args, err := expand.Fields(&expand.Config{}, c.Args...); err == nil {
				last = args
			}
		}
		return true
	})
	if last == nil {
		t.Fatal(".ci/run runs no go test")
	}
	return last
}

// startDocsSidecar starts the proxy in front of an embedding and a
// reranking simulator, as serve does with TEI's URLs and no token, and
// returns its base URL.
func startDocsSidecar(t *testing.T) string {
	t.Helper()
	embedURL, rerankURL := sims(t)
	cfg := proxy.DefaultConfig()
	cfg.EmbedURLs, cfg.RerankURLs = []string{embedURL}, []string{rerankURL}
	return inProcessSidecar(t, cfg)
}
