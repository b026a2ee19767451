package forward

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/net/http/httpguts"

	"balancing-reverse-proxy/internal/canonical"
)

// AcceptedTrustedProxies describes the spelling of TrustedProxies, for error
// messages.
const AcceptedTrustedProxies = "comma-separated IP addresses or CIDR networks (10.0.0.0/8,192.0.2.7,2001:db8::/32)"

// TrustedProxies are the networks of the proxies in front of this one (load
// balancers, CDNs). A request from one of them keeps the X-Forwarded-* and
// Forwarded headers it carries, extended with this hop; from any other
// client those headers are claims anyone can make, and are replaced.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies parses a comma-separated list of IP addresses and CIDR
// networks. An empty string is an empty list.
func ParseTrustedProxies(s string) (TrustedProxies, error) {
	var trusted TrustedProxies
	if strings.TrimSpace(s) == "" {
		return trusted, nil
	}
	for element := range strings.SplitSeq(s, ",") {
		element = strings.TrimSpace(element)
		prefix, err := netip.ParsePrefix(element)
		if err != nil {
			addr, addrErr := netip.ParseAddr(element)
			if addrErr != nil {
				return nil, fmt.Errorf("trusted proxy %q: not an IP address or network; accepted: %s", element, AcceptedTrustedProxies)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		trusted = append(trusted, prefix.Masked())
	}
	return trusted, nil
}

// UnmarshalText parses a list with ParseTrustedProxies, so that
// command-line parsers can fill TrustedProxies.
func (t *TrustedProxies) UnmarshalText(text []byte) error {
	parsed, err := ParseTrustedProxies(string(text))
	if err != nil {
		return err
	}
	*t = parsed
	return nil
}

// trusts reports whether addr is in one of the networks.
func (t TrustedProxies) trusts(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, prefix := range t {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// Names of the forwarding headers.
const (
	headerForwardedFor   = "X-Forwarded-For"
	headerForwardedHost  = "X-Forwarded-Host"
	headerForwardedProto = "X-Forwarded-Proto"
	headerForwarded      = "Forwarded"
)

// setForwarded sets the headers that tell an endpoint about client, in's:
// X-Forwarded-For, -Host and -Proto and Forwarded (RFC 7239). From a trusted
// proxy the chains it sent are extended, and its -Host and -Proto kept; from
// anyone else, every X-Forwarded-* header, Forwarded and X-Real-Ip were
// left out of header (see isForwarding), so that a client cannot make an
// endpoint believe it comes from elsewhere. It runs once header has no
// hop-by-hop headers, so that a client cannot have the proxy's own headers
// removed by naming them in Connection.
func setForwarded(header http.Header, in *http.Request, client netip.Addr) {
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	ip := client.String()
	var element strings.Builder
	element.Grow(len("for=;host=;proto=https") + len(ip) + len(in.Host) + 6)
	element.WriteString("for=")
	writeForwardedValue(&element, nodeName(ip, client.Is6()))
	if in.Host != "" {
		element.WriteString(";host=")
		writeForwardedValue(&element, in.Host)
	}
	element.WriteString(";proto=")
	element.WriteString(proto)
	// One backing array for the values set here, instead of one each.
	values := make([]string, 0, 4)
	set := func(name, value string) {
		values = append(values, value)
		header[name] = values[len(values)-1 : len(values) : len(values)]
	}
	set(headerForwardedFor, chain(header, headerForwardedFor, ip))
	if canonical.Get(header, headerForwardedHost) == "" && in.Host != "" {
		set(headerForwardedHost, in.Host)
	}
	if canonical.Get(header, headerForwardedProto) == "" {
		set(headerForwardedProto, proto)
	}
	set(headerForwarded, chain(header, headerForwarded, element.String()))
}

// isForwarding reports whether name is a header that claims where a request
// came from: X-Forwarded-*, Forwarded and X-Real-Ip, also spelt with
// underscores, which CGI-style servers read as the same variables.
func isForwarding(name string) bool {
	return hasPrefixLike(name, "x-forwarded-") || sameNameLike(name, "forwarded") || sameNameLike(name, "x-real-ip")
}

// hasPrefixLike reports whether name starts with prefix (lower case), ignoring
// case and reading '_' as '-'.
func hasPrefixLike(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// sameNameLike reports whether name is want (lower case), ignoring case and
// reading '_' as '-'.
func sameNameLike(name, want string) bool {
	return len(name) == len(want) && hasPrefixLike(name, want)
}

// chain returns the earlier values of name in header, joined, followed by
// value.
func chain(header http.Header, name, value string) string {
	if prior := header[name]; len(prior) > 0 {
		return strings.Join(prior, ", ") + ", " + value
	}
	return value
}

// nodeName is an address as Forwarded writes it: IPv6 in brackets.
func nodeName(ip string, is6 bool) string {
	if is6 {
		return "[" + ip + "]"
	}
	return ip
}

// writeForwardedValue writes v as RFC 7239 wants: as it is when it is a
// token, else quoted, with a backslash before each backslash and quote.
func writeForwardedValue(b *strings.Builder, v string) {
	if !strings.ContainsFunc(v, isNotTokenChar) {
		b.WriteString(v)
		return
	}
	b.WriteByte('"')
	for i := range len(v) {
		if v[i] == '\\' || v[i] == '"' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
}

// isNotTokenChar reports whether c may not appear in an HTTP token (RFC 9110).
func isNotTokenChar(c rune) bool {
	return !httpguts.IsTokenRune(c)
}

// IsToken reports whether s is an HTTP token (RFC 9110), as header field
// names and cookie names are.
func IsToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, isNotTokenChar)
}
