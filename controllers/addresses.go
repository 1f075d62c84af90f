package controllers

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// SpecError is a spec entry the API server's CEL rules accepted but the operator cannot
// use (CEL checks the shape of a multiaddr, only a multiaddr parser checks its content,
// e.g. /ip4/999.0.0.1 or a peer id that is not a multihash). The operator reports it in
// a condition and writes nothing derived from the spec until it is fixed: a node given
// an unparsable bootstrap or announce address refuses to start.
type SpecError struct {
	// Field is the JSON path of the entry, e.g. spec.bootstrapPeers[2].
	Field string
	// Value is the rejected entry.
	Value string
	Err   error
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("%s %q: %v", e.Field, e.Value, e.Err)
}

func (e *SpecError) Unwrap() error { return e.Err }

// hostProtocols may start a public address: the nodes announce it as reachable.
var hostProtocols = map[int]bool{
	ma.P_IP4: true, ma.P_IP6: true, ma.P_DNS: true, ma.P_DNS4: true, ma.P_DNS6: true,
}

// ValidateSpecAddresses parses every multiaddr of the spec that reaches a node's config.
// It returns a *SpecError naming the first bad entry.
func ValidateSpecAddresses(pn *pandav1.PandaNetwork) error {
	for i, s := range pn.Spec.BootstrapPeers {
		if err := validateBootstrapPeer(s); err != nil {
			return &SpecError{Field: fmt.Sprintf("spec.bootstrapPeers[%d]", i), Value: s, Err: err}
		}
	}
	for i, pa := range pn.Spec.Exposure.PublicAddresses {
		for j, s := range pa.Addresses {
			if err := validatePublicAddress(s); err != nil {
				return &SpecError{Field: fmt.Sprintf("spec.exposure.publicAddresses[%d].addresses[%d]", i, j), Value: s, Err: err}
			}
		}
	}
	return nil
}

func validateBootstrapPeer(s string) error {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return fmt.Errorf("not a multiaddr: %w", err)
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return fmt.Errorf("no valid /p2p/<peer id> at the end: %w", err)
	}
	if len(info.Addrs) == 0 {
		return errors.New("no address before /p2p/<peer id>")
	}
	return nil
}

func validatePublicAddress(s string) error {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return fmt.Errorf("not a multiaddr: %w", err)
	}
	protos := m.Protocols()
	if len(protos) < 2 || !hostProtocols[protos[0].Code] {
		return errors.New("must start with /ip4, /ip6, /dns, /dns4 or /dns6 followed by /tcp or /udp")
	}
	if protos[1].Code != ma.P_TCP && protos[1].Code != ma.P_UDP {
		return errors.New("the host must be followed by /tcp/<port> or /udp/<port>")
	}
	for _, p := range protos {
		if p.Code == ma.P_P2P {
			return errors.New("must not contain /p2p/ (the operator appends the node's peer id)")
		}
	}
	return nil
}
