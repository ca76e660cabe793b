# Portcullis container image: a static binary on an empty (scratch) base, run as UID 65532.
#
#   docker build -t portcullis .
#   docker run -d --name portcullis -p 5060:5060/udp -p 5060:5060/tcp -v portcullis-data:/data portcullis
#
# With no config the container runs a working single node (built-in defaults, data in /data).
# Mount a config and pass it: `... portcullis serve --config /etc/portcullis/portcullis.yaml`;
# every key can also be set as PORTCULLIS_<SECTION>_<KEY> (see deploy/portcullis.yaml).
#
# Without a registry: deploy/docker/make-base-images.sh imports this machine's Go toolchain as an
# image, and `go mod vendor` puts the modules in the build context (the builder has no network):
#
#   GO_IMAGE=$(deploy/docker/make-base-images.sh | tail -n1) && go mod vendor
#   docker build --build-arg GO_IMAGE="$GO_IMAGE" -t portcullis . && rm -r vendor
#
# Every RUN is in exec form, so the builder image needs no shell, and nothing needs BuildKit: the
# classic builder (the only one on a machine without buildx) builds it.

# GO_IMAGE: any image with a Go toolchain at least as new as go.mod asks (`go` on PATH).
ARG GO_IMAGE=golang:1.26
# RUNTIME_IMAGE: scratch (default), or e.g. gcr.io/distroless/static-debian12:nonroot.
ARG RUNTIME_IMAGE=scratch

FROM ${GO_IMAGE} AS build
# Marks the build stage's layers (tests remove them by this label after building).
LABEL org.portcullis-sbc.stage=build
ARG VERSION=dev
# Static (no cgo), reproducible paths, version stamped in. A vendor/ directory in the build
# context is used as is (offline); without one the modules are downloaded.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local \
    GOFLAGS="-trimpath -buildvcs=false '-ldflags=-s -w -X=main.version=${VERSION}'"
WORKDIR /src
COPY . .
RUN ["go", "build", "-o", "/out/portcullis", "./cmd/portcullis"]
# The runtime stage has no shell to mkdir with: make the (empty) data directory here.
WORKDIR /out/data
WORKDIR /src

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="Portcullis" \
      org.opencontainers.image.description="SIP session border controller for video room systems" \
      org.opencontainers.image.source="https://github.com/portcullis-sbc/portcullis" \
      org.opencontainers.image.version="${VERSION}"
COPY deploy/docker/passwd /etc/passwd
COPY deploy/docker/group /etc/group
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/portcullis /usr/local/bin/portcullis
COPY --from=build --chown=65532:65532 /out/data /data
# The default data_dir is ./data, so from / it is /data, also for configs that keep the default.
WORKDIR /
USER 65532:65532
VOLUME ["/data"]
# SIP UDP/TCP, SIP TLS, TURN, admin API (loopback unless admin.tls is set), cluster (Raft, mTLS).
# Media relay ports (media.ports, default 20000-39999/udp) are not listed: publish a narrow range
# or use host networking (see README, "Containers").
EXPOSE 5060/udp 5060/tcp 5061/tcp 3478/udp 8443/tcp 7000/tcp
# SIGTERM drains calls (up to node.drain_timeout, 30s): give `docker stop` a longer --time.
STOPSIGNAL SIGTERM
# `portcullis health` with no flags probes the running `serve` as it was started (its --config and
# environment, read from /proc), so a mounted config needs no change here.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/portcullis", "health"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
