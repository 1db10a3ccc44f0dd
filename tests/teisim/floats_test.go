package teisim

import (
	"encoding/json"
	"math"
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
