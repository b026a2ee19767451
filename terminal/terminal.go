// Package terminal owns the terminal-status spec: which upstream statuses end a
// request (their response goes to the client) and which make the proxy try the
// next endpoint. It parses specs such as "100,200,300,400", "2xx,404" or
// "200-299,500-503" and answers "is this status terminal?".
package terminal

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Accepted describes the accepted spelling of a spec, for error messages.
const Accepted = "a comma-separated list of hundreds (400 means 400-499), classes (2xx), " +
	"known status codes (404) or ranges (500-503), all within 100-599"

// Lowest and highest status codes a spec may name.
const (
	minStatus = 100
	maxStatus = 599
)

// Range is an inclusive range of HTTP status codes.
type Range struct {
	Lo, Hi int
}

// Ranges is a parsed terminal-status spec. The zero value contains no status.
type Ranges []Range

// Default is the original tool's default: every 1xx-4xx status is terminal, 5xx
// statuses are not.
const Default = "100,200,300,400"

// Parse parses a spec. Each comma-separated element is one of:
//   - a multiple of 100 from 100 to 500, meaning that whole hundred (the original
//     tool's spelling): "400" is 400-499;
//   - a class: "2xx" is 200-299;
//   - a single known status code: "404";
//   - an inclusive range: "500-503".
//
// Spaces around elements are ignored. An empty spec or element is an error.
func Parse(spec string) (Ranges, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("empty terminal-status spec; accepted: %s", Accepted)
	}
	var ranges Ranges
	for _, element := range strings.Split(spec, ",") {
		r, err := parseElement(strings.TrimSpace(element))
		if err != nil {
			return nil, fmt.Errorf("terminal status %q: %w; accepted: %s", element, err, Accepted)
		}
		ranges = append(ranges, r)
	}
	return ranges, nil
}

func parseElement(element string) (Range, error) {
	if element == "" {
		return Range{}, fmt.Errorf("empty element")
	}
	if lo, hi, isRange := strings.Cut(element, "-"); isRange {
		from, err := parseCode(lo)
		if err != nil {
			return Range{}, err
		}
		to, err := parseCode(hi)
		if err != nil {
			return Range{}, err
		}
		if from > to {
			return Range{}, fmt.Errorf("range starts after it ends")
		}
		return Range{from, to}, nil
	}
	if class, isClass := strings.CutSuffix(strings.ToLower(element), "xx"); isClass {
		digit, err := strconv.Atoi(class)
		if err != nil || len(class) != 1 || digit < 1 || digit > 5 {
			return Range{}, fmt.Errorf("not a status class from 1xx to 5xx")
		}
		return Range{digit * 100, digit*100 + 99}, nil
	}
	code, err := parseCode(element)
	if err != nil {
		return Range{}, err
	}
	if code%100 == 0 {
		return Range{code, code + 99}, nil
	}
	if http.StatusText(code) == "" {
		return Range{}, fmt.Errorf("not a known HTTP status (write %d-%d for an unnamed code)", code, code)
	}
	return Range{code, code}, nil
}

func parseCode(s string) (int, error) {
	code, err := strconv.Atoi(strings.TrimSpace(s))
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is outside %d-%d", s, minStatus, maxStatus)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if code < minStatus || code > maxStatus {
		return 0, fmt.Errorf("%d is outside %d-%d", code, minStatus, maxStatus)
	}
	return code, nil
}

// Contains reports whether status is terminal.
func (rs Ranges) Contains(status int) bool {
	for _, r := range rs {
		if status >= r.Lo && status <= r.Hi {
			return true
		}
	}
	return false
}

// UnmarshalText parses a spec, so that command-line parsers can fill Ranges.
func (rs *Ranges) UnmarshalText(text []byte) error {
	parsed, err := Parse(string(text))
	if err != nil {
		return err
	}
	*rs = parsed
	return nil
}

// String formats the ranges as a spec that Parse accepts.
func (rs Ranges) String() string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		// A lone multiple of 100 would read back as its whole hundred, and a
		// lone unnamed code (570) is only accepted as a range.
		if r.Lo == r.Hi && r.Lo%100 != 0 && http.StatusText(r.Lo) != "" {
			parts[i] = strconv.Itoa(r.Lo)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Lo, r.Hi)
		}
	}
	return strings.Join(parts, ",")
}
