package budget

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"balancing-reverse-proxy/internal/decimal"
)

// acceptedShare describes the accepted spelling of a Share, for error
// messages.
const acceptedShare = "a percentage such as 5% or 0.5%"

// Share is the value of --hedge-budget: the share of requests that may get
// an extra attempt, as a fraction (0.05 for "5%"). It is between 0 and 1.
type Share float64

// ParseShare parses a percentage from 0% to 100%, such as "5%" or "0.5%".
// "0%" allows no extra attempts beyond the floor.
func ParseShare(s string) (Share, error) {
	number, ok := strings.CutSuffix(s, "%")
	if !ok {
		return 0, shareError(s, "missing % sign")
	}
	if strings.HasPrefix(number, "-") {
		return 0, shareError(s, "negative")
	}
	percent, _, ok := decimal.Parse(number)
	if !ok {
		return 0, shareError(s, "not a number")
	}
	if percent > 100 {
		return 0, shareError(s, "above 100%")
	}
	return Share(percent / 100), nil
}

func shareError(s, reason string) error {
	return fmt.Errorf("hedge budget %q: %s; accepted: %s", s, reason, acceptedShare)
}

// UnmarshalText parses a percentage with ParseShare, so that command-line
// parsers can fill a Share.
func (s *Share) UnmarshalText(text []byte) error {
	parsed, err := ParseShare(string(text))
	if err != nil {
		return err
	}
	*s = parsed
	return nil
}

// String formats the share as ParseShare accepts it: "5%", "0.5%".
func (s Share) String() string {
	// Rounding to a millionth of a percent hides float noise such as
	// 0.07*100 = 7.000000000000001.
	percent := math.Round(float64(s)*100*1e6) / 1e6
	return strconv.FormatFloat(percent, 'f', -1, 64) + "%"
}
