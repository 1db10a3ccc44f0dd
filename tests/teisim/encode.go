package teisim

import (
	"time"
	"unicode/utf8"
)

// maxCharMultiplier is TEI's character limit per token of max_input_length:
// inputs with more characters are refused (or cut, when truncating) before
// tokenization.
const maxCharMultiplier = 250

// encodeOptions are a request's truncation and prompt settings.
type encodeOptions struct {
	truncate   bool
	direction  direction
	promptName *string
}

// encoded is one input after tokenization and truncation: what the backend
// runs and what the outputs are computed from.
type encoded struct {
	ids []uint32 // kept ids, special tokens included
	// pairAt is where the second text of a pair starts in ids; 0 for one text.
	pairAt       int
	tokenization time.Duration
	// source is the text the model reads (prompt included; a pair's texts
	// joined by a space), which the fault markers are looked for in.
	source string
	// nan and poison are set from the fault markers as the input goes to
	// the backend: its output is NaN, its batch fails.
	nan, poison bool
}

// prompt returns the text to prepend for a request's prompt_name, or the
// server's default prompt when it names none, with TEI's errors.
func (s *Server) prompt(name *string) (string, *apiError) {
	if name == nil {
		if s.cfg.DefaultPromptName != "" {
			return s.cfg.Sim.Prompts[s.cfg.DefaultPromptName], nil
		}
		return s.cfg.DefaultPrompt, nil
	}
	if len(s.cfg.Sim.Prompts) == 0 {
		return "", newError(errValidation, "validation", "Input validation error: `default-prompt-name` is set to `%s` but no prompts were found in the Sentence Transformers configuration", *name)
	}
	p, ok := s.cfg.Sim.Prompts[*name]
	if !ok {
		return "", newError(errValidation, "validation", "Input validation error: `default-prompt-name` is set to `%s` but it was not found in the Sentence Transformers prompts. Available prompts: %s", *name, promptNames(s.cfg.Sim.Prompts))
	}
	return p, nil
}

// encode tokenizes one input as TEI's tokenization workers do: empty check,
// prompt, character limit, tokens with special tokens (token-id inputs are
// taken as they are), then truncation or the too-long error.
func (s *Server) encode(in input, opt encodeOptions) (encoded, *apiError) {
	start := time.Now()
	if in.empty() {
		return encoded{}, errInputsEmpty
	}
	prompt, perr := s.prompt(opt.promptName)
	if perr != nil {
		return encoded{}, perr
	}
	text := in.text
	if limit := s.model.maxInputLength * maxCharMultiplier; in.chars() > limit {
		if !opt.truncate {
			return encoded{}, newError(errValidation, "validation", "Input validation error: `inputs` must have less than %d characters. Given: %d", limit, in.chars())
		}
		if !in.isIDs {
			text = cutAt(text, limit)
		}
	}

	var ids []uint32
	source := prompt + text
	switch {
	case in.isIDs && prompt == "":
		ids = in.ids
		source = s.tok.decode(in.ids, true)
		if len(ids) > s.model.maxInputLength {
			if !opt.truncate {
				return encoded{}, s.tooLong(len(ids))
			}
			ids = keep(ids, s.model.maxInputLength, opt.direction)
		}
	default:
		if in.isIDs {
			text = s.tok.decode(in.ids, true)
			source = prompt + text
		}
		content := s.tok.split(prompt + text)
		budget := max(s.model.maxInputLength-2, 0)
		if len(content) > budget {
			if !opt.truncate {
				return encoded{}, s.tooLong(len(content) + 2)
			}
			content = keep(content, budget, opt.direction)
		}
		ids = tokenIDs(s.model.vocab.withSpecials(content))
	}
	return encoded{ids: ids, tokenization: time.Since(start), source: source}, nil
}

// encodePair tokenizes a (query, text) pair for a cross-encoder:
// [CLS] a [SEP] b [SEP], truncating the longer side first as TEI's
// LongestFirst strategy does. TEI refuses a prompt on a pair, and routes
// with pairs never name one, so a server with a default prompt refuses
// every pair.
func (s *Server) encodePair(a, b string, opt encodeOptions) (encoded, *apiError) {
	start := time.Now()
	if a == "" && b == "" {
		return encoded{}, errInputsEmpty
	}
	if prompt, err := s.prompt(opt.promptName); err != nil {
		return encoded{}, err
	} else if prompt != "" {
		return encoded{}, errPromptWithPair
	}
	chars := len([]rune(a)) + len([]rune(b))
	if limit := s.model.maxInputLength * maxCharMultiplier; chars > limit {
		if !opt.truncate {
			return encoded{}, newError(errValidation, "validation", "Input validation error: `inputs` must have less than %d characters. Given: %d", limit, chars)
		}
		a, b = cutAt(a, limit/2), cutAt(b, limit/2)
	}
	ta, tb := s.tok.split(a), s.tok.split(b)
	budget := max(s.model.maxInputLength-3, 0)
	if len(ta)+len(tb) > budget {
		if !opt.truncate {
			return encoded{}, s.tooLong(len(ta) + len(tb) + 3)
		}
		na, nb := longestFirst(len(ta), len(tb), budget)
		ta, tb = keep(ta, na, opt.direction), keep(tb, nb, opt.direction)
	}
	v := s.model.vocab
	ids := make([]uint32, 0, len(ta)+len(tb)+3)
	ids = append(ids, v.cls.id)
	ids = append(ids, tokenIDs(ta)...)
	ids = append(ids, v.sep.id)
	pairAt := len(ids)
	ids = append(ids, tokenIDs(tb)...)
	ids = append(ids, v.sep.id)
	return encoded{ids: ids, pairAt: pairAt, tokenization: time.Since(start), source: a + " " + b}, nil
}

func (s *Server) tooLong(n int) *apiError {
	return newError(errValidation, "validation", "Input validation error: `inputs` must have less than %d tokens. Given: %d", s.model.maxInputLength, n)
}

// keep returns the first n items (truncating on the right) or the last n
// (on the left).
func keep[T any](items []T, n int, d direction) []T {
	if len(items) <= n {
		return items
	}
	if d == truncateLeft {
		return items[len(items)-n:]
	}
	return items[:n]
}

// longestFirst splits budget between two sequences by trimming the longer
// one first, one token at a time.
func longestFirst(a, b, budget int) (int, int) {
	for a+b > budget {
		if a >= b {
			a--
		} else {
			b--
		}
	}
	return a, b
}

// cutAt is TEI's apply_limit on a text: cut to n bytes (though the limit
// counts characters), and only where a character starts; elsewhere the text
// stays whole.
func cutAt(s string, n int) string {
	if n >= len(s) || !utf8.RuneStart(s[n]) {
		return s
	}
	return s[:n]
}

func tokenIDs(tokens []token) []uint32 {
	ids := make([]uint32, len(tokens))
	for i, t := range tokens {
		ids[i] = t.id
	}
	return ids
}
