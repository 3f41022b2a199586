# The cloister image: the static cloister binary on an empty root filesystem,
# run as the unprivileged user cloister (65532). See docs/DEPLOY.md.
#
# Two targets build the same image:
#
#   make image    builds the binary on this machine (CGO_ENABLED=0), lays out
#                 out/image/rootfs with deploy/image/rootfs.sh and runs
#                 `docker build --target local`: FROM scratch, nothing is
#                 pulled, so it works without a registry.
#   docker build -t cloister .
#                 (the default, last target) builds the binary in the Go image
#                 GO_IMAGE from the sources: needs a registry to pull it from.
#
# The local stage comes first so that the classic builder, which builds every
# stage up to the target, never reaches the Go image.
#
# Run it with a read-only root filesystem: everything it writes goes to
# /var/lib/cloister (a volume: the state), the kit is mounted read-only at
# /etc/cloister, the data read-only wherever --data says.

# The Go image of the release target (ignored by the local one).
ARG GO_IMAGE=golang:1.26-bookworm

FROM scratch AS local
COPY out/image/rootfs/ /
# Again, to give the state directory to cloister (/var/lib stays root's).
COPY --chown=65532:65532 out/image/rootfs/var/lib/ /var/lib/
USER 65532:65532
WORKDIR /var/lib/cloister
VOLUME ["/var/lib/cloister"]
# 7443: the coordinator's mutual-TLS gRPC port (nodes dial it);
# 9464: its metrics listener, when run with --metrics :9464 --metrics-tls.
EXPOSE 7443 9464
ENTRYPOINT ["/usr/local/bin/cloister"]
CMD ["help"]

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /rootfs/usr/local/bin/cloister ./cmd/cloister \
	&& sh deploy/image/rootfs.sh /rootfs

FROM scratch AS release
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /rootfs/var/lib/ /var/lib/
USER 65532:65532
WORKDIR /var/lib/cloister
VOLUME ["/var/lib/cloister"]
EXPOSE 7443 9464
ENTRYPOINT ["/usr/local/bin/cloister"]
CMD ["help"]
