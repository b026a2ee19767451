// Package hedge owns the hedge delay: how long a request waits for an answer
// before the next attempt starts. The delay is either fixed ("20ms") or
// adaptive, following a percentile of recently observed latencies ("p95").
package hedge

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"balancing-reverse-proxy/internal/decimal"
)

// accepted describes the accepted spellings of a Spec, for error messages.
const accepted = "a duration such as 20ms, or a percentile such as p95 or p99.9"

// Spec is the value of --hedge-delay: a fixed duration ("20ms") or a
// percentile of recent latencies ("p95", "p99.9").
//
// If Percentile is non-zero the delay is adaptive and Fixed is ignored.
// Otherwise the delay is Fixed; the zero Spec is a fixed delay of 0, meaning
// every attempt starts at once.
type Spec struct {
	// Fixed is the delay of a fixed spec. It is never negative.
	Fixed time.Duration
	// Percentile, above 0 and below 100 with at most one decimal, makes the
	// delay adaptive: the delay is this percentile of recent latencies.
	Percentile float64
}

// Adaptive reports whether the delay follows a percentile of recent latencies
// rather than being fixed.
func (s Spec) Adaptive() bool {
	return s.Percentile != 0
}

// ParseSpec parses a hedge delay: a non-negative Go duration ("20ms", "0s"),
// or "p" followed by a percentile above 0 and below 100 with at most one
// decimal ("p95", "p99.9").
func ParseSpec(s string) (Spec, error) {
	if digits, ok := strings.CutPrefix(s, "p"); ok {
		percentile, err := parsePercentile(digits)
		if err != nil {
			return Spec{}, fmt.Errorf("hedge delay %q: %w; accepted: %s", s, err, accepted)
		}
		return Spec{Percentile: percentile}, nil
	}
	fixed, err := time.ParseDuration(s)
	if err != nil {
		return Spec{}, fmt.Errorf("hedge delay %q: not a duration or percentile; accepted: %s", s, accepted)
	}
	if fixed < 0 {
		return Spec{}, fmt.Errorf("hedge delay %q: negative duration; accepted: %s", s, accepted)
	}
	return Spec{Fixed: fixed}, nil
}

// parsePercentile parses the part of a percentile spec after the "p".
func parsePercentile(digits string) (float64, error) {
	percentile, decimals, ok := decimal.Parse(digits)
	switch {
	case !ok:
		return 0, fmt.Errorf("percentile is not a number")
	case decimals > 1:
		return 0, fmt.Errorf("percentile has more than one decimal")
	case percentile <= 0 || percentile >= 100:
		return 0, fmt.Errorf("percentile is not above 0 and below 100")
	}
	return percentile, nil
}

// UnmarshalText parses a spec with ParseSpec, so that command-line parsers can
// fill a Spec.
func (s *Spec) UnmarshalText(text []byte) error {
	parsed, err := ParseSpec(string(text))
	if err != nil {
		return err
	}
	*s = parsed
	return nil
}

// String formats the spec as ParseSpec accepts it: "20ms", "0s", "p95",
// "p99.9".
func (s Spec) String() string {
	if s.Adaptive() {
		return "p" + strconv.FormatFloat(s.Percentile, 'f', -1, 64)
	}
	return s.Fixed.String()
}

// Bounds of PercentileForShare.
const (
	lowestSharePercentile  = 50
	highestSharePercentile = 99.9
)

// PercentileForShare returns the latency percentile whose hedges fit a budget
// of share extra attempts per request: 0.05 (5%) gives 95, since only the
// slowest 5% of requests are still waiting at the 95th percentile.
//
// The result is rounded to one decimal, so it is a valid Spec.Percentile, and
// clamped to [50, 99.9]: a share of 0 or less (or NaN) gives 99.9, the most
// conservative delay (the budget itself then refuses the hedges), and a share
// of 0.5 or more gives the median, because a hedge sent before most requests
// have answered mostly duplicates work that was about to succeed.
func PercentileForShare(share float64) float64 {
	if !(share > 0) {
		return highestSharePercentile
	}
	// Rounding also removes float noise: 100*(1-0.05) is 95.00000000000001.
	percentile := math.Round((1-share)*1000) / 10
	return min(max(percentile, lowestSharePercentile), highestSharePercentile)
}
