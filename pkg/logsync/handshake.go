package logsync

import (
	"fmt"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
)

// maxHandshakeFrame bounds Topic, Accept and Reject frames.
const maxHandshakeFrame = 1024

// Handshake frames are read without buffering, so nothing of the session that follows is
// consumed here (the acceptor sends Have right after Accept).

// InitiateHandshake sends Topic(topic) and waits for the acceptor's answer. It returns a
// *RejectError if the acceptor refused.
func InitiateHandshake(conn Conn, topic operation.Topic, timeout time.Duration) error {
	defer clearDeadlines(conn)
	if err := conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if _, err := writeFrame(conn, &Message{Kind: KindTopic, Topic: topic}); err != nil {
		return fmt.Errorf("handshake: send topic: %w", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	var buf []byte
	m, err := readFrame(conn, maxHandshakeFrame, &buf, DefaultLimits)
	if err != nil {
		return fmt.Errorf("handshake: read answer: %w", err)
	}
	switch m.Kind {
	case KindAccept:
		return nil
	case KindReject:
		return &RejectError{Reason: m.Reason}
	default:
		return fmt.Errorf("handshake: %w: %s", ErrUnexpectedMessage, m.Kind)
	}
}

// AcceptHandshake reads the initiator's Topic and asks admit whether to serve it: an empty
// reason accepts, anything else is sent back in a Reject and returned as a *RejectError.
func AcceptHandshake(conn Conn, timeout time.Duration, admit func(operation.Topic) (reason string)) (operation.Topic, error) {
	defer clearDeadlines(conn)
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return operation.Topic{}, fmt.Errorf("handshake: %w", err)
	}
	var buf []byte
	m, err := readFrame(conn, maxHandshakeFrame, &buf, DefaultLimits)
	if err != nil {
		return operation.Topic{}, fmt.Errorf("handshake: read topic: %w", err)
	}
	if m.Kind != KindTopic {
		return operation.Topic{}, fmt.Errorf("handshake: %w: %s", ErrUnexpectedMessage, m.Kind)
	}
	reply := &Message{Kind: KindAccept}
	reason := admit(m.Topic)
	if reason != "" {
		reply = &Message{Kind: KindReject, Reason: reason}
	}
	if err := conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return m.Topic, fmt.Errorf("handshake: %w", err)
	}
	if _, err := writeFrame(conn, reply); err != nil {
		return m.Topic, fmt.Errorf("handshake: send %s: %w", reply.Kind, err)
	}
	if reason != "" {
		return m.Topic, &RejectError{Reason: reason}
	}
	return m.Topic, nil
}

func clearDeadlines(conn Conn) {
	_ = conn.SetReadDeadline(time.Time{})
	_ = conn.SetWriteDeadline(time.Time{})
}
