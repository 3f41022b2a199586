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

.PHONY: build demo demo-pytorch simulate test bench dataset python-deps clean

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

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

clean:
	rm -rf bin $(OUT)
