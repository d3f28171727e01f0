package cluster

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
)

// stageFiles are the kwok Stages of every test cluster: kwok's fast node and
// pod stages plus the simulated faults. Handing kwokctl any Stage replaces all
// of its defaults, so the node stages are here too.
//
//go:embed stages/*.yaml
var stageFiles embed.FS

// stagesYAML returns every stage as one multi-document YAML stream.
func stagesYAML() ([]byte, error) {
	names, err := fs.Glob(stageFiles, "stages/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var buf bytes.Buffer
	for _, name := range names {
		data, err := stageFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes(), nil
}
