#!/usr/bin/env python3
"""A small PyTorch CNN on Fashion-MNIST, federated by Cloister or trained alone.

As a site's trainer (the node starts it, and restarts it if it dies):

    cloister node --kit fed/node-1 --trainer "python3 examples/pytorch-fmnist/train.py"
    cloister demo --trainer "python3 examples/pytorch-fmnist/train.py"

Alone, the centralized baseline on the whole training set:

    python3 examples/pytorch-fmnist/train.py --centralized --epochs 10

The data is Debian's dataset-fashion-mnist (IDX files, read with numpy; no
download). A trainer takes its share of it from what the node passes:
CLOISTER_SHARE (the indices the node dealt with the Go partitioning, so
the federation has the same split as `cloister demo` with the built-in
models) or, without it, CLOISTER_NODE_INDEX, CLOISTER_NODES,
CLOISTER_PARTITION and CLOISTER_SEED, with this file's own seeded numpy
split (the same schemes, not the same draw).
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:
    import cloister
except ImportError:  # run from a clone: the client is in python/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import cloister

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530  # of the training images, scaled to [0, 1]


class Net(nn.Module):
    """conv(1→16, 5×5) → ReLU → max-pool → conv(16→32, 5×5) → ReLU → max-pool → 128 → 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), 0.25, self.training)
        return self.fc2(x)


def new_model(seed):
    torch.manual_seed(seed)
    return Net()


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        b = f.read()
    if b[0] != 0 or b[1] != 0 or b[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    a = np.frombuffer(b, np.uint8, offset=4 + 4 * nd)
    if a.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {a.size} values for dimensions {dims}")
    return a.reshape(dims)


def find(directory, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"no {name}[.gz] in {directory}: install it with apt-get install dataset-fashion-mnist")


def load(directory):
    """(train images, train labels, test images, test labels), images as float32 N×1×28×28, normalized."""
    def images(name):
        x = read_idx(find(directory, name)).astype(np.float32) / 255.0
        return ((x - MEAN) / STD)[:, None, :, :]

    def labels(name):
        return read_idx(find(directory, name)).astype(np.int64)

    return (images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte"),
            images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte"))


def numpy_split(labels, nodes, spec, seed):
    """Each site's indices under spec ("iid" or "dirichlet:ALPHA"), seeded:
    the schemes of Go's dataset package, drawn with numpy."""
    rng = np.random.default_rng(seed)
    if spec == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(len(labels)), nodes)]
    if spec.startswith("dirichlet:"):
        alpha = float(spec.split(":", 1)[1])
        sites = [[] for _ in range(nodes)]
        for c in range(int(labels.max()) + 1):
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * nodes))[:-1] * len(idx)).astype(int)
            for s, part in enumerate(np.split(idx, cuts)):
                sites[s].extend(part.tolist())
        for s in range(nodes):  # every site gets at least one example
            if not sites[s]:
                big = max(range(nodes), key=lambda t: len(sites[t]))
                sites[s].append(sites[big].pop(rng.integers(len(sites[big]))))
        return [np.sort(np.array(s, dtype=np.int64)) for s in sites]
    raise ValueError(f"partition {spec!r}: this trainer splits iid or dirichlet:ALPHA")


def share(data, site):
    """This site's (train x, train y, test x, test y)."""
    xtr, ytr, xte, yte = data
    if site.train is not None:
        tr, te = np.array(site.train, dtype=np.int64), np.array(site.test, dtype=np.int64)
    elif site.nodes > 1 and site.partition:
        tr = numpy_split(ytr, site.nodes, site.partition, site.seed)[site.index]
        te = numpy_split(yte, site.nodes, "iid", site.seed + 1)[site.index]
    else:
        return data
    return xtr[tr], ytr[tr], xte[te], yte[te]


def fit(model, x, y, epochs, batch, lr, momentum, seed, proximal=None):
    """Minibatch SGD with momentum; returns the mean loss of the last epoch."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    n = len(ys)
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, batch):
            b = order[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(xs[b]), ys[b])
            total += float(loss) * len(b)
            if proximal is not None:
                loss = loss + proximal(model)
            loss.backward()
            opt.step()
    return total / n


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), 1000):
        xb, yb = torch.from_numpy(x[i:i + 1000]), torch.from_numpy(y[i:i + 1000])
        out = model(xb)
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    return correct / len(y), loss / len(y)


def round_lr(lr, r, rounds):
    """The round's learning rate: cosine annealing over the federation's rounds."""
    if rounds <= 1:
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * (r - 1) / rounds))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def serve(args):
    """Answer the node's tasks until it closes the API."""
    site = cloister.site()
    data = None  # read at the first task that needs it: describe and init do not

    def local():
        nonlocal data
        if data is None:
            data = share(load(args.data), site)
            log(f"train.py: {site.node or 'alone'}: {len(data[1])} training and {len(data[3])} test examples, "
                f"{torch.get_num_threads()} thread(s)")
        return data

    model = new_model(site.seed)
    for task in cloister.tasks():
        if task.kind == "init":
            model = new_model(task.seed)
        task.load(model)
        n, metrics = 0, {}
        start = time.monotonic()
        if task.kind == "train":
            xtr, ytr, _, _ = local()
            c = task.config
            lr = round_lr(c.lr, task.round, c.rounds) if args.schedule == "cosine" else c.lr
            loss = fit(model, xtr, ytr, c.epochs, c.batch, lr, c.momentum, task.seed,
                       task.proximal if c.prox_mu > 0 else None)
            n, metrics = len(ytr), {"loss": loss, "lr": lr}
        elif task.kind == "evaluate":
            _, _, xte, yte = local()
            acc, loss = evaluate(model, xte, yte)
            n, metrics = len(yte), {"accuracy": acc, "loss": loss}
        task.reply(state_dict=model.state_dict(), examples=n, metrics=metrics)
        if task.kind in ("train", "evaluate"):
            log(f"train.py: round {task.round} {task.kind}: {metrics} in {time.monotonic() - start:.1f}s")


def centralized(args):
    """The baseline: the whole training set, cosine over the epochs."""
    xtr, ytr, xte, yte = load(args.data)
    model = new_model(args.seed)
    history = []
    start = time.monotonic()
    for e in range(1, args.epochs + 1):
        lr = round_lr(args.lr, e, args.epochs) if args.schedule == "cosine" else args.lr
        loss = fit(model, xtr, ytr, 1, args.batch, lr, args.momentum, args.seed * 1000 + e)
        acc, test_loss = evaluate(model, xte, yte)
        history.append({"epoch": e, "accuracy": acc, "loss": test_loss, "train_loss": loss,
                        "seconds": time.monotonic() - start})
        print(f"epoch {e}/{args.epochs}  accuracy {acc:.4f}  loss {test_loss:.4f}  {time.monotonic() - start:.0f}s", flush=True)
    print(f"final test accuracy {history[-1]['accuracy']:.4f}, loss {history[-1]['loss']:.4f} after {args.epochs} epochs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"epochs": history, "final": history[-1]}, f, indent=2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("CLOISTER_DATA", DEFAULT_DATA), help="Fashion-MNIST IDX directory")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 per node on a small machine)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="learning rate over the rounds (federated) or epochs (centralized)")
    p.add_argument("--centralized", action="store_true", help="train alone on the whole training set")
    p.add_argument("--epochs", type=int, default=10, help="--centralized: epochs")
    p.add_argument("--lr", type=float, default=0.05, help="--centralized: learning rate")
    p.add_argument("--batch", type=int, default=64, help="--centralized: minibatch size")
    p.add_argument("--momentum", type=float, default=0.9, help="--centralized: SGD momentum")
    p.add_argument("--seed", type=int, default=1, help="--centralized: seed")
    p.add_argument("--json", help="--centralized: write the accuracy per epoch to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.centralized:
        centralized(args)
    else:
        serve(args)


if __name__ == "__main__":
    main()
