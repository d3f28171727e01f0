package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// modulePath names the repository whose bin/ holds the tools.
const modulePath = "github.com/sluice-gitops/sluice"

// Tools are the binaries a test cluster is made of, all looked up in one
// directory. kubectl is among them because kwokctl runs it to see whether the
// API server is serving, and would download one if it found none.
var Tools = []string{
	"etcd",
	"kube-apiserver",
	"kube-controller-manager",
	"kube-scheduler",
	"kubectl",
	"kwok",
	"kwokctl",
}

// ToolsDir returns the directory the tool binaries are taken from: dir when
// it is not empty, else $SLUICE_TOOLS_DIR, else bin/ at the root of the
// repository, found by walking up from the working directory to its go.mod.
func ToolsDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("SLUICE_TOOLS_DIR")
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
	}
	return filepath.Abs(dir)
}

// missingTools lists the Tools that are not executable files in dir.
func missingTools(dir string) []string {
	var missing []string
	for _, name := range Tools {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	return missing
}

// checkTools returns an error wrapping ErrToolsMissing, with the message
// people are told to act on, when a tool is missing from dir.
func checkTools(dir string) error {
	if missing := missingTools(dir); len(missing) > 0 {
		return &ToolsMissingError{Dir: dir, Missing: missing}
	}
	return nil
}

// ToolsMissingError says which tool binaries are missing, and where.
type ToolsMissingError struct {
	Dir     string
	Missing []string
}

func (e *ToolsMissingError) Error() string {
	return fmt.Sprintf("test cluster binaries missing in %s: run `make tools` (missing: %s)",
		e.Dir, strings.Join(e.Missing, ", "))
}

// Is makes errors.Is(err, ErrToolsMissing) true.
func (e *ToolsMissingError) Is(target error) bool { return target == ErrToolsMissing }

// repoRoot walks up from the working directory to the go.mod of this module
// (tools modules under test/tools have go.mod files of their own).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if declaresModule(filepath.Join(dir, "go.mod"), modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod of " + modulePath + " above the working directory; set SLUICE_TOOLS_DIR")
		}
		dir = parent
	}
}

func declaresModule(gomod, module string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == module
		}
	}
	return false
}
