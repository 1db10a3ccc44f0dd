package teisim

import (
	"cmp"
	"net/http"
	"unicode/utf8"
)

// simpleToken is one token in a /tokenize answer. Special tokens have no
// offsets.
type simpleToken struct {
	ID      uint32 `json:"id"`
	Text    string `json:"text"`
	Special bool   `json:"special"`
	Start   *int   `json:"start"`
	Stop    *int   `json:"stop"`
}

// handleTokenize serves POST /tokenize: the tokens of each input, with the
// prompt applied and no truncation. It takes no permits and no backend time.
func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req tokenizeRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	items := req.Inputs.items
	if req.Inputs.batch {
		if len(items) == 0 {
			s.refuse(w, errBatchEmpty, nativeFace)
			return
		}
		if len(items) > s.cfg.MaxClientBatchSize {
			s.refuse(w, errBatchSize(len(items), s.cfg.MaxClientBatchSize), nativeFace)
			return
		}
	}
	out := make([][]simpleToken, len(items))
	var first *apiError
	for i, text := range items {
		tokens, err := s.tokenize(text, req.AddSpecialTokens, req.PromptName)
		if err != nil {
			counted := *err
			counted.metric = "tokenization"
			s.metrics.fail(&counted)
			first = cmp.Or(first, err)
			continue
		}
		out[i] = tokens
	}
	if first != nil {
		s.answerError(w, first, nativeFace)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) tokenize(text string, addSpecial bool, promptName *string) ([]simpleToken, *apiError) {
	if text == "" {
		return nil, errInputsEmpty
	}
	prompt, err := s.prompt(promptName)
	if err != nil {
		return nil, err
	}
	if limit, n := s.model.maxInputLength*maxCharMultiplier, utf8.RuneCountInString(text); n > limit {
		return nil, newError(errValidation, "tokenization", "Input validation error: `inputs` must have less than %d characters. Given: %d", limit, n)
	}
	tokens := s.tok.split(prompt + text)
	if addSpecial {
		tokens = s.model.vocab.withSpecials(tokens)
	}
	out := make([]simpleToken, len(tokens))
	for i, t := range tokens {
		out[i] = simpleToken{ID: t.id, Text: t.text, Special: t.special}
		if !t.special {
			out[i].Start, out[i].Stop = &t.start, &t.stop
		}
	}
	return out, nil
}

// handleDecode serves POST /decode. The simulator's ids are hashes, so it
// decodes the ids it has handed out and answers [UNK] for others.
func (s *Server) handleDecode(w http.ResponseWriter, r *http.Request) {
	var req decodeRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	items := req.IDs.items
	if req.IDs.batch {
		// TEI's "`ids` cannot be empty" is unreachable: [] is one empty list.
		if len(items) > s.cfg.MaxClientBatchSize {
			s.refuse(w, errBatchSize(len(items), s.cfg.MaxClientBatchSize), nativeFace)
			return
		}
	}
	out := make([]string, len(items))
	var first *apiError
	for i, ids := range items {
		if len(ids) == 0 {
			s.metrics.fail(errIDsEmpty)
			first = cmp.Or(first, errIDsEmpty)
			continue
		}
		out[i] = s.tok.decode(ids, req.SkipSpecialTokens)
	}
	if first != nil {
		s.answerError(w, first, nativeFace)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
