# tei-sidecar's image: one static Go binary on an empty base, run as a
# non-root user, with a health check that needs no shell.
#
#   docker build -t tei-sidecar:local .            # or: docker compose build
#   docker build --build-arg VERSION=1.2.3 -t tei-sidecar:1.2.3 .
#
# Modules are downloaded in the build stage. A build context that carries
# vendor/ (made by `go mod vendor`) builds offline with -mod=vendor instead.
# The Dockerfile works with BuildKit and with the classic builder alike.

FROM golang:1.26-bookworm AS build
WORKDIR /src

# No separate `go mod download` layer: it would fetch the modules of the
# tests too (113 MB against the binary's 30 MB); go build fetches only what
# the binary needs, or nothing when the context carries vendor/.
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# The runtime image's whole file system is built under /rootfs: the binary,
# CA certificates (for a TEI reached over HTTPS),
# a user table for the non-root user, and a /tmp.
#
# A first build is about two minutes of downloading and compiling, so each
# phase says what it does before it starts: `go list -deps` fetches only the
# modules the binary imports (nothing with vendor/), then go build compiles;
# one line each, quiet enough for the classic builder's plain log.
RUN mod=readonly; if [ -f vendor/modules.txt ]; then mod=vendor; echo "vendor/ in the build context: building offline"; fi \
 && export CGO_ENABLED=0 GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH:-$(go env GOARCH)}" \
 && echo "tei-sidecar ${VERSION}: listing the packages it imports (a first build downloads their modules: about a minute)" \
 && go list -mod="$mod" -deps ./cmd/tei-sidecar > /tmp/packages && packages=$(wc -l < /tmp/packages) \
 && echo "tei-sidecar ${VERSION}: compiling ${packages} packages for ${GOOS}/${GOARCH} (first build: about a minute)" \
 && go build -mod="$mod" -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /rootfs/usr/local/bin/tei-sidecar ./cmd/tei-sidecar \
 && echo "tei-sidecar ${VERSION}: built" \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp \
 && chown 65532:65532 /rootfs/home/nonroot

FROM scratch
COPY --from=build /rootfs/ /
# Inside a container the sidecar must listen on every interface of the
# container; what reaches it is decided by the published ports (compose.yaml
# publishes on 127.0.0.1 only).
ENV SIDECAR_LISTEN=0.0.0.0:8080
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
  CMD ["/usr/local/bin/tei-sidecar", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tei-sidecar"]
CMD ["serve"]
LABEL org.opencontainers.image.title="tei-sidecar" \
      org.opencontainers.image.description="Runs Hugging Face Text Embeddings Inference beside a retrieval service: detect, launch, cache, proxy."
