package teisim

import (
	"math"
	"strconv"
)

// TEI writes its f32 outputs with serde_json, which formats finite floats
// with ryu (the shortest digits that read back as the same f32, "1.0" for
// an integer, an exponent only outside [1e-6, 1e13)) and writes NaN and the
// infinities as null. encoding/json refuses NaN outright and formats
// differently ("1", "1e-07"), so answers use these types instead.

// f32 is one f32 of an answer (a score, a sparse value, a similarity).
type f32 float32

// MarshalJSON implements json.Marshaler.
func (f f32) MarshalJSON() ([]byte, error) {
	return appendF32(nil, float32(f)), nil
}

// vector is a list of f32, written in one pass.
type vector []float32

// MarshalJSON implements json.Marshaler.
func (v vector) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+12*len(v))
	b = append(b, '[')
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendF32(b, f)
	}
	return append(b, ']'), nil
}

// appendF32 appends f as serde_json writes an f32.
func appendF32(b []byte, f float32) []byte {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return append(b, "null"...)
	}
	// Shortest round-trip digits d1.d2d3...e±X, relaid as ryu lays them.
	e := strconv.AppendFloat(nil, float64(f), 'e', -1, 32)
	if e[0] == '-' {
		b = append(b, '-')
		e = e[1:]
	}
	mant, exp := e, 0
	for i, c := range e {
		if c == 'e' {
			mant = e[:i]
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
	}
	digits := make([]byte, 0, len(mant))
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	length := len(digits)
	kk := exp + 1    // the decimal point sits after kk digits
	k := kk - length // the exponent of the last digit
	switch {
	case 0 <= k && kk <= 13:
		b = append(b, digits...)
		for range k {
			b = append(b, '0')
		}
		return append(b, ".0"...)
	case 0 < kk && kk <= 13:
		b = append(b, digits[:kk]...)
		b = append(b, '.')
		return append(b, digits[kk:]...)
	case -6 < kk && kk <= 0:
		b = append(b, "0."...)
		for range -kk {
			b = append(b, '0')
		}
		return append(b, digits...)
	case length == 1:
		b = append(b, digits[0], 'e')
		return strconv.AppendInt(b, int64(kk-1), 10)
	default:
		b = append(b, digits[0], '.')
		b = append(b, digits[1:]...)
		b = append(b, 'e')
		return strconv.AppendInt(b, int64(kk-1), 10)
	}
}
