package proxy

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// This file is the one place where errors become statuses: the request
// error, every sentinel, classify, and each API face's mapping.

// requestError is a request refused before it reaches TEI, or answered by
// the proxy in TEI's place. Each API face writes it in its own shape.
type requestError struct {
	status int
	typ    string // TEI's error_type, or "" for TEI's plain-text errors
	msg    string
	param  string // the offending field, for faces that name it
}

func (e *requestError) Error() string { return e.msg }

// plainError is a refusal that TEI's HTTP framework would write as plain
// text: malformed JSON, wrong shape, wrong content type, body too large.
func plainError(status int, format string, args ...any) *requestError {
	return &requestError{status: status, msg: fmt.Sprintf(format, args...)}
}

// unavailableError means no replica of a pool can take the work now (all
// down, starting, or with their breaker open). It is a 503 with
// Retry-After: a client may try again. Reason is safe to show a client:
// no URLs, no dial errors.
type unavailableError struct {
	reason     string
	retryAfter time.Duration
}

func (e *unavailableError) Error() string { return e.reason }

// overloadError means the sidecar held the work back and could not start
// it in time (its queue is full, or the request's deadline passed while
// it waited): a 429 with Retry-After from the measured drain rate.
type overloadError struct {
	msg        string
	retryAfter time.Duration
}

func (e *overloadError) Error() string { return e.msg }

// Sentinels.
var (
	errUnauthorized = &requestError{status: http.StatusUnauthorized, typ: tei.TypeUnauthorized, msg: "missing or invalid bearer token"}
	errEmptyInputs  = &requestError{status: http.StatusBadRequest, typ: tei.TypeEmpty, msg: "Input validation error: `inputs` cannot be empty", param: "input"}
	errEmptyTexts   = &requestError{status: http.StatusBadRequest, typ: tei.TypeEmpty, msg: "`texts` cannot be empty", param: "documents"}
	// errEmptyBatch is TEI's handlers' refusal of an empty batch, bare of
	// the "Input validation error: " its core adds to errEmptyInputs.
	errEmptyBatch = &requestError{status: http.StatusBadRequest, typ: tei.TypeEmpty, msg: "`inputs` cannot be empty", param: "input"}
	// errNonFinite is answered for an input whose embedding TEI computed
	// with NaN or infinite values (written as null): never cached, never
	// converted.
	errNonFinite = &requestError{status: http.StatusFailedDependency, typ: tei.TypeBackend,
		msg: "Backend error: the model produced a non-finite embedding (NaN) for this input"}
	// errTEIAuth is TEI refusing the sidecar's own API key: the sidecar is
	// misconfigured, not the caller.
	errTEIAuth = &unavailableError{reason: "the sidecar cannot call TEI: TEI refused its API key (TEI_API_KEY); see the sidecar's log", retryAfter: 30 * time.Second}
	// errClosed is answered for work still queued when the server stops.
	errClosed = &unavailableError{reason: "the sidecar is shutting down", retryAfter: time.Second}
)

// wrongModel is TEI's answer to a route its model does not serve, which
// the proxy gives itself rather than send the call to TEI: /rerank on an
// embedding model, /embed on a reranker, /embed_sparse on a dense model.
func wrongModel(msg string) *requestError {
	return &requestError{status: http.StatusFailedDependency, typ: tei.TypeBackend, msg: msg}
}

// outcome is an error resolved for the faces.
type outcome struct {
	status     int
	typ        string // TEI's error_type ("" for plain-text framework errors)
	msg        string
	param      string
	retryAfter int // seconds; 0: none
	tei        *tei.Error
}

// classify resolves err into a status, TEI error_type, message and
// Retry-After. Every face builds on it. Messages never carry internal
// addresses or dial errors; those are logged.
func (s *Server) classify(err error) outcome {
	var re *requestError
	var te *tei.Error
	var ue *unavailableError
	var oe *overloadError
	var tr *tei.TransportError
	switch {
	case errors.As(err, &re):
		return outcome{status: re.status, typ: re.typ, msg: re.msg, param: re.param}
	case errors.As(err, &ue):
		return outcome{status: http.StatusServiceUnavailable, typ: tei.TypeUnhealthy, msg: ue.reason, retryAfter: seconds(ue.retryAfter)}
	case errors.As(err, &oe):
		return outcome{status: http.StatusTooManyRequests, typ: tei.TypeOverloaded, msg: oe.msg, retryAfter: seconds(oe.retryAfter)}
	case errors.Is(err, context.Canceled):
		return outcome{status: statusClientClosed, typ: tei.TypeBackend, msg: "request canceled by the client"}
	case errors.As(err, &te):
		if te.Status == http.StatusUnauthorized {
			return s.classify(errTEIAuth)
		}
		o := outcome{status: te.Status, typ: te.Type, msg: te.Message, tei: te}
		if te.Status == http.StatusTooManyRequests || te.Status == http.StatusServiceUnavailable {
			o.retryAfter = max(seconds(te.RetryAfter), 1)
		}
		if te.Status >= 500 && te.Status != http.StatusServiceUnavailable {
			o.status, o.msg = http.StatusBadGateway, "TEI failed (status "+strconv.Itoa(te.Status)+")"
		}
		return o
	case errors.As(err, &tr):
		switch tr.Kind {
		case tei.KindTimeout:
			return outcome{status: http.StatusGatewayTimeout, typ: tei.TypeBackend, msg: "TEI did not answer within the request deadline"}
		case tei.KindCanceled:
			return outcome{status: statusClientClosed, typ: tei.TypeBackend, msg: "request canceled by the client"}
		case tei.KindDial, tei.KindReset:
			return outcome{status: http.StatusServiceUnavailable, typ: tei.TypeUnhealthy, msg: "TEI is unreachable; retry later", retryAfter: 1}
		}
		return outcome{status: http.StatusBadGateway, typ: tei.TypeBackend, msg: "TEI sent an answer the sidecar could not read"}
	case errors.Is(err, context.DeadlineExceeded):
		return outcome{status: http.StatusGatewayTimeout, typ: tei.TypeBackend, msg: "TEI did not answer within the request deadline"}
	}
	s.log.Error("unexpected error", "err", err)
	return outcome{status: http.StatusInternalServerError, typ: tei.TypeBackend, msg: "internal error"}
}

// statusClientClosed is written when the client went away before its
// answer was ready (nginx's 499), so that logs and metrics see it.
const statusClientClosed = 499

func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

func setRetryAfter(c echo.Context, secs int) {
	if secs > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	}
}

// teiErrorBody is TEI's native error shape.
type teiErrorBody struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
}

// teiError writes err in TEI's shapes: TEI's own answer unchanged, plain
// text for framework errors, an empty 401 for a missing token.
func (s *Server) teiError(c echo.Context, err error) error {
	o := s.classify(err)
	setRetryAfter(c, o.retryAfter)
	switch {
	case o.tei != nil && o.status == o.tei.Status:
		if o.tei.ContentType == "" {
			return c.NoContent(o.status)
		}
		return c.Blob(o.status, o.tei.ContentType, o.tei.Body)
	case errors.Is(err, errUnauthorized):
		return c.NoContent(http.StatusUnauthorized) // as TEI answers
	case o.typ == "":
		return c.String(o.status, o.msg)
	}
	return writeJSON(c, o.status, teiErrorBody{Error: o.msg, ErrorType: o.typ})
}

// openAIErrorBody is OpenAI's nested error shape.
type openAIErrorBody struct {
	Error openAIError `json:"error"`
}

type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// openAIError writes err in OpenAI's shape, with statuses the OpenAI SDKs
// treat right: 429 and 5xx are retried; 400, 401 and 404 are not.
func (s *Server) openAIError(c echo.Context, err error) error {
	o := s.classify(err)
	var param, code *string
	if o.param != "" {
		param = &o.param
	}
	errType := "invalid_request_error"
	setCode := func(v string) { code = &v }
	status := o.status
	switch {
	case status == http.StatusUnauthorized:
		setCode("invalid_api_key")
	case status == http.StatusNotFound:
		setCode("model_not_found")
	case status == http.StatusTooManyRequests:
		errType = "rate_limit_error"
		setCode("rate_limit_exceeded")
	case status == statusClientClosed:
		errType = "client_closed_request"
	case status == http.StatusFailedDependency || status >= 500:
		// A failing backend must look like a server error so the SDKs retry.
		errType = "server_error"
		if status < 500 {
			status = http.StatusBadGateway
		}
		setCode(o.typ)
	default:
		// TEI's 413, 415 and 422 are the caller's: OpenAI says 400.
		status = http.StatusBadRequest
		if o.typ != "" && o.typ != "invalid_request_error" {
			setCode(o.typ)
		}
	}
	setRetryAfter(c, o.retryAfter)
	return writeJSON(c, status, openAIErrorBody{Error: openAIError{Message: o.msg, Type: errType, Param: param, Code: code}})
}

// cohereError writes err as Cohere does: {"message": ...}.
func (s *Server) cohereError(c echo.Context, err error) error {
	o := s.classify(err)
	status := o.status
	switch {
	case o.typ == "" && status < 500:
		// A malformed body is the caller's error: 400, not TEI's 413/415/422.
		status = http.StatusBadRequest
	case status == http.StatusFailedDependency:
		status = http.StatusBadGateway
	case status == http.StatusUnprocessableEntity || status == http.StatusRequestEntityTooLarge || status == http.StatusUnsupportedMediaType:
		status = http.StatusBadRequest
	}
	setRetryAfter(c, o.retryAfter)
	return writeJSON(c, status, map[string]string{"message": o.msg})
}

// pluginError writes err as FastAPI does, {"detail": ...}, which the
// plugin's HTTP clients already understand.
func (s *Server) pluginError(c echo.Context, err error) error {
	o := s.classify(err)
	status := o.status
	if o.typ == "" && status == http.StatusBadRequest {
		status = http.StatusUnprocessableEntity // FastAPI's status for a malformed body
	}
	setRetryAfter(c, o.retryAfter)
	return writeJSON(c, status, map[string]string{"detail": o.msg})
}

// writeJSON writes v as serde_json would: <, > and & as they are (not
// HTML-escaped, as encoding/json writes them), and without the newline
// echo's encoder adds: TEI's bodies end with the closing brace, and so do
// ours.
func writeJSON(c echo.Context, status int, v any) error {
	var buf bytes.Buffer
	enc := stdjson.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return c.Blob(status, echo.MIMEApplicationJSON, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
}

// handleEchoError answers errors raised by echo itself (unknown route,
// wrong method) in the shape of the face the path belongs to: OpenAI's
// under /v1/ (but Cohere's for its v1 routes), Cohere's under /v2/,
// FastAPI's under /plugin/, TEI's elsewhere.
func (s *Server) handleEchoError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if !errors.As(err, &he) {
		s.log.Error("unhandled error", "err", err)
		_ = writeJSON(c, http.StatusInternalServerError, teiErrorBody{Error: "internal error", ErrorType: tei.TypeBackend})
		return
	}
	r := c.Request()
	path := r.URL.Path
	msg := fmt.Sprint(he.Message)
	switch {
	case path == "/v1/rerank" || path == "/v1/embed" || strings.HasPrefix(path, "/v2/"):
		_ = writeJSON(c, he.Code, map[string]string{"message": fmt.Sprintf("%s: %s %s", msg, r.Method, path)})
	case strings.HasPrefix(path, "/v1/"):
		// OpenAI's own answer to an unknown URL.
		_ = writeJSON(c, he.Code, openAIErrorBody{Error: openAIError{Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, path), Type: "invalid_request_error"}})
	case strings.HasPrefix(path, "/plugin/"):
		_ = writeJSON(c, he.Code, map[string]string{"detail": msg})
	default:
		_ = writeJSON(c, he.Code, teiErrorBody{Error: msg, ErrorType: tei.TypeValidation})
	}
}
