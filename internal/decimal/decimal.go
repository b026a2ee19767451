// Package decimal parses the plain decimal numbers that flag values are
// made of, such as the 5 of "5%" and the 99.9 of "p99.9": digits, with
// optionally a dot and more digits. It keeps out what strconv.ParseFloat
// would also take: signs, exponents, hex, "Inf" and "NaN".
package decimal

import (
	"strconv"
	"strings"
)

// Parse parses s, digits with an optional fraction, and returns its value and
// its number of decimals. ok is false for anything else.
func Parse(s string) (value float64, decimals int, ok bool) {
	whole, fraction, hasDot := strings.Cut(s, ".")
	if !allDigits(whole) || hasDot && !allDigits(fraction) {
		return 0, 0, false
	}
	value, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, false
	}
	return value, len(fraction), true
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
