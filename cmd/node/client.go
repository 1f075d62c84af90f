package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/internal/config"
	"github.com/pandanet/pandanet/pkg/node"
)

const defaultAdminAddr = "127.0.0.1:7070"

// clientFlags are shared by every subcommand that talks to a running node.
type clientFlags struct {
	addr      string
	tokenFile string
	asJSON    bool
}

func (f *clientFlags) register(cmd *cobra.Command, jsonHelp string) {
	cmd.Flags().StringVar(&f.addr, "admin-addr", "", "admin API of the node, host:port or URL (default "+defaultAdminAddr+") [env PANDA_ADMIN_ADDR]")
	cmd.Flags().StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin bearer token [env PANDA_ADMIN_TOKEN_FILE]")
	if jsonHelp != "" {
		cmd.Flags().BoolVar(&f.asJSON, "json", false, jsonHelp)
	}
}

// client builds an admin client; flag > environment > default.
func (f *clientFlags) client() (*admin.Client, error) {
	addr := f.addr
	if addr == "" {
		addr = os.Getenv("PANDA_ADMIN_ADDR")
	}
	if addr == "" {
		addr = defaultAdminAddr
	}
	tokenFile := f.tokenFile
	if tokenFile == "" {
		tokenFile = os.Getenv("PANDA_ADMIN_TOKEN_FILE")
	}
	var opts []admin.ClientOption
	if tokenFile != "" {
		tok, err := config.ReadTokenFile(tokenFile)
		if err != nil {
			return nil, usageErrorf("invalid admin-token-file %q: %w", tokenFile, err)
		}
		opts = append(opts, admin.WithToken(tok))
	}
	c, err := admin.NewClient(addr, opts...)
	if err != nil {
		return nil, usageErrorf("invalid admin-addr: %w", err)
	}
	return c, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show identity, addresses, topics and peers of a running node",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.asJSON {
				return writeJSON(w, st)
			}
			fmt.Fprintf(w, "peer id:     %s\npublic key:  %s\nnetwork id:  %s\nversion:     %s\n", st.PeerID, st.PublicKey, st.NetworkID, st.Version)
			fmt.Fprintln(w, "addresses:")
			for _, a := range st.Addresses {
				fmt.Fprintln(w, "  "+a)
			}
			fmt.Fprintf(w, "topics:      %d\npeers:       %d\n", len(st.Topics), len(st.Peers))
			return nil
		},
	}
	f.register(cmd, "print the full status as JSON")
	return cmd
}

func newPeersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the peers a running node is connected to",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ps, err := c.Peers(cmd.Context())
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), ps)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER ID\tDIRECTION\tRELAYED\tADDRESSES")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", p.PeerID, p.Direction, p.Relayed, strings.Join(p.Addresses, ","))
			}
			return tw.Flush()
		},
	}
	f.register(cmd, "print the peers as JSON")
	return cmd
}

func newTopicsCmd() *cobra.Command {
	var f clientFlags
	var add string
	cmd := &cobra.Command{
		Use:   "topics [--add TOPIC]",
		Short: "List the topics of a running node, or subscribe it to another one",
		Long: `List the topics a running node subscribes to, with the number of operations and
authors the node holds for each. With --add TOPIC the node subscribes to and syncs TOPIC
until it restarts (put topics that must survive a restart into the --topics-file).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if add != "" {
				id, err := c.AddTopic(cmd.Context(), add)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			}
			ts, err := c.Topics(cmd.Context())
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), ts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tOPERATIONS\tAUTHORS")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", t.Topic, t.Operations, t.Authors)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, t := range ts {
				if t.Policy != nil {
					writePolicy(cmd.OutOrStdout(), t.Topic, t.Policy)
				}
			}
			return nil
		},
	}
	f.register(cmd, "print the topics (with per-author log heights) as JSON")
	cmd.Flags().StringVar(&add, "add", "", "subscribe the node to this topic")
	return cmd
}

func newPublishCmd() *cobra.Command {
	var f clientFlags
	var topic string
	cmd := &cobra.Command{
		Use:   "publish --topic TOPIC MESSAGE",
		Short: "Publish a message to a topic through a running node",
		Long: `Publish MESSAGE (or standard input if MESSAGE is "-") to TOPIC: the node signs it into
its log for the topic, stores it and syncs it to peers. Prints the operation hash and its
sequence number once the node has processed it.

TOPIC is 64 hex characters or any other string, which is hashed with BLAKE3.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" {
				return usageErrorf("--topic is required")
			}
			msg := []byte(args[0])
			if args[0] == "-" {
				var err error
				if msg, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), admin.DefaultMaxMessageBytes+1)); err != nil {
					return fmt.Errorf("read message from stdin: %w", err)
				}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			res, err := c.Publish(cmd.Context(), topic, msg)
			if err != nil {
				return err
			}
			if f.asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d\n", res.Hash, res.Seq)
			return nil
		},
	}
	f.register(cmd, `print {"hash","seq"} as JSON`)
	cmd.Flags().StringVar(&topic, "topic", "", "topic to publish to (required)")
	return cmd
}

func newSubscribeCmd() *cobra.Command {
	var f clientFlags
	var topic, from string
	var ack bool
	cmd := &cobra.Command{
		Use:   "subscribe --topic TOPIC [--from start|frontier] [--ack] [--json]",
		Short: "Print the events of a topic as they arrive",
		Long: `Subscribe to TOPIC on a running node and print its events until interrupted (or until
the node goes away).

--from frontier (default) prints what arrives from now on. If the node runs with
--ack-policy explicit, it first prints every stored operation of the topic that no client
has acknowledged yet, including those that arrived while nobody was subscribed and those
left over from before a restart; an operation is printed again by every later subscribe
until a client acknowledges it. --from start first prints every stored operation of the
topic, acknowledged or not.

--ack acknowledges each operation after it was printed (written to standard output). An
acknowledgement covers the operation and every earlier one of its author's log in the
topic; it is shared by all clients of the topic. To acknowledge only after processing,
leave --ack off and run "panda-node ack --topic TOPIC HASH" when done. Under
--ack-policy automatic the node acknowledges by itself and --ack changes nothing.

With --json every event is one JSON object per line (the admin API's NDJSON format, message
base64-encoded); otherwise one readable line per event.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topic == "" {
				return usageErrorf("--topic is required")
			}
			fromV, err := admin.ParseFrom(from)
			if err != nil {
				return usageErrorf("invalid --from: %w", err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			stream, err := c.Subscribe(cmd.Context(), topic, fromV)
			if err != nil {
				return err
			}
			defer stream.Close()
			w := cmd.OutOrStdout()
			enc := json.NewEncoder(w)
			for {
				ev, err := stream.Next()
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil // interrupted: a normal way to end a subscription
					}
					if errors.Is(err, io.EOF) {
						return errors.New("node closed the event stream")
					}
					return err
				}
				if f.asJSON {
					err = enc.Encode(ev)
				} else {
					_, err = fmt.Fprintln(w, formatEvent(ev))
				}
				if err != nil {
					return fmt.Errorf("print event: %w", err)
				}
				if p, ok := ev.Event.(node.Processed); ok && ack {
					if err := c.Ack(cmd.Context(), topic, p.Operation.Hash.String()); err != nil {
						if cmd.Context().Err() != nil {
							return nil
						}
						return fmt.Errorf("ack %s: %w", p.Operation.Hash, err)
					}
				}
			}
		},
	}
	f.register(cmd, "one JSON object per event and line")
	cmd.Flags().StringVar(&topic, "topic", "", "topic to subscribe to (required)")
	cmd.Flags().StringVar(&from, "from", "frontier", "start or frontier")
	cmd.Flags().BoolVar(&ack, "ack", false, "acknowledge each operation once it is printed")
	return cmd
}

func newAckCmd() *cobra.Command {
	var f clientFlags
	var topic string
	cmd := &cobra.Command{
		Use:   "ack --topic TOPIC HASH...",
		Short: "Acknowledge operations of a topic",
		Long: `Acknowledge the operations HASH of TOPIC on a running node (under --ack-policy
explicit), so they are no longer sent to new subscriptions. An acknowledgement covers the
operation and every earlier one of its author's log in the topic. Unknown hashes (for
example of pruned operations) are ignored.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" {
				return usageErrorf("--topic is required")
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			for _, h := range args {
				if err := c.Ack(cmd.Context(), topic, h); err != nil {
					return fmt.Errorf("ack %s: %w", h, err)
				}
			}
			return nil
		},
	}
	f.register(cmd, "")
	cmd.Flags().StringVar(&topic, "topic", "", "topic of the operations (required)")
	return cmd
}

// formatEvent renders an event as one human-readable line: for an operation its time,
// author, seq, source (as in the JSON form) and message; otherwise the event's JSON type
// with its peer, operation and error.
func formatEvent(ev node.TopicEvent) string {
	var b strings.Builder
	if p, ok := ev.Event.(node.Processed); ok {
		op := p.Operation
		ts := ""
		if op.Timestamp > 0 {
			ts = time.UnixMicro(int64(op.Timestamp)).UTC().Format(time.RFC3339) + " "
		}
		source := fmt.Sprint(op.Source)
		if op.Replayed {
			source = "replay"
		}
		fmt.Fprintf(&b, "%s%s #%d %s", ts, op.Author.Short(), op.SeqNum, source)
		if peer := sourcePeer(op.Source); peer != "" {
			fmt.Fprintf(&b, " from %s", peer)
		}
		b.WriteString(": ")
		if utf8.Valid(op.Message) && !strings.ContainsAny(string(op.Message), "\x00\x1b") {
			b.WriteString(strings.TrimRight(string(op.Message), "\n"))
		} else {
			fmt.Fprintf(&b, "<%d bytes binary>", len(op.Message))
		}
		return b.String()
	}
	// The other events print their JSON form's fields.
	var wire struct {
		Type, Peer, Hash, Error string
	}
	if line, err := json.Marshal(ev); err != nil {
		wire.Type, wire.Error = fmt.Sprintf("%T", ev.Event), err.Error()
	} else if err := json.Unmarshal(line, &wire); err != nil {
		wire.Type, wire.Error = fmt.Sprintf("%T", ev.Event), err.Error()
	}
	b.WriteString(wire.Type)
	if wire.Peer != "" {
		fmt.Fprintf(&b, " peer %s", wire.Peer)
	}
	if wire.Hash != "" {
		fmt.Fprintf(&b, " operation %s", short(wire.Hash))
	}
	if wire.Error != "" {
		fmt.Fprintf(&b, ": %s", wire.Error)
	}
	return b.String()
}

func short(hexID string) string {
	if len(hexID) > 8 {
		return hexID[:8]
	}
	return hexID
}

// writePolicy prints a topic's write policy with usage against each limit, per topic and per
// author ("-" for no limit).
func writePolicy(w io.Writer, topic string, p *admin.TopicPolicy) {
	fmt.Fprintf(w, "\npolicy of %s\n", topic)
	writers := "anyone"
	if len(p.Writers) > 0 {
		writers = strings.Join(p.Writers, ", ")
	}
	fmt.Fprintf(w, "  writers:   %s\n", writers)
	fmt.Fprintf(w, "  topic:     %s operations, %s bytes\n", ofLimit(p.Usage.Ops, p.PerTopic.MaxOps), ofLimit(p.Usage.Bytes, p.PerTopic.MaxBytes))
	var ret []string
	if p.Retention.MaxAgeSeconds > 0 {
		ret = append(ret, "max age "+(time.Duration(p.Retention.MaxAgeSeconds)*time.Second).String())
	}
	if p.Retention.MaxBytes > 0 {
		ret = append(ret, fmt.Sprintf("max %d bytes", p.Retention.MaxBytes))
	}
	if len(ret) == 0 {
		ret = []string{"keep everything"}
	}
	fmt.Fprintf(w, "  retention: %s (%d logs dropped)\n", strings.Join(ret, ", "), p.RetiredLogs)
	fmt.Fprintf(w, "  refused:   not_writer=%d over_quota=%d retention=%d\n", p.Refused["not_writer"], p.Refused["over_quota"], p.Refused["retention"])
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  AUTHOR\tOPERATIONS\tBYTES")
	for _, a := range p.Authors {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", a.Author, ofLimit(a.Ops, p.PerAuthor.MaxOps), ofLimit(a.Bytes, p.PerAuthor.MaxBytes))
	}
	tw.Flush()
}

// ofLimit formats "used/limit", with "-" for no limit.
func ofLimit(used, limit uint64) string {
	if limit == 0 {
		return fmt.Sprintf("%d/-", used)
	}
	return fmt.Sprintf("%d/%d", used, limit)
}
