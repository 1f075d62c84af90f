# pandanet container images, one Dockerfile, two final stages:
#
#   docker build --target node     -t panda-node .       # default (last stage)
#   docker build --target operator -t panda-operator .
#
# Needs BuildKit (cache mounts keep the Go module and build caches between builds). Both
# binaries are static cgo builds (SQLite via mattn/go-sqlite3 in the node; the same flags for
# the operator so both images are built the same way) and run as uid 65532 on a read-only root
# filesystem; the node keeps its data in the /var/lib/panda volume.
#
# Base images are build args so air-gapped machines can substitute local stand-ins
# (test/docker/base-images.sh builds both from Debian packages and the host's Go toolchain).
ARG BUILDER_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
# GOPROXY/GOPRIVATE/GOINSECURE pass through when given (corporate proxies); unset otherwise.
ARG GOPROXY
ARG GOPRIVATE
ARG GOINSECURE
ENV CGO_ENABLED=1 \
    GOFLAGS=-buildvcs=false \
    GOTOOLCHAIN=local \
    GOCACHE=/root/.cache/go-build \
    GOMODCACHE=/go/pkg/mod
# sqlite_omit_load_extension: no dlopen in SQLite; netgo, osusergo: pure-Go resolver and
# user lookup, so the static glibc link has no NSS runtime dependency (libp2p-and-perf.md 4.4).
ENV GO_TAGS="sqlite_omit_load_extension netgo osusergo" \
    GO_LDFLAGS="-s -w -linkmode external -extldflags -static"
COPY . .
# The data directory, created here because the runtime image has no shell.
RUN mkdir -p /out/var/lib/panda

FROM builder AS build-node
RUN --mount=type=cache,id=pandanet-gomod,target=/go/pkg/mod \
    --mount=type=cache,id=pandanet-gobuild,target=/root/.cache/go-build \
    go build -trimpath -tags "$GO_TAGS" -ldflags "$GO_LDFLAGS" -o /out/panda-node ./cmd/node \
 && if readelf -l /out/panda-node | grep -q 'program interpreter'; then \
      echo "panda-node is dynamically linked" >&2; exit 1; fi

FROM builder AS build-operator
RUN --mount=type=cache,id=pandanet-gomod,target=/go/pkg/mod \
    --mount=type=cache,id=pandanet-gobuild,target=/root/.cache/go-build \
    go build -trimpath -tags "$GO_TAGS" -ldflags "$GO_LDFLAGS" -o /out/panda-operator ./cmd/operator \
 && if readelf -l /out/panda-operator | grep -q 'program interpreter'; then \
      echo "panda-operator is dynamically linked" >&2; exit 1; fi

FROM ${RUNTIME_IMAGE} AS operator
ARG VERSION=dev
LABEL org.opencontainers.image.title="panda-operator" \
      org.opencontainers.image.description="Kubernetes operator for pandanet (PandaNetwork, TopicReplica)" \
      org.opencontainers.image.source="https://github.com/pandanet/pandanet" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-operator /out/panda-operator /usr/local/bin/panda-operator
USER 65532:65532
# 8080 metrics, 8081 health probes (chart defaults).
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/panda-operator"]

FROM ${RUNTIME_IMAGE} AS node
ARG VERSION=dev
LABEL org.opencontainers.image.title="panda-node" \
      org.opencontainers.image.description="pandanet node: p2panda-compatible topic streams on libp2p and SQLite" \
      org.opencontainers.image.source="https://github.com/pandanet/pandanet" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-node /out/panda-node /usr/local/bin/panda-node
COPY --from=build-node --chown=65532:65532 /out/var/lib/panda /var/lib/panda
# PANDA_DATA_DIR is the env form of --data-dir (docs/node-contract.md): SQLite and the default
# identity key live in the volume, so the root filesystem can stay read-only.
ENV HOME=/home/nonroot \
    PANDA_DATA_DIR=/var/lib/panda
USER 65532:65532
VOLUME ["/var/lib/panda"]
# 4001 libp2p TCP and QUIC, 9464 metrics and health, 7070 admin API (loopback unless configured).
EXPOSE 4001/tcp 4001/udp 9464/tcp 7070/tcp
ENTRYPOINT ["/usr/local/bin/panda-node"]
CMD ["run"]
