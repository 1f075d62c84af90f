package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/pandanet/pandanet/pkg/operation"
)

// identity is what keygen and id print.
type identity struct {
	PeerID    string `json:"peerId"`
	PublicKey string `json:"publicKey"`
}

// identityOf derives the libp2p peer id from the node key. The libp2p Ed25519 private key
// encoding is seed || public key, which is exactly crypto/ed25519's PrivateKey layout.
func identityOf(key operation.PrivateKey) (identity, error) {
	priv, err := crypto.UnmarshalEd25519PrivateKey(key.Ed25519())
	if err != nil {
		return identity{}, fmt.Errorf("convert key to libp2p: %w", err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return identity{}, fmt.Errorf("derive peer id: %w", err)
	}
	return identity{PeerID: id.String(), PublicKey: key.PublicKey().String()}, nil
}

func printIdentity(w io.Writer, id identity, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(id)
	}
	_, err := fmt.Fprintf(w, "peer-id: %s\npublic-key: %s\n", id.PeerID, id.PublicKey)
	return err
}

func newKeygenCmd() *cobra.Command {
	var out string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keygen [--out FILE]",
		Short: "Create a new Ed25519 identity key",
		Long: `Create a new Ed25519 identity key: the node's libp2p identity and the author key of
every operation it signs.

With --out the key file (64 hex characters of the seed and a newline, mode 0600) is
written to FILE, which must not exist, and the peer id and public key are printed. Without
--out the key file content goes to stdout and the peer id and public key to stderr, so
"panda-node keygen > identity.key" works too.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := operation.GenerateKey()
			if err != nil {
				return err
			}
			id, err := identityOf(key)
			if err != nil {
				return err
			}
			if out == "" {
				fmt.Fprintln(cmd.OutOrStdout(), hex.EncodeToString(key.Seed()))
				return printIdentity(cmd.ErrOrStderr(), id, asJSON)
			}
			if err := operation.WriteKeyFile(out, key); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			return printIdentity(cmd.OutOrStdout(), id, asJSON)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the key file here (must not exist)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"peerId","publicKey"} as JSON`)
	return cmd
}

func newIDCmd() *cobra.Command {
	var keyFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "id --key-file FILE",
		Short: "Print the peer id and public key of a key file",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return usageErrorf("--key-file is required")
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				return usageErrorf("invalid key-file %q: %w", keyFile, err)
			}
			key, err := operation.ParsePrivateKey(strings.TrimSpace(string(data)))
			if err != nil {
				return usageErrorf("invalid key-file %q: %w", keyFile, err)
			}
			id, err := identityOf(key)
			if err != nil {
				return err
			}
			return printIdentity(cmd.OutOrStdout(), id, asJSON)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "identity key file (64 hex characters)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"peerId","publicKey"} as JSON`)
	return cmd
}
