# Packaging: container images, the Helm chart, and the tests that exercise them
# (Docker, chart + server-side dry run, kind e2e). Included by the main Makefile.

.PHONY: images image-node image-operator base-images test-docker chart-sync chart-test chart-lint \
	helm test-e2e test-e2e-compile

DOCKER        ?= docker
IMAGE_REPO    ?= ghcr.io/pandanet
IMAGE_TAG     ?= dev
NODE_IMAGE     ?= $(IMAGE_REPO)/panda-node:$(IMAGE_TAG)
OPERATOR_IMAGE ?= $(IMAGE_REPO)/panda-operator:$(IMAGE_TAG)
# Public defaults; `make images BUILDER_IMAGE=... RUNTIME_IMAGE=...` or `make base-images` for
# machines that cannot pull (see test/docker/base-images.sh).
BUILDER_IMAGE ?= golang:1.26-bookworm
RUNTIME_IMAGE ?= gcr.io/distroless/static-debian12:nonroot
DOCKER_BUILD  = DOCKER_BUILDKIT=1 $(DOCKER) build \
	--build-arg BUILDER_IMAGE=$(BUILDER_IMAGE) --build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE) \
	--build-arg VERSION=$(IMAGE_TAG)

HELM_VERSION ?= v3.22.0
HELM         ?= $(BIN)/tools/helm-$(HELM_VERSION)/helm
KIND         ?= kind
E2E_CLUSTER  ?= pandanet-e2e

# `make test` vets the build-tagged suites so a compile break there fails CI even though the
# suites themselves need Docker / kind.
TEST_DEPS += test-e2e-compile

images: image-node image-operator ## Build both container images

image-node: ## Build the panda-node image ($(NODE_IMAGE))
	$(DOCKER_BUILD) --target node -t $(NODE_IMAGE) .

image-operator: ## Build the panda-operator image ($(OPERATOR_IMAGE))
	$(DOCKER_BUILD) --target operator -t $(OPERATOR_IMAGE) .

base-images: ## Local stand-ins for BUILDER_IMAGE/RUNTIME_IMAGE (debootstrap + host Go; no registry)
	test/docker/base-images.sh

test-docker: ## Build the node image and run three nodes on a private Docker network
	DOCKER=$(DOCKER_TEST_CLI) $(GO) test -tags 'docker $(GOTAGS)' -count=1 -v -timeout 40m ./test/docker/...
# Empty: the test picks a docker CLI that can use BuildKit; set to force one.
DOCKER_TEST_CLI ?=

chart-sync: ## Copy generated CRDs and the manager ClusterRole into the chart
	rm -f charts/panda-operator/files/crds/*.yaml
	cp config/crd/bases/*.yaml charts/panda-operator/files/crds/
	cp config/rbac/role.yaml charts/panda-operator/files/rbac/role.yaml

chart-test: envtest ## Chart render/schema/lint/drift tests (+ server-side dry run with envtest)
	$(TEST_ENV) $(GO) test -tags '$(GOTAGS)' -count=1 ./test/chart/...

$(HELM):
	GOBIN=$(dir $(HELM)) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

helm: $(HELM) ## Build the helm CLI from the Go module proxy into bin/tools

chart-lint: $(HELM) ## helm lint --strict with defaults and every switch on
	$(HELM) lint --strict charts/panda-operator
	$(HELM) lint --strict charts/panda-operator --set crds.install=false,rbac.create=false,serviceAccount.create=false,serviceAccount.name=x,leaderElection.enabled=false,metrics.serviceMonitor.enabled=true

test-e2e-compile: ## Type-check the build-tagged suites (e2e, docker) without running them
	$(GO) vet -tags 'e2e $(GOTAGS)' ./test/e2e/...
	$(GO) vet -tags 'docker $(GOTAGS)' ./test/docker/...

# kind e2e: needs Docker and kind. Images get a fixed local tag that kind loads; the test
# creates the cluster, installs the chart, runs the scenario and deletes the cluster
# (E2E_KEEP=1 keeps it, E2E_REUSE_CLUSTER=1 uses an existing one).
test-e2e: $(HELM) ## End-to-end on kind (Docker + kind required)
	$(MAKE) images IMAGE_REPO=pandanet-e2e IMAGE_TAG=e2e
	$(GO) build -tags '$(GOTAGS)' -o $(BIN)/panda-node ./cmd/node
	E2E_NODE_IMAGE=pandanet-e2e/panda-node:e2e E2E_OPERATOR_IMAGE=pandanet-e2e/panda-operator:e2e \
	PANDA_NODE_BIN=$(BIN)/panda-node HELM=$(HELM) KIND=$(KIND) E2E_CLUSTER=$(E2E_CLUSTER) \
	  $(GO) test -tags 'e2e $(GOTAGS)' -count=1 -v -timeout 40m ./test/e2e/...
