#!/usr/bin/env python3
"""PyTorch baseline for model.BenchmarkMLPEpoch.

Trains the same MLP as the Go benchmark (784-128-10, ReLU, softmax
cross-entropy, SGD lr 0.05 momentum 0.9, batch 64, reshuffled each epoch)
for one epoch on the same number of synthetic examples (features uniform in
[0, 1), labels uniform in [0, 10)), and prints the throughput in the format
of `go test -bench`, so the two can be read side by side.

Usage: python3 bench/pytorch_mlp.py [--threads 1,2] [--dtype float32,float64]
       [--examples 60000] [--epochs 2]

On Debian, python3-torch installs into the system interpreter
(/usr/bin/python3), not into a pyenv or virtualenv one.
"""

import argparse
import os
import subprocess
import sys
import time


def blas_library() -> str:
    """Returns the BLAS shared library this process has loaded."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "blas" in os.path.basename(path):
                return os.path.realpath(path)
    return "(no separate BLAS library)"


def run(threads: int, dtype_name: str, examples: int, epochs: int) -> None:
    import torch

    dtype = getattr(torch, dtype_name)
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x = torch.rand(examples, 784, dtype=dtype)
    y = torch.randint(0, 10, (examples,))
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    ).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = 64
    name = f"PyTorchMLPEpoch/threads={threads}/{dtype_name}"
    # The first epoch warms up allocators and kernels; the rest are timed
    # one by one, like b.N iterations.
    for epoch in range(epochs + 1):
        start, cpu = time.perf_counter(), time.process_time()
        total = 0.0
        perm = torch.randperm(examples)
        for i in range(0, examples, batch):
            idx = perm[i : i + batch]
            xb, yb = x[idx], y[idx]  # gather, as SGD.Train does
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if epoch == 0:
            continue
        print(
            f"{name}\t1\t{elapsed * 1e9:.0f} ns/op\t{cpu * 1e9:.0f} cpu-ns/op"
            f"\t{examples / elapsed:.0f} samples/s\t(loss {total / examples:.4f})",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--dtype", default="float32,float64", help="float32, float64 or both")
    p.add_argument("--examples", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        run(int(a.threads), a.dtype, a.examples, a.epochs)
        return
    # Each configuration runs in its own process, with every thread pool
    # (OpenMP, OpenBLAS, MKL) sized before the libraries load: otherwise
    # OpenBLAS keeps one thread per core whatever torch.set_num_threads says,
    # and its spinning threads fight torch's on a small machine.
    import torch

    print(f"torch {torch.__version__}, BLAS {blas_library()}", flush=True)
    for dt in a.dtype.split(","):
        for t in a.threads.split(","):
            env = dict(os.environ)
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = t
            cmd = [sys.executable, __file__, "--child", "--threads", t, "--dtype", dt,
                   "--examples", str(a.examples), "--epochs", str(a.epochs)]
            subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
