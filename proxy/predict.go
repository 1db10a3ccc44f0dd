package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// /predict (classifiers, and rerankers scoring pairs) goes through the
// cache of whole answers that reranks use (RERANK_CACHE_SIZE and
// RERANK_CACHE_MAX_BYTES bound both), per request: its answer is a pure
// function of the model, the inputs and the settings. Batches larger than
// TEI takes are split into calls of max_client_batch_size inputs, sent
// side by side, and their answers joined in input order.

// predictRequest is the body of TEI's /predict.
type predictRequest struct {
	Inputs              jsontext.Value `json:"inputs"`
	Truncate            *bool          `json:"truncate"`
	TruncationDirection optString      `json:"truncation_direction"`
	RawScores           optBool        `json:"raw_scores"`
}

// sequence is one /predict input: a text, or a pair of texts.
type sequence struct {
	texts []string // one or two
}

// predictExpecting is TEI's description of PredictInput in its messages.
const predictExpecting = "a string, a pair of strings [string, string] or a batch of mixed strings and pairs [[string], [string, string], ...]"

func predictShapeError(detail string) error {
	return plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: inputs: %s", detail)
}

// parsePredictInputs reads TEI's PredictInput: a string or a list of one or
// two strings is one input; a list of such lists is a batch.
func parsePredictInputs(raw jsontext.Value) (seqs []sequence, batch bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `inputs`")
	}
	var s string
	if raw[0] == '"' {
		if err := jsonUnmarshal(raw, &s); err != nil {
			return nil, false, plainError(http.StatusBadRequest, "Failed to parse the request body as JSON: %v", err)
		}
		return []sequence{{texts: []string{s}}}, false, nil
	}
	var elems []jsontext.Value
	if raw[0] != '[' || jsonUnmarshal(raw, &elems) != nil {
		return nil, false, predictShapeError("invalid type, expected " + predictExpecting)
	}
	if len(elems) == 0 {
		return nil, false, predictShapeError("invalid length 0, expected " + predictExpecting)
	}
	pair := func(el jsontext.Value) (sequence, error) {
		var texts []string
		if err := jsonUnmarshal(el, &texts); err != nil {
			return sequence{}, predictShapeError("data did not match any variant of untagged enum Internal")
		}
		if len(texts) < 1 || len(texts) > 2 {
			return sequence{}, predictShapeError("invalid length " + strconv.Itoa(len(texts)) + ", expected " + predictExpecting)
		}
		return sequence{texts: texts}, nil
	}
	if first := bytes.TrimSpace(elems[0]); first[0] != '[' {
		sq, err := pair(raw)
		return []sequence{sq}, false, err
	}
	seqs = make([]sequence, len(elems))
	for i, el := range elems {
		if seqs[i], err = pair(el); err != nil {
			return nil, false, err
		}
	}
	return seqs, true, nil
}

// errItemCount is a /predict answer with another number of items than the
// call had inputs.
var errItemCount = errors.New("/predict response: wrong number of items")

// predictParams are a /predict call's settings, resolved.
type predictParams struct {
	seqs      []sequence
	truncate  bool
	direction string
	raw       bool
}

// key hashes everything that changes the answer. The leading "P" keeps it
// apart from rerank keys, whose preimages start with a digit.
func (p predictParams) key(info *tei.Info) key {
	b := append(make([]byte, 0, 256), 'P')
	b = appendField(b, info.ModelID)
	b = appendField(b, info.Revision())
	b = strconv.AppendBool(b, p.truncate)
	b = appendField(b, p.direction)
	b = strconv.AppendBool(b, p.raw)
	b = strconv.AppendInt(b, int64(len(p.seqs)), 10)
	for _, sq := range p.seqs {
		b = strconv.AppendInt(b, int64(len(sq.texts)), 10)
		for _, t := range sq.texts {
			b = appendField(b, t)
		}
	}
	return sha256.Sum256(b)
}

// body is the /predict call for seqs, always in batch form.
func (p predictParams) body(seqs []sequence) []byte {
	b := append(make([]byte, 0, 256), `{"inputs":[`...)
	for i, sq := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, t := range sq.texts {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, t)
		}
		b = append(b, ']')
	}
	b = append(b, `],"truncate":`...)
	b = strconv.AppendBool(b, p.truncate)
	b = append(b, `,"truncation_direction":"`...)
	b = append(b, p.direction...)
	b = append(b, `","raw_scores":`...)
	b = strconv.AppendBool(b, p.raw)
	return append(b, '}')
}

// teiPredict serves /predict with TEI's shapes: for one input its list of
// label scores, for a batch a list of those.
func (s *Server) teiPredict(c echo.Context) error {
	body, err := readJSON(c, s.cfg.BodyLimit)
	if err != nil {
		return s.teiError(c, err)
	}
	var req predictRequest
	if err := decodeBody(body, &req); err != nil {
		return s.teiError(c, err)
	}
	seqs, batch, err := parsePredictInputs(req.Inputs)
	if err != nil {
		return s.teiError(c, err)
	}
	dir, err := parseDirection(req.TruncationDirection.ptr())
	if err != nil {
		return s.teiError(c, err)
	}
	info := s.embedP.info()
	if k := info.ModelType.Kind(); k != tei.KindClassifier && k != tei.KindReranker {
		return s.teiError(c, wrongModel("Backend error: Model is not a classifier model"))
	}
	for _, sq := range seqs {
		if sq.texts[0] == "" && (len(sq.texts) == 1 || sq.texts[1] == "") {
			return s.teiError(c, errEmptyInputs)
		}
	}
	p := predictParams{seqs: seqs, truncate: info.AutoTruncate, direction: dir, raw: req.RawScores.or(false)}
	if req.Truncate != nil {
		p.truncate = *req.Truncate
	}
	items, resps, cc, err := s.predict(c.Request().Context(), s.embedP, p, s.requestOpts(c.Request().Header, len(seqs)))
	if err != nil {
		return s.teiError(c, err)
	}
	setXCache(c, cc)
	setTEIHeaders(c, resps)
	if !batch {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, items[0])
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, appendItems(nil, items))
}

// appendItems writes items as a JSON list.
func appendItems(b []byte, items [][]byte) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return append(b, ']')
}

// predict returns each input's label scores as TEI wrote them: from the
// cache, or from TEI in calls of at most max_client_batch_size inputs, with
// the responses of the calls made (none on a hit).
func (s *Server) predict(ctx context.Context, p *pool, pp predictParams, ro reqOpts) ([][]byte, []*tei.Response, cacheCount, error) {
	cc := cacheCount{total: 1}
	info := p.info()
	k := pp.key(info)
	if !ro.noCache {
		if r, ok := s.rankCache.get(k); ok {
			if items, err := tei.SplitItems(r.body, nil); err == nil && len(items) == len(pp.seqs) {
				s.m.cacheHits.WithLabelValues("predict", "memory").Inc()
				cc.hits = 1
				return items, nil, cc, nil
			}
		}
		if s.shared != nil {
			if v := s.shared.Get(ctx, [][32]byte{k})[0]; v != nil {
				if items, err := tei.SplitItems(v, nil); err == nil && len(items) == len(pp.seqs) {
					body := append([]byte(nil), v...)
					s.rankCache.add(k, newRankResult(nil, body))
					s.m.cacheHits.WithLabelValues("predict", "redis").Inc()
					cc.hits = 1
					items, _ = tei.SplitItems(body, nil)
					return items, nil, cc, nil
				}
			}
		}
	}
	if s.rankCache != nil || s.shared != nil {
		s.m.cacheMisses.WithLabelValues("predict").Inc()
	}
	size := max(info.MaxClientBatchSize, 1)
	chunks := (len(pp.seqs) + size - 1) / size
	resps := make([]*tei.Response, chunks)
	parts := make([][][]byte, chunks)
	g, gctx := errgroup.WithContext(ctx)
	for i := range chunks {
		seqs := pp.seqs[i*size : min((i+1)*size, len(pp.seqs))]
		g.Go(func() error {
			res, err := s.pass(gctx, p, http.MethodPost, "/predict", pp.body(seqs), len(seqs), ro.prio)
			if err != nil {
				return err
			}
			items, err := tei.SplitItems(res.Body, nil)
			if err == nil && len(items) != len(seqs) {
				err = errItemCount
			}
			if err != nil {
				return &tei.TransportError{Kind: tei.KindOther, Err: err}
			}
			resps[i], parts[i] = res, items
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, cc, err
	}
	items := make([][]byte, 0, len(pp.seqs))
	for _, part := range parts {
		items = append(items, part...)
	}
	if !ro.noStore {
		body := appendItems(nil, items)
		s.rankCache.add(k, newRankResult(nil, body))
		s.shared.Put(k, body)
	}
	return items, resps, cc, nil
}
