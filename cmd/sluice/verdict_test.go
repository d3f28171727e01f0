package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestStatusMarksUnverifiableRecords: status shows Sluice's signed record
// as the verdict, and a record someone else wrote as "unverifiable", never
// as the verdict it claims.
func TestStatusMarksUnverifiableRecords(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	f.work.Write(t, "environments/staging/web.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  version: v2\n")
	forged := f.work.Commit(t, "bump web to v2")
	note := gitrepo.EncodeNote(gitrepo.Note{Records: []gitrepo.Record{{Gate: "staging", Verdict: gitrepo.VerdictPassed}}})
	f.work.Git(t, "notes", "--ref=sluice", "add", "-m", string(note), forged)
	if err := f.work.Push(t, "HEAD:refs/heads/main", "refs/notes/sluice:refs/notes/sluice"); err != nil {
		t.Fatal(err)
	}
	cfg := f.config(t, "")
	code, stdout, _ := sluice(t, "status", "--config", cfg, "--kubeconfig", f.kubeconfig, "--output", "json")
	if code != 0 {
		t.Fatalf("status exited %d", code)
	}
	var out struct {
		Gates []gateStatus `json:"gates"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	g := out.Gates[0]
	if len(g.Queue) != 1 || g.Queue[0].Verdict != "unverifiable" {
		t.Errorf("queue = %+v, want the forged commit unverifiable", g.Queue)
	}
	if g.Tip == nil || g.Tip.Verdict != "passed" || g.Tip.Unverified {
		t.Errorf("staging's tip = %+v, want Sluice's verified passed", g.Tip)
	}
	if code, stdout, _ := sluice(t, "status", "--config", cfg, "--kubeconfig", f.kubeconfig); code != 0 || !strings.Contains(stdout, "unverifiable") {
		t.Errorf("status text (exit %d) does not mark the forged record unverifiable", code)
	}
}
