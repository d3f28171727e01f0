package gitrepo

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Files describe a tree: path → content. Content prefixes give other modes:
// "symlink:" + target, "exec:" + content of an executable file.
type files map[string]string

const (
	symlinkPrefix = "symlink:"
	execPrefix    = "exec:"
)

// gitEnv is a hermetic environment for the git CLI: no host or user config.
func gitEnv(t testing.TB) []string {
	t.Helper()
	home := t.TempDir()
	global := filepath.Join(home, ".gitconfig")
	cfg := "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[gc]\n\tauto = 0\n[commit]\n\tgpgSign = false\n[core]\n\tautocrlf = false\n"
	if err := os.WriteFile(global, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GIT_") || k == "HOME" || k == "XDG_CONFIG_HOME" || k == "LC_ALL" || k == "LANG" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+global, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
}

// cli runs git commands in one directory with a hermetic environment.
type cli struct {
	dir string
	env []string
}

func newCLI(t testing.TB, dir string) *cli {
	t.Helper()
	return &cli{dir: dir, env: gitEnv(t)}
}

// try runs git and returns stdout (trimmed) and any error with stderr.
func (c *cli) try(t testing.TB, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), &cliError{args: args, err: err, stderr: stderr.String()}
	}
	return strings.TrimSpace(stdout.String()), nil
}

// gitStdin runs git with stdin and returns its untrimmed stdout.
func gitStdin(t testing.TB, c *cli, stdin string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", &cliError{args: args, err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type cliError struct {
	args   []string
	err    error
	stderr string
}

func (e *cliError) Error() string {
	return "git " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.stderr
}

func (c *cli) git(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.try(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// newRemote creates a bare repository with main as default branch and
// returns its directory and a working clone of it.
func newRemote(t testing.TB) (string, *cli) {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "remote.git")
	newCLI(t, ".").git(t, "init", "--quiet", "--bare", "--initial-branch=main", bare)
	work := newCLI(t, t.TempDir())
	work.git(t, "init", "--quiet", "--initial-branch=main", ".")
	work.git(t, "remote", "add", "origin", bare)
	return bare, work
}

// write replaces the work tree's files with fs (except .git) and commits.
func (c *cli) commitFiles(t testing.TB, msg string, fs files) string {
	t.Helper()
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != ".git" {
			if err := os.RemoveAll(filepath.Join(c.dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for p, content := range fs {
		full := filepath.Join(c.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(content, symlinkPrefix):
			err = os.Symlink(strings.TrimPrefix(content, symlinkPrefix), full)
		case strings.HasPrefix(content, execPrefix):
			err = os.WriteFile(full, []byte(strings.TrimPrefix(content, execPrefix)), 0o755)
		default:
			err = os.WriteFile(full, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c.git(t, "add", "-A")
	c.git(t, "commit", "--quiet", "--allow-empty", "-m", msg)
	return c.git(t, "rev-parse", "HEAD")
}

// workFiles reads the work tree (except .git) back as files.
func (c *cli) workFiles(t testing.TB) files {
	t.Helper()
	out := files{}
	root := os.DirFS(c.dir)
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == ".git" {
			return fs.SkipDir
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(filepath.Join(c.dir, p))
			if err != nil {
				return err
			}
			out[p] = symlinkPrefix + target
		case d.Type().IsRegular():
			b, err := os.ReadFile(filepath.Join(c.dir, p))
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if info.Mode()&0o100 != 0 {
				out[p] = execPrefix + string(b)
			} else {
				out[p] = string(b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// memRepo is an in-memory Repository with no usable remote.
func memRepo(t testing.TB) *Repository {
	t.Helper()
	r, err := Open(context.Background(), Options{URL: "file:///nonexistent", Author: Signature{Name: "Sluice Test", Email: "sluice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// openRemote opens an in-memory Repository on the bare repository at dir.
func openRemote(t testing.TB, dir string) *Repository {
	t.Helper()
	r, err := Open(context.Background(), Options{URL: "file://" + dir, Author: Signature{Name: "Sluice Test", Email: "sluice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mkTree writes fs as a tree object into r.
func mkTree(t testing.TB, r *Repository, fs files) plumbing.Hash {
	t.Helper()
	r.mu.Lock(context.Background())
	defer r.mu.Unlock()
	updates := map[string]*object.TreeEntry{}
	for p, content := range fs {
		mode := filemode.Regular
		switch {
		case strings.HasPrefix(content, symlinkPrefix):
			mode, content = filemode.Symlink, strings.TrimPrefix(content, symlinkPrefix)
		case strings.HasPrefix(content, execPrefix):
			mode, content = filemode.Executable, strings.TrimPrefix(content, execPrefix)
		}
		h, err := writeBlob(r.st, []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		updates[p] = &object.TreeEntry{Name: p, Mode: mode, Hash: h}
	}
	tree, blocked, err := r.updateTree(plumbing.ZeroHash, updates)
	if err != nil || len(blocked) > 0 {
		t.Fatalf("mkTree: %v %v", err, blocked)
	}
	return tree
}

// mkCommit writes a commit of fs on parent (ZeroHash for a root commit).
func mkCommit(t testing.TB, r *Repository, parent plumbing.Hash, msg string, fs files) plumbing.Hash {
	t.Helper()
	h, err := r.CommitTree(t.Context(), mkTree(t, r, fs), parent, msg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// treeFiles reads a tree back as files, through TreeFS.
func treeFiles(t testing.TB, r *Repository, tree plumbing.Hash) files {
	t.Helper()
	fsys, err := r.TreeFS(t.Context(), tree, TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := files{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			out[p] = symlinkPrefix + target
		case !d.IsDir():
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if info.Mode()&0o100 != 0 {
				out[p] = execPrefix + string(b)
			} else {
				out[p] = string(b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// merged returns a copy of base with over applied; "" in over deletes.
func merged(base, over files) files {
	out := maps.Clone(base)
	if out == nil {
		out = files{}
	}
	for k, v := range over {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func sortedPaths(f files) []string { return slices.Sorted(maps.Keys(f)) }
