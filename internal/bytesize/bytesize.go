// Package bytesize parses sizes in bytes as flags and the configuration file
// write them: a whole number with an optional unit, such as 8MiB or 512KB.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a size in bytes, written as a number with an optional unit:
// B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000).
type Size int64

// units are the accepted units, longest first where one ends another.
var units = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// UnmarshalText parses a size such as 8MiB, 512KB or 1048576.
func (b *Size) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	number, factor := s, int64(1)
	for _, unit := range units {
		if trimmed, ok := strings.CutSuffix(s, unit.suffix); ok {
			number, factor = strings.TrimSpace(trimmed), unit.factor
			break
		}
	}
	n, err := strconv.ParseInt(number, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/factor {
		return fmt.Errorf("size %q: accepted: a whole number of bytes, optionally with B, KiB, MiB, GiB, KB, MB or GB (8MiB)", s)
	}
	*b = Size(n * factor)
	return nil
}
