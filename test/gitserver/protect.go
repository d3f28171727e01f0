package gitserver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ProtectLogFile is the file, inside a bare repository, to which the hook from
// ProtectBranches appends one line per rejected update:
//
//	non-fast-forward refs/heads/<branch> <old> <new>
//	deletion refs/heads/<branch> <old>
const ProtectLogFile = "protect.log"

// ProtectBranches returns a pre-receive hook script that protects the named
// branches the way a Git host's branch protection does: they may be created
// and fast-forwarded, but a non-fast-forward update or a deletion is refused
// with a "protected branch" message on stderr (shown by git as "remote: ...")
// and a line in $GIT_DIR/protect.log. Names may be given with or without
// "refs/heads/". As with any pre-receive hook, one refused ref refuses the
// whole push.
func ProtectBranches(branches ...string) string {
	var patterns []string
	for _, b := range branches {
		patterns = append(patterns, shellQuote("refs/heads/"+strings.TrimPrefix(b, "refs/heads/")))
	}
	if len(patterns) == 0 {
		return "#!/bin/sh\n# gitserver: no protected branches.\ncat >/dev/null\n"
	}
	return `#!/bin/sh
# gitserver: protected branches move only by fast-forward and are never deleted.
log="${GIT_DIR:-.}/` + ProtectLogFile + `"
status=0
while read -r old new ref; do
	case "$ref" in
	` + strings.Join(patterns, "|") + `) ;;
	*) continue ;;
	esac
	branch=${ref#refs/heads/}
	case "$new" in
	*[!0]*) ;;
	*)
		echo "protected branch $branch: deletion rejected" >&2
		echo "deletion $ref $old" >>"$log"
		status=1
		continue
		;;
	esac
	case "$old" in
	*[!0]*) ;;
	*) continue ;; # creation
	esac
	if ! git merge-base --is-ancestor "$old" "$new" 2>/dev/null; then
		echo "protected branch $branch: non-fast-forward update rejected ($old -> $new)" >&2
		echo "non-fast-forward $ref $old $new" >>"$log"
		status=1
	fi
done
exit $status
`
}

// ProtectLog returns the lines the ProtectBranches hook of repo has logged,
// nil if it never refused anything.
func (s *Server) ProtectLog(t testing.TB, repo string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.RepoDir(repo), ProtectLogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// shellQuote quotes s as one literal POSIX shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
