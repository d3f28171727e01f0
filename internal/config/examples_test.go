package config

import (
	"path/filepath"
	"testing"
)

// The configs people copy from examples/ and deploy/ must load as they are.
func TestExampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples/*/sluice.yaml found")
	}
	files = append(files, filepath.Join("..", "..", "deploy", "sluice.yaml")) // deploy/'s ConfigMap
	for _, f := range files {
		cfg, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(cfg.Gates) == 0 {
			t.Errorf("%s: no gates", f)
		}
	}
}
