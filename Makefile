# Cloister: the two commands are `make demo` and `make test`.
GO       ?= go
BIN      := bin/cloister
OUT      := out
DATASET  := /usr/share/datasets/fashion-mnist
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# PYTHON is Debian's interpreter, the one its python3-* packages are for
# (a python3 earlier on PATH, such as pyenv's, does not see them).
PYTHON   ?= /usr/bin/python3
# PYDEPS are what the Python client, its tests and the PyTorch example
# need; OpenBLAS because Debian's torch runs about 10x slower on the
# reference BLAS.
PYDEPS   := python3-numpy python3-grpcio python3-protobuf python3-pytest python3-torch libopenblas0

.PHONY: build demo demo-pytorch simulate test test-k8s bench dataset python-deps clean image postgres-image compose-demo test-containers

# The container image (see deploy/image/Dockerfile and docs/DEPLOY.md).
IMAGE        ?= cloister:dev
IMAGE_ROOTFS := $(OUT)/image/rootfs

build:
	$(GO) build -o $(BIN) ./cmd/cloister

# dataset installs Debian's Fashion-MNIST package when it is missing.
dataset:
	@if [ ! -d $(DATASET) ]; then \
		echo "cloister: installing dataset-fashion-mnist"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; \
	fi

# python-deps installs PYDEPS from Debian when one is missing.
python-deps:
	@missing=""; for p in $(PYDEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "cloister: installing$$missing"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; \
	fi

demo: build dataset
	@mkdir -p $(OUT)
	$(BIN) demo --nodes 5 --threshold 3 --rounds 20 --mode mhe --seed 1 \
		--json $(OUT)/demo.json --plot $(OUT)/demo.svg
	@echo "cloister: wrote $(OUT)/demo.json and $(OUT)/demo.svg"

# demo-pytorch runs the federation with the PyTorch example as every node's
# trainer (bring your own model, docs/BYOM.md), then the same script alone
# for the centralized baseline, and prints the gap.
demo-pytorch: build dataset python-deps
	@mkdir -p $(OUT)
	PYTHONPATH=python $(BIN) demo --trainer "$(PYTHON) examples/pytorch-fmnist/train.py" \
		--nodes 5 --threshold 3 --rounds 20 --mode mhe --partition dirichlet:0.5 --seed 1 \
		--local-epochs 2 --lr 0.05 --batch 64 --momentum 0.9 --timeout 3h \
		--json $(OUT)/demo-pytorch.json --plot $(OUT)/demo-pytorch.svg
	$(PYTHON) examples/pytorch-fmnist/train.py --centralized --epochs 10 --json $(OUT)/centralized-pytorch.json
	@$(PYTHON) -c 'import json; f = json.load(open("$(OUT)/demo-pytorch.json"))["final_accuracy"]; \
		c = json.load(open("$(OUT)/centralized-pytorch.json"))["final"]["accuracy"]; \
		print(f"cloister: federated {f:.4f}, centralized {c:.4f}: gap {100 * (c - f):.2f} pp")'
	@echo "cloister: wrote $(OUT)/demo-pytorch.json, $(OUT)/demo-pytorch.svg and $(OUT)/centralized-pytorch.json"

# simulate is the in-process plaintext baseline (no network, no encryption).
simulate: build dataset
	@mkdir -p $(OUT)
	$(BIN) simulate --data fashion-mnist --model mlp --nodes 10 --partition dirichlet:0.5 \
		--rounds 30 --seed 1 --json $(OUT)/simulate.json --plot $(OUT)/simulate.svg

# test runs the Go suite, including the trainer API's tests with real
# Python trainers and a small PyTorch federation, and the Python client's
# tests: they need PYDEPS (make python-deps) and fail without them.
test:
	$(GO) vet ./...
	CLOISTER_REQUIRE_PYTHON=1 CLOISTER_PYTHON=$(PYTHON) $(GO) test -count=1 -timeout 25m ./...
	$(PYTHON) -m pytest -q python/tests
	$(MAKE) test-k8s

# test-k8s checks the Kubernetes manifests (deploy/k8s): a module of its own,
# so that k8s.io/api and kustomize stay out of the binary's.
test-k8s:
	cd deploy/k8s/validate && $(GO) vet ./... && $(GO) test -count=1 ./...

# image builds the static binary here and an image FROM scratch around it
# (deploy/image/Dockerfile): nothing is pulled, so it works without a
# registry. The root Dockerfile builds the same image from the sources, for
# users with one.
image:
	rm -rf $(IMAGE_ROOTFS)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(IMAGE_ROOTFS)/usr/local/bin/cloister ./cmd/cloister
	sh deploy/image/rootfs.sh $(IMAGE_ROOTFS)
	docker build -f deploy/image/Dockerfile -t $(IMAGE) $(OUT)/image
	@docker image inspect -f '{{.Size}}' $(IMAGE) | awk '{ printf "cloister: image $(IMAGE): %.1f MB (%d bytes)\n", $$1/1e6, $$1 }'

# test-containers runs the container fault tests (deploy/containertest): a
# site cut off from its network, a site paused past a deadline, the
# coordinator killed and restarted. They need a Docker engine.
test-containers: image
	CLOISTER_CONTAINER_TESTS=1 CLOISTER_IMAGE=$(IMAGE) $(GO) test -count=1 -timeout 20m -v ./deploy/containertest

# postgres-image builds the coordinator's PostgreSQL store image for
# compose (deploy/postgres/build.sh): Debian's postgresql-15 in a root
# filesystem made by debootstrap and docker import; nothing is pulled from
# a registry. Needs root and debootstrap (installed here if missing).
POSTGRES_IMAGE ?= cloister-postgres:15
postgres-image:
	@command -v debootstrap >/dev/null || { apt-get update && apt-get install -y debootstrap; }
	OUT=$(OUT) sh deploy/postgres/build.sh $(POSTGRES_IMAGE)

# compose-demo runs a federation of a coordinator, its PostgreSQL store and
# three sites in containers (deploy/compose) and verifies every audit log.
compose-demo: image postgres-image dataset
	CLOISTER_POSTGRES_IMAGE=$(POSTGRES_IMAGE) deploy/compose/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

clean:
	rm -rf bin $(OUT)
