#!/usr/bin/env bash
# `make test-cluster`: the e2e suite (test/e2e) against a real single-node Kubernetes.
#   - KUBECONFIG set and reachable: use that cluster (images must be loadable into it; see
#     E2E_LOAD below) and leave it running;
#   - else: bring up the host cluster (hack/cluster/cluster.sh, root needed) and tear it down
#     at the end whatever happens (CLUSTER_KEEP=1 keeps it).
# Under CI=true a cluster that cannot be brought up fails the run; outside CI, without root,
# the test skips with one line.
#
# Inputs from mk/cluster.mk: HELM, K8S_BIN, IMAGE_REPO, IMAGE_TAG, GO, GOTAGS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
: "${HELM:?}" "${K8S_BIN:?}" "${IMAGE_REPO:?}" "${IMAGE_TAG:?}"
GO=${GO:-go}
GOTAGS=${GOTAGS:-sqlite_omit_load_extension netgo osusergo}
NEXT_TAG=${NEXT_TAG:-$IMAGE_TAG-next}
export KUBECTL=$K8S_BIN/kubectl
ci() { case "${CI:-}" in true | TRUE | True | 1) return 0 ;; esac; return 1; }
t0=$SECONDS

CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/pandanet-cluster}
own_cluster=0 # this run started the host cluster and stops it
host_cluster=0 # the cluster is hack/cluster's (images go straight into its containerd)
if [ -n "${KUBECONFIG:-}" ] && "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  echo "test-cluster: using the cluster of KUBECONFIG=$KUBECONFIG"
  [ "$KUBECONFIG" -ef "$CLUSTER_DIR/admin.kubeconfig" ] && host_cluster=1
else
  if [ "$(id -u)" != 0 ]; then
    if ci; then echo "test-cluster: FAIL: CI=true but not root, cannot bring up the host cluster" >&2; exit 1; fi
    echo "SKIPPED: make test-cluster needs root to start a host cluster (or KUBECONFIG of a running one)"
    exit 0
  fi
  own_cluster=1 host_cluster=1
  cleanup() {
    rc=$?
    if [ "${CLUSTER_KEEP:-0}" = 1 ]; then
      echo "test-cluster: CLUSTER_KEEP=1, cluster left running (hack/cluster/cluster.sh down)"
    else
      K8S_BIN=$K8S_BIN CLUSTER_DIR=$CLUSTER_DIR "$here/cluster.sh" down || rc=1
    fi
    echo "test-cluster: finished in $((SECONDS - t0))s (rc=$rc)"
    exit $rc
  }
  trap cleanup EXIT
  if ! KUBECONFIG=$(K8S_BIN=$K8S_BIN CLUSTER_DIR=$CLUSTER_DIR "$here/cluster.sh" up); then
    echo "test-cluster: FAIL: the host cluster did not come up (logs above)" >&2
    exit 1
  fi
  export KUBECONFIG
fi

# Images: built by `make images` with the tag the chart uses, plus a second tag of the node
# image for the rolling-upgrade scenario.
NODE_IMAGE=$IMAGE_REPO/panda-node:$IMAGE_TAG
OPERATOR_IMAGE=$IMAGE_REPO/panda-operator:$IMAGE_TAG
NODE_IMAGE_NEXT=$IMAGE_REPO/panda-node:$NEXT_TAG
ti=$SECONDS
make --no-print-directory images IMAGE_REPO="$IMAGE_REPO" IMAGE_TAG="$IMAGE_TAG"
DOCKER=${DOCKER:-$(hack/docker-cli.sh)}
"$DOCKER" tag "$NODE_IMAGE" "$NODE_IMAGE_NEXT"
echo "test-cluster: images built in $((SECONDS - ti))s"
if [ "$host_cluster" = 1 ]; then
  sock=$CLUSTER_DIR/containerd/containerd.sock
  "$DOCKER" save "$NODE_IMAGE" "$NODE_IMAGE_NEXT" "$OPERATOR_IMAGE" | ctr --address "$sock" -n k8s.io images import - >/dev/null
  # A reused host cluster may hold volumes Released by an earlier run: make them bindable again.
  K8S_BIN=$K8S_BIN CLUSTER_DIR=$CLUSTER_DIR "$here/cluster.sh" pvs
elif [ -n "${E2E_LOAD:-}" ]; then
  # e.g. E2E_LOAD='kind load docker-image --name pandanet-e2e'
  $E2E_LOAD "$NODE_IMAGE" "$NODE_IMAGE_NEXT" "$OPERATOR_IMAGE"
fi

$GO build -tags "$GOTAGS" -o bin/panda-node ./cmd/node
edge_ip=""
[ "$host_cluster" = 1 ] && edge_ip=10.244.0.1
E2E_NODE_IMAGE=$NODE_IMAGE E2E_NODE_IMAGE_NEXT=$NODE_IMAGE_NEXT E2E_OPERATOR_IMAGE=$OPERATOR_IMAGE \
  PANDA_NODE_BIN=$root/bin/panda-node HELM=$HELM E2E_EDGE_LISTEN_IP=$edge_ip \
  $GO test -tags "e2e $GOTAGS" -count=1 -v -timeout 50m ./test/e2e/...
