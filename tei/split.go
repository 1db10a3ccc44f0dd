package tei

import (
	"bytes"
	"errors"
	"fmt"
)

// SplitItems cuts the top-level elements out of a JSON list such as TEI's
// [[0.1,...],[0.2,...]] without parsing numbers, appending each element's
// bytes (sub-slices of body) to dst. It checks the list's structure (balanced
// brackets, strings, commas) but not the contents of numbers: TEI wrote them.
//
// Dense vectors hold no nested list or string, so each is found with one
// vectorised search for its closing bracket; anything else (sparse items,
// objects) goes through a byte scanner.
func SplitItems(body []byte, dst [][]byte) ([][]byte, error) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '[' {
		return nil, errNotArray
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		if skipSpace(body, i+1) != len(body) {
			return nil, errors.New("trailing data after list")
		}
		return dst, nil
	}
	for {
		if i >= len(body) {
			return nil, errors.New("unterminated list")
		}
		start := i
		end, err := elementEnd(body, i)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", len(dst), err)
		}
		dst = append(dst, body[start:end])
		i = skipSpace(body, end)
		if i >= len(body) {
			return nil, errors.New("unterminated list")
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case ']':
			if skipSpace(body, i+1) != len(body) {
				return nil, errors.New("trailing data after list")
			}
			return dst, nil
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", body[i], i)
		}
	}
}

// elementEnd returns the offset just past the JSON value starting at i.
func elementEnd(b []byte, i int) (int, error) {
	switch b[i] {
	case '[':
		// Fast path: a flat list of numbers.
		if j := bytes.IndexByte(b[i+1:], ']'); j >= 0 {
			span := b[i+1 : i+1+j]
			if bytes.IndexByte(span, '[') < 0 && bytes.IndexByte(span, '"') < 0 && bytes.IndexByte(span, '{') < 0 {
				return i + 2 + j, nil
			}
		}
		return scanNested(b, i)
	case '{':
		return scanNested(b, i)
	case '"':
		return scanString(b, i)
	}
	// A scalar: runs to the next delimiter.
	j := i
	for j < len(b) && b[j] != ',' && b[j] != ']' && b[j] != '}' && !isSpace(b[j]) {
		j++
	}
	if j == i {
		return 0, fmt.Errorf("unexpected %q at offset %d", b[i], i)
	}
	return j, nil
}

// scanNested finds the end of the list or object opening at i.
func scanNested(b []byte, i int) (int, error) {
	var stack []byte
	for j := i; j < len(b); j++ {
		switch c := b[j]; c {
		case '[', '{':
			stack = append(stack, c)
		case ']', '}':
			want := byte('[')
			if c == '}' {
				want = '{'
			}
			if len(stack) == 0 || stack[len(stack)-1] != want {
				return 0, fmt.Errorf("mismatched %q at offset %d", c, j)
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		case '"':
			end, err := scanString(b, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		}
	}
	return 0, errors.New("unterminated value")
}

// scanString returns the offset just past the string opening at i.
func scanString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("unterminated string")
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// ForEachNumber calls fn with the bytes of each number in a flat JSON list
// of numbers such as one dense item.
func ForEachNumber(item []byte, fn func(num []byte) error) error {
	i := skipSpace(item, 0)
	if i >= len(item) || item[i] != '[' {
		return errNotArray
	}
	i = skipSpace(item, i+1)
	if i < len(item) && item[i] == ']' {
		return nil
	}
	for i < len(item) {
		j := i
		for j < len(item) && item[j] != ',' && item[j] != ']' && !isSpace(item[j]) {
			j++
		}
		if j == i {
			return fmt.Errorf("empty number at offset %d", i)
		}
		if err := fn(item[i:j]); err != nil {
			return err
		}
		j = skipSpace(item, j)
		if j >= len(item) {
			break
		}
		if item[j] == ']' {
			return nil
		}
		i = skipSpace(item, j+1)
	}
	return errors.New("unterminated list")
}
