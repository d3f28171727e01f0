package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/preview"
)

// previewSource is where a preview's changes come from.
type previewSource struct {
	name, branch, dir, owner string
	ttl                      time.Duration
}

// buildPreview renders the gate's target and the preview's tree and plans
// what the preview writes. Nothing is written to the cluster.
func buildPreview(ctx context.Context, cfg *config.Config, gate *config.Gate, repo *gitrepo.Repository, src previewSource) (*preview.Set, error) {
	sourceBranch := cfg.Repository.SourceBranch
	branches := []string{sourceBranch, gate.TargetBranch}
	if src.branch != "" {
		branches = append(branches, src.branch)
	}
	if err := repo.Fetch(ctx, branches...); err != nil {
		if errors.Is(err, gitrepo.ErrBranchNotFound) && src.branch != "" {
			if _, terr := repo.Tip(ctx, src.branch); terr != nil {
				return nil, fmt.Errorf("--branch %s: no such branch on the remote", src.branch)
			}
		}
		return nil, err
	}
	treeOf := func(branch string) (plumbing.Hash, plumbing.Hash, error) {
		tip, err := repo.Tip(ctx, branch)
		if err != nil {
			return plumbing.ZeroHash, plumbing.ZeroHash, err
		}
		c, err := repo.Commit(ctx, tip)
		if err != nil {
			return plumbing.ZeroHash, plumbing.ZeroHash, err
		}
		return tip, c.Tree, nil
	}
	sourceTip, sourceTree, err := treeOf(sourceBranch)
	if err != nil {
		return nil, err
	}
	_, targetTree, err := treeOf(gate.TargetBranch)
	if err != nil {
		return nil, err
	}
	opts := cfg.Limits.RenderOptions()

	var base, theirs plumbing.Hash
	var sourceDesc, revision string
	if src.branch != "" {
		tip, tree, err := treeOf(src.branch)
		if err != nil {
			return nil, err
		}
		mb, err := repo.MergeBase(ctx, tip, sourceTip)
		if err != nil {
			return nil, fmt.Errorf("--branch %s: %w", src.branch, err)
		}
		c, err := repo.Commit(ctx, mb)
		if err != nil {
			return nil, err
		}
		base, theirs = c.Tree, tree
		sourceDesc, revision = "branch "+src.branch, tip.String()
		if src.owner == "" {
			// A branch preview the daemon keeps belongs to whoever pushed last.
			if tc, err := repo.Commit(ctx, tip); err == nil {
				src.owner = tc.Author.Email
			}
		}
	} else {
		dir, err := filepath.Abs(src.dir)
		if err != nil {
			return nil, fmt.Errorf("--dir %s: %w", src.dir, err)
		}
		files, err := readWorkTree(dir, gate.Path, opts.MaxFileSize)
		if err != nil {
			return nil, err
		}
		if theirs, err = repo.ReplaceDir(ctx, sourceTree, gate.Path, files); err != nil {
			return nil, fmt.Errorf("--dir %s: %w", src.dir, err)
		}
		base = sourceTree
		sourceDesc = "dir " + dir
	}
	tree, err := repo.Overlay(ctx, base, theirs, targetTree)
	if err != nil {
		var ce *gitrepo.OverlayConflictError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("preview %s: conflict with %s: %w", src.name, gate.TargetBranch, err)
		}
		return nil, err
	}
	render := func(t plumbing.Hash, what string) ([]*unstructured.Unstructured, error) {
		fsys, err := repo.TreeFS(ctx, t, gitrepo.TreeOptions{MaxBlobSize: opts.MaxFileSize})
		if err != nil {
			return nil, err
		}
		objs, err := manifests.Render(ctx, fsys, gate.Path, opts)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", what, err)
		}
		return objs, nil
	}
	target, err := render(targetTree, gate.TargetBranch)
	if err != nil {
		return nil, err
	}
	mine, err := render(tree, "the preview")
	if err != nil {
		return nil, err
	}
	return preview.Plan(preview.Spec{
		Name:            src.name,
		Gate:            gate.Name,
		Source:          sourceDesc,
		Revision:        revision,
		Owner:           src.owner,
		Expires:         time.Now().Add(src.ttl),
		Target:          target,
		Preview:         mine,
		TargetNamespace: gate.Previews.Namespace,
		Routing:         gate.Previews.Routing,
	})
}

// readWorkTree reads the files under gatePath of the working tree dir,
// which must be a repository's root. os.Root keeps every read inside dir.
func readWorkTree(dir, gatePath string, maxFile int64) (map[string]gitrepo.File, error) {
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err != nil {
		return nil, fmt.Errorf("--dir %s: not the root of a Git working tree (no .git in it): give the repository's root", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("--dir: %w", err)
	}
	defer root.Close()
	fsys := root.FS()
	files := map[string]gitrepo.File{}
	err = fs.WalkDir(fsys, gatePath, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return fs.SkipDir
			}
			return nil
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, gatePath), "/")
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			files[rel] = gitrepo.File{Data: []byte(target), Symlink: true}
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			if info.Size() > maxFile {
				return fmt.Errorf("%s: %d bytes, more than the limit of %d", p, info.Size(), maxFile)
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			files[rel] = gitrepo.File{Data: b, Executable: info.Mode()&0o111 != 0}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("--dir %s: %w", dir, err)
	}
	return files, nil
}
