package proxy

import (
	"math"
	"strconv"
)

// Cohere's compressed embedding types, computed by the sidecar from the
// float vector TEI produced (TEI has none of them). The Cohere faces always
// ask TEI for unit vectors (normalize=true), so every component lies in
// [-1, 1].
//
//   - int8: round(127·x), in [-127, 127]. One fixed scale for every
//     vector, so dot products (Cohere's recommended similarity for int8)
//     keep their order across vectors; a scale per vector (its largest
//     component) would use more of the range but multiply each document's
//     scores by its own factor and reorder them. A unit vector's components
//     are small (mostly below 0.1 in 1024 dimensions), so the rounding
//     error of a dot product of two such vectors is about 0.003.
//   - uint8: int8 + 128, in [1, 255]: the same information, unsigned.
//   - ubinary: one bit per dimension, 1 where the component is above 0,
//     packed 8 to a byte, first dimension in the most significant bit
//     (numpy's packbits, as sentence-transformers' quantize_embeddings and
//     Cohere's docs describe); a dimension not a multiple of 8 pads the
//     last byte with 0 bits.
//   - binary: the ubinary bytes minus 128, as int8 (sentence-transformers'
//     "binary").

// appendInt8s appends v as int8 (offset 0) or uint8 (offset 128) values.
func appendInt8s(b []byte, v []float32, offset int) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(quantize8(x)+offset), 10)
	}
	return append(b, ']')
}

// quantize8 is x scaled to int8's range, clamped for inputs just outside
// [-1, 1] (rounding in the model's normalization).
func quantize8(x float32) int {
	q := math.Round(127 * float64(x))
	return int(min(max(q, -128), 127))
}

// appendBits appends v's sign bits packed 8 to a byte, MSB first, as uint8
// (offset 0) or int8 (offset -128) values.
func appendBits(b []byte, v []float32, offset int) []byte {
	b = append(b, '[')
	for i := 0; i < len(v); i += 8 {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(int(packByte(v[i:min(i+8, len(v))]))+offset), 10)
	}
	return append(b, ']')
}

// packByte packs up to 8 components' bits, the first in the top bit.
func packByte(v []float32) byte {
	var by byte
	for j, x := range v {
		if x > 0 {
			by |= 0x80 >> j
		}
	}
	return by
}
