// Package manifests renders a gate's kustomization from a candidate tree and turns it into a test environment.
//
// Render runs kustomize in memory: it first walks the kustomizations reachable
// from the gate's path, checks every reference and every file they need, and
// copies only those files into kustomize's in-memory file system. It never
// touches the network, never executes anything (no git, no helm, no exec, Go
// or KRM function plugins) and never reads a file outside the tree it is
// given, not even through a symlink.
//
// Overlay moves the rendered objects into a test namespace and labels them as
// Sluice's; it never changes the input objects. Digest names a rendering by
// its content, so two candidates that render the same objects are known to be
// the same test.
//
// The package does not log; it returns values and errors. (Kustomize itself
// still prints its deprecation warnings, such as for patchesStrategicMerge,
// to stderr.) An error that is the commit's fault (a bad kustomization,
// hostile input) is a *RenderError.
package manifests
