package session

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultPrefix is the default prefix of the Redis keys of the pins.
const DefaultPrefix = "brp:session:"

// Redis is a Store in a Redis server (6.2 or newer), shared by every replica
// that uses the same server and key prefix: one key per session id, its value
// the endpoint's URL, its TTL the pin's time-to-live. A lookup is GETEX; the
// first pin (SET NX), a re-pin and a removal are compare-and-set scripts, each
// one round trip, so that concurrent requests of one id in any replica agree
// on one endpoint.
type Redis struct {
	client *redis.Client
	prefix string
	ttl    time.Duration
}

// claimScript sets KEYS[1] to ARGV[1] unless it is set (SET NX), and returns
// the value in force, its TTL (ARGV[2], in milliseconds) refreshed.
var claimScript = redis.NewScript(`
local current = redis.call('GET', KEYS[1])
if current then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	return current
end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return ARGV[1]
`)

// repinScript sets KEYS[1] to ARGV[2] if it is ARGV[1] or missing, and returns
// the value in force; the TTL is ARGV[3] in milliseconds.
var repinScript = redis.NewScript(`
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
	redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
	return ARGV[2]
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return current
`)

// forgetScript deletes KEYS[1] if it is ARGV[1].
var forgetScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// StoreAccepted describes the accepted store specs, for error messages.
const StoreAccepted = "memory, redis://[user:password@]host:port[/db] or rediss://... (Redis over TLS)"

// Open returns the store spec names: "memory", or a Redis URL (see NewRedis).
func Open(spec, prefix string, ttl, timeout time.Duration) (Store, error) {
	if spec == "memory" {
		return NewMemory(ttl, nil), nil
	}
	return NewRedis(spec, prefix, ttl, timeout)
}

// CheckStore reports whether spec names a store, without opening it.
func CheckStore(spec string) error {
	if spec == "memory" {
		return nil
	}
	if _, err := redis.ParseURL(spec); err != nil {
		return fmt.Errorf("%q: %w", Redact(spec), err)
	}
	return nil
}

// NewRedis returns the Redis store at rawURL (redis:// or rediss://, with
// an optional password and database, as redis-cli takes them). Its keys are
// prefix followed by the id; a pin lives ttl after its last use; each call
// gives up after timeout (dial, write and read alike) with no retry, so that a
// request never waits longer for it. It does not connect: the first call does.
func NewRedis(rawURL, prefix string, ttl, timeout time.Duration) (*Redis, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", Redact(rawURL), err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	opts.ContextTimeoutEnabled = true
	// No retry, of a command or of a dial: a retry would outlast the bound,
	// and a refused connection is an answer at once.
	opts.MaxRetries, opts.DialerRetries = -1, 1
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	// Failures come back as errors, which Affinity logs once per change;
	// go-redis's own log would repeat them on stderr at every dial.
	redis.SetLogger(silentLog{})
	return &Redis{client: redis.NewClient(opts), prefix: prefix, ttl: ttl}, nil
}

// silentLog drops go-redis's log lines.
type silentLog struct{}

func (silentLog) Printf(context.Context, string, ...any) {}

// Redact returns rawURL with its password, if any, masked, for logs and
// errors.
func Redact(rawURL string) string {
	if rawURL == "memory" {
		return rawURL
	}
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	return "(a URL that does not parse)"
}

// Lookup implements Store with GETEX, which reads the pin and refreshes its
// TTL in one round trip.
func (s *Redis) Lookup(ctx context.Context, id string) (string, error) {
	endpoint, err := s.client.GetEx(ctx, s.prefix+id, s.ttl).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return endpoint, err
}

// Claim implements Store with a script around SET NX: one round trip that
// either sets the pin or returns (and refreshes) the one set first.
func (s *Redis) Claim(ctx context.Context, id, endpoint string) (string, error) {
	return claimScript.Run(ctx, s.client, []string{s.prefix + id}, endpoint, s.ttl.Milliseconds()).Text()
}

// Repin implements Store with a compare-and-set script.
func (s *Redis) Repin(ctx context.Context, id, from, to string) (string, error) {
	return repinScript.Run(ctx, s.client, []string{s.prefix + id}, from, to, s.ttl.Milliseconds()).Text()
}

// Forget implements Store with a compare-and-delete script.
func (s *Redis) Forget(ctx context.Context, id, endpoint string) error {
	return forgetScript.Run(ctx, s.client, []string{s.prefix + id}, endpoint).Err()
}

// Ping implements Store.
func (s *Redis) Ping(ctx context.Context) error {
	return s.client.Ping(ctx).Err()
}

// Close implements Store.
func (s *Redis) Close() error {
	return s.client.Close()
}
