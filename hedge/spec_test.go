package hedge

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Spec
		wantErr string // substring of the error besides the value and the accepted forms
	}{
		{name: "milliseconds", in: "20ms", want: Spec{Fixed: 20 * time.Millisecond}},
		{name: "compound duration", in: "1m30s", want: Spec{Fixed: 90 * time.Second}},
		{name: "zero seconds", in: "0s", want: Spec{}},
		{name: "bare zero", in: "0", want: Spec{}},
		{name: "whole percentile", in: "p95", want: Spec{Percentile: 95}},
		{name: "one decimal", in: "p99.9", want: Spec{Percentile: 99.9}},
		{name: "below one", in: "p0.5", want: Spec{Percentile: 0.5}},
		{name: "single digit", in: "p5", want: Spec{Percentile: 5}},

		{name: "empty", in: "", wantErr: "not a duration or percentile"},
		{name: "negative duration", in: "-20ms", wantErr: "negative duration"},
		{name: "missing unit", in: "20", wantErr: "not a duration or percentile"},
		{name: "junk", in: "soon", wantErr: "not a duration or percentile"},
		{name: "upper-case p", in: "P95", wantErr: "not a duration or percentile"},
		{name: "p0", in: "p0", wantErr: "not above 0 and below 100"},
		{name: "p0.0", in: "p0.0", wantErr: "not above 0 and below 100"},
		{name: "p100", in: "p100", wantErr: "not above 0 and below 100"},
		{name: "p100.5", in: "p100.5", wantErr: "not above 0 and below 100"},
		{name: "two decimals", in: "p95.55", wantErr: "more than one decimal"},
		{name: "letters", in: "pxx", wantErr: "not a number"},
		{name: "bare p", in: "p", wantErr: "not a number"},
		{name: "trailing dot", in: "p95.", wantErr: "not a number"},
		{name: "leading dot", in: "p.5", wantErr: "not a number"},
		{name: "negative percentile", in: "p-5", wantErr: "not a number"},
		{name: "exponent", in: "p9e1", wantErr: "not a number"},
		{name: "unit after percentile", in: "p95ms", wantErr: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSpec(tt.in)
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), `"`+tt.in+`"`, "the error names the value")
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Contains(t, err.Error(), accepted)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestSpecUnmarshalText(t *testing.T) {
	t.Parallel()
	var s Spec
	require.NoError(t, s.UnmarshalText([]byte("p99.9")))
	assert.Equal(t, Spec{Percentile: 99.9}, s)

	require.Error(t, s.UnmarshalText([]byte("p100")))
	assert.Equal(t, Spec{Percentile: 99.9}, s, "a failed parse leaves the value alone")
}

func TestSpecStringRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{name: "zero", spec: Spec{}, want: "0s"},
		{name: "milliseconds", spec: Spec{Fixed: 20 * time.Millisecond}, want: "20ms"},
		{name: "compound", spec: Spec{Fixed: 90 * time.Second}, want: "1m30s"},
		{name: "sub-millisecond", spec: Spec{Fixed: 1500 * time.Microsecond}, want: "1.5ms"},
		{name: "whole percentile", spec: Spec{Percentile: 95}, want: "p95"},
		{name: "decimal percentile", spec: Spec{Percentile: 99.9}, want: "p99.9"},
		{name: "small percentile", spec: Spec{Percentile: 0.1}, want: "p0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.spec.String())
			parsed, err := ParseSpec(tt.spec.String())
			require.NoError(t, err)
			assert.Equal(t, tt.spec, parsed)
		})
	}
}

func TestSpecRoundTripEveryPercentile(t *testing.T) {
	t.Parallel()
	for tenths := 1; tenths < 1000; tenths++ {
		in := Spec{Percentile: float64(tenths) / 10}
		parsed, err := ParseSpec(in.String())
		require.NoError(t, err, in.String())
		require.Equal(t, in, parsed, in.String())
	}
}

func TestPercentileForShare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		share float64
		want  float64
	}{
		{name: "5%", share: 0.05, want: 95},
		{name: "1%", share: 0.01, want: 99},
		{name: "0.5%", share: 0.005, want: 99.5},
		{name: "10%", share: 0.10, want: 90},
		{name: "0.1% is the highest", share: 0.001, want: 99.9},
		{name: "below 0.1% is clamped", share: 0.0001, want: 99.9},
		{name: "0%", share: 0, want: 99.9},
		{name: "negative", share: -1, want: 99.9},
		{name: "NaN", share: math.NaN(), want: 99.9},
		{name: "50% is the lowest", share: 0.5, want: 50},
		{name: "above 50% is clamped", share: 0.9, want: 50},
		{name: "100%", share: 1, want: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := PercentileForShare(tt.share)
			assert.Equal(t, tt.want, got)
			// The result must be usable as a spec.
			_, err := ParseSpec(Spec{Percentile: got}.String())
			assert.NoError(t, err)
		})
	}
}
