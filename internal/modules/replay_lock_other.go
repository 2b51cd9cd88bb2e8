//go:build !unix

package modules

import "errors"

// lockDataDir is not available here: replay with the daemon stopped is refused.
func lockDataDir(string) (func() error, error) {
	return nil, errors.New("no file locks on this platform")
}
