package tei

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Error is an error answer from TEI: its HTTP status, TEI's error_type
// ("Validation", "Overloaded", ...) and message. It is parsed from TEI's
// native JSON shape, its OpenAI-route shape, its plain-text framework errors
// and from a 401 with an empty body.
type Error struct {
	// Status is the HTTP status code TEI answered with.
	Status int
	// Type is TEI's error_type. For plain-text and empty bodies it is derived
	// from the status (see typeForStatus).
	Type string
	// Message is TEI's error message, or the plain-text body.
	Message string
	// Body is the response body exactly as TEI sent it, so a proxy can pass a
	// caller error on unchanged.
	Body []byte
	// ContentType is the response's Content-Type header.
	ContentType string
	// RetryAfter is the server's Retry-After hint, zero when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("tei: %d %s", e.Status, e.Type)
	}
	return fmt.Sprintf("tei: %d %s: %s", e.Status, e.Type, e.Message)
}

// TEI's error_type values, as the server writes them.
const (
	TypeEmpty        = "Empty"
	TypeValidation   = "Validation"
	TypeTokenizer    = "Tokenizer"
	TypeBackend      = "Backend"
	TypeOverloaded   = "Overloaded"
	TypeUnhealthy    = "Unhealthy"
	TypeUnauthorized = "Unauthorized"
	// TypePayloadTooLarge, TypeUnsupportedMediaType and TypeBadRequest name
	// TEI's plain-text framework errors, which carry no error_type of their own.
	TypePayloadTooLarge      = "PayloadTooLarge"
	TypeUnsupportedMediaType = "UnsupportedMediaType"
	TypeBadRequest           = "BadRequest"
	TypeUnprocessable        = "Unprocessable"
	TypeServer               = "Server"
)

// typeForStatus names errors whose body carries no error_type.
func typeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return TypeBadRequest
	case http.StatusUnauthorized:
		return TypeUnauthorized
	case http.StatusRequestEntityTooLarge:
		return TypePayloadTooLarge
	case http.StatusUnsupportedMediaType:
		return TypeUnsupportedMediaType
	case http.StatusUnprocessableEntity:
		return TypeUnprocessable
	case http.StatusFailedDependency:
		return TypeBackend
	case http.StatusTooManyRequests:
		return TypeOverloaded
	case http.StatusServiceUnavailable:
		return TypeUnhealthy
	}
	return TypeServer
}

// TransportKind tells apart the ways a call can fail before TEI answers.
type TransportKind int

// Transport failure kinds.
const (
	// KindOther is any other transport failure (malformed response, ...).
	KindOther TransportKind = iota
	// KindDial means no connection could be made (refused, no route, DNS).
	KindDial
	// KindReset means the connection broke mid-call (reset, EOF, broken pipe).
	KindReset
	// KindTimeout means the call's deadline passed before TEI answered.
	KindTimeout
	// KindCanceled means the caller gave up; it says nothing about TEI.
	KindCanceled
)

func (k TransportKind) String() string {
	switch k {
	case KindDial:
		return "dial"
	case KindReset:
		return "reset"
	case KindTimeout:
		return "timeout"
	case KindCanceled:
		return "canceled"
	}
	return "other"
}

// TransportError is a call that got no HTTP answer from TEI.
type TransportError struct {
	Kind TransportKind
	Err  error
}

func (e *TransportError) Error() string { return "tei: " + e.Kind.String() + ": " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// classifyTransport wraps err from http.Client.Do (or from reading a body)
// into a TransportError of the right kind.
func classifyTransport(ctx context.Context, err error) error {
	kind := KindOther
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		kind = KindCanceled
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		kind = KindTimeout
	case isDial(err):
		kind = KindDial
	case isTimeout(err):
		kind = KindTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		kind = KindReset
	}
	return &TransportError{Kind: kind, Err: err}
}

func isDial(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// IsBackPressure reports whether TEI refused the call for lack of capacity
// (429). Such a call should be retried after a jittered back-off and does not
// count as a failure of TEI.
func IsBackPressure(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusTooManyRequests
}

// IsBackendFailure reports whether err shows TEI failing: 424, 503 or any
// other 5xx, a refused or reset connection, or a timeout. These count against
// a circuit breaker. A caller's cancellation is not one.
func IsBackendFailure(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusFailedDependency || e.Status >= 500
	}
	var t *TransportError
	if errors.As(err, &t) {
		return t.Kind != KindCanceled
	}
	return false
}

// IsCallerError reports whether TEI refused the request itself (400, 401,
// 413, 415, 422, or another 4xx except 424 and 429). Retrying cannot help.
func IsCallerError(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500 &&
		e.Status != http.StatusFailedDependency && e.Status != http.StatusTooManyRequests
}

// IsRetryable reports whether an idempotent call may be tried again: back
// pressure, 503, and failures to connect (the request never reached TEI).
func IsRetryable(err error) bool {
	if IsBackPressure(err) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable
	}
	var t *TransportError
	return errors.As(err, &t) && t.Kind == KindDial
}

// RetryAfter returns the Retry-After hint carried by err, or zero.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// parseRetryAfter reads a Retry-After header given in seconds or as a date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// parseError builds an Error from a non-2xx response. TEI answers in one of
// three shapes: native JSON {"error","error_type"}, the OpenAI route's flat
// {"message","code","type"}, or plain text from its HTTP framework.
func parseError(status int, header http.Header, body []byte, now time.Time) *Error {
	e := &Error{
		Status:      status,
		Body:        body,
		ContentType: header.Get("Content-Type"),
		RetryAfter:  parseRetryAfter(header.Get("Retry-After"), now),
	}
	var native struct {
		Error     *string `json:"error"`
		ErrorType string  `json:"error_type"`
		Message   *string `json:"message"`
		Type      string  `json:"type"`
	}
	if len(body) > 0 && body[0] == '{' && json.Unmarshal(body, &native) == nil {
		switch {
		case native.Error != nil:
			e.Message, e.Type = *native.Error, native.ErrorType
		case native.Message != nil:
			e.Message, e.Type = *native.Message, native.Type
		}
	}
	if e.Message == "" && e.Type == "" {
		e.Message = strings.TrimSpace(string(body))
	}
	if e.Type == "" {
		e.Type = typeForStatus(status)
	}
	return e
}
