package manifests_test

import (
	"fmt"

	"github.com/sluice-gitops/sluice/manifests"
)

func ExampleTestNamespace() {
	fmt.Println(manifests.TestNamespace("staging", "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"))
	fmt.Println(manifests.TestNamespace("Prod_EU/West", "ABCDEF0123456789"))
	// Output:
	// sluice-staging-1a2b3c4
	// sluice-prod-eu-west-abcdef0
}
