# pandanet — build, test and benchmark entry points.
# Area-specific targets live in mk/*.mk; this file holds the ones a newcomer runs.
SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
# Static-friendly cgo build: no dlopen in SQLite, pure-Go net and os/user (see docs/).
GOTAGS     ?= sqlite_omit_load_extension netgo osusergo
export CGO_ENABLED := 1

# Extra prerequisites and environment for `make test`, added by mk/*.mk (e.g. envtest binaries).
TEST_DEPS  :=
TEST_ENV   :=
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: all build test test-unit bench lint demo clean
all: build

include $(wildcard mk/*.mk)

build: ## Build panda-node and panda-operator into bin/
	$(GO) build -tags '$(GOTAGS)' -o $(BIN)/panda-node ./cmd/node
	$(GO) build -tags '$(GOTAGS)' -o $(BIN)/panda-operator ./cmd/operator

test: $(TEST_DEPS) ## Run every test (unit, multi-node, envtest, integration)
	$(TEST_ENV) $(GO) test -tags '$(GOTAGS)' $(TEST_FLAGS) ./...

test-unit: ## Only tests that need nothing but Go
	$(GO) test -tags '$(GOTAGS)' $(TEST_FLAGS) -short ./...

lint: ## gofmt + go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags '$(GOTAGS)' ./...

clean:
	rm -rf $(BIN)/panda-node $(BIN)/panda-operator
