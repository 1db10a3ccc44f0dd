package teisim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// errorType is TEI's error_type: capitalised, and it decides the status.
type errorType string

// TEI's error types.
const (
	errEmpty      errorType = "Empty"
	errValidation errorType = "Validation"
	errTokenizer  errorType = "Tokenizer"
	errBackend    errorType = "Backend"
	errOverloaded errorType = "Overloaded"
	errUnhealthy  errorType = "Unhealthy"
)

// status maps an error type to its HTTP status, as TEI 1.9.3 does
// (Validation is 422 since 1.9; it was 413 before).
func (t errorType) status() int {
	switch t {
	case errEmpty:
		return http.StatusBadRequest
	case errValidation, errTokenizer:
		return http.StatusUnprocessableEntity
	case errOverloaded:
		return http.StatusTooManyRequests
	case errUnhealthy:
		return http.StatusServiceUnavailable
	default:
		return http.StatusFailedDependency
	}
}

// apiError is an error TEI answers with its JSON error body. metric is the
// te_request_failure err label it counts under.
type apiError struct {
	status  int
	typ     errorType
	message string
	metric  string
}

func (e *apiError) Error() string { return e.message }

// newError makes an error of typ with TEI's status for it.
func newError(typ errorType, metric, format string, args ...any) *apiError {
	return &apiError{status: typ.status(), typ: typ, message: fmt.Sprintf(format, args...), metric: metric}
}

// The errors TEI's routes answer, with TEI 1.9.3's exact messages: those
// raised in the router's handlers are bare, those from its core carry the
// Display prefix of their TextEmbeddingsError ("Input validation error: ",
// "Backend error: ").
var (
	// errInputsEmpty is the tokenizer's refusal of an empty input ("" or []).
	errInputsEmpty = newError(errEmpty, "validation", "Input validation error: `inputs` cannot be empty")
	// errBatchEmpty is a handler's refusal of an empty batch; on the
	// routes that take TEI's Input only /tokenize can reach it, since [] is
	// one empty input there.
	errBatchEmpty         = newError(errEmpty, "validation", "`inputs` cannot be empty")
	errIDsEmpty           = newError(errEmpty, "tokenization", "Input validation error: `input_ids` cannot be empty")
	errTextsEmpty         = newError(errEmpty, "validation", "`texts` cannot be empty")
	errOverloadedErr      = newError(errOverloaded, "overloaded", "Model is overloaded")
	errNotEmbedding       = newError(errBackend, "model_type", "Backend error: Model is not an embedding model")
	errNotReranker        = newError(errBackend, "model_type", "Backend error: model is not a re-ranker model")
	errNotSplade          = newError(errBackend, "model_type", "Backend error: Model is not an embedding model with SPLADE pooling")
	errNotClassifier      = newError(errBackend, "model_type", "Backend error: Model is not a classifier model")
	errSpladeNorm         = newError(errBackend, "model_type", "Backend error: `normalize` is not available for SPLADE models")
	errEmbedAllSplade     = newError(errBackend, "model_type", "Backend error: `embed_all` is not available for SPLADE models")
	errDimensionsZero     = newError(errValidation, "validation", "Input validation error: `dimensions` should be positive")
	errDimensionsTooLarge = newError(errValidation, "validation", "Input validation error: `dimensions` should be smaller than the maximum embedding dimension.")
	errPromptWithPair     = newError(errValidation, "tokenization", "Input validation error: `prompt_name` cannot be set with dual inputs")
	// errScoreNaN is counted nowhere in TEI.
	errScoreNaN = newError(errBackend, "", "score is NaN")
	errStopped  = newError(errBackend, "inference", "Backend error: the simulator is shutting down")
)

func errBatchSize(n, limit int) *apiError {
	return newError(errValidation, "batch_size", "batch size %d > maximum allowed batch size %d", n, limit)
}

// nativeError is the body of TEI's native routes.
type nativeError struct {
	Error     string    `json:"error"`
	ErrorType errorType `json:"error_type"`
}

// openAIError is the flat body of /v1/embeddings errors. TEI's OpenAPI spec
// names the last field error_type; the server writes "type".
type openAIError struct {
	Message string    `json:"message"`
	Code    int       `json:"code"`
	Type    errorType `json:"type"`
}

// jsonAppender is a body that writes its own JSON.
type jsonAppender interface{ appendJSON(b []byte) []byte }

func writeJSON(w http.ResponseWriter, status int, body any) {
	var b []byte
	if a, ok := body.(jsonAppender); ok {
		b = a.appendJSON(nil)
	} else {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		// serde writes <, > and & as they are; so must the simulator.
		enc.SetEscapeHTML(false)
		if err := enc.Encode(body); err != nil {
			writePlain(w, http.StatusInternalServerError, err.Error())
			return
		}
		// TEI (axum's Json) ends its bodies without a newline; Encode adds one.
		b = bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
	}
	w.Header().Set("Content-Type", "application/json")
	// A whole body, so hyper under axum sends its length, never chunks.
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	// The client may be gone; there is nobody to tell.
	_, _ = w.Write(b)
}

func writeNativeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, nativeError{Error: e.message, ErrorType: e.typ})
}

func writeOpenAIError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, openAIError{Message: e.message, Code: e.status, Type: e.typ})
}

// writePlain answers as TEI's HTTP framework (axum) does for bodies it cannot
// take: plain text, not JSON.
func writePlain(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(message))
}
