// Package preview builds and keeps preview environments: a namespace
// sluice-preview-NAME holding a gate's target render (what was tested) with
// a branch's or a working tree's changes on top, in which only the
// workloads whose rendered objects differ from the target's run, with what
// they reference; every other Service of the target is a stand-in that
// routes to the target's running copy (an ExternalName Service, or with
// Gateway API routing an HTTPRoute on the target's Service selected by the
// header x-sluice-preview: NAME).
//
// Plan is pure: two renders in, the objects to write out. Client writes
// them, lists, tests and removes previews. It logs nothing, and it only
// ever changes or removes objects labelled as a preview's own.
package preview
