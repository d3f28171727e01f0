package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

var errEOF = io.EOF

var durationType = reflect.TypeOf(Duration{})

// checkKnown walks the YAML node and the Go type side by side and rejects a
// key the type does not have, naming its path (gates[0].timeouts.helth) and
// line. yaml.v3's KnownFields does not reach into Node.Decode, and its
// messages name Go types rather than the file's fields.
func checkKnown(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		return &fieldError{line: n.Line, field: path, msg: "YAML aliases are not allowed in the config"}
	}
	if t == durationType {
		return nil // Duration checks itself and reports its own line
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return &fieldError{line: n.Line, field: path, msg: "want a mapping"}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByKey(t, k.Value)
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			if !ok {
				return &fieldError{line: k.Line, field: sub, msg: "unknown field"}
			}
			for j := 0; j < i; j += 2 {
				if n.Content[j].Value == k.Value {
					return &fieldError{line: k.Line, field: sub, msg: "field given twice"}
				}
			}
			if err := checkKnown(v, f.Type, sub); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return &fieldError{line: n.Line, field: path, msg: "want a list"}
		}
		for i, e := range n.Content {
			if err := checkKnown(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return &fieldError{line: n.Line, field: path, msg: fmt.Sprintf("want a single %s value", kindName(t))}
		}
		switch t.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int64, reflect.Int32:
			// yaml.v3 would say "cannot unmarshal !!str into bool",
			// naming a Go type and not the field.
			if err := n.Decode(reflect.New(t).Interface()); err != nil {
				return &fieldError{line: n.Line, field: path, msg: fmt.Sprintf("%q: want %s", n.Value, kindName(t))}
			}
		}
	}
	return nil
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true/false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "number"
	default:
		return "string"
	}
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
