package teisim

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// TEI's router decodes request bodies with axum 0.7's Json extractor:
// serde_json 1.0 reading the bytes, serde's derived Deserialize impls
// building the request structs, and serde_path_to_error naming the field at
// fault. Go's encoding/json is more lenient in ways a client can rely on by
// accident: it matches keys case-insensitively, keeps the last of duplicate
// keys, takes null for any field, and replaces invalid UTF-8 and lone
// surrogates with U+FFFD. This file is a small port of the parts of those
// crates that TEI's request types use, following their control flow so that
// the same body gets the same verdict, status and message from the
// simulator as from TEI:
//
//   - serde_json's streaming reader (whitespace, literals, numbers, strings
//     with UTF-8 and surrogate validation, the 128-level recursion limit,
//     skipping of ignored values, error positions as "line L column C");
//   - serde derive's struct visitors (exact key match, unknown keys ignored,
//     "duplicate field", "missing field" in declaration order, defaults, the
//     sequence form of a struct), unit enums with aliases, and untagged enums
//     (buffered content tried variant by variant);
//   - serde_path_to_error's path prefix ("inputs[1]: ...").
//
// Like axum 0.7.9, nothing checks for trailing characters after the body's
// value: serde_json's Deserializer::end is never called.

// serdeError is a decoding failure as serde_path_to_error reports it.
type serdeError struct {
	msg string
	// syntax marks serde_json's Syntax and Eof categories, which axum answers
	// 400; everything else (Data) is 422.
	syntax       bool
	line, column int // 0 until positioned, as serde_json's custom errors
	path         path
	pathSet      bool
}

// Error formats the error as axum's rejection body shows it after its
// prefix: path, message, position.
func (e *serdeError) Error() string {
	var b strings.Builder
	if !e.path.onlyUnknown() {
		b.WriteString(e.path.String())
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	if e.line != 0 {
		fmt.Fprintf(&b, " at line %d column %d", e.line, e.column)
	}
	return b.String()
}

// at records where the error happened, unless a deeper level already did:
// serde_path_to_error keeps the innermost path.
func (e *serdeError) at(p path) *serdeError {
	if e != nil && !e.pathSet {
		e.path, e.pathSet = p, true
	}
	return e
}

// custom is a serde data error (de::Error::custom): no position yet.
func custom(format string, args ...any) *serdeError {
	return &serdeError{msg: fmt.Sprintf(format, args...)}
}

// serde_json's syntax error messages (ErrorCode's Display).
const (
	eofList                  = "EOF while parsing a list"
	eofObject                = "EOF while parsing an object"
	eofString                = "EOF while parsing a string"
	eofValue                 = "EOF while parsing a value"
	expectedColon            = "expected `:`"
	expectedListCommaOrEnd   = "expected `,` or `]`"
	expectedObjectCommaOrEnd = "expected `,` or `}`"
	expectedSomeIdent        = "expected ident"
	expectedSomeValue        = "expected value"
	invalidEscape            = "invalid escape"
	invalidNumber            = "invalid number"
	numberOutOfRange         = "number out of range"
	invalidUnicodeCodePoint  = "invalid unicode code point"
	controlCharacter         = "control character (\\u0000-\\u001F) found while parsing a string"
	keyMustBeAString         = "key must be a string"
	loneLeadingSurrogate     = "lone leading surrogate in hex escape"
	trailingComma            = "trailing comma"
	trailingCharacters       = "trailing characters"
	unexpectedEndOfHexEscape = "unexpected end of hex escape"
	recursionLimitExceeded   = "recursion limit exceeded"
)

// segment is one step of a path: a map key, a sequence index, or "?" for a
// key that could not be read.
type segment struct {
	kind  byte // 'm', 's' or '?'
	key   string
	index int
}

// path is where in the body a value sits; a child gets a fresh slice, so
// paths can be shared.
type path []segment

func (p path) child(s segment) path {
	c := make(path, len(p), len(p)+1)
	copy(c, p)
	return append(c, s)
}

func (p path) key(k string) path { return p.child(segment{kind: 'm', key: k}) }
func (p path) index(i int) path  { return p.child(segment{kind: 's', index: i}) }
func (p path) unknown() path     { return p.child(segment{kind: '?'}) }

// String writes the path as serde_path_to_error does: keys joined by dots,
// indexes in brackets, "." for the root.
func (p path) String() string {
	if len(p) == 0 {
		return "."
	}
	var b strings.Builder
	sep := ""
	for _, s := range p {
		if s.kind != 's' {
			b.WriteString(sep)
		}
		switch s.kind {
		case 's':
			fmt.Fprintf(&b, "[%d]", s.index)
		case '?':
			b.WriteByte('?')
		default:
			b.WriteString(s.key)
		}
		sep = "."
	}
	return b.String()
}

// onlyUnknown reports whether the path says nothing (the root, or only
// unreadable keys); the message then carries no prefix.
func (p path) onlyUnknown() bool {
	for _, s := range p {
		if s.kind != '?' {
			return false
		}
	}
	return true
}

// deserializer is serde_json's Deserializer over a byte slice.
type deserializer struct {
	data           []byte
	index          int
	remainingDepth int
}

func newDeserializer(data []byte) *deserializer {
	return &deserializer{data: data, remainingDepth: 128}
}

func (d *deserializer) peek() (byte, bool) {
	if d.index < len(d.data) {
		return d.data[d.index], true
	}
	return 0, false
}

// peekOrNull is serde_json's peek_or_null: 0 at the end.
func (d *deserializer) peekOrNull() byte {
	c, _ := d.peek()
	return c
}

func (d *deserializer) eat() { d.index++ }

func (d *deserializer) next() (byte, bool) {
	c, ok := d.peek()
	if ok {
		d.index++
	}
	return c, ok
}

// position is serde_json's position_of_index: 1-based line, column counted
// in bytes from the line's start.
func (d *deserializer) position(i int) (line, column int) {
	start := bytes.LastIndexByte(d.data[:i], '\n') + 1
	return 1 + bytes.Count(d.data[:start], []byte{'\n'}), i - start
}

// err is serde_json's error(): a syntax error at the current index.
func (d *deserializer) err(msg string) *serdeError {
	line, col := d.position(d.index)
	return &serdeError{msg: msg, syntax: true, line: line, column: col}
}

// peekErr is serde_json's peek_error(): a syntax error one byte on.
func (d *deserializer) peekErr(msg string) *serdeError {
	line, col := d.position(min(len(d.data), d.index+1))
	return &serdeError{msg: msg, syntax: true, line: line, column: col}
}

// fixPosition gives a custom error the current position, as serde_json does
// when a visitor's error passes through it.
func (d *deserializer) fixPosition(e *serdeError) *serdeError {
	if e != nil && e.line == 0 {
		e.line, e.column = d.position(d.index)
	}
	return e
}

// whitespace skips JSON whitespace and peeks at the next byte.
func (d *deserializer) whitespace() (byte, bool) {
	for d.index < len(d.data) {
		switch c := d.data[d.index]; c {
		case ' ', '\n', '\t', '\r':
			d.index++
		default:
			return c, true
		}
	}
	return 0, false
}

// enter is serde_json's check_recursion on entering an array or object.
func (d *deserializer) enter() *serdeError {
	d.remainingDepth--
	if d.remainingDepth == 0 {
		return d.peekErr(recursionLimitExceeded)
	}
	return nil
}

func (d *deserializer) leave() { d.remainingDepth++ }

func (d *deserializer) parseIdent(rest string) *serdeError {
	for i := range len(rest) {
		c, ok := d.next()
		if !ok {
			return d.err(eofValue)
		}
		if c != rest[i] {
			return d.err(expectedSomeIdent)
		}
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number is serde_json's ParserNumber.
type number struct {
	kind byte // 'u' (non-negative integer), 'i' (negative integer) or 'f'
	u    uint64
	i    int64
	f    float64
}

// unexpected is the number as serde's Unexpected writes it.
func (n number) unexpected() string {
	switch n.kind {
	case 'u':
		return fmt.Sprintf("integer `%d`", n.u)
	case 'i':
		return fmt.Sprintf("integer `%d`", n.i)
	default:
		return "floating point `" + floatDisplay(n.f) + "`"
	}
}

// floatDisplay is Rust's Display of an f64 with serde's WithDecimalPoint:
// never an exponent, ".0" added to integers.
func floatDisplay(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// parseNumber reads a number whose sign (if any) is already eaten; start is
// where its text begins, sign included.
func (d *deserializer) parseNumber(positive bool, start int) (number, *serdeError) {
	c, ok := d.next()
	if !ok {
		return number{}, d.err(eofValue)
	}
	var sig uint64
	switch {
	case c == '0':
		if isDigit(d.peekOrNull()) {
			return number{}, d.peekErr(invalidNumber)
		}
	case '1' <= c && c <= '9':
		sig = uint64(c - '0')
		for isDigit(d.peekOrNull()) {
			digit := uint64(d.peekOrNull() - '0')
			if sig > (math.MaxUint64-digit)/10 {
				// Too long for a u64: serde_json goes on as a float.
				for isDigit(d.peekOrNull()) {
					d.eat()
				}
				return d.parseFloatTail(start)
			}
			d.eat()
			sig = sig*10 + digit
		}
	default:
		return number{}, d.err(invalidNumber)
	}
	if p := d.peekOrNull(); p == '.' || p == 'e' || p == 'E' {
		return d.parseFloatTail(start)
	}
	if positive {
		return number{kind: 'u', u: sig}, nil
	}
	if neg := -int64(sig); neg < 0 {
		return number{kind: 'i', i: neg}, nil
	}
	// -0 and integers below i64's range are floats in serde_json.
	return number{kind: 'f', f: -float64(sig)}, nil
}

// parseFloatTail reads an optional fraction and exponent, then the value.
func (d *deserializer) parseFloatTail(start int) (number, *serdeError) {
	if d.peekOrNull() == '.' {
		d.eat()
		digits := 0
		for isDigit(d.peekOrNull()) {
			d.eat()
			digits++
		}
		if digits == 0 {
			if _, ok := d.peek(); ok {
				return number{}, d.peekErr(invalidNumber)
			}
			return number{}, d.peekErr(eofValue)
		}
	}
	if p := d.peekOrNull(); p == 'e' || p == 'E' {
		d.eat()
		if p := d.peekOrNull(); p == '+' || p == '-' {
			d.eat()
		}
		c, ok := d.next()
		if !ok {
			return number{}, d.err(eofValue)
		}
		if !isDigit(c) {
			return number{}, d.err(invalidNumber)
		}
		for isDigit(d.peekOrNull()) {
			d.eat()
		}
	}
	f, err := strconv.ParseFloat(string(d.data[start:d.index]), 64)
	if math.IsInf(f, 0) || (err != nil && !isRangeUnderflow(err, f)) {
		return number{}, d.err(numberOutOfRange)
	}
	return number{kind: 'f', f: f}, nil
}

// isRangeUnderflow tells an underflow to zero, which serde_json accepts,
// from an overflow.
func isRangeUnderflow(err error, f float64) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange && f == 0
}

// anyNumber reads a number at the current byte ('-' or a digit).
func (d *deserializer) anyNumber() (number, *serdeError) {
	start := d.index
	if d.peekOrNull() == '-' {
		d.eat()
		return d.parseNumber(false, start)
	}
	return d.parseNumber(true, start)
}

// parseStr reads a string whose opening quote is eaten, validating it as a
// Rust String must be: UTF-8, no lone surrogates, no control characters.
func (d *deserializer) parseStr() (string, *serdeError) {
	var scratch []byte
	start := d.index
	for {
		for d.index < len(d.data) && !isEscape(d.data[d.index], true) {
			d.index++
		}
		if d.index == len(d.data) {
			return "", d.err(eofString)
		}
		switch d.data[d.index] {
		case '"':
			b := d.data[start:d.index]
			if scratch != nil {
				b = append(scratch, b...)
			}
			d.index++
			if !utf8.Valid(b) {
				return "", d.err(invalidUnicodeCodePoint)
			}
			return string(b), nil
		case '\\':
			scratch = append(scratch, d.data[start:d.index]...)
			d.index++
			var err *serdeError
			if scratch, err = d.parseEscape(scratch); err != nil {
				return "", err
			}
			start = d.index
		default:
			d.index++
			return "", d.err(controlCharacter)
		}
	}
}

func isEscape(c byte, controls bool) bool {
	return c == '"' || c == '\\' || (controls && c < 0x20)
}

// nextOrEOF and peekOrEOF are serde_json's helpers inside strings.
func (d *deserializer) nextOrEOF() (byte, *serdeError) {
	c, ok := d.next()
	if !ok {
		return 0, d.err(eofString)
	}
	return c, nil
}

func (d *deserializer) peekOrEOF() (byte, *serdeError) {
	c, ok := d.peek()
	if !ok {
		return 0, d.err(eofString)
	}
	return c, nil
}

func (d *deserializer) parseEscape(scratch []byte) ([]byte, *serdeError) {
	c, err := d.nextOrEOF()
	if err != nil {
		return scratch, err
	}
	switch c {
	case '"', '\\', '/':
		return append(scratch, c), nil
	case 'b':
		return append(scratch, '\b'), nil
	case 'f':
		return append(scratch, '\f'), nil
	case 'n':
		return append(scratch, '\n'), nil
	case 'r':
		return append(scratch, '\r'), nil
	case 't':
		return append(scratch, '\t'), nil
	case 'u':
		return d.parseUnicodeEscape(scratch)
	default:
		return scratch, d.err(invalidEscape)
	}
}

// decodeHexEscape reads the four hex digits of a \u escape.
func (d *deserializer) decodeHexEscape() (uint16, *serdeError) {
	if len(d.data)-d.index < 4 {
		d.index = len(d.data)
		return 0, d.err(eofString)
	}
	hex := string(d.data[d.index : d.index+4])
	d.index += 4
	// With an explicit base, ParseUint takes hex digits only: no sign, no
	// underscores, as serde_json's decode_four_hex_digits.
	v, err := strconv.ParseUint(hex, 16, 16)
	if err != nil {
		return 0, d.err(invalidEscape)
	}
	return uint16(v), nil
}

// parseUnicodeEscape follows serde_json's validation: a trailing surrogate
// first, a leading one not followed by "\u", or one followed by anything
// but a trailing surrogate, is an error.
func (d *deserializer) parseUnicodeEscape(scratch []byte) ([]byte, *serdeError) {
	n, err := d.decodeHexEscape()
	if err != nil {
		return scratch, err
	}
	if 0xDC00 <= n && n <= 0xDFFF {
		return scratch, d.err(loneLeadingSurrogate)
	}
	if n < 0xD800 || n > 0xDBFF {
		return utf8.AppendRune(scratch, rune(n)), nil
	}
	for _, want := range []byte{'\\', 'u'} {
		c, err := d.peekOrEOF()
		if err != nil {
			return scratch, err
		}
		d.eat()
		if c != want {
			return scratch, d.err(unexpectedEndOfHexEscape)
		}
	}
	n2, err := d.decodeHexEscape()
	if err != nil {
		return scratch, err
	}
	if n2 < 0xDC00 || n2 > 0xDFFF {
		return scratch, d.err(loneLeadingSurrogate)
	}
	return utf8.AppendRune(scratch, utf16.DecodeRune(rune(n), rune(n2))), nil
}

// ignoreStr skips a string of an ignored value: serde_json checks only for
// control characters and escape syntax there, not UTF-8 or surrogates.
func (d *deserializer) ignoreStr() *serdeError {
	for {
		for d.index < len(d.data) && !isEscape(d.data[d.index], true) {
			d.index++
		}
		if d.index == len(d.data) {
			return d.err(eofString)
		}
		switch d.data[d.index] {
		case '"':
			d.index++
			return nil
		case '\\':
			d.index++
			c, err := d.nextOrEOF()
			if err != nil {
				return err
			}
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if _, err := d.decodeHexEscape(); err != nil {
					return err
				}
			default:
				return d.err(invalidEscape)
			}
		default:
			return d.err(controlCharacter)
		}
	}
}

// ignoreNumber skips a number of an ignored value (no range check).
func (d *deserializer) ignoreNumber() *serdeError {
	c, _ := d.next()
	switch {
	case c == '0':
		if isDigit(d.peekOrNull()) {
			return d.peekErr(invalidNumber)
		}
	case '1' <= c && c <= '9':
		for isDigit(d.peekOrNull()) {
			d.eat()
		}
	default:
		return d.err(invalidNumber)
	}
	if d.peekOrNull() == '.' {
		d.eat()
		digits := 0
		for isDigit(d.peekOrNull()) {
			d.eat()
			digits++
		}
		if digits == 0 {
			return d.peekErr(invalidNumber)
		}
	}
	if p := d.peekOrNull(); p == 'e' || p == 'E' {
		d.eat()
		if p := d.peekOrNull(); p == '+' || p == '-' {
			d.eat()
		}
		if c, _ := d.next(); !isDigit(c) {
			return d.err(invalidNumber)
		}
		for isDigit(d.peekOrNull()) {
			d.eat()
		}
	}
	return nil
}

// ignoreValue is serde_json's ignore_value: the value of an unknown field,
// skipped without a recursion limit.
func (d *deserializer) ignoreValue() *serdeError {
	var stack []byte // enclosing '[' and '{'
	var enclosing byte
	for {
		c, ok := d.whitespace()
		if !ok {
			return d.peekErr(eofValue)
		}
		var frame byte
		switch {
		case c == 'n':
			d.eat()
			if err := d.parseIdent("ull"); err != nil {
				return err
			}
		case c == 't':
			d.eat()
			if err := d.parseIdent("rue"); err != nil {
				return err
			}
		case c == 'f':
			d.eat()
			if err := d.parseIdent("alse"); err != nil {
				return err
			}
		case c == '-':
			d.eat()
			if err := d.ignoreNumber(); err != nil {
				return err
			}
		case isDigit(c):
			if err := d.ignoreNumber(); err != nil {
				return err
			}
		case c == '"':
			d.eat()
			if err := d.ignoreStr(); err != nil {
				return err
			}
		case c == '[' || c == '{':
			if enclosing != 0 {
				stack = append(stack, enclosing)
				enclosing = 0
			}
			d.eat()
			frame = c
		default:
			return d.peekErr(expectedSomeValue)
		}

		acceptComma := false
		if frame == 0 {
			switch {
			case enclosing != 0:
				frame, enclosing, acceptComma = enclosing, 0, true
			case len(stack) > 0:
				frame, stack, acceptComma = stack[len(stack)-1], stack[:len(stack)-1], true
			default:
				return nil
			}
		}
	closing:
		for {
			c, ok := d.whitespace()
			switch {
			case !ok:
				if frame == '[' {
					return d.peekErr(eofList)
				}
				return d.peekErr(eofObject)
			case c == ',' && acceptComma:
				d.eat()
				break closing
			case (c == ']' && frame == '[') || (c == '}' && frame == '{'):
			default:
				if !acceptComma {
					break closing
				}
				if frame == '[' {
					return d.peekErr(expectedListCommaOrEnd)
				}
				return d.peekErr(expectedObjectCommaOrEnd)
			}
			d.eat()
			if len(stack) == 0 {
				return nil
			}
			frame, stack = stack[len(stack)-1], stack[:len(stack)-1]
			acceptComma = true
		}
		if frame == '{' {
			c, ok := d.whitespace()
			switch {
			case !ok:
				return d.peekErr(eofObject)
			case c != '"':
				return d.peekErr(keyMustBeAString)
			}
			d.eat()
			if err := d.ignoreStr(); err != nil {
				return err
			}
			c, ok = d.whitespace()
			switch {
			case !ok:
				return d.peekErr(eofObject)
			case c != ':':
				return d.peekErr(expectedColon)
			}
			d.eat()
		}
		enclosing = frame
	}
}

// hasNextElement is serde_json's SeqAccess step: whether another element
// follows, eating the comma before it.
func (d *deserializer) hasNextElement(first *bool) (bool, *serdeError) {
	c, ok := d.whitespace()
	switch {
	case !ok:
		return false, d.peekErr(eofList)
	case c == ']':
		return false, nil
	case *first:
		*first = false
		return true, nil
	case c == ',':
		d.eat()
		c, ok := d.whitespace()
		switch {
		case !ok:
			return false, d.peekErr(eofValue)
		case c == ']':
			return false, d.peekErr(trailingComma)
		}
		return true, nil
	}
	return false, d.peekErr(expectedListCommaOrEnd)
}

// hasNextKey is serde_json's MapAccess step before a key.
func (d *deserializer) hasNextKey(first *bool) (bool, *serdeError) {
	c, ok := d.whitespace()
	switch {
	case !ok:
		return false, d.peekErr(eofObject)
	case c == '}':
		return false, nil
	case *first:
		*first = false
		if c != '"' {
			return false, d.peekErr(keyMustBeAString)
		}
		return true, nil
	case c == ',':
		d.eat()
		c, ok := d.whitespace()
		switch {
		case !ok:
			return false, d.peekErr(eofValue)
		case c == '"':
			return true, nil
		case c == '}':
			return false, d.peekErr(trailingComma)
		}
		return false, d.peekErr(keyMustBeAString)
	}
	return false, d.peekErr(expectedObjectCommaOrEnd)
}

// mapKey reads an object key (at its opening quote).
func (d *deserializer) mapKey() (string, *serdeError) {
	d.eat()
	return d.parseStr()
}

func (d *deserializer) objectColon() *serdeError {
	c, ok := d.whitespace()
	switch {
	case !ok:
		return d.peekErr(eofObject)
	case c != ':':
		return d.peekErr(expectedColon)
	}
	d.eat()
	return nil
}

func (d *deserializer) endSeq() *serdeError {
	c, ok := d.whitespace()
	switch {
	case !ok:
		return d.peekErr(eofList)
	case c == ']':
		d.eat()
		return nil
	case c == ',':
		d.eat()
		if c, ok := d.whitespace(); ok && c == ']' {
			return d.peekErr(trailingComma)
		}
	}
	return d.peekErr(trailingCharacters)
}

func (d *deserializer) endMap() *serdeError {
	c, ok := d.whitespace()
	switch {
	case !ok:
		return d.peekErr(eofObject)
	case c == '}':
		d.eat()
		return nil
	case c == ',':
		return d.peekErr(trailingComma)
	}
	return d.peekErr(trailingCharacters)
}

// invalidType is serde's "invalid type" error.
func invalidType(unexp, expected string) *serdeError {
	return custom("invalid type: %s, expected %s", unexp, expected)
}

// peekInvalidType reads the value at hand to name it in an invalid-type
// error, as serde_json does.
func (d *deserializer) peekInvalidType(expected string) *serdeError {
	var e *serdeError
	switch c := d.peekOrNull(); {
	case c == 'n':
		d.eat()
		if err := d.parseIdent("ull"); err != nil {
			return err
		}
		e = invalidType("null", expected)
	case c == 't':
		d.eat()
		if err := d.parseIdent("rue"); err != nil {
			return err
		}
		e = invalidType("boolean `true`", expected)
	case c == 'f':
		d.eat()
		if err := d.parseIdent("alse"); err != nil {
			return err
		}
		e = invalidType("boolean `false`", expected)
	case c == '-' || isDigit(c):
		n, err := d.anyNumber()
		if err != nil {
			return err
		}
		e = invalidType(n.unexpected(), expected)
	case c == '"':
		d.eat()
		s, err := d.parseStr()
		if err != nil {
			return err
		}
		e = invalidType("string "+rustDebug(s), expected)
	case c == '[':
		e = invalidType("sequence", expected)
	case c == '{':
		e = invalidType("map", expected)
	default:
		return d.peekErr(expectedSomeValue)
	}
	return d.fixPosition(e)
}

// rustDebug quotes s as Rust's Debug for str does, which serde uses to name
// an unexpected string.
func rustDebug(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == 0:
			b.WriteString(`\0`)
		case unicode.In(r, unicode.Mn, unicode.Me) || !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\u{%x}`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// The Deserialize impls of the primitive types TEI's requests use. Each
// reads one value at p and reports errors as found at p.

// boolean is bool.
func (d *deserializer) boolean(p path) (bool, *serdeError) {
	c, ok := d.whitespace()
	if !ok {
		return false, d.peekErr(eofValue).at(p)
	}
	var v bool
	var err *serdeError
	switch c {
	case 't':
		d.eat()
		v, err = true, d.parseIdent("rue")
	case 'f':
		d.eat()
		err = d.parseIdent("alse")
	default:
		err = d.peekInvalidType("a boolean")
	}
	return v, d.fixPosition(err).at(p)
}

// isNull is serde_json's deserialize_option: it eats a null and reports
// whether the value was one; anything else is left for the Some type.
func (d *deserializer) isNull(p path) (bool, *serdeError) {
	if c, ok := d.whitespace(); ok && c == 'n' {
		d.eat()
		return true, d.parseIdent("ull").at(p)
	}
	return false, nil
}

// str is String.
func (d *deserializer) str(p path) (string, *serdeError) {
	c, ok := d.whitespace()
	if !ok {
		return "", d.peekErr(eofValue).at(p)
	}
	if c != '"' {
		return "", d.peekInvalidType("a string").at(p)
	}
	d.eat()
	s, err := d.parseStr()
	return s, err.at(p)
}

// strs is Vec<String>.
func (d *deserializer) strs(p path) ([]string, *serdeError) {
	c, ok := d.whitespace()
	if !ok {
		return nil, d.peekErr(eofValue).at(p)
	}
	if c != '[' {
		return nil, d.peekInvalidType("a sequence").at(p)
	}
	if err := d.enter(); err != nil {
		return nil, err.at(p)
	}
	d.eat()
	out := []string{}
	var err *serdeError
	for first := true; ; {
		var more bool
		if more, err = d.hasNextElement(&first); err != nil || !more {
			break
		}
		var s string
		if s, err = d.str(p.index(len(out))); err != nil {
			break
		}
		out = append(out, s)
	}
	d.leave()
	if end := d.endSeq(); err == nil {
		err = end
	}
	return out, d.fixPosition(err).at(p)
}

// usize is usize (TEI's dimensions).
func (d *deserializer) usize(p path) (uint64, *serdeError) {
	c, ok := d.whitespace()
	if !ok {
		return 0, d.peekErr(eofValue).at(p)
	}
	if c != '-' && !isDigit(c) {
		return 0, d.peekInvalidType("usize").at(p)
	}
	n, err := d.anyNumber()
	if err != nil {
		return 0, err.at(p)
	}
	switch n.kind {
	case 'u':
		return n.u, nil
	case 'i':
		err = custom("invalid value: %s, expected usize", n.unexpected())
	default:
		err = invalidType(n.unexpected(), "usize")
	}
	return 0, d.fixPosition(err).at(p)
}

// unitEnum is a derived enum of unit variants: a variant name (or alias) as
// a string, or {"Name": null}. variants maps every accepted spelling to its
// value; names lists them in serde's order for the error message.
func (d *deserializer) unitEnum(p path, variants map[string]int, names []string) (int, *serdeError) {
	c, ok := d.whitespace()
	switch {
	case !ok:
		return 0, d.peekErr(eofValue).at(p)
	case c == '"':
		v, _, err := d.variant(p, variants, names)
		return v, err
	case c != '{':
		return 0, d.peekErr(expectedSomeValue).at(p)
	}
	if err := d.enter(); err != nil {
		return 0, err.at(p)
	}
	d.eat()
	v, raw, err := d.variant(p, variants, names)
	if err != nil {
		return 0, err
	}
	if err := d.objectColon(); err != nil {
		return 0, err.at(p)
	}
	vp := p.key(raw)
	if c, ok := d.whitespace(); !ok {
		return 0, d.peekErr(eofValue).at(vp)
	} else if c != 'n' {
		return 0, d.peekInvalidType("unit").at(vp)
	}
	d.eat()
	if err := d.parseIdent("ull"); err != nil {
		return 0, err.at(vp)
	}
	d.leave()
	c, ok = d.whitespace()
	switch {
	case !ok:
		return 0, d.err(eofObject).at(p)
	case c != '}':
		return 0, d.err(expectedSomeValue).at(p)
	}
	d.eat()
	return v, nil
}

// variant reads an enum's variant identifier: its value and its spelling.
func (d *deserializer) variant(p path, variants map[string]int, names []string) (int, string, *serdeError) {
	c, ok := d.whitespace()
	if !ok {
		return 0, "", d.peekErr(eofValue).at(p)
	}
	if c != '"' {
		return 0, "", d.peekInvalidType("variant identifier").at(p)
	}
	d.eat()
	s, err := d.parseStr()
	if err != nil {
		return 0, "", err.at(p)
	}
	v, ok := variants[s]
	if !ok {
		return 0, "", d.fixPosition(custom("unknown variant `%s`, expected %s", s, oneOf(names))).at(p)
	}
	return v, s, nil
}

// oneOf is serde's OneOf: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
func oneOf(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "`" + n + "`"
	}
	switch len(quoted) {
	case 1:
		return quoted[0]
	case 2:
		return quoted[0] + " or " + quoted[1]
	}
	return "one of " + strings.Join(quoted, ", ")
}

// field is one field of a derived struct.
type field struct {
	name string
	// required: neither Option nor #[serde(default)], so a missing key is
	// "missing field". Option fields without a default are filled when
	// missing from an object but not from the sequence form.
	required     bool
	serdeDefault bool
	// decode reads the value into the request.
	decode func(d *deserializer, p path) *serdeError
}

// structure is a derived struct named name: an object (keys matched
// exactly, unknown ones skipped, duplicates refused) or serde's sequence
// form (values in field order). Fields not given keep what the caller put
// there, their defaults.
func (d *deserializer) structure(p path, name string, fields []field) *serdeError {
	c, ok := d.whitespace()
	if !ok {
		return d.peekErr(eofValue).at(p)
	}
	var err *serdeError
	switch c {
	case '[':
		if err := d.enter(); err != nil {
			return err.at(p)
		}
		d.eat()
		err = d.structSeq(p, name, fields)
		d.leave()
		if end := d.endSeq(); err == nil {
			err = end
		}
	case '{':
		if err := d.enter(); err != nil {
			return err.at(p)
		}
		d.eat()
		err = d.structMap(p, fields)
		d.leave()
		if end := d.endMap(); err == nil {
			err = end
		}
	default:
		err = d.peekInvalidType("struct " + name)
	}
	return d.fixPosition(err).at(p)
}

func (d *deserializer) structMap(p path, fields []field) *serdeError {
	seen := make([]bool, len(fields))
	for first := true; ; {
		more, err := d.hasNextKey(&first)
		if err != nil {
			return err.at(p.unknown())
		}
		if !more {
			break
		}
		key, err := d.mapKey()
		if err != nil {
			return err.at(p.unknown())
		}
		i := -1
		for j, f := range fields {
			if f.name == key {
				i = j
				break
			}
		}
		if i >= 0 && seen[i] {
			return custom("duplicate field `%s`", key)
		}
		if err := d.objectColon(); err != nil {
			return err.at(p)
		}
		kp := p.key(key)
		if i < 0 {
			if err := d.ignoreValue(); err != nil {
				return err.at(kp)
			}
			continue
		}
		seen[i] = true
		if err := fields[i].decode(d, kp); err != nil {
			return err.at(kp)
		}
	}
	for i, f := range fields {
		if !seen[i] && f.required {
			return custom("missing field `%s`", f.name)
		}
	}
	return nil
}

func (d *deserializer) structSeq(p path, name string, fields []field) *serdeError {
	first := true
	for i, f := range fields {
		more, err := d.hasNextElement(&first)
		if err != nil {
			return err.at(p)
		}
		if !more {
			if f.serdeDefault {
				continue
			}
			return custom("invalid length %d, expected struct %s with %d elements", i, name, len(fields))
		}
		if err := f.decode(d, p.index(i)); err != nil {
			return err.at(p.index(i))
		}
	}
	return nil
}

// content is serde's buffered Content: a whole value read once so an
// untagged enum can try its variants on it.
type content struct {
	kind byte // 'n' null, 'b' bool, 'u' 'i' 'f' number, 's' string, 'a' array, 'o' object
	num  number
	s    string
	seq  []content
}

// content reads any value with serde_json's deserialize_any.
func (d *deserializer) content(p path) (content, *serdeError) {
	c, ok := d.whitespace()
	if !ok {
		return content{}, d.peekErr(eofValue).at(p)
	}
	var v content
	var err *serdeError
	switch {
	case c == 'n':
		d.eat()
		v.kind, err = 'n', d.parseIdent("ull")
	case c == 't':
		d.eat()
		v.kind, err = 'b', d.parseIdent("rue")
	case c == 'f':
		d.eat()
		v.kind, err = 'b', d.parseIdent("alse")
	case c == '-' || isDigit(c):
		v.num, err = d.anyNumber()
		v.kind = v.num.kind
	case c == '"':
		d.eat()
		v.kind = 's'
		v.s, err = d.parseStr()
	case c == '[':
		if err := d.enter(); err != nil {
			return content{}, err.at(p)
		}
		d.eat()
		v.kind = 'a'
		v.seq = []content{}
		for first := true; ; {
			var more bool
			if more, err = d.hasNextElement(&first); err != nil {
				err = err.at(p)
				break
			}
			if !more {
				break
			}
			var item content
			if item, err = d.content(p.index(len(v.seq))); err != nil {
				break
			}
			v.seq = append(v.seq, item)
		}
		d.leave()
		if end := d.endSeq(); err == nil {
			err = end
		}
	case c == '{':
		if err := d.enter(); err != nil {
			return content{}, err.at(p)
		}
		d.eat()
		v.kind = 'o'
		err = d.contentMap(p)
		d.leave()
		if end := d.endMap(); err == nil {
			err = end
		}
	default:
		err = d.peekErr(expectedSomeValue)
	}
	return v, d.fixPosition(err).at(p)
}

// contentMap reads an object's entries as content; untagged enums of TEI's
// requests never match an object, so the entries are not kept.
func (d *deserializer) contentMap(p path) *serdeError {
	for first := true; ; {
		more, err := d.hasNextKey(&first)
		if err != nil {
			return err.at(p.unknown())
		}
		if !more {
			return nil
		}
		key, err := d.mapKey()
		if err != nil {
			return err.at(p.unknown())
		}
		if err := d.objectColon(); err != nil {
			return err.at(p)
		}
		if _, err := d.content(p.key(key)); err != nil {
			return err
		}
	}
}

// u32 reports whether c is a u32 and its value.
func (c content) u32() (uint32, bool) {
	if c.kind == 'u' && c.num.u <= math.MaxUint32 {
		return uint32(c.num.u), true
	}
	return 0, false
}

// ids matches Vec<u32>.
func (c content) ids() ([]uint32, bool) {
	if c.kind != 'a' {
		return nil, false
	}
	ids := make([]uint32, len(c.seq))
	for i, item := range c.seq {
		id, ok := item.u32()
		if !ok {
			return nil, false
		}
		ids[i] = id
	}
	return ids, true
}

// strs matches Vec<String>.
func (c content) strs() ([]string, bool) {
	if c.kind != 'a' {
		return nil, false
	}
	out := make([]string, len(c.seq))
	for i, item := range c.seq {
		if item.kind != 's' {
			return nil, false
		}
		out[i] = item.s
	}
	return out, true
}

// noVariant is an untagged enum's refusal.
func noVariant(enum string) *serdeError {
	return custom("data did not match any variant of untagged enum %s", enum)
}
