package manifests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// RenderOptions bounds what a render may read and produce. A zero field takes
// its default from DefaultRenderOptions.
type RenderOptions struct {
	MaxFileSize  int64 // bytes per file, default 1 MiB
	MaxTotalSize int64 // bytes read in all, default 64 MiB
	MaxFiles     int   // files read, default 10000
	MaxObjects   int   // rendered objects, default 2000
	MaxDepth     int   // YAML nesting depth, default 64

	// RenderTimeout bounds kustomize's run, default 60s.
	RenderTimeout time.Duration
	// MaxRenderMemory bounds the memory of kustomize's run (the Go heap,
	// stacks and runtime of the render process), default 1 GiB.
	MaxRenderMemory int64
	// MaxOutputSize bounds the rendered objects, encoded as JSON, default
	// 64 MiB.
	MaxOutputSize int64
}

// DefaultRenderOptions returns the limits Render uses when none are given.
func DefaultRenderOptions() RenderOptions {
	return RenderOptions{
		MaxFileSize:  1 << 20,
		MaxTotalSize: 64 << 20,
		MaxFiles:     10000,
		MaxObjects:   2000,
		MaxDepth:     64,

		RenderTimeout:   60 * time.Second,
		MaxRenderMemory: 1 << 30,
		MaxOutputSize:   64 << 20,
	}
}

func (o RenderOptions) withDefaults() RenderOptions {
	d := DefaultRenderOptions()
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = d.MaxFileSize
	}
	if o.MaxTotalSize <= 0 {
		o.MaxTotalSize = d.MaxTotalSize
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = d.MaxFiles
	}
	if o.MaxObjects <= 0 {
		o.MaxObjects = d.MaxObjects
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = d.MaxDepth
	}
	if o.RenderTimeout <= 0 {
		o.RenderTimeout = d.RenderTimeout
	}
	if o.MaxRenderMemory <= 0 {
		o.MaxRenderMemory = d.MaxRenderMemory
	}
	if o.MaxOutputSize <= 0 {
		o.MaxOutputSize = d.MaxOutputSize
	}
	return o
}

// RenderError is a render failure that is the commit's fault: a bad or
// hostile kustomization or file, or objects that cannot be put into a test
// environment, or a render over its limits. What the commit's tree holds but
// cannot be read is the commit's fault too. Anything else Render or Overlay
// returns (a cancelled context, a render worker that cannot be started) is
// the infrastructure's fault.
type RenderError struct {
	// Path is the repository-relative path of the file at fault, usually the
	// kustomization that holds the bad reference. Errors found by Overlay name
	// the object instead, as Kind/namespace/name.
	Path string
	// Reason says what is wrong, in a sentence without the path.
	Reason string
	// Err is the underlying error, if any (a YAML or kustomize error).
	Err error
}

func (e *RenderError) Error() string {
	msg := e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Path == "" {
		return msg
	}
	return e.Path + ": " + msg
}

func (e *RenderError) Unwrap() error { return e.Err }

// Render runs kustomize build of dir (slash path relative to the root of tree, e.g. "environments/staging") from tree.
//
// tree is the candidate commit's files. If tree implements io/fs.ReadLinkFS,
// symlinks are followed only when their target stays inside the tree; a link
// out of it is a *RenderError. Without ReadLinkFS, tree itself decides what a
// path means.
//
// Before kustomize runs, every kustomization reachable from dir is parsed and
// every path it names is checked: remote bases and URLs, absolute paths, paths
// that climb out of the tree, Helm charts, non-builtin plugins and KRM
// functions are rejected, and each file is checked against opts and, when it
// is YAML, for invalid UTF-8, duplicate keys, alias bombs and deep nesting.
// Only the checked files are copied into kustomize's in-memory file system,
// so kustomize sees nothing else. Paths are resolved lexically from the
// kustomization that names them, anywhere inside the tree (kustomize's
// LoadRestrictionsRootOnly, with the tree as the root). A kustomization
// reached through a directory symlink must name the same files from the
// symlink's path as from its target, which is where a checkout reads them;
// otherwise the render is refused, naming the symlink. Plugin configs are
// read with kustomize's own parser, so a key that only case-folds onto kind
// or items means nothing to the checks, as to kustomize. A file whose name
// kustomize's in-memory file system refuses is a *RenderError.
//
// Kustomize then runs in a render worker (see MaybeRunWorker) bounded by
// opts.RenderTimeout and opts.MaxRenderMemory; going over either is a
// *RenderError that names the limit. Labels and annotations under
// sluice.dev/ that Sluice owns are removed from the objects.
//
// The objects come back in kustomize's legacy order (or the order the
// kustomization's sortOptions ask for), which is deterministic.
func Render(ctx context.Context, tree fs.FS, dir string, opts RenderOptions) ([]*unstructured.Unstructured, error) {
	opts = opts.withDefaults()
	dir, err := cleanDir(dir)
	if err != nil {
		return nil, err
	}
	l := newLoader(ctx, tree, opts)
	kfile, err := l.load(dir)
	if err != nil {
		return nil, err
	}
	raw, err := renderInWorker(ctx, l.copied, dir, opts)
	if err != nil {
		var re *RenderError
		if errors.As(err, &re) && re.Path == "" {
			re.Path = kfile
		}
		return nil, err
	}
	if n := len(raw); n > opts.MaxObjects {
		return nil, &RenderError{Path: kfile, Reason: fmt.Sprintf("renders %d objects, more than the limit of %d", n, opts.MaxObjects)}
	}
	objs := make([]*unstructured.Unstructured, 0, len(raw))
	for i, b := range raw {
		var obj map[string]any
		if err := utiljson.Unmarshal(b, &obj); err != nil {
			return nil, &RenderError{Path: kfile, Reason: fmt.Sprintf("decode rendered object %d", i), Err: err}
		}
		u := &unstructured.Unstructured{Object: obj}
		stripSluiceMetadata(u)
		objs = append(objs, u)
	}
	return objs, nil
}

// cleanDir turns the gate's path into a tree path. A bad path is the
// configuration's fault, not the commit's, so it is a plain error.
func cleanDir(dir string) (string, error) {
	if dir == "" {
		return ".", nil
	}
	if strings.HasPrefix(dir, "/") {
		return "", fmt.Errorf("kustomization path %q must be relative to the repository root", dir)
	}
	clean := path.Clean(dir)
	if !fs.ValidPath(clean) {
		return "", fmt.Errorf("kustomization path %q is not inside the repository", dir)
	}
	return clean, nil
}

// build runs kustomize on the in-memory file system, with plugins limited to
// the statically linked builtins and Helm disabled, and returns the rendered
// objects as JSON. Everything it may read was copied and checked by the
// loader; it has no way to the disk or the network left because the loader
// refused every reference that would lead there, and the render process it
// runs in has no HTTP transport and no programs to run (see worker.go).
//
// It runs in the render process only: kustomize keeps global state (the
// OpenAPI schema a kustomization may set) that one commit must not leave to
// the next, and its memory and time cannot be bounded inside the daemon.
func build(mem filesys.FileSystem, dir string, maxObjects int) (objs [][]byte, err error) {
	defer func() {
		// Kustomize panics on some malformed input; that is the commit's
		// fault.
		if p := recover(); p != nil {
			objs, err = nil, &RenderError{Reason: fmt.Sprintf("kustomize build panicked: %v", p)}
		}
	}()
	k := krusty.MakeKustomizer(&krusty.Options{
		Reorder:          krusty.ReorderOptionUnspecified,
		LoadRestrictions: types.LoadRestrictionsNone, // the in-memory tree is the restriction
		PluginConfig:     types.DisabledPluginConfig(),
	})
	m, err := k.Run(mem, path.Join("/", dir))
	if err != nil {
		return nil, &RenderError{Reason: "kustomize build", Err: err}
	}
	if n := m.Size(); n > maxObjects {
		return nil, &RenderError{Reason: fmt.Sprintf("renders %d objects, more than the limit of %d", n, maxObjects)}
	}
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, &RenderError{Reason: fmt.Sprintf("encode %s", r.CurId()), Err: err}
		}
		objs = append(objs, b)
	}
	return objs, nil
}

// userFacing are the sluice.dev/ keys a commit sets on purpose: the label
// that marks a test, and the annotation the simulated test cluster reads to
// inject a failure (test/cluster).
var userFacing = map[string]bool{
	LabelTest:             true,
	"sluice.dev/simulate": true,
}

// stripSluiceMetadata removes the labels and annotations Sluice owns from a
// rendered object and its pod templates: a commit must not set Sluice's own
// state, such as a keep-until on its test namespace or another gate's label.
func stripSluiceMetadata(obj *unstructured.Unstructured) {
	metas := [][]string{{"metadata"}}
	for _, fields := range podTemplates[obj.GroupVersionKind().GroupKind()] {
		metas = append(metas, append(append([]string(nil), fields...), "metadata"))
	}
	for _, meta := range metas {
		for _, field := range []string{"labels", "annotations"} {
			at := append(append([]string(nil), meta...), field)
			m, found, err := unstructured.NestedMap(obj.Object, at...)
			if err != nil || !found {
				continue
			}
			changed := false
			for k := range m {
				if strings.HasPrefix(k, sluicePrefix) && !userFacing[k] {
					delete(m, k)
					changed = true
				}
			}
			if changed {
				_ = unstructured.SetNestedMap(obj.Object, m, at...)
			}
		}
	}
}
