package teisim

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
)

// Everything the simulated model outputs is a pure function of the model id
// and the kept token ids, so a text embeds the same alone or in a batch, on
// every run, and tests can compute expected values with Server.Embedding.
//
// Dense vectors mix a bag-of-words part (each token pushes a few hashed
// dimensions) with a part unique to the exact sequence: texts that share
// words come out similar, which keeps retrieval-style tests meaningful, and
// different texts never collide.

// rawScale sets the length of unnormalised vectors, so that normalize=false
// visibly differs from normalize=true as it does with a real model.
const rawScale = 8

// wordDims is how many dimensions each token pushes.
const wordDims = 4

// mix is SplitMix64's finaliser: a cheap, well-spread 64-bit hash step.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// sequenceSeed hashes the model id and the exact id sequence.
func (m model) sequenceSeed(ids []uint32) (uint64, uint64) {
	h := sha256.New()
	h.Write([]byte(m.id))
	h.Write([]byte{0})
	var b [4]byte
	for _, id := range ids {
		binary.LittleEndian.PutUint32(b[:], id)
		h.Write(b[:])
	}
	sum := h.Sum(nil)
	return binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:16])
}

// pooled returns the unnormalised pooled vector of ids (m.dim values).
func (m model) pooled(ids []uint32) []float32 {
	if m.kind == kindSplade {
		out := make([]float32, m.dim)
		for _, v := range m.sparse(ids) {
			out[v.Index] = float32(v.Value)
		}
		return out
	}
	words := make([]float64, m.dim)
	for _, id := range ids {
		if m.vocab.isSpecial(id) {
			continue
		}
		h := mix(m.seed ^ uint64(id))
		for range wordDims {
			h = mix(h)
			sign := 1.0
			if h&1 == 1 {
				sign = -1
			}
			words[(h>>1)%uint64(m.dim)] += sign
		}
	}
	s1, s2 := m.sequenceSeed(ids)
	rng := rand.New(rand.NewPCG(s1, s2))
	seq := make([]float64, m.dim)
	for i := range seq {
		seq[i] = rng.Float64()*2 - 1
	}
	scale(words, 0.8)
	scale(seq, 0.2)
	out := make([]float32, m.dim)
	for i := range out {
		out[i] = float32(rawScale * (words[i] + seq[i]))
	}
	return out
}

// scale sets v's length to length; a zero vector stays zero.
func scale(v []float64, length float64) {
	var sum float64
	for _, x := range v {
		sum += x * x
	}
	if sum == 0 {
		return
	}
	f := length / math.Sqrt(sum)
	for i := range v {
		v[i] *= f
	}
}

// unitLength returns v at unit length, as TEI's normalize does; a zero vector
// stays zero.
func unitLength(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return v
	}
	f := 1 / math.Sqrt(sum)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * f)
	}
	return out
}

// sparseValue is one non-zero entry of a SPLADE vector.
type sparseValue struct {
	Index uint32 `json:"index"`
	Value f32    `json:"value"`
}

// sparse returns the SPLADE vector of ids: each token weighs on its own id
// and on two "expansion" ids, as SPLADE's vocabulary projection does;
// values are log(1+w) > 0 and entries are sorted by index, as TEI lists them.
func (m model) sparse(ids []uint32) []sparseValue {
	weights := make(map[uint32]float64)
	span := uint64(uint32(m.vocab.size) - m.vocab.first)
	for _, id := range ids {
		if m.vocab.isSpecial(id) {
			continue
		}
		h := mix(m.seed ^ uint64(id))
		weights[id] += 0.5 + 2*unit(h)
		for range 2 {
			h = mix(h)
			weights[m.vocab.first+uint32(h%span)] += 0.3 * unit(mix(h))
		}
	}
	out := make([]sparseValue, 0, len(weights))
	for id, w := range weights {
		out = append(out, sparseValue{Index: id, Value: f32(math.Log1p(w))})
	}
	slices.SortFunc(out, func(a, b sparseValue) int { return int(a.Index) - int(b.Index) })
	return out
}

// tokenVectors returns one vector per token, as /embed_all does.
func (m model) tokenVectors(ids []uint32) [][]float32 {
	s1, s2 := m.sequenceSeed(ids)
	rng := rand.New(rand.NewPCG(s1, s2^0x5eed))
	out := make([][]float32, len(ids))
	for i := range out {
		v := make([]float32, m.dim)
		for j := range v {
			v[j] = float32(rng.Float64()*2 - 1)
		}
		out[i] = v
	}
	return out
}

// relevance returns the logit a cross-encoder gives the pair a, b (content
// ids, no special tokens): mostly how much of a is covered by b, plus a tiny
// hash so ties break the same way every time.
func (m model) relevance(a, b []uint32, all []uint32) float64 {
	query := make(map[uint32]bool)
	for _, id := range a {
		if !m.vocab.isSpecial(id) {
			query[id] = true
		}
	}
	text := make(map[uint32]bool)
	for _, id := range b {
		if !m.vocab.isSpecial(id) {
			text[id] = true
		}
	}
	shared := 0
	for id := range query {
		if text[id] {
			shared++
		}
	}
	var coverage, jaccard float64
	if len(query) > 0 {
		coverage = float64(shared) / float64(len(query))
	}
	if union := len(query) + len(text) - shared; union > 0 {
		jaccard = float64(shared) / float64(union)
	}
	s1, _ := m.sequenceSeed(all)
	return 6*coverage + 3*jaccard - 4 + (unit(s1)-0.5)*0.1
}

// logits returns one logit per label for ids: a reranker scoring a single
// text, or a classifier.
func (m model) logits(ids []uint32) []float64 {
	s1, _ := m.sequenceSeed(ids)
	out := make([]float64, len(m.labels))
	for i := range out {
		out[i] = unit(mix(s1+uint64(i)))*8 - 4
	}
	return out
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// softmax turns logits into probabilities, as TEI does for classifiers.
func softmax(x []float64) []float64 {
	maxX := slices.Max(x)
	out := make([]float64, len(x))
	var sum float64
	for i, v := range x {
		out[i] = math.Exp(v - maxX)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
