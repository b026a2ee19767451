package endpoints

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzParse checks that whatever an endpoint list and a request path are,
// Parse either refuses the list with a one-line error or accepts only http(s)
// URLs with a host, and URLFor gives a request path a URL at that host whose
// path starts with the endpoint's prefix.
func FuzzParse(f *testing.F) {
	seeds := []struct{ list, path string }{
		{"http://127.0.0.1:8000", "/"},
		{"https://two.com/public-apis", "/v1/x?a=1"},
		{"http://a,https://b/c/", "/a%2Fb?q=%20"},
		{"localhost:8000", "/"},
		{"http://[::1]:80/p", "/x"},
		{"ftp://x", "/"},
		{"http://", ""},
		{"http://u:p@h", "/"},
	}
	for _, seed := range seeds {
		f.Add(seed.list, seed.path)
	}
	f.Fuzz(func(t *testing.T, list, path string) {
		parsed, err := Parse(list)
		if err != nil {
			assert.NotContains(t, err.Error(), "\n")
			assert.Contains(t, err.Error(), "accepted:")
			return
		}
		in, err := http.NewRequest(http.MethodGet, "http://client.example"+path, nil)
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		for i, e := range parsed {
			require.Equal(t, i, e.Index)
			require.Contains(t, []string{"http", "https"}, e.URL.Scheme)
			require.NotEmpty(t, e.URL.Hostname())
			joined := e.URLFor(in.URL)
			assert.Equal(t, e.URL.Host, joined.Host)
			assert.True(t, strings.HasPrefix(joined.Path, strings.TrimSuffix(e.URL.Path, "/")), "path %q outside prefix %q", joined.Path, e.URL.Path)
			assert.Equal(t, in.URL.RawQuery, joined.RawQuery)
		}
	})
}
