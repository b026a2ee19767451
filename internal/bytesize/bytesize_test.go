package bytesize

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1024", 1024}, {"8MiB", 8 << 20}, {"512KiB", 512 << 10}, {"1GiB", 1 << 30},
		{"2KB", 2000}, {"3MB", 3_000_000}, {"1GB", 1_000_000_000}, {"10B", 10}, {" 4 KiB ", 4096},
	}
	for _, tt := range tests {
		var b Size
		require.NoError(t, b.UnmarshalText([]byte(tt.in)), tt.in)
		assert.Equal(t, tt.want, int64(b), tt.in)
	}
	for _, bad := range []string{"", "abc", "-1", "1.5MiB", "8 parsecs", "99999999999GiB"} {
		var b Size
		err := b.UnmarshalText([]byte(bad))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "accepted:")
	}
}
