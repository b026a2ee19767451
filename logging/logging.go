// Package logging owns the log set-up: where lines go (stdout, stderr or a file
// appended to), their format (text like the original tool's, or JSON), their
// prefix and time stamp, and the level. It builds a zerolog.Logger that main
// passes down, and gives each request its id and that logger (Requests);
// nothing here touches zerolog's global logger.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// Options are the --log-* settings.
type Options struct {
	// Prefix starts every text line, as in the original tool. JSON lines do
	// not carry it.
	Prefix string
	// Date, Time and Msec put the local date, time and microseconds in the
	// stamp; Msec implies Time. With neither Date nor Time there is no stamp,
	// for piping into logger(1), which stamps lines itself.
	Date, Time, Msec bool
	// UTC makes the stamp UTC instead of local time.
	UTC bool
	// Format is "text" (the default) or "json".
	Format string
	// Level is the least severe level written: "debug", "info" (the default),
	// "warn" or "error".
	Level string
	// Now tells the time; if nil, time.Now.
	Now func() time.Time
}

// Open returns the destination named by a --log-file value: "stdout", "stderr",
// or a file path, created if needed and appended to. The caller closes it;
// closing stdout or stderr does nothing.
func Open(file string) (io.WriteCloser, error) {
	switch file {
	case "", "stdout":
		return nopCloser{os.Stdout}, nil
	case "stderr":
		return nopCloser{os.Stderr}, nil
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		// Not f: a nil *os.File would make a non-nil io.WriteCloser.
		return nil, err
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// New returns a logger that writes to out as opts say. It fails on an unknown
// format or level.
func New(out io.Writer, opts Options) (zerolog.Logger, error) {
	level := zerolog.InfoLevel
	if opts.Level != "" {
		var err error
		if level, err = zerolog.ParseLevel(opts.Level); err != nil || level > zerolog.ErrorLevel || level < zerolog.DebugLevel {
			return zerolog.Nop(), fmt.Errorf("log level %q: accepted: debug, info, warn or error", opts.Level)
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch opts.Format {
	case "", "text":
		stamp := &stampWriter{out: out, prefix: opts.Prefix, layout: opts.stampLayout(), utc: opts.UTC, now: opts.Now}
		return zerolog.New(newTextWriter(stamp)).Level(level), nil
	case "json":
		logger := zerolog.New(out).Level(level)
		if opts.Date || opts.Time || opts.Msec {
			logger = logger.Hook(jsonStamp{now: opts.Now, utc: opts.UTC})
		}
		return logger, nil
	}
	return zerolog.Nop(), fmt.Errorf("log format %q: accepted: text or json", opts.Format)
}

// stampLayout is the time layout of the text stamp, in the style of Go's log
// package, which the original tool used.
func (o Options) stampLayout() string {
	layout := ""
	if o.Date {
		layout = "2006/01/02"
	}
	if o.Time || o.Msec {
		if layout != "" {
			layout += " "
		}
		layout += "15:04:05"
		if o.Msec {
			layout += ".000000"
		}
	}
	return layout
}

// stampWriter puts the prefix and time stamp in front of each line. zerolog
// hands it one whole line per Write.
type stampWriter struct {
	out    io.Writer
	prefix string
	layout string
	utc    bool
	now    func() time.Time
}

func (s *stampWriter) Write(line []byte) (int, error) {
	head := s.appendHead(make([]byte, 0, len(s.prefix)+len(s.layout)+2+len(line)))
	if _, err := s.out.Write(append(head, line...)); err != nil {
		return 0, err
	}
	return len(line), nil
}

// appendHead appends the prefix and time stamp that start a line to dst.
func (s *stampWriter) appendHead(dst []byte) []byte {
	if s.prefix != "" {
		dst = append(dst, s.prefix...)
		dst = append(dst, ' ')
	}
	if s.layout != "" {
		now := s.now()
		if s.utc {
			now = now.UTC()
		}
		dst = now.AppendFormat(dst, s.layout)
		dst = append(dst, ' ')
	}
	return dst
}

// jsonStamp adds a "time" field in RFC 3339 form with nanoseconds.
type jsonStamp struct {
	now func() time.Time
	utc bool
}

func (j jsonStamp) Run(event *zerolog.Event, _ zerolog.Level, _ string) {
	now := j.now()
	if j.utc {
		now = now.UTC()
	}
	var stamp [40]byte
	quoted := append(now.AppendFormat(append(stamp[:0], '"'), time.RFC3339Nano), '"')
	event.RawJSON(zerolog.TimestampFieldName, quoted)
}
