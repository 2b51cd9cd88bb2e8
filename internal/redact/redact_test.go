package redact

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"email", Email("john.doe@example.com"), "j***@example.com"},
		{"email without at", Email("nobody"), Hash("nobody")},
		{"phone", Phone("+33612345678"), "***78"},
		{"short phone", Phone("123"), "***"},
		{"secret", Secret("s3cret"), "[redacted]"},
		{"no secret", Secret(""), ""},
		{"empty hash", Hash(""), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, tc.got) })
	}
}

func TestHashIsStableAndHidesInput(t *testing.T) {
	h := Hash("john.doe@example.com")
	require.Equal(t, h, Hash("john.doe@example.com"))
	require.NotEqual(t, h, Hash("jane.doe@example.com"))
	require.True(t, strings.HasPrefix(h, "h:"))
	require.NotContains(t, h, "john")
}
