#!/usr/bin/env python3
"""Example tftpgw content service in Python: serves the files of a directory.

It implements tftpgw.v1.ContentService (../../proto/tftpgw/v1/content.proto)
the way the Go reference backend (cmd/tftp-backend -root) does:

  * Read sends one Header (size, etag, max_age, the offset asked for and,
    when known, the file's SHA-256) and then the file in 64 KiB data
    chunks, from the request's offset, and ends with OK.
  * The file is the one named by path_bytes, the exact bytes the client
    sent (normalised): a Latin-1 or other non-UTF-8 name on disk is served
    as tftpgw -root serves it.
  * Errors are gRPC status codes with a tftpgw.v1.TFTPError in the status
    details, which chooses the TFTP ERROR the client gets: NOT_FOUND with
    1 "file not found", PERMISSION_DENIED with 2 "access violation" (escapes
    out of the root, unreadable files) or 2 "not a regular file"
    (directories, FIFOs, devices), FAILED_PRECONDITION with 0 "file changed"
    when if_match no longer matches, INTERNAL with 0 "internal error".
  * The etag is "<size>-<mtime ns>-<ctime ns>-<inode>" in hex, as in the Go backend,
    so a file that changes gets a new etag and a resumed transfer (offset
    and if_match) never splices two versions.
  * The SHA-256 of a file is computed once per version (path and etag) and
    cached (Digests): a file up to --digest-sync-max bytes (64 MiB) is
    hashed before its first header, waiting at most --digest-wait (1 s); a
    larger one in the background, its headers carrying the digest once it
    is known.
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
import collections
import hashlib
import logging
import os
import re
import signal
import stat
import sys
import threading
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

# content.proto's limit on a data chunk: the edge fails the call on a
# larger message. CHUNK_SIZE stays far below it.
MAX_CHUNK = 4 * 1024 * 1024
assert CHUNK_SIZE <= MAX_CHUNK

# The digest rule (see Digests): files up to this size are hashed before
# their first header (--digest-sync-max), waiting at most DIGEST_WAIT
# seconds (--digest-wait), half the edge's default header budget of 2 s.
DIGEST_SYNC_MAX = 64 * 1024 * 1024
DIGEST_WAIT = 1.0

# The digest cache's bounds: entries, and bytes of paths and etags.
DIGEST_CACHE_ENTRIES = 4096
DIGEST_CACHE_BYTES = 4 * 1024 * 1024

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
    """The directory served. open() never returns a file outside it.

    Paths are bytes throughout: a file name on disk is whatever bytes it
    was created with (Latin-1, say), and the edge sends the client's exact
    bytes in path_bytes, so that name is served as tftpgw -root serves it.
    """

    def __init__(self, path):
        self.path = os.path.realpath(os.fsencode(path))
        if not os.path.isdir(self.path):
            raise SystemExit(f"--root {path}: not a directory")

    def _inside(self, real):
        return os.path.commonpath([self.path, real]) == self.path

    def open(self, rel):
        """Opens the regular file at rel, a path relative to the root (bytes).

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
                opened = os.readlink(os.fsencode(f"/proc/self/fd/{fd}"))
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


def request_path(request):
    """The normalised path as bytes: path_bytes, the exact bytes the client
    sent, which an edge always sets; the text path (where each byte that is
    not UTF-8 became U+FFFD) only from an edge that predates it."""
    return request.path_bytes or request.path.encode()


def check_request(request):
    """Refuses what the edge never sends (it normalises the path)."""
    path = request_path(request)
    if path.startswith(b"/") or path.startswith(b"\\"):
        raise ReadError(grpc.StatusCode.INVALID_ARGUMENT, "path is absolute")
    if b".." in re.split(rb"[/\\]", path):
        raise ReadError(grpc.StatusCode.INVALID_ARGUMENT, 'path has a ".." element')
    if request.offset > MAX_OFFSET:
        raise ReadError(grpc.StatusCode.INVALID_ARGUMENT, "offset out of range")
    return path


# --- digests ----------------------------------------------------------------


class Digests:
    """SHA-256 digests of file versions, computed once and cached.

    The rule: a version (path and etag) is hashed once, and its digest kept
    in an LRU bounded in entries and bytes. A file of at most sync_max
    bytes is hashed before its first header, which waits at most wait
    seconds for it (a cold, slow disk: the header goes without, and the
    hash goes on for the next requests; 0: never wait). A larger file is hashed
    in the background, one at a time, from its first request on; its
    headers carry the digest once it is known. Concurrent requests for one
    version share one hash.

    The hash runs in a thread (hashlib releases the GIL) on a duplicate of
    the request's file descriptor: it reads the very file the request
    opened, whatever happens to its name meanwhile, and checks with fstat
    at the end that the file was not rewritten in place while it read it.
    """

    def __init__(self, sync_max, wait):
        self.sync_max = sync_max
        self.wait = wait
        self.cache = collections.OrderedDict()  # (path, etag) -> digest
        self.cache_bytes = 0
        self.running = {}  # (path, etag) -> asyncio.Task
        self.background = None  # asyncio.Semaphore, made on the loop
        self.stopping = threading.Event()

    async def get(self, path, etag, fd, size):
        """The digest of the file open as fd, version etag, or None."""
        key = (path, etag)
        digest = self.cache.get(key)
        if digest is not None:
            self.cache.move_to_end(key)
            return digest
        task = self.running.get(key)
        if task is None:
            dup = os.dup(fd)
            task = asyncio.get_running_loop().create_task(self._compute(key, dup, size))
            # A failure is logged by _compute; retrieving it here keeps
            # asyncio from reporting it again when no request awaited it.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self.running[key] = task
        if size > self.sync_max or self.wait <= 0:
            return None
        try:
            # shield: a request that gives up does not stop the hash.
            return await asyncio.wait_for(asyncio.shield(task), self.wait)
        except asyncio.CancelledError:
            raise
        except Exception:  # the wait ran out, or the hash failed
            return None

    def stop(self):
        """Makes running hashes give up."""
        self.stopping.set()

    async def _compute(self, key, fd, size):
        try:
            if size > self.sync_max:
                if self.background is None:
                    self.background = asyncio.Semaphore(1)
                async with self.background:
                    digest = await asyncio.to_thread(self._hash, fd, size, key[1])
            else:
                digest = await asyncio.to_thread(self._hash, fd, size, key[1])
        except Exception as e:
            if not self.stopping.is_set():
                log.info("no digest path=%s etag=%s: %s", quote(key[0]), key[1], e)
            raise
        finally:
            os.close(fd)
            self.running.pop(key, None)
        self._add(key, digest)
        return digest

    def _hash(self, fd, size, etag):
        h = hashlib.sha256()
        pos = 0
        while pos <= size:  # a byte more at most: a file that grows is another version
            if self.stopping.is_set():
                raise RuntimeError("stopping")
            data = os.pread(fd, 1024 * 1024, pos)
            if not data:
                break
            h.update(data)
            pos += len(data)
        if pos != size or etag_of(os.fstat(fd)) != etag:
            raise RuntimeError("file changed while being hashed")
        return h.digest()

    def _add(self, key, digest):
        cost = len(key[0]) + len(key[1]) + len(digest)
        if cost > DIGEST_CACHE_BYTES or key in self.cache:
            return
        self.cache[key] = digest
        self.cache_bytes += cost
        while len(self.cache) > DIGEST_CACHE_ENTRIES or self.cache_bytes > DIGEST_CACHE_BYTES:
            (p, e), d = self.cache.popitem(last=False)
            self.cache_bytes -= len(p) + len(e) + len(d)


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
    def __init__(self, root, max_age, digests):
        self.root = root
        self.max_age = max_age
        self.digests = digests  # None: no digests

    async def Read(self, request, context):
        start = time.monotonic()
        outcome, detail, sent, fd, digest = "OK", "", 0, None, None
        path = request_path(request)
        try:
            check_request(request)
            fd, st = self.root.open(path)
            etag = etag_of(st)
            if request.if_match and request.if_match != etag:
                raise ReadError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"etag mismatch: want {quote(request.if_match)}, have {quote(etag)}",
                    0, "file changed")

            # The header comes first and describes the whole file, even
            # when the request has an offset, which it confirms: the edge
            # resumes a transfer only from a header that echoes the offset
            # asked for. The digest, when known, lets the edge check the
            # bytes it receives. The edge must have the header within its
            # header budget (2 s by default).
            header = content_pb2.Header(size=st.st_size, etag=etag, offset=request.offset)
            if self.digests is not None:
                digest = await self.digests.get(path, etag, fd, st.st_size)
                if digest is not None:
                    header.sha256 = digest
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
                    raise internal_error(f"read {quote(path)}: {e.strerror}") from None
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
                "read session=%s edge=%s client=%s path=%s offset=%d status=%s bytes=%d sha256=%s ms=%.1f%s",
                request.session_id or "-", request.edge_id or "-",
                f"{client.ip}:{client.port}" if client.ip else "-",
                quote(path), request.offset, outcome, sent,
                digest.hex()[:16] if digest else "-",
                (time.monotonic() - start) * 1000,
                f" error={quote(detail)}" if detail else "")


def quote(s):
    """Quotes s (text, or bytes such as a path) for a log line, the same
    way the Node example does: a byte that is not UTF-8 shows as \\xNN."""
    if isinstance(s, bytes):
        s = s.decode("utf-8", "surrogateescape")
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub("[\udc80-\udcff]", lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", s) + '"'


# --- main -----------------------------------------------------------------


async def serve(args):
    root = Root(args.root)
    digests = Digests(args.digest_sync_max, args.digest_wait) if args.digest else None
    # so_reuseport off: a second server on a busy port fails instead of
    # silently sharing it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    content_pb2_grpc.add_ContentServiceServicer_to_server(ContentService(root, args.max_age, digests), server)
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        raise SystemExit(f"--listen {args.listen}: {e}")
    if port == 0:
        raise SystemExit(f"--listen {args.listen}: cannot listen")
    await server.start()
    host = args.listen.rsplit(":", 1)[0]
    log.info("tftp-backend (python) serving on %s:%d root=%s", host, port, quote(root.path))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: running calls get %.0f s", STOP_GRACE)
    if digests is not None:
        digests.stop()
    await server.stop(STOP_GRACE)


def byte_size(text):
    """Parses a number of bytes with an optional suffix: 1048576, 1MiB."""
    m = re.fullmatch(r"\s*(\d+)\s*(b|k|kib|m|mib|g|gib)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"want a number of bytes such as 67108864 or 64MiB, not {text!r}")
    return int(m.group(1)) * {None: 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
                              "g": 1 << 30, "gib": 1 << 30}[m.group(2)]


def main():
    p = argparse.ArgumentParser(description="Example tftpgw content service: serves the files under a directory.")
    p.add_argument("--root", required=True, help="directory to serve")
    p.add_argument("--listen", default="127.0.0.1:50051", help="host:port to serve gRPC on (default %(default)s; port 0 picks a free one)")
    p.add_argument("--max-age", type=float, default=10.0,
                   help="seconds edges may cache a file without asking again; its etag follows size and mtime (default %(default)s; 0: ask every time)")
    p.add_argument("--digest", action=argparse.BooleanOptionalAction, default=True,
                   help="send each file's SHA-256 in its header, computed once per version and cached (default: on)")
    p.add_argument("--digest-sync-max", type=byte_size, default=DIGEST_SYNC_MAX, metavar="BYTES",
                   help="hash files of at most BYTES (suffixes KiB, MiB, GiB) before their first header, waiting at most --digest-wait; "
                        "larger ones in the background, their headers carrying the digest once it is known (default 64MiB)")
    p.add_argument("--digest-wait", type=float, default=DIGEST_WAIT, metavar="SECONDS",
                   help="how long a header may wait for the digest of a file under --digest-sync-max (keep it under the "
                        "edges' -backend-header-timeout); then it goes without, and the hash goes on (default %(default)s; 0: never wait)")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
