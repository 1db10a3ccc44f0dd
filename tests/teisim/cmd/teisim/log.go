package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// teiHandler writes slog records in the shape of TEI's tracing output, so a
// launcher that reads TEI's logs reads the simulator's the same way:
//
//	2026-01-02T03:04:05.678901Z  INFO text_embeddings_router: Ready
//	{"timestamp":"...","level":"INFO","fields":{"message":"Ready"},"target":"text_embeddings_router"}
type teiHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	json  bool
	attrs []slog.Attr
}

// target is the module TEI's lines name; the simulator's lines all use it.
const target = "text_embeddings_router"

func newLogger(w io.Writer, jsonOutput bool) *slog.Logger {
	return slog.New(&teiHandler{mu: &sync.Mutex{}, w: w, json: jsonOutput})
}

func (h *teiHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *teiHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

// WithGroup is not needed by the simulator; groups are flattened.
func (h *teiHandler) WithGroup(string) slog.Handler { return h }

func (h *teiHandler) Handle(_ context.Context, r slog.Record) error {
	level := strings.ToUpper(r.Level.String())
	ts := r.Time.UTC().Format(time.RFC3339Nano)
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})

	var line string
	if h.json {
		fields := map[string]any{"message": r.Message}
		for _, a := range attrs {
			fields[a.Key] = a.Value.Any()
		}
		b, err := json.Marshal(struct {
			Timestamp string         `json:"timestamp"`
			Level     string         `json:"level"`
			Fields    map[string]any `json:"fields"`
			Target    string         `json:"target"`
		}{ts, level, fields, target})
		if err != nil {
			return err
		}
		line = string(b) + "\n"
	} else {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %5s %s: %s", ts, level, target, r.Message)
		for _, a := range attrs {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value.Any())
		}
		line = b.String() + "\n"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line)
	return err
}
