package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// hashObject fingerprints a desired object (its JSON form) for change detection.
func hashObject(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Desired objects are plain API structs; Marshal cannot fail on them.
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}
