package bench

import "math"

// The retrieval plugin fork's benchmark texts, word for word, so a table from
// this benchmark can be set beside one from the plugin's own script.
const (
	ShortQuery = "What is machine learning?"
	LongQuery  = "Explain in detail how transformer models work in natural language processing"
)

var (
	shortDocs = []string{
		"Machine learning is a subset of AI",
		"Deep learning uses neural networks",
		"NLP processes natural language",
	}
	mediumDocs = repeat([]string{
		"Machine learning is a subset of artificial intelligence that enables systems to learn from data.",
		"Deep learning is a type of machine learning based on artificial neural networks.",
		"Natural language processing enables computers to understand human language.",
		"Computer vision allows machines to interpret and analyze visual information.",
		"Reinforcement learning trains agents through rewards and penalties.",
	}, 4)
	longDocs = repeat([]string{
		"Transformers revolutionized NLP by introducing self-attention mechanisms that allow models to weigh the importance of different words in a sentence.",
		"BERT (Bidirectional Encoder Representations from Transformers) uses masked language modeling to learn contextualized word representations.",
		"GPT models use autoregressive language modeling to generate coherent text by predicting the next word in a sequence.",
		"Fine-tuning pre-trained language models on specific tasks has become a standard approach in NLP applications.",
		"The attention mechanism allows neural networks to focus on relevant parts of the input when making predictions.",
	}, 10)
)

// repeat is Python's list * n.
func repeat(s []string, n int) []string {
	out := make([]string, 0, len(s)*n)
	for range n {
		out = append(out, s...)
	}
	return out
}

// Kind is what one iteration of a scenario sends.
type Kind string

// Scenario kinds.
const (
	// KindQuery embeds one query in one call.
	KindQuery Kind = "query"
	// KindQueries embeds several queries, one call each, in sequence.
	KindQueries Kind = "queries"
	// KindDocuments embeds a list of documents in one call (or in slices
	// of the client batch size on the tei face).
	KindDocuments Kind = "documents"
	// KindRerank scores passages against a query in one call.
	KindRerank Kind = "rerank"
)

// Scenario is one row of the benchmark.
type Scenario struct {
	Name string
	Kind Kind
	// Query is the text of query rows and the query of rerank rows.
	Query string
	// Texts are the queries of a queries row, the documents of a
	// documents row, the passages of a rerank row.
	Texts      []string
	Warmup     int
	Iterations int
	// Unit names the items for throughput: queries, docs or passages.
	Unit string
	// Unique appends " #<nonce>" to every text of every call, so no cache
	// can answer it; otherwise the texts repeat after the warm-up.
	Unique bool
	// Extra marks rows that are not among the plugin's eight.
	Extra bool
	// VariantOf names the row whose texts an uncached variant makes unique.
	VariantOf string
}

// Items is how many items one iteration handles: throughput is Items/mean.
func (s Scenario) Items() int {
	if s.Kind == KindQuery {
		return 1
	}
	return len(s.Texts)
}

// Scenarios returns the plugin's eight rows, in its order, with its
// warm-ups and iterations, then the cache miss and hit rows. Run adds
// uncached variants of the rows a cache answered.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "Single query embedding (short)", Kind: KindQuery, Query: ShortQuery, Warmup: 2, Iterations: 10, Unit: "queries"},
		{Name: "Single query embedding (long)", Kind: KindQuery, Query: LongQuery, Warmup: 2, Iterations: 10, Unit: "queries"},
		{Name: "10 queries embedding", Kind: KindQueries, Texts: repeat([]string{ShortQuery, LongQuery}, 5), Warmup: 1, Iterations: 5, Unit: "queries"},
		{Name: "3 documents embedding", Kind: KindDocuments, Texts: shortDocs, Warmup: 2, Iterations: 10, Unit: "docs"},
		{Name: "20 documents embedding", Kind: KindDocuments, Texts: mediumDocs, Warmup: 2, Iterations: 5, Unit: "docs"},
		{Name: "50 documents embedding", Kind: KindDocuments, Texts: longDocs, Warmup: 1, Iterations: 3, Unit: "docs"},
		// The plugin slices short_docs[:5], which holds three passages.
		{Name: "Rerank 5 passages", Kind: KindRerank, Query: ShortQuery, Texts: shortDocs, Warmup: 2, Iterations: 10, Unit: "passages"},
		{Name: "Rerank 20 passages", Kind: KindRerank, Query: LongQuery, Texts: mediumDocs, Warmup: 2, Iterations: 5, Unit: "passages"},
		{Name: "Query embedding, cache miss", Kind: KindQuery, Query: ShortQuery, Warmup: 2, Iterations: 20, Unit: "queries", Unique: true, Extra: true},
		{Name: "Query embedding, cache hit", Kind: KindQuery, Query: ShortQuery, Warmup: 2, Iterations: 20, Unit: "queries", Extra: true},
	}
}

// scaled multiplies warm-ups and iterations by f, rounding up, keeping at
// least one iteration, so tests can run the same rows quickly. A row that
// had a warm-up keeps one, which the cache hit row needs.
func (s Scenario) scaled(f float64) Scenario {
	if f <= 0 || f == 1 {
		return s
	}
	s.Warmup = int(math.Ceil(float64(s.Warmup) * f))
	s.Iterations = max(1, int(math.Ceil(float64(s.Iterations)*f)))
	return s
}

// uncached is s with every text made unique per call: what the row costs
// when no cache has seen its texts.
func (s Scenario) uncached() Scenario {
	s.VariantOf = s.Name
	s.Name += ", uncached"
	s.Unique = true
	s.Extra = true
	return s
}
