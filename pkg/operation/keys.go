package operation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"

	"filippo.io/edwards25519"
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

// LoadOrCreateKeyFile reads a hex seed from path, or creates a new key there (mode 0600)
// if the file does not exist. Permissions of an existing file are left to the caller to
// judge (Kubernetes Secret mounts are often group-readable by design).
func LoadOrCreateKeyFile(path string) (key PrivateKey, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err = ParsePrivateKey(string(data))
		if err != nil {
			return PrivateKey{}, false, fmt.Errorf("key file %s: %w", path, err)
		}
		return key, false, nil
	case !os.IsNotExist(err):
		return PrivateKey{}, false, fmt.Errorf("read key file: %w", err)
	}
	key, err = GenerateKey()
	if err != nil {
		return PrivateKey{}, false, err
	}
	if err := WriteKeyFile(path, key); err != nil {
		return PrivateKey{}, false, err
	}
	return key, true, nil
}

// WriteKeyFile writes the hex seed to path with mode 0600, failing if the file exists.
func WriteKeyFile(path string, key PrivateKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key.Seed()) + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync key file %s: %w", path, err)
	}
	return f.Close()
}

// Verify checks sig over msg the way ed25519-dalek's verify_strict does, which is what
// p2panda uses: on top of the standard check it rejects small-order public keys and
// small-order R components. Go's crypto/ed25519 alone accepts both, so a forged-looking
// signature under a weak key could verify here but not in p2panda.
func (k PublicKey) Verify(msg []byte, sig Signature) bool {
	if !ed25519.Verify(k[:], msg, sig[:]) {
		return false
	}
	// crypto/ed25519 compares R against a canonical re-encoding, so an accepted R is
	// canonical and small order iff it is one of the eight canonical small-order encodings.
	if smallOrderEncodings[[32]byte(sig[:32])] {
		return false
	}
	return !isWeakKey(k)
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

// weakKeyCache remembers the small-order check per author: decompressing the key costs a
// few microseconds and the set of authors is small compared to the number of operations.
var weakKeyCache sync.Map // PublicKey -> bool

const weakKeyCacheMax = 1 << 16

var weakKeyCacheLen sync.Mutex
var weakKeyCacheCount int

func isWeakKey(k PublicKey) bool {
	if v, ok := weakKeyCache.Load(k); ok {
		return v.(bool)
	}
	weak := true
	if p, err := new(edwards25519.Point).SetBytes(k[:]); err == nil {
		weak = new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
	}
	weakKeyCacheLen.Lock()
	if weakKeyCacheCount < weakKeyCacheMax {
		weakKeyCacheCount++
		weakKeyCache.Store(k, weak)
	}
	weakKeyCacheLen.Unlock()
	return weak
}
