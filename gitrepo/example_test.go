package gitrepo_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
)

func ExampleRevertMessage() {
	c := gitrepo.Commit{Hash: plumbing.NewHash(strings.Repeat("4b", 20)), Subject: "bump B to v4"}
	fmt.Print(gitrepo.RevertMessage(c, "staging", "Deployment/a: 0/1 ready after 2m0s"))
	// Output:
	// Revert "bump B to v4"
	//
	// This reverts commit 4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b.
	//
	// Gate staging rejected it:
	//
	//     Deployment/a: 0/1 ready after 2m0s
	//
	// Sluice-Gate: staging
	// Sluice-Rejected: 4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b
}

func ExampleEncodeNote() {
	var n gitrepo.Note
	n.Set(gitrepo.Record{
		Gate:      "staging",
		Verdict:   gitrepo.VerdictFailed,
		Candidate: plumbing.NewHash(strings.Repeat("c0", 20)),
		Digest:    "sha256:9f86d0",
		Reason:    "Deployment/a: 0/1 ready after 2m0s\nevents: ImagePullBackOff",
		Started:   time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		Durations: map[string]time.Duration{"render": 80 * time.Millisecond, "total": 2*time.Minute + 3*time.Second},
		Attempts:  1,
	})
	fmt.Print(string(gitrepo.EncodeNote(n)))
	// Output:
	// gate: staging
	// verdict: failed
	// candidate: c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0
	// digest: sha256:9f86d0
	// started: 2025-06-01T12:00:00Z
	// attempts: 1
	// durations: render=80ms total=2m3s
	// reason:
	//     Deployment/a: 0/1 ready after 2m0s
	//     events: ImagePullBackOff
}

func ExampleParseTrailers() {
	msg := "Revert \"bump B\"\n\nThis reverts commit x.\n\nSluice-Gate: staging\nSluice-Rejected: 4b4b\n"
	t := gitrepo.ParseTrailers(msg)
	fmt.Println(t.Get(gitrepo.TrailerGate), t.Get("sluice-rejected"))
	// Output: staging 4b4b
}
