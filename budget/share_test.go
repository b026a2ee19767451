package budget

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseShare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Share
		wantErr string // reason in the error, besides the value and the accepted form
	}{
		{name: "whole percent", in: "5%", want: 0.05},
		{name: "fraction of a percent", in: "0.5%", want: 0.005},
		{name: "zero", in: "0%", want: 0},
		{name: "hundred", in: "100%", want: 1},
		{name: "hundred point zero", in: "100.0%", want: 1},
		{name: "many decimals", in: "12.25%", want: 0.1225},

		{name: "empty", in: "", wantErr: "missing % sign"},
		{name: "missing percent sign", in: "5", wantErr: "missing % sign"},
		{name: "fraction without percent sign", in: "0.05", wantErr: "missing % sign"},
		{name: "negative", in: "-5%", wantErr: "negative"},
		{name: "above hundred", in: "100.5%", wantErr: "above 100%"},
		{name: "far above hundred", in: "250%", wantErr: "above 100%"},
		{name: "bare percent sign", in: "%", wantErr: "not a number"},
		{name: "junk", in: "five%", wantErr: "not a number"},
		{name: "plus sign", in: "+5%", wantErr: "not a number"},
		{name: "exponent", in: "5e1%", wantErr: "not a number"},
		{name: "NaN", in: "NaN%", wantErr: "not a number"},
		{name: "leading dot", in: ".5%", wantErr: "not a number"},
		{name: "trailing dot", in: "5.%", wantErr: "not a number"},
		{name: "space", in: "5 %", wantErr: "not a number"},
		{name: "double percent", in: "5%%", wantErr: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseShare(tt.in)
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.InDelta(t, float64(tt.want), float64(got), 1e-15)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), `"`+tt.in+`"`, "the error names the value")
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Contains(t, err.Error(), "a percentage such as 5% or 0.5%")
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestShareUnmarshalText(t *testing.T) {
	t.Parallel()
	var s Share
	require.NoError(t, s.UnmarshalText([]byte("5%")))
	assert.InDelta(t, 0.05, float64(s), 1e-15)

	require.Error(t, s.UnmarshalText([]byte("5")))
	assert.InDelta(t, 0.05, float64(s), 1e-15, "a failed parse leaves the value alone")
}

func TestShareStringRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"0%", "5%", "0.5%", "7%", "29%", "33.3%", "12.25%", "0.001%", "100%"} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			share, err := ParseShare(in)
			require.NoError(t, err)
			assert.Equal(t, in, share.String())
		})
	}
}
