package manifests

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"testing/fstest"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The render benchmarks run each render both ways: in a render worker, as
// Render does, and in this process (the loader and kustomize alone), to
// measure what the worker costs:
//
//	go test -run '^$' -bench . -benchmem ./manifests
func BenchmarkRenderArticle(b *testing.B) {
	benchmarkRender(b, os.DirFS("../examples/article"), "environments/staging", 10)
}

// BenchmarkRender100Services renders 100 Deployments with their Services
// and ConfigMaps through a base, a namespace and labels.
func BenchmarkRender100Services(b *testing.B) {
	tree := fstest.MapFS{}
	add := func(name, data string) { tree[name] = &fstest.MapFile{Data: []byte(data), Mode: 0o644} }
	res := "resources:\n"
	for i := range 100 {
		s := fmt.Sprintf("svc%03d", i)
		res += "- ../../services/" + s + "\n"
		add("services/"+s+"/kustomization.yaml", "resources:\n- deployment.yaml\n- service.yaml\nconfigMapGenerator:\n- name: "+s+"\n  literals: [LOG_LEVEL=info]\n")
		add("services/"+s+"/deployment.yaml", fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 2
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: %[1]s
        image: example.com/%[1]s:1.0.0
        envFrom: [{configMapRef: {name: %[1]s}}]
        ports: [{containerPort: 8080}]
`, s))
		add("services/"+s+"/service.yaml", fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %[1]s\nspec:\n  selector: {app: %[1]s}\n  ports: [{port: 80, targetPort: 8080}]\n", s))
	}
	add("environments/staging/kustomization.yaml", "namespace: staging\nlabels:\n- pairs: {env: staging}\n"+res)
	benchmarkRender(b, tree, "environments/staging", 300)
}

func benchmarkRender(b *testing.B, tree fs.FS, dir string, want int) {
	b.Run("worker", func(b *testing.B) {
		for b.Loop() {
			objs, err := Render(context.Background(), tree, dir, DefaultRenderOptions())
			if err != nil {
				b.Fatal(err)
			}
			if len(objs) != want {
				b.Fatalf("rendered %d objects, want %d", len(objs), want)
			}
		}
	})
	b.Run("in-process", func(b *testing.B) {
		for b.Loop() {
			l := newLoader(context.Background(), tree, DefaultRenderOptions())
			if _, err := l.load(dir); err != nil {
				b.Fatal(err)
			}
			mem := filesys.MakeFsInMemory()
			for p, data := range l.copied {
				if err := mem.WriteFile("/"+p, data); err != nil {
					b.Fatal(err)
				}
			}
			objs, err := build(mem, dir, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			if len(objs) != want {
				b.Fatalf("rendered %d objects, want %d", len(objs), want)
			}
		}
	})
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
