package bench

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// series is one line of a plot: its legend, points, colour and glyph
// (plotutil's palettes' index) and dashes.
type series struct {
	name   string
	points plotter.XYs
	style  int
	dashed bool
}

// WritePlot draws the report's concurrency sweep as SVG: latency p50 and
// p99 against clients on the left, throughput against clients on the
// right, the target beside the baseline.
func WritePlot(w io.Writer, r *Report) error {
	if len(r.Sweep) == 0 {
		return errors.New("plot: the report has no concurrency sweep to draw")
	}
	who := []struct {
		name string
		load func(SweepLevel) *Load
	}{
		{"target", func(l SweepLevel) *Load { return &l.Target }},
		{"baseline", func(l SweepLevel) *Load { return l.Baseline }},
	}
	var lat, thr []series
	for i, p := range who {
		var p50, p99, tp plotter.XYs
		for _, l := range r.Sweep {
			ld := p.load(l)
			if ld == nil {
				continue
			}
			x := float64(l.Clients)
			p50 = append(p50, plotter.XY{X: x, Y: ld.P50 * 1000})
			p99 = append(p99, plotter.XY{X: x, Y: ld.P99 * 1000})
			tp = append(tp, plotter.XY{X: x, Y: ld.Throughput})
		}
		if len(tp) == 0 {
			continue
		}
		lat = append(lat, series{name: p.name + " p50", points: p50, style: i}, series{name: p.name + " p99", points: p99, style: i, dashed: true})
		thr = append(thr, series{name: p.name, points: tp, style: i})
	}
	clients := make([]float64, len(r.Sweep))
	for i, l := range r.Sweep {
		clients[i] = float64(l.Clients)
	}
	left, err := linePlot("Latency (single-query embeds, texts unique)", "concurrent clients", "latency (ms)", clients, lat)
	if err != nil {
		return err
	}
	right, err := linePlot("Throughput", "concurrent clients", "queries/s", clients, thr)
	if err != nil {
		return err
	}
	c := vgsvg.New(11*vg.Inch, 4.5*vg.Inch)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 3, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	grid := [][]*plot.Plot{{left, right}}
	canvases := plot.Align(grid, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	_, err = c.WriteTo(w)
	return err
}

// WriteTunePlot draws the tune's sweep as SVG: throughput against inputs
// in flight (batch × clients), one line per batch size, with the
// recommended setting (the knee) and the best marked.
func WriteTunePlot(w io.Writer, r *TuneReport) error {
	var batches []int
	byBatch := map[int]plotter.XYs{}
	var xs []float64
	for _, st := range r.Steps {
		if st.Outcome != OutcomeOK && st.Outcome != OutcomeSlow {
			continue
		}
		if _, ok := byBatch[st.Batch]; !ok {
			batches = append(batches, st.Batch)
		}
		x := float64(st.Batch * st.Concurrency)
		byBatch[st.Batch] = append(byBatch[st.Batch], plotter.XY{X: x, Y: st.Throughput})
		xs = append(xs, x)
	}
	if len(batches) == 0 {
		return errors.New("plot: the tune measured no setting to draw")
	}
	var lines []series
	for i, b := range batches {
		lines = append(lines, series{name: "batch " + strconv.Itoa(b), points: byBatch[b], style: i})
	}
	p, err := linePlot("tune: throughput against inputs in flight", "inputs in flight (batch × concurrent clients)", "inputs/s", xs, lines)
	if err != nil {
		return err
	}
	marks := []struct {
		label string
		c     Choice
		shape draw.GlyphDrawer
	}{
		{fmt.Sprintf("recommended (knee): batch %d × %d clients", r.Recommended.Batch, r.Recommended.Concurrency), r.Recommended, draw.RingGlyph{}},
		{fmt.Sprintf("best: batch %d × %d clients", r.Best.Batch, r.Best.Concurrency), r.Best, draw.SquareGlyph{}},
	}
	for _, m := range marks {
		if m.c.Batch == 0 {
			continue
		}
		s, err := plotter.NewScatter(plotter.XYs{{X: float64(m.c.Batch * m.c.Concurrency), Y: m.c.Throughput}})
		if err != nil {
			return err
		}
		s.GlyphStyle = draw.GlyphStyle{Shape: m.shape, Radius: vg.Points(7), Color: color.Black}
		p.Add(s)
		p.Legend.Add(m.label, s)
	}
	// Throughput rises from the left, so the legend goes to the bottom
	// right, where it is low (offset from the left: gonum's right-aligned
	// legend draws its text over the symbols).
	p.Legend.Top = false
	p.Legend.XOffs, p.Legend.YOffs = 3*vg.Inch, 0.7*vg.Inch
	c := vgsvg.New(8*vg.Inch, 5.5*vg.Inch)
	p.Draw(draw.New(c))
	_, err = c.WriteTo(w)
	return err
}

// linePlot is a plot of lines over a log₂ x axis ticked at xs, with the
// legend at the top left, where rising lines leave room.
func linePlot(title, xlabel, ylabel string, xs []float64, lines []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = ticksAt(xs)
	p.Y.Min = 0
	p.Title.Padding = vg.Points(6)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(6)
	p.Legend.YOffs = -vg.Points(4)
	p.Add(plotter.NewGrid())
	for _, s := range lines {
		l, pts, err := plotter.NewLinePoints(s.points)
		if err != nil {
			return nil, fmt.Errorf("plot: %s: %w", s.name, err)
		}
		l.Color = plotutil.Color(s.style)
		pts.Color = plotutil.Color(s.style)
		pts.Shape = plotutil.Shape(s.style)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		p.Add(l, pts)
		p.Legend.Add(s.name, l, pts)
	}
	return p, nil
}

// ticksAt labels the x axis at exactly the values measured.
func ticksAt(xs []float64) plot.ConstantTicks {
	vs := slices.Clone(xs)
	slices.Sort(vs)
	vs = slices.Compact(vs)
	ticks := make(plot.ConstantTicks, len(vs))
	for i, v := range vs {
		ticks[i] = plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)}
	}
	return ticks
}
