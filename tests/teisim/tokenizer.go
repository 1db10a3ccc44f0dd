package teisim

import (
	"hash/fnv"
	"strings"
	"sync"
	"unicode"
)

// The simulator's tokenizer is deliberately simple: runs of letters and
// digits are words, every other non-space character is a token of its own,
// and words longer than maxPiece runes are cut into pieces, roughly as
// WordPiece does. Token ids are hashes into the model's vocabulary, so the
// same word always gets the same id. It only has to be deterministic and give
// plausible counts: counts drive "too long", truncation and timing.

// maxPiece is the longest word kept as one token.
const maxPiece = 8

// specialToken is a token the tokenizer adds around the text.
type specialToken struct {
	id   uint32
	text string
}

// vocabulary is a model's id space.
type vocabulary struct {
	size  int          // number of ids
	first uint32       // lowest id given to text; ids below are special
	cls   specialToken // added before the text
	sep   specialToken // added after the text (and between a pair)
}

// token is one token of a text, with its offsets in runes.
type token struct {
	id          uint32
	text        string
	special     bool
	start, stop int
}

// tokenizer turns text into tokens. It remembers the text of the ids it has
// produced so /decode can give them back.
type tokenizer struct {
	vocab vocabulary

	mu    sync.Mutex
	words map[uint32]string // id → text, for /decode; bounded by maxRemembered
}

// maxRemembered bounds the /decode memory so a long benchmark cannot grow it
// without limit.
const maxRemembered = 1 << 16

func newTokenizer(v vocabulary) *tokenizer {
	return &tokenizer{vocab: v, words: make(map[uint32]string)}
}

// split returns the text's tokens without special tokens. Offsets are rune
// indexes into text.
func (t *tokenizer) split(text string) []token {
	runes := []rune(text)
	var tokens []token
	for i := 0; i < len(runes); {
		r := runes[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case isWordRune(r):
			j := i
			for j < len(runes) && isWordRune(runes[j]) {
				j++
			}
			for k := i; k < j; k += maxPiece {
				end := min(k+maxPiece, j)
				tokens = append(tokens, t.word(runes, k, end, k > i))
			}
			i = j
		default:
			tokens = append(tokens, t.word(runes, i, i+1, false))
			i++
		}
	}
	return tokens
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// word makes the token for runes[start:stop]; a continuation piece hashes
// differently from the same letters starting a word, as in WordPiece.
func (t *tokenizer) word(runes []rune, start, stop int, continuation bool) token {
	text := string(runes[start:stop])
	key := strings.ToLower(text)
	if continuation {
		key = "##" + key
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	id := t.vocab.first + h.Sum32()%(uint32(t.vocab.size)-t.vocab.first)
	t.remember(id, key)
	return token{id: id, text: text, start: start, stop: stop}
}

func (t *tokenizer) remember(id uint32, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.words) < maxRemembered {
		t.words[id] = text
	}
}

// decode turns ids back into text as far as the tokenizer remembers them;
// unknown ids decode as [UNK].
func (t *tokenizer) decode(ids []uint32, skipSpecial bool) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for _, id := range ids {
		var text string
		switch {
		case id == t.vocab.cls.id:
			if skipSpecial {
				continue
			}
			text = t.vocab.cls.text
		case id == t.vocab.sep.id:
			if skipSpecial {
				continue
			}
			text = t.vocab.sep.text
		case t.words[id] != "":
			text = t.words[id]
		default:
			text = "[UNK]"
		}
		if rest, ok := strings.CutPrefix(text, "##"); ok {
			b.WriteString(rest)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(text)
	}
	return b.String()
}

// isSpecial reports whether id is one the tokenizer adds around text.
func (v vocabulary) isSpecial(id uint32) bool {
	return id == v.cls.id || id == v.sep.id
}

// withSpecials wraps content tokens as the model's post-processor would.
func (v vocabulary) withSpecials(content []token) []token {
	out := make([]token, 0, len(content)+2)
	out = append(out, token{id: v.cls.id, text: v.cls.text, special: true})
	out = append(out, content...)
	return append(out, token{id: v.sep.id, text: v.sep.text, special: true})
}
