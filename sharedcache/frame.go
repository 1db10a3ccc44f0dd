package sharedcache

import (
	"encoding/binary"
	"hash/crc32"
)

// A stored value is a frame: one version byte, the CRC-32C of the payload
// (big-endian), then the payload exactly as Put was given it. The check
// turns anything else found under a key (an empty or truncated value, a
// write by another program or format, a corrupted reply) into a miss
// instead of an answer: peers have served nulls and garbage from bad round
// trips, and a cached embedding is served without further checks.
const (
	frameVersion = 1
	frameHeader  = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frame returns a new frame holding a copy of payload.
func frame(payload []byte) []byte {
	b := make([]byte, frameHeader+len(payload))
	b[0] = frameVersion
	binary.BigEndian.PutUint32(b[1:frameHeader], crc32.Checksum(payload, castagnoli))
	copy(b[frameHeader:], payload)
	return b
}

// unframe returns the payload of b, a subslice of it, or false when b is
// not a well-formed frame with a non-empty payload.
func unframe(b []byte) ([]byte, bool) {
	if len(b) <= frameHeader || b[0] != frameVersion {
		return nil, false
	}
	payload := b[frameHeader:]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[1:frameHeader]) {
		return nil, false
	}
	return payload, true
}
