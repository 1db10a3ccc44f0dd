package bench

import (
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// EnvFileReport says what --write-env did.
type EnvFileReport struct {
	Path string `json:"path"`
	// Backup is the copy of the previous file; empty when there was none.
	Backup string `json:"backup,omitempty"`
}

// WriteEnvFile sets vars in the .env file at path, creating it if need be.
// An existing file is first copied to path.bak. Only vars' keys change;
// every other line, comment and setting stays.
func WriteEnvFile(path string, vars []plan.EnvVar) (backup string, err error) {
	return plan.EditEnvFile(path, func(old []byte) []byte { return plan.SetEnvKeys(old, vars) })
}
