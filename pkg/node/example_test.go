package node_test

import (
	"context"
	"fmt"
	"log"

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
