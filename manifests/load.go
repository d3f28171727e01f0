package manifests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
)

// maxSymlinks bounds the symlinks followed to resolve one path, as the
// operating systems do, so that a link loop ends.
const maxSymlinks = 40

// fileKind says how a file is checked before it is handed to kustomize.
type fileKind int

const (
	yamlFile   fileKind = iota // parsed: UTF-8, duplicate keys, aliases, depth
	textFile                   // env files: UTF-8 only
	binaryFile                 // configMapGenerator files: size only
)

// loader collects what one render needs from the candidate tree, checking
// each reference on the way; the render worker puts it into kustomize's
// in-memory file system.
type loader struct {
	ctx   context.Context
	tree  fs.FS
	links fs.ReadLinkFS // nil when the tree cannot report symlinks
	opts  RenderOptions

	copied map[string][]byte // tree path -> content, checked
	walked map[string]bool   // kustomization dirs already walked
	files  int
	total  int64
}

func newLoader(ctx context.Context, tree fs.FS, opts RenderOptions) *loader {
	l := &loader{
		ctx:    ctx,
		tree:   tree,
		opts:   opts,
		copied: map[string][]byte{},
		walked: map[string]bool{},
	}
	l.links, _ = tree.(fs.ReadLinkFS)
	return l
}

// ref is a reference from a kustomization to a path, kept to explain errors.
type ref struct {
	file  string // the kustomization (tree path) that holds the reference
	dir   string // its directory
	real  string // its directory with symlinks resolved: where a checkout reads from
	field string // what kind of reference: "resource", "component", ...
	value string // the reference as written
}

func (r *ref) fail(format string, args ...any) error {
	return &RenderError{Path: r.file, Reason: fmt.Sprintf("%s %q ", r.field, r.value) + fmt.Sprintf(format, args...)}
}

// frame is one kustomization on the way from the gate's path to the one
// being walked.
type frame struct {
	dir  string // as referenced
	real string // with symlinks resolved
}

// load walks the kustomization in dir and everything it needs, and returns
// the path of its kustomization file.
func (l *loader) load(dir string) (string, error) {
	if err := l.kustomization(dir, nil, nil); err != nil {
		return "", err
	}
	return l.kustomizationFile(dir, nil)
}

// kustomization copies the kustomization in dir, then follows its references.
func (l *loader) kustomization(dir string, from *ref, stack []frame) error {
	if err := l.ctx.Err(); err != nil {
		return err
	}
	real, err := l.resolve(dir, from)
	if err != nil {
		return l.notFound(dir, from, err)
	}
	for i, f := range stack {
		if real == f.real || isUnder(f.real, real) {
			chain := make([]string, 0, len(stack)-i+1)
			for _, g := range stack[i:] {
				chain = append(chain, g.dir)
			}
			chain = append(chain, dir)
			return from.fail("makes a kustomization cycle: %s", strings.Join(chain, " -> "))
		}
	}
	if l.walked[dir] {
		return nil
	}
	kfile, err := l.kustomizationFile(dir, from)
	if err != nil {
		return err
	}
	data, err := l.copy(kfile, yamlFile, from)
	if err != nil {
		return err
	}
	var k types.Kustomization
	if err := k.Unmarshal(data); err != nil {
		return &RenderError{Path: kfile, Reason: "invalid kustomization", Err: err}
	}
	stack = append(stack, frame{dir: dir, real: real})
	if err := l.references(kfile, dir, &k, stack); err != nil {
		return err
	}
	l.walked[dir] = true
	return nil
}

// kustomizationFile finds the one kustomization file in dir.
func (l *loader) kustomizationFile(dir string, from *ref) (string, error) {
	var found []string
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		p := path.Join(dir, name)
		real, err := l.resolve(p, from)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		fi, err := fs.Stat(l.tree, real)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return "", treeErr(real, err)
		}
		if fi.Mode().IsRegular() {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return "", &RenderError{Path: dir, Reason: "holds more than one kustomization file: " + strings.Join(found, ", ")}
	case from != nil:
		return "", from.fail("is a directory without a kustomization.yaml (%s)", dir)
	default:
		return "", &RenderError{Path: dir, Reason: "no kustomization.yaml in this directory"}
	}
}

// references checks every path the kustomization names and copies or walks
// what they point to. It mirrors the fields kustomize reads files for; a field
// missed here would only make kustomize fail to find a file, since nothing else
// is in its file system, but remote references must all be caught here.
func (l *loader) references(kfile, dir string, k *types.Kustomization, stack []frame) error {
	real := stack[len(stack)-1].real
	r := func(field, value string) *ref {
		return &ref{file: kfile, dir: dir, real: real, field: field, value: value}
	}

	if len(k.HelmCharts) > 0 || k.HelmGlobals != nil || len(k.HelmChartInflationGenerator) > 0 {
		return &RenderError{Path: kfile, Reason: "uses helmCharts: Helm chart inflation is not supported; commit the rendered chart instead"}
	}

	for _, f := range []struct {
		field  string
		values []string
	}{{"resource", k.Resources}, {"base", k.Bases}} {
		for _, v := range f.values {
			if err := l.resource(r(f.field, v), stack); err != nil {
				return err
			}
		}
	}
	for _, v := range k.Components {
		from := r("component", v)
		p, fi, err := l.lookup(from)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return from.fail("is a file; a component is a directory with a kustomization.yaml")
		}
		if err := l.kustomization(p, from, stack); err != nil {
			return err
		}
	}

	for _, v := range k.Crds {
		if _, err := l.file(r("crd", v), yamlFile); err != nil {
			return err
		}
	}
	for _, v := range k.Configurations {
		if _, err := l.file(r("configuration", v), yamlFile); err != nil {
			return err
		}
	}
	if v, ok := k.OpenAPI["path"]; ok {
		if _, err := l.file(r("openapi path", v), yamlFile); err != nil {
			return err
		}
	}
	for _, v := range k.PatchesStrategicMerge {
		if err := l.patch(r("patch", string(v))); err != nil {
			return err
		}
	}
	for _, patches := range [][]types.Patch{k.PatchesJson6902, k.Patches} {
		for _, p := range patches {
			if err := l.inline(kfile, "patch", p.Patch); err != nil {
				return err
			}
			if p.Path == "" {
				continue
			}
			if _, err := l.file(r("patch", p.Path), yamlFile); err != nil {
				return err
			}
		}
	}
	for _, rep := range k.Replacements {
		if rep.Path == "" {
			continue
		}
		if _, err := l.file(r("replacement", rep.Path), yamlFile); err != nil {
			return err
		}
	}
	for _, g := range k.ConfigMapGenerator {
		if err := l.generatorSources(r("", ""), "", g.KvPairSources); err != nil {
			return err
		}
	}
	for _, g := range k.SecretGenerator {
		if err := l.generatorSources(r("", ""), "", g.KvPairSources); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		field   string
		entries []string
	}{{"generator", k.Generators}, {"transformer", k.Transformers}, {"validator", k.Validators}} {
		for _, v := range f.entries {
			if err := l.plugin(r(f.field, v)); err != nil {
				return err
			}
		}
	}
	return nil
}

// resource handles a resources (or bases) entry: a file or a kustomization.
func (l *loader) resource(from *ref, stack []frame) error {
	p, fi, err := l.lookup(from)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return l.kustomization(p, from, stack)
	}
	_, err = l.copy(p, yamlFile, from)
	return err
}

// patch handles a patchesStrategicMerge entry, which is either a file or,
// for historical reasons, the patch itself.
func (l *loader) patch(from *ref) error {
	if isInline(from.value) {
		if err := checkRemote(from); err != nil {
			return err
		}
		return l.inline(from.file, from.field, from.value)
	}
	_, err := l.file(from, yamlFile)
	return err
}

// generatorSources handles the files and env files of a ConfigMap or Secret
// generator, whether in a kustomization or (with prefix naming it) in a
// builtin plugin's config.
func (l *loader) generatorSources(from *ref, prefix string, s types.KvPairSources) error {
	for _, src := range s.FileSources {
		// Split "key=path" the way kustomize does; sources it would
		// refuse are left for it to refuse.
		p := src
		if strings.Count(src, "=") == 1 {
			_, p, _ = strings.Cut(src, "=")
		}
		if p == "" {
			continue
		}
		if _, err := l.file(&ref{file: from.file, dir: from.dir, real: from.real, field: prefix + "file", value: p}, binaryFile); err != nil {
			return err
		}
	}
	envs := s.EnvSources
	if s.EnvSource != "" {
		envs = append(envs[:len(envs):len(envs)], s.EnvSource)
	}
	for _, e := range envs {
		if _, err := l.file(&ref{file: from.file, dir: from.dir, real: from.real, field: prefix + "env file", value: e}, textFile); err != nil {
			return err
		}
	}
	return nil
}

// file checks a reference that must name a file, and copies it.
func (l *loader) file(from *ref, kind fileKind) ([]byte, error) {
	p, fi, err := l.lookup(from)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, from.fail("is a directory, not a file (%s)", p)
	}
	return l.copy(p, kind, from)
}

// scpLike matches the user@ prefix kustomize takes for an scp-style git URL.
var scpLike = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*@`)

// isRemote reports whether kustomize would fetch value instead of reading it
// from its file system: a superset of what kustomize's loader takes for an
// HTTP(S) file or a git repository (it would exec git to clone it).
func isRemote(value string) bool {
	v := value
	if len(v) >= 5 && strings.EqualFold(v[:5], "git::") {
		v = v[5:]
	}
	lower := strings.ToLower(v)
	for _, prefix := range []string{"http:", "https:", "ssh:", "file:", "git:", "github.com/", "github.com:"} {
		if strings.HasPrefix(lower, prefix) {
			return true
		}
	}
	if scpLike.MatchString(v) {
		return true
	}
	// Any other scheme: kustomize takes none today, but nothing with one
	// names a file in the tree either.
	if i := strings.Index(v, "://"); i > 0 && !strings.ContainsAny(v[:i], "/\n") {
		return true
	}
	return false
}

func checkRemote(from *ref) error {
	if isRemote(from.value) {
		return from.fail("is a remote reference; only files inside the repository can be used")
	}
	return nil
}

// target checks a reference and returns the tree path it names.
func (l *loader) target(from *ref) (string, error) {
	v := from.value
	switch {
	case v == "":
		return "", &RenderError{Path: from.file, Reason: fmt.Sprintf("has an empty %s", from.field)}
	case isRemote(v):
		return "", checkRemote(from)
	case strings.HasPrefix(v, "/"):
		return "", from.fail("is an absolute path; use a path relative to the kustomization")
	}
	p := path.Join(from.dir, v)
	if p == ".." || strings.HasPrefix(p, "../") {
		if from.real != "" && from.real != from.dir {
			return "", l.checkoutDiffers(from, p)
		}
		return "", from.fail("climbs out of the repository")
	}
	return p, nil
}

// sameAsCheckout refuses a reference from a kustomization reached through a
// directory symlink when it names another file in a checkout than here. In a
// checkout, kustomize resolves the symlinks of a kustomization's directory
// and reads its paths from where the symlink leads; kustomize's in-memory
// file system here has no symlinks and reads them from the symlink's own
// path. The two agree unless a path climbs out of the symlinked directory.
func (l *loader) sameAsCheckout(from *ref, p string) error {
	if from.real == "" || from.real == from.dir {
		return nil
	}
	c := path.Join(from.real, from.value)
	if c == p {
		return nil
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return from.fail("climbs out of the repository from %s, where symlink %s leads", from.real, l.firstLink(from.dir))
	}
	rp, errP := l.resolve(p, from)
	rc, errC := l.resolve(c, from)
	switch {
	case errP == nil && errC == nil && rp == rc:
		return nil
	case errors.Is(errP, fs.ErrNotExist) && errors.Is(errC, fs.ErrNotExist):
		return nil // not found either way; the caller says so
	case errP != nil && !errors.Is(errP, fs.ErrNotExist):
		return errP
	case errC != nil && !errors.Is(errC, fs.ErrNotExist):
		return errC
	}
	return l.checkoutDiffers(from, p)
}

func (l *loader) checkoutDiffers(from *ref, p string) error {
	return from.fail("is read from %s in a checkout, where symlink %s leads, but from %s in Sluice's render; refer to %s itself, not through the symlink",
		path.Join(from.real, from.value), l.firstLink(from.dir), p, from.real)
}

// firstLink returns the first symlink on the way to dir.
func (l *loader) firstLink(dir string) string {
	if l.links == nil {
		return dir
	}
	cur := "."
	for _, part := range strings.Split(dir, "/") {
		cur = path.Join(cur, part)
		if fi, err := l.links.Lstat(cur); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return cur
		}
	}
	return dir
}

// lookup checks a reference and returns the tree path it names and what
// is there, following symlinks inside the tree.
func (l *loader) lookup(from *ref) (string, fs.FileInfo, error) {
	p, err := l.target(from)
	if err != nil {
		return "", nil, err
	}
	if err := l.sameAsCheckout(from, p); err != nil {
		return "", nil, err
	}
	fi, err := l.stat(p, from)
	if err != nil {
		return "", nil, err
	}
	return p, fi, nil
}

// stat returns what p is, following symlinks inside the tree.
func (l *loader) stat(p string, from *ref) (fs.FileInfo, error) {
	real, err := l.resolve(p, from)
	if err != nil {
		return nil, l.notFound(p, from, err)
	}
	fi, err := fs.Stat(l.tree, real)
	if err != nil {
		return nil, l.readErr(p, from, err)
	}
	return fi, nil
}

// readErr turns an error reading p from the tree into the commit's fault:
// p does not exist, or cannot be read (see treeErr).
func (l *loader) readErr(p string, from *ref, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		if from == nil {
			return &RenderError{Path: p, Reason: "does not exist"}
		}
		return from.fail("not found: %s does not exist", p)
	}
	return treeErr(p, err)
}

// treeErr is an error reading p from the commit's tree. The tree is the
// commit's, read from the local object store: what cannot be read there (a
// blob over the reader's limit, a malformed entry) is the commit's fault,
// and retrying it would hold the queue forever. Only a cancelled context is
// not.
func treeErr(p string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &RenderError{Path: p, Reason: "cannot be read from the commit's tree", Err: err}
}

// resolve follows the symlinks on the way to p and returns the path of what
// it names, failing when a link leads out of the tree. The result has no
// symlinks left in it, so opening it cannot follow one out of the tree.
func (l *loader) resolve(p string, from *ref) (string, error) {
	if l.links == nil || p == "." {
		return p, nil
	}
	rest := strings.Split(p, "/")
	cur := "."
	hops := 0
	for len(rest) > 0 {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		fi, err := l.links.Lstat(next)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
				return "", fmt.Errorf("%s: %w", p, fs.ErrNotExist)
			}
			return "", treeErr(next, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(rest) > 0 && !fi.IsDir() {
				return "", fmt.Errorf("%s: %w", p, fs.ErrNotExist)
			}
			cur = next
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", l.linkErr(p, from, fmt.Sprintf("passes more than %d symlinks (a loop?)", maxSymlinks))
		}
		target, err := l.links.ReadLink(next)
		if err != nil {
			return "", treeErr(next, err)
		}
		if path.IsAbs(target) || strings.HasPrefix(target, `\`) {
			return "", l.linkErr(p, from, fmt.Sprintf("goes through symlink %s, which points outside the repository", next))
		}
		t := path.Join(cur, target)
		if t == ".." || strings.HasPrefix(t, "../") {
			return "", l.linkErr(p, from, fmt.Sprintf("goes through symlink %s, which points outside the repository", next))
		}
		// Resolve the link target from the top: it may hold links itself.
		rest = append(strings.Split(t, "/"), rest...)
		cur = "."
	}
	return cur, nil
}

func (l *loader) linkErr(p string, from *ref, reason string) error {
	if from == nil {
		return &RenderError{Path: p, Reason: reason}
	}
	return from.fail("%s", reason)
}

// copy reads the file at tree path p, checks it, and puts it at the same path
// in kustomize's file system.
func (l *loader) copy(p string, kind fileKind, from *ref) ([]byte, error) {
	if data, ok := l.copied[p]; ok {
		return data, nil
	}
	if err := l.ctx.Err(); err != nil {
		return nil, err
	}
	// The worker puts the file at p in kustomize's in-memory file system,
	// which refuses some names; whatever else it refuses there is still a
	// *RenderError naming p.
	if err := checkMemName(p); err != nil {
		return nil, err
	}
	if l.files++; l.files > l.opts.MaxFiles {
		return nil, &RenderError{Path: p, Reason: fmt.Sprintf("the render needs more than the limit of %d files", l.opts.MaxFiles)}
	}
	real, err := l.resolve(p, from)
	if err != nil {
		return nil, l.notFound(p, from, err)
	}
	fi, err := fs.Stat(l.tree, real)
	if err != nil {
		return nil, l.readErr(p, from, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &RenderError{Path: p, Reason: "is not a regular file"}
	}
	if fi.Size() > l.opts.MaxFileSize {
		return nil, l.tooLarge(p)
	}
	f, err := l.tree.Open(real)
	if err != nil {
		return nil, l.readErr(p, from, err)
	}
	defer f.Close()
	// Stat may lie (or the file may grow): read one byte past the limit.
	data, err := io.ReadAll(io.LimitReader(f, l.opts.MaxFileSize+1))
	if err != nil {
		return nil, treeErr(p, err)
	}
	if int64(len(data)) > l.opts.MaxFileSize {
		return nil, l.tooLarge(p)
	}
	if l.total += int64(len(data)); l.total > l.opts.MaxTotalSize {
		return nil, &RenderError{Path: p, Reason: fmt.Sprintf("the render needs more than the limit of %d bytes", l.opts.MaxTotalSize)}
	}
	switch kind {
	case yamlFile:
		if err := checkYAML(data, l.opts.MaxDepth); err != nil {
			return nil, &RenderError{Path: p, Reason: err.Error()}
		}
	case textFile:
		if !utf8.Valid(data) {
			return nil, &RenderError{Path: p, Reason: "is not valid UTF-8"}
		}
	}
	l.copied[p] = data
	return data, nil
}

// memName is what kustomize's in-memory file system takes for a file or
// directory name (kyaml filesys.isLegalFileNameForCreation): it refuses
// spaces, '+', '~', non-ASCII letters and more that a checkout takes.
var memName = regexp.MustCompile(`^[a-zA-Z0-9-_.:]+$`)

// checkMemName refuses a tree path kustomize's in-memory file system cannot
// hold, naming the part of it at fault.
func checkMemName(p string) error {
	for _, name := range strings.Split(p, "/") {
		if !memName.MatchString(name) || strings.Contains(name, "..") {
			return &RenderError{Path: p, Reason: fmt.Sprintf("has a name kustomize's in-memory file system cannot hold (%q): use only ASCII letters, digits, '-', '_', '.' and ':'", name)}
		}
	}
	return nil
}

// notFound reports a path resolve could not follow.
func (l *loader) notFound(p string, from *ref, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return l.readErr(p, from, err)
	}
	return err
}

func (l *loader) tooLarge(p string) error {
	return &RenderError{Path: p, Reason: fmt.Sprintf("is larger than the limit of %d bytes", l.opts.MaxFileSize)}
}

// isUnder reports whether p is inside dir (and not dir itself).
func isUnder(p, dir string) bool {
	if dir == "." {
		return p != "."
	}
	return strings.HasPrefix(p, dir+"/")
}
