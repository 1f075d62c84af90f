#!/usr/bin/env bash
# Prints a docker CLI that can build the Dockerfile, which needs BuildKit (cache mounts):
# one with the buildx plugin, or a client older than 23.0, whose BuildKit is built in and
# enabled by DOCKER_BUILDKIT=1 (Debian's docker.io 20.10 ships no buildx). A newer client
# without buildx refuses DOCKER_BUILDKIT=1 ("BuildKit is enabled but the buildx component is
# missing"), so it is skipped. Exits 1 with a message when none fits.
set -uo pipefail
for c in ${DOCKER_CANDIDATES:-docker /usr/bin/docker}; do
  path=$(command -v "$c" 2>/dev/null) || continue
  if "$path" buildx version >/dev/null 2>&1; then echo "$path"; exit 0; fi
  v=$("$path" version --format '{{.Client.Version}}' 2>/dev/null) || v=$("$path" --version 2>/dev/null | sed -n 's/^Docker version \([0-9][0-9]*\)\..*/\1/p')
  major=${v%%.*}
  if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]; then echo "$path"; exit 0; fi
done
echo "no docker CLI that can build with BuildKit (buildx plugin, or a client older than 23.0); set DOCKER=..." >&2
exit 1
