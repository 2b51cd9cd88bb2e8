package sftp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestIsRetryable(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("sftp upload x.csv: %w", err) }
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", wrap(opErr(syscall.ECONNREFUSED)), true},
		{"connection reset", wrap(opErr(syscall.ECONNRESET)), true},
		{"broken pipe", wrap(opErr(syscall.EPIPE)), true},
		{"host unreachable", wrap(opErr(syscall.EHOSTUNREACH)), true},
		{"EOF", wrap(io.EOF), true},
		{"unexpected EOF", wrap(io.ErrUnexpectedEOF), true},
		{"network timeout", wrap(&net.OpError{Op: "read", Err: timeoutErr{}}), true},
		{"deadline exceeded", wrap(context.DeadlineExceeded), true},
		{"sftp connection lost", wrap(pkgsftp.ErrSSHFxConnectionLost), true},
		{"size mismatch", wrap(sftp.ErrSizeMismatch), true},
		{"canceled by caller", wrap(context.Canceled), false},
		{"canceled while the connection closed", wrap(fmt.Errorf("%w: %w", context.Canceled, net.ErrClosed)), false},
		{"unknown host key", wrap(sftp.ErrHostKeyUnknown), false},
		{"host key mismatch", wrap(sftp.ErrHostKeyMismatch), false},
		{"authentication", wrap(sftp.ErrAuth), false},
		{"permission denied", wrap(os.ErrPermission), false},
		{"invalid name", wrap(sftp.ErrInvalidName), false},
		{"no such file", wrap(os.ErrNotExist), false},
		{"unknown error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sftp.IsRetryable(tt.err); got != tt.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// The classification must hold for the errors a real dial produces, not only
// for hand-made ones.
func TestNetworkFailuresAreRetryable(t *testing.T) {
	t.Parallel()
	tg := startInProcess(t)

	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		return addr
	}
	// serve accepts connections and hands them to handle.
	serve := func(t *testing.T, handle func(net.Conn)) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go handle(c)
			}
		}()
		return l.Addr().String()
	}
	hangUp := func(t *testing.T) string { return serve(t, func(c net.Conn) { _ = c.Close() }) }
	silent := func(t *testing.T) string {
		return serve(t, func(c net.Conn) {
			_, _ = io.Copy(io.Discard, c) // never answers
			_ = c.Close()
		})
	}

	tests := []struct {
		name    string
		addr    func(*testing.T) string
		wantIs  []error // any of them: a hang-up reads as EOF or, if our banner was already sent, a reset
		wantMsg string
	}{
		{"connection refused", refused, []error{syscall.ECONNREFUSED}, "dial"},
		{"closed before handshake", hangUp, []error{io.EOF, syscall.ECONNRESET}, "handshake"},
		{"server never answers", silent, []error{context.DeadlineExceeded}, "took longer than 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tg.cfg
			cfg.Addr = tt.addr(t)
			cfg.Timeout = 300 * time.Millisecond
			// The known_hosts entry is for tg's address; these fail before
			// any host key is seen.
			_, err := newUploader(t, cfg).Upload(context.Background(), "x.csv", []byte("x"))
			require.Error(t, err)
			matched := false
			for _, want := range tt.wantIs {
				matched = matched || errors.Is(err, want)
			}
			require.True(t, matched, "error %v is none of %v", err, tt.wantIs)
			require.ErrorContains(t, err, tt.wantMsg)
			require.True(t, sftp.IsRetryable(err), "error %v", err)
		})
	}
}

func TestCallerCancelIsNotRetried(t *testing.T) {
	t.Parallel()
	tg := startInProcess(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newUploader(t, tg.cfg).Upload(ctx, "x.csv", []byte("x"))
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, sftp.IsRetryable(err))
}
