#!/usr/bin/env bash
# Builds the envtest control-plane binaries from the Go module proxy into $1:
#   kube-apiserver, kube-controller-manager (k8s.io/kubernetes v1.37.2 via ./kubernetes),
#   etcd (go.etcd.io/etcd/server/v3 v3.7.0 via ./etcd), kwok (sigs.k8s.io/kwok v0.8.0).
# Release tarballs (setup-envtest, dl.k8s.io, GitHub) are unreachable here; see
# shared design research section 4.3. Cold: ~10-15 min on 2 cores, mostly kube-apiserver.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
ldflags='-s -w'
ts() { date +%s; }

t0=$(ts)
(cd "$here/etcd" && go build -trimpath -ldflags "$ldflags" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
echo "envtest-bins: etcd built in $(( $(ts) - t0 ))s"

t0=$(ts)
(cd "$here/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
echo "envtest-bins: kube-apiserver + kube-controller-manager built in $(( $(ts) - t0 ))s"

t0=$(ts)
GOBIN="$tmp" GOFLAGS= go install -trimpath -ldflags "$ldflags" sigs.k8s.io/kwok/cmd/kwok@v0.8.0
echo "envtest-bins: kwok built in $(( $(ts) - t0 ))s"

# Move into place only when everything succeeded, so a half-built dir never looks complete.
for b in etcd kube-apiserver kube-controller-manager kwok; do mv -f "$tmp/$b" "$out/$b"; done
