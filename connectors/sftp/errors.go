package sftp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/pkg/sftp"
)

// Sentinel errors, wrapped with the details of each failure.
var (
	// ErrHostKeyUnknown: the server's host key is not in the known_hosts file.
	ErrHostKeyUnknown = errors.New("sftp: unknown host key")
	// ErrHostKeyMismatch: known_hosts holds another key for this host.
	ErrHostKeyMismatch = errors.New("sftp: host key mismatch")
	// ErrAuth: the server refused every credential offered.
	ErrAuth = errors.New("sftp: authentication failed")
	// ErrInvalidName: the file name is not a plain file name.
	ErrInvalidName = errors.New("sftp: invalid file name")
	// ErrSizeMismatch: the remote file's size differs from what was sent.
	ErrSizeMismatch = errors.New("sftp: remote size differs from data sent")
)

// IsRetryable reports whether err may succeed on a later attempt: network
// failures (refused, reset, EOF, timeouts) are; host key, authentication,
// permission and naming errors are not, and neither are unknown errors, so
// that a misconfiguration reaches an operator instead of being retried.
func IsRetryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrHostKeyUnknown),
		errors.Is(err, ErrHostKeyMismatch),
		errors.Is(err, ErrAuth),
		errors.Is(err, ErrInvalidName),
		errors.Is(err, os.ErrPermission),
		errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrSizeMismatch),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, sftp.ErrSSHFxConnectionLost),
		errors.Is(err, sftp.ErrSSHFxNoConnection):
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	}
	var status *sftp.StatusError
	if errors.As(err, &status) {
		switch status.FxCode() {
		case sftp.ErrSSHFxConnectionLost, sftp.ErrSSHFxNoConnection:
			return true
		}
	}
	return false
}
