# A real single-node Kubernetes on this host (hack/cluster/cluster.sh) and the e2e suite on it.
# Included by the main Makefile. Needs root and the Debian packages listed in .ci/run.

.PHONY: cluster-up cluster-down test-cluster

CLUSTER_ENV = K8S_BIN=$(ENVTEST_DIR)

cluster-up: envtest ## Start the host cluster; prints the kubeconfig path (root)
	@$(CLUSTER_ENV) hack/cluster/cluster.sh up

cluster-down: ## Stop the host cluster and remove everything it created (root)
	@$(CLUSTER_ENV) hack/cluster/cluster.sh down

# Uses the cluster of KUBECONFIG when it answers, else starts (and afterwards stops) the host
# cluster. Under CI=true, a cluster that cannot come up fails; outside CI without root it skips.
test-cluster: envtest helm ## e2e scenarios a-g on a real cluster (host cluster or KUBECONFIG)
	$(CLUSTER_ENV) HELM=$(HELM) IMAGE_REPO=$(IMAGE_REPO) IMAGE_TAG=$(IMAGE_TAG) GO=$(GO) GOTAGS='$(GOTAGS)' \
	  hack/cluster/test-cluster.sh
