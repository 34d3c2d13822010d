#!/usr/bin/env python3
"""Example tftpgw content service in Python: serves the files of a directory.

It implements tftpgw.v1.ContentService (../../proto/tftpgw/v1/content.proto)
the way the Go reference backend (cmd/tftp-backend -root) does:

  * Read sends one Header (size, etag, max_age) and then the file in
    64 KiB data chunks, from the request's offset, and ends with OK.
  * Errors are gRPC status codes with a tftpgw.v1.TFTPError in the status
    details, which chooses the TFTP ERROR the client gets: NOT_FOUND with
    1 "file not found", PERMISSION_DENIED with 2 "access violation" (escapes
    out of the root, unreadable files) or 2 "not a regular file"
    (directories, FIFOs, devices), FAILED_PRECONDITION with 0 "file changed"
    when if_match no longer matches, INTERNAL with 0 "internal error".
  * The etag is "<size>-<mtime ns>-<ctime ns>-<inode>" in hex, as in the Go backend,
    so a file that changes gets a new etag and a resumed transfer (offset
    and if_match) never splices two versions.
  * A cancelled call (the TFTP session ended) stops reading at once.

Usage:

    /usr/bin/python3 server.py --root /srv/tftp [--listen 127.0.0.1:50051]
    tftpgw -backend 127.0.0.1:50051

Needs grpcio and protobuf (Debian: apt-get install python3-grpcio
python3-protobuf). The code generated from the proto is in tftpgw/v1/;
regenerate it with `make generate`.
"""

import argparse
import asyncio
import logging
import os
import re
import signal
import stat
import sys
import time

import grpc
from google.protobuf import any_pb2

from tftpgw.v1 import content_pb2, content_pb2_grpc

# The size of the data chunks. The edge re-blocks them to the TFTP block
# size; the proto advises 32 to 256 KiB.
CHUNK_SIZE = 64 * 1024

# Offsets above this are refused, as the Go SDK does.
MAX_OFFSET = 1 << 62

# How long running calls may finish after SIGTERM or SIGINT.
STOP_GRACE = 10.0

log = logging.getLogger("tftp-backend")


# --- errors ---------------------------------------------------------------


class ReadError(Exception):
    """A failed Read.

    code is the gRPC status code; message is the status message, which the
    edge only logs. tftp_code and tftp_message, if tftp_code is not None,
    are attached as a TFTPError: the edge sends exactly them to the client,
    so tftp_message must not reveal anything about the server.
    """

    def __init__(self, code, message, tftp_code=None, tftp_message=""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.tftp_code = tftp_code
        self.tftp_message = tftp_message

    def trailing_metadata(self):
        if self.tftp_code is None:
            return ()
        detail = content_pb2.TFTPError(code=self.tftp_code, message=self.tftp_message)
        return (("grpc-status-details-bin", rpc_status(self.code, self.message, detail)),)


def not_found(message):
    return ReadError(grpc.StatusCode.NOT_FOUND, message, 1, "file not found")


def access_violation(message, tftp_message="access violation"):
    return ReadError(grpc.StatusCode.PERMISSION_DENIED, message, 2, tftp_message)


def internal_error(message):
    return ReadError(grpc.StatusCode.INTERNAL, message, 0, "internal error")


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def rpc_status(code, message, detail):
    """Serialises google.rpc.Status{code, message, details: [Any(detail)]}.

    This is the value of the "grpc-status-details-bin" trailer, where gRPC
    carries a status's details. With the grpcio-status package it is
    rpc_status.to_status(status_pb2.Status(...)); it is spelled out here
    (three fields: 1 code, 2 message, 3 details) so that the example needs
    nothing beyond grpcio and protobuf.
    """
    packed = any_pb2.Any()
    packed.Pack(detail)  # type_url type.googleapis.com/tftpgw.v1.TFTPError
    body = packed.SerializeToString()
    text = message.encode()
    return (
        b"\x08" + _varint(code.value[0])
        + b"\x12" + _varint(len(text)) + text
        + b"\x1a" + _varint(len(body)) + body
    )


# --- files ----------------------------------------------------------------


class Root:
    """The directory served. open() never returns a file outside it."""

    def __init__(self, path):
        self.path = os.path.realpath(path)
        if not os.path.isdir(self.path):
            raise SystemExit(f"--root {path}: not a directory")

    def _inside(self, real):
        return os.path.commonpath([self.path, real]) == self.path

    def open(self, rel):
        """Opens the regular file at rel, a path relative to the root.

        Returns the file descriptor and its stat. Symbolic links are
        followed as long as they stay under the root.
        """
        if not rel:
            raise access_violation("empty path")
        try:
            # realpath resolves every symbolic link and "..", so the result
            # can be checked against the root. O_NOFOLLOW refuses a link
            # put in place after that; O_NONBLOCK keeps a FIFO from
            # blocking the open (it is refused below).
            real = os.path.realpath(os.path.join(self.path, rel))
            if not self._inside(real):
                raise access_violation(f"{quote(rel)} escapes the root")
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError as e:
            raise not_found(f"open {quote(rel)}: {e.strerror}") from None
        except OSError as e:  # permissions, symbolic link loops, ENOTDIR...
            raise access_violation(f"open {quote(rel)}: {e.strerror}") from None
        except ValueError:  # a NUL byte in the path
            raise access_violation(f"open {quote(rel)}: invalid path") from None
        try:
            # realpath and open are two steps: a directory on the way may
            # have been replaced by a symbolic link in between. On Linux,
            # /proc tells which file was really opened.
            try:
                opened = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                opened = None
            if opened is not None and not self._inside(opened):
                raise access_violation(f"{quote(rel)} escapes the root")
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise access_violation(f"{quote(rel)} is not a regular file", "not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd, st


def etag_of(st):
    """The Go backend's etag: size, modification time (ns), change time (ns)
    and inode number, in hex. The change time cannot be set, and a file
    renamed into place is another inode, so copies that keep the mtime
    (cp -p, rsync -a) and same-length edits still change it."""
    return f"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}-{st.st_ino:x}"


def check_request(request):
    """Refuses what the edge never sends (it normalises the path)."""
    path = request.path
    if path.startswith("/") or path.startswith("\\"):
        raise ReadError(grpc.StatusCode.INVALID_ARGUMENT, "path is absolute")
    if ".." in re.split(r"[/\\]", path):
        raise ReadError(grpc.StatusCode.INVALID_ARGUMENT, 'path has a ".." element')
    if request.offset > MAX_OFFSET:
        raise ReadError(grpc.StatusCode.INVALID_ARGUMENT, "offset out of range")


# --- the service ----------------------------------------------------------


class CallEnded(Exception):
    """The call ended while a response was being sent."""


async def send(context, response):
    """Sends one response; raises CallEnded if the call has ended.

    When the edge cancels the call (or its connection breaks), grpcio either
    cancels the handler's task or fails the pending write with an internal
    error, depending on timing. Either way there is nobody left to send to.
    """
    try:
        await context.write(response)
    except Exception as e:
        raise CallEnded() from e


class ContentService(content_pb2_grpc.ContentServiceServicer):
    def __init__(self, root, max_age):
        self.root = root
        self.max_age = max_age

    async def Read(self, request, context):
        start = time.monotonic()
        outcome, detail, sent, fd = "OK", "", 0, None
        try:
            check_request(request)
            fd, st = self.root.open(request.path)
            etag = etag_of(st)
            if request.if_match and request.if_match != etag:
                raise ReadError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"etag mismatch: want {quote(request.if_match)}, have {quote(etag)}",
                    0, "file changed")

            # The header comes first and describes the whole file, even
            # when the request has an offset. The edge must have it within
            # its header budget (2 s by default).
            header = content_pb2.Header(size=st.st_size, etag=etag)
            if self.max_age > 0:
                header.max_age.FromNanoseconds(int(self.max_age * 1e9))
            await send(context, content_pb2.ReadResponse(header=header))

            # Then the data from the offset to the end. send() waits while
            # gRPC flow control holds the stream (the TFTP client is slower
            # than the disk), so at most a window is read ahead; when the
            # edge cancels the call, it raises and nothing more is read.
            #
            # The reads are done on the event loop: a 64 KiB read from a
            # local disk or the page cache takes microseconds. Await slower
            # sources (HTTP, object stores) with an asyncio client, or in
            # asyncio.to_thread.
            pos = request.offset
            while True:
                try:
                    data = os.pread(fd, CHUNK_SIZE, pos)
                except OSError as e:
                    raise internal_error(f"read {quote(request.path)}: {e.strerror}") from None
                if not data:
                    break
                await send(context, content_pb2.ReadResponse(data=data))
                pos += len(data)
                sent += len(data)
        except ReadError as e:
            outcome, detail = e.code.name, e.message
            await context.abort(e.code, e.message, e.trailing_metadata())
        except CallEnded:
            outcome = "CANCELLED"  # by the edge: the TFTP session ended
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        except Exception as e:  # a bug: the edge sends ERROR 0 "backend error"
            outcome, detail = "UNKNOWN", repr(e)
            raise
        finally:
            if fd is not None:
                os.close(fd)
            client = request.client
            log.info(
                "read session=%s edge=%s client=%s path=%s offset=%d status=%s bytes=%d ms=%.1f%s",
                request.session_id or "-", request.edge_id or "-",
                f"{client.ip}:{client.port}" if client.ip else "-",
                quote(request.path), request.offset, outcome, sent,
                (time.monotonic() - start) * 1000,
                f" error={quote(detail)}" if detail else "")


def quote(s):
    """Quotes s for a log line, the same way the Node example does."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- main -----------------------------------------------------------------


async def serve(args):
    root = Root(args.root)
    # so_reuseport off: a second server on a busy port fails instead of
    # silently sharing it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    content_pb2_grpc.add_ContentServiceServicer_to_server(ContentService(root, args.max_age), server)
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        raise SystemExit(f"--listen {args.listen}: {e}")
    if port == 0:
        raise SystemExit(f"--listen {args.listen}: cannot listen")
    await server.start()
    host = args.listen.rsplit(":", 1)[0]
    log.info("tftp-backend (python) serving on %s:%d root=%s", host, port, root.path)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: running calls get %.0f s", STOP_GRACE)
    await server.stop(STOP_GRACE)


def main():
    p = argparse.ArgumentParser(description="Example tftpgw content service: serves the files under a directory.")
    p.add_argument("--root", required=True, help="directory to serve")
    p.add_argument("--listen", default="127.0.0.1:50051", help="host:port to serve gRPC on (default %(default)s; port 0 picks a free one)")
    p.add_argument("--max-age", type=float, default=10.0,
                   help="seconds edges may cache a file without asking again; its etag follows size and mtime (default %(default)s; 0: ask every time)")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
