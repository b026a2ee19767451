package h1server

import (
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// parseHead reads head, a request head up to and with its empty line, into
// req, as the request Go's parser (http.ReadRequest) would make of it, and
// reports false for any head that is not plain: anything but an HTTP/1.1 request in
// origin form, with one valid Host, field names that are tokens, values of
// visible ASCII, spaces and tabs only, no continued lines, at most one
// Content-Length of digits, and no Transfer-Encoding, Expect or Upgrade.
// Those are Go's server's to read, answer or refuse, as it always has. The
// request's strings share one copy of the head, where Go's parser makes one
// per field.
func parseHead(head []byte, req *http.Request) bool {
	text := string(head)
	line, rest, _ := strings.Cut(text, "\r\n")
	method, target, ok := strings.Cut(line, " ")
	if !ok || !httpguts.ValidHeaderFieldName(method) {
		return false
	}
	target, proto, ok := strings.Cut(target, " ")
	if !ok || proto != "HTTP/1.1" || !strings.HasPrefix(target, "/") || method == http.MethodConnect {
		return false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return false
	}
	header := make(http.Header, strings.Count(rest, "\r\n"))
	// One block of values for all fields, as Go's parser.
	values := make([]string, 0, strings.Count(rest, "\r\n"))
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return false
		}
		value = strings.Trim(value, " \t")
		if !plainValue(value) {
			return false
		}
		name = http.CanonicalHeaderKey(name)
		switch name {
		case "Transfer-Encoding", "Expect", "Upgrade":
			return false
		}
		if existing, ok := header[name]; ok {
			header[name] = append(existing, value)
			continue
		}
		values = append(values, value)
		header[name] = values[len(values)-1 : len(values) : len(values)]
	}
	hosts := header["Host"]
	if len(hosts) != 1 || hosts[0] == "" || !httpguts.ValidHostHeader(hosts[0]) {
		return false
	}
	delete(header, "Host")
	length, ok := contentLength(header["Content-Length"])
	if !ok {
		return false
	}
	if pragma := header["Pragma"]; len(pragma) > 0 && pragma[0] == "no-cache" {
		if _, ok := header["Cache-Control"]; !ok {
			header["Cache-Control"] = []string{"no-cache"}
		}
	}
	*req = http.Request{
		Method: method, URL: u, Proto: proto, ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Host: hosts[0], RequestURI: target, ContentLength: length,
		Close: httpguts.HeaderValuesContainsToken(header["Connection"], "close"),
	}
	return true
}

// plainValue reports whether a field value has only visible ASCII, spaces
// and tabs: nothing that Go's parser or server might take otherwise.
func plainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' || c > '~') && c != '\t' {
			return false
		}
	}
	return true
}

// contentLength reads a request's Content-Length fields: none is 0, one is
// its digits; several, or anything but digits, are not plain.
func contentLength(fields []string) (int64, bool) {
	switch {
	case len(fields) == 0:
		return 0, true
	case len(fields) > 1 || fields[0] == "" || len(fields[0]) > 18:
		return 0, false
	}
	var n int64
	for i := 0; i < len(fields[0]); i++ {
		c := fields[0][i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
