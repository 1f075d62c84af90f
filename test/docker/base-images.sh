#!/usr/bin/env bash
# Builds local stand-ins for the Dockerfile's base images, for machines that cannot pull from a
# registry (air-gapped CI, this project's test machine):
#
#   builder: Debian bookworm (debootstrap minbase) + gcc, libc6-dev, ca-certificates, git + the
#            host's Go toolchain copied from $GOROOT — the same shape as golang:1.26-bookworm.
#   runtime: scratch + /etc/passwd and /etc/group with nonroot (65532), CA certificates and an
#            empty /tmp — the same shape as gcr.io/distroless/static-debian12:nonroot.
#
# Idempotent and cached by image tag: an image that already exists is not rebuilt (FORCE=1 rebuilds).
# Prints the two tags as shell assignments (BUILDER_IMAGE=..., RUNTIME_IMAGE=...) on stdout so a
# caller can `eval "$(test/docker/base-images.sh)"`; progress goes to stderr.
set -euo pipefail

DOCKER=${DOCKER:-docker}
GOROOT_HOST=${GOROOT_HOST:-$(go env GOROOT)}
GO_VERSION=$("$GOROOT_HOST/bin/go" env GOVERSION)          # e.g. go1.26.8
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BUILDER_TAG=${BUILDER_TAG:-pandanet-local/builder:${SUITE}-${GO_VERSION}}
RUNTIME_TAG=${RUNTIME_TAG:-pandanet-local/runtime:static-nonroot}
FORCE=${FORCE:-0}

log() { echo "base-images: $*" >&2; }
have_image() { [ "$FORCE" != 1 ] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pandanet-base.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

build_builder() {
  if have_image "$BUILDER_TAG"; then log "builder $BUILDER_TAG exists"; return; fi
  command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 1; }
  [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
  local root="$tmp/builder"
  log "debootstrap $SUITE into $root (a few minutes)"
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,git \
    "$SUITE" "$root" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 || { tail -30 "$tmp/debootstrap.log" >&2; exit 1; }
  # Trim what a build image does not need; keeps the import small.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*
  # Trust what the host trusts: behind a TLS-intercepting proxy, Debian's bundle alone cannot
  # reach the Go module proxy from inside the build.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  log "copying Go toolchain $GO_VERSION from $GOROOT_HOST"
  mkdir -p "$root/usr/local"
  cp -a "$GOROOT_HOST" "$root/usr/local/go"
  log "importing $BUILDER_TAG"
  tar -C "$root" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV GOPATH=/go' \
    --change 'ENV GOTOOLCHAIN=local' \
    --change 'WORKDIR /go' \
    --change 'CMD ["bash"]' \
    - "$BUILDER_TAG" >/dev/null
}

build_runtime() {
  if have_image "$RUNTIME_TAG"; then log "runtime $RUNTIME_TAG exists"; return; fi
  local ctx="$tmp/runtime"
  mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/home/nonroot"
  cat >"$ctx/rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
  cat >"$ctx/rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
  # /tmp world-writable with the sticky bit, /home/nonroot owned by 65532, as in distroless.
  # docker import (not docker build) so the tarball's ownership and modes are kept.
  chmod 1777 "$ctx/rootfs/tmp"
  chown 65532:65532 "$ctx/rootfs/home/nonroot"
  log "importing $RUNTIME_TAG"
  tar -C "$ctx/rootfs" --numeric-owner -c . | "$DOCKER" import \
    --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
    - "$RUNTIME_TAG" >/dev/null
}

build_builder
build_runtime
echo "BUILDER_IMAGE=$BUILDER_TAG"
echo "RUNTIME_IMAGE=$RUNTIME_TAG"
