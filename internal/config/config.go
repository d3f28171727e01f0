// Package config reads Sluice's YAML configuration file.
//
// Parsing is strict: an unknown field, a bad duration or a missing required
// value is an error that names the file, the line and the field. The file
// never holds a secret: credentials are named by file or environment variable.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
)

// MaxFileSize bounds the configuration file; a larger one is refused unread.
const MaxFileSize = 1 << 20

// Config is the whole file.
type Config struct {
	Repository   Repository `yaml:"repository"`
	PollInterval Duration   `yaml:"pollInterval"`
	Gates        []Gate     `yaml:"gates"`
	// Limits bound the work one commit can cause; zero takes the default.
	Limits Limits `yaml:"limits"`
	// Notify lists the webhooks told about failed verdicts and stopped gates.
	Notify []Webhook `yaml:"notify"`
	// Forge, if set, is told each queued commit's status (forge.go).
	Forge *Forge `yaml:"forge"`

	file string
}

// Repository says where the desired state lives and who Sluice is when it
// writes to it.
type Repository struct {
	URL          string `yaml:"url"`
	SourceBranch string `yaml:"sourceBranch"`
	// Credentials name files or environment variables, never secrets.
	Credentials gitrepo.CredentialsSource `yaml:"credentials"`
	Author      Author                    `yaml:"author"`
	// CacheDir holds the local bare clone; empty keeps it in memory.
	CacheDir string `yaml:"cacheDir"`
	// VerdictKeyFile or VerdictKeyEnv name the key Sluice signs its verdict
	// notes and revert commits with (never the key itself). With neither,
	// Sluice keeps a key it generates in a Secret in VerdictKeyNamespace.
	VerdictKeyFile      string `yaml:"verdictKeyFile"`
	VerdictKeyEnv       string `yaml:"verdictKeyEnv"`
	VerdictKeyNamespace string `yaml:"verdictKeyNamespace"`
}

// Limits bound the work one commit can make Sluice do. Each one exceeded is
// the commit's fault: it fails, and the reason names the limit.
type Limits struct {
	// RenderTimeout bounds one kustomize build.
	RenderTimeout Duration `yaml:"renderTimeout"`
	// RenderMemoryMiB bounds the memory of the process one build runs in.
	RenderMemoryMiB int64 `yaml:"renderMemoryMiB"`
	// MaxFileBytes bounds each file a render reads.
	MaxFileBytes int64 `yaml:"maxFileBytes"`
	// MaxRenderedObjects bounds the objects one render may produce.
	MaxRenderedObjects int `yaml:"maxRenderedObjects"`
	// RevertMaxLines and RevertMaxFileBytes bound each file a three-way
	// revert merges line by line; a larger one is a conflict.
	RevertMaxLines     int   `yaml:"revertMaxLines"`
	RevertMaxFileBytes int64 `yaml:"revertMaxFileBytes"`
}

// RenderOptions are the render's bounds, defaults filled in.
func (l Limits) RenderOptions() manifests.RenderOptions {
	o := manifests.DefaultRenderOptions()
	if l.RenderTimeout.Duration > 0 {
		o.RenderTimeout = l.RenderTimeout.Duration
	}
	if l.RenderMemoryMiB > 0 {
		o.MaxRenderMemory = l.RenderMemoryMiB << 20
	}
	if l.MaxFileBytes > 0 {
		o.MaxFileSize = l.MaxFileBytes
	}
	if l.MaxRenderedObjects > 0 {
		o.MaxObjects = l.MaxRenderedObjects
	}
	return o
}

// RevertOptions are the revert's bounds, defaults filled in.
func (l Limits) RevertOptions() gitrepo.RevertOptions {
	o := gitrepo.DefaultRevertOptions()
	if l.RevertMaxLines > 0 {
		o.MaxFileLines = l.RevertMaxLines
	}
	if l.RevertMaxFileBytes > 0 {
		o.MaxFileBytes = l.RevertMaxFileBytes
	}
	return o
}

// Author signs the revert commits and notes Sluice writes.
type Author struct {
	Name  string `yaml:"name"`
	Email string `yaml:"email"`
}

// Gate is one promotion step.
type Gate struct {
	Name          string                        `yaml:"name"`
	Path          string                        `yaml:"path"`
	TargetBranch  string                        `yaml:"targetBranch"`
	ClusterScoped manifests.ClusterScopedPolicy `yaml:"clusterScoped"`
	Timeouts      Timeouts                      `yaml:"timeouts"`
	Tests         Tests                         `yaml:"tests"`
	OnFailure     OnFailure                     `yaml:"onFailure"`
	Retry         Retry                         `yaml:"retry"`
	// ApplyConcurrency is how many objects of a candidate are applied at once.
	ApplyConcurrency int `yaml:"applyConcurrency"`
	// Strategy is how the queue is tested: serial (one candidate at a
	// time), speculative (a window of candidates at once) or batch.
	Strategy string `yaml:"strategy"`
	// Parallelism bounds the speculative window and the batch size.
	Parallelism Parallelism `yaml:"parallelism"`
	// ReuseEnvironment keeps a passed candidate's namespace and applies
	// the next candidate onto it as an update (only what changed), instead
	// of building every candidate in a new namespace. A failure there is
	// tested again in a new namespace before it counts.
	ReuseEnvironment bool     `yaml:"reuseEnvironment"`
	Previews         Previews `yaml:"previews"` // previews.go
	Promote          Promote  `yaml:"promote"`  // promote.go
	// Kubeconfig is the cluster this gate is tested on (kubeconfig.go).
	Kubeconfig string `yaml:"kubeconfig"`

	line int
}

// Parallelism bounds how many candidates a gate tests at once.
type Parallelism struct {
	Min int `yaml:"min"`
	Max int `yaml:"max"`
}

// Timeouts bound each step of a candidate's test.
type Timeouts struct {
	Apply  Duration `yaml:"apply"`
	Health Duration `yaml:"health"`
	Tests  Duration `yaml:"tests"`
}

// Tests are run after the environment is healthy.
type Tests struct {
	// Commands run on the daemon's host with SLUICE_NAMESPACE, SLUICE_COMMIT,
	// SLUICE_GATE and KUBECONFIG in their environment.
	Commands []Command `yaml:"commands"`
}

// Command is one host-side test command.
type Command struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Timeout Duration `yaml:"timeout"`

	line int
}

// OnFailure says what a failed verdict does.
type OnFailure struct {
	// Revert pushes a revert commit of the failed commit to the source
	// branch. When false the verdict is only recorded and the gate stops.
	Revert *bool `yaml:"revert"`
	// KeepNamespace keeps a failed candidate's namespace this long.
	KeepNamespace Duration `yaml:"keepNamespace"`
}

// Retry bounds how an infrastructure error is retried.
type Retry struct {
	InitialBackoff Duration `yaml:"initialBackoff"`
	MaxBackoff     Duration `yaml:"maxBackoff"`
	// OnceAttempts is how many times `sluice run --once` tries a candidate
	// that ends in error before it gives up; the daemon retries forever.
	OnceAttempts int `yaml:"onceAttempts"`
}

// Defaults, in one place; the README's config reference lists them.
const (
	DefaultSourceBranch     = "main"
	DefaultPollInterval     = 30 * time.Second
	DefaultApplyTimeout     = 2 * time.Minute
	DefaultHealthTimeout    = 5 * time.Minute
	DefaultTestsTimeout     = 10 * time.Minute
	DefaultCommandTimeout   = 10 * time.Minute
	DefaultKeepNamespace    = 30 * time.Minute
	DefaultInitialBackoff   = 2 * time.Second
	DefaultMaxBackoff       = 2 * time.Minute
	DefaultOnceAttempts     = 5
	DefaultApplyConcurrency = 10
	MaxApplyConcurrency     = 100
	DefaultStrategy         = "serial"
	DefaultParallelismMin   = 1
	DefaultParallelismMax   = 4
	MaxParallelism          = 32
	DefaultAuthorName       = "Sluice"
	DefaultAuthorEmail      = "sluice@localhost"
	// DefaultVerdictKeyNamespace holds the Secret of a generated verdict key.
	DefaultVerdictKeyNamespace = "sluice-system"
)

// Duration is a time.Duration written as "90s", "5m" or "1h30m".
type Duration struct {
	time.Duration
	set bool
}

// UnmarshalYAML parses a Go duration string and reports the line on error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &fieldError{line: n.Line, msg: "want a duration such as 90s or 5m"}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &fieldError{line: n.Line, msg: fmt.Sprintf("bad duration %q: want a duration such as 90s or 5m", n.Value)}
	}
	if v < 0 {
		return &fieldError{line: n.Line, msg: fmt.Sprintf("bad duration %q: must not be negative", n.Value)}
	}
	d.Duration, d.set = v, true
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d *Duration) orDefault(v time.Duration) {
	if !d.set {
		d.Duration = v
	}
}

// UnmarshalYAML records the gate's line so validation errors can point at it.
func (g *Gate) UnmarshalYAML(n *yaml.Node) error {
	type plain Gate
	if err := n.Decode((*plain)(g)); err != nil {
		return err
	}
	g.line = n.Line
	return nil
}

// UnmarshalYAML records the command's line.
func (c *Command) UnmarshalYAML(n *yaml.Node) error {
	type plain Command
	if err := n.Decode((*plain)(c)); err != nil {
		return err
	}
	c.line = n.Line
	return nil
}

// fieldError is a problem at one line of the file.
type fieldError struct {
	line  int
	field string
	msg   string
}

func (e *fieldError) Error() string {
	if e.field != "" {
		return fmt.Sprintf("line %d: field %s: %s", e.line, e.field, e.msg)
	}
	return fmt.Sprintf("line %d: %s", e.line, e.msg)
}

// Error is a configuration error, naming the file, line and field.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Load reads and validates the file.
func Load(file string) (*Config, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	buf := make([]byte, MaxFileSize+1)
	n, err := readFull(f, buf)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", file, err)
	}
	if n > MaxFileSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	return Parse(file, buf[:n])
}

func readFull(f *os.File, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := f.Read(buf[n:])
		n += m
		if err != nil {
			if errors.Is(err, errEOF) {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// Parse decodes and validates data read from file (file is only used in errors).
func Parse(file string, data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, errEOF) {
			return nil, &Error{File: file, Msg: "file is empty"}
		}
		return nil, toError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, errEOF) {
		return nil, &Error{File: file, Line: extra.Line, Msg: "more than one YAML document"}
	}
	if len(root.Content) == 0 {
		return nil, &Error{File: file, Msg: "file is empty"}
	}
	c := &Config{file: file}
	if err := checkKnown(root.Content[0], reflect.TypeOf(c).Elem(), ""); err != nil {
		return nil, toError(file, err)
	}
	if err := root.Content[0].Decode(c); err != nil {
		return nil, toError(file, err)
	}
	if err := c.validate(root.Content[0]); err != nil {
		return nil, err
	}
	return c, nil
}

// File is the path the config was read from.
func (c *Config) File() string { return c.file }

// Line is where the gate was defined in the file.
func (g *Gate) Line() int { return g.line }

// RevertOnFailure reports whether a failed commit is reverted (default true).
func (g *Gate) RevertOnFailure() bool { return g.OnFailure.Revert == nil || *g.OnFailure.Revert }

var (
	gateName   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$`)
	branchName = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	// namespaceName is a DNS label, as Kubernetes wants for a namespace.
	namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

func (c *Config) validate(root *yaml.Node) error {
	f := c.file
	top := func(key string) int { return keyLine(root, key) }
	r := &c.Repository
	if r.URL == "" {
		return &Error{File: f, Line: top("repository"), Field: "repository.url", Msg: "required"}
	}
	if r.SourceBranch == "" {
		r.SourceBranch = DefaultSourceBranch
	}
	if !validBranch(r.SourceBranch) {
		return &Error{File: f, Line: top("repository"), Field: "repository.sourceBranch", Msg: fmt.Sprintf("%q is not a valid branch name", r.SourceBranch)}
	}
	if r.VerdictKeyFile != "" && r.VerdictKeyEnv != "" {
		return &Error{File: f, Line: top("repository"), Field: "repository.verdictKeyEnv", Msg: "verdictKeyFile and verdictKeyEnv are both set; name the key once"}
	}
	if r.VerdictKeyNamespace != "" && (r.VerdictKeyFile != "" || r.VerdictKeyEnv != "") {
		return &Error{File: f, Line: top("repository"), Field: "repository.verdictKeyNamespace", Msg: "only used for a generated key, not with verdictKeyFile or verdictKeyEnv"}
	}
	if r.VerdictKeyNamespace == "" {
		r.VerdictKeyNamespace = DefaultVerdictKeyNamespace
	}
	if !namespaceName.MatchString(r.VerdictKeyNamespace) {
		return &Error{File: f, Line: top("repository"), Field: "repository.verdictKeyNamespace", Msg: fmt.Sprintf("%q is not a valid namespace name", r.VerdictKeyNamespace)}
	}
	if r.Author.Name == "" {
		r.Author.Name = DefaultAuthorName
	}
	if r.Author.Email == "" {
		r.Author.Email = DefaultAuthorEmail
	}
	if err := c.Limits.validate(f, top("limits")); err != nil {
		return err
	}
	c.PollInterval.orDefault(DefaultPollInterval)
	if c.PollInterval.Duration == 0 {
		return &Error{File: f, Line: top("pollInterval"), Field: "pollInterval", Msg: "must be greater than zero"}
	}
	if err := c.validateNotify(); err != nil {
		return err
	}
	if err := c.validateForge(); err != nil {
		return err
	}
	if len(c.Gates) == 0 {
		return &Error{File: f, Line: top("gates"), Field: "gates", Msg: "at least one gate is required"}
	}
	names := map[string]bool{}
	namespaces := map[string]string{} // test namespace prefix -> gate
	targets := map[string]string{}
	for i := range c.Gates {
		g := &c.Gates[i]
		field := func(name string) string { return fmt.Sprintf("gates[%d].%s", i, name) }
		fail := func(name, msg string) error { return &Error{File: f, Line: g.line, Field: field(name), Msg: msg} }
		switch {
		case g.Name == "":
			return fail("name", "required")
		case !gateName.MatchString(g.Name):
			return fail("name", fmt.Sprintf("%q must be lower-case letters, digits and '-', at most 40 characters", g.Name))
		case names[g.Name]:
			return fail("name", fmt.Sprintf("gate %q is defined twice", g.Name))
		}
		names[g.Name] = true
		// Test namespaces are named from the gate's name with runs of '-'
		// collapsed: two gates whose names make the same namespace would
		// share (and remove) each other's test namespaces.
		ns := manifests.TestNamespace(g.Name, "")
		if other, ok := namespaces[ns]; ok {
			return fail("name", fmt.Sprintf("gate %q would share its test namespaces (%s-<sha>) with gate %q; rename one", g.Name, ns, other))
		}
		namespaces[ns] = g.Name
		if g.Path == "" {
			return fail("path", "required")
		}
		if strings.HasPrefix(g.Path, "/") || strings.Contains("/"+g.Path+"/", "/../") {
			return fail("path", fmt.Sprintf("%q must be relative to the repository root and stay inside it", g.Path))
		}
		g.Path = strings.TrimSuffix(strings.TrimPrefix(g.Path, "./"), "/")
		if g.TargetBranch == "" {
			return fail("targetBranch", "required")
		}
		if !validBranch(g.TargetBranch) {
			return fail("targetBranch", fmt.Sprintf("%q is not a valid branch name", g.TargetBranch))
		}
		if g.TargetBranch == r.SourceBranch {
			return fail("targetBranch", fmt.Sprintf("must differ from the source branch %q", r.SourceBranch))
		}
		if other, ok := targets[g.TargetBranch]; ok {
			return fail("targetBranch", fmt.Sprintf("branch %q is already the target of gate %q", g.TargetBranch, other))
		}
		targets[g.TargetBranch] = g.Name
		switch g.ClusterScoped {
		case "":
			g.ClusterScoped = manifests.ClusterScopedDryRun
		case manifests.ClusterScopedDryRun, manifests.ClusterScopedIgnore:
		default:
			return fail("clusterScoped", fmt.Sprintf("%q: want %q or %q", g.ClusterScoped, manifests.ClusterScopedDryRun, manifests.ClusterScopedIgnore))
		}
		g.Timeouts.Apply.orDefault(DefaultApplyTimeout)
		g.Timeouts.Health.orDefault(DefaultHealthTimeout)
		g.Timeouts.Tests.orDefault(DefaultTestsTimeout)
		for name, d := range map[string]Duration{"apply": g.Timeouts.Apply, "health": g.Timeouts.Health, "tests": g.Timeouts.Tests} {
			if d.Duration == 0 {
				return fail("timeouts."+name, "must be greater than zero")
			}
		}
		for j := range g.Tests.Commands {
			cmd := &g.Tests.Commands[j]
			cf := func(name, msg string) error {
				return &Error{File: f, Line: cmd.line, Field: fmt.Sprintf("gates[%d].tests.commands[%d].%s", i, j, name), Msg: msg}
			}
			if len(cmd.Command) == 0 || cmd.Command[0] == "" {
				return cf("command", "required: the program and its arguments, as a list")
			}
			if cmd.Name == "" {
				cmd.Name = cmd.Command[0]
			}
			cmd.Timeout.orDefault(DefaultCommandTimeout)
		}
		g.OnFailure.KeepNamespace.orDefault(DefaultKeepNamespace)
		g.Retry.InitialBackoff.orDefault(DefaultInitialBackoff)
		g.Retry.MaxBackoff.orDefault(DefaultMaxBackoff)
		if g.Retry.InitialBackoff.Duration == 0 {
			return fail("retry.initialBackoff", "must be greater than zero")
		}
		if g.Retry.MaxBackoff.Duration < g.Retry.InitialBackoff.Duration {
			return fail("retry.maxBackoff", "must not be less than retry.initialBackoff")
		}
		if g.Retry.OnceAttempts < 0 {
			return fail("retry.onceAttempts", "must not be negative")
		}
		if g.Retry.OnceAttempts == 0 {
			g.Retry.OnceAttempts = DefaultOnceAttempts
		}
		switch {
		case g.ApplyConcurrency == 0:
			g.ApplyConcurrency = DefaultApplyConcurrency
		case g.ApplyConcurrency < 0 || g.ApplyConcurrency > MaxApplyConcurrency:
			return fail("applyConcurrency", fmt.Sprintf("%d: want 1 to %d", g.ApplyConcurrency, MaxApplyConcurrency))
		}
		switch g.Strategy {
		case "":
			g.Strategy = DefaultStrategy
		case "serial", "speculative", "batch":
		default:
			return fail("strategy", fmt.Sprintf("%q: want serial, speculative or batch", g.Strategy))
		}
		if g.Parallelism.Max == 0 {
			g.Parallelism.Max = DefaultParallelismMax
		}
		if g.Parallelism.Min == 0 {
			g.Parallelism.Min = min(DefaultParallelismMin, g.Parallelism.Max)
		}
		if g.Parallelism.Max < 1 || g.Parallelism.Max > MaxParallelism {
			return fail("parallelism.max", fmt.Sprintf("%d: want 1 to %d", g.Parallelism.Max, MaxParallelism))
		}
		if g.Parallelism.Min < 1 || g.Parallelism.Min > g.Parallelism.Max {
			return fail("parallelism.min", fmt.Sprintf("%d: want 1 to parallelism.max (%d)", g.Parallelism.Min, g.Parallelism.Max))
		}
	}
	if err := c.validatePromote(); err != nil {
		return err
	}
	if err := c.validateKubeconfigs(); err != nil {
		return err
	}
	return c.validatePreviews()
}

func validBranch(b string) bool {
	return branchName.MatchString(b) && !strings.Contains(b, "..") && !strings.HasPrefix(b, "/") &&
		!strings.HasSuffix(b, "/") && !strings.HasSuffix(b, ".lock") && !strings.HasPrefix(b, "-")
}

func keyLine(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i].Line
		}
	}
	return m.Line
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// toError turns a yaml.v3 or field error into an Error naming the file.
func toError(file string, err error) error {
	var fe *fieldError
	if errors.As(err, &fe) {
		return &Error{File: file, Line: fe.line, Field: fe.field, Msg: fe.msg}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return fieldMsg(file, te.Errors[0])
	}
	return fieldMsg(file, err.Error())
}

func fieldMsg(file, s string) error {
	if m := lineRE.FindStringSubmatch(s); m != nil {
		var line int
		fmt.Sscanf(m[1], "%d", &line)
		return &Error{File: file, Line: line, Msg: m[2]}
	}
	return &Error{File: file, Msg: strings.TrimPrefix(s, "yaml: ")}
}

// minRenderMemoryMiB is the least memory a render process starts in.
const minRenderMemoryMiB = 64

func (l *Limits) validate(file string, line int) error {
	bad := func(field, msg string) error {
		return &Error{File: file, Line: line, Field: "limits." + field, Msg: msg}
	}
	switch {
	case l.RenderTimeout.Duration < 0:
		return bad("renderTimeout", "must not be negative")
	case l.RenderMemoryMiB < 0, l.RenderMemoryMiB > 0 && l.RenderMemoryMiB < minRenderMemoryMiB:
		return bad("renderMemoryMiB", fmt.Sprintf("must be at least %d (MiB)", minRenderMemoryMiB))
	case l.RenderMemoryMiB > 1<<20:
		return bad("renderMemoryMiB", "must be at most 1048576 (1 TiB)")
	case l.MaxFileBytes < 0:
		return bad("maxFileBytes", "must not be negative")
	case l.MaxRenderedObjects < 0:
		return bad("maxRenderedObjects", "must not be negative")
	case l.RevertMaxLines < 0:
		return bad("revertMaxLines", "must not be negative")
	case l.RevertMaxFileBytes < 0:
		return bad("revertMaxFileBytes", "must not be negative")
	}
	return nil
}
