// Package sync implements pandanet's log-sync protocol, modelled on p2panda-sync's
// TopicLogSync, and a session manager that runs it over libp2p streams.
//
// # Protocol
//
// A session is one libp2p stream carrying length-prefixed frames: a big-endian uint32 body
// length followed by one CBOR-encoded Message (see message.go). We cannot interoperate with
// p2panda's iroh transport, so the encoding is ours (CBOR, strictly decoded), but the message
// set and semantics follow p2panda:
//
//	initiator                              acceptor
//	Topic(t)   ───────────────────────────►  serves t and has room?
//	           ◄─────────────────────────── Accept | Reject{reason}
//	Have(heights) ────────►◄──────── Have(heights)           (both directions concurrently)
//	PreSync{ops,bytes} | Done ──►◄── PreSync{ops,bytes} | Done  => SyncStarted
//	Operation(header, body?) × ops ──►◄── Operation × ops       (per log, ascending seq)
//	Done ────────────────►◄──────── Done                        => SyncEnded
//	Live(header, body?) / Ping ──►◄── Live / Ping               (live mode only)
//	Close ───────────────►◄──────── Close
//
// Both peers run the same state machine after the handshake. Each side only pushes what the
// other lacks according to the other's Have (ranges are after-exclusive, until-inclusive, as
// in p2panda-core's compare), so one session converges both sides and nobody can make us
// send anything by claiming heights: a claim of huge heights merely means we push nothing.
//
// Unlike p2panda, an acceptor that does not serve the topic answers with an explicit Reject;
// every read and write has a deadline; live mode has an idle timeout with Ping keep-alives;
// a peer that sends more than its PreSync announced, an unexpected message or an operation
// the Sink reports invalid aborts the session with a typed error (see Misbehaving).
//
// The sync layer does not verify signatures: it hashes each received header (the operation
// id, BLAKE3 of the canonical header bytes) to drop duplicates with a bounded ring and hands
// the rest to a Sink, which verifies and stores. It also never relays what it received to
// other sessions on its own: the node calls Manager.Publish for operations it has validated
// and stored, so only verified operations are forwarded (spec section 8, item 2).
package logsync
