package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile"
)

// Gates drain at the same time, so their steps interleave: every step line
// must sit under the header of its own gate and commit.
func TestProgressReprintsTheHeaderWhenGatesInterleave(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false)
	a := gitrepo.Commit{Hash: plumbing.NewHash(strings.Repeat("a", 40)), Subject: "bump A to v3"}
	b := gitrepo.Commit{Hash: plumbing.NewHash(strings.Repeat("b", 40)), Subject: "bump B to v4"}
	for _, e := range []reconcile.Event{
		{Gate: "staging", Commit: a, Step: "render", Took: time.Second, Detail: "10 objects"},
		{Gate: "staging", Commit: a, Step: "apply", Took: time.Second, Detail: "6 objects"},
		{Gate: "shared-dev", Commit: b, Step: "render", Took: time.Second, Detail: "4 objects"},
		{Gate: "staging", Commit: a, Step: "health", Took: time.Second, Detail: "6 objects current"},
		{Gate: "staging", Commit: b, Step: "render", Took: time.Second, Detail: "10 objects"},
	} {
		p.event(e)
	}
	var got []string
	for line := range strings.Lines(out.String()) {
		fields := strings.Fields(line)
		if strings.HasPrefix(fields[1], "[") {
			got = append(got, fields[1]+" "+fields[2]) // a header: time [gate] sha "subject"
		} else {
			got = append(got, fields[0])
		}
	}
	want := []string{
		"[staging] aaaaaaa", "render", "apply",
		"[shared-dev] bbbbbbb", "render",
		"[staging] aaaaaaa", "health",
		"[staging] bbbbbbb", "render",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress lines:\n%s\nwant, as header or step:\n%s", out.String(), strings.Join(want, "\n"))
	}
}
