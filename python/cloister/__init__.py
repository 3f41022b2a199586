"""Cloister's Python client: bring your own model to a federation.

A trainer receives tasks from its node, trains, and sends the weights back.
The node clips, noises, weighs, encrypts and audits them; the trainer only
trains.

    import cloister

    for task in cloister.tasks():
        if task.kind == "init":
            model = make_model(seed=task.seed)
        task.load(model)                      # the global weights (train, evaluate)
        n, metrics = 0, {}
        if task.kind == "train":
            n, metrics = fit(model, task.config, task)
        elif task.kind == "evaluate":
            n, metrics = test(model)
        task.reply(state_dict=model.state_dict(), examples=n, metrics=metrics)

See docs/BYOM.md.
"""

from .client import API_VERSION, NodeError, Task, TrainConfig, arrays, layout, tasks
from .site import Site, site

__all__ = ["API_VERSION", "NodeError", "Site", "Task", "TrainConfig", "arrays", "layout", "site", "tasks"]
