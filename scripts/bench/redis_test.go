package main

import (
	"net/url"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartRedisServesUntilStopped(t *testing.T) {
	t.Parallel()
	path, err := exec.LookPath("redis-server")
	require.NoError(t, err, "needs redis-server: apt-get install redis-server (scripts/test.sh does)")
	storeURL, stop, err := startRedis(t.Context(), path)
	require.NoError(t, err)
	u, err := url.Parse(storeURL)
	require.NoError(t, err)
	assert.Equal(t, "redis", u.Scheme)
	assert.True(t, redisAnswers(u.Host))
	stop()
	assert.False(t, redisAnswers(u.Host), "stopped")
}

func TestRequestHeader(t *testing.T) {
	t.Parallel()
	assert.Nil(t, requestHeader(""))
	assert.Equal(t, []string{"bench"}, requestHeader("x-session-id: bench")["X-Session-Id"])
}
