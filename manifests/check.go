package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxAliasNodes is how many nodes YAML aliases may add to a file when they
// are expanded. Kustomize expands every alias; a few nested ones in a small
// file (a "billion laughs") would otherwise take all memory.
const maxAliasNodes = 100000

// yamlError says what is wrong with a YAML file, as a phrase that follows
// its path.
type yamlError struct {
	reason string
	err    error
}

func (e *yamlError) Error() string {
	if e.err != nil {
		return e.reason + ": " + e.err.Error()
	}
	return e.reason
}

func (e *yamlError) Unwrap() error { return e.err }

// checkYAML parses every document of a YAML file the way kustomize's parser
// would, before kustomize sees it, and refuses what kustomize would accept
// silently or pay dearly for: invalid UTF-8, duplicate keys (kustomize keeps
// one of them), alias bombs and nesting deeper than maxDepth.
func checkYAML(data []byte, maxDepth int) error {
	if !utf8.Valid(data) {
		return &yamlError{reason: "is not valid UTF-8"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &yamlError{reason: "is not valid YAML", err: err}
		}
		c := &yamlChecker{
			maxDepth: maxDepth,
			budget:   countLiteral(&doc) + maxAliasNodes,
			done:     map[*yaml.Node]nodeSize{},
			active:   map[*yaml.Node]bool{},
		}
		if _, err := c.walk(&doc, 0); err != nil {
			return err
		}
	}
}

// nodeSize is the size of a node with its aliases expanded.
type nodeSize struct {
	nodes int // nodes in all
	depth int // nested mappings and sequences
}

type yamlChecker struct {
	maxDepth int
	budget   int                     // nodes a document may have, expanded
	done     map[*yaml.Node]nodeSize // anchored nodes already measured
	active   map[*yaml.Node]bool     // anchored nodes being measured
}

// walk measures n, found at nesting level, with its aliases expanded.
func (c *yamlChecker) walk(n *yaml.Node, level int) (nodeSize, error) {
	if n.Kind == yaml.AliasNode {
		return c.alias(n, level)
	}
	if s, ok := c.done[n]; ok {
		return s, nil
	}
	if n.Anchor != "" {
		c.active[n] = true
		defer delete(c.active, n)
	}
	size := nodeSize{nodes: 1}
	childLevel := level
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		childLevel = level + 1
		if childLevel > c.maxDepth {
			return size, &yamlError{reason: fmt.Sprintf("nests deeper than the limit of %d levels (line %d)", c.maxDepth, n.Line)}
		}
		size.depth = 1
	}
	if n.Kind == yaml.MappingNode {
		if err := checkKeys(n); err != nil {
			return size, err
		}
	}
	for _, child := range n.Content {
		s, err := c.walk(child, childLevel)
		if err != nil {
			return size, err
		}
		size.nodes += s.nodes
		if size.nodes > c.budget {
			return size, c.bomb(n)
		}
		if n.Kind != yaml.DocumentNode {
			s.depth++
		}
		size.depth = max(size.depth, s.depth)
	}
	if n.Anchor != "" {
		c.done[n] = size
	}
	return size, nil
}

func (c *yamlChecker) alias(n *yaml.Node, level int) (nodeSize, error) {
	target := n.Alias
	if target == nil {
		return nodeSize{nodes: 1}, nil
	}
	if c.active[target] {
		return nodeSize{}, &yamlError{reason: fmt.Sprintf("has an alias *%s inside its own anchor (line %d)", n.Value, n.Line)}
	}
	s, ok := c.done[target]
	if !ok {
		var err error
		if s, err = c.walk(target, level); err != nil {
			return s, err
		}
	}
	if level+s.depth > c.maxDepth {
		return s, &yamlError{reason: fmt.Sprintf("nests deeper than the limit of %d levels through alias *%s (line %d)", c.maxDepth, n.Value, n.Line)}
	}
	return s, nil
}

func (c *yamlChecker) bomb(n *yaml.Node) error {
	return &yamlError{reason: fmt.Sprintf("has aliases that expand to more than %d extra nodes (line %d)", maxAliasNodes, n.Line)}
}

// checkKeys refuses a mapping that has the same key twice: YAML forbids it,
// and kustomize would keep one silently, so the file would not mean what a
// reviewer reads.
func checkKeys(m *yaml.Node) error {
	seen := make(map[string]int, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			continue
		}
		if line, ok := seen[k.Value]; ok {
			return &yamlError{reason: fmt.Sprintf("has the key %q twice (lines %d and %d)", k.Value, line, m.Content[i].Line)}
		}
		seen[k.Value] = m.Content[i].Line
	}
	return nil
}

// countLiteral counts the nodes of a document as written.
func countLiteral(n *yaml.Node) int {
	count := 1
	for _, c := range n.Content {
		count += countLiteral(c)
	}
	return count
}
