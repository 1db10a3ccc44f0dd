package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// requestError is a request refused before it reaches TEI. Each API face
// writes it in its own shape.
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

// readJSON reads a request body of at most limit bytes that must be JSON in
// valid UTF-8, as TEI requires.
func readJSON(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, plainError(http.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
	}
	if r.ContentLength > limit {
		return nil, plainError(http.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, plainError(http.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
		}
		return nil, plainError(http.StatusBadRequest, "Failed to buffer the request body: %v", err)
	}
	if !utf8.Valid(body) {
		return nil, plainError(http.StatusBadRequest, "Failed to parse the request body as JSON: invalid UTF-8")
	}
	return body, nil
}

// decodeBody unmarshals body into v, telling malformed JSON (400) from
// well-formed JSON of the wrong shape (422), as TEI does.
func decodeBody(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || !json.Valid(body) {
			return plainError(http.StatusBadRequest, "Failed to parse the request body as JSON: %v", err)
		}
		return plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %v", err)
	}
	return nil
}

var errEmptyInputs = &requestError{status: http.StatusBadRequest, typ: tei.TypeEmpty, msg: "Input validation error: `inputs` cannot be empty", param: "input"}

// parseInputs reads TEI's `inputs`: a string, a list of strings (a batch), a
// list of token ids (one input), or a list mixing strings and id lists.
func parseInputs(raw json.RawMessage, field string) ([]tei.Input, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `%s`", field)
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, plainError(http.StatusBadRequest, "Failed to parse the request body as JSON: %v", err)
		}
		if s == "" {
			return nil, errEmptyInputs
		}
		return []tei.Input{{Text: s}}, nil
	case '[':
	default:
		return nil, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %s: data did not match any variant of untagged enum Input", field)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %s: %v", field, err)
	}
	if len(elems) == 0 {
		return nil, errEmptyInputs
	}
	if first := bytes.TrimSpace(elems[0]); len(first) > 0 && first[0] != '"' && first[0] != '[' {
		// A flat list of numbers is one input of token ids.
		ids, err := parseIDs(raw, field)
		if err != nil {
			return nil, err
		}
		return []tei.Input{{IDs: ids}}, nil
	}
	inputs := make([]tei.Input, len(elems))
	for i, el := range elems {
		switch el = bytes.TrimSpace(el); {
		case len(el) > 0 && el[0] == '"':
			var s string
			if err := json.Unmarshal(el, &s); err != nil {
				return nil, plainError(http.StatusBadRequest, "Failed to parse the request body as JSON: %v", err)
			}
			if s == "" {
				return nil, errEmptyInputs
			}
			inputs[i].Text = s
		case len(el) > 0 && el[0] == '[':
			ids, err := parseIDs(el, field)
			if err != nil {
				return nil, err
			}
			if len(ids) == 0 {
				return nil, errEmptyInputs
			}
			inputs[i].IDs = ids
		default:
			return nil, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %s[%d]: data did not match any variant of untagged enum InputType", field, i)
		}
	}
	return inputs, nil
}

func parseIDs(raw json.RawMessage, field string) ([]uint32, error) {
	var nums []json.RawMessage
	if err := json.Unmarshal(raw, &nums); err != nil {
		return nil, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %s: %v", field, err)
	}
	ids := make([]uint32, len(nums))
	for i, n := range nums {
		v, err := strconv.ParseUint(string(bytes.TrimSpace(n)), 10, 32)
		if err != nil {
			return nil, plainError(http.StatusUnprocessableEntity,
				"Failed to deserialize the JSON body into the target type: %s: token id %s is not a u32", field, n)
		}
		ids[i] = uint32(v)
	}
	return ids, nil
}

// parseDirection accepts TEI's truncation directions; absent means Right.
func parseDirection(d *string) (string, error) {
	if d == nil {
		return "Right", nil
	}
	switch *d {
	case "Right", "right":
		return "Right", nil
	case "Left", "left":
		return "Left", nil
	}
	return "", plainError(http.StatusUnprocessableEntity,
		"Failed to deserialize the JSON body into the target type: truncation_direction: unknown variant `%s`, expected one of `Left`, `Right`, `left`, `right`", *d)
}

// writeList answers items as a JSON list, the way TEI writes its answers,
// straight from the cached bytes through a pooled 64 kB buffer: no copy of
// the whole answer is built, and a large answer still leaves in few writes.
func writeList(c echo.Context, items []*entry) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentLength, strconv.Itoa(listSize(items)))
	c.Response().WriteHeader(http.StatusOK)
	w := writerPool.Get().(*bufio.Writer)
	w.Reset(c.Response())
	defer func() {
		w.Reset(nil)
		writerPool.Put(w)
	}()
	_ = w.WriteByte('[')
	for i, e := range items {
		if i > 0 {
			_ = w.WriteByte(',')
		}
		_, _ = w.Write(e.json)
	}
	_ = w.WriteByte(']')
	// An error means the client went away; there is nobody to tell.
	_ = w.Flush()
	return nil
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// listSize is the length of appendList's output.
func listSize(items []*entry) int {
	n := 1 + len(items)
	for _, e := range items {
		n += len(e.json)
	}
	return n
}
