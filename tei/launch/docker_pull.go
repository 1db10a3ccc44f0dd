package launch

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	"github.com/moby/term"
)

// pullLogEvery is how often pull progress is logged off a terminal.
const pullLogEvery = 5 * time.Second

// ensureImage uses ref as it is when present, and pulls it otherwise; a
// failed pull is a *PullError.
func (d *Docker) ensureImage(ctx context.Context, ref string, progress Progress) error {
	_, err := d.api.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	d.log.Info("pulling TEI image", "image", ref)
	progress.report("pulling " + ref)
	begun := time.Now()
	if err := d.pull(ctx, ref); err != nil {
		return &PullError{Image: ref, Err: err}
	}
	d.log.Info("pulled TEI image", "image", ref, "took", time.Since(begun).Round(time.Second).String())
	return nil
}

// pull pulls ref, drawing per-layer bars on a terminal and logging
// progress otherwise.
func (d *Docker) pull(ctx context.Context, ref string) error {
	resp, err := d.api.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer resp.Close()
	if out := d.opts.PullProgress; out != nil {
		if fd, isTerm := term.GetFdInfo(out); isTerm {
			return jsonmessage.DisplayJSONMessages(resp.JSONMessages(ctx), out, fd, true, nil)
		}
	}
	return logPull(d.log, ref, resp.JSONMessages(ctx), pullLogEvery)
}

// layerProgress is one layer's download.
type layerProgress struct {
	current, total int64
	done           bool
}

// logPull reads a pull's messages, logging a summary at most every
// interval (and at the end), and returns the first error reported.
func logPull(log *slog.Logger, ref string, msgs iter.Seq2[jsonstream.Message, error], every time.Duration) error {
	layers := map[string]*layerProgress{}
	var order []string
	last := time.Now()
	report := func(msg string) {
		var cur, total int64
		done := 0
		for _, id := range order {
			l := layers[id]
			cur, total = cur+l.current, total+l.total
			if l.done {
				done++
			}
		}
		log.Info(msg, "image", ref, "layers_done", fmt.Sprintf("%d/%d", done, len(order)),
			"downloaded_mb", cur>>20, "total_mb", total>>20)
	}
	for m, err := range msgs {
		if err != nil {
			return err
		}
		if m.Error != nil {
			return m.Error
		}
		if m.ID == "" || strings.HasPrefix(m.Status, "Pulling from") {
			continue
		}
		l, ok := layers[m.ID]
		if !ok {
			l = &layerProgress{}
			layers[m.ID] = l
			order = append(order, m.ID)
		}
		switch {
		case m.Status == "Downloading" && m.Progress != nil:
			l.current, l.total = m.Progress.Current, m.Progress.Total
		case m.Status == "Download complete", m.Status == "Pull complete", m.Status == "Already exists":
			l.done = true
			if l.total > 0 {
				l.current = l.total
			}
		}
		if time.Since(last) >= every {
			last = time.Now()
			report("pulling TEI image")
		}
	}
	if len(order) > 0 {
		report("pulled every layer")
	}
	return nil
}
