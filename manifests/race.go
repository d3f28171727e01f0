//go:build race

package manifests

const raceEnabled = true
