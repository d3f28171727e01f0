package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/forge"
	"github.com/sluice-gitops/sluice/manifests"
)

// PullRequests makes forge_test.go's recordingForge a forge.Forge.
func (f *recordingForge) PullRequests(context.Context, string, int) ([]forge.PullRequest, error) {
	return nil, nil
}

const (
	headA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	headB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestCheckPull(t *testing.T) {
	tests := []struct {
		name    string
		pr      forge.PullRequest
		wantErr string
	}{
		{name: "a GitHub or Gitea pull request", pr: forge.PullRequest{Number: 7, Head: headA, Ref: "refs/pull/7/head"}},
		{name: "a GitLab merge request", pr: forge.PullRequest{Number: 7, Head: headA, Ref: "refs/merge-requests/7/head"}},
		{name: "the ref of another number", pr: forge.PullRequest{Number: 7, Head: headA, Ref: "refs/pull/8/head"}, wantErr: "is not its head's"},
		{name: "a branch as the ref", pr: forge.PullRequest{Number: 7, Head: headA, Ref: "refs/heads/staging"}, wantErr: "is not its head's"},
		{name: "a ref that climbs out", pr: forge.PullRequest{Number: 7, Head: headA, Ref: "refs/pull/7/head/../../../heads/main"}, wantErr: "is not its head's"},
		{name: "no number", pr: forge.PullRequest{Number: 0, Head: headA, Ref: "refs/pull/0/head"}, wantErr: "is not its head's"},
		{name: "a short head", pr: forge.PullRequest{Number: 7, Head: "aaaaaaa", Ref: "refs/pull/7/head"}, wantErr: "not a full commit hash"},
		{name: "a head in capitals", pr: forge.PullRequest{Number: 7, Head: strings.ToUpper(headA), Ref: "refs/pull/7/head"}, wantErr: "not a full commit hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPull(tt.pr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkPull = %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestTouchesGate: which pull requests get a preview of a gate.
func TestTouchesGate(t *testing.T) {
	// What the article's staging render reads, in part.
	reads := manifests.ReadSet{
		Paths: []string{"environments/staging/kustomization.yaml", "services/a", "services/a/deployment.yaml", "services/a/kustomization.yaml"},
		Dirs:  []string{".", "environments", "environments/staging", "services"},
	}
	tests := []struct {
		name    string
		changed []string
		want    bool
	}{
		{name: "a version bump under the gate's path", changed: []string{"environments/staging/versions/a.yaml"}, want: true},
		{name: "a new file under the gate's path", changed: []string{"README.md", "environments/staging/new.yaml"}, want: true},
		{name: "a base the render reads, outside the gate's path", changed: []string{"services/a/deployment.yaml"}, want: true},
		{name: "a file added to a directory the render listed", changed: []string{"services/a/extra.yaml"}, want: true},
		{name: "a directory the render went through, replaced", changed: []string{"services"}, want: true},
		{name: "documentation only", changed: []string{"README.md", "docs/how.md"}},
		{name: "another gate's folder", changed: []string{"environments/shared-dev/versions/a.yaml"}},
		{name: "a sibling whose name starts like the gate's path", changed: []string{"environments/staging-old/a.yaml"}},
		{name: "a file beside a directory the render only went through", changed: []string{"services/new.yaml"}},
		{name: "nothing", changed: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := touchesGate(tt.changed, "environments/staging/", reads); got != tt.want {
				t.Errorf("touchesGate(%q) = %v, want %v", tt.changed, got, tt.want)
			}
		})
	}
}

func TestPreviewStatus(t *testing.T) {
	cand, head := commitOf(0xcc).Hash, commitOf(0xaa).Hash
	tests := []struct {
		name  string
		o     pullOutcome
		state forge.State
		desc  string
	}{
		{"testing names the namespace", pullOutcome{kind: pullTesting, namespace: "sluice-stg-aaaaaaa-1a2b3c"}, forge.Pending, "testing on top of cccccccccccc in sluice-stg-aaaaaaa-1a2b3c"},
		{"a pass names the gate and the candidate", pullOutcome{kind: pullPassed}, forge.Success, "would pass stg on top of cccccccccccc"},
		{"a pass without a test says why", pullOutcome{kind: pullPassed, same: true}, forge.Success, "would pass stg on top of cccccccccccc (renders the same)"},
		{"a failure gives the first line of its reason", pullOutcome{kind: pullFailed, reason: "tests: test Job/a-checks-b failed\nlogs: ..."}, forge.Failure, "would fail stg on top of cccccccccccc: tests: test Job/a-checks-b failed"},
		{"a conflict asks for a rebase, naming the file", pullOutcome{kind: pullConflict, paths: []string{"environments/staging/versions/a.yaml"}}, forge.Error, "conflicts with environments/staging/versions/a.yaml in the queue; rebase on main"},
		{"a conflict in several files names the first", pullOutcome{kind: pullConflict, paths: []string{"a", "b", "c"}}, forge.Error, "conflicts with a and 2 more in the queue; rebase on main"},
		{"a head too large to fetch fails, untested", pullOutcome{kind: pullTooLarge, reason: "fetch refs/pull/7/head: more than a fetch may bring (256 MiB)"}, forge.Failure, "not tested: fetch refs/pull/7/head: more than a fetch may bring (256 MiB)"},
		{"the cluster's error stays pending", pullOutcome{kind: pullError, reason: "apply: connection refused"}, forge.Pending, "not judged yet, will retry: apply: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := previewStatus("stg", "main", cand, head, tt.o)
			want := forge.Status{Commit: head.String(), Context: "sluice/stg/preview", State: tt.state, Description: tt.desc}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPullMemo: what is tested again, and what is posted again, as a
// pull request's head and the queue's candidate move.
func TestPullMemo(t *testing.T) {
	pass := &forge.Status{State: forge.Success, Description: "would pass"}
	fail := &forge.Status{State: forge.Failure, Description: "would fail"}
	type step struct {
		name        string
		head, onto  string
		wantDecided bool   // the same head on the same candidate: nothing to do
		input       string // else: what its overlay rendered to
		wantJudged  bool   // that head and rendering were judged: no test
		verdict     *forge.Status
		wantPost    string // the description posted, "" for none
	}
	steps := []step{
		{name: "a new pull request is tested", head: headA, onto: "c1", input: "digest d1", verdict: pass, wantPost: "would pass"},
		{name: "the same head on the same candidate is left alone", head: headA, onto: "c1", wantDecided: true},
		{name: "a candidate that renders it the same needs no test", head: headA, onto: "c2", input: "digest d1", wantJudged: true},
		{name: "a candidate that renders it otherwise is a new test", head: headA, onto: "c3", input: "digest d2", verdict: fail, wantPost: "would fail"},
		{name: "back to a rendering judged before: its verdict is posted again", head: headA, onto: "c4", input: "digest d1", wantJudged: true, wantPost: "would pass"},
		{name: "a new head is tested, though it renders the same", head: headB, onto: "c4", input: "digest d1", verdict: pass, wantPost: "would pass"},
		{name: "a pull request touching nothing of the gate is decided without a status", head: headA, onto: "c5", input: ""},
		{name: "and is left alone on that candidate", head: headA, onto: "c5", wantDecided: true},
	}
	m := newPullMemo()
	for _, s := range steps {
		input, decided := m.decided("stg", s.head, s.onto)
		if decided != s.wantDecided {
			t.Fatalf("%s: decided = %v, want %v", s.name, decided, s.wantDecided)
		}
		if !decided {
			input = s.input
			if s.input != "" {
				if _, judged := m.judged("stg", s.head, s.input); judged != s.wantJudged {
					t.Fatalf("%s: judged = %v, want %v", s.name, judged, s.wantJudged)
				}
			}
			m.remember("stg", s.head, s.onto, s.input, s.verdict)
		}
		got, posted := m.shown("stg", s.head, input)
		if (s.wantPost != "") != posted || posted && got.Description != s.wantPost {
			t.Fatalf("%s: posted %v %q, want %q", s.name, posted, got.Description, s.wantPost)
		}
	}
	// Another gate's judgements are its own.
	if _, ok := m.decided("prod", headA, "c1"); ok {
		t.Error("gate prod shares gate stg's judgements")
	}
	// Bounded: past maxPullMemo, everything is forgotten.
	for i := range maxPullMemo + 1 {
		m.remember("stg", headA, string(rune(i)), "", nil)
	}
	if _, ok := m.decided("stg", headA, "c1"); ok {
		t.Errorf("the memo holds more than %d judgements", maxPullMemo)
	}
}
