"""Unit tests of examples/pytorch-fmnist/train.py's data handling."""

import gzip
import importlib.util
import os

import numpy as np
import pytest

import cloister

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("fmnist_train", os.path.join(HERE, "..", "..", "examples", "pytorch-fmnist", "train.py"))
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)


def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx(tmp_path, compress):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    path = str(tmp_path / ("x.idx" + (".gz" if compress else "")))
    write_idx(path, a, compress)
    np.testing.assert_array_equal(train.read_idx(path), a)
    with open(path, "rb") as f:
        raw = f.read()
    bad = str(tmp_path / "bad.idx")
    with open(bad, "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + raw[4:])
    with pytest.raises(ValueError, match="not an IDX file"):
        train.read_idx(bad)


def test_load_and_share(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [("train", 50), ("t10k", 20)]:
        write_idx(str(tmp_path / f"{name}-images-idx3-ubyte.gz"), rng.integers(0, 256, (n, 28, 28)), True)
        write_idx(str(tmp_path / f"{name}-labels-idx1-ubyte"), np.arange(n) % 10, False)
    data = train.load(str(tmp_path))
    xtr, ytr, xte, yte = data
    assert xtr.shape == (50, 1, 28, 28) and xtr.dtype == np.float32 and yte.shape == (20,)
    # The node's indices win.
    s = cloister.Site(node="node-2", index=1, nodes=2, train=[3, 7, 9], test=[0, 5])
    sx, sy, tx, ty = train.share(data, s)
    np.testing.assert_array_equal(sy, ytr[[3, 7, 9]])
    np.testing.assert_array_equal(tx, xte[[0, 5]])
    # Without them, this file's own split; alone, everything.
    parts = [train.share(data, cloister.Site(index=i, nodes=3, seed=4, partition="dirichlet:0.5"))[1] for i in range(3)]
    assert sum(len(p) for p in parts) == 50
    assert train.share(data, cloister.Site())[1] is ytr


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.1", "dirichlet:100"])
def test_numpy_split(spec):
    labels = np.random.default_rng(1).integers(0, 10, 1000)
    a = train.numpy_split(labels, 7, spec, 3)
    b = train.numpy_split(labels, 7, spec, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    every = np.concatenate(a)
    assert len(every) == 1000 and len(np.unique(every)) == 1000
    assert all(len(p) >= 1 for p in a)
    with pytest.raises(ValueError, match="shards:2"):
        train.numpy_split(labels, 2, "shards:2", 1)


def test_model_layout():
    model = train.new_model(1)
    got = cloister.layout(model.state_dict())
    assert got == [("conv1.weight", [16, 1, 5, 5], "float32"), ("conv1.bias", [16], "float32"),
                   ("conv2.weight", [32, 16, 5, 5], "float32"), ("conv2.bias", [32], "float32"),
                   ("fc1.weight", [128, 1568], "float32"), ("fc1.bias", [128], "float32"),
                   ("fc2.weight", [10, 128], "float32"), ("fc2.bias", [10], "float32")]
    # The same seed, the same initial weights.
    a, b = train.new_model(5).state_dict(), train.new_model(5).state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_round_lr():
    assert train.round_lr(0.1, 1, 20) == pytest.approx(0.1)
    assert train.round_lr(0.1, 11, 20) == pytest.approx(0.05)
    assert train.round_lr(0.1, 20, 20) < 0.001
    assert train.round_lr(0.1, 3, 1) == 0.1
