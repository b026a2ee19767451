package config

import (
	"encoding"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/forward"
)

// The value types below check themselves as they are decoded. A bad value is
// returned as a *yaml.TypeError, which the decoder collects (rather than
// stopping at the first), with its line and column for Load to name the key.

// badValue is the problem of value node n.
func badValue(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: %s", n.Line, n.Column, fmt.Sprintf(format, args...))}}
}

// scalar parses n, which must be a single value, with parse.
func scalar(n *yaml.Node, parse func(string) error) error {
	if n.Kind != yaml.ScalarNode {
		return badValue(n, "accepted: a single value, not a list or a mapping")
	}
	if err := parse(n.Value); err != nil {
		return badValue(n, "%v", err)
	}
	return nil
}

// Text is a value of a type that parses itself from text (an
// encoding.TextUnmarshaler through its pointer), as its flag does.
type Text[T any] struct {
	Value T
}

func (*Text[T]) isValue() {}

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Text[T]) UnmarshalYAML(n *yaml.Node) error {
	return scalar(n, func(s string) error {
		return any(&t.Value).(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
	})
}

// Duration is a duration that is not negative, such as 500ms or 10s.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	return scalar(n, func(s string) error {
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			return fmt.Errorf("%q: accepted: a duration such as 500ms, 10s or 0", s)
		}
		*d = Duration(v)
		return nil
	})
}

// Count is a whole number that is not negative.
type Count int

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *Count) UnmarshalYAML(n *yaml.Node) error {
	return scalar(n, func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return fmt.Errorf("%q: accepted: a whole number, 0 or more", s)
		}
		*c = Count(v)
		return nil
	})
}

// Weight is an endpoint's weight: a whole number, 1 or more.
type Weight int

// UnmarshalYAML implements yaml.Unmarshaler.
func (w *Weight) UnmarshalYAML(n *yaml.Node) error {
	return scalar(n, func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 1_000_000 {
			return fmt.Errorf("%q: accepted: a whole number from 1 to 1000000", s)
		}
		*w = Weight(v)
		return nil
	})
}

// Mode is a route's mode: serial, fanout or hedged.
type Mode string

// The modes.
const (
	Serial Mode = "serial"
	FanOut Mode = "fanout"
	Hedged Mode = "hedged"
)

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *Mode) UnmarshalYAML(n *yaml.Node) error {
	return scalar(n, func(s string) error {
		switch v := Mode(s); v {
		case Serial, FanOut, Hedged:
			*m = v
			return nil
		}
		return fmt.Errorf("%q: accepted: serial, fanout or hedged", s)
	})
}

// Token is a header or cookie name.
type Token string

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Token) UnmarshalYAML(n *yaml.Node) error {
	return scalar(n, func(s string) error {
		if !forward.IsToken(s) {
			return fmt.Errorf("%q: accepted: a header or cookie name, letters, digits and !#$%%&'*+-.^_`|~", s)
		}
		*t = Token(s)
		return nil
	})
}

// HeaderValue is the value of a header an endpoint's attempts get.
type HeaderValue string

// UnmarshalYAML implements yaml.Unmarshaler.
func (h *HeaderValue) UnmarshalYAML(n *yaml.Node) error {
	return scalar(n, func(s string) error {
		if strings.ContainsAny(s, "\r\n\x00") {
			return fmt.Errorf("a value with a line break or a NUL; accepted: one line")
		}
		*h = HeaderValue(s)
		return nil
	})
}

// reservedHeaders are the headers an endpoint's own may not set: the proxy's
// framing and forwarding are its own.
var reservedHeaders = []string{
	"Connection", "Content-Length", "Host", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// UnmarshalYAML implements yaml.Unmarshaler: a bare URL is short for
// {url: URL}.
func (e *Endpoint) UnmarshalYAML(n *yaml.Node) error {
	urlNode := n
	if n.Kind == yaml.ScalarNode {
		e.URL = n.Value
	} else {
		type plain Endpoint // without this method, so that Decode does not recurse
		if err := n.Decode((*plain)(e)); err != nil {
			return err
		}
		urlNode = valueOf(n, "url")
		if headers, ok := keyNode(n, "headers"); ok && headers.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(headers.Content); i += 2 {
				name := headers.Content[i]
				switch {
				case !forward.IsToken(name.Value):
					return badValue(name, "header %q: accepted: a header name, letters, digits and !#$%%&'*+-.^_`|~", name.Value)
				case slices.Contains(reservedHeaders, http.CanonicalHeaderKey(name.Value)):
					return badValue(name, "header %q is the proxy's own; accepted: any other", name.Value)
				}
			}
		}
	}
	if strings.Contains(e.URL, ",") {
		return badValue(urlNode, "%q: accepted: one URL per endpoint", e.URL)
	}
	if _, err := endpoints.Parse(e.URL); err != nil {
		return badValue(urlNode, "%v", err)
	}
	return nil
}

// valueOf returns the value node of key in mapping n, or n itself.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if v, ok := keyNode(n, key); ok {
		return v
	}
	return n
}

// keyNode returns the value node of key in mapping n, if it has key.
func keyNode(n *yaml.Node, key string) (*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		return nil, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			value := n.Content[i+1]
			for value.Kind == yaml.AliasNode && value.Alias != nil {
				value = value.Alias
			}
			return value, true
		}
	}
	return nil, false
}
