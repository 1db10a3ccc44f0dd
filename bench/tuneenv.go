package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/joho/godotenv"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// EnvFileReport says what --write-env did.
type EnvFileReport struct {
	Path string `json:"path"`
	// Backup is the copy of the previous file; empty when there was none.
	Backup string `json:"backup,omitempty"`
}

// detectHeader starts the comment lines detect writes on top of an env
// file; plan.UpdateEnv replaces them with the header it is given.
const detectHeader = "# tei-sidecar detect:"

// WriteEnvFile sets vars in the .env file at path, creating it if need be.
// An existing file is first copied to path.bak. Only vars' keys change;
// every other line, comment and setting stays.
//
// It goes through plan.UpdateEnv, the updater detect uses, which rewrites
// a file for a whole plan: it comments out plan-owned keys it is not given
// and replaces detect's header. So the plan-owned keys already set in the
// file, and detect's header lines, are passed back to it unchanged.
func WriteEnvFile(path string, vars []plan.EnvVar) (backup string, err error) {
	old, err := os.ReadFile(path)
	mode := fs.FileMode(0o600)
	switch {
	case err == nil:
		if fi, statErr := os.Stat(path); statErr == nil {
			mode = fi.Mode().Perm()
		}
		backup = path + ".bak"
		if err := writeAtomic(backup, old, mode); err != nil {
			return "", fmt.Errorf("backing up %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	default:
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	current, err := godotenv.UnmarshalBytes(old)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	var keep []plan.EnvVar
	for _, k := range plan.OwnedKeys() {
		v, set := current[k]
		if set && !slices.ContainsFunc(vars, func(e plan.EnvVar) bool { return e.Key == k }) {
			keep = append(keep, plan.EnvVar{Key: k, Value: v})
		}
	}
	var header []string
	for _, line := range strings.Split(string(old), "\n") {
		if strings.HasPrefix(strings.TrimSuffix(line, "\r"), detectHeader) {
			header = append(header, strings.TrimSuffix(line, "\r"))
		}
	}
	if err := writeAtomic(path, plan.UpdateEnv(old, header, append(keep, vars...)), mode); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return backup, nil
}

// writeAtomic replaces path with data through a temporary file in the same
// directory, so a crash leaves the old file or the new one.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this finds nothing
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
