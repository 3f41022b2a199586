import numpy as np
import pytest
import torch

import cloister
from cloister import trainer_pb2 as pb


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.bn = torch.nn.BatchNorm1d(2)


def test_state_dict_layout_skips_counters():
    net = Net()
    names = [name for name, _, _ in cloister.layout(net.state_dict())]
    # BatchNorm's running statistics are federated; its step counter is not.
    assert names == ["fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]


def test_load_and_proximal(node):
    net = Net()
    own = cloister.arrays(net.state_dict())
    glob = {k: np.full(v.shape, 0.5, "<f4") for k, v in own.items()}
    tensors = [pb.Tensor(name=k, shape=list(v.shape), dtype=pb.DTYPE_FLOAT32) for k, v in glob.items()]
    data = b"".join(v.tobytes() for v in glob.values())
    sock, fake = node([(pb.Task(id=1, kind=pb.KIND_TRAIN, round=1, tensors=tensors, config=pb.Config(prox_mu=0.2)), data),
                       (pb.Task(id=2, kind=pb.KIND_TRAIN, round=2, tensors=tensors[1:], config=pb.Config(prox_mu=0.2)), data[24:])])
    tasks = cloister.tasks(socket=sock)
    task = next(tasks)
    task.load(net)
    assert torch.all(net.fc.weight == 0.5) and torch.all(net.bn.running_var == 0.5)
    assert float(task.proximal(net)) == 0  # at the global weights
    with torch.no_grad():
        net.fc.weight += 1  # 6 weights, each 1 away
    prox = task.proximal(net)
    assert prox.requires_grad and abs(float(prox) - 0.2 / 2 * 6) < 1e-6
    task.reply(state_dict=net.state_dict(), examples=5)
    task = next(tasks)
    with pytest.raises(ValueError, match="missing \\['fc.weight'\\]"):
        task.load(net)
    task.fail("layout")
    _, got = fake.replies[0]
    assert len(got) == len(data)
