package v1alpha1

// Condition types shared by both kinds. Ready is the summary condition (kstatus,
// `kubectl wait --for=condition=Ready`); every condition carries observedGeneration.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionDegraded    = "Degraded"
)

// IDPattern is the CRD-level form of the id rule in docs/node-contract.md: either the
// 32 raw bytes as 64 hex characters, or a short name that the node hashes with BLAKE3.
// The contract would accept any string up to 256 bytes; the operator narrows names to a
// DNS-ish alphabet so ids are safe in the topics file (no '#', blanks or newlines) and in
// YAML, labels and log lines.
const IDPattern = `^([0-9a-fA-F]{64}|[a-zA-Z0-9][a-zA-Z0-9._-]{0,62})$`
