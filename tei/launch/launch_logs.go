package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tei-sidecar/tei-sidecar/plan"
)

// Phase is a step of TEI's start-up, as its log reports it.
type Phase string

// Start-up phases, in order.
const (
	PhaseStarting    Phase = "starting"
	PhaseDownloading Phase = "downloading"
	PhaseLoading     Phase = "loading"
	PhaseWarmingUp   Phase = "warming up"
	PhaseReady       Phase = "ready"
)

// phaseOf maps one of TEI's log messages to the phase it begins.
func phaseOf(msg string) (Phase, bool) {
	switch {
	case strings.HasPrefix(msg, "Starting download"), strings.HasPrefix(msg, "Downloading"):
		return PhaseDownloading, true
	case strings.HasPrefix(msg, "Starting model backend"):
		return PhaseLoading, true
	case strings.HasPrefix(msg, "Warming up model"):
		return PhaseWarmingUp, true
	case msg == "Ready":
		return PhaseReady, true
	}
	return "", false
}

var (
	// textLineRe is TEI's plain log format: timestamp, level, target, an
	// optional source location, then the message.
	textLineRe = regexp.MustCompile(`^\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+\S+?:\s+(?:[\w/.-]+\.rs:\d+:\s+)?(.*)$`)
	ansiRe     = regexp.MustCompile("\x1b\\[[0-9;]*m")
)

// logLine is one of TEI's log lines, parsed.
type logLine struct {
	Level slog.Level
	// Message is the message alone, for phase matching.
	Message string
	// Text is the message with its fields, for people.
	Text string
}

// parseLogLine reads a line TEI wrote with --json-output, in its plain
// format, or anything else (panics, "Caused by:" chains) as is.
func parseLogLine(raw string) logLine {
	raw = strings.TrimRight(ansiRe.ReplaceAllString(raw, ""), "\r")
	if strings.HasPrefix(raw, "{") {
		var j struct {
			Level  string         `json:"level"`
			Fields map[string]any `json:"fields"`
		}
		if json.Unmarshal([]byte(raw), &j) == nil && j.Fields != nil {
			msg, _ := j.Fields["message"].(string)
			text := msg
			for _, k := range slices.Sorted(maps.Keys(j.Fields)) {
				if k != "message" {
					text += fmt.Sprintf(" %s=%v", k, j.Fields[k])
				}
			}
			return logLine{Level: levelOf(j.Level), Message: msg, Text: text}
		}
	}
	if m := textLineRe.FindStringSubmatch(raw); m != nil {
		return logLine{Level: levelOf(m[1]), Message: m[2], Text: m[2]}
	}
	return logLine{Level: slog.LevelInfo, Message: strings.TrimSpace(raw), Text: raw}
}

func levelOf(s string) slog.Level {
	switch strings.ToUpper(s) {
	case "TRACE", "DEBUG":
		return slog.LevelDebug
	case "WARN":
		return slog.LevelWarn
	case "ERROR":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// tailLines is how many of TEI's last log lines an error report carries.
const tailLines = 20

// startLog follows one TEI's log, for its whole life: it keeps the last
// lines for error reports, reports start-up phases with the time since
// start (to the log and to progress), warns when TEI falls back to the CPU
// (which it does without failing), and copies every line into the
// sidecar's log.
type startLog struct {
	log *slog.Logger
	// quiet logs TEI's lines at debug level (Docker keeps them anyway).
	quiet bool
	start time.Time
	// plan is what TEI was started for, to diagnose a fallback to the CPU.
	plan     plan.Plan
	progress Progress

	mu       sync.Mutex
	lines    []string
	phase    Phase
	fellBack bool
}

func newStartLog(log *slog.Logger, quiet bool, p plan.Plan, progress Progress) *startLog {
	return &startLog{log: log, quiet: quiet, start: time.Now(), phase: PhaseStarting, plan: p, progress: progress}
}

// line takes one raw line.
func (s *startLog) line(raw string) {
	if strings.TrimSpace(raw) == "" {
		return
	}
	l := parseLogLine(raw)
	level := l.Level
	if s.quiet && level < slog.LevelWarn {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, l.Text)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l.Text)
	if len(s.lines) > tailLines {
		s.lines = slices.Delete(s.lines, 0, len(s.lines)-tailLines)
	}
	if ph, ok := phaseOf(l.Message); ok && ph != s.phase && s.phase != PhaseReady {
		s.phase = ph
		s.log.Info("TEI start-up", "phase", string(ph), "elapsed", time.Since(s.start).Round(100*time.Millisecond).String())
		if status, ok := phaseStatus[ph]; ok {
			s.progress.report(status)
		}
	}
	if !s.fellBack && cpuFallbackRe.MatchString(l.Text) {
		if d := Diagnose(s.lines, s.plan); d.Cause == CauseCPUFallback {
			s.fellBack = true
			s.log.Warn("TEI fell back to the CPU: it serves, far slower than planned", "diagnosis", d.Advice)
		}
	}
}

// currentPhase is the start-up phase TEI has reached.
func (s *startLog) currentPhase() Phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase
}

// tail returns the last lines, oldest first.
func (s *startLog) tail() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// lineWriter splits what is written into lines and hands each to fn. It
// is not safe for concurrent use; give each stream its own.
type lineWriter struct {
	fn  func(string)
	buf []byte
}

// maxLine bounds a line held while waiting for its end.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.flush()
	}
	return len(p), nil
}

// flush hands on a last line without its newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.fn(string(w.buf))
		w.buf = nil
	}
}
