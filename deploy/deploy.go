// Package deploy holds deployable configuration: the demo catalogue (built
// into the binary for `samdrift demo`), example configs and manifests.
package deploy

import _ "embed"

// DemoCatalogue is deploy/demo.yaml.
//
//go:embed demo.yaml
var DemoCatalogue []byte

// DemoAddr is the HTTP address the demo catalogue's targets point at.
const DemoAddr = "127.0.0.1:9470"
