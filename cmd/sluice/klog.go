package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// The Kubernetes libraries log through klog and controller-runtime's
// logger, both process-wide. They are pointed once at kubeHandler, which
// forwards to the handler of the newest run: setting them again for each
// run would race with a client still logging (in tests, several runs
// share the process one after another).
var (
	kubeOnce   sync.Once
	kubeTarget atomic.Pointer[slog.Handler]
)

// routeKubernetesLogs sends the Kubernetes libraries' logs to h.
func routeKubernetesLogs(h slog.Handler) {
	h = h.WithAttrs([]slog.Attr{slog.String("component", "kubernetes")})
	kubeTarget.Store(&h)
	kubeOnce.Do(func() {
		lr := logr.FromSlogHandler(kubeHandler{})
		klog.SetLogger(lr)
		ctrllog.SetLogger(lr)
	})
}

// kubeHandler is a slog.Handler that hands every call to the newest
// target; attributes and groups are kept and applied at the time of the
// call.
type kubeHandler struct {
	ops []func(slog.Handler) slog.Handler
}

func (k kubeHandler) target() slog.Handler {
	h := *kubeTarget.Load()
	for _, op := range k.ops {
		h = op(h)
	}
	return h
}

func (k kubeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return k.target().Enabled(ctx, l)
}

func (k kubeHandler) Handle(ctx context.Context, r slog.Record) error {
	return k.target().Handle(ctx, r)
}

func (k kubeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return k.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(as) })
}

func (k kubeHandler) WithGroup(name string) slog.Handler {
	return k.with(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

func (k kubeHandler) with(op func(slog.Handler) slog.Handler) slog.Handler {
	ops := make([]func(slog.Handler) slog.Handler, len(k.ops), len(k.ops)+1)
	copy(ops, k.ops)
	return kubeHandler{ops: append(ops, op)}
}
