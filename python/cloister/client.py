"""The trainer's side of Cloister's trainer API: a stream of tasks from the node.

The node serves the API on a Unix socket (CLOISTER_TRAINER_SOCKET). A
trainer attaches, says Hello and answers each task in order. See
docs/BYOM.md for the user's guide and trainer/internal/pb/trainer.proto
for the wire format.
"""

import os
import queue
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc
import numpy as np

from . import trainer_pb2 as pb
from . import trainer_pb2_grpc as pb_grpc

API_VERSION = 1
CHUNK_SIZE = 4 << 20
MAX_MESSAGE = 16 << 20

_DTYPES = {pb.DTYPE_FLOAT32: np.dtype("<f4"), pb.DTYPE_FLOAT64: np.dtype("<f8")}
_KINDS = {pb.KIND_DESCRIBE: "describe", pb.KIND_INIT: "init", pb.KIND_TRAIN: "train", pb.KIND_EVALUATE: "evaluate"}


class NodeError(Exception):
    """The node ended the stream with an error (it refused this trainer's
    layout or a reply, or the deadline of a task passed)."""


@dataclass(frozen=True)
class TrainConfig:
    """The training schedule of the federation's signed manifest."""

    epochs: int = 0
    batch: int = 0
    lr: float = 0.0
    momentum: float = 0.0
    prox_mu: float = 0.0  # FedProx: add prox_mu/2 * ||w - w_global||^2 to the loss (Task.proximal)
    rounds: int = 0  # the federation's rounds
    strategy: str = ""  # the server optimizer (the node applies it)


def _dtype_code(array, name):
    dt = array.dtype
    if dt.kind != "f" or dt.itemsize not in (4, 8):
        raise ValueError(
            f"tensor {name!r} has dtype {dt}; the trainer API carries float32 and float64 "
            "(keep master weights in float32; integer buffers are not federated)")
    return pb.DTYPE_FLOAT32 if dt.itemsize == 4 else pb.DTYPE_FLOAT64


def _to_numpy(value):
    """A numpy array of value (a numpy array or a torch tensor), on the CPU."""
    if isinstance(value, np.ndarray):
        return value
    detach = getattr(value, "detach", None)
    if detach is not None:  # a torch tensor
        return detach().cpu().numpy()
    return np.asarray(value)


def arrays(weights):
    """The federated tensors of weights (a state_dict or a mapping of name
    to array), in order, as numpy arrays: the floating-point ones. Integer
    buffers (BatchNorm's num_batches_tracked) stay local."""
    out = OrderedDict()
    for name, value in weights.items():
        a = _to_numpy(value)
        if a.dtype.kind in "biu":
            continue
        _dtype_code(a, name)
        out[name] = a
    return out


def layout(weights):
    """The layout of weights: a list of (name, shape, dtype) in order, as
    `cloister trainer describe` writes it."""
    return [(name, list(a.shape), str(a.dtype)) for name, a in arrays(weights).items()]


class Task:
    """One task from the node. Answer it with reply() (or fail()) before
    asking for the next one.

    kind     "describe", "init", "train" or "evaluate"
    round    the federation's round (0 for describe and init)
    seed     the seed of this task's randomness (init: of the initial weights)
    config   the TrainConfig (train)
    weights  the global weights, an OrderedDict of name to numpy array (train, evaluate)
    timeout  how long the node waits for the reply, in seconds
    """

    def __init__(self, conn, msg, weights):
        self._conn = conn
        self.id = msg.id
        self.kind = _KINDS.get(msg.kind, "unknown")
        self.round = msg.round
        self.seed = msg.seed
        c = msg.config
        self.config = TrainConfig(epochs=c.epochs, batch=c.batch, lr=c.learning_rate, momentum=c.momentum,
                                  prox_mu=c.prox_mu, rounds=c.rounds, strategy=c.strategy)
        self.weights = weights
        self.timeout = msg.timeout_ms / 1000.0
        self.answered = False
        self._started = time.monotonic()
        self._torch = None

    def __repr__(self):
        return f"<cloister.Task {self.id} {self.kind} round={self.round}>"

    @property
    def train(self):
        return self.kind == "train"

    def state_dict(self):
        """The global weights as torch tensors (sharing memory with
        self.weights)."""
        if self._torch is None:
            import torch
            self._torch = OrderedDict((k, torch.from_numpy(v)) for k, v in self.weights.items())
        return self._torch

    def load(self, model):
        """Load the global weights into a torch module (train and evaluate;
        nothing to load for describe and init). Every federated tensor of
        the model must be among them, and no other."""
        if not self.weights:
            return
        own = arrays(model.state_dict())
        missing = [k for k in own if k not in self.weights]
        extra = [k for k in self.weights if k not in own]
        if missing or extra:
            raise ValueError(f"the global weights do not fit the model: missing {missing}, unknown {extra}")
        model.load_state_dict(self.state_dict(), strict=False)

    def proximal(self, model):
        """FedProx's term prox_mu/2 * ||w - w_global||^2 for a torch module:
        add it to the loss. 0 when prox_mu is 0."""
        mu = self.config.prox_mu
        if mu == 0 or not self.weights:
            return 0.0
        g = self.state_dict()
        total = 0.0
        for name, p in model.named_parameters():
            if name in g:
                total = total + ((p - g[name].to(p.dtype)) ** 2).sum()
        return mu / 2 * total

    def reply(self, state_dict=None, examples=0, metrics=None, delta=False):
        """Answer the task.

        describe  state_dict: the model's (its layout is sent, not its values)
        init      state_dict: the initial weights, made from self.seed
        train     state_dict: the trained weights (or delta=True and w - w_global),
                  examples: the local training examples, metrics: e.g. {"loss": ...}
        evaluate  examples: the test examples, metrics: {"accuracy": ..., "loss": ...}
        """
        if self.answered:
            raise RuntimeError(f"task {self.id} ({self.kind}) is answered already")
        compute = time.monotonic() - self._started
        tensors, data = [], []
        if self.kind in ("describe", "init", "train"):
            if state_dict is None:
                raise ValueError(f"a {self.kind} reply needs the model's state_dict")
            items = arrays(state_dict)
            order = self._conn.layout_order(items)
            for name in order:
                a = items[name]
                code = _dtype_code(a, name)
                tensors.append(pb.Tensor(name=name, shape=list(a.shape), dtype=code))
                if self.kind != "describe":
                    data.append(np.ascontiguousarray(a, dtype=_DTYPES[code]).tobytes())
            if self.kind == "describe":
                self._conn.described(order)
        body = b"".join(data)
        m = {str(k): float(v) for k, v in (metrics or {}).items()}
        msg = pb.Reply(task=self.id, delta=bool(delta), examples=int(examples), metrics=m, tensors=tensors,
                       data_bytes=len(body), compute_seconds=compute)
        self.answered = True
        self._conn.send(pb.FromTrainer(reply=msg), body)

    def fail(self, message):
        """Tell the node this task cannot be done (it keeps the stream; the
        node sends no update this round)."""
        if self.answered:
            raise RuntimeError(f"task {self.id} ({self.kind}) is answered already")
        self.answered = True
        self._conn.send(pb.FromTrainer(failure=pb.Failure(task=self.id, message=str(message))), b"")


class _Conn:
    """The stream: a queue of outgoing messages and the node's messages."""

    def __init__(self, socket, client):
        self.channel = grpc.insecure_channel(
            "unix:" + socket,
            options=[("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)])
        self.out = queue.Queue()
        self.order = None  # the tensor names of the layout this trainer described
        self.out.put(pb.FromTrainer(hello=pb.Hello(version=API_VERSION, client=client)))
        self.responses = pb_grpc.NodeStub(self.channel).Attach(self._requests())

    def _requests(self):
        while True:
            m = self.out.get()
            if m is None:
                return
            yield m

    def send(self, msg, data):
        self.out.put(msg)
        view = memoryview(data)
        for off in range(0, len(view), CHUNK_SIZE):
            self.out.put(pb.FromTrainer(chunk=pb.Chunk(data=bytes(view[off:off + CHUNK_SIZE]))))

    def described(self, order):
        self.order = list(order)

    def layout_order(self, items):
        """The described layout's order if items has exactly its tensors,
        else items' own order (the node then says what differs)."""
        if self.order is not None and sorted(self.order) == sorted(items):
            return self.order
        return list(items)

    def receive(self):
        """The next task with its weights, or None when the node closed the
        API."""
        try:
            m = next(self.responses)
        except StopIteration:
            return None
        if not m.HasField("task"):
            raise NodeError(f"expected a task, got {m.WhichOneof('body')}")
        t = m.task
        buf = bytearray(t.data_bytes)
        got = 0
        while got < t.data_bytes:
            c = next(self.responses)
            if not c.HasField("chunk") or got + len(c.chunk.data) > t.data_bytes:
                raise NodeError(f"bad data for task {t.id}")
            buf[got:got + len(c.chunk.data)] = c.chunk.data
            got += len(c.chunk.data)
        weights = OrderedDict()
        off = 0
        for ts in t.tensors:
            dt = _DTYPES.get(ts.dtype)
            if dt is None:
                raise NodeError(f"tensor {ts.name!r}: unknown dtype {ts.dtype}")
            shape = tuple(int(d) for d in ts.shape)
            n = int(np.prod(shape, dtype=np.int64))
            weights[ts.name] = np.frombuffer(buf, dtype=dt, count=n, offset=off).reshape(shape)
            off += n * dt.itemsize
        if off != len(buf):
            raise NodeError(f"task {t.id}: {len(buf)} bytes of data for tensors of {off}")
        return Task(self, t, weights)

    def close(self):
        self.out.put(None)
        self.channel.close()


def _client_name():
    name = f"cloister-python {API_VERSION}"
    torch = sys.modules.get("torch")  # named if the trainer uses it; never imported here
    if torch is not None:
        return name + f" (torch {torch.__version__})"
    return name + f" (numpy {np.__version__})"


def tasks(socket=None, client=None):
    """Attach to the node and yield its tasks, one at a time, until the node
    closes the API (then the loop ends). Answer each task with reply() or
    fail() before the next one.

    socket defaults to $CLOISTER_TRAINER_SOCKET, which `cloister node
    --trainer` sets for the trainer it starts. The loop raises NodeError if
    the node ends the stream with an error (a refused layout or reply, a
    deadline passed): a trainer the node started is then started again.
    """
    socket = socket or os.environ.get("CLOISTER_TRAINER_SOCKET")
    if not socket:
        raise NodeError("no socket: set CLOISTER_TRAINER_SOCKET (cloister node --trainer-socket PATH) or pass socket=")
    conn = _Conn(socket, client or _client_name())
    try:
        while True:
            try:
                task = conn.receive()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and "trainer API is closed" in (e.details() or ""):
                    return  # the node is done
                raise NodeError(f"{e.code().name}: {e.details()}") from None
            if task is None:
                return
            yield task
            if not task.answered:
                raise RuntimeError(f"task {task.id} ({task.kind}) was not answered: call task.reply(...) or task.fail(...)")
    finally:
        conn.close()
