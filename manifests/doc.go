// Package manifests renders a gate's kustomization from a candidate tree and turns it into a test environment.
//
// Render runs kustomize in memory: it first walks the kustomizations reachable
// from the gate's path, checks every reference and every file they need, and
// copies only those files into kustomize's in-memory file system. It never
// touches the network, never executes anything (no git, no helm, no exec, Go
// or KRM function plugins) and never reads a file outside the tree it is
// given, not even through a symlink.
//
// RenderWithReads also returns the ReadSet of the render: every tree path
// the loader looked at, found or absent, so that a tree that differs only
// elsewhere is known to render the same without rendering it.
//
// Overlay moves the rendered objects into a test namespace and labels them as
// Sluice's; it never changes the input objects. Digest names a rendering by
// its content, so two candidates that render the same objects are known to be
// the same test.
//
// Kustomize runs in a render worker: the running binary started again, which
// MaybeRunWorker (called first thing in main) turns into one. The worker has
// no HTTP transport, no PATH and no environment, bounds its memory, and is
// killed at the render's deadline or when the render is cancelled; its
// stderr (kustomize's deprecation warnings) is not passed on. Renders run one
// at a time, so the daemon's memory is bounded by one render's budget.
// Labels and annotations under sluice.dev/ that Sluice owns are removed from
// the rendered objects.
//
// The package does not log; it returns values and errors. An error that is
// the commit's fault (a bad kustomization, hostile input, a render over its
// time or memory limit) is a *RenderError; anything else but a cancelled
// context means the render could not be tried (the worker did not start).
package manifests
