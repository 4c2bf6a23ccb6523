module github.com/corral/corral/integration/conformance

go 1.26.0

// mesos-go v0.0.11 has no go.mod of its own, so its dependencies are pinned
// here. The packages these tests use (api/v1/lib/...) import only
// gogo/protobuf (proto, gogoproto, sortkeys) and pquerna/ffjson (fflib/v1);
// both are pinned at their latest versions, which build and vet cleanly with
// Go 1.26. mesos-go's other imports (glog, pborman/uuid, prometheus,
// go-zookeeper, testify, x/net) belong to its api/v0 tree, its example
// commands and its own tests, which are not built here; github.com/pkg/errors
// is not imported by v0.0.11 at all.
require github.com/mesos/mesos-go v0.0.11

require (
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/pquerna/ffjson v0.0.0-20190930134022-aa0246cd15f7 // indirect
)
