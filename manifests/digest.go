package manifests

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Digest names a rendering by its content: "sha256:<hex>" over the objects in
// a canonical form. Objects are sorted by group, kind, namespace and name, and
// each is encoded as JSON with sorted keys, so the digest depends neither on
// the order of objs nor on how the YAML they came from was written (layout,
// comments, key order, anchors).
func Digest(objs []*unstructured.Unstructured) string {
	type entry struct {
		key  [4]string
		data []byte
	}
	entries := make([]entry, 0, len(objs))
	for _, o := range objs {
		if o == nil {
			continue
		}
		gvk := o.GroupVersionKind()
		data, err := json.Marshal(o.Object)
		if err != nil {
			// Not from Render (which only makes JSON values); still
			// give a stable answer for the same input.
			data = []byte("!" + err.Error())
		}
		entries = append(entries, entry{
			key:  [4]string{gvk.Group, gvk.Kind, o.GetNamespace(), o.GetName()},
			data: data,
		})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		for i := range a.key {
			if c := cmp.Compare(a.key[i], b.key[i]); c != 0 {
				return c
			}
		}
		return bytes.Compare(a.data, b.data)
	})
	h := sha256.New()
	for _, e := range entries {
		// JSON holds no raw newline, so one ends each object unambiguously.
		h.Write(e.data)
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
