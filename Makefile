# Sluice — build, test and demo.
#
# Tool binaries (control plane, etcd, kwok, gitea) are built from source into bin/,
# only when missing or older than the tools module that pins their version.
# The versions live in test/tools/*/go.mod and nowhere else.

SHELL      := /usr/bin/env bash
BIN        := $(CURDIR)/bin
GO         ?= go
export PATH := $(BIN):$(PATH)

KUBE_BINS  := kube-apiserver kube-controller-manager kube-scheduler kubectl
KUBE_TOOLS := $(addprefix $(BIN)/,$(KUBE_BINS))
TOOLS      := $(KUBE_TOOLS) $(BIN)/etcd $(BIN)/kwok $(BIN)/kwokctl $(BIN)/gitea

# Test binaries find the tools here (see test/cluster).
export SLUICE_TOOLS_DIR := $(BIN)

.PHONY: all build image tools test vet fuzz demo demo-down bench clean

all: build

build: $(BIN)/sluice

$(BIN)/sluice: $(shell find cmd gitrepo manifests reconcile internal -name '*.go' 2>/dev/null) go.mod go.sum
	$(GO) build -o $@ ./cmd/sluice

# The OCI image, without Docker (hack/image): the static binary on no base
# image, user 65532, every timestamp SOURCE_DATE_EPOCH (the last commit's
# time), so one commit always gives one digest. Writes build/image/oci (an
# OCI layout) and build/image/sluice.tar (`docker load`), prints the digest.
VERSION           ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION          ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_REPO        ?= ghcr.io/sluice-gitops/sluice

image:
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./hack/image -out build/image \
		-version '$(VERSION)' -revision '$(REVISION)' -repo '$(IMAGE_REPO)'

tools: $(TOOLS)

$(BIN)/kube-%: test/tools/kube/go.mod test/tools/kube/go.sum
	@mkdir -p $(BIN)
	@echo ">> building kube-$* from source (first time: about 20 min on 2 cores for all the tools)"
	cd test/tools/kube && $(GO) build -o $@ k8s.io/kubernetes/cmd/kube-$*

$(BIN)/kubectl: test/tools/kube/go.mod test/tools/kube/go.sum
	@mkdir -p $(BIN)
	@echo ">> building kubectl from source"
	cd test/tools/kube && $(GO) build -o $@ k8s.io/kubernetes/cmd/kubectl

$(BIN)/etcd: test/tools/etcd/go.mod test/tools/etcd/go.sum
	@mkdir -p $(BIN)
	@echo ">> building etcd from source"
	cd test/tools/etcd && $(GO) build -o $@ go.etcd.io/etcd/server/v3

$(BIN)/kwok $(BIN)/kwokctl: test/tools/kwok/go.mod test/tools/kwok/go.sum
	@mkdir -p $(BIN)
	@echo ">> building $(notdir $@) from source"
	cd test/tools/kwok && $(GO) build -o $@ sigs.k8s.io/kwok/cmd/$(notdir $@)

# Gitea, the real forge of the forge feedback tests (test/gitea). Built
# without bindata: the tests point STATIC_ROOT_PATH at its module directory.
$(BIN)/gitea: test/tools/gitea/go.mod test/tools/gitea/go.sum
	@mkdir -p $(BIN)
	@echo ">> building gitea from source (about 6 minutes on 2 cores)"
	cd test/tools/gitea && $(GO) build -tags 'sqlite sqlite_unlock_notify' -o $@ code.gitea.io/gitea

# Fuzz targets: a few seconds each in `make test`, longer with
# `make fuzz FUZZTIME=10m`. The budget in `make test` is a count of
# executions, not a duration: on Go 1.26 a duration can end the run with a
# spurious "context deadline exceeded" when a worker is mid-call at the
# deadline (go.dev/issue/75804, fixed in Go 1.27). A count has no deadline.
FUZZ_TARGETS := ./internal/config:FuzzParse ./gitrepo:FuzzDecodeNote ./gitrepo:FuzzParseTrailers
FUZZTIME     ?= 20000x

GOTEST_FLAGS ?= -race -count=1 -timeout 75m

test: tools
	$(GO) vet ./...
	$(GO) test $(GOTEST_FLAGS) ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo ">> fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

vet:
	$(GO) vet ./...

demo: tools build
	@bash test/demo/demo.sh

demo-down:
	@bash test/demo/demo.sh down

# Throughput at a platform team's scale, on the test control plane and a
# Git server on loopback (test/bench): the makespan of each gating strategy
# side by side, Sluice's overhead per candidate and peak RSS, and a
# hand-written kubectl loop over the same queue. Not part of `make test`.
BENCH_FLAGS ?= -services 100 -commits 50 -broken 2 -test 10s
bench: tools build
	$(GO) run ./test/bench -sluice $(BIN)/sluice -tools $(BIN) $(BENCH_FLAGS)

clean:
	rm -rf $(BIN) build
