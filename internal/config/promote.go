package config

import (
	"fmt"
	"path"
	"strings"

	"gopkg.in/yaml.v3"
)

// Promote says where a gate's passed versions go next: after the gate
// passes a commit that changed a file matching Paths (globs relative to the
// gate's path), Sluice commits a copy of that file into gate To's path.
type Promote struct {
	// To names another gate.
	To string `yaml:"to"`
	// Paths are path.Match globs relative to the gate's path ("*" does not
	// cross "/"), e.g. versions/*.yaml.
	Paths []string `yaml:"paths"`

	line int
}

// UnmarshalYAML records the line of `promote:`.
func (p *Promote) UnmarshalYAML(n *yaml.Node) error {
	type plain Promote
	if err := n.Decode((*plain)(p)); err != nil {
		return err
	}
	p.line = n.Line
	return nil
}

// Line is the line of the gate's `promote:` in the config file.
func (p *Promote) Line() int { return p.line }

// Set reports whether the gate promotes.
func (p *Promote) Set() bool { return p != nil && p.line != 0 }

// Gate returns the gate named name, nil if there is none.
func (c *Config) Gate(name string) *Gate {
	for i := range c.Gates {
		if c.Gates[i].Name == name {
			return &c.Gates[i]
		}
	}
	return nil
}

// PromoteError is an Error about gates[i].promote, for what is found wrong
// after loading (a glob that matches nothing in the source tip).
func (c *Config) PromoteError(gate, field, msg string) error {
	for i := range c.Gates {
		if g := &c.Gates[i]; g.Name == gate {
			return &Error{File: c.file, Line: g.Promote.line, Field: fmt.Sprintf("gates[%d].promote.%s", i, field), Msg: msg}
		}
	}
	return &Error{File: c.file, Field: "gates", Msg: msg}
}

func (c *Config) validatePromote() error {
	for i := range c.Gates {
		g := &c.Gates[i]
		p := &g.Promote
		if !p.Set() {
			continue
		}
		fail := func(name, msg string) error {
			return &Error{File: c.file, Line: p.line, Field: fmt.Sprintf("gates[%d].promote.%s", i, name), Msg: msg}
		}
		switch to := c.Gate(p.To); {
		case p.To == "":
			return fail("to", "required: the name of the gate to promote to")
		case to == nil:
			return fail("to", fmt.Sprintf("%q names no gate", p.To))
		case to == g:
			return fail("to", fmt.Sprintf("%q is this gate; promote to another", p.To))
		case to.Path == g.Path:
			return fail("to", fmt.Sprintf("gate %q has the same path %q", p.To, g.Path))
		}
		if len(p.Paths) == 0 {
			return fail("paths", `required: globs relative to the gate's path, e.g. ["versions/*.yaml"]`)
		}
		for j, glob := range p.Paths {
			_, err := path.Match(glob, "")
			if err != nil || glob == "" || strings.HasPrefix(glob, "/") || strings.Contains("/"+glob+"/", "/../") || strings.Contains("/"+glob+"/", "/./") {
				return fail(fmt.Sprintf("paths[%d]", j), fmt.Sprintf("%q is not a glob relative to the gate's path", glob))
			}
		}
	}
	return nil
}
