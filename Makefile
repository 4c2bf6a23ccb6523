# Corral — run `make run` for a one-node cluster with a demo job, `make test`
# for the test suite (as root it includes the real-kernel tests).
GO      ?= go
BIN     := bin
PORT    ?= 5050
LDFLAGS := -s -w

.PHONY: all build test test-unit test-conformance vm-test bench lint run proto clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Unit tests everywhere; as root also the real-kernel and end-to-end tests
# (as non-root those skip and say so). Then third-party client conformance,
# which has its own go.mod.
test: build
	CORRAL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m ./...
	$(MAKE) test-conformance

test-unit:
	$(GO) test -count=1 -short ./...

test-conformance: build
	cd integration/conformance && CORRAL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m ./...

# The VM tier (README.md, "VM tests"): the root tests in qemu Debian guests
# under systemd, cgroup v2 and v1. Needs root, qemu-system-x86, qemu-utils
# and debootstrap (installed when missing). The image is cached under
# build/vm. Settings: CORRAL_VM_* variables, or VMTEST_FLAGS (see -h).
vm-test:
	CGO_ENABLED=0 $(GO) build -o build/vm/vmtest ./integration/vm/cmd/vmtest
	build/vm/vmtest $(VMTEST_FLAGS)

bench: build
	CORRAL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# A one-node cluster (master + agent in one process) on embedded defaults,
# with a demo job launched through the public scheduler API. Ctrl-C stops
# everything.
run: build
	@PORT=$(PORT) BIN=$(BIN) bash scripts/demo.sh

# Regenerate the Go code of api/**/*.proto (needs protoc and protoc-gen-go).
proto:
	bash api/gen.sh

clean:
	rm -rf $(BIN)
