package gitrepo

import (
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

func TestPromotionOf(t *testing.T) {
	key := testKey(t, 'k')
	parent, tree, from := plumbing.Hash{1}, plumbing.Hash{2}, plumbing.Hash{3}
	msg := PromotionMessage("shared-dev", "staging", "a", "v3", from, "env/dev/a.yaml", "env/staging/a.yaml")
	if subject, _, _ := strings.Cut(msg, "\n"); subject != "Promote a v3 from shared-dev to staging" {
		t.Errorf("subject %q", subject)
	}
	commit := func(m string, p, tr plumbing.Hash) Commit {
		return Commit{Parent: p, Tree: tr, Message: m, Trailers: ParseTrailers(m)}
	}
	signed := key.SignPromotion(msg, parent, tree)
	for _, tc := range []struct {
		name string
		key  *VerdictKey
		c    Commit
		ok   bool
	}{
		{"signed", key, commit(signed, parent, tree), true},
		{"another key", testKey(t, 'o'), commit(signed, parent, tree), false},
		{"nil key", nil, commit(signed, parent, tree), false},
		{"moved onto another parent", key, commit(signed, plumbing.Hash{9}, tree), false},
		{"another tree", key, commit(signed, parent, plumbing.Hash{9}), false},
		{"message changed", key, commit(strings.Replace(signed, "a v3", "a v4", 1), parent, tree), false},
		{"unsigned", key, commit(msg, parent, tree), false},
		{"a revert's signature", key, commit(key.SignRevert(msg, parent, tree), parent, tree), false},
	} {
		p, ok := tc.key.PromotionOf(tc.c)
		if ok != tc.ok {
			t.Errorf("%s: PromotionOf ok = %v, want %v", tc.name, ok, tc.ok)
		}
		if ok && (p.From != from || p.Gate != "shared-dev" || p.Path != "env/dev/a.yaml") {
			t.Errorf("%s: %+v", tc.name, p)
		}
	}
	// A promotion's signature is no revert's.
	if key.verifyRevert(commit(signed, parent, tree)) {
		t.Error("a promotion verified as a revert")
	}
}
