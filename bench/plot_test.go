package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tei-sidecar/tei-sidecar/tests/teisim"
)

// checkSVG fails t unless doc is well-formed XML with an <svg> root whose
// text holds every one of labels.
func checkSVG(t *testing.T, doc []byte, labels ...string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var root string
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
		case xml.CharData:
			text.Write(el)
			text.WriteByte('\n')
		}
	}
	if root != "svg" {
		t.Fatalf("root element <%s>, want <svg>", root)
	}
	for _, l := range labels {
		if !strings.Contains(text.String(), l) {
			t.Errorf("the picture's text lacks %q", l)
		}
	}
}

func TestBenchPlot(t *testing.T) {
	embedURL, rerankURL := simulators(t)
	url := sidecar(t, embedURL, rerankURL)
	o := quick(Options{Target: Target{URL: url}, Baseline: &Target{URL: embedURL, RerankURL: rerankURL}})
	o.Scale = 0.05
	o.Sweep = []int{1, 2, 4}
	o.SweepDuration = 50 * time.Millisecond
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WritePlot(&buf, rep); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, buf.Bytes(), "target p50", "target p99", "baseline p50", "baseline p99", "target", "baseline",
		"Throughput", "concurrent clients", "queries/s", "latency (ms)")

	rep.Sweep = nil
	if err := WritePlot(io.Discard, rep); err == nil || !strings.Contains(err.Error(), "no concurrency sweep") {
		t.Errorf("plot without a sweep: %v", err)
	}
}

func TestTunePlot(t *testing.T) {
	_, url := teisim.Start(t, "--model-id", "BAAI/bge-m3", "--sim-batch-cost", "1ms", "--sim-token-cost", "0s")
	rep, err := Tune(t.Context(), TuneOptions{URL: url, MaxBatch: 4, MaxConcurrency: 2, StepDuration: 30 * time.Millisecond, StepRequests: 10})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTunePlot(&buf, rep); err != nil {
		t.Fatal(err)
	}
	rec, best := rep.Recommended, rep.Best
	checkSVG(t, buf.Bytes(), "batch 1", "batch 2", "batch 4", "inputs in flight (batch × concurrent clients)", "inputs/s",
		"recommended (knee): batch "+strconv.Itoa(rec.Batch)+" × "+strconv.Itoa(rec.Concurrency)+" clients",
		"best: batch "+strconv.Itoa(best.Batch)+" × "+strconv.Itoa(best.Concurrency)+" clients")

	if err := WriteTunePlot(io.Discard, &TuneReport{Steps: []Step{{Batch: 1, Concurrency: 1, Outcome: OutcomeRefused}}}); err == nil {
		t.Error("a tune without a measured step was drawn")
	}
}
