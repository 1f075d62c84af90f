package node_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// A node publishes on a topic and reads its own message back from the subscription.
func Example() {
	ctx := context.Background()
	key, err := operation.GenerateKey()
	if err != nil {
		log.Fatal(err)
	}
	// In-memory store and no network: add node.WithDatabase and node.WithNetwork for a
	// persistent, connected node.
	n, err := node.New(ctx, node.WithPrivateKey(key), node.WithAckPolicy(node.Explicit))
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()

	topic, _ := operation.ParseTopic("chat")
	pub, sub, err := n.StreamFrom(ctx, topic, node.Start)
	if err != nil {
		log.Fatal(err)
	}
	pending, err := pub.Publish(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := pending.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	for ev := range sub.Events() {
		if p, ok := ev.(node.Processed); ok {
			fmt.Printf("%s (seq %d)\n", p.Operation.Message, p.Operation.SeqNum)
			if err := p.Operation.Ack(ctx); err != nil {
				log.Fatal(err)
			}
			break
		}
	}
	// Output: hello (seq 0)
}

// Two connected nodes: b reads what a published, from a's log, over log sync. This is the
// README's library example.
func Example_network() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pandanet-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	network := node.NetworkConfig{
		NetworkID:   operation.DefaultNetworkID, // BLAKE3("p2panda")
		ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
	}

	a, err := node.New(ctx,
		node.WithDatabase(filepath.Join(dir, "a.db")), // default: in memory
		node.WithNetwork(network),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	network.BootstrapPeers = a.Addrs() // e.g. from a PandaNetwork's status
	b, err := node.New(ctx,
		node.WithDatabase(filepath.Join(dir, "b.db")),
		node.WithAckPolicy(node.Explicit), // default: Automatic
		node.WithNetwork(network),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	topic, _ := operation.ParseTopic("chat") // BLAKE3("chat"), or 64 hex characters
	pubA, _, err := a.Stream(ctx, topic)
	if err != nil {
		log.Fatal(err)
	}
	pending, err := pubA.Publish(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	res, err := pending.Wait(ctx) // stored
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a published seq", res.SeqNum)

	_, sub, err := b.Stream(ctx, topic) // or StreamFrom(ctx, topic, node.Start)
	if err != nil {
		log.Fatal(err)
	}
	for ev := range sub.Events() {
		if p, ok := ev.(node.Processed); ok {
			fmt.Printf("b got %q from a: %v\n", p.Operation.Message, p.Operation.Author == a.ID())
			if err := p.Operation.Ack(ctx); err != nil { // with the Explicit policy
				log.Fatal(err)
			}
			break
		}
	}
	// Output:
	// a published seq 0
	// b got "hello" from a: true
}
