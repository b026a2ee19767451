package main

import (
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func cliFlags(t *testing.T) []*kong.Flag {
	t.Helper()
	var cli CLI
	parser, err := newParser(&cli)
	require.NoError(t, err)
	return parser.Model.Flags
}

func TestNormalizeArgs(t *testing.T) {
	t.Parallel()
	flags := cliFlags(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"go-style long flag with separate value", []string{"-endpoints", "http://a"}, []string{"--endpoints=http://a"}},
		{"double dash with equals", []string{"--endpoints=http://a"}, []string{"--endpoints=http://a"}},
		{"short flag", []string{"-e", "http://a"}, []string{"--endpoints=http://a"}},
		{"short flag with equals", []string{"-e=http://a"}, []string{"--endpoints=http://a"}},
		{"short flag beats a prefix", []string{"-t", "2xx"}, []string{"--terminal-responses=2xx"}},
		{"unique prefix", []string{"-endp", "http://a"}, []string{"--endpoints=http://a"}},
		{"a prefix shared with a new flag means the original's", []string{"-log-f", "/tmp/x"}, []string{"--log-file=/tmp/x"}},
		{"a longer prefix reaches the new flag", []string{"-log-fo", "json"}, []string{"--log-format=json"}},
		{"unique prefix of a new flag", []string{"-try", "1s"}, []string{"--try-timeout=1s"}},
		{"boolean short flag takes no value", []string{"-f", "-e", "http://a"}, []string{"--fanout", "--endpoints=http://a"}},
		{"boolean set false", []string{"-log-time=false"}, []string{"--log-time=false"}},
		{"value that starts with a dash", []string{"-log-prefix", "-x-"}, []string{"--log-prefix=-x-"}},
		{"stop-after short", []string{"-s", "5s"}, []string{"--stop-after=5s"}},
		{"help", []string{"-help"}, []string{"--help"}},
		{"everything after -- is left alone", []string{"-f", "--", "-e"}, []string{"--fanout", "--", "-e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := normalizeArgs(tt.args, flags)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestNormalizeArgsRejects(t *testing.T) {
	t.Parallel()
	flags := cliFlags(t)
	tests := []struct {
		name     string
		args     []string
		mentions []string
	}{
		{"ambiguous prefix lists the candidates", []string{"-log"}, []string{"-log: ambiguous", "-log-date", "-log-file", "-log-utc"}},
		{"ambiguous one-letter prefix", []string{"-l=x"}, []string{"-l=x: ambiguous", "-log-level", "-log-prefix"}},
		{"unknown flag", []string{"-bogus"}, []string{"-bogus: unknown flag"}},
		{"a value-taking flag without its value", []string{"-e", "http://a", "-address"}, []string{"-address: needs a value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := normalizeArgs(tt.args, flags)
			require.Error(t, err)
			for _, m := range tt.mentions {
				assert.Contains(t, err.Error(), m)
			}
		})
	}
}
