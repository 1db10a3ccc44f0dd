package teisim

import (
	"math"
	"slices"
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
	return v.appendJSON(make([]byte, 0, 2+12*len(v))), nil
}

func (v vector) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendF32(b, f)
	}
	return append(b, ']')
}

// vectors is /embed's answer. It is written straight into the body:
// encoding/json would check and compact every vector's MarshalJSON output
// again, which costs more than writing it.
type vectors []vector

func (vs vectors) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = v.appendJSON(b)
	}
	return append(b, ']')
}

// appendF32 appends f as serde_json writes an f32. It allocates nothing
// of its own: a 1024-d answer is 1024 of these, and the simulator should
// not spend many times TEI's CPU writing it.
func appendF32(b []byte, f float32) []byte {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return append(b, "null"...)
	}
	if a := math.Abs(float64(f)); a >= 1e-6 && a < 1e12 {
		// Where ryu writes no exponent (its digits start between 1e-6
		// and 1e13; below 1e12 they cannot round up past that), strconv's
		// shortest 'f' has the same digits. An integer gains ".0".
		n := len(b)
		b = strconv.AppendFloat(b, float64(f), 'f', -1, 32)
		if !slices.Contains(b[n:], '.') {
			b = append(b, ".0"...)
		}
		return b
	}
	return appendF32Exp(b, f)
}

// appendF32Exp is appendF32 for any finite f, from strconv's 'e' digits.
func appendF32Exp(b []byte, f float32) []byte {
	// Shortest round-trip digits d1.d2d3...e±X, relaid as ryu lays them.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], float64(f), 'e', -1, 32)
	if e[0] == '-' {
		b = append(b, '-')
		e = e[1:]
	}
	var dbuf [16]byte
	digits, exp := dbuf[:0], 0
	for i, c := range e {
		if c == 'e' {
			exp = atoiExp(e[i+1:])
			break
		}
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

// atoiExp reads the exponent strconv's 'e' format writes: a sign, then
// two or more digits.
func atoiExp(s []byte) int {
	neg := len(s) > 0 && s[0] == '-'
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n
	}
	return n
}
