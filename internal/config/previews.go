package config

import (
	"fmt"
	"path"
	"time"
)

// Previews configures a gate's preview environments (`sluice preview`):
// namespaces made of the gate's target render with a branch's or a working
// tree's changes on top, where only the changed workloads run.
type Previews struct {
	// Namespace is where the target's objects run, which the preview's
	// stand-ins point at; empty takes each rendered object's own namespace.
	Namespace string `yaml:"namespace"`
	// Routing is how the preview reaches the target's services: externalname
	// (default: an ExternalName Service per unchanged Service) or gateway-api
	// (also an HTTPRoute on the target's Service for each changed one that
	// sends requests with the header x-sluice-preview: NAME to the preview).
	Routing string `yaml:"routing"`
	// Branches are globs (path.Match: "*" does not cross "/") of branches
	// the daemon keeps a preview of, named after the branch.
	Branches []string `yaml:"branches"`
	// TTL is how long a preview lives after its last update (default 72h).
	TTL Duration `yaml:"ttl"`
}

// Routing modes of a preview.
const (
	RoutingExternalName = "externalname"
	RoutingGatewayAPI   = "gateway-api"
)

// DefaultPreviewTTL is how long a preview lives after its last update.
const DefaultPreviewTTL = 72 * time.Hour

func (c *Config) validatePreviews() error {
	for i := range c.Gates {
		g := &c.Gates[i]
		p := &g.Previews
		fail := func(name, msg string) error {
			return &Error{File: c.file, Line: g.line, Field: fmt.Sprintf("gates[%d].previews.%s", i, name), Msg: msg}
		}
		if p.Namespace != "" && !namespaceName.MatchString(p.Namespace) {
			return fail("namespace", fmt.Sprintf("%q is not a valid namespace name", p.Namespace))
		}
		switch p.Routing {
		case "":
			p.Routing = RoutingExternalName
		case RoutingExternalName, RoutingGatewayAPI:
		default:
			return fail("routing", fmt.Sprintf("%q: want %s or %s", p.Routing, RoutingExternalName, RoutingGatewayAPI))
		}
		for j, b := range p.Branches {
			if _, err := path.Match(b, ""); err != nil || b == "" {
				return fail(fmt.Sprintf("branches[%d]", j), fmt.Sprintf("%q is not a branch glob", b))
			}
		}
		p.TTL.orDefault(DefaultPreviewTTL)
		if p.TTL.Duration == 0 {
			return fail("ttl", "must be greater than zero")
		}
	}
	return nil
}
