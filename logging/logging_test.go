package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixedNow is 2026/11/23 12:03:53.123456789 UTC.
var fixedNow = time.Date(2026, time.November, 23, 12, 3, 53, 123456789, time.UTC)

func clock(at time.Time) func() time.Time {
	return func() time.Time { return at }
}

func newLogger(t *testing.T, opts Options) (zerolog.Logger, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	logger, err := New(&buf, opts)
	require.NoError(t, err)
	return logger, &buf
}

func TestTextLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		log  func(zerolog.Logger)
		want string
	}{
		{
			name: "prefix date and time",
			opts: Options{Prefix: "PREFIX", Date: true, Time: true},
			log:  func(l zerolog.Logger) { l.Info().Str("key", "value").Msg("msg") },
			want: "PREFIX 2026/11/23 12:03:53 INF msg key=value\n",
		},
		{
			name: "microseconds",
			opts: Options{Prefix: "PREFIX", Date: true, Time: true, Msec: true},
			log:  func(l zerolog.Logger) { l.Info().Str("key", "value").Msg("msg") },
			want: "PREFIX 2026/11/23 12:03:53.123456 INF msg key=value\n",
		},
		{
			name: "microseconds imply time",
			opts: Options{Prefix: "p", Msec: true},
			log:  func(l zerolog.Logger) { l.Info().Msg("msg") },
			want: "p 12:03:53.123456 INF msg\n",
		},
		{
			name: "date only",
			opts: Options{Prefix: "p", Date: true},
			log:  func(l zerolog.Logger) { l.Info().Msg("msg") },
			want: "p 2026/11/23 INF msg\n",
		},
		{
			name: "time only",
			opts: Options{Prefix: "p", Time: true},
			log:  func(l zerolog.Logger) { l.Info().Msg("msg") },
			want: "p 12:03:53 INF msg\n",
		},
		{
			name: "no stamp",
			opts: Options{Prefix: "PREFIX"},
			log:  func(l zerolog.Logger) { l.Info().Str("key", "value").Msg("msg") },
			want: "PREFIX INF msg key=value\n",
		},
		{
			name: "no stamp and no prefix",
			opts: Options{},
			log:  func(l zerolog.Logger) { l.Warn().Msg("msg") },
			want: "WRN msg\n",
		},
		{
			name: "no prefix with stamp",
			opts: Options{Date: true, Time: true},
			log:  func(l zerolog.Logger) { l.Error().Msg("msg") },
			want: "2026/11/23 12:03:53 ERR msg\n",
		},
		{
			name: "explicit text format",
			opts: Options{Prefix: "x", Format: "text", Level: "debug"},
			log:  func(l zerolog.Logger) { l.Debug().Int("n", 3).Msg("attempt") },
			want: "x DBG attempt n=3\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Now = clock(fixedNow)
			logger, buf := newLogger(t, tt.opts)
			tt.log(logger)
			assert.Equal(t, tt.want, buf.String())
		})
	}
}

func TestTextStampZone(t *testing.T) {
	t.Parallel()
	// 12:03:53 at UTC+05:30 is 06:33:53 UTC; at 01:00 the UTC date is the day
	// before.
	india := time.FixedZone("IST", 5*60*60+30*60)
	tests := []struct {
		name string
		at   time.Time
		utc  bool
		want string
	}{
		{name: "kept as given", at: time.Date(2026, 11, 23, 12, 3, 53, 0, india), want: "P 2026/11/23 12:03:53 INF msg\n"},
		{name: "converted to utc", at: time.Date(2026, 11, 23, 12, 3, 53, 0, india), utc: true, want: "P 2026/11/23 06:33:53 INF msg\n"},
		{name: "utc date rolls back", at: time.Date(2026, 11, 23, 1, 0, 0, 0, india), utc: true, want: "P 2026/11/22 19:30:00 INF msg\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, buf := newLogger(t, Options{Prefix: "P", Date: true, Time: true, UTC: tt.utc, Now: clock(tt.at)})
			logger.Info().Msg("msg")
			assert.Equal(t, tt.want, buf.String())
		})
	}
}

func TestTextUsesNowPerLine(t *testing.T) {
	t.Parallel()
	at := fixedNow
	logger, buf := newLogger(t, Options{Time: true, Now: func() time.Time { return at }})
	logger.Info().Msg("one")
	at = at.Add(time.Second)
	logger.Info().Msg("two")
	assert.Equal(t, "12:03:53 INF one\n12:03:54 INF two\n", buf.String())
}

func TestJSON(t *testing.T) {
	t.Parallel()
	india := time.FixedZone("IST", 5*60*60+30*60)
	tests := []struct {
		name     string
		opts     Options
		at       time.Time
		wantTime string // "" for no time field
	}{
		{name: "no stamp", opts: Options{Format: "json"}, at: fixedNow},
		{name: "date", opts: Options{Format: "json", Date: true}, at: fixedNow, wantTime: "2026-11-23T12:03:53.123456789Z"},
		{name: "time", opts: Options{Format: "json", Time: true}, at: fixedNow, wantTime: "2026-11-23T12:03:53.123456789Z"},
		{name: "msec", opts: Options{Format: "json", Msec: true}, at: fixedNow, wantTime: "2026-11-23T12:03:53.123456789Z"},
		{
			name:     "local zone kept",
			opts:     Options{Format: "json", Date: true, Time: true},
			at:       time.Date(2026, 11, 23, 12, 3, 53, 500, india),
			wantTime: "2026-11-23T12:03:53.0000005+05:30",
		},
		{
			name:     "utc",
			opts:     Options{Format: "json", Date: true, Time: true, UTC: true},
			at:       time.Date(2026, 11, 23, 12, 3, 53, 0, india),
			wantTime: "2026-11-23T06:33:53Z",
		},
		{name: "prefix not in json", opts: Options{Format: "json", Prefix: "PREFIX"}, at: fixedNow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Now = clock(tt.at)
			logger, buf := newLogger(t, tt.opts)
			logger.Info().Str("key", "value").Int("n", 2).Msg("hello")

			line := buf.String()
			require.True(t, strings.HasSuffix(line, "\n"), "one line: %q", line)
			assert.Equal(t, 1, strings.Count(line, "\n"))
			assert.NotContains(t, line, "PREFIX")
			var fields map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &fields), "valid JSON: %q", line)
			assert.Equal(t, "hello", fields["message"])
			assert.Equal(t, "info", fields["level"])
			assert.Equal(t, "value", fields["key"])
			assert.InDelta(t, 2, fields["n"], 0)
			if tt.wantTime == "" {
				assert.NotContains(t, fields, "time")
				return
			}
			require.Contains(t, fields, "time")
			assert.Equal(t, tt.wantTime, fields["time"])
			parsed, err := time.Parse(time.RFC3339Nano, tt.wantTime)
			require.NoError(t, err)
			assert.True(t, parsed.Equal(tt.at), "the stamp is the clock's instant")
		})
	}
}

func TestLevels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level string
		want  []string // messages that get through, of debug, info, warn, error
	}{
		{level: "", want: []string{"info", "warn", "error"}},
		{level: "debug", want: []string{"debug", "info", "warn", "error"}},
		{level: "info", want: []string{"info", "warn", "error"}},
		{level: "INFO", want: []string{"info", "warn", "error"}},
		{level: "warn", want: []string{"warn", "error"}},
		{level: "error", want: []string{"error"}},
	}
	for _, format := range []string{"text", "json"} {
		for _, tt := range tests {
			t.Run(format+"/"+tt.level, func(t *testing.T) {
				t.Parallel()
				logger, buf := newLogger(t, Options{Format: format, Level: tt.level, Now: clock(fixedNow)})
				logger.Debug().Msg("debug")
				logger.Info().Msg("info")
				logger.Warn().Msg("warn")
				logger.Error().Msg("error")

				var got []string
				for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
					if line == "" {
						continue
					}
					if format == "json" {
						var fields map[string]any
						require.NoError(t, json.Unmarshal([]byte(line), &fields))
						got = append(got, fields["message"].(string))
						continue
					}
					parts := strings.Fields(line)
					require.Len(t, parts, 2, "line %q", line)
					got = append(got, parts[1])
				}
				assert.Equal(t, tt.want, got)
			})
		}
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opts   Options
		wantIn []string
	}{
		{name: "unknown level", opts: Options{Level: "verbose"}, wantIn: []string{`"verbose"`, "accepted:"}},
		{name: "trace is below debug", opts: Options{Level: "trace"}, wantIn: []string{`"trace"`, "accepted:"}},
		{name: "fatal is above error", opts: Options{Level: "fatal"}, wantIn: []string{`"fatal"`, "accepted:"}},
		{name: "panic", opts: Options{Level: "panic"}, wantIn: []string{`"panic"`}},
		{name: "disabled", opts: Options{Level: "disabled"}, wantIn: []string{`"disabled"`}},
		{name: "numeric out of range", opts: Options{Level: "9"}, wantIn: []string{`"9"`}},
		{name: "unknown format", opts: Options{Format: "yaml"}, wantIn: []string{`"yaml"`, "format", "accepted:"}},
		{name: "format is case-sensitive", opts: Options{Format: "JSON"}, wantIn: []string{`"JSON"`, "format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger, err := New(&buf, tt.opts)
			require.Error(t, err)
			for _, want := range tt.wantIn {
				assert.Contains(t, err.Error(), want)
			}
			// The logger returned with the error writes nothing.
			logger.Error().Msg("lost")
			assert.Empty(t, buf.String())
		})
	}
}

func TestOpenStandardStreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want *os.File
	}{
		{file: "", want: os.Stdout},
		{file: "stdout", want: os.Stdout},
		{file: "stderr", want: os.Stderr},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			out, err := Open(tt.file)
			require.NoError(t, err)
			nop, ok := out.(nopCloser)
			require.True(t, ok, "standard streams are wrapped so Close does nothing, got %T", out)
			assert.Same(t, tt.want, nop.Writer)
			require.NoError(t, out.Close())
			require.NoError(t, out.Close())
			// Still open after Close: a zero-length write succeeds.
			_, err = tt.want.Write(nil)
			assert.NoError(t, err)
		})
	}
}

func TestOpenFileAppends(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "proxy.log")
	for _, msg := range []string{"first", "second"} {
		out, err := Open(path)
		require.NoError(t, err)
		logger, err := New(out, Options{Prefix: "p", Now: clock(fixedNow)})
		require.NoError(t, err)
		logger.Info().Msg(msg)
		require.NoError(t, out.Close())
	}
	content, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "p INF first\np INF second\n", string(content))

	// A closed file really is closed.
	out, err := Open(path)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	_, err = io.WriteString(out, "late")
	assert.ErrorIs(t, err, os.ErrClosed)
}

func TestOpenFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{name: "missing directory", path: filepath.Join(dir, "no-such-dir", "proxy.log")},
		{name: "a directory", path: dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := Open(tt.path)
			require.Error(t, err)
			assert.Nil(t, out)
			assert.Contains(t, err.Error(), tt.path)
		})
	}
}
