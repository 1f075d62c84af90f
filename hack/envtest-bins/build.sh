#!/usr/bin/env bash
# Builds the Kubernetes binaries pandanet's tests run, from the Go module proxy, into $1:
#   envtest:      kube-apiserver, kube-controller-manager, etcd, kwok
#   real cluster: kube-scheduler, kubelet, kube-proxy, kubectl (make test-cluster)
# k8s.io/kubernetes v1.37.2 is built through the wrapper module in ./kubernetes, etcd v3.7.0
# through ./etcd, kwok v0.8.0 with go install. Release tarballs are unreachable here.
#
# A plain `go build` stamps every component `v0.0.0-master+$Format:%H$`, which kubectl and
# Helm's kubeVersion checks cannot parse, so the version variables of component-base and
# client-go are set with -ldflags -X, as the Kubernetes release build does.
# Cold: ~10-15 min on 2 cores (one shared dependency graph); relinking after a change ~1 min.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
ts() { date +%s; }

k8s_version=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/kubernetes/go.mod")
[ -n "$k8s_version" ] || { echo "build.sh: cannot read the k8s.io/kubernetes version from kubernetes/go.mod" >&2; exit 1; }
major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v$major.}; minor=${minor%%.*}
# A fixed build date keeps the binaries reproducible; it is the release date of the version.
build_date=${K8S_BUILD_DATE:-2026-11-01T00:00:00Z}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	stamp+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
ldflags="-s -w$stamp"

t0=$(ts)
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
echo "k8s-bins: etcd built in $(( $(ts) - t0 ))s"

t0=$(ts)
(cd "$here/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
	k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
echo "k8s-bins: kubernetes $k8s_version binaries built in $(( $(ts) - t0 ))s"

t0=$(ts)
GOBIN="$tmp" GOFLAGS= go install -trimpath -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok@v0.8.0
echo "k8s-bins: kwok built in $(( $(ts) - t0 ))s"

"$tmp/kube-apiserver" --version | grep -qx "Kubernetes $k8s_version" || {
	echo "build.sh: kube-apiserver reports '$("$tmp/kube-apiserver" --version)', want Kubernetes $k8s_version" >&2; exit 1; }

# Move into place only when everything succeeded, so a half-built dir never looks complete.
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kwok; do
	mv -f "$tmp/$b" "$out/$b"
done
