package h1server

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http/httpguts"
)

// requireParsedAsGoDoes checks that parseHead refuses head or reads it as
// Go's parser does, into a request Go's server would serve. It reports
// whether parseHead took it.
func requireParsedAsGoDoes(t *testing.T, head []byte) bool {
	t.Helper()
	got := new(http.Request)
	if !parseHead(head, got) {
		return false
	}
	want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	require.NoError(t, err, "parseHead took %q", head)
	require.Equal(t, want.Method, got.Method)
	require.Equal(t, want.RequestURI, got.RequestURI)
	require.Equal(t, want.URL, got.URL)
	require.Equal(t, want.Proto, got.Proto)
	require.Equal(t, want.ProtoMajor, got.ProtoMajor)
	require.Equal(t, want.ProtoMinor, got.ProtoMinor)
	require.Equal(t, want.Header, got.Header)
	require.Equal(t, want.Host, got.Host)
	require.Equal(t, want.Close, got.Close)
	require.Equal(t, want.ContentLength, got.ContentLength)
	require.Nil(t, want.TransferEncoding)
	// What Go's server checks beyond its parser.
	require.True(t, httpguts.ValidHostHeader(want.Host))
	for name, values := range want.Header {
		require.True(t, httpguts.ValidHeaderFieldName(name), name)
		for _, v := range values {
			require.True(t, httpguts.ValidHeaderFieldValue(v), v)
		}
	}
	return true
}

// plainHeads are heads the Server reads itself.
var plainHeads = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /p/a%20th?q=1&r=%zz HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
	"POST /form HTTP/1.1\r\nhost: a\r\ncontent-length: 007\r\ncontent-type: text/plain\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [::1]:80\r\nCookie: a=1\r\nCookie: b=2\r\nX-Empty:\r\nX-Tab:\tv\t \r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nCache-Control: max-age=0\r\n\r\n",
	"DELETE /x#frag HTTP/1.1\r\nHost: a\r\nX-lower-case: V\r\nx-LOWER-case: W\r\n\r\n",
}

func TestParseHeadReadsPlainHeadsAsGoDoes(t *testing.T) {
	for _, head := range plainHeads {
		require.True(t, requireParsedAsGoDoes(t, []byte(head)), "not taken: %q", head)
	}
	for _, seed := range requestSeeds {
		head, _, found := strings.Cut(seed, "\r\n\r\n")
		if found {
			requireParsedAsGoDoes(t, []byte(head+"\r\n\r\n"))
		}
	}
}

// FuzzParseHead: whatever head parseHead takes, Go's parser reads the same.
func FuzzParseHead(f *testing.F) {
	for _, head := range plainHeads {
		f.Add([]byte(head))
	}
	for _, seed := range requestSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		// The Server gives parseHead heads that end at their first empty
		// line and have no bare line feed.
		end, _ := headEnd(head, 0)
		if end == 0 {
			return
		}
		requireParsedAsGoDoes(t, head[:end])
	})
}
