package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
)

// builtinAPIVersion is the apiVersion of kustomize's statically linked
// plugins, the only ones Render lets run.
const builtinAPIVersion = "builtin"

// functionAnnotations mark a plugin config as a KRM function (a container
// or an executable).
var functionAnnotations = []string{"config.kubernetes.io/function", "config.k8s.io/function"}

// pluginConfig holds the fields of a builtin plugin's config that name files,
// decoded the way kustomize decodes them (JSON field names, any case).
type pluginConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`

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
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &RenderError{Path: file, Reason: fmt.Sprintf("invalid %s config", from.field), Err: err}
		}
		if doc == nil {
			continue
		}
		raw, err := json.Marshal(doc)
		if err != nil {
			return &RenderError{Path: file, Reason: fmt.Sprintf("invalid %s config", from.field), Err: err}
		}
		if err := l.pluginConfig(from, file, raw); err != nil {
			return err
		}
	}
}

func (l *loader) pluginConfig(from *ref, file string, raw json.RawMessage) error {
	var c pluginConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return &RenderError{Path: file, Reason: fmt.Sprintf("invalid %s config", from.field), Err: err}
	}
	if strings.HasSuffix(c.Kind, "List") && c.Items != nil {
		for _, item := range c.Items {
			if err := l.pluginConfig(from, file, item); err != nil {
				return err
			}
		}
		return nil
	}
	name := c.Kind
	if c.Metadata.Name != "" {
		name += "/" + c.Metadata.Name
	}
	for _, a := range functionAnnotations {
		if _, ok := c.Metadata.Annotations[a]; ok {
			return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s is a KRM function; functions and other plugins are not allowed", from.field, name)}
		}
	}
	if c.APIVersion != builtinAPIVersion {
		return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s (apiVersion %q) is not a builtin plugin; only apiVersion: builtin plugins are allowed", from.field, name, c.APIVersion)}
	}
	if c.Kind == "HelmChartInflationGenerator" {
		return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s: Helm chart inflation is not supported; commit the rendered chart instead", from.field, name)}
	}
	if !slices.Contains(krusty.GetBuiltinPluginNames(), c.Kind) {
		return &RenderError{Path: file, Reason: fmt.Sprintf("%s %s is not a builtin plugin", from.field, name)}
	}

	// A plugin reads files relative to the kustomization that lists it.
	r := func(field, value string) *ref {
		return &ref{file: from.file, dir: from.dir, field: from.field + " " + name + " " + field, value: value}
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
	return l.generatorSources(from.file, from.dir, from.field+" "+name+" ", c.KvPairSources)
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
