// Package hashkey holds the daemon's hash key: the secret that keys every digest of personal data
// passerelle keeps (lead dedupe keys in the store, correlation hashes in logs). An unkeyed digest
// of an email or a phone number is no protection: hashing a list of candidates reverses it.
//
// The key is PASSERELLE_HASH_KEY when set; otherwise it is generated once into the data directory
// (hash.key, mode 0600) and read from there ever after. Daemons that share a store (PostgreSQL)
// must share the key: set PASSERELLE_HASH_KEY on each, for instance to the generated file's content.
package hashkey

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FileName is the generated key's file in the data directory.
const FileName = "hash.key"

// MinLen is the shortest key accepted, in bytes.
const MinLen = 16

// Purposes of the subkeys Derive makes: one use of the key never yields another's digests.
const (
	PurposeDedupe = "passerelle/dedupe/v1"
	PurposeLogs   = "passerelle/logs/v1"
)

// Load returns configured when it is set, else the key in dataDir/hash.key, generated (32 random
// bytes, written as 64 hex digits) when the file does not exist. The key is the text's bytes, so
// the file's content set as PASSERELLE_HASH_KEY is the same key. generated says whether this call
// created the file.
func Load(configured, dataDir string) (key []byte, generated bool, err error) {
	if configured != "" {
		if len(configured) < MinLen {
			return nil, false, fmt.Errorf("PASSERELLE_HASH_KEY: at least %d bytes", MinLen)
		}
		return []byte(configured), false, nil
	}
	path := filepath.Join(dataDir, FileName)
	key, err = read(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := create(path); err != nil {
		return nil, false, err
	}
	key, err = read(path) // the file another process linked first, when it won the race
	return key, err == nil, err
}

func read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read hash key: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if len(key) < MinLen {
		return nil, fmt.Errorf("hash key %s: %d bytes, at least %d wanted", path, len(key), MinLen)
	}
	return []byte(key), nil
}

// create writes a new key to path, unless a file is already there: it is written in full under a
// temporary name then linked, so no reader ever sees a half-written key and no two processes
// starting together end up with two keys.
func create(path string) error {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("generate hash key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, FileName+".*.tmp")
	if err != nil {
		return fmt.Errorf("write hash key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(raw[:]) + "\n")
	if werr == nil {
		werr = tmp.Chmod(0o600)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write hash key: %w", werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write hash key: %w", err)
	}
	return nil
}

// Derive returns the subkey of key for purpose (HMAC-SHA256 of the purpose).
func Derive(key []byte, purpose string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(purpose))
	return mac.Sum(nil)
}

// ID names a key without revealing it: the store records which key its dedupe keys were made
// with, to tell a changed key from a first start.
func ID(key []byte) string {
	return hex.EncodeToString(Derive(key, "passerelle/key-id/v1")[:8])
}
