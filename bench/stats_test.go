package bench

import (
	"math"
	"testing"
)

// TestSummarize checks the statistics against Python's statistics module
// (the plugin's), and the percentiles against NumPy's linear method.
func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		times                   []float64
		items                   int
		mean, median, stddev    float64
		min, max, p50, p95, p99 float64
	}{
		{"one iteration", []float64{0.5}, 1, 0.5, 0.5, 0, 0.5, 0.5, 0.5, 0.5, 0.5},
		{"even count", []float64{4, 1, 3, 2}, 10, 2.5, 2.5, 1.2909944487358056, 1, 4, 2.5, 3.85, 3.97},
		{"odd count, outlier", []float64{1, 2, 3, 4, 10}, 1, 4, 3, 3.5355339059327378, 1, 10, 3, 8.8, 9.76},
		{"plugin-like", []float64{0.05, 0.048, 0.052, 0.049, 0.051, 0.06, 0.047, 0.05, 0.05, 0.049}, 20, 0.0506, 0.05, 0.003596294389136313, 0.047, 0.06, 0.05, 0.0564, 0.05928},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := summarize(tc.times, tc.items)
			for _, c := range []struct {
				what      string
				got, want float64
			}{
				{"mean", s.Mean, tc.mean}, {"median", s.Median, tc.median}, {"stddev", s.StdDev, tc.stddev},
				{"min", s.Min, tc.min}, {"max", s.Max, tc.max},
				{"p50", s.P50, tc.p50}, {"p95", s.P95, tc.p95}, {"p99", s.P99, tc.p99},
				{"throughput", s.Throughput, float64(tc.items) / tc.mean},
			} {
				if math.Abs(c.got-c.want) > 1e-9 {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			if len(s.Times) != len(tc.times) || s.Times[0] != tc.times[0] {
				t.Errorf("times = %v, want them in run order %v", s.Times, tc.times)
			}
		})
	}
}

func TestScaled(t *testing.T) {
	s := Scenario{Warmup: 2, Iterations: 10}
	for _, tc := range []struct {
		f            float64
		warmup, iter int
	}{{0, 2, 10}, {1, 2, 10}, {0.1, 1, 1}, {0.25, 1, 3}, {2, 4, 20}} {
		got := s.scaled(tc.f)
		if got.Warmup != tc.warmup || got.Iterations != tc.iter {
			t.Errorf("scale %v: %d warm-ups, %d iterations; want %d, %d", tc.f, got.Warmup, got.Iterations, tc.warmup, tc.iter)
		}
	}
}
