package manifests

import (
	"context"
	"os"
	"testing"
)

// BenchmarkRenderArticle renders examples/article's staging, the render
// every queued commit of the demo pays for:
//
//	go test -run '^$' -bench . -benchmem ./manifests
func BenchmarkRenderArticle(b *testing.B) {
	tree := os.DirFS("../examples/article")
	opts := DefaultRenderOptions()
	for b.Loop() {
		objs, err := Render(context.Background(), tree, "environments/staging", opts)
		if err != nil {
			b.Fatal(err)
		}
		if len(objs) != 10 {
			b.Fatalf("rendered %d objects, want 10", len(objs))
		}
	}
}

// BenchmarkDigestArticle is the digest that lets equal candidates skip a run.
func BenchmarkDigestArticle(b *testing.B) {
	objs, err := Render(context.Background(), os.DirFS("../examples/article"), "environments/staging", DefaultRenderOptions())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = Digest(objs)
	}
}
