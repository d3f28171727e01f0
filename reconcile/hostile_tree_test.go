package reconcile

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// rawEntry is one tree entry written byte for byte, however wrong.
type rawEntry struct{ mode, name, hash string }

// writeRawTree stores a tree object of exactly these entries in the clone,
// as a careless tool or a hostile teammate can (git hash-object --literally).
func writeRawTree(t *testing.T, w *gitserver.Work, entries []rawEntry) string {
	t.Helper()
	var b []byte
	for _, e := range entries {
		h, err := hex.DecodeString(e.hash)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, e.mode+" "+e.name+"\x00"...)
		b = append(b, h...)
	}
	f := filepath.Join(t.TempDir(), "tree")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return w.Git(t, "hash-object", "-w", "-t", "tree", "--literally", f)
}

// TestHostileTreesAndBlobs pushes commits whose trees git fsck refuses,
// or whose blobs are over a limit, to a real Git server (which, like a lax
// forge, does not check them) and drains the queue with the real Runner:
// the commit fails at the render with a reason naming the path, it is
// reverted once, and the next commit is tested normally.
func TestHostileTreesAndBlobs(t *testing.T) {
	const dir = "environments/staging"
	// Each case gives the entries of environments/staging in the hostile
	// commit, from the blobs of the good tree before it.
	type blobs struct{ kust, a, b, b9, big, longLink, linkDir string }
	tests := []struct {
		name    string
		staging func(b blobs) []rawEntry
		want    string
	}{
		{
			name: "a .git directory",
			staging: func(b blobs) []rawEntry {
				return []rawEntry{{"40000", ".git", "@SUB@"}, {"100644", "a.yaml", b.a}, {"100644", "b.yaml", b.b}, {"100644", "kustomization.yaml", b.kust}}
			},
			want: dir + `/.git: is a tree entry named like .git (".git"), which git refuses to check out`,
		},
		{
			name: "a .GIT. file (NTFS)",
			staging: func(b blobs) []rawEntry {
				return []rawEntry{{"100644", ".GIT.", b.b}, {"100644", "a.yaml", b.a}, {"100644", "b.yaml", b.b}, {"100644", "kustomization.yaml", b.kust}}
			},
			want: dir + `/.GIT.: is a tree entry named like .git`,
		},
		{
			name: "a duplicate entry",
			staging: func(b blobs) []rawEntry {
				return []rawEntry{{"100644", "a.yaml", b.a}, {"100644", "a.yaml", b.b}, {"100644", "b.yaml", b.b}, {"100644", "kustomization.yaml", b.kust}}
			},
			want: dir + `/a.yaml: appears twice in its tree`,
		},
		{
			name: "an entry whose name has a slash",
			staging: func(b blobs) []rawEntry {
				return []rawEntry{{"100644", "a.yaml", b.a}, {"100644", "b.yaml", b.b}, {"100644", "base/c.yaml", b.b}, {"100644", "kustomization.yaml", b.kust}}
			},
			want: dir + `/base/c.yaml: is a tree entry whose name contains a slash`,
		},
		{
			name: "a resource through a symlink with a 5000-byte target",
			staging: func(b blobs) []rawEntry {
				return []rawEntry{{"100644", "a.yaml", b.a}, {"100644", "b.yaml", b.b}, {"100644", "kustomization.yaml", b.big}, {"120000", "long.yaml", b.longLink}}
			},
			want: dir + `/long.yaml: symlink target of 5000 bytes is larger than the limit of 4096 bytes`,
		},
		{
			name: "a directory symlink in a resource's path with a 5000-byte target",
			staging: func(b blobs) []rawEntry {
				return []rawEntry{{"100644", "a.yaml", b.a}, {"100644", "b.yaml", b.b}, {"100644", "kustomization.yaml", b.linkDir}, {"120000", "long.yaml", b.longLink}}
			},
			want: dir + `/long.yaml: symlink target of 5000 bytes is larger than the limit of 4096 bytes`,
		},
	}

	srv := gitserver.Start(t, gitserver.Options{})
	t.Run("case", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				h := newHostileRepo(t, srv, "tree-"+strings.NewReplacer(" ", "-", ".", "", "(", "", ")", "").Replace(tt.name))
				w := h.work
				blob := func(content string) string {
					f := filepath.Join(t.TempDir(), "blob")
					if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
					return w.Git(t, "hash-object", "-w", f)
				}
				long := strings.Repeat("./", 2497) + "a.yaml"
				b := blobs{
					kust:     w.Git(t, "rev-parse", "HEAD:"+dir+"/kustomization.yaml"),
					a:        w.Git(t, "rev-parse", "HEAD:"+dir+"/a.yaml"),
					b:        w.Git(t, "rev-parse", "HEAD:"+dir+"/b.yaml"),
					b9:       blob(deployment("b", "v9")),
					big:      blob(kustomization + "  - long.yaml\n"),
					longLink: blob(long),
					linkDir:  blob(kustomization + "  - long.yaml/x.yaml\n"),
				}
				sub := writeRawTree(t, w, []rawEntry{{"100644", "config", b.b}})
				commit := func(staging []rawEntry, parent, msg string) string {
					for i := range staging {
						staging[i].hash = strings.ReplaceAll(staging[i].hash, "@SUB@", sub)
					}
					st := writeRawTree(t, w, staging)
					envs := writeRawTree(t, w, []rawEntry{{"40000", "staging", st}})
					root := writeRawTree(t, w, []rawEntry{{"40000", "environments", envs}})
					sha := w.Git(t, "commit-tree", "-p", parent, "-m", msg, root)
					if err := w.Push(t, sha+":refs/heads/main"); err != nil {
						t.Fatal(err)
					}
					return sha
				}
				hostile := tt.staging(b)
				bad := commit(slices.Clone(hostile), w.Git(t, "rev-parse", "HEAD"), "hostile: "+tt.name)
				// Someone else's change on top, leaving the hostile entries as they are.
				for i, e := range hostile {
					if e.name == "b.yaml" && e.hash == b.b {
						hostile[i].hash = b.b9
					}
				}
				good := commit(hostile, bad, "bump B to v9")

				env := &fakeEnv{}
				logs := &logCapture{}
				r := h.runner(env, logs)
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				if err := r.RunOnce(ctx); err != nil {
					t.Fatalf("RunOnce = %v, want nil: a bad commit is reverted and the daemon goes on\n%s\n%s", err, logs.text(), h.remote("log", "--format=%h %s", "origin/main"))
				}
				rec := h.record(bad)
				if Verdict(rec.Verdict) != Failed || !strings.HasPrefix(rec.Reason, StepRender+": ") || !strings.Contains(rec.Reason, tt.want) {
					t.Errorf("verdict %s, reason:\n%s\nwant failed at the render with %q", rec.Verdict, rec.Reason, tt.want)
				}
				if n := h.reverts()[bad]; n != 1 || rec.RevertCommit.IsZero() {
					t.Errorf("%d reverts of the hostile commit (note says %s), want 1", n, rec.RevertCommit)
				}
				if rec := h.record(good); Verdict(rec.Verdict) != Passed || rec.Skipped {
					t.Errorf("the commit after it: verdict %s skipped %v (%q), want passed by a test", rec.Verdict, rec.Skipped, rec.Reason)
				}
				if !slices.Contains(env.tested, good) {
					t.Errorf("the stand-in cluster tested %v, not the commit after the hostile one %s", env.tested, good[:7])
				}
				main, staging := h.remote("rev-parse", "origin/main"), h.remote("rev-parse", "origin/staging")
				if staging != main {
					t.Errorf("staging = %s, want main's tip %s (the revert)", staging[:7], main[:7])
				}
				// The revert took the hostile entries out of main: what is
				// left is the tree before them, with B at v9.
				if got := h.remote("ls-tree", "--name-only", "origin/main:"+dir); got != "a.yaml\nb.yaml\nkustomization.yaml" {
					t.Errorf("main's %s after the revert holds\n%s", dir, got)
				}
			})
		}
	})
}

// TestRevertTooLargeIsAConflict: a failed commit whose revert would need a
// line merge past the revert's limits is handled as a revert conflict,
// never as an outage retried forever. With reverts on, the gate stops
// with a reason naming the file and the limit; with reverts off, the next
// commit, whose candidate needs the failed one reverted out, is failed
// with the same reason.
func TestRevertTooLargeIsAConflict(t *testing.T) {
	const big = "environments/x/big.yaml"
	bigFile := func(edits map[int]string) string {
		var b strings.Builder
		for i := range 12_000 {
			if e, ok := edits[i]; ok {
				b.WriteString(e + "\n")
				continue
			}
			b.WriteString("key" + strconv.Itoa(i) + ": value\n")
		}
		return b.String()
	}
	tests := []struct {
		name   string
		revert bool
		opts   gitrepo.RevertOptions
		want   string
	}{
		{name: "over the default line limit, reverts on", revert: true, want: big + ": too large to revert automatically (12000 lines, limit 10000)"},
		{name: "over a configured byte limit, reverts off", opts: gitrepo.RevertOptions{MaxFileBytes: 100_000}, want: big + ": too large to revert automatically (180907 bytes, limit 100000)"},
	}
	srv := gitserver.Start(t, gitserver.Options{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostileRepo(t, srv, "revert-too-large-"+strconv.Itoa(i))
			h.push("a large file", big, bigFile(nil))
			h.work.Write(t, "environments/staging/a.yaml", deployment("a", "broken"))
			h.work.Write(t, big, bigFile(map[int]string{10: "changed with the broken image"}))
			bad := h.work.Commit(t, "break A and change the large file")
			if err := h.work.Push(t, "HEAD:refs/heads/main"); err != nil {
				t.Fatal(err)
			}
			h.work.Write(t, "environments/staging/b.yaml", deployment("b", "v9"))
			h.work.Write(t, big, bigFile(map[int]string{10: "changed with the broken image", 11_000: "changed later"}))
			later := h.work.Commit(t, "bump B and change the large file again")
			if err := h.work.Push(t, "HEAD:refs/heads/main"); err != nil {
				t.Fatal(err)
			}

			env := &fakeEnv{broken: []string{"a:broken"}}
			logs := &logCapture{}
			r := h.runner(env, logs)
			repo, err := gitrepo.Open(t.Context(), gitrepo.Options{URL: h.url, Dir: filepath.Join(t.TempDir(), "cache"), Revert: tt.opts})
			if err != nil {
				t.Fatal(err)
			}
			r.Repo = repo
			r.Gates[0].Revert = tt.revert
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			err = r.RunOnce(ctx)
			if tt.revert {
				var stopped *StoppedError
				if !errors.As(err, &stopped) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("RunOnce = %v, want the gate stopped with %q", err, tt.want)
				}
				if tip := h.remote("rev-parse", "origin/main"); tip != later {
					t.Errorf("main = %s, want it left at %s: no revert pushed", tip[:7], later[:7])
				}
				return
			}
			if err != nil {
				t.Fatalf("RunOnce = %v, want nil", err)
			}
			if rec := h.record(bad); Verdict(rec.Verdict) != Failed {
				t.Errorf("the broken commit: verdict %s (%q), want failed", rec.Verdict, rec.Reason)
			}
			rec := h.record(later)
			if Verdict(rec.Verdict) != Failed || !strings.HasPrefix(rec.Reason, StepCandidate+": ") || !strings.Contains(rec.Reason, tt.want) {
				t.Errorf("the commit after it: verdict %s, reason:\n%s\nwant failed at the candidate with %q", rec.Verdict, rec.Reason, tt.want)
			}
		})
	}
}
