#!/usr/bin/env bash
# Prints BUILDER_IMAGE=... and RUNTIME_IMAGE=... for `make images`:
#   1. the values given in the environment, if both are set;
#   2. else the public images (golang, distroless) if they are present or can be pulled;
#   3. else the local stand-ins of test/docker/base-images.sh (built once with debootstrap and
#      the host's Go toolchain; needs root), for machines that reach no registry.
set -euo pipefail
DOCKER=${DOCKER:-docker}
PUBLIC_BUILDER=${PUBLIC_BUILDER:-golang:1.26-bookworm}
PUBLIC_RUNTIME=${PUBLIC_RUNTIME:-gcr.io/distroless/static-debian12:nonroot}
if [ -n "${BUILDER_IMAGE:-}" ] && [ -n "${RUNTIME_IMAGE:-}" ]; then
  echo "BUILDER_IMAGE=$BUILDER_IMAGE"; echo "RUNTIME_IMAGE=$RUNTIME_IMAGE"; exit 0
fi
have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1 || timeout 120 "$DOCKER" pull -q "$1" >/dev/null 2>&1; }
if have "$PUBLIC_BUILDER" && have "$PUBLIC_RUNTIME"; then
  echo "BUILDER_IMAGE=$PUBLIC_BUILDER"; echo "RUNTIME_IMAGE=$PUBLIC_RUNTIME"; exit 0
fi
echo "images: $PUBLIC_BUILDER / $PUBLIC_RUNTIME cannot be pulled; using local base images (make base-images)" >&2
here=$(cd "$(dirname "$0")" && pwd)
DOCKER=$DOCKER "$here/../test/docker/base-images.sh"
