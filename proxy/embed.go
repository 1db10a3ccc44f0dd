package proxy

import (
	"context"
	"strconv"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// outputKind is what an embedding call produces; it is part of the cache
// key, while the HTTP route is not, so every API face shares entries.
type outputKind string

const (
	dense  outputKind = "dense"
	sparse outputKind = "sparse"
)

// embedParams are the settings of an embedding call that change its output.
type embedParams struct {
	kind       outputKind
	normalize  bool
	truncate   bool   // resolved against the pool's auto_truncate
	direction  string // "Right" or "Left"
	dims       int    // 0: the model's own
	promptName string
}

// keyPrefix encodes the model's identity and p for cache keys.
func (p embedParams) keyPrefix(info *tei.Info) string {
	b := make([]byte, 0, 96)
	b = appendField(b, info.ModelID)
	b = appendField(b, info.Revision())
	b = appendField(b, string(p.kind))
	b = appendField(b, strconv.FormatBool(p.normalize))
	b = appendField(b, strconv.FormatBool(p.truncate))
	b = appendField(b, p.direction)
	b = appendField(b, strconv.Itoa(p.dims))
	b = appendField(b, p.promptName)
	return string(b)
}

// batch is the TEI call shape for p: inputs with equal batch keys are sent
// together.
func (p embedParams) batch() *batchSpec {
	route := "/embed"
	if p.kind == sparse {
		route = "/embed_sparse"
	}
	tail := append(make([]byte, 0, 128), `],"truncate":`...)
	tail = strconv.AppendBool(tail, p.truncate)
	tail = append(tail, `,"truncation_direction":"`...)
	tail = append(tail, p.direction...)
	tail = append(tail, '"')
	if p.promptName != "" {
		tail = append(tail, `,"prompt_name":`...)
		tail = appendJSONString(tail, p.promptName)
	}
	if p.kind == dense {
		tail = append(tail, `,"normalize":`...)
		tail = strconv.AppendBool(tail, p.normalize)
		if p.dims > 0 {
			tail = append(tail, `,"dimensions":`...)
			tail = strconv.AppendInt(tail, int64(p.dims), 10)
		}
	}
	tail = append(tail, '}')
	return &batchSpec{route: route, key: route + string(tail), head: []byte(`{"inputs":[`), tail: tail}
}

// checkKind answers what TEI would refuse for the pool's model, without
// calling TEI: /embed on a reranker or classifier, normalize on a SPLADE
// model, /embed_sparse on a dense one, dimensions beyond the model's. These
// are the caller's mistakes and must not count against TEI. The checks and
// messages follow TEI's order.
func checkKind(info *tei.Info, ep embedParams, dim int) error {
	k := info.ModelType.Kind()
	switch {
	case ep.kind == sparse && k != tei.KindSparse:
		return wrongModel("Backend error: Model is not an embedding model with SPLADE pooling")
	case ep.kind == sparse:
		return nil
	case k != tei.KindEmbedding && k != tei.KindSparse:
		return wrongModel("Backend error: Model is not an embedding model")
	case k == tei.KindSparse && ep.normalize:
		return wrongModel("Backend error: `normalize` is not available for SPLADE models")
	case ep.dims > 0 && dim > 0 && ep.dims > dim:
		return &requestError{status: 422, typ: tei.TypeValidation, param: "dimensions",
			msg: "Input validation error: `dimensions` should be smaller than the maximum embedding dimension."}
	}
	return nil
}

// embed returns the entry of every input, in input order: hits from the
// cache, misses from TEI through the pool's scheduler. Distinct misses are
// computed once, whoever else wants them; token-id inputs are not cached.
// If any input fails, the whole call fails with that input's error.
func (s *Server) embed(ctx context.Context, p *pool, ep embedParams, inputs []tei.Input, prio priority) ([]*entry, error) {
	info := p.info()
	if err := checkKind(info, ep, int(p.dim.Load())); err != nil {
		return nil, err
	}
	out := make([]*entry, len(inputs))
	prefix := ep.keyPrefix(info)
	cache := s.cache

	// Look every input up; collect distinct misses and where they go.
	var (
		flights []*flight
		where   [][]int // positions in inputs, per flight
		index   map[key]int
		spec    *batchSpec
	)
	miss := func(in tei.Input, k key, keyed bool, i int) {
		if spec == nil {
			spec = ep.batch()
		}
		flights = append(flights, &flight{key: k, keyed: keyed, prio: prio,
			embed: &embedWork{batch: spec, input: appendInput(nil, in), weight: inputWeight(in)}})
		where = append(where, []int{i})
	}
	for i, in := range inputs {
		if in.IDs != nil {
			miss(in, key{}, false, i)
			continue
		}
		k := textKey(prefix, in.Text)
		if e, ok := cache.get(k); ok {
			out[i] = e
			s.m.cacheHits.WithLabelValues("embed", "memory").Inc()
			continue
		}
		if cache != nil {
			s.m.cacheMisses.WithLabelValues("embed").Inc()
		}
		if index == nil {
			index = make(map[key]int)
		}
		if j, ok := index[k]; ok {
			where[j] = append(where[j], i)
			continue
		}
		index[k] = len(flights)
		miss(in, k, true, i)
	}
	if len(flights) == 0 {
		return out, nil
	}
	w := newWaiter(len(flights))
	if err := p.submit(ctx, w, flights); err != nil {
		return nil, err
	}
	if err := p.await(ctx, w); err != nil {
		return nil, err
	}
	for j, f := range w.flights {
		if f.err != nil {
			return nil, f.err
		}
		for _, i := range where[j] {
			out[i] = f.entry
		}
	}
	return out, nil
}

func inputWeight(in tei.Input) int {
	if in.IDs != nil {
		return len(in.IDs)
	}
	return len(in.Text) + 1
}

// priorityOf classifies a request of n inputs: a few inputs are someone's
// query; more are ingest. X-Priority may lower any request to bulk, and
// raise one to interactive only when the server allows it.
func (s *Server) priorityOf(header string, n int) priority {
	switch header {
	case "bulk":
		return bulk
	case "interactive":
		if s.cfg.PriorityAllowRaise {
			return interactive
		}
	}
	if n <= s.cfg.PriorityInteractiveMaxInputs {
		return interactive
	}
	return bulk
}
