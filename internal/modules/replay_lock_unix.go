//go:build unix

package modules

import (
	"fmt"
	"os"
	"syscall"
)

// lockDataDir takes the data directory's lock without waiting: held by a running daemon, it tells
// `passerelle replay` that the embedded broker's files are in use. The lock ends with the
// process, however it ends.
func lockDataDir(dir string) (release func() error, err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dataDirLock(dir), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is locked by a running daemon: %w", dataDirLock(dir), err)
	}
	return f.Close, nil // closing the descriptor releases the lock
}
