package operation

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// CanonicalCBOR is the encoding every pandanet codec uses: CBOR core deterministic encoding
// (shortest integers, definite lengths, sorted map keys). For p2panda's arrays of integers,
// byte strings and booleans it is byte-identical to what ciborium writes.
var CanonicalCBOR = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(fmt.Sprintf("cbor encode options: %v", err))
	}
	return em
}()

// StrictCBOR returns a decoder for input from untrusted peers: no indefinite lengths and no
// tags, duplicate and unknown map keys rejected, and nesting and array sizes bounded, so a
// short message cannot make the decoder allocate much.
func StrictCBOR(maxNesting, maxArrayElements int) cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:   max(maxNesting, 4),
		MaxArrayElements:  max(maxArrayElements, 16),
		MaxMapPairs:       16,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("cbor decode options: %v", err))
	}
	return dm
}
