package gitserver

import "testing"

func TestShellUnquote(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"'/desired.git'", "/desired.git", true},
		{"/desired.git", "/desired.git", true},
		{`'/it'\''s.git'`, "/it's.git", true},
		{`'/wow'\!'.git'`, "/wow!.git", true},
		{"'/a b.git'", "/a b.git", true},
		{"'/open.git", "", false},
		{"'/a.git' '/b.git'", "", false},
		{"/a.git;rm", "", false},
		{"", "", false},
		{`'/a'\x'.git'`, "", false},
	} {
		got, err := shellUnquote(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("shellUnquote(%q) = %q, %v; want %q, ok=%t", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
