#!/usr/bin/env python3
"""A tftpgw content service that breaks content.proto's rules on purpose.

examples/contract_test.go runs it (two instances at once where a transfer
must move from one to the other) behind the real tftpgw binary, and checks
that no TFTP client ever completes a wrong file, that the exact bytes of a
request reach a backend written in another language than Go, and that the
limits are the documented ones (issue 13, points 1, 2, 5 and the digest).

Each request chooses its behaviour with the first element of its path,
MODES/FILE, where MODES is a comma-separated list and FILE a file under
--root:

  nosize        the header has no size (so the edge sends no tsize)
  digest        the header has the file's SHA-256
  baddigest     the header has a SHA-256 that is not the file's
  die=N         a call at offset 0 sends N bytes of data, then the process
                exits (os._exit) as a crash would, mid-transfer
  resume=HOW    how a call at a non-zero offset (a resume) is answered:
                honour  the header echoes the offset, the data starts there
                omit    no offset in the header, the data starts at byte 0
                zero    the header says offset 0, the data starts at byte 0
                lie     the header echoes the offset, the data starts at 0
  chunk=N       the first data message holds N bytes (the rest 64 KiB each)
  echo          no FILE: the content is a description of the request, as
                lines "raw_path_bytes HEX", "path_bytes HEX" and
                "option NAMEHEX VALUEHEX" (one per option, in order)

Every request is checked against the proto: each text field (raw_path,
path, an option's name and value) must be its bytes twin with each byte
that is not part of valid UTF-8 replaced by U+FFFD, and the bytes fields
must be set. A request that breaks this fails with a TFTPError 0
"contract: ..." that the test shows.

The ETag of FILE is "v1:FILE", the same in every instance, so that the edge
resumes a broken transfer on the other one.

Usage: backend.py --root DIR [--listen 127.0.0.1:0]; it prints
"serving on HOST:PORT" on stderr when it accepts calls.
"""

import argparse
import concurrent.futures
import hashlib
import logging
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "python-backend"))

import grpc  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402

from tftpgw.v1 import content_pb2, content_pb2_grpc  # noqa: E402

CHUNK = 64 * 1024

log = logging.getLogger("contract-backend")


def utf8_text(b):
    """b as content.proto's text fields carry it: each byte that is not
    part of valid UTF-8 becomes U+FFFD (surrogateescape maps each such
    byte to a surrogate of its own, then each surrogate is replaced)."""
    s = b.decode("utf-8", "surrogateescape")
    return "".join("\ufffd" if "\udc80" <= c <= "\udcff" else c for c in s)


class Abort(Exception):
    def __init__(self, code, message, tftp_message):
        super().__init__(message)
        self.code, self.message, self.tftp_message = code, message, tftp_message


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def status_details(code, message, tftp_message):
    """google.rpc.Status{code, message, details: [TFTPError{0, tftp_message}]}."""
    packed = any_pb2.Any()
    packed.Pack(content_pb2.TFTPError(code=0, message=tftp_message))
    body = packed.SerializeToString()
    text = message.encode()
    return (b"\x08" + _varint(code.value[0]) + b"\x12" + _varint(len(text)) + text
            + b"\x1a" + _varint(len(body)) + body)


def check_request(req):
    """Checks the text and bytes fields against each other (content.proto)."""
    pairs = [("raw_path", req.raw_path, req.raw_path_bytes), ("path", req.path, req.path_bytes)]
    for i, o in enumerate(req.options):
        pairs.append((f"options[{i}].name", o.name, o.name_bytes))
        pairs.append((f"options[{i}].value", o.value, o.value_bytes))
    for name, text, raw in pairs:
        if not raw and text:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: bytes field not set",
                        f"contract: {name}_bytes not set")
        if text != utf8_text(raw):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: text {text!r} for bytes {raw!r}",
                        f"contract: {name} is not its bytes with U+FFFD")


def parse_modes(elem):
    modes = {}
    for item in elem.split(","):
        if not item:
            continue
        k, _, v = item.partition("=")
        modes[k] = v
    return modes


class Service(content_pb2_grpc.ContentServiceServicer):
    def __init__(self, root):
        self.root = root

    def Read(self, req, context):
        path = req.path_bytes or req.path.encode()
        first, _, rest = path.partition(b"/")
        log.info("read path=%r offset=%d if_match=%r options=%d", path, req.offset, req.if_match, len(req.options))
        try:
            check_request(req)
            modes = parse_modes(first.decode("ascii", "replace"))
            if "echo" in modes:
                data = self.describe(req)
                etag = "echo:" + hashlib.sha256(data).hexdigest()
            else:
                name = rest.decode("utf-8", "surrogateescape")
                if not name or ".." in name.split("/"):
                    raise Abort(grpc.StatusCode.NOT_FOUND, "no file", "file not found")
                try:
                    with open(os.path.join(self.root, name), "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    raise Abort(grpc.StatusCode.NOT_FOUND, f"no file {name!r}", "file not found") from None
                etag = "v1:" + name
        except Abort as e:
            log.info("abort %s: %s", e.code.name, e.message)
            context.abort_with_status(_Status(e.code, e.message, e.tftp_message))
            return
        yield from self.stream(req, context, modes, data, etag)

    @staticmethod
    def describe(req):
        lines = [f"raw_path_bytes {req.raw_path_bytes.hex()}", f"path_bytes {req.path_bytes.hex()}"]
        lines += [f"option {o.name_bytes.hex()} {o.value_bytes.hex()}" for o in req.options]
        return ("\n".join(lines) + "\n").encode()

    def stream(self, req, context, modes, data, etag):
        header = content_pb2.Header(etag=etag)
        if "nosize" not in modes:
            header.size = len(data)
        if "digest" in modes:
            header.sha256 = hashlib.sha256(data).digest()
        elif "baddigest" in modes:
            header.sha256 = hashlib.sha256(data + b"not this").digest()
        start = req.offset
        if req.offset > 0:
            how = modes.get("resume", "honour")
            if how == "honour":
                header.offset = req.offset
            elif how == "zero":
                header.offset = 0
                start = 0
            elif how == "lie":
                header.offset = req.offset
                start = 0
            elif how == "omit":
                start = 0
            else:
                raise ValueError(f"resume={how}")
        else:
            header.offset = 0
        yield content_pb2.ReadResponse(header=header)

        die = int(modes["die"]) if "die" in modes and req.offset == 0 else None
        first = int(modes.get("chunk", CHUNK))
        pos, n = start, first
        while pos < len(data) and context.is_active():
            end = min(pos + n, len(data))
            if die is not None:
                end = min(end, die)
            yield content_pb2.ReadResponse(data=data[pos:end])
            pos, n = end, CHUNK
            if die is not None and pos >= die:
                # Give the edge time to receive what was sent, then crash.
                log.info("dying after %d bytes", pos)
                time.sleep(0.3)
                os._exit(3)
        log.info("sent %d bytes from %d", pos - start, start)


class _Status(grpc.Status):
    def __init__(self, code, message, tftp_message):
        self.code = code
        self.details = message
        self.trailing_metadata = (("grpc-status-details-bin", status_details(code, message, tftp_message)),)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--listen", default="127.0.0.1:0")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    # A data message may be larger than gRPC's default limits on purpose.
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.so_reuseport", 0), ("grpc.max_send_message_length", -1)])
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
