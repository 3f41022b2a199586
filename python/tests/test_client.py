import json

import grpc
import numpy as np
import pytest

import cloister
from cloister import trainer_pb2 as pb
from cloister.client import CHUNK_SIZE


def tensor(name, shape, dtype=pb.DTYPE_FLOAT32):
    return pb.Tensor(name=name, shape=list(shape), dtype=dtype)


def data_of(*arrays):
    return b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)


def test_arrays_keep_floats_only():
    w = {"w": np.ones((2, 3), np.float32), "steps": np.array(7, np.int64), "b": np.zeros(4, np.float64)}
    got = cloister.arrays(w)
    assert list(got) == ["w", "b"]
    assert cloister.layout(w) == [("w", [2, 3], "float32"), ("b", [4], "float64")]
    with pytest.raises(ValueError, match="'h' has dtype float16"):
        cloister.arrays({"h": np.ones(2, np.float16)})


def test_loop(node):
    """describe, init, train (with a tensor of several chunks), evaluate."""
    big = (CHUNK_SIZE // 4) * 2 + 5  # float32 values: three chunks
    w = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.linspace(-1, 1, big).astype("<f4")
    script = [
        (pb.Task(id=1, kind=pb.KIND_DESCRIBE), b""),
        (pb.Task(id=2, kind=pb.KIND_INIT, seed=42), b""),
        (pb.Task(id=3, kind=pb.KIND_TRAIN, round=1, seed=9, timeout_ms=60000,
                 config=pb.Config(epochs=2, batch=32, learning_rate=0.1, momentum=0.9, prox_mu=0.01, rounds=5,
                                  strategy="fedavg:lr=1"),
                 tensors=[tensor("w", (2, 3)), tensor("b", (big,))]), data_of(w, b)),
        (pb.Task(id=4, kind=pb.KIND_EVALUATE, round=1, tensors=[tensor("w", (2, 3)), tensor("b", (big,))]), data_of(w, b)),
    ]
    sock, fake = node(script)
    model = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(big, np.float32)}
    seen = []
    for task in cloister.tasks(socket=sock, client="test"):
        seen.append((task.kind, task.round, task.seed))
        if task.kind == "init":
            model = {"w": np.full((2, 3), task.seed, np.float32), "b": np.zeros(big, np.float32)}
            task.reply(state_dict=model)
        elif task.kind == "train":
            assert task.config == cloister.TrainConfig(epochs=2, batch=32, lr=0.1, momentum=0.9, prox_mu=0.01,
                                                       rounds=5, strategy="fedavg:lr=1")
            assert task.timeout == 60
            np.testing.assert_array_equal(task.weights["w"], w)
            np.testing.assert_array_equal(task.weights["b"], b)
            # The weights are writable and the reply order follows the layout.
            task.weights["w"] += 1
            task.reply(state_dict={"b": task.weights["b"] * 2, "w": task.weights["w"]}, examples=100,
                       metrics={"loss": 0.5})
        elif task.kind == "evaluate":
            task.reply(examples=10, metrics={"accuracy": 0.75, "loss": 0.6})
        else:
            task.reply(state_dict=model)
    assert seen == [("describe", 0, 0), ("init", 0, 42), ("train", 1, 9), ("evaluate", 1, 0)]
    assert fake.hello.version == cloister.API_VERSION and fake.hello.client == "test"
    (d, d_data), (i, i_data), (t, t_data), (e, e_data) = fake.replies
    assert [x.name for x in d.reply.tensors] == ["w", "b"] and d.reply.data_bytes == 0 and d_data == b""
    assert list(d.reply.tensors[1].shape) == [big]
    assert i.reply.task == 2 and i_data == data_of(np.full((2, 3), 42, "<f4"), np.zeros(big, "<f4"))
    assert t.reply.task == 3 and t.reply.examples == 100 and dict(t.reply.metrics) == {"loss": 0.5}
    assert [x.name for x in t.reply.tensors] == ["w", "b"]
    assert t_data == data_of(w + 1, b * 2)
    assert 0 <= t.reply.compute_seconds < 60
    assert e.reply.examples == 10 and dict(e.reply.metrics) == {"accuracy": 0.75, "loss": 0.6} and e_data == b""


def test_fail_and_unanswered(node):
    script = [(pb.Task(id=1, kind=pb.KIND_DESCRIBE), b""), (pb.Task(id=2, kind=pb.KIND_INIT, seed=1), b"")]
    sock, fake = node(script)
    tasks = cloister.tasks(socket=sock)
    t1 = next(tasks)
    t1.fail("no GPU here")
    with pytest.raises(RuntimeError, match="answered already"):
        t1.reply(state_dict={})
    t2 = next(tasks)
    with pytest.raises(RuntimeError, match="task 2 \\(init\\) was not answered"):
        next(tasks)
    assert t2.kind == "init"
    assert fake.replies[0][0].failure.message == "no GPU here"


def test_node_error(node):
    sock, _ = node([], end=(grpc.StatusCode.ABORTED, "train task 3 (round 1): trainer: bad reply: tensor w: NaN at [0 1]"))
    with pytest.raises(cloister.NodeError, match="NaN at \\[0 1\\]"):
        for task in cloister.tasks(socket=sock):
            task.reply(state_dict={})


def test_node_closed(node):
    sock, fake = node([(pb.Task(id=1, kind=pb.KIND_DESCRIBE), b"")],
                      end=(grpc.StatusCode.UNAVAILABLE, "trainer: the node's trainer API is closed"))
    n = 0
    for task in cloister.tasks(socket=sock):
        task.reply(state_dict={"w": np.zeros(3, np.float32)})
        n += 1
    assert n == 1 and len(fake.replies) == 1


def test_no_socket(monkeypatch):
    monkeypatch.delenv("CLOISTER_TRAINER_SOCKET", raising=False)
    with pytest.raises(cloister.NodeError, match="CLOISTER_TRAINER_SOCKET"):
        next(cloister.tasks())


def test_site(tmp_path):
    assert cloister.site({}) == cloister.Site()
    share = tmp_path / "share.json"
    share.write_text(json.dumps({"node_index": 1, "nodes": 3, "train": [4, 8], "test": [1]}))
    env = {"CLOISTER_NODE": "node-2", "CLOISTER_NODE_INDEX": "1", "CLOISTER_NODES": "3", "CLOISTER_SEED": "7",
           "CLOISTER_PARTITION": "dirichlet:0.5", "CLOISTER_SHARE": str(share)}
    s = cloister.site(env)
    assert (s.node, s.index, s.nodes, s.seed, s.partition, s.train, s.test) == \
        ("node-2", 1, 3, 7, "dirichlet:0.5", [4, 8], [1])
    env["CLOISTER_NODE_INDEX"] = "2"
    with pytest.raises(ValueError, match="share of node 1 of 3"):
        cloister.site(env)
    with pytest.raises(ValueError, match="outside 0..2"):
        cloister.site({"CLOISTER_NODE_INDEX": "3", "CLOISTER_NODES": "3"})
