"""A tiny trainer for the Go tests of bad trainers: numpy only.

Its model is w (2×3 float32), b (4, float64) and s (a float32 scalar). Training adds 1 to every
weight and reports 100 examples. CLOISTER_TEST_FAULTS maps rounds to
faults, as in "2:crash,3:hang,4:nan": crash (exit 3 after a message), hang,
nan (tensor b), inf (tensor w), shape (tensor b), examples (99), failure
(task.fail), layout (describe another layout).
"""

import os
import sys
import time

import numpy as np

import cloister

faults = dict(f.split(":") for f in os.environ.get("CLOISTER_TEST_FAULTS", "").split(",") if f)
faults = {int(r): what for r, what in faults.items()}


def model(fill=0.0):
    return {"w": np.full((2, 3), fill, np.float32), "b": np.full(4, fill, np.float64), "s": np.full((), fill, np.float32)}


for task in cloister.tasks():
    fault = faults.get(task.round) if task.kind == "train" else None
    if task.kind == "describe":
        m = model()
        if faults.get(0) == "layout":
            m["b"] = np.zeros(5, np.float64)
        task.reply(state_dict=m)
    elif task.kind == "init":
        task.reply(state_dict=model(task.seed / 10))
    elif task.kind == "evaluate":
        task.reply(examples=20, metrics={"accuracy": 0.5, "loss": 1.0})
    elif fault == "crash":
        print(f"trainer.py: boom in round {task.round}", file=sys.stderr, flush=True)
        sys.exit(3)
    elif fault == "hang":
        time.sleep(3600)
    elif fault == "failure":
        task.fail(f"no data for round {task.round}")
    else:
        m = {k: (v + 1).astype(v.dtype) for k, v in task.weights.items()}
        n = 100
        if fault == "nan":
            m["b"][2] = np.nan
        elif fault == "inf":
            m["w"][1, 0] = np.inf
        elif fault == "shape":
            m["b"] = np.zeros((2, 2))
        elif fault == "examples":
            n = 99
        task.reply(state_dict=m, examples=n, metrics={"loss": 0.25})
