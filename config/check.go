package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"balancing-reverse-proxy/routes"
)

// check finds what no single value says: routes with no name or the same
// one, with neither endpoints nor a redirect or with both, a bad match or
// redirect, and sessions with nowhere to read an id. root is the file's node.
func (r *reader) check(root *yaml.Node, file *File) {
	if len(file.Routes) == 0 {
		r.at(root, "routes", "none; accepted: a list of at least one route")
	}
	routeNodes := valueOf(root, "routes").Content
	seen := map[string]bool{}
	r.checkSession(valueOf(root, "defaults"), "defaults", file.Defaults.Session)
	for i, route := range file.Routes {
		if i >= len(routeNodes) {
			break // (no node to name: the file is made of anchors and aliases)
		}
		n, key := routeNodes[i], fmt.Sprintf("routes[%d]", i)
		file.Routes[i].Line = n.Line
		switch {
		case route.Name == "":
			r.at(n, key, "no name; accepted: a name, used in logs and metrics")
		case seen[route.Name]:
			r.at(valueOf(n, "name"), key+".name", "%q is the name of an earlier route; accepted: a name of its own", route.Name)
		}
		seen[route.Name] = true
		items, hasEndpoints := keyNode(n, "endpoints")
		switch {
		case hasEndpoints && len(items.Content) == 0:
			r.at(items, key+".endpoints", "none; accepted: a list of at least one endpoint")
		case len(route.Endpoints) == 0 && route.Redirect == nil && !hasEndpoints:
			// (A list that is there but failed to decode has its problems.)
			r.at(n, key, "no endpoints and no redirect; accepted: one of them")
		case len(route.Endpoints) > 0 && route.Redirect != nil:
			r.at(n, key, "both endpoints and a redirect; accepted: one of them")
		}
		check := routes.Route{Name: route.Name, Host: route.Match.Host, Path: route.Match.Path, StripPrefix: route.StripPrefix}
		if route.Redirect != nil {
			check.Redirect = &routes.Redirect{To: route.Redirect.To, Status: route.Redirect.Status}
		}
		if err := routes.Check(check); err != nil {
			r.at(n, key, "%v", err)
		}
		// A route's session block may take its header or cookie from the
		// defaults'.
		r.checkSession(valueOf(n, "session"), key+".session", route.Settings.Over(file.Defaults).Session)
		r.checkTLS(n, key, route.Endpoints)
	}
}

// checkTLS reports endpoints whose TLS files do not load, or that are not
// https://. n is their route's node.
func (r *reader) checkTLS(n *yaml.Node, key string, list []Endpoint) {
	items, _ := keyNode(n, "endpoints")
	for j, e := range list {
		if e.TLS == nil || items == nil || j >= len(items.Content) {
			continue
		}
		at, where := valueOf(items.Content[j], "tls"), fmt.Sprintf("%s.endpoints[%d].tls", key, j)
		if !strings.HasPrefix(e.URL, "https://") {
			r.at(at, where, "for %q; accepted: tls on https:// endpoints only", e.URL)
			continue
		}
		if _, err := e.TLS.Load(); err != nil {
			r.at(at, where, "%v", err)
		}
	}
}

// checkSession reports a session block that names neither a header nor a
// cookie. n is the block's node.
func (r *reader) checkSession(n *yaml.Node, key string, s *Session) {
	if s != nil && s.Header == nil && s.Cookie == nil {
		r.at(n, key, "no header and no cookie; accepted: header, cookie or both, where a request carries its session id")
	}
}
