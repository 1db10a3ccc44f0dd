package bench

import (
	"math"
	"slices"
	"time"
)

// Stats summarises the times of one row's iterations, in seconds, as the
// plugin's script does (Python's statistics module), plus percentiles.
type Stats struct {
	// Times are the iterations' times in the order they ran.
	Times []float64 `json:"times_s"`
	// Mean is statistics.mean.
	Mean float64 `json:"mean_s"`
	// Median is statistics.median: the middle time, or the mean of the two
	// middle ones.
	Median float64 `json:"median_s"`
	// StdDev is statistics.stdev, the sample standard deviation (n-1); 0
	// for a single iteration, as the plugin reports it.
	StdDev float64 `json:"stddev_s"`
	Min    float64 `json:"min_s"`
	Max    float64 `json:"max_s"`
	// P50, P95 and P99 interpolate linearly between the closest ranks
	// (NumPy's default), so with few iterations P99 is near Max.
	P50 float64 `json:"p50_s"`
	P95 float64 `json:"p95_s"`
	P99 float64 `json:"p99_s"`
	// Throughput is the row's items divided by Mean.
	Throughput float64 `json:"throughput"`
}

// summarize computes Stats of times (seconds) for a row of items items.
func summarize(times []float64, items int) Stats {
	s := Stats{Times: times}
	n := len(times)
	if n == 0 {
		return s
	}
	sorted := slices.Sorted(slices.Values(times))
	var sum float64
	for _, t := range times {
		sum += t
	}
	s.Mean = sum / float64(n)
	if n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	if n > 1 {
		var sq float64
		for _, t := range times {
			sq += (t - s.Mean) * (t - s.Mean)
		}
		s.StdDev = math.Sqrt(sq / float64(n-1))
	}
	s.Min, s.Max = sorted[0], sorted[n-1]
	s.P50 = percentile(sorted, 50)
	s.P95 = percentile(sorted, 95)
	s.P99 = percentile(sorted, 99)
	if s.Mean > 0 {
		s.Throughput = float64(items) / s.Mean
	}
	return s
}

// percentile of sorted values, interpolating linearly between the values
// at the ranks around p/100×(n-1).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(rank-float64(lo))
}

// seconds converts durations for summarize.
func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}
