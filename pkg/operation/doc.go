// Package operation implements p2panda-core operations as used by the p2panda Node:
// the CBOR header, Ed25519 signatures (strict verification), BLAKE3 hashes and the Node's
// header extensions (log id, timestamp, prune flag).
//
// Everything here is byte-compatible with p2panda-core: a header encoded by this package
// hashes and verifies identically in p2panda and the other way round. The package has no
// I/O and no dependencies on the rest of pandanet; every other package builds on it.
package operation
