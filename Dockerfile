# The cloister image: the static cloister binary on an empty root filesystem,
# run as the unprivileged user cloister (65532). See docs/DEPLOY.md.
#
# This file builds it from the sources in the Go image GO_IMAGE, for users
# with a registry to pull that from:
#
#	docker build -t cloister .
#
# Without a registry, `make image` builds the binary on this machine and the
# same image FROM scratch with deploy/image/Dockerfile: nothing is pulled.
#
# Run it with a read-only root filesystem: everything it writes goes to
# /var/lib/cloister (a volume: the state), the kit is mounted read-only at
# /etc/cloister, the data read-only wherever --data says.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /rootfs/usr/local/bin/cloister ./cmd/cloister \
	&& sh deploy/image/rootfs.sh /rootfs

FROM scratch
COPY --from=build /rootfs/ /
# Again, to give the state directory to cloister (/var/lib stays root's).
COPY --from=build --chown=65532:65532 /rootfs/var/lib/ /var/lib/
USER 65532:65532
WORKDIR /var/lib/cloister
VOLUME ["/var/lib/cloister"]
# 7443: the coordinator's mutual-TLS gRPC port (nodes dial it); 9464: its
# metrics listener (--metrics :9464 --metrics-tls); 8080: its /healthz
# (--health :8080).
EXPOSE 7443 9464 8080
ENTRYPOINT ["/usr/local/bin/cloister"]
CMD ["help"]
