package plan

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// EnvVar is one KEY=value setting of a .env file.
type EnvVar struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ownedKeys are the keys an env file update manages. Those the plan sets are
// written; the others (an image the plan no longer uses) are commented out.
// Every other key is the user's and is left alone.
var ownedKeys = []string{
	"EMBEDDING_DEVICE", "EMBEDDING_MODEL", "EMBEDDING_BATCH", "EMBEDDING_FP16",
	"EMBEDDING_MAX_LEN", "EMBEDDING_CACHE_SIZE",
	"RERANK_ENABLE", "RERANK_DEVICE", "RERANK_MODEL", "RERANK_K", "RERANK_FINAL_N",
	"TEI_VERSION", "TEI_IMAGE", "TEI_RERANK_IMAGE",
	"TEI_MAX_BATCH_TOKENS", "TEI_RERANK_MAX_BATCH_TOKENS",
}

// OwnedKeys lists the keys WriteEnvFile manages, in file order.
func OwnedKeys() []string { return slices.Clone(ownedKeys) }

// EnvVars are the result as settings, in the plugin's names and ours, in
// file order. Secrets are never among them.
func (r Result) EnvVars() []EnvVar {
	ps := r.Plugin
	vars := []EnvVar{
		{"EMBEDDING_DEVICE", ps.EmbeddingDevice},
		{"EMBEDDING_MODEL", ps.EmbeddingModel},
		{"EMBEDDING_BATCH", itoa(ps.Batch)},
		{"EMBEDDING_FP16", strconv.FormatBool(ps.FP16)},
		{"EMBEDDING_MAX_LEN", itoa(ps.MaxLen)},
		{"EMBEDDING_CACHE_SIZE", itoa(ps.CacheSize)},
		{"RERANK_ENABLE", strconv.FormatBool(ps.RerankEnable)},
	}
	if ps.RerankDevice != "" {
		vars = append(vars, EnvVar{"RERANK_DEVICE", ps.RerankDevice})
	}
	vars = append(vars,
		EnvVar{"RERANK_MODEL", ps.RerankModel},
		EnvVar{"RERANK_K", itoa(ps.RerankK)},
		EnvVar{"RERANK_FINAL_N", itoa(ps.RerankFinalN)},
		EnvVar{"TEI_VERSION", r.TEIVersion},
	)
	// Read back as settings, these pin every replica of a role: written
	// only when its replicas agree (replicas on different GPUs may need
	// different images and budgets).
	embImage, embImageOK := common(r.Replicas(RoleEmbedding), func(p Plan) string { return p.Image })
	rerImage, rerImageOK := common(r.Replicas(RoleRerank), func(p Plan) string { return p.Image })
	embTokens, embTokensOK := common(r.Replicas(RoleEmbedding), func(p Plan) int { return p.MaxBatchTokens })
	rerTokens, rerTokensOK := common(r.Replicas(RoleRerank), func(p Plan) int { return p.MaxBatchTokens })
	if embImageOK && embImage != "" {
		vars = append(vars, EnvVar{"TEI_IMAGE", embImage})
	}
	if rerImageOK && rerImage != "" && (rerImage != embImage || !embImageOK) {
		vars = append(vars, EnvVar{"TEI_RERANK_IMAGE", rerImage})
	}
	if embTokensOK {
		vars = append(vars, EnvVar{"TEI_MAX_BATCH_TOKENS", itoa(embTokens)})
	}
	if rerTokensOK && (rerTokens != embTokens || !embTokensOK) {
		vars = append(vars, EnvVar{"TEI_RERANK_MAX_BATCH_TOKENS", itoa(rerTokens)})
	}
	return vars
}

// common is the value every plan has, and false when they differ or there
// are none.
func common[T comparable](plans []Plan, value func(Plan) T) (T, bool) {
	var zero T
	if len(plans) == 0 {
		return zero, false
	}
	v := value(plans[0])
	for _, p := range plans[1:] {
		if value(p) != v {
			return zero, false
		}
	}
	return v, true
}

// headerPrefix starts every header line, so the next update finds and
// replaces them.
const headerPrefix = "# tei-sidecar detect:"

// EnvHeader is the comment block naming platform and devices.
func (r Result) EnvHeader() []string {
	lines := []string{headerPrefix + " " + r.Platform}
	for _, p := range r.Plans {
		what := p.Image
		if p.Backend == BackendNative {
			what = p.Binary + " (native)"
		}
		role := string(p.Role)
		if len(r.Replicas(p.Role)) > 1 {
			role += fmt.Sprintf(" replica %d", p.Replica)
		}
		lines = append(lines, fmt.Sprintf("%s %s %s on %s with %s", headerPrefix, role, p.Model, p.Device, what))
	}
	return append(lines, headerPrefix+" it updates the keys it owns in place on each run and keeps every other line")
}

// WriteEnvFile writes the result's settings to path. An existing file is
// copied to path.bak first, then updated: owned keys are changed in place,
// missing ones appended, and every other line and comment kept.
func WriteEnvFile(path string, r Result) (backup string, err error) {
	return EditEnvFile(path, func(old []byte) []byte { return UpdateEnv(old, r.EnvHeader(), r.EnvVars()) })
}

// EditEnvFile replaces the .env file at path with edit's rewrite of its
// content (nil when there is no file yet). An existing file is first copied
// to path.bak, whose name it returns; the new content is written atomically
// with the old file's permissions.
func EditEnvFile(path string, edit func(old []byte) []byte) (backup string, err error) {
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
	if err := writeAtomic(path, edit(old), mode); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return backup, nil
}

// envLine matches an assignment: optional "export ", the key, "=".
var envLine = regexp.MustCompile(`^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)\s*=`)

// UpdateEnv rewrites .env content: header replaces any previous header
// (else goes on top), each var's assignments are set in place (keeping an
// "export " prefix), owned keys not in vars are commented out, vars not
// present are appended, and all other lines are kept as they were.
func UpdateEnv(old []byte, header []string, vars []EnvVar) []byte {
	return editEnv(old, header, vars, true)
}

// SetEnvKeys sets just vars in .env content: in place where assigned,
// appended otherwise. Every other line, detect's header and the other keys
// detect owns included, is kept as it was.
func SetEnvKeys(old []byte, vars []EnvVar) []byte {
	return editEnv(old, nil, vars, false)
}

// editEnv is UpdateEnv when whole is true (a plan's full set of keys, with
// header), SetEnvKeys otherwise.
func editEnv(old []byte, header []string, vars []EnvVar, whole bool) []byte {
	values := map[string]string{}
	for _, v := range vars {
		values[v.Key] = v.Value
	}
	seen := map[string]bool{}
	var body []string
	text := strings.TrimSuffix(strings.ReplaceAll(string(old), "\r\n", "\n"), "\n")
	if text != "" {
		for _, line := range strings.Split(text, "\n") {
			if whole && strings.HasPrefix(line, headerPrefix) {
				continue
			}
			if m := envLine.FindStringSubmatch(line); m != nil {
				key := m[2]
				if v, ok := values[key]; ok {
					line = m[1] + key + "=" + quote(v)
					seen[key] = true
				} else if whole && slices.Contains(ownedKeys, key) {
					line = "# " + line + "  # unset by tei-sidecar detect: this plan does not use it"
				}
			}
			body = append(body, line)
		}
	}
	var missing []string
	for _, v := range vars {
		if !seen[v.Key] {
			missing = append(missing, v.Key+"="+quote(v.Value))
		}
	}
	if len(missing) > 0 && len(body) > 0 && strings.TrimSpace(body[len(body)-1]) != "" {
		body = append(body, "")
	}
	body = append(body, missing...)

	var b bytes.Buffer
	for _, l := range header {
		b.WriteString(l + "\n")
	}
	for _, l := range body {
		b.WriteString(l + "\n")
	}
	return b.Bytes()
}

// plainValue needs no quotes in a .env file.
var plainValue = regexp.MustCompile(`^[A-Za-z0-9_./:@+,-]*$`)

func quote(v string) string {
	if plainValue.MatchString(v) {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v) + `"`
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
