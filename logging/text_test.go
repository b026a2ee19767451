package logging

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// consoleLine is what zerolog.ConsoleWriter, set up as textWriter's fallback
// is, writes for the JSON line p.
func consoleLine(p []byte) (string, error) {
	var out bytes.Buffer
	console := newTextWriter(&stampWriter{out: &out}).fallback
	_, err := console.Write(p)
	return out.String(), err
}

// fastLine is what textWriter writes for p without its fallback, and whether
// it could.
func fastLine(p []byte) (string, bool) {
	s := &textScratch{}
	if !s.parse(p) {
		return "", false
	}
	line, ok := s.format(nil)
	return string(line), ok
}

// textCases are log lines as the proxy and its tests write them, and lines
// the fast path must leave to the ConsoleWriter.
var textCases = []struct {
	name string
	log  func(zerolog.Logger)
	// fast is true for a line textWriter writes itself.
	fast bool
}{
	{name: "request line", fast: true, log: func(l zerolog.Logger) {
		l.Info().Str("method", "GET").Str("path", "/a/b").Int("status", 200).Int("endpoint", 0).
			Int("attempts", 1).Int64("bytes", 1024).Float64("duration_ms", 1.234).Str("request_id", "dc68jghksdue9k1sp3eg").
			Msg("request served")
	}},
	{name: "error first", fast: true, log: func(l zerolog.Logger) {
		l.Warn().Str("b", "x").Err(errors.New("dial tcp 127.0.0.1:1: connect: connection refused")).Str("a", "y").Msg("no endpoint answered")
	}},
	{name: "quoted values", fast: true, log: func(l zerolog.Logger) {
		l.Info().Str("space", "a b").Str("unicode", "héllo").Str("empty", "").Msg("")
	}},
	{name: "booleans and null", fast: true, log: func(l zerolog.Logger) {
		l.Debug().Bool("yes", true).Bool("no", false).Err(nil).Interface("nothing", nil).Msg("m")
	}},
	{name: "numbers", fast: true, log: func(l zerolog.Logger) {
		l.Error().Int("neg", -3).Float64("exp", 1e300).Float64("small", 1.5e-7).Uint64("big", 1<<63).Msg("numbers")
	}},
	{name: "no message, no fields", fast: true, log: func(l zerolog.Logger) { l.Info().Send() }},
	{name: "escaped quote", log: func(l zerolog.Logger) { l.Info().Str("q", `say "hi"`).Msg("m") }},
	{name: "newline in message", log: func(l zerolog.Logger) { l.Info().Msg("two\nlines") }},
	{name: "backslash", log: func(l zerolog.Logger) { l.Info().Str("path", `C:\x`).Msg("m") }},
	{name: "escaped DEL", log: func(l zerolog.Logger) { l.Info().Str("del", "a\x7f").Msg("m") }},
	{name: "control byte", log: func(l zerolog.Logger) { l.Info().Str("c", "a\x01b").Msg("m") }},
	{name: "invalid UTF-8", log: func(l zerolog.Logger) { l.Info().Str("bad", "a\xffb").Msg("m") }},
	{name: "non-printable rune", log: func(l zerolog.Logger) { l.Info().Str("nbsp", "a\u00a0b").Msg("m") }},
	{name: "array", log: func(l zerolog.Logger) {
		l.Warn().Errs("failures", []error{errors.New("one"), errors.New("two <&>")}).Msg("m")
	}},
	{name: "object", log: func(l zerolog.Logger) { l.Info().Dict("d", zerolog.Dict().Int("x", 1)).Msg("m") }},
	{name: "repeated name", log: func(l zerolog.Logger) { l.Info().Str("k", "1").Str("k", "2").Msg("m") }},
	{name: "time field", log: func(l zerolog.Logger) { l.Info().Str("time", "then").Msg("m") }},
	{name: "no level", log: func(l zerolog.Logger) { l.Log().Msg("m") }},
	{name: "non-string message", log: func(l zerolog.Logger) { l.Info().Int("message", 5).Send() }},
}

func TestTextWriterWritesWhatConsoleWriterWrites(t *testing.T) {
	t.Parallel()
	for _, tt := range textCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var jsonLine bytes.Buffer
			tt.log(zerolog.New(&jsonLine))
			want, err := consoleLine(jsonLine.Bytes())
			require.NoError(t, err)

			got, fast := fastLine(jsonLine.Bytes())
			assert.Equal(t, tt.fast, fast, "fast path for %s", jsonLine.String())
			if fast {
				assert.Equal(t, want, got)
			}

			logger, out := newLogger(t, Options{Prefix: "p", Level: "debug"})
			tt.log(logger)
			assert.Equal(t, "p "+want, out.String(), "through New, fast or not")
		})
	}
}

func TestTextWriterLeavesMalformedLines(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		``, `{`, `[]`, `{"level":"info"`, `{"level":"info",}`, `{"level":"info"} x`, `{"level":"info","n":01}`,
		`{"level":"info","n":1.}`, `{"level":"info","n":-}`, `{"level":"info","n":tru}`, `{"level":"info","":"x"}`,
		`{"level":"info" "n":1}`, `{"level":"info","n":"x}`, `{"level":"loud"}`, `{"level":"info","level":"warn"}`,
	} {
		_, fast := fastLine([]byte(line))
		assert.False(t, fast, "%q", line)
	}
	got, fast := fastLine([]byte(" {\"level\" : \"info\" ,\t\"n\" : 1e-3 } \n"))
	assert.True(t, fast, "white space between tokens")
	assert.Equal(t, "INF n=1e-3\n", got)
}

func TestTextWriterReportsWriteErrors(t *testing.T) {
	t.Parallel()
	broken := errors.New("disk full")
	logger, err := New(failingWriter{broken}, Options{})
	require.NoError(t, err)
	w := newTextWriter(&stampWriter{out: failingWriter{broken}})
	_, err = w.Write([]byte(`{"level":"info","message":"m"}`))
	require.ErrorIs(t, err, broken)
	logger.Info().Msg("m") // zerolog reports it to its error handler, and goes on
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

// FuzzTextWriter checks that whatever line the fast path writes is the
// ConsoleWriter's, byte for byte.
func FuzzTextWriter(f *testing.F) {
	for _, tt := range textCases {
		var jsonLine bytes.Buffer
		tt.log(zerolog.New(&jsonLine))
		f.Add(jsonLine.Bytes())
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		got, fast := fastLine(p)
		if !fast {
			return
		}
		want, err := consoleLine(p)
		require.NoError(t, err, "the fast path took a line the ConsoleWriter refuses: %q", p)
		require.Equal(t, want, got, "%q", p)
	})
}
