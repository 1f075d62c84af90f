package operation

// CheckSequence decides whether op may be appended to its log given the latest entry stored
// for the same (author, log), following p2panda's validate_prunable_backlink:
//
//   - latest == nil (empty log): seq 0 is fine, and so is any seq carrying the prune flag
//     (a pruned log starts at its prune operation); anything else is out of order (the
//     caller may buffer it until the missing entries arrive).
//   - otherwise op must be latest.seq+1 and backlink to latest's hash. A prune-flagged op
//     also skips ahead over entries we never saw.
//
// Duplicates and forks (an entry at or below latest.seq) are the store's to detect, since
// they need the stored entry at that seq; CheckSequence reports them as ErrSeqNum.
func CheckSequence(latest *Operation, op *Operation) error {
	h := &op.Header
	if latest == nil {
		if h.SeqNum == 0 || op.Prune() {
			return nil
		}
		return invalid(ErrSeqNum, "seq %d but log is empty", h.SeqNum)
	}
	if latest.Author() != op.Author() {
		return invalid(ErrBacklinkMismatch, "previous entry has another author")
	}
	switch {
	case h.SeqNum <= latest.SeqNum():
		return invalid(ErrSeqNum, "seq %d not after latest %d", h.SeqNum, latest.SeqNum())
	case h.SeqNum == latest.SeqNum()+1:
		if h.Backlink != latest.Hash {
			return invalid(ErrFork, "seq %d backlink %s, but seq %d is %s", h.SeqNum, h.Backlink.Short(), latest.SeqNum(), latest.Hash.Short())
		}
		return nil
	case op.Prune():
		return nil
	default:
		return invalid(ErrSeqNum, "seq %d leaves a gap after %d", h.SeqNum, latest.SeqNum())
	}
}
