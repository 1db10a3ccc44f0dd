package charts_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tei-sidecar/tei-sidecar/charts"
	"github.com/tei-sidecar/tei-sidecar/tests/golden"
)

// The chart README's values table sits between these lines.
const (
	tableBegin = "<!-- values table: written by `go test ./charts -run HelmValuesDocumented -update` from values.yaml's comments -->\n"
	tableEnd   = "<!-- end of values table -->\n"
)

// valueDoc is one row of the values table.
type valueDoc struct{ path, def, doc string }

// documentedValues reads values.yaml's values and the comment above each.
// A map whose keys carry comments of their own is a group, its keys listed
// one by one; any other value (a list, a map of plain keys) is one row.
// It also returns every key of the file, at any depth.
func documentedValues(t *testing.T) ([]valueDoc, []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(charts.Chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	var rows []valueDoc
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			key, val := m.Content[i], m.Content[i+1]
			path := strings.TrimPrefix(prefix+"."+key.Value, ".")
			if val.Kind == yaml.MappingNode && hasCommentedKey(val) {
				walk(path, val)
				continue
			}
			doc := comment(key.HeadComment)
			if i == 0 && doc == "" {
				// yaml.v3 gives a map's first key's comment to the map
				// when the map opens the file.
				doc = comment(m.HeadComment)
			}
			if doc == "" {
				t.Errorf("values.yaml: %s has no comment saying what it is", path)
			}
			var v any
			if err := val.Decode(&v); err != nil {
				t.Fatal(err)
			}
			def, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, valueDoc{path: path, def: string(def), doc: doc})
		}
	}
	walk("", root.Content[0])
	return rows, mapKeys(root.Content[0])
}

func hasCommentedKey(m *yaml.Node) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].HeadComment != "" {
			return true
		}
	}
	return false
}

// mapKeys lists every key inside a map, at any depth.
func mapKeys(m *yaml.Node) []string {
	var keys []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		keys = append(keys, m.Content[i].Value)
		if m.Content[i+1].Kind == yaml.MappingNode {
			keys = append(keys, mapKeys(m.Content[i+1])...)
		}
	}
	return keys
}

// comment is a head comment as one line of text: the last paragraph (a
// file's or section's introduction stands apart by a blank line).
func comment(c string) string {
	paras := strings.Split(c, "\n\n")
	var words []string
	for _, line := range strings.Split(paras[len(paras)-1], "\n") {
		words = append(words, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#")))
	}
	return strings.TrimSpace(strings.Join(words, " "))
}

// TestHelmValuesDocumented checks that README.md lists every value of
// values.yaml with its default and its comment, in the table written from
// them (-update rewrites it), and that every key, those inside a row's map
// (its default) too, appears there.
func TestHelmValuesDocumented(t *testing.T) {
	rows, keys := documentedValues(t)
	var table bytes.Buffer
	table.WriteString("| Value | Default | What it is |\n| --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&table, "| `%s` | `%s` | %s |\n", r.path, cell(r.def), cell(r.doc))
	}

	path := filepath.Join(charts.Chart, "README.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	before, rest, ok1 := strings.Cut(readme, tableBegin)
	_, after, ok2 := strings.Cut(rest, tableEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the lines that enclose the values table:\n%s%s", path, tableBegin, tableEnd)
	}
	want := before + tableBegin + table.String() + tableEnd + after
	if golden.Updating() {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		readme = want
	} else if readme != want {
		t.Errorf("%s's values table is not values.yaml's (run with -update and read the diff); it should be:\n%s", path, table.String())
	}

	for _, r := range rows {
		row := fmt.Sprintf("| `%s` | `%s` |", r.path, cell(r.def))
		if !strings.Contains(readme, row) {
			t.Errorf("%s does not list %s with its default %s", path, r.path, r.def)
		}
	}
	for _, k := range keys {
		if !strings.Contains(readme, k) {
			t.Errorf("%s does not mention the key %s", path, k)
		}
	}
}

// cell escapes what would end a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
