// Command vulncheck reads govulncheck's JSON output (-format json) on
// standard input and exits 1 when the code reaches a vulnerability (a
// finding whose trace ends in a function), unless its id is listed, with a
// reason, in the exceptions file named by the first argument. govulncheck
// has no way to record why a finding does not apply; this is that record.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// message is one object of govulncheck's JSON stream; only findings matter.
type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout)) }

func run(args []string, in io.Reader, out io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(out, "usage: govulncheck -format json ./... | vulncheck EXCEPTIONS")
		return 2
	}
	except, err := readExceptions(args[0])
	if err != nil {
		fmt.Fprintln(out, "vulncheck:", err)
		return 2
	}
	summaries := map[string]string{}
	reached := map[string]string{} // id -> where
	dec := json.NewDecoder(in)
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(out, "vulncheck: reading govulncheck's output:", err)
			return 2
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		if f := m.Finding; f != nil && len(f.Trace) > 0 && f.Trace[0].Function != "" {
			t := f.Trace[0]
			reached[f.OSV] = fmt.Sprintf("%s@%s %s.%s (fixed in %s)", t.Module, t.Version, t.Package, t.Function, orNone(f.FixedVersion))
		}
	}
	ids := make([]string, 0, len(reached))
	for id := range reached {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	failed := 0
	for _, id := range ids {
		if why, ok := except[id]; ok {
			fmt.Fprintf(out, "vulncheck: %s reached but excepted: %s\n  %s\n", id, why, summaries[id])
			continue
		}
		fmt.Fprintf(out, "vulncheck: %s is reachable: %s\n  %s\n", id, summaries[id], reached[id])
		failed++
	}
	for id := range except {
		if _, ok := reached[id]; !ok {
			fmt.Fprintf(out, "vulncheck: exception %s no longer applies; remove it from %s\n", id, args[0])
		}
	}
	if failed > 0 {
		fmt.Fprintf(out, "vulncheck: %d reachable vulnerabilities\n", failed)
		return 1
	}
	fmt.Fprintln(out, "vulncheck: no reachable vulnerability outside the exceptions")
	return 0
}

// readExceptions reads lines "ID reason"; # starts a comment. A reason is
// required.
func readExceptions(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, why, _ := strings.Cut(line, " ")
		if strings.TrimSpace(why) == "" {
			return nil, fmt.Errorf("%s:%d: %s has no reason", path, n, id)
		}
		out[id] = strings.TrimSpace(why)
	}
	return out, sc.Err()
}

func orNone(v string) string {
	if v == "" {
		return "no version"
	}
	return v
}
