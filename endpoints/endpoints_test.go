package endpoints

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustParse(t *testing.T, spec string) List {
	t.Helper()
	list, err := Parse(spec)
	require.NoError(t, err, "spec %q", spec)
	return list
}

func mustEndpoint(t *testing.T, raw string) Endpoint {
	t.Helper()
	list := mustParse(t, raw)
	require.Len(t, list, 1)
	return list[0]
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{name: "one http", spec: "http://localhost:8000", want: []string{"http://localhost:8000"}},
		{name: "https without port", spec: "https://api.example.com", want: []string{"https://api.example.com"}},
		{name: "h2c", spec: "h2c://10.0.0.1:8000/p", want: []string{"h2c://10.0.0.1:8000/p"}},
		{name: "path prefix", spec: "http://host/public-apis", want: []string{"http://host/public-apis"}},
		{name: "path prefix with trailing slash", spec: "http://host:81/p/", want: []string{"http://host:81/p/"}},
		{name: "ipv6 literal", spec: "http://[::1]:8080", want: []string{"http://[::1]:8080"}},
		{name: "port bounds", spec: "http://a:1,http://b:65535", want: []string{"http://a:1", "http://b:65535"}},
		{
			name: "several",
			spec: "http://a:8000,https://b/prefix,http://127.0.0.1:9000",
			want: []string{"http://a:8000", "https://b/prefix", "http://127.0.0.1:9000"},
		},
		{
			name: "spaces around commas",
			spec: "  http://a:8000 ,\thttps://b  , http://c ",
			want: []string{"http://a:8000", "https://b", "http://c"},
		},
		{name: "upper-case scheme", spec: "HTTP://a:8000,HttpS://b", want: []string{"http://a:8000", "https://b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := Parse(tt.spec)
			require.NoError(t, err)
			require.Len(t, list, len(tt.want))
			for i, e := range list {
				assert.Equal(t, i, e.Index, "index of %s", e)
				require.NotNil(t, e.URL)
				assert.Equal(t, tt.want[i], e.String())
				assert.Contains(t, []string{"http", "https", "h2c"}, e.URL.Scheme)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		// wantIn are substrings the error must contain, besides "accepted:".
		wantIn []string
	}{
		{name: "empty spec", spec: "", wantIn: []string{"no endpoints"}},
		{name: "blank spec", spec: "  \t ", wantIn: []string{"no endpoints"}},
		{name: "empty element", spec: "http://a,,http://b", wantIn: []string{`endpoint 1 ""`, "empty endpoint"}},
		{name: "trailing comma", spec: "http://a,", wantIn: []string{`endpoint 1 ""`, "empty endpoint"}},
		{name: "bad second element", spec: "http://a,ftp://b", wantIn: []string{`endpoint 1 "ftp://b"`, `unknown scheme "ftp"`}},
		// url.Parse reads "localhost:8000" as scheme "localhost" with opaque
		// "8000"; the message must say what is missing, not blame a scheme.
		{name: "host and port without scheme", spec: "localhost:8000", wantIn: []string{`"localhost:8000"`, "no scheme"}},
		// url.Parse fails on this one ("first path segment cannot contain colon").
		{name: "ip and port without scheme", spec: "127.0.0.1:8000", wantIn: []string{`"127.0.0.1:8000"`, "no scheme"}},
		{name: "bare host", spec: "localhost", wantIn: []string{`"localhost"`, "no scheme"}},
		{name: "scheme-relative", spec: "//host:80", wantIn: []string{`"//host:80"`, "no scheme"}},
		{name: "unknown scheme", spec: "ftp://host", wantIn: []string{`"ftp://host"`, `unknown scheme "ftp"`}},
		{name: "no host", spec: "http://", wantIn: []string{`"http://"`, "no host"}},
		{name: "no host with path", spec: "http:///path", wantIn: []string{`"http:///path"`, "no host"}},
		{name: "scheme without slashes", spec: "http:host", wantIn: []string{`"http:host"`, "must start with http:// or https://"}},
		{name: "scheme with one slash", spec: "https:/host", wantIn: []string{`"https:/host"`, "must start with http:// or https://"}},
		{name: "port only", spec: "http://:8080", wantIn: []string{`"http://:8080"`, "no host"}},
		{name: "credentials", spec: "http://user:pw@host", wantIn: []string{`"http://user:pw@host"`, "credentials"}},
		{name: "user only", spec: "http://user@host", wantIn: []string{`"http://user@host"`, "credentials"}},
		{name: "query", spec: "http://host/p?a=1", wantIn: []string{`"http://host/p?a=1"`, "query"}},
		{name: "empty query", spec: "http://host?", wantIn: []string{`"http://host?"`, "query"}},
		{name: "fragment", spec: "http://host/p#frag", wantIn: []string{`"http://host/p#frag"`, "fragment"}},
		{name: "port zero", spec: "http://host:0", wantIn: []string{`"http://host:0"`, `port "0"`}},
		{name: "port too big", spec: "http://host:70000", wantIn: []string{`"http://host:70000"`, `port "70000"`}},
		{name: "port not numeric", spec: "http://host:abc", wantIn: []string{`"http://host:abc"`, "port"}},
		{name: "unparseable", spec: "http://[::1", wantIn: []string{`"http://[::1"`, "]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := Parse(tt.spec)
			require.Error(t, err)
			assert.Nil(t, list)
			msg := err.Error()
			assert.Contains(t, msg, "accepted:")
			assert.NotContains(t, msg, "\n")
			for _, want := range tt.wantIn {
				assert.Contains(t, msg, want)
			}
		})
	}
}

func TestListUnmarshalText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		want    []string
		wantErr string
	}{
		{name: "two", text: "http://a:1, https://b/p", want: []string{"http://a:1", "https://b/p"}},
		{name: "bad", text: "http://a:1,ftp://b", wantErr: `unknown scheme "ftp"`},
		{name: "empty", text: "", wantErr: "no endpoints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prior := List{{Index: 7, URL: &url.URL{Scheme: "http", Host: "prior"}}}
			list := prior
			err := list.UnmarshalText([]byte(tt.text))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Equal(t, prior, list, "a failed unmarshal leaves the list alone")
				return
			}
			require.NoError(t, err)
			require.Len(t, list, len(tt.want))
			for i, e := range list {
				assert.Equal(t, i, e.Index)
				assert.Equal(t, tt.want[i], e.String())
			}
		})
	}
}

func TestURLFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		endpoint    string
		target      string
		wantPath    string
		wantEscaped string
		wantQuery   string
		wantURL     string
	}{
		{
			name:        "prefix",
			endpoint:    "http://host:8000/public-apis",
			target:      "/v1/x?a=1",
			wantPath:    "/public-apis/v1/x",
			wantEscaped: "/public-apis/v1/x",
			wantQuery:   "a=1",
			wantURL:     "http://host:8000/public-apis/v1/x?a=1",
		},
		{
			name:        "prefix with trailing slash",
			endpoint:    "http://host:8000/public-apis/",
			target:      "/v1/x?a=1",
			wantPath:    "/public-apis/v1/x",
			wantEscaped: "/public-apis/v1/x",
			wantQuery:   "a=1",
			wantURL:     "http://host:8000/public-apis/v1/x?a=1",
		},
		{
			name:        "no prefix",
			endpoint:    "http://host:8000",
			target:      "/v1/x",
			wantPath:    "/v1/x",
			wantEscaped: "/v1/x",
			wantURL:     "http://host:8000/v1/x",
		},
		{
			name:        "root slash prefix",
			endpoint:    "https://host/",
			target:      "/v1/x",
			wantPath:    "/v1/x",
			wantEscaped: "/v1/x",
			wantURL:     "https://host/v1/x",
		},
		{
			name:        "root request under prefix",
			endpoint:    "http://host/p",
			target:      "/",
			wantPath:    "/p/",
			wantEscaped: "/p/",
			wantURL:     "http://host/p/",
		},
		{
			name:        "escaped slash kept",
			endpoint:    "http://host/pre",
			target:      "/a%2Fb",
			wantPath:    "/pre/a/b",
			wantEscaped: "/pre/a%2Fb",
			wantURL:     "http://host/pre/a%2Fb",
		},
		{
			name:        "escaped space kept",
			endpoint:    "http://host",
			target:      "/a%20b/c",
			wantPath:    "/a b/c",
			wantEscaped: "/a%20b/c",
			wantURL:     "http://host/a%20b/c",
		},
		{
			name:        "raw query byte for byte",
			endpoint:    "http://host/p",
			target:      "/x?a=%20&b=1;c",
			wantPath:    "/p/x",
			wantEscaped: "/p/x",
			wantQuery:   "a=%20&b=1;c",
			wantURL:     "http://host/p/x?a=%20&b=1;c",
		},
		{
			name:        "repeated and unsorted query",
			endpoint:    "http://host",
			target:      "/x?b=2&a=1&b=1",
			wantPath:    "/x",
			wantEscaped: "/x",
			wantQuery:   "b=2&a=1&b=1",
			wantURL:     "http://host/x?b=2&a=1&b=1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := mustEndpoint(t, tt.endpoint)
			configured := e.URL.String()
			target, err := url.ParseRequestURI(tt.target)
			require.NoError(t, err)
			joined := e.URLFor(target)
			assert.Equal(t, tt.wantPath, joined.Path)
			assert.Equal(t, tt.wantEscaped, joined.EscapedPath())
			assert.Equal(t, tt.wantQuery, joined.RawQuery)
			assert.Equal(t, tt.wantURL, joined.String())
			assert.Equal(t, configured, e.URL.String(), "the endpoint's URL is not modified")
			assert.NotSame(t, e.URL, joined)
		})
	}
}
