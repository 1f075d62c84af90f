package p2p

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"
)

// BenchmarkGossipLatency publishes ephemeral messages from one of 5 loopback hosts
// (connected in a ring plus a star around the publisher) and reports the delay until
// each of the other 4 received and verified the message.
func BenchmarkGossipLatency(b *testing.B) {
	hosts := make([]*Host, 5)
	for i := range hosts {
		hosts[i] = newTestHost(b, nil)
	}
	for i := range hosts {
		connect(b, hosts[i], hosts[(i+1)%len(hosts)])
		if i > 1 {
			connect(b, hosts[i], hosts[0])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	topic := topicN(77)
	topics := make([]*EphemeralTopic, len(hosts))
	for i, h := range hosts {
		t, err := h.Ephemeral(ctx, topic)
		if err != nil {
			b.Fatal(err)
		}
		defer t.Close()
		topics[i] = t
	}
	// Warm up until every receiver is in the mesh.
	for _, rx := range topics[1:] {
		warm, wcancel := context.WithTimeout(ctx, 30*time.Second)
		publishUntilReceived(b, warm, topics[0], rx, []byte("warm-up"))
		wcancel()
	}
	time.Sleep(2 * time.Second) // let heartbeats settle the mesh
	for _, rx := range topics[1:] {
		drain(rx)
	}

	lat := make([]time.Duration, 0, 4*b.N)
	body := make([]byte, 256)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint64(body, uint64(i))
		sent := time.Now()
		if err := topics[0].Publish(ctx, body); err != nil {
			b.Fatal(err)
		}
		for _, rx := range topics[1:] {
			for {
				select {
				case m := <-rx.Messages():
					if binary.BigEndian.Uint64(m.Body) != uint64(i) {
						continue // a late duplicate of an earlier round
					}
					lat = append(lat, time.Since(sent))
				case <-time.After(10 * time.Second):
					b.Fatalf("message %d not received", i)
				}
				break
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
