package manifests

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// repo makes a candidate tree from file contents. A value starting with
// "-> " is a symlink to the rest of it.
func repo(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, data := range files {
		if target, ok := strings.CutPrefix(data, "-> "); ok {
			m[name] = &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink | 0o777}
			continue
		}
		m[name] = &fstest.MapFile{Data: []byte(data), Mode: 0o644}
	}
	return m
}

// objects decodes a YAML stream the way Render's output is decoded, so the
// two compare with cmp.Diff.
func objects(t *testing.T, stream string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read expected YAML: %v", err)
		}
		var obj map[string]any
		if err := utilyaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("decode expected YAML: %v", err)
		}
		if obj != nil {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// mustRender renders dir from tree with the default options.
func mustRender(t *testing.T, tree fs.FS, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(context.Background(), tree, dir, RenderOptions{})
	if err != nil {
		t.Fatalf("Render(%s): %v", dir, err)
	}
	return objs
}

// maps returns the objects' contents, for cmp.Diff.
func maps(objs []*unstructured.Unstructured) []map[string]any {
	out := make([]map[string]any, len(objs))
	for i, o := range objs {
		out[i] = o.Object
	}
	return out
}
