package admin

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strings"
	"testing"
)

// TestOperatorTopicStatusMatches pins the operator's copy of TopicStatus
// (controllers/nodeclient.go, NodeTopicStatus) to this one: every field it decodes must
// exist here with the same JSON name and Go type. The operator cannot import this package's
// types without pulling the daemon's API into its client, so the copy is checked from its
// source instead.
func TestOperatorTopicStatusMatches(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../../controllers/nodeclient.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{} // json name → Go type
	rt := reflect.TypeOf(TopicStatus{})
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		ours[name] = rt.Field(i).Type.String()
	}
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "NodeTopicStatus" {
			return true
		}
		found = true
		for _, field := range ts.Type.(*ast.StructType).Fields.List {
			ident, ok := field.Type.(*ast.Ident)
			if !ok || field.Tag == nil {
				t.Errorf("NodeTopicStatus field %v: want a basic type with a json tag", field.Names)
				continue
			}
			tag := reflect.StructTag(strings.Trim(field.Tag.Value, "`"))
			name, _, _ := strings.Cut(tag.Get("json"), ",")
			if got, ok := ours[name]; !ok || got != ident.Name {
				t.Errorf("operator field %q is %s, admin.TopicStatus has %q", name, ident.Name, got)
			}
		}
		return false
	})
	if !found {
		t.Fatal("NodeTopicStatus not found in controllers/nodeclient.go")
	}
}
