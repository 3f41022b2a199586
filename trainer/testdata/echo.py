"""An echo trainer for the throughput benchmark: its model is one float32
tensor of CLOISTER_BENCH_PARAMS values, and training returns the weights
it received."""

import os

import numpy as np

import cloister

n = int(os.environ["CLOISTER_BENCH_PARAMS"])
for task in cloister.tasks():
    if task.kind in ("describe", "init"):
        task.reply(state_dict={"w": np.zeros((n // 1000, 1000), np.float32)})
    elif task.kind == "train":
        task.reply(state_dict=task.weights, examples=1)
    else:
        task.reply(examples=1, metrics={"accuracy": 0, "loss": 0})
