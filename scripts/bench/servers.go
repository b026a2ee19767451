package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Servers a row can put in front of the endpoints; the zero value is the proxy.
const (
	serverProxy   = ""
	serverNginx   = "nginx"
	serverHAProxy = "haproxy"
	serverCaddy   = "caddy"
)

// tools are the programs the overhead scenario runs besides the proxy. An
// empty path is a program that is not installed.
type tools struct {
	wrk, nginx, haproxy, caddy, redis string
	// dir is a directory of the harness's own for the servers' configurations;
	// wrkScript is the path of wrkScript in it.
	dir       string
	wrkScript string
}

// lookTool returns the path of the program name: on PATH, or for a server
// also in the sbin directories, which a user's PATH often lacks. It returns
// "" when there is none.
func lookTool(name string, sbin bool) string {
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if !sbin {
		return ""
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return path
		}
	}
	return ""
}

// toolVersion returns the first line that path prints for args, such as
// "nginx version: nginx/1.22.1", or "" when it prints nothing in time.
func toolVersion(ctx context.Context, path string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	setParentDeathSignal(cmd)
	// Some print their version to stderr, and wrk exits 1 after it.
	out, _ := cmd.CombinedOutput()
	return firstLine(string(out))
}

// serverWorkers is how many worker processes nginx and threads HAProxy get:
// as many as the CPUs, which is what the proxy gets too (Go's GOMAXPROCS).
// Each of the three can then use the whole machine, as wrk and the endpoint
// can; one worker would cap nginx and HAProxy at one core against a proxy
// that has two, and more than the CPUs would only add switching.
func serverWorkers() int {
	return runtime.NumCPU()
}

// serverConfig is what the nginx, HAProxy and Caddy configurations are made
// from.
type serverConfig struct {
	// listen is the address to listen on, 127.0.0.1:port; upstream is the
	// endpoint's, host:port.
	listen, upstream string
	workers          int
	// dir holds nginx's pid file and temporary directories, and Caddy's
	// storage.
	dir string
}

// keepaliveRequests lifts nginx's limit of 1,000 requests per keep-alive
// connection (client and upstream), which neither the proxy nor HAProxy has:
// the comparison is of forwarding on warm connections, not of reconnecting.
const keepaliveRequests = 1_000_000

// nginxConfig returns an nginx configuration that forwards every request to
// the upstream over keep-alive connections, loopback only, logging errors
// only, in the foreground (so that the harness can stop it by its PID).
func nginxConfig(c serverConfig) string {
	return fmt.Sprintf(`# Written by scripts/bench for the overhead scenario.
worker_processes %[3]d;
daemon off;
pid %[4]s/nginx.pid;
error_log stderr warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path %[4]s/client_body;
    proxy_temp_path %[4]s/proxy;
    fastcgi_temp_path %[4]s/fastcgi;
    uwsgi_temp_path %[4]s/uwsgi;
    scgi_temp_path %[4]s/scgi;
    keepalive_requests %[5]d;
    upstream endpoint {
        server %[2]s;
        keepalive 128;
        keepalive_requests %[5]d;
    }
    server {
        listen %[1]s;
        location / {
            proxy_pass http://endpoint;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
`, c.listen, c.upstream, c.workers, c.dir, keepaliveRequests)
}

// haproxyConfig returns an HAProxy configuration that forwards every request
// to the upstream, reusing idle server connections for any client
// (http-reuse always), loopback only, without logging. It leaves maxconn to
// HAProxy, which derives it from the file limit: a maxconn the hard limit
// cannot hold is fatal.
func haproxyConfig(c serverConfig) string {
	return fmt.Sprintf(`# Written by scripts/bench for the overhead scenario.
global
    nbthread %[3]d
defaults
    mode http
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind %[1]s
    default_backend endpoint
backend endpoint
    server endpoint0 %[2]s
`, c.listen, c.upstream, c.workers)
}

// caddyIdleConns is how many idle connections to the endpoint Caddy keeps:
// nginx's keepalive 128 rather than Caddy's default of 32, which is fewer
// than wrk's connections, so that Caddy too forwards on warm connections.
const caddyIdleConns = 128

// caddyConfig returns a Caddy JSON configuration that forwards every request
// to the upstream over keep-alive connections (Caddy's reverse_proxy keeps
// them by default), loopback only, without the admin API or automatic HTTPS,
// logging warnings only (Caddy has no access log unless asked), and saving
// nothing outside dir: the Caddyfile of Caddy 2.6 cannot turn off the
// autosave of the configuration to the user's home, which JSON can.
func caddyConfig(c serverConfig) string {
	return fmt.Sprintf(`{
  "admin": {"disabled": true, "config": {"persist": false}},
  "logging": {"logs": {"default": {"writer": {"output": "stderr"}, "level": "WARN"}}},
  "storage": {"module": "file_system", "root": %[3]s},
  "apps": {
    "http": {
      "grace_period": "5s",
      "servers": {
        "bench": {
          "listen": [%[1]s],
          "automatic_https": {"disable": true},
          "routes": [{
            "handle": [{
              "handler": "reverse_proxy",
              "transport": {
                "protocol": "http",
                "keep_alive": {"idle_timeout": "2m", "max_idle_conns": %[4]d, "max_idle_conns_per_host": %[4]d}
              },
              "upstreams": [{"dial": %[2]s}]
            }]
          }]
        }
      }
    }
  }
}
`, jsonString(c.listen), jsonString(c.upstream), jsonString(filepath.Join(c.dir, "data")), caddyIdleConns)
}

// jsonString returns s as a JSON string, quoted.
func jsonString(s string) string {
	// Marshalling a string cannot fail: invalid UTF-8 becomes U+FFFD.
	b, _ := json.Marshal(s)
	return string(b)
}

// hostPort returns the host:port of an endpoint's base URL.
func hostPort(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" || u.Port() == "" {
		return "", fmt.Errorf("endpoint %q: want http://host:port", baseURL)
	}
	return u.Host, nil
}

// installHint is what a row of a missing server says.
func installHint(name string) string {
	return fmt.Sprintf("%s is not installed (apt-get install %s)", name, name)
}

// nginxSpec starts nginx in the foreground (daemon off) with a configuration
// written to t.dir/nginx; it stops with its workers on SIGTERM to its PID.
func nginxSpec(t tools, upstreamURL string) (serverSpec, error) {
	return configuredSpec(configured{
		name: "nginx", pkg: "nginx", path: t.nginx, dir: filepath.Join(t.dir, "nginx"), file: "nginx.conf",
		config: nginxConfig,
		args:   func(dir, conf string) []string { return []string{"-p", dir, "-c", conf} },
	}, upstreamURL)
}

// haproxySpec starts HAProxy in the foreground (-db) with a configuration
// written to t.dir/haproxy.
func haproxySpec(t tools, upstreamURL string) (serverSpec, error) {
	return configuredSpec(configured{
		name: "HAProxy", pkg: "haproxy", path: t.haproxy, dir: filepath.Join(t.dir, "haproxy"), file: "haproxy.cfg",
		config: haproxyConfig,
		args:   func(_, conf string) []string { return []string{"-f", conf, "-db"} },
	}, upstreamURL)
}

// caddySpec starts Caddy in the foreground (caddy run) with a JSON
// configuration written to t.dir/caddy; it stops on SIGTERM to its PID.
func caddySpec(t tools, upstreamURL string) (serverSpec, error) {
	return configuredSpec(configured{
		name: "Caddy", pkg: "caddy", path: t.caddy, dir: filepath.Join(t.dir, "caddy"), file: "caddy.json",
		config: caddyConfig,
		args:   func(_, conf string) []string { return []string{"run", "--config", conf} },
	}, upstreamURL)
}

// configured is a server that reads a configuration file.
type configured struct {
	// name is the server's in messages, pkg its Debian package; path is ""
	// when it is not installed.
	name, pkg, path string
	// dir holds the configuration file, named file.
	dir, file string
	config    func(serverConfig) string
	// args returns the command line for dir and the configuration's path.
	args func(dir, conf string) []string
}

// configuredSpec returns the spec of c in front of the endpoint at
// upstreamURL, which writes c's configuration for each address it is started
// on. A server that is not installed gives an *UnavailableError.
func configuredSpec(c configured, upstreamURL string) (serverSpec, error) {
	if c.path == "" {
		return serverSpec{}, &UnavailableError{Line: installHint(c.pkg)}
	}
	upstream, err := hostPort(upstreamURL)
	if err != nil {
		return serverSpec{}, err
	}
	return serverSpec{
		name:     c.name,
		path:     c.path,
		lastLine: true,
		args: func(addr string) ([]string, error) {
			conf := filepath.Join(c.dir, c.file)
			text := c.config(serverConfig{listen: addr, upstream: upstream, workers: serverWorkers(), dir: c.dir})
			if err := writeConfig(c.dir, conf, text); err != nil {
				return nil, err
			}
			return c.args(c.dir, conf), nil
		},
	}, nil
}

// writeConfig writes text to path, creating dir. The directory is readable by
// all because nginx started as root runs its workers as nobody.
func writeConfig(dir, path, text string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// endpointURLs returns the base URLs of the first n endpoints, or of all when
// n is 0.
func endpointURLs(eps []*endpoint, n int) []string {
	if n <= 0 || n > len(eps) {
		n = len(eps)
	}
	urls := make([]string, n)
	for i, e := range eps[:n] {
		urls[i] = e.URL
	}
	return urls
}

// startServer starts the row's server in front of its endpoints and returns
// once it answers. A server that is not installed, or a proxy that rejects
// the row's flags, gives an *UnavailableError.
func (rn *runner) startServer(ctx context.Context, rw row, eps []*endpoint) (*proxyProcess, error) {
	urls := endpointURLs(eps, rw.endpoints)
	if rw.h2c {
		for i, url := range urls {
			urls[i] = "h2c://" + strings.TrimPrefix(url, "http://")
		}
	}
	var spec serverSpec
	var err error
	switch rw.server {
	case serverProxy:
		binary := rw.binary
		if binary == "" {
			binary = rn.proxyPath
		}
		args := rw.proxyArgs
		if rw.redis {
			if rn.redisURL == "" {
				return nil, &UnavailableError{Line: "redis-server not installed: apt-get install redis-server"}
			}
			args = append(slices.Clip(args), "-session-store", rn.redisURL)
		}
		return startProxy(ctx, binary, urls, args)
	case serverNginx:
		spec, err = nginxSpec(rn.tools, urls[0])
	case serverHAProxy:
		spec, err = haproxySpec(rn.tools, urls[0])
	case serverCaddy:
		spec, err = caddySpec(rn.tools, urls[0])
	default:
		err = fmt.Errorf("unknown server %q", rw.server)
	}
	if err != nil {
		return nil, err
	}
	return startServer(ctx, spec)
}

// describeTools returns a line naming each tool and its version, or that it
// is missing.
func describeTools(ctx context.Context, t tools) string {
	describe := func(name, path string, args ...string) string {
		if path == "" {
			return name + " not installed"
		}
		if v := toolVersion(ctx, path, args...); v != "" {
			return namedVersion(name, v)
		}
		return path
	}
	return strings.Join([]string{
		describe("wrk", t.wrk, "-v"),
		describe("nginx", t.nginx, "-v"),
		describe("haproxy", t.haproxy, "-v"),
		describe("caddy", t.caddy, "version"),
	}, "; ")
}

// namedVersion returns the version line a tool printed, led by the tool's
// name if it does not say it: "caddy version" prints only "v2.6.2" and, in
// an official build, a module hash, which is left out.
func namedVersion(name, line string) string {
	if strings.Contains(strings.ToLower(line), strings.ToLower(name)) {
		return line
	}
	return name + " " + strings.Fields(line)[0]
}
