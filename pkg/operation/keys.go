package operation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// PublicKeySize and SignatureSize are the Ed25519 sizes.
const (
	PublicKeySize = ed25519.PublicKeySize
	SignatureSize = ed25519.SignatureSize
	SeedSize      = ed25519.SeedSize
)

// PublicKey is an author's Ed25519 verifying key.
type PublicKey [PublicKeySize]byte

// Signature is an Ed25519 signature.
type Signature [SignatureSize]byte

func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// Short returns the first 8 hex characters, for logs.
func (k PublicKey) Short() string { return hex.EncodeToString(k[:4]) }

// MarshalText implements encoding.TextMarshaler (hex).
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (k *PublicKey) UnmarshalText(text []byte) error {
	parsed, err := ParsePublicKey(string(text))
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}

// ParsePublicKey parses 64 hex characters.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	if err := decodeHex32(s, k[:]); err != nil {
		return PublicKey{}, fmt.Errorf("parse public key: %w", err)
	}
	return k, nil
}

// PrivateKey is an Ed25519 signing key. The same key signs operations and is the node's
// libp2p identity.
type PrivateKey struct{ key ed25519.PrivateKey }

// GenerateKey returns a new random key from the OS CSPRNG.
func GenerateKey() (PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return PrivateKey{key: key}, nil
}

// PrivateKeyFromSeed derives the key from its 32-byte seed (RFC 8032 private key).
func PrivateKeyFromSeed(seed []byte) (PrivateKey, error) {
	if len(seed) != SeedSize {
		return PrivateKey{}, fmt.Errorf("ed25519 seed must be %d bytes, got %d", SeedSize, len(seed))
	}
	return PrivateKey{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// ParsePrivateKey parses a hex seed (64 characters, surrounding white space ignored).
func ParsePrivateKey(s string) (PrivateKey, error) {
	s = strings.TrimSpace(s)
	seed := make([]byte, SeedSize)
	if err := decodeHex32(s, seed); err != nil {
		return PrivateKey{}, fmt.Errorf("parse private key: %w", err)
	}
	return PrivateKeyFromSeed(seed)
}

// IsZero reports whether the key is unset.
func (k PrivateKey) IsZero() bool { return len(k.key) == 0 }

// Seed returns the 32-byte seed.
func (k PrivateKey) Seed() []byte { return bytes.Clone(k.key.Seed()) }

// Ed25519 exposes the standard library key (for libp2p identity conversion).
func (k PrivateKey) Ed25519() ed25519.PrivateKey { return k.key }

// PublicKey returns the verifying key.
func (k PrivateKey) PublicKey() PublicKey {
	var pk PublicKey
	copy(pk[:], k.key.Public().(ed25519.PublicKey))
	return pk
}

// Sign signs msg.
func (k PrivateKey) Sign(msg []byte) Signature {
	var sig Signature
	copy(sig[:], ed25519.Sign(k.key, msg))
	return sig
}

// MaxKeyFileSize bounds what LoadOrCreateKeyFile reads: a key file holds 64 hex characters
// and a newline, so anything much larger is not a key file.
const MaxKeyFileSize = 4096

// LoadOrCreateKeyFile reads a hex seed from path, or creates a new key there (mode 0600)
// if the file does not exist or is empty. An empty file is what a creation interrupted
// before this package wrote keys atomically (or a full disk) left behind; it holds no
// identity, so a new key replaces it. path must be a regular file of at most
// MaxKeyFileSize bytes. Permissions of an existing file are left to the caller to judge
// (Kubernetes Secret mounts are often group-readable by design).
func LoadOrCreateKeyFile(path string) (key PrivateKey, created bool, err error) {
	fi, err := os.Stat(path)
	switch {
	case os.IsNotExist(err):
		return createKeyFile(path, false)
	case err != nil:
		return PrivateKey{}, false, fmt.Errorf("key file: %w", err)
	case !fi.Mode().IsRegular():
		// A FIFO or device would block or never end.
		return PrivateKey{}, false, fmt.Errorf("key file %s is not a regular file (%s)", path, fi.Mode().Type())
	case fi.Size() == 0:
		return createKeyFile(path, true)
	}
	f, err := os.Open(path)
	if err != nil {
		return PrivateKey{}, false, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return PrivateKey{}, false, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(data) > MaxKeyFileSize {
		return PrivateKey{}, false, fmt.Errorf("key file %s is larger than %d bytes; it is not a key file", path, MaxKeyFileSize)
	}
	key, err = ParsePrivateKey(string(data))
	if err != nil {
		return PrivateKey{}, false, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, false, nil
}

func createKeyFile(path string, replace bool) (PrivateKey, bool, error) {
	key, err := GenerateKey()
	if err != nil {
		return PrivateKey{}, false, err
	}
	if err := writeKeyFile(path, key, replace); err != nil {
		return PrivateKey{}, false, err
	}
	return key, true, nil
}

// WriteKeyFile writes the hex seed to path with mode 0600, failing if the file exists. The
// file appears complete or not at all, also after a crash or on a full disk.
func WriteKeyFile(path string, key PrivateKey) error { return writeKeyFile(path, key, false) }

// writeKeyFile writes a temporary file in the same directory, syncs it, moves it to path
// (a hard link, which fails if path exists, unless replace) and syncs the directory so the
// new name survives a crash.
func writeKeyFile(path string, key PrivateKey, replace bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer func() {
		tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("create key file %s: %w", path, err)
	}
	if _, err := tmp.WriteString(hex.EncodeToString(key.Seed()) + "\n"); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync key file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync key file directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync key file directory %s: %w", dir, err)
	}
	return nil
}

// smallOrderEncodings holds the canonical encodings of the eight points of order dividing 8.
var smallOrderEncodings = func() map[[32]byte]bool {
	encodings := []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
		"0000000000000000000000000000000000000000000000000000000000000000", // order 4
		"0000000000000000000000000000000000000000000000000000000000000080", // order 4
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
	}
	set := make(map[[32]byte]bool, len(encodings))
	for _, e := range encodings {
		var b [32]byte
		if _, err := hex.Decode(b[:], []byte(e)); err != nil {
			panic(err)
		}
		set[b] = true
	}
	return set
}()
