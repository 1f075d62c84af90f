# Operator targets: code generation, manifests, envtest binaries.
# Included by the main Makefile; appends to TEST_DEPS / TEST_ENV so `make test` runs the
# operator's envtest suites with real kube-apiserver, etcd, kube-controller-manager and kwok.

.PHONY: generate manifests envtest envtest-clean operator-test

CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(BIN)/tools/controller-gen-$(CONTROLLER_TOOLS_VERSION)/controller-gen

# Envtest control plane. Release tarballs (setup-envtest) are unreachable here, so the
# binaries are built from the Go module proxy by hack/envtest-bins/build.sh (~15 min cold).
ENVTEST_K8S_VERSION ?= 1.37.2
ENVTEST_OS_ARCH     := $(shell $(GO) env GOOS)-$(shell $(GO) env GOARCH)
ENVTEST_DIR         ?= $(BIN)/k8s/$(ENVTEST_K8S_VERSION)-$(ENVTEST_OS_ARCH)
# Machine-wide cache so a fresh clone on the same machine (CI) reuses a previous build.
ENVTEST_CACHE       ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pandanet/envtest/$(ENVTEST_K8S_VERSION)
ENVTEST_BINS        := kube-apiserver etcd kube-controller-manager kwok kube-scheduler kubelet kube-proxy kubectl

TEST_DEPS += envtest
TEST_ENV  += KUBEBUILDER_ASSETS=$(ENVTEST_DIR) \
	TEST_ASSET_KUBE_CONTROLLER_MANAGER=$(ENVTEST_DIR)/kube-controller-manager \
	TEST_ASSET_KWOK=$(ENVTEST_DIR)/kwok \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=120s

$(CONTROLLER_GEN):
	GOBIN=$(dir $(CONTROLLER_GEN)) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods for api/
	$(CONTROLLER_GEN) object paths="./api/..."

manifests: $(CONTROLLER_GEN) ## Generate CRDs (config/crd/bases) and RBAC (config/rbac) from markers
	$(CONTROLLER_GEN) crd rbac:roleName=panda-operator-manager \
	  paths="./api/..." paths="./controllers/..." \
	  output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

# envtest: bin/k8s first, then the machine-wide cache, else build; fill whichever is missing.
envtest: ## Provide envtest binaries in $(ENVTEST_DIR)
	@set -e; \
	complete() { for b in $(ENVTEST_BINS); do [ -x "$$1/$$b" ] || return 1; done; }; \
	copy() { mkdir -p "$$2"; for b in $(ENVTEST_BINS); do \
	  cp -f "$$1/$$b" "$$2/.$$b.tmp" && mv -f "$$2/.$$b.tmp" "$$2/$$b"; done; }; \
	if complete "$(ENVTEST_DIR)"; then \
	  echo "envtest: using $(ENVTEST_DIR)"; \
	elif complete "$(ENVTEST_CACHE)"; then \
	  echo "envtest: copying from $(ENVTEST_CACHE)"; copy "$(ENVTEST_CACHE)" "$(ENVTEST_DIR)"; \
	else \
	  echo "envtest: building $(ENVTEST_BINS) from the Go module proxy into $(ENVTEST_DIR)"; \
	  hack/envtest-bins/build.sh "$(ENVTEST_DIR)"; \
	fi; \
	if ! complete "$(ENVTEST_CACHE)"; then \
	  echo "envtest: filling machine cache $(ENVTEST_CACHE)"; copy "$(ENVTEST_DIR)" "$(ENVTEST_CACHE)"; \
	fi

envtest-clean:
	rm -rf $(ENVTEST_DIR)

operator-test: envtest ## Only the operator's packages
	$(TEST_ENV) $(GO) test $(TEST_FLAGS) ./api/... ./controllers/... ./cmd/operator/...
