# Build tags: libcontainer enforces seccomp profiles only with the seccomp tag (cgo + libseccomp).
GO        ?= go
TAGS      ?= seccomp
BIN       ?= $(CURDIR)/bin
GOFLAGS_B := -trimpath -tags "$(TAGS)"

.PHONY: all build test unit integration conformance demo bench fmt vet clean

all: build

build:
	mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_B) -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet -tags "$(TAGS)" ./...

# Every test: unit tests, then the root-only integration suites against real runc, containerd, dockerd.
test: build vet
	$(GO) test -tags "$(TAGS)" -count=1 ./...

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BIN)
