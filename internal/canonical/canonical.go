// Package canonical reads headers by names already in canonical form, as
// the proxy's own parsers and Go's store them, without http.Header.Get's
// canonicalization of the name on every call (a scan of it per lookup,
// several lookups per request on the proxy's path).
package canonical

import "net/http"

// Get returns the first value of name, which must be in canonical form, in h,
// or "" if there is none: http.Header.Get for such a name.
func Get(h http.Header, name string) string {
	if values := h[name]; len(values) > 0 {
		return values[0]
	}
	return ""
}
