package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// bound is how long a test waits for something that must happen without
// waiting on the network before it calls it a hang. It is no timing
// assertion: what it waits for takes milliseconds, and on the code this
// guards against it never happens at all.
const bound = time.Minute

// holdServer is a real Git server (gitserver's smart-HTTP handler) that
// holds the requests hold matches while holding is on: each held request
// is reported on arrived and waits until release is closed, or its client
// gives up. It stands for a remote that does not answer.
type holdServer struct {
	url, bare string
	work      *cli // a clone with main pushed

	mu      sync.Mutex
	hold    func(*http.Request) bool
	release chan struct{}
	arrived chan string
}

func startHoldServer(t *testing.T) *holdServer {
	t.Helper()
	root, home := t.TempDir(), t.TempDir()
	h, err := gitserver.NewHandler(root, gitserver.HandlerOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := gitserver.CreateBareRepo(t.Context(), root, home, "repo")
	if err != nil {
		t.Fatal(err)
	}
	s := &holdServer{bare: bare, arrived: make(chan string, 64)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		hold, release := s.hold, s.release
		s.mu.Unlock()
		if hold != nil && hold(req) {
			s.arrived <- req.Method + " " + req.URL.Path
			select {
			case <-release:
			case <-req.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(s.releaseAll) // runs first: no held request keeps Close waiting
	s.url = srv.URL + "/repo.git"

	s.work = newCLI(t, t.TempDir())
	s.work.git(t, "init", "--quiet", "--initial-branch=main", ".")
	s.work.git(t, "remote", "add", "origin", filepath.ToSlash(bare))
	return s
}

// holdOn starts holding the requests match says yes to.
func (s *holdServer) holdOn(match func(*http.Request) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.release = match, make(chan struct{})
}

// releaseAll lets every held request through and stops holding.
func (s *holdServer) releaseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		close(s.release)
	}
	s.hold, s.release = nil, nil
}

// waitArrived waits for the next held request and returns it.
func (s *holdServer) waitArrived(t *testing.T, what string) string {
	t.Helper()
	select {
	case req := <-s.arrived:
		return req
	case <-time.After(bound):
		t.Fatalf("%s never reached the server", what)
		return ""
	}
}

func anyRequest(*http.Request) bool { return true }

// packRequest matches the request that carries a pack: the fetch's
// download (upload-pack) or the push's upload (receive-pack).
func packRequest(req *http.Request) bool {
	return req.Method == http.MethodPost
}

// open opens a Repository on the server; dir "" keeps it in memory.
func (s *holdServer) open(t *testing.T, dir string) *Repository {
	t.Helper()
	r, err := Open(t.Context(), Options{URL: s.url, Dir: dir, Author: Signature{Name: "Sluice Test", Email: "sluice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// result runs f in a goroutine and returns where its error arrives.
func result(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func waitResult(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(bound):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// localFixture is what the local calls work on: two commits on main,
// fetched, with a record on the first.
type localFixture struct {
	c1, c2 plumbing.Hash
	key    *VerdictKey
}

func seedLocal(t *testing.T, s *holdServer, r *Repository) localFixture {
	t.Helper()
	c1 := plumbing.NewHash(s.work.commitFiles(t, "c1", files{"app/config.yaml": "a: 1\nb: 2\nc: 3\n", "README": "hello\n"}))
	c2 := plumbing.NewHash(s.work.commitFiles(t, "c2", files{"app/config.yaml": "a: 1\nb: 20\nc: 3\n", "README": "hello\n"}))
	s.work.git(t, "push", "--quiet", "origin", "main")
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	key, err := NewVerdictKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := key.SignRecord(c1, Record{Gate: "staging", Verdict: VerdictPassed})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetRecord(t.Context(), c1, rec); err != nil {
		t.Fatal(err)
	}
	return localFixture{c1: c1, c2: c2, key: key}
}

// localWork is what another gate does with the cache while one talks to
// the remote: render a tree, revert a commit, read and write a record.
func localWork(ctx context.Context, r *Repository, f localFixture) error {
	c2, err := r.Commit(ctx, f.c2)
	if err != nil {
		return err
	}
	fsys, err := r.TreeFS(ctx, c2.Tree, TreeOptions{})
	if err != nil {
		return err
	}
	if b, err := fs.ReadFile(fsys, "app/config.yaml"); err != nil || !strings.Contains(string(b), "b: 20") {
		return fmt.Errorf("TreeFS: read %q, %v", b, err)
	}
	reverted, err := r.Revert(ctx, f.c2, c2.Tree)
	if err != nil {
		return err
	}
	rfs, err := r.TreeFS(ctx, reverted, TreeOptions{})
	if err != nil {
		return err
	}
	if b, err := fs.ReadFile(rfs, "app/config.yaml"); err != nil || !strings.Contains(string(b), "b: 2\n") {
		return fmt.Errorf("Revert: read %q, %v", b, err)
	}
	rec, state, err := r.ReadRecord(ctx, f.c1, "staging", f.key)
	if err != nil || state != RecordVerified || rec.Verdict != VerdictPassed {
		return fmt.Errorf("ReadRecord = %+v, %v, %v", rec, state, err)
	}
	signed, err := f.key.SignRecord(f.c2, Record{Gate: "prod", Verdict: VerdictFailed, Reason: "set while the remote hangs"})
	if err != nil {
		return err
	}
	if err := r.SetRecord(ctx, f.c2, signed); err != nil {
		return err
	}
	if _, err := r.Queue(ctx, "main", "main"); err != nil {
		return err
	}
	_, err = r.Tip(ctx, "main")
	return err
}

// TestLocalWorkProceedsWhileTheRemoteHangs: while a Fetch, Push or
// PushNotes waits on a server that does not answer, another goroutine's
// TreeFS, Revert, ReadRecord and SetRecord complete; the network operation
// then finishes normally once the server answers. The server is held on
// the request that carries the pack, so the fetch or push is as deep into
// its work as it gets before the pack.
func TestLocalWorkProceedsWhileTheRemoteHangs(t *testing.T) {
	tests := []struct {
		name string
		dir  bool // a cache directory (the filesystem store), or memory
		// prepare sets up what op sends or brings.
		prepare func(t *testing.T, s *holdServer, r *Repository, f localFixture) (op func(context.Context) error, check func(t *testing.T))
	}{
		{
			name: "Fetch into memory", dir: false, prepare: prepareFetch,
		},
		{
			name: "Fetch into a cache directory", dir: true, prepare: prepareFetch,
		},
		{
			name: "Push", dir: true,
			prepare: func(t *testing.T, s *holdServer, r *Repository, f localFixture) (func(context.Context) error, func(*testing.T)) {
				c2, err := r.Commit(t.Context(), f.c2)
				if err != nil {
					t.Fatal(err)
				}
				c3, err := r.CommitTree(t.Context(), c2.Tree, f.c2, "c3\n")
				if err != nil {
					t.Fatal(err)
				}
				return func(ctx context.Context) error { return r.Push(ctx, "main", f.c2, c3) },
					func(t *testing.T) {
						if got := newCLI(t, s.bare).git(t, "rev-parse", "main"); got != c3.String() {
							t.Errorf("remote main = %s, want %s", got, c3)
						}
					}
			},
		},
		{
			name: "PushNotes", dir: false,
			prepare: func(t *testing.T, s *holdServer, r *Repository, f localFixture) (func(context.Context) error, func(*testing.T)) {
				return r.PushNotes, func(t *testing.T) {
					note := newCLI(t, s.bare).git(t, "notes", "--ref=sluice", "show", f.c1.String())
					if !strings.Contains(note, "gate: staging") {
						t.Errorf("remote note on c1 = %q, want the staging record", note)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startHoldServer(t)
			dir := ""
			if tt.dir {
				dir = t.TempDir()
			}
			r := s.open(t, dir)
			f := seedLocal(t, s, r)
			op, check := tt.prepare(t, s, r, f)

			s.holdOn(packRequest)
			defer s.releaseAll() // before the cleanups: Close must not wait on a held request
			opDone := result(func() error { return op(t.Context()) })
			s.waitArrived(t, tt.name)

			// The server holds the operation until the local work is done.
			if err := waitResult(t, result(func() error { return localWork(t.Context(), r, f) }), "local work while "+tt.name+" waits on the server"); err != nil {
				t.Fatalf("local work while %s waits on the server: %v", tt.name, err)
			}
			s.releaseAll()
			if err := waitResult(t, opDone, tt.name); err != nil {
				t.Fatalf("%s after the server answered: %v", tt.name, err)
			}
			check(t)
			// What the local work wrote is still there.
			if _, state, err := r.ReadRecord(t.Context(), f.c2, "prod", f.key); err != nil || state != RecordVerified {
				t.Errorf("record set during %s: %v, %v", tt.name, state, err)
			}
		})
	}
}

// prepareFetch puts a new commit and a note on the remote for Fetch to
// bring, so that it downloads a pack and applies refs and notes.
func prepareFetch(t *testing.T, s *holdServer, r *Repository, f localFixture) (func(context.Context) error, func(*testing.T)) {
	c3 := s.work.commitFiles(t, "c3", files{"app/config.yaml": "a: 1\nb: 20\nc: 30\n", "README": "hello\n"})
	s.work.git(t, "push", "--quiet", "origin", "main")
	s.work.git(t, "notes", "--ref=sluice", "add", "-m", "gate: other\nverdict: passed", c3)
	s.work.git(t, "push", "--quiet", "origin", "refs/notes/sluice")
	return func(ctx context.Context) error { return r.Fetch(ctx, "main") },
		func(t *testing.T) {
			tip, err := r.Tip(t.Context(), "main")
			if err != nil || tip.String() != c3 {
				t.Errorf("Tip(main) = %s, %v; want %s", tip, err, c3)
			}
			n, found, err := r.ReadNote(t.Context(), plumbing.NewHash(c3))
			if _, ok := n.Get("other"); !found || !ok || err != nil {
				t.Errorf("remote note on c3 after the fetch: %+v, %v, %v", n, found, err)
			}
			// Our record made during the fetch survived the notes sync.
			if _, _, err := r.ReadRecord(t.Context(), f.c1, "staging", f.key); err != nil {
				t.Error(err)
			}
		}
}

// TestNetworkCallsReturnOnCancel: a Fetch, Push or PushNotes whose
// context is cancelled while the server hangs returns promptly with the
// context's error, even while another Fetch of the same Repository hangs
// on the server too (and is not cancelled).
func TestNetworkCallsReturnOnCancel(t *testing.T) {
	tests := []struct {
		name string
		op   func(ctx context.Context, r *Repository, f localFixture) error
	}{
		{"Fetch", func(ctx context.Context, r *Repository, f localFixture) error { return r.Fetch(ctx, "main") }},
		{"Push", func(ctx context.Context, r *Repository, f localFixture) error {
			c2, err := r.Commit(ctx, f.c2)
			if err != nil {
				return err
			}
			c3, err := r.CommitTree(ctx, c2.Tree, f.c2, "c3\n")
			if err != nil {
				return err
			}
			return r.Push(ctx, "main", f.c2, c3)
		}},
		{"PushNotes", func(ctx context.Context, r *Repository, f localFixture) error { return r.PushNotes(ctx) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startHoldServer(t)
			r := s.open(t, "")
			f := seedLocal(t, s, r)

			s.holdOn(anyRequest)
			defer s.releaseAll() // before the cleanups: Close must not wait on a held request
			other := result(func() error { return r.Fetch(context.Background(), "main") })
			s.waitArrived(t, "the other Fetch")

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := result(func() error { return tt.op(ctx, r, f) })
			s.waitArrived(t, tt.name+" (while another Fetch waits on the server)")
			cancel()
			err := waitResult(t, done, tt.name+" after its context was cancelled")
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s = %v, want an error matching context.Canceled", tt.name, err)
			}

			s.releaseAll()
			if err := waitResult(t, other, "the other Fetch"); err != nil {
				t.Errorf("the other Fetch after the server answered: %v", err)
			}
		})
	}
}

// TestLocalCallsReturnOnCancelWhileLocked: a call waiting for the
// repository lock returns ctx's error once ctx is done; so does a read
// through a TreeFS view whose ctx is done.
func TestLocalCallsReturnOnCancelWhileLocked(t *testing.T) {
	r := memRepo(t)
	c1 := mkCommit(t, r, plumbing.ZeroHash, "c1\n", files{"a": "1\n"})
	c2 := mkCommit(t, r, c1, "c2\n", files{"a": "2\n"})
	tree := mkTree(t, r, files{"a": "2\n"})
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Commit", func(ctx context.Context) error { _, err := r.Commit(ctx, c2); return err }},
		{"Log", func(ctx context.Context) error { _, err := r.Log(ctx, c2, c1); return err }},
		{"IsAncestor", func(ctx context.Context) error { _, err := r.IsAncestor(ctx, c1, c2); return err }},
		{"Revert", func(ctx context.Context) error { _, err := r.Revert(ctx, c2, tree); return err }},
		{"CommitTree", func(ctx context.Context) error { _, err := r.CommitTree(ctx, tree, c2, "c3\n"); return err }},
		{"TreeFS", func(ctx context.Context) error { _, err := r.TreeFS(ctx, tree, TreeOptions{}); return err }},
		{"ReadNote", func(ctx context.Context) error { _, _, err := r.ReadNote(ctx, c1); return err }},
		{"SetRecord", func(ctx context.Context) error {
			return r.SetRecord(ctx, c1, Record{Gate: "g", Verdict: VerdictPassed})
		}},
		{"Tip", func(ctx context.Context) error { _, err := r.Tip(ctx, "main"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := r.mu.Lock(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer r.mu.Unlock()
			ctx, cancel := context.WithCancel(t.Context())
			done := result(func() error { return tt.call(ctx) })
			cancel()
			err := waitResult(t, done, tt.name+" waiting for the lock")
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s = %v, want context.Canceled", tt.name, err)
			}
		})
	}

	t.Run("a TreeFS view after its ctx is done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		fsys, err := r.TreeFS(ctx, tree, TreeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := fs.ReadFile(fsys, "a"); !errors.Is(err, context.Canceled) {
			t.Errorf("ReadFile = %v, want context.Canceled", err)
		}
	})
}

// TestConcurrentRecordsAreNeverLost: gates in two processes (two
// Repositories with caches of their own on one server) set records and push
// notes at the same time, several goroutines each, while another goroutine
// keeps fetching; no record is lost, locally or on the remote. Run it with
// -race: the network operations share the store with the local ones.
func TestConcurrentRecordsAreNeverLost(t *testing.T) {
	const (
		gates   = 4 // goroutines per Repository
		commits = 3
	)
	s := startHoldServer(t)
	var hashes []plumbing.Hash
	for i := range commits {
		hashes = append(hashes, plumbing.NewHash(s.work.commitFiles(t, fmt.Sprintf("c%d", i), files{"a": fmt.Sprintf("%d\n", i)})))
	}
	s.work.git(t, "push", "--quiet", "origin", "main")
	repos := []*Repository{s.open(t, t.TempDir()), s.open(t, "")}
	for _, r := range repos {
		if err := r.Fetch(t.Context(), "main"); err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2*gates*commits+1)
	stopFetching := make(chan struct{})
	fetcherDone := make(chan struct{})
	go func() {
		defer close(fetcherDone)
		for {
			select {
			case <-stopFetching:
				return
			default:
			}
			if err := repos[0].Fetch(t.Context(), "main"); err != nil {
				errs <- fmt.Errorf("fetch: %w", err)
				return
			}
		}
	}()
	for ri, r := range repos {
		for g := range gates {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, c := range hashes {
					rec := Record{Gate: fmt.Sprintf("r%d-g%d", ri, g), Verdict: VerdictPassed, Reason: "on " + c.String()}
					if err := r.SetRecord(t.Context(), c, rec); err != nil {
						errs <- err
						return
					}
					// Another process may win every race for the remote
					// ref; PushNotes then gives up with ErrStale and the
					// record waits, locally, for the next one.
					if err := r.PushNotes(t.Context()); err != nil && !errors.Is(err, ErrStale) {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(stopFetching)
	<-fetcherDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Publish what is left, as each gate's next PushNotes would.
	for _, r := range repos {
		var err error
		for range maxNotesPushAttempts {
			if err = r.PushNotes(t.Context()); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	check := func(what string, r *Repository) {
		t.Helper()
		for _, c := range hashes {
			n, _, err := r.ReadNote(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			for ri := range repos {
				for g := range gates {
					gate := fmt.Sprintf("r%d-g%d", ri, g)
					if rec, ok := n.Get(gate); !ok || rec.Reason != "on "+c.String() {
						t.Errorf("%s: note on %s has no record of %s: %+v", what, short(c), gate, n.Records)
					}
				}
			}
		}
	}
	fresh := s.open(t, "")
	if err := fresh.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	check("the remote", fresh)
	for i, r := range repos {
		if err := r.Fetch(t.Context(), "main"); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("repository %d", i), r)
	}
}
