package canonical

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGetIsHeaderGetForCanonicalNames(t *testing.T) {
	h := http.Header{}
	h.Add("content-type", "text/plain")
	h.Add("Content-Type", "text/html")
	h["Empty"] = []string{}
	for _, name := range []string{"Content-Type", "Empty", "Missing"} {
		assert.Equal(t, h.Get(name), Get(h, name), name)
	}
	assert.Equal(t, "text/plain", Get(h, "Content-Type"))
}
