"""What the node tells the trainer it starts, through the environment."""

import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """This site as the node describes it to its trainer.

    node        the node's name (CLOISTER_NODE), "" when run alone
    index       its position among the members, from 0 (CLOISTER_NODE_INDEX)
    nodes       the number of members (CLOISTER_NODES), 1 when run alone
    seed        the node's seed (CLOISTER_SEED)
    partition   the demo's partition spec, "iid" or "dirichlet:0.5" (CLOISTER_PARTITION), "" if none
    train, test the indices of this site's training and test examples in the
                dataset's files, dealt by the node with the Go partitioning
                (CLOISTER_SHARE), or None
    """

    node: str = ""
    index: int = 0
    nodes: int = 1
    seed: int = 1
    partition: str = ""
    train: list = None
    test: list = None


def site(environ=None):
    """The Site from the environment (os.environ by default)."""
    env = os.environ if environ is None else environ
    s = Site(node=env.get("CLOISTER_NODE", ""), index=int(env.get("CLOISTER_NODE_INDEX", "0")),
             nodes=int(env.get("CLOISTER_NODES", "1")), seed=int(env.get("CLOISTER_SEED", "1")),
             partition=env.get("CLOISTER_PARTITION", ""))
    if not 0 <= s.index < s.nodes:
        raise ValueError(f"CLOISTER_NODE_INDEX {s.index} outside 0..{s.nodes - 1}")
    path = env.get("CLOISTER_SHARE")
    if path:
        with open(path) as f:
            share = json.load(f)
        if share.get("node_index") != s.index or share.get("nodes") != s.nodes:
            raise ValueError(f"{path} is the share of node {share.get('node_index')} of {share.get('nodes')}, "
                             f"not of node {s.index} of {s.nodes}")
        s = Site(node=s.node, index=s.index, nodes=s.nodes, seed=s.seed, partition=s.partition,
                 train=share["train"], test=share["test"])
    return s
