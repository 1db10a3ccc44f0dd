package teisim

import (
	"cmp"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a simulated TEI: its HTTP API over a simulated backend. Create it
// with New, serve Handler, and Close it to stop the backend workers.
type Server struct {
	cfg     Config
	model   model
	tok     *tokenizer
	permits *permits
	backend *backend
	metrics *metrics
	handler http.Handler
	info    info

	fault      atomic.Pointer[Fault]
	embedCount atomic.Int64

	stop      chan struct{} // closed by Close; ends stalls
	closeOnce sync.Once
}

// Fault holds the failure knobs a test can change while the server runs.
type Fault struct {
	// ErrorRate is the fraction, in [0, 1], of inference requests (those that
	// pass validation and admission) answered with ErrorStatus; with
	// ErrorPerBatch, the fraction of backend batches that fail.
	ErrorRate float64
	// ErrorStatus is the status of injected failures; 0 means 424. The body is
	// TEI's for that status: 429 Overloaded, 503 Unhealthy, 400 Empty,
	// 413/422 Validation, anything else Backend. A real backend failure is
	// always 424.
	ErrorStatus int
	// ErrorPerBatch rolls ErrorRate once per backend batch, after the batch
	// has run, instead of once per request before it: every request with an
	// input in a failed batch gets the error, as in TEI, where one failed
	// forward pass fails its whole batch. The failure also makes /health run
	// a probe forward pass, which fails at the same rate (503) until one
	// passes.
	ErrorPerBatch bool
	// ErrorMarker, when not empty, fails every backend batch holding an input
	// whose text (prompt included) contains it, with ErrorStatus: the
	// deterministic way to make one bad input fail its batch neighbours.
	ErrorMarker string
	// NaNMarker, when not empty, makes the model output NaN for every input
	// whose text (prompt included) contains it, as a numerically unstable
	// model does: /embed answers its vector as nulls (TEI serialises NaN as
	// null), /v1/embeddings base64 as NaN bits, /rerank and /predict TEI's
	// 424 "score is NaN".
	NaNMarker string
	// Stall delays every inference answer (holding its permits) and every
	// /health answer, until it passes or the client goes away: a hung
	// backend hangs both.
	Stall time.Duration
	// Unhealthy makes /health answer 503. Inference keeps working; combine
	// with ErrorRate 1 to simulate a dead backend.
	Unhealthy bool
}

// New builds a server from cfg, which must pass Validate, and starts its
// backend workers.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newModel(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		model:   m,
		tok:     newTokenizer(m.vocab),
		permits: &permits{free: cfg.MaxConcurrentRequests},
		metrics: newMetrics(m.maxInputLength, cfg.MaxBatchTokens),
		stop:    make(chan struct{}),
	}
	s.info = s.newInfo()
	s.fault.Store(&Fault{
		ErrorRate:     cfg.Sim.ErrorRate,
		ErrorStatus:   cfg.Sim.ErrorStatus,
		ErrorPerBatch: cfg.Sim.ErrorPerBatch,
		ErrorMarker:   cfg.Sim.ErrorMarker,
		NaNMarker:     cfg.Sim.NaNMarker,
		Stall:         cfg.Sim.Stall,
		Unhealthy:     cfg.Sim.Unhealthy,
	})
	s.backend = newBackend(cfg, s.metrics, s.currentFault)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Config returns the configuration the server runs with.
func (s *Server) Config() Config { return s.cfg }

// Close stops the backend workers and ends stalled requests. Requests still
// waiting for the backend are answered 424. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.backend.close()
	})
}

// SetFault replaces the fault knobs; safe while requests run.
func (s *Server) SetFault(f Fault) {
	s.fault.Store(&f)
}

// HoldBatches stops the backend from starting batches (and health checks)
// until release is called; batches already running finish. Inputs sent
// meanwhile queue up, so a test can make chosen requests share a batch
// without relying on timing. release is safe to call more than once.
func (s *Server) HoldBatches() (release func()) { return s.backend.hold() }

// Backlog returns the number of inputs waiting in the backend's queue and of
// /health checks waiting for a backend worker.
func (s *Server) Backlog() (inputs, healthChecks int) { return s.backend.backlog() }

// currentFault returns the fault knobs in force.
func (s *Server) currentFault() Fault { return *s.fault.Load() }

// EmbedCount returns te_embed_count: the number of inputs sent to embedding
// (one per input, whatever the route), including ones that then failed
// tokenization.
func (s *Server) EmbedCount() int64 { return s.embedCount.Load() }

// Embedding returns the vector the server answers for text on /embed with
// default settings (the server's auto-truncate, right truncation, the default
// prompt) and the given normalize; for a SPLADE model, its dense form; NaN
// values where Fault.NaNMarker makes the model output NaN. It returns nil
// where /embed would answer an error (an empty text, a text too long with
// auto-truncate off, a model that does not embed).
func (s *Server) Embedding(text string, normalize bool) []float32 {
	if !s.model.isEmbedding() {
		return nil
	}
	enc, err := s.encode(input{text: text}, encodeOptions{truncate: s.cfg.AutoTruncate})
	if err != nil {
		return nil
	}
	if m := s.currentFault().NaNMarker; m != "" && strings.Contains(enc.source, m) {
		enc.nan = true
	}
	return s.vector(enc, normalize, nil)
}

// Simulator is the value of /info's "simulator" field, which real TEI never
// sends: a tool that reads it knows it talks to teisim.
const Simulator = "teisim"

// info is /info's body: TEI's fields in TEI's order, then "simulator".
type info struct {
	ModelID               string         `json:"model_id"`
	ModelSHA              *string        `json:"model_sha"`
	ModelDType            string         `json:"model_dtype"`
	ServedModelName       string         `json:"served_model_name"`
	ModelType             map[string]any `json:"model_type"`
	MaxConcurrentRequests int            `json:"max_concurrent_requests"`
	MaxInputLength        int            `json:"max_input_length"`
	MaxBatchTokens        int            `json:"max_batch_tokens"`
	MaxBatchRequests      *int           `json:"max_batch_requests"`
	MaxClientBatchSize    int            `json:"max_client_batch_size"`
	AutoTruncate          bool           `json:"auto_truncate"`
	TokenizationWorkers   int            `json:"tokenization_workers"`
	Version               string         `json:"version"`
	SHA                   *string        `json:"sha"`
	DockerLabel           *string        `json:"docker_label"`
	Simulator             string         `json:"simulator"`
}

func (s *Server) newInfo() info {
	c := s.cfg
	in := info{
		ModelID:               c.ModelID,
		ModelDType:            c.DType,
		ModelType:             s.model.modelType(),
		MaxConcurrentRequests: c.MaxConcurrentRequests,
		MaxInputLength:        s.model.maxInputLength,
		MaxBatchTokens:        c.MaxBatchTokens,
		MaxClientBatchSize:    c.MaxClientBatchSize,
		AutoTruncate:          c.AutoTruncate,
		TokenizationWorkers:   cmp.Or(c.TokenizationWorkers, max(runtime.NumCPU()-1, 1)),
		ServedModelName:       cmp.Or(c.ServedModelName, c.ModelID),
		Version:               Version,
		Simulator:             Simulator,
	}
	if c.Revision != "" {
		in.ModelSHA = &c.Revision
	}
	if n := c.batchRequests(); n > 0 {
		in.MaxBatchRequests = &n
	}
	label := DockerLabel
	in.DockerLabel = &label
	return in
}

// routes builds the router as TEI's: inference routes behind the API key,
// health and metrics public, POST / by model type.
func (s *Server) routes() http.Handler {
	private := http.NewServeMux()
	private.HandleFunc("GET /info", s.handleInfo)
	private.HandleFunc("POST /embed", s.handleEmbed)
	private.HandleFunc("POST /embed_all", s.handleEmbedAll)
	private.HandleFunc("POST /embed_sparse", s.handleEmbedSparse)
	private.HandleFunc("POST /predict", s.handlePredict)
	private.HandleFunc("POST /rerank", s.handleRerank)
	private.HandleFunc("POST /similarity", s.handleSimilarity)
	private.HandleFunc("POST /tokenize", s.handleTokenize)
	private.HandleFunc("POST /decode", s.handleDecode)
	private.HandleFunc("POST /embeddings", s.handleOpenAI)
	private.HandleFunc("POST /v1/embeddings", s.handleOpenAI)
	var root http.HandlerFunc
	switch s.model.kind {
	case kindClassifier:
		root = s.handlePredict
	case kindReranker:
		root = s.handleRerank
	case kindSplade:
		root = s.handleEmbedSparse
	default:
		root = s.handleEmbed
	}
	private.HandleFunc("POST /{$}", root)
	private.HandleFunc("POST /invocations", root)

	mux := http.NewServeMux()
	for _, p := range []string{"GET /health", "GET /{$}", "GET /ping"} {
		mux.HandleFunc(p, s.handleHealth)
	}
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.Handle("/", s.requireKey(private))
	return s.cors(mux)
}

// requireKey answers 401 with an empty body unless the request carries
// "Authorization: Bearer <api-key>", when an API key is set.
func (s *Server) requireKey(next http.Handler) http.Handler {
	if s.cfg.APIKey == "" {
		return next
	}
	want := "Bearer " + s.cfg.APIKey
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cors adds TEI's CORS headers: GET and POST, the Content-Type header, and
// the configured origins (any when none or "*" is configured).
func (s *Server) cors(next http.Handler) http.Handler {
	anyOrigin := len(s.cfg.CORSAllowOrigin) == 0 || slices.Contains(s.cfg.CORSAllowOrigin, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" {
			switch {
			case anyOrigin:
				w.Header().Set("Access-Control-Allow-Origin", "*")
			case slices.Contains(s.cfg.CORSAllowOrigin, origin):
				w.Header().Set("Access-Control-Allow-Origin", origin)
				w.Header().Add("Vary", "Origin")
			}
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.Header().Set("Access-Control-Allow-Methods", "GET,POST")
			w.Header().Set("Access-Control-Allow-Headers", "content-type")
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.info)
}

// handleHealth answers 200 with an empty body, or TEI's 503. As in TEI,
// where the check is a command to the one backend thread, it waits for a
// free backend worker: behind the batch in progress on a busy server, so a
// slow /health is not a dead one. A stall delays it too, and the fault knobs
// (Unhealthy, or a failed probe after a failed batch) make it 503.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	healthy, err := s.backend.health(r.Context())
	if err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	f := s.currentFault()
	if err := s.sleep(r, f.Stall); err != nil {
		s.answerError(w, err, nativeFace)
		return
	}
	if !healthy || f.Unhealthy {
		writeNativeError(w, newError(errUnhealthy, "unhealthy", "unhealthy"))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// sleep waits d unless the request ends (its context's error) or the server
// closes (errStopped) first.
func (s *Server) sleep(r *http.Request, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	case <-s.stop:
		return errStopped
	}
}
