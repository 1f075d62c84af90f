package operation

import (
	"errors"
	"fmt"
)

// Validation failures. Every error returned by Decode, Validate and the sequence checks wraps
// exactly one of these, so callers can branch with errors.Is and metrics can label by Reason.
var (
	ErrMalformed          = errors.New("malformed operation")
	ErrTooLarge           = errors.New("operation too large")
	ErrUnsupportedVersion = errors.New("unsupported operation version")
	ErrSignature          = errors.New("invalid signature")
	ErrPayloadMismatch    = errors.New("payload does not match header")
	ErrMissingExtensions  = errors.New("missing node extensions")
	ErrLogIDMismatch      = errors.New("log id does not belong to topic")
	ErrBacklinkMissing    = errors.New("backlink missing")
	ErrBacklinkMismatch   = errors.New("backlink does not point to previous operation")
	ErrSeqNum             = errors.New("sequence number out of order")
	ErrFork               = errors.New("log fork")
)

var reasons = map[error]string{
	ErrMalformed:          "malformed",
	ErrTooLarge:           "too_large",
	ErrUnsupportedVersion: "unsupported_version",
	ErrSignature:          "signature",
	ErrPayloadMismatch:    "payload_mismatch",
	ErrMissingExtensions:  "missing_extensions",
	ErrLogIDMismatch:      "log_id_mismatch",
	ErrBacklinkMissing:    "backlink_missing",
	ErrBacklinkMismatch:   "backlink_mismatch",
	ErrSeqNum:             "seq_num",
	ErrFork:               "fork",
}

// ValidationError is a typed rejection: Kind is one of the Err* sentinels above.
type ValidationError struct {
	Kind   error
	Detail string
}

func (e *ValidationError) Error() string {
	if e.Detail == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Detail
}

func (e *ValidationError) Unwrap() error { return e.Kind }

func invalid(kind error, format string, args ...any) error {
	return &ValidationError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Reason returns a short stable label for a validation error ("signature", "fork", ...), or
// "other" for errors that are not validation failures. Used as a metrics label.
func Reason(err error) string {
	var v *ValidationError
	if errors.As(err, &v) {
		if r, ok := reasons[v.Kind]; ok {
			return r
		}
	}
	for kind, r := range reasons {
		if errors.Is(err, kind) {
			return r
		}
	}
	return "other"
}
