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
  * boot.ipxe is not a file: it is an iPXE script made for each client,
    naming its address (BOOT_SCRIPT, boot_script), with an ETag that is
    the digest of its bytes and max_age 0, so that the edge cache never
    serves one client's script to another.
  * With --upload-dir, Write stores uploads there: every refusal before
    accepted (PERMISSION_DENIED 2 "uploads not enabled" without it,
    2 "access violation" for a path out of the directory,
    RESOURCE_EXHAUSTED 3 "file too large" over --upload-max-size,
    ALREADY_EXISTS 6 "file already exists" unless --upload-overwrite),
    then the data into a temporary file, checked against end's size and
    SHA-256 (DATA_LOSS), fsynced and linked (create-only) or renamed
    (overwrite) under its name before stored; a cancelled call or a
    stream without end leaves nothing.

Usage:

    /usr/bin/python3 server.py --root /srv/tftp [--listen 127.0.0.1:50051]
        [--upload-dir /srv/uploads [--upload-overwrite] [--upload-max-size 16MiB]]
    tftpgw -backend 127.0.0.1:50051 [-upload-allow 'configs/**']

Needs grpcio and protobuf (Debian: apt-get install python3-grpcio
python3-protobuf). The code generated from the proto is in tftpgw/v1/;
regenerate it with `make generate`.
"""

import argparse
import asyncio
import collections
import errno
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

# A read of this path gets an iPXE script made for the client that asks
# (boot_script), not a file of the root. Replace the template with your own:
# {ip} is the client's address, as the edge saw it.
BOOT_SCRIPT_PATH = b"boot.ipxe"
BOOT_SCRIPT = """#!ipxe
echo Booting {ip} through tftpgw (python-backend)
chain --autofree tftp://${{next-server}}/hosts/{ip}.ipxe || shell
"""

log = logging.getLogger("tftp-backend")


# --- errors ---------------------------------------------------------------


class CallError(Exception):
    """A failed Read or Write.

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
    return CallError(grpc.StatusCode.NOT_FOUND, message, 1, "file not found")


def access_violation(message, tftp_message="access violation"):
    return CallError(grpc.StatusCode.PERMISSION_DENIED, message, 2, tftp_message)


def internal_error(message):
    return CallError(grpc.StatusCode.INTERNAL, message, 0, "internal error")


def protocol_error(message):
    """A message the edge never sends (it follows content.proto)."""
    return CallError(grpc.StatusCode.INVALID_ARGUMENT, message)


def uploads_off():
    return CallError(grpc.StatusCode.PERMISSION_DENIED, "uploads are not enabled (--upload-dir)", 2, "uploads not enabled")


def too_large(message):
    return CallError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, 3, "file too large")


def file_exists(message):
    return CallError(grpc.StatusCode.ALREADY_EXISTS, message, 6, "file already exists")


def write_failed(what, path, e):
    """The error of a failed write, link or rename: a full disk or quota is
    TFTP error 3, anything else error 0."""
    message = f"{what} {quote(path)}: {e.strerror or e}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return CallError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, 3, "disk full or allocation exceeded")
    return internal_error(message)


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


def boot_script(request):
    """The iPXE script of the client of request, as bytes, with its ETag
    and SHA-256.

    It differs per client, so its header has max_age 0: the edge cache asks
    again on every request and reuses its cached bytes only when the ETag
    is the same, which, being the digest of the bytes, means the same
    script. One client's script is never served to another.
    """
    ip = request.client.ip.split("%", 1)[0]  # without an IPv6 zone
    if not ip:  # an edge always sends it
        raise not_found("boot.ipxe: the request has no client address")
    body = BOOT_SCRIPT.format(ip=ip).encode()
    digest = hashlib.sha256(body).digest()
    return body, "ipxe-" + digest[:16].hex(), digest


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
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "path is absolute")
    if b".." in re.split(rb"[/\\]", path):
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, 'path has a ".." element')
    if request.offset > MAX_OFFSET:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "offset out of range")
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


# --- uploads ----------------------------------------------------------------


class Uploads:
    """The directory uploads are stored in (--upload-dir), and the rules.

    begin() refuses an upload before the edge acknowledges the client, or
    returns an Upload: a temporary file in the target's directory, which
    only Upload.commit() puts under the file's name. Paths are bytes, as
    in Root: the file is named by path_bytes, the exact bytes the client
    sent.
    """

    def __init__(self, path, overwrite, max_size):
        self.path = os.path.realpath(os.fsencode(path))
        if not os.path.isdir(self.path):
            raise SystemExit(f"--upload-dir {path}: not a directory")
        self.overwrite = overwrite  # False: create-only
        self.max_size = max_size  # 0: no limit of our own (the edge has one)

    def _inside(self, real):
        return real != self.path and os.path.commonpath([self.path, real]) == self.path

    def begin(self, rel, declared):
        """Checks an upload of rel (bytes, relative to the directory) of
        declared bytes (None: unknown) and opens its temporary file."""
        if not rel:
            raise access_violation("empty path")
        if rel.startswith(b"/"):  # os.path.join would drop the directory
            raise access_violation(f"{quote(rel)} is absolute")
        try:
            # realpath resolves every symbolic link and "..", also through
            # names that do not exist yet, so the target can be checked
            # against the directory before anything is created. The edge
            # never sends a path that climbs out; a symbolic link could.
            real = os.path.realpath(os.path.join(self.path, rel))
        except ValueError:  # a NUL byte in the path
            raise access_violation(f"{quote(rel)}: invalid path") from None
        if not self._inside(real):
            raise access_violation(f"{quote(rel)} escapes the upload directory")
        if declared is not None and self.max_size and declared > self.max_size:
            raise too_large(f"{quote(rel)}: declared size {declared} over --upload-max-size {self.max_size}")
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            st = None
        except OSError as e:  # ENOTDIR (a file on the way), EACCES, ELOOP...
            raise access_violation(f"stat {quote(rel)}: {e.strerror}") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise access_violation(f"{quote(rel)} exists and is not a regular file", "not a regular file")
        if st is not None and not self.overwrite:
            raise file_exists(f"{quote(rel)} exists (create-only; --upload-overwrite replaces)")

        parent, name = os.path.split(real)
        dfd = fd = None
        try:
            os.makedirs(parent, exist_ok=True)
            # Everything from here on is relative to the directory's
            # descriptor, which /proc says is inside: a directory on the way
            # swapped for a symbolic link after the check above cannot
            # redirect the file.
            dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                opened = os.readlink(os.fsencode(f"/proc/self/fd/{dfd}"))
            except OSError:
                opened = None
            if opened is not None and opened != self.path and not self._inside(opened):
                raise access_violation(f"{quote(rel)} escapes the upload directory")
            # A hidden name, unique, in the target's directory: link() and
            # rename() stay within one file system.
            tmp = b"." + name[:100] + b".upload-" + os.urandom(6).hex().encode()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        except CallError:
            if dfd is not None:
                os.close(dfd)
            raise
        except OSError as e:
            if dfd is not None:
                os.close(dfd)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise write_failed("create", rel, e) from None
            raise access_violation(f"create {quote(rel)}: {e.strerror}") from None
        return Upload(self, rel, dfd, name, tmp, fd)


class Upload:
    """One upload being received: its temporary file and what it holds."""

    def __init__(self, uploads, rel, dfd, name, tmp, fd):
        self.uploads = uploads
        self.rel = rel
        self.dfd = dfd  # the target's directory
        self.name = name  # the file's name in it
        self.tmp = tmp  # the temporary file's name in it; None once stored
        self.fd = fd
        self.size = 0
        self.hash = hashlib.sha256()

    def write(self, data):
        max_size = self.uploads.max_size
        if max_size and self.size + len(data) > max_size:
            raise too_large(f"{quote(self.rel)}: over --upload-max-size {max_size} bytes")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as e:
            raise write_failed("write", self.rel, e) from None
        self.size += len(data)
        self.hash.update(data)

    def commit(self, end):
        """Stores the file under its name, if end describes what arrived.

        It runs on the event loop, fsync included: a cancellation cannot
        come between the checks and the rename. On slow storage, run it in
        a thread, and let a cancellation wait for it.
        """
        digest = self.hash.digest()
        if end.size != self.size or end.sha256 != digest:
            raise CallError(
                grpc.StatusCode.DATA_LOSS,
                f"{quote(self.rel)}: end says {end.size} bytes, sha256 {end.sha256.hex()[:16]}; "
                f"received {self.size}, sha256 {digest.hex()[:16]}",
                0, "integrity check failed")
        try:
            os.fsync(self.fd)
            if self.uploads.overwrite:
                os.replace(self.tmp, self.name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
            else:
                # link() fails if the name exists, where rename() would
                # replace it: two uploads of one new name, or a file put
                # there since the check in begin(), are never overwritten.
                try:
                    os.link(self.tmp, self.name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
                except FileExistsError:
                    raise file_exists(f"{quote(self.rel)} appeared during the upload (create-only)") from None
                os.unlink(self.tmp, dir_fd=self.dfd)
            self.tmp = None
            os.fsync(self.dfd)  # the new name is durable too
        except OSError as e:
            raise write_failed("store", self.rel, e) from None

    def close(self):
        """Releases the files; if the upload was not stored, removes the
        temporary file, so that nothing is left of it."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            try:
                os.unlink(self.tmp, dir_fd=self.dfd)
            except OSError as e:
                log.warning("remove %s: %s", quote(self.tmp), e.strerror)
            self.tmp = None
        if self.dfd is not None:
            os.close(self.dfd)
            self.dfd = None


def write_path(start):
    """The path of a WriteStart as bytes: path_bytes, or the text path from
    an edge that does not set it."""
    return start.path_bytes or start.path.encode()


async def receive(context):
    """Reads the next WriteRequest, or grpc.aio.EOF when the edge closed its
    side; raises CallEnded if the call has ended."""
    try:
        return await context.read()
    except asyncio.CancelledError:
        raise
    except Exception as e:
        raise CallEnded() from e


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
    def __init__(self, root, max_age, digests, uploads):
        self.root = root
        self.max_age = max_age
        self.digests = digests  # None: no digests
        self.uploads = uploads  # None: uploads refused

    async def Read(self, request, context):
        start = time.monotonic()
        outcome, detail, sent, fd, digest = "OK", "", 0, None, None
        path = request_path(request)
        try:
            check_request(request)
            if path == BOOT_SCRIPT_PATH:
                body, etag, digest = boot_script(request)
                if request.if_match and request.if_match != etag:
                    raise CallError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"etag mismatch: want {quote(request.if_match)}, have {quote(etag)}",
                        0, "file changed")
                header = content_pb2.Header(size=len(body), etag=etag, offset=request.offset, sha256=digest)
                header.max_age.SetInParent()  # 0: never reused for another client
                await send(context, content_pb2.ReadResponse(header=header))
                if request.offset < len(body):  # a few hundred bytes: one chunk
                    await send(context, content_pb2.ReadResponse(data=body[request.offset:]))
                    sent = len(body) - request.offset
                return
            fd, st = self.root.open(path)
            etag = etag_of(st)
            if request.if_match and request.if_match != etag:
                raise CallError(
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
        except CallError as e:
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


    async def Write(self, request_iterator, context):
        """Stores one upload: start, accepted, data..., end, stored, OK.

        Nothing is stored under the file's name before end has arrived and
        matched what was received; a call cancelled by the edge, or one that
        ends without end, leaves nothing behind (the finally clause).
        """
        start_time = time.monotonic()
        outcome, detail, path, declared, upload, start = "OK", "", b"", None, None, None
        try:
            first = await receive(context)
            if first is grpc.aio.EOF or first.WhichOneof("msg") != "start":
                raise protocol_error("the first message is not start")
            start = first.start
            path = write_path(start)
            declared = start.size if start.HasField("size") else None
            if self.uploads is None:
                raise uploads_off()
            # Every refusal comes before accepted: the client then gets
            # the TFTP ERROR before it sends any data.
            upload = self.uploads.begin(path, declared)
            await send(context, content_pb2.WriteResponse(accepted=content_pb2.WriteAccepted()))

            # The data, in order, then end. The writes are done on the
            # event loop, as the reads: the edge sends 32 KiB at most.
            while True:
                msg = await receive(context)
                if msg is grpc.aio.EOF:
                    # grpcio may end the stream of a call the edge
                    # cancelled before it cancels this task.
                    if context.cancelled():
                        raise CallEnded()
                    raise protocol_error(f"the stream ended without end after {upload.size} bytes")
                kind = msg.WhichOneof("msg")
                if kind == "data":
                    upload.write(msg.data)
                elif kind == "end":
                    break
                else:
                    raise protocol_error(f"{kind or 'an empty message'} after start")
            upload.commit(msg.end)
            await send(context, content_pb2.WriteResponse(stored=content_pb2.WriteStored(size=upload.size)))
        except CallError as e:
            outcome, detail = e.code.name, e.message
            if upload is not None:
                upload.close()  # before the edge hears of it
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
            if upload is not None:
                upload.close()
            if outcome != "OK" and context.cancelled():
                outcome = "CANCELLED"
            client = start.client if start is not None else None
            log.info(
                "write session=%s edge=%s client=%s path=%s declared=%s status=%s bytes=%d sha256=%s ms=%.1f%s",
                (start.session_id if start is not None else "") or "-",
                (start.edge_id if start is not None else "") or "-",
                f"{client.ip}:{client.port}" if client is not None and client.ip else "-",
                quote(path), "-" if declared is None else declared, outcome,
                upload.size if upload is not None else 0,
                upload.hash.hexdigest()[:16] if upload is not None and outcome == "OK" else "-",
                (time.monotonic() - start_time) * 1000,
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
    uploads = Uploads(args.upload_dir, args.upload_overwrite, args.upload_max_size) if args.upload_dir else None
    # so_reuseport off: a second server on a busy port fails instead of
    # silently sharing it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    content_pb2_grpc.add_ContentServiceServicer_to_server(ContentService(root, args.max_age, digests, uploads), server)
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        raise SystemExit(f"--listen {args.listen}: {e}")
    if port == 0:
        raise SystemExit(f"--listen {args.listen}: cannot listen")
    await server.start()
    host = args.listen.rsplit(":", 1)[0]
    log.info("tftp-backend (python) serving on %s:%d root=%s uploads=%s", host, port, quote(root.path),
             "-" if uploads is None else
             f"{quote(uploads.path)} {'overwrite' if uploads.overwrite else 'create-only'} max={uploads.max_size or '-'}")

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
    p.add_argument("--upload-dir", metavar="DIR",
                   help="store the files clients upload (ContentService.Write) under DIR; without it, uploads are refused")
    p.add_argument("--upload-overwrite", action="store_true",
                   help="let an upload replace an existing file (default: create-only, an existing file is TFTP error 6)")
    p.add_argument("--upload-max-size", type=byte_size, default=0, metavar="BYTES",
                   help="refuse uploads larger than BYTES (suffixes KiB, MiB, GiB) with TFTP error 3 "
                        "(default 0: no limit of its own; the edge has one)")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
