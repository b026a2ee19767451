package forward

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mustEndpoint parses raw, one endpoint's base URL.
func mustEndpoint(t *testing.T, raw string) endpoints.Endpoint {
	t.Helper()
	list, err := endpoints.Parse(raw)
	require.NoError(t, err, "endpoint %q", raw)
	require.Len(t, list, 1)
	return list[0]
}

// prepared is Prepare's result, addressable.
func prepared(in *http.Request, opts Options) *Request {
	r := Prepare(in, opts)
	return &r
}

// stringBody is a request body with an identity, so tests can tell it apart.
type stringBody struct{ *strings.Reader }

func (*stringBody) Close() error { return nil }

func TestPreparedHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		remoteAddr string
		host       string
		tls        bool
		header     http.Header
		// trusted lists the trusted proxies, comma-separated.
		trusted string
		// want are headers that must have exactly these values.
		want http.Header
		// absent are headers that must not be present at all.
		absent []string
	}{
		{
			name:       "forwarded for a new client",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example:8080",
			header:     http.Header{"Accept": {"application/json"}, "User-Agent": {"curl/8"}},
			want: http.Header{
				"Accept":            {"application/json"},
				"User-Agent":        {"curl/8"},
				"X-Forwarded-For":   {"192.0.2.7"},
				"X-Forwarded-Host":  {"proxy.example:8080"},
				"X-Forwarded-Proto": {"http"},
			},
		},
		{
			name:       "a client's forwarding claims replaced",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header: http.Header{
				"X-Forwarded-For":    {"203.0.113.1, 198.51.100.2"},
				"X-Forwarded-Host":   {"spoofed.example"},
				"X-Forwarded-Proto":  {"https"},
				"X-Forwarded-Port":   {"443"},
				"X-Forwarded-Prefix": {"/admin"},
				"Forwarded":          {"for=10.0.0.1"},
				"X-Real-Ip":          {"10.0.0.1"},
			},
			want: http.Header{
				"X-Forwarded-For":   {"192.0.2.7"},
				"X-Forwarded-Host":  {"proxy.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {"for=192.0.2.7;host=proxy.example;proto=http"},
			},
			absent: []string{"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip"},
		},
		{
			name:       "a trusted proxy's chains extended",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			trusted:    "10.0.0.0/8,192.0.2.7",
			header: http.Header{
				"X-Forwarded-For":   {"203.0.113.1, 198.51.100.2"},
				"X-Forwarded-Host":  {"api.example"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Port":  {"443"},
				"Forwarded":         {"for=203.0.113.1;proto=https"},
			},
			want: http.Header{
				"X-Forwarded-For":   {"203.0.113.1, 198.51.100.2, 192.0.2.7"},
				"X-Forwarded-Host":  {"api.example"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Port":  {"443"},
				"Forwarded":         {"for=203.0.113.1;proto=https, for=192.0.2.7;host=proxy.example;proto=http"},
			},
		},
		{
			name:       "a trusted proxy's chain from several lines",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			trusted:    "192.0.2.0/24",
			header:     http.Header{"X-Forwarded-For": {"203.0.113.1", "198.51.100.2"}},
			want:       http.Header{"X-Forwarded-For": {"203.0.113.1, 198.51.100.2, 192.0.2.7"}},
		},
		{
			name:       "a network that does not hold the client is not trusted",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			trusted:    "192.0.3.0/24,2001:db8::/32",
			header:     http.Header{"X-Forwarded-For": {"203.0.113.1"}},
			want:       http.Header{"X-Forwarded-For": {"192.0.2.7"}},
		},
		{
			name:       "the proxy's own headers cannot be named in Connection",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header: http.Header{
				"Connection": {"X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, Forwarded"},
			},
			want: http.Header{
				"X-Forwarded-For":   {"192.0.2.7"},
				"X-Forwarded-Host":  {"proxy.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {"for=192.0.2.7;host=proxy.example;proto=http"},
			},
			absent: []string{"Connection"},
		},
		{
			name:       "ipv6 client",
			remoteAddr: "[2001:db8::1]:443",
			host:       "proxy.example:8080",
			want: http.Header{
				"X-Forwarded-For": {"2001:db8::1"},
				"Forwarded":       {`for="[2001:db8::1]";host="proxy.example:8080";proto=http`},
			},
		},
		{
			name:       "https inbound",
			remoteAddr: "192.0.2.7:51234",
			host:       "secure.example",
			tls:        true,
			want:       http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"secure.example"}},
		},
		{
			name:       "forwarded proto and host overwritten",
			remoteAddr: "192.0.2.7:51234",
			host:       "real.example",
			header:     http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"spoofed.example"}},
			want:       http.Header{"X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"real.example"}},
		},
		{
			name:       "hop-by-hop removed",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header: http.Header{
				"Connection":          {"keep-alive"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Connection":    {"keep-alive"},
				"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
				"Te":                  {"gzip"},
				"Trailer":             {"X-Checksum"},
				"Transfer-Encoding":   {"chunked"},
				"Upgrade":             {"websocket"},
				"Authorization":       {"Bearer end-to-end"},
			},
			want:   http.Header{"Authorization": {"Bearer end-to-end"}},
			absent: []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"},
		},
		{
			name:       "headers named in Connection removed",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header: http.Header{
				"Connection": {"X-Secret, x-other", "close"},
				"X-Secret":   {"s3cr3t"},
				"X-Other":    {"o"},
				"X-Kept":     {"k"},
			},
			want:   http.Header{"X-Kept": {"k"}},
			absent: []string{"Connection", "X-Secret", "X-Other"},
		},
		{
			name:       "te trailers kept",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header:     http.Header{"Te": {"trailers"}},
			want:       http.Header{"Te": {"trailers"}},
		},
		{
			name:       "te trailers kept among others",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header:     http.Header{"Te": {"gzip, Trailers", "deflate"}},
			want:       http.Header{"Te": {"trailers"}},
		},
		{
			name:       "absent user agent stays empty",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			want:       http.Header{"User-Agent": {""}},
		},
		{
			name:       "empty user agent stays empty",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header:     http.Header{"User-Agent": {""}},
			want:       http.Header{"User-Agent": {""}},
		},
		{
			name:       "unsplittable remote address: claims dropped, nothing added",
			remoteAddr: "pipe",
			host:       "proxy.example",
			header:     http.Header{"X-Forwarded-For": {"203.0.113.1"}, "Forwarded": {"for=203.0.113.1"}},
			absent:     []string{"X-Forwarded-For", "Forwarded", "X-Forwarded-Host"},
		},
		{
			name:       "underscore spellings of the claims dropped",
			remoteAddr: "192.0.2.7:51234",
			host:       "proxy.example",
			header:     http.Header{"X_forwarded_for": {"203.0.113.1"}, "X_real_ip": {"203.0.113.1"}, "X-Forwarded_host": {"evil"}},
			want:       http.Header{"X-Forwarded-For": {"192.0.2.7"}, "X-Forwarded-Host": {"proxy.example"}},
			absent:     []string{"X_forwarded_for", "X_real_ip", "X-Forwarded_host"},
		},
		{
			name:       "no Host: no host in Forwarded",
			remoteAddr: "192.0.2.7:51234",
			want:       http.Header{"Forwarded": {"for=192.0.2.7;proto=http"}},
			absent:     []string{"X-Forwarded-Host"},
		},
		{
			name:       "a host that is no token quoted, its quotes and backslashes escaped",
			remoteAddr: "[2001:db8::1]:51234",
			host:       `odd"host\name`,
			want:       http.Header{"Forwarded": {`for="[2001:db8::1]";host="odd\"host\\name";proto=http`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := mustEndpoint(t, "http://127.0.0.1:9000/base")
			in := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
			in.RemoteAddr = tt.remoteAddr
			in.Host = tt.host
			in.Header = tt.header.Clone()
			if in.Header == nil {
				in.Header = http.Header{}
			}
			if tt.tls {
				in.TLS = &tls.ConnectionState{}
			} else {
				in.TLS = nil
			}
			before := in.Header.Clone()
			trusted, err := ParseTrustedProxies(tt.trusted)
			require.NoError(t, err)

			out := prepared(in, Options{Trusted: trusted}).To(context.Background(), e, 1, nil, 0)

			for name, values := range tt.want {
				got, ok := out.Header[name]
				if assert.True(t, ok, "header %s missing", name) {
					assert.Equal(t, values, got, "header %s", name)
				}
			}
			for _, name := range tt.absent {
				assert.NotContains(t, out.Header, name)
			}
			assert.Equal(t, "127.0.0.1:9000", out.Host)
			assert.Equal(t, before, in.Header, "inbound headers are not modified")
		})
	}
}

func TestPreparedRequest(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	tests := []struct {
		name       string
		method     string
		body       io.ReadCloser
		length     int64
		wantNoBody bool
		wantLength int64
	}{
		{name: "get without body", method: http.MethodGet, body: nil, length: 0, wantNoBody: true, wantLength: 0},
		{name: "nil body with stray length", method: http.MethodDelete, body: nil, length: 12, wantNoBody: true, wantLength: 0},
		{name: "no body", method: http.MethodHead, body: http.NoBody, length: 0, wantNoBody: true, wantLength: 0},
		{name: "post with length", method: http.MethodPost, body: &stringBody{Reader: strings.NewReader("hello")}, length: 5, wantLength: 5},
		{name: "put with unknown length", method: http.MethodPut, body: &stringBody{Reader: strings.NewReader("hello")}, length: -1, wantLength: -1},
		{name: "custom method", method: "PURGE", body: nil, wantNoBody: true, wantLength: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := mustEndpoint(t, "http://127.0.0.1:9000")
			ctx := context.WithValue(context.Background(), ctxKey{}, tt.name)
			in := httptest.NewRequest(tt.method, "/x", nil)
			out := prepared(in, Options{}).To(ctx, e, 1, tt.body, tt.length)
			assert.Equal(t, tt.method, out.Method)
			assert.Equal(t, tt.name, out.Context().Value(ctxKey{}), "the attempt's context is attached")
			assert.Equal(t, tt.wantLength, out.ContentLength)
			if tt.wantNoBody {
				assert.Equal(t, http.NoBody, out.Body)
			} else {
				assert.Same(t, tt.body, out.Body)
			}
			assert.Equal(t, 1, out.ProtoMajor)
			assert.Equal(t, 1, out.ProtoMinor)
		})
	}
}

func TestPreparedLeavesInboundAlone(t *testing.T) {
	t.Parallel()
	e := mustEndpoint(t, "http://127.0.0.1:9000/prefix")
	in := httptest.NewRequest(http.MethodPost, "http://front.example/v1/a%2Fb?q=1", strings.NewReader("x"))
	in.RemoteAddr = "192.0.2.9:1000"
	in.Header.Set("Connection", "X-Secret")
	in.Header.Set("X-Secret", "s")
	in.Header.Set("X-Forwarded-For", "203.0.113.1")
	in.Header.Set("Te", "trailers")
	wantHeader := in.Header.Clone()
	wantURL := in.URL.String()
	wantHost := in.Host

	out := prepared(in, Options{}).To(context.Background(), e, 1, nil, 0)
	// Writing to the outgoing header must not reach the inbound one.
	out.Header.Set("X-Added", "1")

	assert.Equal(t, wantHeader, in.Header)
	assert.Equal(t, wantURL, in.URL.String())
	assert.Equal(t, wantHost, in.Host)
	assert.NotSame(t, in.URL, out.URL)
	assert.Empty(t, in.Header.Get("X-Added"))
	assert.Equal(t, "http://127.0.0.1:9000/prefix/v1/a%2Fb?q=1", out.URL.String())
}

func TestPreparedEndToEnd(t *testing.T) {
	t.Parallel()
	type received struct {
		method, path, rawPath, rawQuery, host, body string
		header                                      http.Header
		contentLength                               int64
	}
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		got <- received{
			method:        r.Method,
			path:          r.URL.Path,
			rawPath:       r.URL.EscapedPath(),
			rawQuery:      r.URL.RawQuery,
			host:          r.Host,
			body:          string(body),
			header:        r.Header.Clone(),
			contentLength: r.ContentLength,
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	require.True(t, strings.HasPrefix(srv.URL, "http://127.0.0.1:"), "server on loopback: %s", srv.URL)

	e := mustEndpoint(t, srv.URL+"/public-apis/")
	transport := wire.New(wire.Options{MaxIdlePerHost: 4})
	t.Cleanup(transport.CloseIdleConnections)

	in := httptest.NewRequest(http.MethodPost, "http://front.example:8080/v1/a%2Fb?a=%20&b=1;c", nil)
	in.RemoteAddr = "192.0.2.7:5555"
	in.Header.Set("X-Forwarded-For", "203.0.113.1")
	in.Header.Set("Connection", "X-Secret")
	in.Header.Set("X-Secret", "s")
	in.Header.Set("Keep-Alive", "timeout=5")
	in.Header.Set("Proxy-Authorization", "Basic eA==")
	in.Header.Set("Upgrade", "h2c")
	in.Header.Set("Te", "trailers")
	in.Header.Set("Content-Type", "text/plain")

	trusted, err := ParseTrustedProxies("192.0.2.0/24")
	require.NoError(t, err)
	out := prepared(in, Options{Trusted: trusted}).To(t.Context(), e, 1, io.NopCloser(strings.NewReader("payload")), int64(len("payload")))
	resp, err := transport.RoundTrip(out)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	r := <-got
	assert.Equal(t, http.MethodPost, r.method)
	assert.Equal(t, "/public-apis/v1/a/b", r.path)
	assert.Equal(t, "/public-apis/v1/a%2Fb", r.rawPath)
	assert.Equal(t, "a=%20&b=1;c", r.rawQuery)
	assert.Equal(t, strings.TrimPrefix(srv.URL, "http://"), r.host)
	assert.Equal(t, "payload", r.body)
	assert.Equal(t, int64(7), r.contentLength)
	assert.Equal(t, "203.0.113.1, 192.0.2.7", r.header.Get("X-Forwarded-For"))
	assert.Equal(t, "front.example:8080", r.header.Get("X-Forwarded-Host"))
	assert.Equal(t, "http", r.header.Get("X-Forwarded-Proto"))
	assert.Equal(t, "text/plain", r.header.Get("Content-Type"))
	assert.Equal(t, "trailers", r.header.Get("Te"))
	assert.NotContains(t, r.header, "User-Agent", "no Go default user agent")
	for _, name := range []string{"X-Secret", "Keep-Alive", "Proxy-Authorization", "Upgrade", "Proxy-Connection"} {
		assert.NotContains(t, r.header, name)
	}
	// The transport may add its own Connection header only to close; it never
	// forwards the client's.
	assert.NotContains(t, r.header.Values("Connection"), "X-Secret")
}

func TestRemoveHopByHop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header http.Header
		want   http.Header
	}{
		{name: "nil", header: nil, want: nil},
		{name: "nothing to remove", header: http.Header{"Accept": {"*/*"}}, want: http.Header{"Accept": {"*/*"}}},
		{
			name: "standard hop-by-hop",
			header: http.Header{
				"Connection":          {"keep-alive"},
				"Proxy-Connection":    {"keep-alive"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Authenticate":  {"Basic"},
				"Proxy-Authorization": {"Basic eA=="},
				"Te":                  {"trailers"},
				"Trailer":             {"X-Checksum"},
				"Transfer-Encoding":   {"chunked"},
				"Upgrade":             {"websocket"},
				"Content-Type":        {"text/plain"},
			},
			want: http.Header{"Content-Type": {"text/plain"}},
		},
		{
			name: "named in connection",
			header: http.Header{
				"Connection": {"X-Secret"},
				"X-Secret":   {"s"},
				"X-Public":   {"p"},
			},
			want: http.Header{"X-Public": {"p"}},
		},
		{
			name: "several names, lines, odd case and spacing",
			header: http.Header{
				"Connection": {" x-one ,X-TWO,, ", "X-Three"},
				"X-One":      {"1"},
				"X-Two":      {"2"},
				"X-Three":    {"3"},
				"X-Four":     {"4"},
			},
			want: http.Header{"X-Four": {"4"}},
		},
		{
			name:   "connection naming an end-to-end header",
			header: http.Header{"Connection": {"Content-Type"}, "Content-Type": {"text/plain"}, "Etag": {`"v1"`}},
			want:   http.Header{"Etag": {`"v1"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			RemoveHopByHop(tt.header)
			assert.Equal(t, tt.want, tt.header)
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,10.1.2.3/8")
	require.NoError(t, err)
	assert.Len(t, trusted, 4)
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"10.255.0.1", true}, {"192.0.2.7", true}, {"192.0.2.8", false},
		{"2001:db8::5", true}, {"::ffff:10.0.0.1", true}, {"11.0.0.1", false},
	} {
		assert.Equal(t, tt.want, trusted.trusts(netip.MustParseAddr(tt.addr)), tt.addr)
	}
	empty, err := ParseTrustedProxies("")
	require.NoError(t, err)
	assert.Empty(t, empty)
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0.1,,10.0.0.2", "10.0.0"} {
		_, err := ParseTrustedProxies(bad)
		assert.ErrorContains(t, err, "accepted:", bad)
	}
}

func TestAnEndpointsOwnHeadersWinOverTheClients(t *testing.T) {
	t.Parallel()
	e := mustEndpoint(t, "http://127.0.0.1:9000")
	e.Header = http.Header{"Authorization": {"Bearer vendor"}, "X-Api-Key": {"k"}}
	other := mustEndpoint(t, "http://127.0.0.1:9001")
	in := httptest.NewRequest(http.MethodGet, "/x", nil)
	in.Header.Set("Authorization", "Bearer client")
	in.Header.Set("X-Kept", "1")
	req := prepared(in, Options{})
	for attempt := 1; attempt <= 2; attempt++ {
		out := req.To(context.Background(), e, attempt, nil, 0)
		assert.Equal(t, []string{"Bearer vendor"}, out.Header["Authorization"], "attempt %d", attempt)
		assert.Equal(t, "k", out.Header.Get("X-Api-Key"))
		assert.Equal(t, "1", out.Header.Get("X-Kept"))
	}
	assert.Equal(t, "Bearer client", req.To(context.Background(), other, 1, nil, 0).Header.Get("Authorization"),
		"another endpoint's attempt keeps the client's")
	assert.Equal(t, "Bearer client", in.Header.Get("Authorization"), "the client's request is left alone")
}

func TestExpectIsDroppedOnceTheBodyIsRead(t *testing.T) {
	t.Parallel()
	e := mustEndpoint(t, "http://127.0.0.1:9000")
	in := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader("payload"))
	in.Header.Set("Expect", "100-continue")
	assert.Empty(t, prepared(in, Options{BodyRead: true}).To(context.Background(), e, 1, nil, 0).Header.Values("Expect"),
		"the server answered the Expect: asking the endpoint again would only wait")
	assert.Equal(t, "100-continue", prepared(in, Options{}).To(context.Background(), e, 1, nil, 0).Header.Get("Expect"),
		"a body not read yet: the endpoint is asked")
	assert.Equal(t, "100-continue", in.Header.Get("Expect"), "the client's request is left alone")
}
