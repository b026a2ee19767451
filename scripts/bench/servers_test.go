package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
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

func TestCaddyConfig(t *testing.T) {
	t.Parallel()
	text := caddyConfig(serverConfig{listen: "127.0.0.1:18001", upstream: "127.0.0.1:18002", workers: 2, dir: "/tmp/b \"c\"/caddy"})
	var got struct {
		Admin struct {
			Disabled bool
			Config   struct{ Persist *bool }
		}
		Logging struct {
			Logs map[string]struct{ Level string }
		}
		Storage struct{ Module, Root string }
		Apps    struct {
			HTTP struct {
				Servers map[string]struct {
					Listen         []string
					AutomaticHTTPS struct{ Disable bool } `json:"automatic_https"`
					Logs           any
					Routes         []struct {
						Handle []struct {
							Handler   string
							Transport struct {
								Protocol  string
								KeepAlive struct {
									MaxIdleConnsPerHost int `json:"max_idle_conns_per_host"`
								} `json:"keep_alive"`
							}
							Upstreams []struct{ Dial string }
						}
					}
				}
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(text), &got), text)
	assert.True(t, got.Admin.Disabled, "no admin API")
	require.NotNil(t, got.Admin.Config.Persist)
	assert.False(t, *got.Admin.Config.Persist, "no autosave to the home directory")
	assert.Equal(t, "WARN", got.Logging.Logs["default"].Level)
	assert.Equal(t, "/tmp/b \"c\"/caddy/data", got.Storage.Root, "quoted")
	require.Len(t, got.Apps.HTTP.Servers, 1)
	for _, server := range got.Apps.HTTP.Servers {
		assert.Equal(t, []string{"127.0.0.1:18001"}, server.Listen, "loopback only")
		assert.True(t, server.AutomaticHTTPS.Disable)
		assert.Nil(t, server.Logs, "no access log")
		require.Len(t, server.Routes, 1)
		require.Len(t, server.Routes[0].Handle, 1)
		h := server.Routes[0].Handle[0]
		assert.Equal(t, "reverse_proxy", h.Handler)
		assert.Equal(t, "http", h.Transport.Protocol)
		assert.Equal(t, caddyIdleConns, h.Transport.KeepAlive.MaxIdleConnsPerHost)
		require.Len(t, h.Upstreams, 1)
		assert.Equal(t, "127.0.0.1:18002", h.Upstreams[0].Dial)
	}
}

func TestNamedVersion(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "nginx version: nginx/1.22.1", namedVersion("nginx", "nginx version: nginx/1.22.1"))
	assert.Equal(t, "HAProxy version 2.6.12-1 2023/04/01", namedVersion("haproxy", "HAProxy version 2.6.12-1 2023/04/01"))
	assert.Equal(t, "caddy 2.6.2", namedVersion("caddy", "2.6.2"))
	assert.Equal(t, "caddy v2.7.6", namedVersion("caddy", "v2.7.6 h1:w0NymbG2m9PcvKWsrXO6EEkY9Ru4FJK8uQbYcev1p3A="))
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
		{
			name:  "caddy",
			spec:  caddySpec,
			tools: tools{caddy: "/usr/bin/caddy"},
			wantArgs: func(dir string) []string {
				return []string{"run", "--config", filepath.Join(dir, "caddy", "caddy.json")}
			},
			wantFile: "caddy/caddy.json",
			wantLine: `"listen": ["127.0.0.1:18001"],`,
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

// TestInstalledServers starts each server that is installed in front of an
// endpoint, checks that it forwards, and that its CPU sample holds its
// processes: nginx's master and its workers.
func TestInstalledServers(t *testing.T) {
	if testing.Short() || !haveProc() {
		t.Skip("starts real servers and reads /proc")
	}
	e := startedEndpoint(t, Model{})
	tl := tools{nginx: lookTool("nginx", true), haproxy: lookTool("haproxy", true), caddy: lookTool("caddy", true), dir: t.TempDir()}
	for _, tt := range []struct {
		server    string
		processes int
	}{
		{server: serverNginx, processes: 1 + serverWorkers()},
		{server: serverHAProxy, processes: 1},
		{server: serverCaddy, processes: 1},
	} {
		t.Run(tt.server, func(t *testing.T) {
			rn := &runner{tools: tl}
			server, err := rn.startServer(t.Context(), row{server: tt.server, endpoints: 1}, []*endpoint{e})
			var unavailable *UnavailableError
			if errors.As(err, &unavailable) {
				t.Skip(unavailable.Line)
			}
			require.NoError(t, err)
			defer server.stop()
			before := e.received.Load()
			resp, err := http.Get(server.URL() + "/bench")
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, before+1, e.received.Load(), "forwarded to the endpoint")
			sample, err := cpuTargetOf(server).sample()
			require.NoError(t, err)
			assert.Len(t, sample, tt.processes)
			server.stop()
			assert.True(t, server.hasExited(), "stopped by its PID")
		})
	}
}
