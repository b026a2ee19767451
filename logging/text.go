package logging

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// textWriter turns each JSON line zerolog writes into the text line that
// zerolog.ConsoleWriter writes (the level, the message, then name=value for
// each field, sorted by name with "error" first), behind the prefix and time
// stamp. zerolog's ConsoleWriter decodes every line into a map, some hundred
// allocations for a request line; textWriter rewrites a flat line of plain
// strings, numbers and booleans without allocating, and hands any other line
// (an array or object, an escaped string, a repeated name) to the
// ConsoleWriter, so that the output is the same either way.
type textWriter struct {
	stamp    *stampWriter
	fallback zerolog.ConsoleWriter
}

// newTextWriter returns a textWriter writing through stamp.
func newTextWriter(stamp *stampWriter) *textWriter {
	return &textWriter{stamp: stamp, fallback: zerolog.ConsoleWriter{
		Out:        stamp,
		NoColor:    true,
		PartsOrder: []string{zerolog.LevelFieldName, zerolog.MessageFieldName},
	}}
}

// textField is a name and its value as they stand in the JSON line: a string
// without its quotes, or a number, true, false or null.
type textField struct {
	name, value []byte
	// str is true for a string.
	str bool
}

// textScratch is one Write's working space, pooled.
type textScratch struct {
	fields []textField
	line   []byte
}

// maxPooledLine is the largest line buffer put back in the pool, so that one
// huge line does not stay in memory.
const maxPooledLine = 64 << 10

var textScratchPool = sync.Pool{New: func() any {
	return &textScratch{fields: make([]textField, 0, 16), line: make([]byte, 0, 512)}
}}

func (t *textWriter) Write(p []byte) (int, error) {
	s := textScratchPool.Get().(*textScratch)
	defer s.release()
	if !s.parse(p) {
		return t.fallback.Write(p)
	}
	line, ok := s.format(t.stamp.appendHead(s.line[:0]))
	if !ok {
		return t.fallback.Write(p)
	}
	s.line = line
	if _, err := t.stamp.out.Write(line); err != nil {
		return 0, err
	}
	return len(p), nil
}

// release returns s to the pool unless its line grew too large.
func (s *textScratch) release() {
	if cap(s.line) <= maxPooledLine {
		clear(s.fields)
		textScratchPool.Put(s)
	}
}

// parse splits a flat JSON object into s.fields, or returns false for any
// other line.
func (s *textScratch) parse(p []byte) bool {
	s.fields = s.fields[:0]
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return false
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return skipSpace(p, i+1) == len(p)
	}
	for {
		var f textField
		var ok bool
		if f.name, i, ok = plainString(p, i); !ok || len(f.name) == 0 {
			return false
		}
		if i = skipSpace(p, i); i >= len(p) || p[i] != ':' {
			return false
		}
		i = skipSpace(p, i+1)
		if i < len(p) && p[i] == '"' {
			f.value, i, ok = plainString(p, i)
			if !ok || !printable(f.value) {
				return false
			}
			f.str = true
		} else if f.value, i, ok = literal(p, i); !ok {
			return false
		}
		s.fields = append(s.fields, f)
		if i = skipSpace(p, i); i >= len(p) {
			return false
		}
		switch p[i] {
		case '}':
			return skipSpace(p, i+1) == len(p)
		case ',':
			i = skipSpace(p, i+1)
		default:
			return false
		}
	}
}

// format appends the text line of s.fields to line, or returns false when
// the fields are not a line it writes as the ConsoleWriter does: a level
// zerolog names, a string message, no time or caller, no name twice.
func (s *textScratch) format(line []byte) ([]byte, bool) {
	var level, message []byte
	n := 0
	for _, f := range s.fields {
		switch string(f.name) {
		case zerolog.LevelFieldName:
			if !f.str || level != nil {
				return nil, false
			}
			level = f.value
		case zerolog.MessageFieldName:
			if !f.str || message != nil {
				return nil, false
			}
			message = f.value
		case zerolog.TimestampFieldName, zerolog.CallerFieldName:
			return nil, false
		default:
			s.fields[n] = f
			n++
		}
	}
	short := shortLevel(level)
	if short == "" {
		return nil, false
	}
	fields := s.fields[:n]
	slices.SortFunc(fields, func(a, b textField) int { return bytes.Compare(a.name, b.name) })
	for i := 1; i < len(fields); i++ {
		if bytes.Equal(fields[i-1].name, fields[i].name) {
			return nil, false
		}
	}
	// The ConsoleWriter puts "error" first.
	if e := slices.IndexFunc(fields, isErrorField); e > 0 {
		errorField := fields[e]
		copy(fields[1:e+1], fields[:e])
		fields[0] = errorField
	}
	line = append(line, short...)
	if len(message) > 0 {
		line = append(append(line, ' '), message...)
	}
	for _, f := range fields {
		line = append(append(line, ' '), f.name...)
		line = append(line, '=')
		if f.str && needsQuote(f.value) {
			line = append(append(append(line, '"'), f.value...), '"')
		} else {
			line = append(line, f.value...)
		}
	}
	return append(line, '\n'), true
}

func isErrorField(f textField) bool { return string(f.name) == zerolog.ErrorFieldName }

// shortLevel returns the ConsoleWriter's three letters for a level's JSON
// value, or "" for a value it does not name.
func shortLevel(value []byte) string {
	for level, short := range zerolog.FormattedLevels {
		if string(value) == level.String() {
			return short
		}
	}
	return ""
}

// skipSpace returns the index of the first byte of p from i on that is not
// JSON white space.
func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at p[i] and returns its bytes and the
// index after it: false unless it is valid UTF-8 without escapes, so that its
// bytes are its value.
func plainString(p []byte, i int) ([]byte, int, bool) {
	if i >= len(p) || p[i] != '"' {
		return nil, i, false
	}
	end := bytes.IndexByte(p[i+1:], '"')
	if end < 0 {
		return nil, i, false
	}
	value := p[i+1 : i+1+end]
	if bytes.IndexByte(value, '\\') >= 0 || !utf8.Valid(value) {
		return nil, i, false
	}
	for _, c := range value {
		if c < 0x20 {
			return nil, i, false
		}
	}
	return value, i + 2 + end, true
}

// printable reports whether value, once quoted by strconv.Quote as the
// ConsoleWriter quotes it, keeps its bytes: every rune printable.
func printable(value []byte) bool {
	for len(value) > 0 {
		r, size := utf8.DecodeRune(value)
		if !strconv.IsPrint(r) {
			return false
		}
		value = value[size:]
	}
	return true
}

// needsQuote is the ConsoleWriter's rule for quoting a string value.
func needsQuote(value []byte) bool {
	for _, c := range value {
		if c < 0x20 || c > 0x7e || c == ' ' || c == '\\' || c == '"' {
			return true
		}
	}
	return false
}

// literalBytes are the bytes a JSON number, true, false or null is made of.
const literalBytes = "+-.0123456789Eaeflnrstu"

// literal reads the JSON number, true, false or null at p[i] and returns it
// and the index after it.
func literal(p []byte, i int) ([]byte, int, bool) {
	end := i
	for end < len(p) && strings.IndexByte(literalBytes, p[end]) >= 0 {
		end++
	}
	value := p[i:end]
	switch string(value) {
	case "true", "false", "null":
		return value, end, true
	}
	return value, end, isNumber(value)
}

// isNumber reports whether value is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func isNumber(value []byte) bool {
	i := 0
	digits := func() bool {
		start := i
		for i < len(value) && '0' <= value[i] && value[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(value) && value[i] == '-' {
		i++
	}
	if i < len(value) && value[i] == '0' {
		i++
	} else if !digits() {
		return false
	}
	if i < len(value) && value[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(value) && (value[i] == 'e' || value[i] == 'E') {
		i++
		if i < len(value) && (value[i] == '+' || value[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(value)
}
