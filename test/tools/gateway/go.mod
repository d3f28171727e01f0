// Tools module: pins the Gateway API release whose standard-channel CRDs
// (config/crd/standard) the preview tests install. Nothing is built from
// it; the tests find the files with `go mod download -json` here.
module github.com/sluice-gitops/sluice/test/tools/gateway

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.3
