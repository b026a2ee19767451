package logging

import (
	"io"
	"testing"
	"time"
)

// BenchmarkRequestLine measures one request log line, with the fields of the
// proxy's, in each format. Run:
//
//	go test -run XXX -bench RequestLine -benchmem ./logging/
func BenchmarkRequestLine(b *testing.B) {
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			logger, err := New(io.Discard, Options{Format: format, Date: true, Time: true})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				logger.Info().Str("method", "GET").Str("path", "/bench").Int("status", 200).
					Int("endpoint", 0).Int("attempts", 1).Int64("bytes", 1024).
					Float64("duration_ms", float64((1234*time.Microsecond).Microseconds())/1000).
					Str("request_id", "dc68jghksdue9k1sp3eg").Msg("request served")
			}
		})
	}
}
