package config

import (
	"crypto/sha256"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/hedge"
	"balancing-reverse-proxy/internal/bytesize"
	"balancing-reverse-proxy/session"
	"balancing-reverse-proxy/terminal"
)

// File is a configuration file: the listener, the settings every route
// inherits, and the routes.
type File struct {
	// Listen is the address the proxy listens on, as --address.
	Listen string `yaml:"listen"`
	// Admin is the admin listener's address, as --admin-address.
	Admin string `yaml:"admin"`
	// Defaults are the settings of every route that does not set its own.
	Defaults Settings `yaml:"defaults"`
	// Routes are the routes, in the order of the file.
	Routes []Route `yaml:"routes"`
	// Digest is the SHA-256 of the bytes the file was read from, so that a
	// reload can tell a file that changed from one that did not.
	Digest [sha256.Size]byte `yaml:"-"`
}

// Settings are what a route may set, each as its flag does; nil is unset
// (inherited from the defaults, then from the flags).
type Settings struct {
	Mode                *Mode                  `yaml:"mode"`
	Hedge               *Hedge                 `yaml:"hedge"`
	Terminal            *Text[terminal.Ranges] `yaml:"terminal"`
	Timeout             *Duration              `yaml:"timeout"`
	TryTimeout          *Duration              `yaml:"try_timeout"`
	ResponseIdleTimeout *Duration              `yaml:"response_idle_timeout"`
	Order               *Text[endpoints.Order] `yaml:"order"`
	MaxAttempts         *Count                 `yaml:"max_attempts"`
	IdempotentOnly      *bool                  `yaml:"idempotent_only"`
	MaxInflight         *Count                 `yaml:"max_inflight"`
	Eject               *Eject                 `yaml:"eject"`
	Health              *Health                `yaml:"health"`
	MaxBodyBuffer       *Text[bytesize.Size]   `yaml:"max_body_buffer"`
	DebugHeaders        *bool                  `yaml:"debug_headers"`
	Session             *Session               `yaml:"session"`
}

// Hedge is hedged mode's delay and budget, as --hedge-delay and
// --hedge-budget.
type Hedge struct {
	Delay    *Text[hedge.Spec]   `yaml:"delay"`
	DelayMin *Duration           `yaml:"delay_min"`
	DelayMax *Duration           `yaml:"delay_max"`
	Budget   *Text[budget.Share] `yaml:"budget"`
}

// Eject is when endpoints are ejected, as --eject-after, --eject-backoff and
// --eject-backoff-max.
type Eject struct {
	After      *Count    `yaml:"after"`
	Backoff    *Duration `yaml:"backoff"`
	BackoffMax *Duration `yaml:"backoff_max"`
}

// Health is the active health check, as --health-path and --health-interval.
type Health struct {
	Path     *string   `yaml:"path"`
	Interval *Duration `yaml:"interval"`
}

// Session is session affinity, as the --session-* flags.
type Session struct {
	Header       *Token                  `yaml:"header"`
	Cookie       *Token                  `yaml:"cookie"`
	Unknown      *Text[session.Unknown]  `yaml:"unknown"`
	Required     *bool                   `yaml:"required"`
	Failover     *Text[session.Failover] `yaml:"failover"`
	TTL          *Duration               `yaml:"ttl"`
	Store        *string                 `yaml:"store"`
	StorePrefix  *string                 `yaml:"store_prefix"`
	StoreTimeout *Duration               `yaml:"store_timeout"`
}

// Route is one route of the file: which requests it takes (Match), and either
// its endpoints with its settings or a redirect.
type Route struct {
	Name        string     `yaml:"name"`
	Match       Match      `yaml:"match"`
	StripPrefix bool       `yaml:"strip_prefix"`
	Endpoints   []Endpoint `yaml:"endpoints"`
	Redirect    *Redirect  `yaml:"redirect"`
	Settings    `yaml:",inline"`
	// Line is the route's line in the file, for problems found later.
	Line int `yaml:"-"`
}

// Match is what a route takes: a host, a path prefix, or both.
type Match struct {
	Host string `yaml:"host"`
	Path string `yaml:"path"`
}

// Redirect sends a route's requests elsewhere.
type Redirect struct {
	To     string `yaml:"to"`
	Status int    `yaml:"status"`
}

// Endpoint is one endpoint of a route. A bare URL in the file is short for an
// Endpoint with only its URL.
type Endpoint struct {
	URL string `yaml:"url"`
	// Headers are set on every attempt to the endpoint, over the client's
	// headers of the same names.
	Headers map[string]HeaderValue `yaml:"headers"`
	// Weight is the endpoint's share under order: weighted (default 1).
	Weight *Weight `yaml:"weight"`
	// MaxInflight is the endpoint's own in-flight cap, over the route's.
	MaxInflight *Count `yaml:"max_inflight"`
	// TLS is how the endpoint's TLS is checked, if not by the system's roots.
	TLS *TLS `yaml:"tls"`
}

// TLS is an https:// endpoint's TLS: the roots its certificate is checked
// against, the client certificate the proxy shows it, the name it checks.
type TLS struct {
	// CA is a PEM file of the certificates that sign the endpoint's.
	CA string `yaml:"ca"`
	// Cert and Key are PEM files of a client certificate and its key.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName is the name the endpoint's certificate is checked for, if
	// not its URL's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify checks nothing of the endpoint's certificate.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}
