package teisim

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAppendF32 checks floats are written as serde_json writes an f32
// (ryu's layout), and NaN and the infinities as null.
func TestAppendF32(t *testing.T) {
	tests := []struct {
		in   float32
		want string
	}{
		{0, "0.0"},
		{float32(math.Copysign(0, -1)), "-0.0"},
		{1, "1.0"},
		{-2, "-2.0"},
		{0.1, "0.1"},
		{-0.25, "-0.25"},
		{0.000001, "0.000001"},
		{1e-7, "1e-7"},
		{1.5e-7, "1.5e-7"},
		{123456789012, "123456790000.0"},
		{1e13, "1e13"},
		{1.25e15, "1.25e15"},
		{math.MaxFloat32, "3.4028235e38"},
		{math.SmallestNonzeroFloat32, "1e-45"},
		{0.33333334, "0.33333334"},
		{float32(math.NaN()), "null"},
		{float32(math.Inf(1)), "null"},
		{float32(math.Inf(-1)), "null"},
	}
	for _, tt := range tests {
		if got := string(appendF32(nil, tt.in)); got != tt.want {
			t.Errorf("appendF32(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestVectorJSON checks a vector reads back as the same f32s.
func TestVectorJSON(t *testing.T) {
	v := vector{1, -0.5, 3.1415927, 1e-7, 6e20}
	b, err := json.Marshal([]vector{v})
	if err != nil {
		t.Fatal(err)
	}
	var back [][]float32
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for i := range v {
		if back[0][i] != v[i] {
			t.Errorf("%d: %v read back as %v from %s", i, v[i], back[0][i], b)
		}
	}
}

// TestVectorsWriteAsEncodingJSON checks /embed's direct writer gives the
// bytes encoding/json gives for the same vectors, nulls and exponents
// included.
func TestVectorsWriteAsEncodingJSON(t *testing.T) {
	vs := vectors{
		{1, -0.5, 3.1415927, 1e-7, 6e20, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32},
		{},
		{float32(math.NaN()), float32(math.Inf(1)), 0.33333334},
	}
	want, err := json.Marshal([]vector(vs))
	if err != nil {
		t.Fatal(err)
	}
	if got := vs.appendJSON(nil); string(got) != string(want) {
		t.Errorf("appendJSON = %s, want %s", got, want)
	}
}

func BenchmarkVectorJSON(b *testing.B) {
	v := make(vector, 1024)
	for i := range v {
		v[i] = float32(math.Sin(float64(i))) / 32
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = vectors{v}.appendJSON(buf[:0])
	}
}

// TestAppendF32FixedMatchesDigits checks the fixed-notation shortcut
// against the general writer over random f32s of every exponent, and
// around the shortcut's edges.
func TestAppendF32FixedMatchesDigits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(f float32) {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return
		}
		if got, want := string(appendF32(nil, f)), string(appendF32Exp(nil, f)); got != want {
			t.Fatalf("appendF32(%v) = %s, the general writer %s", f, got, want)
		}
	}
	for range 200000 {
		check(math.Float32frombits(r.Uint32()))
		check(float32(r.NormFloat64() / 32)) // an embedding's values
	}
	for _, edge := range []float64{1e-6, 1e12, 1e13, 1, 10, 0.1} {
		f := float32(edge)
		for range 64 {
			check(f)
			check(-f)
			f = math.Nextafter32(f, float32(math.Inf(1)))
		}
		f = float32(edge)
		for range 64 {
			f = math.Nextafter32(f, 0)
			check(f)
		}
	}
}
