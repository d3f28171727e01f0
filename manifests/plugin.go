package manifests

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	"sigs.k8s.io/kustomize/api/hasher"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	sigsyaml "sigs.k8s.io/yaml"
)

// builtinAPIVersion is the apiVersion of kustomize's statically linked
// plugins, the only ones Render lets run.
const builtinAPIVersion = "builtin"

// functionAnnotations mark a plugin config as a KRM function (a container
// or an executable).
var functionAnnotations = []string{"config.kubernetes.io/function", "config.k8s.io/function"}

// pluginConfig holds the fields of a builtin plugin's config that name files.
// It is decoded the way each builtin decodes its own config (sigs.k8s.io/yaml,
// JSON field names in any case), from the resource kustomize made of it.
type pluginConfig struct {
	Path           string   `json:"path"`           // PatchTransformer, PatchJson6902Transformer
	Paths          []string `json:"paths"`          // PatchStrategicMergeTransformer
	Patch          string   `json:"patch"`          // PatchTransformer, inline
	Patches        string   `json:"patches"`        // PatchStrategicMergeTransformer, inline
	JSONOp         string   `json:"jsonOp"`         // PatchJson6902Transformer, inline
	TargetFilePath string   `json:"targetFilePath"` // ValueAddTransformer
	Replacements   []struct {
		Path string `json:"path"`
	} `json:"replacements"` // ReplacementTransformer
	types.KvPairSources // ConfigMapGenerator, SecretGenerator
}

// pluginResources parses plugin configs the way kustomize does, with its
// own resource factory: kyaml reads apiVersion, kind, metadata and a List's
// items by their exact keys, so a key that only case-folds onto one of them
// (Kind with a Kelvin sign, itemſ) means nothing, here as there.
var pluginResources = resmap.NewFactory(resource.NewFactory(&hasher.Hasher{}))

// plugin handles a generators, transformers or validators entry: the config
// of a plugin, inline or in a file. Only kustomize's builtin plugins may run,
// and every file their config names is checked like a kustomization's.
func (l *loader) plugin(from *ref) error {
	if isInline(from.value) {
		if err := checkRemote(from); err != nil {
			return err
		}
		if err := l.inline(from.file, from.field, from.value); err != nil {
			return err
		}
		return l.pluginConfigs(from, from.file, []byte(from.value))
	}
	p, fi, err := l.lookup(from)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		// Its configs would be whatever that kustomization renders, which
		// cannot be checked before kustomize runs.
		return from.fail("is a directory; only plugin configs in files or inline are supported")
	}
	data, err := l.copy(p, yamlFile, from)
	if err != nil {
		return err
	}
	return l.pluginConfigs(from, p, data)
}

// pluginConfigs checks each plugin config in data, found in file.
func (l *loader) pluginConfigs(from *ref, file string, data []byte) error {
	m, err := pluginResources.NewResMapFromBytes(data)
	if err != nil {
		return &RenderError{Path: file, Reason: fmt.Sprintf("invalid %s config", from.field), Err: err}
	}
	for _, res := range m.Resources() {
		if err := l.pluginConfig(from, file, res); err != nil {
			return err
		}
	}
	return nil
}

func (l *loader) pluginConfig(from *ref, file string, res *resource.Resource) error {
	gvk := res.GetGvk()
	name := gvk.Kind
	if n := res.GetName(); n != "" {
		name += "/" + n
	}
	annotations := res.GetAnnotations()
	for _, a := range functionAnnotations {
		if _, ok := annotations[a]; ok {
			return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s is a KRM function; functions and other plugins are not allowed", from.field, name)}
		}
	}
	if gvk.Group != "" || gvk.Version != builtinAPIVersion {
		return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s (apiVersion %q) is not a builtin plugin; only apiVersion: builtin plugins are allowed", from.field, name, res.GetApiVersion())}
	}
	if gvk.Kind == "HelmChartInflationGenerator" {
		return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s: Helm chart inflation is not supported; commit the rendered chart instead", from.field, name)}
	}
	if !slices.Contains(krusty.GetBuiltinPluginNames(), gvk.Kind) {
		return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s is not a builtin plugin", from.field, name)}
	}
	// The builtin gets the resource as YAML and decodes it with
	// sigs.k8s.io/yaml; so does this.
	y, err := res.AsYAML()
	if err != nil {
		return &RenderError{Path: file, Reason: fmt.Sprintf("invalid %s config %s", from.field, name), Err: err}
	}
	var c pluginConfig
	if err := sigsyaml.Unmarshal(y, &c); err != nil {
		return &RenderError{Path: file, Reason: fmt.Sprintf("invalid %s config %s", from.field, name), Err: err}
	}

	// A plugin reads files relative to the kustomization that lists it.
	r := func(field, value string) *ref {
		return &ref{file: from.file, dir: from.dir, real: from.real, field: from.field + " " + name + " " + field, value: value}
	}
	for _, inline := range []string{c.Patch, c.Patches, c.JSONOp} {
		if err := l.inline(file, from.field+" "+name+" patch", inline); err != nil {
			return err
		}
	}
	if c.Path != "" {
		if _, err := l.file(r("path", c.Path), yamlFile); err != nil {
			return err
		}
	}
	for _, p := range c.Paths {
		if err := l.patch(r("path", p)); err != nil {
			return err
		}
	}
	if c.TargetFilePath != "" {
		if _, err := l.file(r("targetFilePath", c.TargetFilePath), yamlFile); err != nil {
			return err
		}
	}
	for _, rep := range c.Replacements {
		if rep.Path != "" {
			if _, err := l.file(r("replacement", rep.Path), yamlFile); err != nil {
				return err
			}
		}
	}
	return l.generatorSources(from, from.field+" "+name+" ", c.KvPairSources)
}

// inline checks YAML content written inside a file, such as an inline patch:
// kustomize parses it like a file of its own.
func (l *loader) inline(file, what, content string) error {
	if content == "" {
		return nil
	}
	if err := checkYAML([]byte(content), l.opts.MaxDepth); err != nil {
		return &RenderError{Path: file, Reason: "inline " + what + " " + err.Error()}
	}
	return nil
}

// isInline reports whether a patchesStrategicMerge, generators, transformers
// or validators entry is YAML content rather than a path. Kustomize tries
// content first; anything on one line that is not a flow mapping is taken for
// a path here, and then must exist as a file, so a disagreement can only
// reject an entry, never let an unchecked path through.
func isInline(value string) bool {
	if !strings.Contains(value, "\n") && !strings.HasPrefix(strings.TrimSpace(value), "{") {
		return false
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(value), &n); err != nil {
		return false
	}
	return len(n.Content) == 1 && n.Content[0].Kind == yaml.MappingNode
}
