package launch

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// Mode is how serve gets its TEI servers (TEI_LAUNCH).
type Mode string

// Modes.
const (
	// ModeAuto picks one of the others from the plan and the host.
	ModeAuto Mode = "auto"
	// ModeDocker runs TEI's images.
	ModeDocker Mode = "docker"
	// ModeProcess runs the text-embeddings-router binary.
	ModeProcess Mode = "process"
	// ModeNone launches nothing: TEI runs at the URLs given.
	ModeNone Mode = "none"
)

// Host is what ModeAuto weighs. Its functions are called only when needed,
// in the order of the rule.
type Host struct {
	// URLsGiven is true when TEI_EMBED_URL is set.
	URLsGiven bool
	// Plans are the plans to launch.
	Plans []plan.Plan
	// Docker reports why the Docker engine cannot be used, nil when it can.
	Docker func() error
	// Binary finds text-embeddings-router (TEI_BINARY or PATH).
	Binary func() (string, error)
}

// ChooseMode resolves ModeAuto: URLs given → none; a plan to run natively
// (Apple Metal) → process; Docker reachable → docker; the binary found →
// process; otherwise an error that says what to install. Other modes come
// back as they are. why explains the choice.
func ChooseMode(m Mode, h Host) (mode Mode, why string, err error) {
	if m != ModeAuto && m != "" {
		return m, "asked for (TEI_LAUNCH=" + string(m) + ")", nil
	}
	if h.URLsGiven {
		return ModeNone, "TEI_EMBED_URL is set: TEI already runs there", nil
	}
	if slices.ContainsFunc(h.Plans, func(p plan.Plan) bool { return p.Backend == plan.BackendNative }) {
		return ModeProcess, "the plan runs TEI natively (Docker cannot reach Apple's GPU)", nil
	}
	dockerErr := h.Docker()
	if dockerErr == nil {
		return ModeDocker, "the Docker engine answers", nil
	}
	bin, binErr := h.Binary()
	if binErr == nil {
		return ModeProcess, fmt.Sprintf("Docker is not available (%v); %s is", dockerErr, bin), nil
	}
	return "", "", errors.New("no way to run TEI: Docker is not available (" + dockerErr.Error() + ") and " + binErr.Error() +
		". Install Docker (with the NVIDIA Container Toolkit for GPUs), or TEI's router binary, " +
		"or start TEI yourself and set TEI_EMBED_URL")
}
