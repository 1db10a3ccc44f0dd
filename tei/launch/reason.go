package launch

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/moby/moby/client"
)

// Progress hears what a launch is doing, as a short status fit for the
// proxy's /ready ("pulling <image>", "downloading the model"); nil hears
// nothing. It is called from the launch's goroutines, in order, and may
// still be called after Launch returns (TEI's log is followed until it
// stops): a Progress must be safe for that.
type Progress func(status string)

func (p Progress) report(status string) {
	if p != nil {
		p(status)
	}
}

// phaseStatus is what a start-up phase tells /ready.
var phaseStatus = map[Phase]string{
	PhaseDownloading: "downloading the model",
	PhaseLoading:     "loading the model",
	PhaseWarmingUp:   "warming up the model",
}

// PullError is an image that could not be pulled.
type PullError struct {
	Image string
	Err   error
}

func (e *PullError) Error() string {
	return fmt.Sprintf("pull %s failed: %v; on a machine without registry access, `docker load` the image first "+
		"(`docker save %s` on a machine that can pull it)", e.Image, e.Err, e.Image)
}

func (e *PullError) Unwrap() error { return e.Err }

// pullReasons turn what the engine or the registry said about a failed pull
// into words that are safe to show anyone: the raw message may name
// addresses (a DNS server, a proxy, the registry's IP). First match wins.
var pullReasons = []struct {
	re  *regexp.Regexp
	say string
}{
	{regexp.MustCompile(`(?i)manifest unknown`), "manifest unknown"},
	{regexp.MustCompile(`(?i)no such host|dial tcp|connection refused|connection reset|i/o timeout|timeout|tls|x509|network is unreachable|EOF|server misbehaving|proxyconnect`),
		"the registry cannot be reached"},
	{regexp.MustCompile(`(?i)toomanyrequests|rate limit`), "the registry's rate limit was reached"},
	{regexp.MustCompile(`(?i)does not exist.*docker login|repository does not exist`), "no such repository, or it needs a login (pull private images beforehand)"},
	{regexp.MustCompile(`(?i)not found`), "not found in the registry"},
	{regexp.MustCompile(`(?i)denied|unauthorized|authentication required|docker login`), "access denied (pull private images beforehand)"},
}

// pullReason is the safe part of a pull's failure.
func pullReason(err error) string {
	if client.IsErrConnectionFailed(err) {
		return "the Docker engine cannot be reached"
	}
	msg := err.Error()
	for _, r := range pullReasons {
		if r.re.MatchString(msg) {
			return r.say
		}
	}
	return "the Docker engine refused the pull (the sidecar's log says why)"
}

// bindRe is a TEI whose port another program took (Docker's message, or
// the router's own).
var bindRe = regexp.MustCompile(`(?i)address already in use|port is already allocated`)

// errNameTaken is a container name held by a container tei-sidecar does not
// manage.
var errNameTaken = errors.New("the name is taken by a container tei-sidecar does not manage: remove it or set TEI_PROJECT")

// errNotReady is a TEI that did not become ready within STARTUP_TIMEOUT.
var errNotReady = errors.New("TEI was not ready in time (STARTUP_TIMEOUT)")

// Summary says in one short line why a launch failed or a TEI went down,
// in words safe for the proxy's /ready, which anyone may read: no secret,
// no address, no raw network error. The sidecar's log has the whole error.
func Summary(err error) string {
	var (
		pe *PullError
		le *LaunchError
		ee *ExitError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pe):
		return fmt.Sprintf("pulling %s failed: %s", pe.Image, pullReason(pe.Err))
	case errors.As(err, &le) && le.Diagnosis.Cause != CauseUnknown:
		return causeSummary(le.Diagnosis.Cause)
	case errors.As(err, &le) && (bindRe.MatchString(le.Err.Error()) || slices.ContainsFunc(le.Logs, bindRe.MatchString)):
		return "another program took the loopback port kept for TEI"
	case errors.As(err, &ee):
		return ee.summary()
	case errors.Is(err, errNotReady):
		return errNotReady.Error()
	case errors.Is(err, errMismatch):
		return "TEI's /info does not match the plan (the sidecar's log says how)"
	case errors.Is(err, errNameTaken):
		return "a container tei-sidecar does not manage has TEI's container name (the sidecar's log names it)"
	case errors.Is(err, errLostTrack):
		return "the sidecar lost track of TEI's container"
	case errors.Is(err, errNoFallback):
		return errNoFallback.Error()
	case client.IsErrConnectionFailed(err):
		return "the Docker engine cannot be reached"
	}
	return "TEI failed to start (the sidecar's log says why)"
}

// causeSummary is Summary's line for a diagnosed failure.
func causeSummary(c Cause) string {
	switch c {
	case CauseComputeCap:
		return "TEI's image is built for another GPU generation (the sidecar's log names the image that fits)"
	case CauseNoGPURuntime:
		return "Docker cannot give TEI's container a GPU: install the NVIDIA Container Toolkit, or set TEI_FALLBACK_CPU=true"
	case CauseOutOfMemory:
		return "TEI ran out of memory warming up, even at the smallest batch planned"
	case CauseCPUFallback:
		return "TEI found no GPU it could use"
	}
	return "TEI failed to start (the sidecar's log says why)"
}

// summary is the exit with the phase TEI was in, when it had not started.
func (e *ExitError) summary() string {
	if s, ok := phaseStatus[e.Phase]; ok {
		return e.Error() + " while " + s
	}
	return e.Error()
}
