// Package promote carries a gate's passed versions to the next gate: after
// a gate passes a commit that changed a file its `promote.paths` match,
// Run writes one signed commit per file to the source branch that copies
// it into the next gate's folder, which that gate then tests like any
// other commit. It logs nothing: Run returns what it did.
package promote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/sluice-gitops/sluice/gitrepo"
)

// Rule is one gate's `promote:`.
type Rule struct {
	Gate, GatePath string // the promoting gate and its folder
	To, ToPath     string // the gate promoted to and its folder
	// Paths are path.Match globs relative to GatePath.
	Paths []string
}

// Match reports whether p (from the repository root) is a file the rule
// promotes, and returns it relative to GatePath.
func (r Rule) Match(p string) (rel string, ok bool) {
	rel, ok = strings.CutPrefix(p, r.GatePath+"/")
	if !ok {
		return "", false
	}
	for _, g := range r.Paths {
		if m, _ := path.Match(g, rel); m {
			return rel, true
		}
	}
	return "", false
}

// Target is where p (a path Match accepts) is promoted to.
func (r Rule) Target(p string) string {
	return path.Join(r.ToPath, strings.TrimPrefix(p, r.GatePath+"/"))
}

// Unmatched returns the index of the first glob that matches no file of
// fsys (a tree from the repository root), or -1 when each matches one.
func (r Rule) Unmatched(fsys fs.FS) (int, error) {
	for i, g := range r.Paths {
		m, err := fs.Glob(fsys, path.Join(r.GatePath, g))
		if err != nil {
			return i, err
		}
		n := 0
		for _, p := range m {
			if fi, err := fs.Stat(fsys, p); err == nil && fi.Mode().IsRegular() {
				n++
			}
		}
		if n == 0 {
			return i, nil
		}
	}
	return -1, nil
}

// Service is the name a promoted file goes by: its base name without the
// extension (versions/a.yaml is a).
func Service(p string) string {
	b := path.Base(p)
	if i := strings.IndexByte(b, '.'); i > 0 {
		return b[:i]
	}
	return b
}

var (
	versionLine = regexp.MustCompile(`(?m)^\s*-?\s*(?:version|tag):\s*["']?([A-Za-z0-9._+-]{1,64})["']?\s*$`)
	imageLine   = regexp.MustCompile(`(?m)^\s*-?\s*image:\s*["']?([^\s"'@]{1,512})`)
)

// Summary is a version-ish word for a promoted file's content, for the
// commit's subject: a `version:` or `tag:` value, else the tag of the
// first `image:`, else "".
func Summary(data []byte) string {
	if m := versionLine.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	if m := imageLine.FindSubmatch(data); m != nil {
		img := string(m[1])
		if i := strings.LastIndexByte(img, ':'); i > strings.LastIndexByte(img, '/') {
			if tag := img[i+1:]; tag != "" && len(tag) <= 64 {
				return tag
			}
		}
	}
	return ""
}

// Options say where Run reads and writes.
type Options struct {
	Repo *gitrepo.Repository
	Key  *gitrepo.VerdictKey
	// Source is the branch promotions are written to; Target the promoting
	// gate's target branch, whose history holds what it passed.
	Source, Target string
	// Depth bounds how many first-parent commits of Target are looked at
	// (default DefaultDepth).
	Depth int
	// Services, when set, limits Run to these service names (Service).
	Services []string
}

// DefaultDepth is how far back Run looks on the promoting gate's target.
const DefaultDepth = 200

// maxAttempts bounds how often Run redoes its work on a fresh fetch after
// the source moved under its push.
const maxAttempts = 5

// maxFile bounds a promoted file read for its summary.
const maxFile = 1 << 20

// Change is one file a passed commit changed, to be promoted.
type Change struct {
	From   plumbing.Hash // the commit the gate passed
	Path   string        // the file, from the root
	Target string        // where it goes
	blob   plumbing.Hash
	mode   filemode.FileMode
}

// Promoted is a promotion Run pushed.
type Promoted struct {
	Change
	Commit  plumbing.Hash
	Subject string
}

// Conflict is a change not promoted because the target's file was edited
// on the source branch since the passed commit's parent, by someone else.
type Conflict struct {
	Change
	EditedBy plumbing.Hash // the newest commit that edited the target's file
}

// Result is what one Run did.
type Result struct {
	Promoted  []Promoted
	Already   []Change // promoted before (found by signed trailer) or already equal
	Conflicts []Conflict
	// Unverified are changes whose newest commit has no verified passed
	// record of the gate: never promoted.
	Unverified []Change
}

// Run promotes what the gate passed and has not been promoted. It pushes
// with compare-and-swap and redoes everything on a fresh fetch when the
// source moved meanwhile; it never pushes two promotions of one change.
func Run(ctx context.Context, o Options, r Rule) (Result, error) {
	if o.Depth <= 0 {
		o.Depth = DefaultDepth
	}
	for attempt := 1; ; attempt++ {
		res, err := run(ctx, o, r)
		if errors.Is(err, gitrepo.ErrStale) && attempt < maxAttempts {
			continue
		}
		return res, err
	}
}

func run(ctx context.Context, o Options, r Rule) (Result, error) {
	var res Result
	repo := o.Repo
	if err := repo.Fetch(ctx, o.Source, o.Target); err != nil {
		return res, err
	}
	srcTip, err := repo.Tip(ctx, o.Source)
	if err != nil {
		return res, err
	}
	tgtTip, err := repo.Tip(ctx, o.Target)
	if err != nil {
		return res, err
	}
	changes, unverified, err := passed(ctx, o, r, tgtTip)
	if err != nil {
		return res, err
	}
	res.Unverified = unverified
	if len(changes) == 0 {
		return res, nil
	}
	// The source's history since the oldest change's parent: promotions
	// Sluice signed, and who edited each target file.
	oldest, err := repo.Commit(ctx, changes[0].From)
	if err != nil {
		return res, err
	}
	hist, err := repo.Log(ctx, srcTip, oldest.Parent)
	if err != nil {
		return res, err
	}
	done := map[[2]string]bool{}
	edits := map[string][]plumbing.Hash{} // target path -> non-promotion commits that changed it, oldest first
	targets := map[string]bool{}
	for _, c := range changes {
		targets[c.Target] = true
	}
	index := map[plumbing.Hash]int{}
	for i, c := range hist {
		index[c.Hash] = i
		if p, ok := o.Key.PromotionOf(c); ok && p.Gate == r.Gate {
			done[[2]string{p.From.String(), p.Path}] = true
			continue
		}
		var parentTree plumbing.Hash
		if !c.Parent.IsZero() {
			pc, err := repo.Commit(ctx, c.Parent)
			if err != nil {
				return res, err
			}
			parentTree = pc.Tree
		}
		changed, err := repo.ChangedPaths(ctx, parentTree, c.Tree)
		if err != nil {
			return res, err
		}
		for _, p := range changed {
			if targets[p] {
				edits[p] = append(edits[p], c.Hash)
			}
		}
	}
	srcCommit, err := repo.Commit(ctx, srcTip)
	if err != nil {
		return res, err
	}
	tree, parent := srcCommit.Tree, srcTip
	var pending []Promoted
	for _, ch := range changes {
		if done[[2]string{ch.From.String(), ch.Path}] {
			res.Already = append(res.Already, ch)
			continue
		}
		cur, _, found, err := repo.Entry(ctx, srcCommit.Tree, ch.Target)
		if err != nil {
			return res, err
		}
		if found && cur == ch.blob {
			res.Already = append(res.Already, ch)
			continue
		}
		if by, ok := conflict(edits[ch.Target], index, ch.From); ok {
			res.Conflicts = append(res.Conflicts, Conflict{Change: ch, EditedBy: by})
			continue
		}
		data, err := repo.Blob(ctx, ch.blob, maxFile)
		if err != nil {
			return res, err
		}
		next, err := repo.SetEntry(ctx, tree, ch.Target, ch.blob, ch.mode)
		if err != nil {
			return res, err
		}
		msg := gitrepo.PromotionMessage(r.Gate, r.To, Service(ch.Path), Summary(data), ch.From, ch.Path, ch.Target)
		msg = o.Key.SignPromotion(msg, parent, next)
		h, err := repo.CommitTree(ctx, next, parent, msg)
		if err != nil {
			return res, err
		}
		subject, _, _ := strings.Cut(msg, "\n")
		pending = append(pending, Promoted{Change: ch, Commit: h, Subject: subject})
		tree, parent = next, h
	}
	if len(pending) == 0 {
		return res, nil
	}
	if err := repo.Push(ctx, o.Source, srcTip, parent); err != nil {
		return Result{}, fmt.Errorf("push promotions to %s: %w", o.Source, err)
	}
	res.Promoted = pending
	return res, nil
}

// conflict reports the newest edit of the target's file made at or after
// the passed commit from (in the source's history), other than Sluice's
// promotions. Edits before from are what the gate passed it with.
func conflict(edits []plumbing.Hash, index map[plumbing.Hash]int, from plumbing.Hash) (plumbing.Hash, bool) {
	at, ok := index[from]
	if !ok {
		at = -1 // from is not on the source's first-parent line: every edit counts
	}
	for i := len(edits) - 1; i >= 0; i-- {
		if index[edits[i]] >= at {
			return edits[i], true
		}
	}
	return plumbing.ZeroHash, false
}

// passed walks the target's first-parent history, newest first, and
// returns for each promoted file the newest commit that changed it, when
// the gate's verified record says passed, oldest first.
func passed(ctx context.Context, o Options, r Rule, tip plumbing.Hash) (changes, unverified []Change, err error) {
	repo := o.Repo
	seen := map[string]bool{}
	for h, n := tip, 0; !h.IsZero() && n < o.Depth; n++ {
		c, err := repo.Commit(ctx, h)
		if err != nil {
			return nil, nil, err
		}
		h = c.Parent
		var parentTree plumbing.Hash
		if !c.Parent.IsZero() {
			pc, err := repo.Commit(ctx, c.Parent)
			if err != nil {
				return nil, nil, err
			}
			parentTree = pc.Tree
		}
		changed, err := repo.ChangedPaths(ctx, parentTree, c.Tree)
		if err != nil {
			return nil, nil, err
		}
		var mine []string
		for _, p := range changed {
			if _, ok := r.Match(p); ok && !seen[p] && wanted(o.Services, p) {
				seen[p] = true
				mine = append(mine, p)
			}
		}
		if len(mine) == 0 {
			continue
		}
		rec, state, err := repo.ReadRecord(ctx, c.Hash, r.Gate, o.Key)
		if err != nil {
			return nil, nil, err
		}
		ok := state == gitrepo.RecordVerified && rec.Verdict == gitrepo.VerdictPassed
		for _, p := range mine {
			blob, mode, found, err := repo.Entry(ctx, c.Tree, p)
			if err != nil {
				return nil, nil, err
			}
			if !found {
				continue // removed: a removal is not promoted
			}
			ch := Change{From: c.Hash, Path: p, Target: r.Target(p), blob: blob, mode: mode}
			if ok {
				changes = append(changes, ch)
			} else {
				unverified = append(unverified, ch)
			}
		}
	}
	slices.Reverse(changes)
	slices.Reverse(unverified)
	return changes, unverified, nil
}

func wanted(services []string, p string) bool {
	return len(services) == 0 || slices.Contains(services, Service(p))
}
