# Build tags: libcontainer enforces seccomp profiles only with the seccomp tag (cgo + libseccomp);
# urfave_cli_no_docs leaves out urfave/cli's man-page generator, whose markdown package's init
# cost every rune invocation 0.3 ms and 210 KB (bench/lifecycle/README.md).
GO        ?= go
TAGS      ?= seccomp urfave_cli_no_docs
BIN       ?= $(CURDIR)/bin
GOFLAGS_B := -trimpath -tags "$(TAGS)"
TEST_TIMEOUT ?= 40m

export RUNE_BINARY := $(BIN)/rune
export RUNE_RUNELET := $(BIN)/init-runelet

.PHONY: all build test vet fuzz demo conformance bench clean

all: build

# The shim and its helper are built without cgo: statically linked by Go's own linker, the
# shim's binary (most of its memory: a shim lives as long as its pod) is about half as large
# (bench/cri/README.md).
STATIC_CMDS := ./cmd/containerd-shim-rune-v2 ./cmd/rune-carrier-helper

build:
	mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_B) -o $(BIN)/ ./cmd/...
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ $(STATIC_CMDS)

vet:
	$(GO) vet -tags "$(TAGS)" ./...
	cd tests/imagecrypt/imgcopy && $(GO) vet -tags containers_image_openpgp .
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Every test, as root: unit tests, then the integration suites against real runc, containerd, dockerd
# and the OCI runtime-tools validation suite. -p 1: the suites start daemons and must not overlap.
test: build vet
	$(GO) test -tags "$(TAGS)" -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./... ./internal/testdata/
	FUZZTIME=3s ./scripts/fuzz-smoke.sh

# Every fuzz target for FUZZTIME (default 3s; make test runs them briefly).
fuzz:
	./scripts/fuzz-smoke.sh

demo: build
	./scripts/demo.sh

# The OCI runtime-tools validation suite, rune beside runc (also part of make test).
conformance: build
	tests/conformance/run.sh $(BIN)/rune runc

bench: build
	bench/lifecycle/run.sh $(BIN)/rune runc crun
	bench/cri/run.sh

clean:
	rm -rf $(BIN)
