# Fault and abuse suites (test/fault) and bounded-time fuzzing. Included by the main Makefile.
# `make test` already runs test/fault (it is a normal Go package); the namespace, tmpfs and
# read-only tests need root and skip with a message otherwise.

.PHONY: fault-test fuzz-short

FUZZTIME ?= 10s

fault-test: ## Only the fault and abuse suites (kill -9, full/read-only disk, netns partitions, malicious peer)
	$(GO) test -tags '$(GOTAGS)' $(TEST_FLAGS) -v ./test/fault/...

# Every `func Fuzz*` in the repository for $(FUZZTIME) each. 8 targets x 10s plus one
# instrumented build per package took 1m41s on 2 cores (measured while another test suite
# ran), inside the ~2 minute budget, so `make test` runs it; there are 12 targets since
# issue 12 added the two signature differentials. See hack/fuzz-short.sh for the Go 1.26
# deadline race it tolerates.
TEST_DEPS += fuzz-short
fuzz-short: ## Run every fuzz target for $(FUZZTIME) each
	@GO='$(GO)' GOTAGS='$(GOTAGS)' FUZZTIME='$(FUZZTIME)' hack/fuzz-short.sh
