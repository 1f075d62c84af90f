package admin_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pandanet/pandanet/controllers"
	"github.com/pandanet/pandanet/internal/admin"
)

// TestOperatorTopicStatusMatches pins the operator's copy of TopicStatus
// (controllers.NodeTopicStatus, decoded from GET /v1/topics) to this one: every JSON field
// the operator reads must exist here, at the same path, with a JSON-compatible type (any
// integer type decodes any other's realistic values; strings, bools, objects, arrays and
// maps must match).
func TestOperatorTopicStatusMatches(t *testing.T) {
	ours := reflect.TypeOf(admin.TopicStatus{})
	theirs := reflect.TypeOf(controllers.NodeTopicStatus{})
	for _, problem := range compareJSON("", theirs, ours) {
		t.Error(problem)
	}
}

// compareJSON lists the fields of theirs (by JSON path) that ours lacks or types
// differently. Pointers and slices are compared by element.
func compareJSON(path string, theirs, ours reflect.Type) []string {
	for theirs.Kind() == reflect.Pointer {
		theirs = theirs.Elem()
	}
	for ours.Kind() == reflect.Pointer {
		ours = ours.Elem()
	}
	if isInteger(theirs.Kind()) && isInteger(ours.Kind()) {
		return nil
	}
	if theirs.Kind() != ours.Kind() {
		return []string{path + ": operator has " + theirs.String() + ", admin API has " + ours.String()}
	}
	switch theirs.Kind() {
	case reflect.Slice, reflect.Array:
		return compareJSON(path+"[]", theirs.Elem(), ours.Elem())
	case reflect.Map:
		return append(compareJSON(path+"{key}", theirs.Key(), ours.Key()), compareJSON(path+"{}", theirs.Elem(), ours.Elem())...)
	case reflect.Struct:
		fields := jsonFields(ours)
		var problems []string
		for name, typ := range jsonFields(theirs) {
			o, ok := fields[name]
			if !ok {
				problems = append(problems, path+"."+name+": not in the admin API")
				continue
			}
			problems = append(problems, compareJSON(path+"."+name, typ, o)...)
		}
		return problems
	}
	return nil
}

func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// jsonFields maps a struct's JSON names to field types, with the fields of embedded structs
// flattened as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("json") == "" && f.Type.Kind() == reflect.Struct {
			for name, typ := range jsonFields(f.Type) {
				out[name] = typ
			}
			continue
		}
		out[jsonName(f)] = f.Type
	}
	return out
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}
