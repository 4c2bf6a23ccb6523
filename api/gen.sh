#!/usr/bin/env bash
# Regenerates the Go code for every .proto under api/. Run from anywhere.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repo root: the proto include root

if command -v go >/dev/null 2>&1; then
  PATH="$(go env GOPATH)/bin:$PATH"
fi

# The protoc-gen-go version must match google.golang.org/protobuf in go.mod.
pb_version="$(awk '$1 == "google.golang.org/protobuf" {print $2} $2 == "google.golang.org/protobuf" {print $3}' go.mod | head -n1)"

if ! command -v protoc >/dev/null 2>&1; then
  echo "gen.sh: protoc not found; install it with: apt-get install protobuf-compiler" >&2
  exit 1
fi
if ! command -v protoc-gen-go >/dev/null 2>&1; then
  echo "gen.sh: protoc-gen-go not found; install it with:" >&2
  echo "  go install google.golang.org/protobuf/cmd/protoc-gen-go@${pb_version:-latest}" >&2
  exit 1
fi
have="$(protoc-gen-go --version 2>/dev/null | awk '{print $2}')"
if [[ -n "$pb_version" && "$have" != "$pb_version" ]]; then
  echo "gen.sh: warning: protoc-gen-go is $have, go.mod wants $pb_version" >&2
fi

shopt -s nullglob
protos=(
  api/v1/mesos/mesos.proto
  api/v1/scheduler/scheduler.proto
  api/v1/executor/executor.proto
  api/v1/master/master.proto
  api/v1/agent/agent.proto
  api/cluster/*.proto
  agent/checkpoint/*.proto
)

protoc -I . --go_out=. --go_opt=module=github.com/corral/corral "${protos[@]}"
echo "gen.sh: generated Go for ${#protos[@]} proto files"
