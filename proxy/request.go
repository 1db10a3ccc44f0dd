package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// Requests are decoded as strictly as TEI's serde does, so that the proxy
// never accepts (or caches, or forwards) what TEI would refuse: keys are
// case-sensitive, a key given twice is refused, invalid UTF-8 and lone
// surrogates are refused, and null is refused where TEI's field has a
// default rather than being optional. github.com/go-json-experiment/json
// (the prototype of encoding/json/v2) does the first three by default.

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
// well-formed JSON of the wrong shape (422), as TEI does. A duplicate key is
// serde's data error, so 422.
func decodeBody(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && !errors.Is(err, jsontext.ErrDuplicateName) {
		return plainError(http.StatusBadRequest, "Failed to parse the request body as JSON: %v", err)
	}
	return plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %v", err)
}

// optBool is a boolean field with a default, as serde's `bool` with
// #[serde(default)]: absent means the default, null is refused.
type optBool struct {
	set, v bool
}

// UnmarshalJSON refuses null, as serde does for a bool.
func (b *optBool) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return errors.New("invalid type: null, expected a boolean")
	}
	if err := json.Unmarshal(data, &b.v); err != nil {
		return err
	}
	b.set = true
	return nil
}

// or returns the value, or def when absent.
func (b optBool) or(def bool) bool {
	if b.set {
		return b.v
	}
	return def
}

// optString is a string field with a default (such as encoding_format):
// absent means the default, null is refused.
type optString struct {
	set bool
	v   string
}

// UnmarshalJSON refuses null.
func (s *optString) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return errors.New("invalid type: null, expected a string")
	}
	if err := json.Unmarshal(data, &s.v); err != nil {
		return err
	}
	s.set = true
	return nil
}

// ptr returns the value, or nil when absent.
func (s optString) ptr() *string {
	if s.set {
		return &s.v
	}
	return nil
}

// parseInputs reads TEI's `inputs`: a string, a list of strings (a batch), a
// list of token ids (one input), or a list mixing strings and id lists.
func parseInputs(raw jsontext.Value, field string) ([]tei.Input, error) {
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
	var elems []jsontext.Value
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %s: %v", field, err)
	}
	if len(elems) == 0 {
		return nil, errEmptyInputs
	}
	if first := bytes.TrimSpace(elems[0]); len(first) > 0 && first[0] != '"' && first[0] != '[' {
		// A flat list of numbers is one input of token ids.
		ids, err := parseIDs(elems, field)
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
			var nums []jsontext.Value
			if err := json.Unmarshal(el, &nums); err != nil {
				return nil, plainError(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: %s: %v", field, err)
			}
			ids, err := parseIDs(nums, field)
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

func parseIDs(nums []jsontext.Value, field string) ([]uint32, error) {
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

// appendInput appends in as TEI's request encodes it: a JSON string, or a
// list of ids. Strings are escaped minimally (no HTML escaping, unlike
// encoding/json), so the size of a body is the size of its parts.
func appendInput(b []byte, in tei.Input) []byte {
	if in.IDs != nil {
		b = append(b, '[')
		for i, id := range in.IDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(id), 10)
		}
		return append(b, ']')
	}
	return appendJSONString(b, in.Text)
}

// appendJSONString appends s, which is valid UTF-8, as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonUnmarshal decodes part of a request as strictly as decodeBody.
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

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

// listSize is the length of writeList's output.
func listSize(items []*entry) int {
	n := 1 + len(items)
	for _, e := range items {
		n += len(e.json)
	}
	return n
}
