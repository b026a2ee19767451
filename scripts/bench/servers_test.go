package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// directives returns the configuration's lines, trimmed, without blank ones.
func directives(config string) []string {
	var out []string
	for line := range strings.Lines(config) {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

func TestNginxConfig(t *testing.T) {
	t.Parallel()
	got := directives(nginxConfig(serverConfig{listen: "127.0.0.1:18001", upstream: "127.0.0.1:18002", workers: 2, dir: "/tmp/b/nginx"}))
	for _, want := range []string{
		"worker_processes 2;",
		"daemon off;",
		"pid /tmp/b/nginx/nginx.pid;",
		"error_log stderr warn;",
		"access_log off;",
		"proxy_temp_path /tmp/b/nginx/proxy;",
		"keepalive_requests 1000000;",
		"server 127.0.0.1:18002;",
		"keepalive 128;",
		"listen 127.0.0.1:18001;",
		"proxy_pass http://endpoint;",
		"proxy_http_version 1.1;",
		`proxy_set_header Connection "";`,
	} {
		assert.Contains(t, got, want)
	}
	text := strings.Join(got, "\n")
	assert.Equal(t, strings.Count(text, "{"), strings.Count(text, "}"), "balanced blocks")
	assert.Equal(t, 2, strings.Count(text, "keepalive_requests"), "client and upstream connections")
}

func TestHAProxyConfig(t *testing.T) {
	t.Parallel()
	got := directives(haproxyConfig(serverConfig{listen: "127.0.0.1:18001", upstream: "127.0.0.1:18002", workers: 2}))
	for _, want := range []string{
		"nbthread 2",
		"mode http",
		"http-reuse always",
		"bind 127.0.0.1:18001",
		"server endpoint0 127.0.0.1:18002",
		"timeout client 30s",
	} {
		assert.Contains(t, got, want)
	}
	for _, line := range got {
		assert.False(t, strings.HasPrefix(line, "maxconn"), "HAProxy derives maxconn from the file limit")
		assert.False(t, strings.HasPrefix(line, "log "), "no logging")
	}
}

func TestHostPort(t *testing.T) {
	t.Parallel()
	got, err := hostPort("http://127.0.0.1:18002")
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:18002", got)
	for _, bad := range []string{"https://127.0.0.1:1", "http://127.0.0.1", "::"} {
		_, err := hostPort(bad)
		assert.Error(t, err, bad)
	}
}

func TestEndpointURLs(t *testing.T) {
	t.Parallel()
	eps := []*endpoint{{URL: "http://a:1"}, {URL: "http://b:2"}, {URL: "http://c:3"}}
	assert.Equal(t, []string{"http://a:1", "http://b:2", "http://c:3"}, endpointURLs(eps, 0))
	assert.Equal(t, []string{"http://a:1"}, endpointURLs(eps, 1))
	assert.Equal(t, []string{"http://a:1", "http://b:2"}, endpointURLs(eps, 2))
	assert.Len(t, endpointURLs(eps, 4), 3)
}

func TestServerSpecs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		spec     func(tools, string) (serverSpec, error)
		tools    tools
		wantArgs func(dir string) []string
		wantFile string
		wantLine string
	}{
		{
			name:  "nginx",
			spec:  nginxSpec,
			tools: tools{nginx: "/usr/sbin/nginx"},
			wantArgs: func(dir string) []string {
				return []string{"-p", filepath.Join(dir, "nginx"), "-c", filepath.Join(dir, "nginx", "nginx.conf")}
			},
			wantFile: "nginx/nginx.conf",
			wantLine: "listen 127.0.0.1:18001;",
		},
		{
			name:  "haproxy",
			spec:  haproxySpec,
			tools: tools{haproxy: "/usr/sbin/haproxy"},
			wantArgs: func(dir string) []string {
				return []string{"-f", filepath.Join(dir, "haproxy", "haproxy.cfg"), "-db"}
			},
			wantFile: "haproxy/haproxy.cfg",
			wantLine: "bind 127.0.0.1:18001",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, err := tt.spec(tools{dir: dir}, "http://127.0.0.1:18002")
			var unavailable *UnavailableError
			require.ErrorAs(t, err, &unavailable, "not installed")
			assert.Equal(t, tt.name+" is not installed (apt-get install "+tt.name+")", unavailable.Line)

			tt.tools.dir = dir
			spec, err := tt.spec(tt.tools, "http://127.0.0.1:18002")
			require.NoError(t, err)
			assert.True(t, spec.lastLine, "their alerts come after notices")
			assert.Zero(t, spec.usageStatus)
			args, err := spec.args("127.0.0.1:18001")
			require.NoError(t, err)
			assert.Equal(t, tt.wantArgs(dir), args)
			written, err := os.ReadFile(filepath.Join(dir, tt.wantFile))
			require.NoError(t, err)
			assert.Contains(t, directives(string(written)), tt.wantLine)
			assert.Contains(t, string(written), "127.0.0.1:18002")
		})
	}
}

func TestLookTool(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bench-tool")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755))
	t.Setenv("PATH", dir)
	assert.Equal(t, path, lookTool("bench-tool", false))
	assert.Empty(t, lookTool("bench-no-such-tool", true))
}

func TestLastLine(t *testing.T) {
	t.Parallel()
	haproxy := "[NOTICE]   (24824) : haproxy version is 2.6.12\n[NOTICE]   (24824) : path to executable is /usr/sbin/haproxy\n" +
		"[ALERT]    (24824) : [haproxy.main()] Cannot raise FD limit to 20017, limit is 20000.\n\n"
	assert.Equal(t, "[ALERT]    (24824) : [haproxy.main()] Cannot raise FD limit to 20017, limit is 20000.", lastLine(haproxy))
	assert.Empty(t, lastLine(""))
}
