# Packaging: container images, the Helm chart, and the tests that exercise them
# (Docker, chart + server-side dry run, kind e2e). Included by the main Makefile.

.PHONY: images image-tag image-node image-operator base-images test-docker chart-sync chart-test chart-lint \
	helm test-e2e test-e2e-compile

# A docker CLI that can build the Dockerfile with BuildKit (see hack/docker-cli.sh): Debian's
# docker.io 20.10 has BuildKit built in but no buildx; a newer CLI needs the buildx plugin.
ifeq ($(origin DOCKER),undefined)
DOCKER        := $(shell hack/docker-cli.sh 2>/dev/null || echo docker)
endif
IMAGE_REPO    ?= ghcr.io/pandanet
# One tag story: images are tagged with the chart's appVersion, which is also the tag the chart
# deploys by default and the tag in config/manager (kustomize). `make images IMAGE_TAG=x`
# builds another tag; install it with --set image.tag=x,nodeImage.tag=x.
IMAGE_TAG     ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' charts/panda-operator/Chart.yaml)
NODE_IMAGE     ?= $(IMAGE_REPO)/panda-node:$(IMAGE_TAG)
OPERATOR_IMAGE ?= $(IMAGE_REPO)/panda-operator:$(IMAGE_TAG)
# Base images: empty = the public golang/distroless images when they can be pulled, else the
# local stand-ins of `make base-images` (hack/image-bases.sh). Set both to force a choice.
BUILDER_IMAGE ?=
RUNTIME_IMAGE ?=
DOCKER_BUILD  = eval "$$(BUILDER_IMAGE=$(BUILDER_IMAGE) RUNTIME_IMAGE=$(RUNTIME_IMAGE) DOCKER=$(DOCKER) hack/image-bases.sh)" && \
	DOCKER_BUILDKIT=1 $(DOCKER) build \
	--build-arg BUILDER_IMAGE=$$BUILDER_IMAGE --build-arg RUNTIME_IMAGE=$$RUNTIME_IMAGE \
	--build-arg VERSION=$(IMAGE_TAG)

HELM_VERSION ?= v3.22.0
HELM         ?= $(BIN)/tools/helm-$(HELM_VERSION)/helm
KIND         ?= kind
E2E_CLUSTER  ?= pandanet-e2e

# `make test` vets the build-tagged suites so a compile break there fails CI even though the
# suites themselves need Docker / kind.
TEST_DEPS += test-e2e-compile

image-tag: ## Print the tag `make images` builds (the chart's appVersion unless IMAGE_TAG is set)
	@echo $(IMAGE_TAG)

images: image-node image-operator ## Build both container images

image-node: ## Build the panda-node image ($(NODE_IMAGE))
	$(DOCKER_BUILD) --target node -t $(NODE_IMAGE) .

image-operator: ## Build the panda-operator image ($(OPERATOR_IMAGE))
	$(DOCKER_BUILD) --target operator -t $(OPERATOR_IMAGE) .

base-images: ## Local stand-ins for BUILDER_IMAGE/RUNTIME_IMAGE (debootstrap + host Go; no registry)
	DOCKER=$(DOCKER) test/docker/base-images.sh

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

# kind e2e: the same suite as `make test-cluster` (test/e2e), on a kind cluster that this
# target creates (or reuses when it exists) and deletes afterwards (E2E_KEEP=1 keeps it).
E2E_KEEP ?= 0
test-e2e: envtest $(HELM) ## The e2e suite on kind (Docker + kind required)
	@set -e; kc=$$(mktemp); \
	$(KIND) get clusters 2>/dev/null | grep -qx '$(E2E_CLUSTER)' || $(KIND) create cluster --name $(E2E_CLUSTER) --wait 3m; \
	$(KIND) get kubeconfig --name $(E2E_CLUSTER) >$$kc; rc=0; \
	KUBECONFIG=$$kc E2E_LOAD="$(KIND) load docker-image --name $(E2E_CLUSTER)" E2E_KEEP=$(E2E_KEEP) \
	  K8S_BIN=$(ENVTEST_DIR) HELM=$(HELM) IMAGE_REPO=$(IMAGE_REPO) IMAGE_TAG=$(IMAGE_TAG) GO=$(GO) GOTAGS='$(GOTAGS)' \
	  hack/cluster/test-cluster.sh || rc=$$?; \
	if [ "$(E2E_KEEP)" != 1 ]; then $(KIND) delete cluster --name $(E2E_CLUSTER); fi; rm -f $$kc; exit $$rc
