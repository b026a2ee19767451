package decimal

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		value    float64
		decimals int
		ok       bool
	}{
		{"5", 5, 0, true},
		{"99.9", 99.9, 1, true},
		{"0.125", 0.125, 3, true},
		{"", 0, 0, false},
		{".5", 0, 0, false},
		{"5.", 0, 0, false},
		{"-5", 0, 0, false},
		{"+5", 0, 0, false},
		{"1e3", 0, 0, false},
		{"0x10", 0, 0, false},
		{"Inf", 0, 0, false},
		{"NaN", 0, 0, false},
		{"1.2.3", 0, 0, false},
		{"٣", 0, 0, false},
	}
	for _, tt := range tests {
		value, decimals, ok := Parse(tt.in)
		assert.Equal(t, tt.ok, ok, tt.in)
		assert.Equal(t, tt.value, value, tt.in)
		assert.Equal(t, tt.decimals, decimals, tt.in)
	}
}
