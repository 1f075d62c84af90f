# `make bench`: the benchmark table (docs/performance.md explains every row). It needs the
# envtest binaries for the operator's row, like `make test`.
.PHONY: bench
bench: envtest ## Run the headline benchmarks and print one table (JSON in bin/bench/results.json)
	$(TEST_ENV) $(GO) run -tags '$(GOTAGS)' ./hack/benchtable -json $(BIN)/bench/results.json
