package controllers

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// coveredBy reports whether every field the operator sets in desired has the same value
// in live. Fields only live has are ignored: the API server fills defaults (probe
// thresholds, terminationMessagePath, maxUnavailable, ...), and comparing them would make
// every reconcile write. Lists must have the same length and match element by element, so
// an added or removed container, volume or env var is drift. Maps whose exact key set
// matters (labels, annotations) are compared by the caller.
func coveredBy(desired, live any) (bool, error) {
	d, err := toJSONValue(desired)
	if err != nil {
		return false, fmt.Errorf("convert desired %T: %w", desired, err)
	}
	l, err := toJSONValue(live)
	if err != nil {
		return false, fmt.Errorf("convert live %T: %w", live, err)
	}
	return subset(d, l), nil
}

// toJSONValue is v as generic JSON (maps, slices, float64, string, bool, nil): the API
// object's wire form, where omitted fields are absent.
func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func subset(d, l any) bool {
	switch dv := d.(type) {
	case nil:
		return true
	case map[string]any:
		lv, ok := l.(map[string]any)
		if !ok {
			return len(dv) == 0 && l == nil
		}
		for k, v := range dv {
			if !subset(v, lv[k]) {
				return false
			}
		}
		return true
	case []any:
		lv, ok := l.([]any)
		if !ok {
			return len(dv) == 0 && l == nil
		}
		if len(dv) != len(lv) {
			return false
		}
		for i := range dv {
			if !subset(dv[i], lv[i]) {
				return false
			}
		}
		return true
	default:
		return d == l
	}
}

// equalExcept compares two string maps, ignoring the keys in skip (nil and empty equal).
func equalExcept(a, b map[string]string, skip ...string) bool {
	strip := func(m map[string]string) map[string]string {
		out := maps.Clone(m)
		if out == nil {
			out = map[string]string{}
		}
		for _, k := range skip {
			delete(out, k)
		}
		return out
	}
	return maps.Equal(strip(a), strip(b))
}

// managedKeysAnnotation records which annotations the operator set on an object, so that
// keys removed from the spec are removed from the object while keys other controllers
// (cloud load-balancer controllers, kubectl) set stay.
const managedKeysAnnotation = "pandanet.io/managed-annotations"

// applyManagedAnnotations sets want on current, removes keys the operator set before but
// no longer wants, and records the new key set.
func applyManagedAnnotations(current map[string]string, want map[string]string) map[string]string {
	if current == nil {
		current = map[string]string{}
	}
	for _, k := range strings.Split(current[managedKeysAnnotation], ",") {
		if _, keep := want[k]; k != "" && !keep {
			delete(current, k)
		}
	}
	keys := slices.Collect(maps.Keys(want))
	sort.Strings(keys)
	for _, k := range keys {
		current[k] = want[k]
	}
	if len(keys) == 0 {
		delete(current, managedKeysAnnotation)
	} else {
		current[managedKeysAnnotation] = strings.Join(keys, ",")
	}
	if len(current) == 0 {
		return nil
	}
	return current
}
