package terminal

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAndContains(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		spec        string
		terminal    []int
		nonTerminal []int
	}{
		{"original default", Default, []int{100, 199, 200, 302, 404, 499}, []int{500, 503, 599}},
		{"hundreds", "200,300", []int{200, 299, 301}, []int{100, 404, 500}},
		{"class", "2xx", []int{200, 204, 299}, []int{199, 300, 404}},
		{"upper-case class", "4XX", []int{400, 451}, []int{500}},
		{"single code", "404", []int{404}, []int{400, 403, 405, 200}},
		{"range", "500-503", []int{500, 502, 503}, []int{499, 504}},
		{"mixed with spaces", " 2xx , 404,500-502 ", []int{201, 404, 501}, []int{403, 503}},
		{"unnamed code as a range", "599-599", []int{599}, []int{598}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ranges, err := Parse(tt.spec)
			require.NoError(t, err)
			for _, code := range tt.terminal {
				assert.True(t, ranges.Contains(code), "%d should be terminal under %q", code, tt.spec)
			}
			for _, code := range tt.nonTerminal {
				assert.False(t, ranges.Contains(code), "%d should not be terminal under %q", code, tt.spec)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec, mentions string
	}{
		{"empty", "", "empty"},
		{"blank", "  ", "empty"},
		{"empty element", "200,,300", "empty element"},
		{"not a number", "abc", `"abc"`},
		{"unknown code", "150", "150"},
		{"below range", "99", "99"},
		{"above range", "600", "600"},
		{"beyond any integer", "99999999999999999999", "99999999999999999999 is outside 100-599"},
		{"bad class", "6xx", "6xx"},
		{"bad class digit", "axx", "axx"},
		{"backwards range", "503-500", "503-500"},
		{"range end not a number", "500-x", `"x"`},
		{"range out of bounds", "500-700", "700"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.spec)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.mentions)
			assert.Contains(t, err.Error(), "accepted:")
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestUnmarshalText(t *testing.T) {
	t.Parallel()
	var ranges Ranges
	require.NoError(t, ranges.UnmarshalText([]byte("2xx,404")))
	assert.Equal(t, Ranges{{200, 299}, {404, 404}}, ranges)
	require.Error(t, ranges.UnmarshalText([]byte("nope")))
	assert.Equal(t, Ranges{{200, 299}, {404, 404}}, ranges, "a failed parse leaves the value alone")
}

func TestStringRoundTrips(t *testing.T) {
	t.Parallel()
	ranges, err := Parse("100,2xx,404,500-503")
	require.NoError(t, err)
	assert.Equal(t, "100-199,200-299,404,500-503", ranges.String())
	again, err := Parse(ranges.String())
	require.NoError(t, err)
	assert.Equal(t, ranges, again)
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{Default, "2xx", "404", "500-503", "2xx,404,500-503", "", "abc", "150", "-", "1-", "5xx-"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ranges, err := Parse(spec)
		if err != nil {
			assert.Nil(t, ranges)
			return
		}
		require.NotEmpty(t, ranges)
		for _, r := range ranges {
			assert.GreaterOrEqual(t, r.Lo, minStatus)
			assert.LessOrEqual(t, r.Hi, maxStatus)
			assert.LessOrEqual(t, r.Lo, r.Hi)
			assert.True(t, ranges.Contains(r.Lo))
			assert.True(t, ranges.Contains(r.Hi))
		}
		again, err := Parse(ranges.String())
		require.NoError(t, err, "String() of a parsed spec must parse")
		assert.Equal(t, ranges, again)
	})
}
