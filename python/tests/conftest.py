import os
import sys
from concurrent import futures

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cloister import trainer_pb2 as pb  # noqa: E402
from cloister import trainer_pb2_grpc as pb_grpc  # noqa: E402
from cloister.client import CHUNK_SIZE, MAX_MESSAGE  # noqa: E402


class FakeNode(pb_grpc.NodeServicer):
    """A node that sends a script of (Task, data) and records the replies."""

    def __init__(self, script, end=None):
        self.script = script
        self.end = end  # (grpc.StatusCode, details) to end the stream with
        self.hello = None
        self.replies = []

    def Attach(self, request_iterator, context):
        self.hello = next(request_iterator).hello
        for task, data in self.script:
            task.data_bytes = len(data)
            yield pb.ToTrainer(task=task)
            for off in range(0, len(data), CHUNK_SIZE):
                yield pb.ToTrainer(chunk=pb.Chunk(data=data[off:off + CHUNK_SIZE]))
            m = next(request_iterator)
            got = b""
            if m.HasField("reply"):
                while len(got) < m.reply.data_bytes:
                    got += next(request_iterator).chunk.data
            self.replies.append((m, got))
        if self.end:
            context.abort(*self.end)


@pytest.fixture
def node(tmp_path):
    """Start a FakeNode: node(script, end=None) returns (socket, fake)."""
    servers = []

    def start(script, end=None):
        fake = FakeNode(script, end)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                             options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                      ("grpc.max_receive_message_length", MAX_MESSAGE)])
        pb_grpc.add_NodeServicer_to_server(fake, server)
        sock = str(tmp_path / "trainer.sock")
        server.add_insecure_port("unix:" + sock)
        server.start()
        servers.append(server)
        return sock, fake

    yield start
    for s in servers:
        s.stop(0)
