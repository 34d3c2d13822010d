#!/usr/bin/env python3
"""A tftpgw content service that shows the trace context of each call.

examples/tracing_test.go runs it behind the real tftpgw binary with tracing
on (OTEL_TRACES_EXPORTER=console) and off, and checks that the trace id of
the traceparent a Read call carries in its gRPC metadata is the one in the
edge's log line for that session (issue 18's acceptance): a backend in any
language can continue the edge's trace with nothing but the metadata.

It serves the regular files under --root (the path as the edge normalised
it) and logs one line per Read on stderr:

  read path='FILE' traceparent=VALUE tracestate=VALUE

with "-" for a key the call does not carry.

Usage: backend.py --root DIR [--listen 127.0.0.1:0]; it prints
"serving on HOST:PORT" on stderr when it accepts calls.
"""

import argparse
import concurrent.futures
import logging
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "python-backend"))

import grpc  # noqa: E402

from tftpgw.v1 import content_pb2, content_pb2_grpc  # noqa: E402

CHUNK = 64 * 1024

log = logging.getLogger("tracing-backend")


class Service(content_pb2_grpc.ContentServiceServicer):
    def __init__(self, root):
        self.root = os.path.realpath(root)

    def Read(self, req, context):
        md = dict(context.invocation_metadata())
        log.info("read path=%r traceparent=%s tracestate=%s",
                 req.path, md.get("traceparent", "-"), md.get("tracestate", "-"))
        full = os.path.realpath(os.path.join(self.root, req.path))
        if not full.startswith(self.root + os.sep) or not os.path.isfile(full):
            context.abort(grpc.StatusCode.NOT_FOUND, "file not found")
        with open(full, "rb") as f:
            data = f.read()
        yield content_pb2.ReadResponse(header=content_pb2.Header(size=len(data), offset=0))
        for pos in range(0, len(data), CHUNK):
            if not context.is_active():
                return
            yield content_pb2.ReadResponse(data=data[pos:pos + CHUNK])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--listen", default="127.0.0.1:0")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.so_reuseport", 0)])
    content_pb2_grpc.add_ContentServiceServicer_to_server(Service(args.root), server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        raise SystemExit(f"--listen {args.listen}: cannot listen")
    server.start()
    log.info("serving on %s:%d", args.listen.rsplit(":", 1)[0], port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    server.stop(2).wait()


if __name__ == "__main__":
    main()
