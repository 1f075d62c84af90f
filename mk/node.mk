# panda-node targets. Included by the main Makefile.

.PHONY: demo node-test

demo: ## Build panda-node and run the store-and-forward demo on 127.0.0.1 (hack/demo.sh)
	$(GO) build -tags '$(GOTAGS)' -o $(BIN)/panda-node ./cmd/node
	hack/demo.sh $(BIN)/panda-node

node-test: ## Tests of the daemon, CLI, config, admin API and metrics
	$(GO) test -tags '$(GOTAGS)' $(TEST_FLAGS) ./cmd/node ./internal/...
