#!/usr/bin/env node
// Example tftpgw content service in Node.js: serves the files of a directory.
//
// It implements tftpgw.v1.ContentService (../../proto/tftpgw/v1/content.proto,
// loaded at run time) the way the Go reference backend (cmd/tftp-backend
// -root) does:
//
//   * Read sends one Header (size, etag, max_age, the offset asked for and,
//     when known, the file's SHA-256) and then the file in 64 KiB data
//     chunks, from the request's offset, and ends with OK.
//   * The file is the one named by path_bytes, the exact bytes the client
//     sent (normalised): a Latin-1 or other non-UTF-8 name on disk is
//     served as tftpgw -root serves it.
//   * Errors are gRPC status codes with a tftpgw.v1.TFTPError in the status
//     details, which chooses the TFTP ERROR the client gets: NOT_FOUND with
//     1 "file not found", PERMISSION_DENIED with 2 "access violation"
//     (escapes out of the root, unreadable files) or 2 "not a regular file"
//     (directories, FIFOs, devices), FAILED_PRECONDITION with 0 "file
//     changed" when if_match no longer matches, INTERNAL with 0 "internal
//     error".
//   * The etag is "<size>-<mtime ns>-<ctime ns>-<inode>" in hex, as in the Go backend,
//     so a file that changes gets a new etag and a resumed transfer (offset
//     and if_match) never splices two versions.
//   * The SHA-256 of a file is computed once per version (path and etag)
//     and cached (Digests): a file up to --digest-sync-max bytes (64 MiB)
//     is hashed before its first header, waiting at most --digest-wait
//     (1 s); a larger one in the background, its headers carrying the
//     digest once it is known.
//   * A cancelled call (the TFTP session ended) stops reading at once.
//   * boot.ipxe is not a file: it is an iPXE script made for each client,
//     naming its address (BOOT_SCRIPT, bootScript), with an etag that is
//     the digest of its bytes and max_age 0, so that the edge cache never
//     serves one client's script to another.
//   * With --upload-dir, Write stores uploads there: every refusal before
//     accepted (PERMISSION_DENIED 2 "uploads not enabled" without it,
//     2 "access violation" for a path out of the directory,
//     RESOURCE_EXHAUSTED 3 "file too large" over --upload-max-size,
//     ALREADY_EXISTS 6 "file already exists" unless --upload-overwrite),
//     then the data into a temporary file, checked against end's size and
//     SHA-256 (DATA_LOSS), fsynced and linked (create-only) or renamed
//     (overwrite) under its name before stored; a cancelled call or a
//     stream without end leaves nothing.
//
// Usage:
//
//   npm ci
//   node server.js --root /srv/tftp [--listen 127.0.0.1:50051]
//       [--upload-dir /srv/uploads [--upload-overwrite] [--upload-max-size 16MiB]]
//   tftpgw -backend 127.0.0.1:50051 [-upload-allow 'configs/**']
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// The size of the data chunks. The edge re-blocks them to the TFTP block
// size; the proto advises 32 to 256 KiB.
const CHUNK_SIZE = 64 * 1024;

// Offsets above this are refused, as the Go SDK does.
const MAX_OFFSET = 2 ** 62;

// How long running calls may finish after SIGTERM or SIGINT.
const STOP_GRACE_MS = 10_000;

// content.proto's limit on a data chunk: the edge fails the call on a
// larger message. CHUNK_SIZE stays far below it.
const MAX_CHUNK = 4 * 1024 * 1024;
if (CHUNK_SIZE > MAX_CHUNK) throw new Error('CHUNK_SIZE over content.proto\'s limit');

// The digest rule (see Digests): files up to this size are hashed before
// their first header (--digest-sync-max), waiting at most DIGEST_WAIT_MS
// (--digest-wait), half the edge's default header budget of 2 s.
const DIGEST_SYNC_MAX = 64 * 1024 * 1024;
const DIGEST_WAIT_MS = 1000;

// The digest cache's bounds: entries, and bytes of paths and etags.
const DIGEST_CACHE_ENTRIES = 4096;
const DIGEST_CACHE_BYTES = 4 * 1024 * 1024;

// A read of this path gets an iPXE script made for the client that asks
// (bootScript), not a file of the root. Replace the template with your own:
// {ip} is the client's address, as the edge saw it.
const BOOT_SCRIPT_PATH = 'boot.ipxe';
const BOOT_SCRIPT = `#!ipxe
echo Booting {ip} through tftpgw (node-backend)
chain --autofree tftp://\${next-server}/hosts/{ip}.ipxe || shell
`;

// --- flags and the proto --------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    root: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1:50051' },
    'max-age': { type: 'string', default: '10' },
    digest: { type: 'boolean', default: true },
    'no-digest': { type: 'boolean', default: false },
    'digest-sync-max': { type: 'string', default: String(DIGEST_SYNC_MAX) },
    'digest-wait': { type: 'string', default: String(DIGEST_WAIT_MS / 1000) },
    'upload-dir': { type: 'string' },
    'upload-overwrite': { type: 'boolean', default: false },
    'upload-max-size': { type: 'string', default: '0' },
    'proto-dir': { type: 'string', default: path.join(__dirname, '..', '..', 'proto') },
    help: { type: 'boolean', short: 'h' },
  },
});
if (flags.help || !flags.root) {
  console.error(`usage: node server.js --root DIR [--listen HOST:PORT] [--max-age SECONDS]
                      [--no-digest] [--digest-sync-max BYTES] [--digest-wait SECONDS]
                      [--upload-dir DIR [--upload-overwrite] [--upload-max-size BYTES]]
                      [--proto-dir DIR]

  --root DIR         directory to serve (required)
  --listen ADDR      host:port to serve gRPC on (default 127.0.0.1:50051; port 0 picks a free one)
  --max-age SECONDS  how long edges may cache a file without asking again; its etag
                     follows size and mtime (default 10; 0: ask every time)
  --no-digest        send no SHA-256 in the headers (by default each file's, computed
                     once per version and cached)
  --digest-sync-max BYTES
                     hash files of at most BYTES (suffixes KiB, MiB, GiB) before their
                     first header, waiting at most --digest-wait; larger ones in the
                     background, their headers carrying the digest once it is known
                     (default 64MiB)
  --digest-wait SECONDS
                     how long a header may wait for the digest of a file under
                     --digest-sync-max (keep it under the edges' -backend-header-timeout);
                     then it goes without, and the hash goes on (default 1; 0: never wait)
  --upload-dir DIR   store the files clients upload (ContentService.Write) under DIR;
                     without it, uploads are refused
  --upload-overwrite let an upload replace an existing file (default: create-only,
                     an existing file is TFTP error 6)
  --upload-max-size BYTES
                     refuse uploads larger than BYTES (suffixes KiB, MiB, GiB) with
                     TFTP error 3 (default 0: no limit of its own; the edge has one)
  --proto-dir DIR    where tftpgw/v1/content.proto is (default ../../proto)`);
  process.exit(flags.help ? 0 : 2);
}
const maxAge = Number(flags['max-age']);
if (!Number.isFinite(maxAge) || maxAge < 0) {
  console.error(`--max-age ${flags['max-age']}: want a number of seconds >= 0`);
  process.exit(2);
}
const digestSyncMax = byteSize(flags['digest-sync-max']);
if (digestSyncMax === undefined) {
  console.error(`--digest-sync-max ${flags['digest-sync-max']}: want a number of bytes such as 67108864 or 64MiB`);
  process.exit(2);
}
const uploadMaxSize = byteSize(flags['upload-max-size']);
if (uploadMaxSize === undefined) {
  console.error(`--upload-max-size ${flags['upload-max-size']}: want a number of bytes such as 1048576 or 1MiB`);
  process.exit(2);
}
const digestWaitMs = Number(flags['digest-wait']) * 1000;
if (!Number.isFinite(digestWaitMs) || digestWaitMs < 0) {
  console.error(`--digest-wait ${flags['digest-wait']}: want a number of seconds >= 0`);
  process.exit(2);
}

// byteSize parses a number of bytes with an optional suffix (1048576,
// 1MiB); undefined if it is not one.
function byteSize(text) {
  const m = /^\s*(\d+)\s*(b|k|kib|m|mib|g|gib)?\s*$/.exec(text.toLowerCase());
  if (!m) return undefined;
  const mult = { b: 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30 }[m[2] || 'b'];
  return Number(m[1]) * mult;
}

const PROTO_FILE = 'tftpgw/v1/content.proto';
const packageDefinition = protoLoader.loadSync(PROTO_FILE, {
  includeDirs: [flags['proto-dir']],
  keepCase: true, // field names as in the proto: session_id, if_match, max_age
  longs: Number, // offset and size as numbers (exact up to 2^53)
  defaults: true, // absent fields read as 0 and ""
});
const tftpgwv1 = grpc.loadPackageDefinition(packageDefinition).tftpgw.v1;

// --- errors ---------------------------------------------------------------

// gRPC carries a status's details in the "grpc-status-details-bin" trailer,
// as a google.rpc.Status {int32 code = 1; string message = 2; repeated
// google.protobuf.Any details = 3}. grpc-js does not build it, so it is
// encoded here with protobufjs (the library proto-loader uses); these two
// types have the same encoding as google.rpc.Status and google.protobuf.Any.
const TFTPError = protobuf
  .loadSync(path.join(flags['proto-dir'], PROTO_FILE))
  .lookupType('tftpgw.v1.TFTPError');
const statusTypes = protobuf.Root.fromJSON({
  nested: {
    Status: {
      fields: {
        code: { type: 'int32', id: 1 },
        message: { type: 'string', id: 2 },
        details: { rule: 'repeated', type: 'Any', id: 3 },
      },
    },
    Any: {
      fields: {
        type_url: { type: 'string', id: 1 },
        value: { type: 'bytes', id: 2 },
      },
    },
  },
});
const RpcStatus = statusTypes.lookupType('Status');

// CallError is a failed Read. code is the gRPC status code; message is the
// status message, which the edge only logs. tftpCode and tftpMessage, if
// tftpCode is not undefined, are attached as a TFTPError: the edge sends
// exactly them to the client, so tftpMessage must not reveal anything
// about the server.
class CallError extends Error {
  constructor(code, message, tftpCode, tftpMessage = '') {
    super(message);
    this.code = code;
    this.tftpCode = tftpCode;
    this.tftpMessage = tftpMessage;
  }

  // toStatus returns the object grpc-js turns into the call's status.
  toStatus() {
    const metadata = new grpc.Metadata();
    if (this.tftpCode !== undefined) {
      const detail = TFTPError.encode({ code: this.tftpCode, message: this.tftpMessage }).finish();
      const st = RpcStatus.encode({
        code: this.code,
        message: this.message,
        details: [{ type_url: 'type.googleapis.com/tftpgw.v1.TFTPError', value: detail }],
      }).finish();
      metadata.set('grpc-status-details-bin', Buffer.from(st));
    }
    return { code: this.code, details: this.message, metadata };
  }
}

const notFound = (message) => new CallError(grpc.status.NOT_FOUND, message, 1, 'file not found');
const accessViolation = (message, tftpMessage = 'access violation') =>
  new CallError(grpc.status.PERMISSION_DENIED, message, 2, tftpMessage);
const internalError = (message) => new CallError(grpc.status.INTERNAL, message, 0, 'internal error');

const statusName = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

// --- files ----------------------------------------------------------------

// Paths are bytes: a file name on disk is whatever bytes it was created
// with (Latin-1, say), and the edge sends the client's exact bytes in
// path_bytes, so that name is served as tftpgw -root serves it. Node's
// path module works on strings, so paths are kept here as "binary"
// strings, one character (U+0000 to U+00FF) per byte, which path.join and
// friends handle like any other since '/' and '.' are ASCII; bin() turns
// one into the Buffer that fs functions take, and fs results are asked
// for as Buffers ({encoding: 'buffer'}) and turned back with str().
const bin = (p) => Buffer.from(p, 'latin1');
const str = (b) => b.toString('latin1');
const asBuffer = { encoding: 'buffer' };

const rootDir = (() => {
  try {
    const real = str(fs.realpathSync(flags.root, asBuffer));
    if (fs.statSync(bin(real)).isDirectory()) return real;
  } catch {
    // reported below
  }
  console.error(`--root ${flags.root}: not a directory`);
  process.exit(2);
})();

function inside(real) {
  const rel = path.relative(rootDir, real);
  return rel === '' || (rel !== '..' && !rel.startsWith('..' + path.sep) && !path.isAbsolute(rel));
}

// resolve returns p (a binary string) with every symbolic link and ".."
// resolved, like fs.realpath, but also when p (or a directory on the way)
// does not exist: the missing part is kept as it is, and a dangling link
// is followed to its target. It is Python's os.path.realpath.
async function resolve(p, depth = 0) {
  if (depth > 40) throw Object.assign(new Error('too many levels of symbolic links'), { code: 'ELOOP' });
  try {
    return str(await fsp.realpath(bin(p), asBuffer));
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  const parent = path.dirname(p);
  if (parent === p) return p;
  const full = path.join(await resolve(parent, depth + 1), path.basename(p));
  let target;
  try {
    target = str(await fsp.readlink(bin(full), asBuffer));
  } catch {
    return full; // missing, not a link
  }
  return resolve(path.resolve(path.dirname(full), target), depth + 1);
}

// openFile opens the regular file at rel, a path relative to the root (a
// binary string), and returns its handle and stat (with bigint times). Symbolic links are
// followed as long as they stay under the root.
async function openFile(rel) {
  if (rel === '') throw accessViolation('empty path');
  let fh;
  try {
    // resolve follows every symbolic link and "..", so the result can be
    // checked against the root. O_NOFOLLOW refuses a link put in place
    // after that; O_NONBLOCK keeps a FIFO from blocking the open (it is
    // refused below).
    const real = await resolve(path.join(rootDir, rel));
    if (!inside(real)) throw accessViolation(`${quotePath(rel)} escapes the root`);
    const { O_RDONLY, O_NONBLOCK, O_NOFOLLOW } = fs.constants;
    fh = await fsp.open(bin(real), O_RDONLY | O_NONBLOCK | O_NOFOLLOW);
  } catch (err) {
    if (err instanceof CallError) throw err;
    if (err.code === 'ENOENT') throw notFound(`open ${quotePath(rel)}: ${err.code}`);
    // permissions, symbolic link loops, ENOTDIR, a NUL byte...
    throw accessViolation(`open ${quotePath(rel)}: ${err.code || err.message}`);
  }
  try {
    // resolve and open are two steps: a directory on the way may have been
    // replaced by a symbolic link in between. On Linux, /proc tells which
    // file was really opened.
    if (process.platform === 'linux') {
      const opened = str(await fsp.readlink(`/proc/self/fd/${fh.fd}`, asBuffer));
      if (!inside(opened)) throw accessViolation(`${quotePath(rel)} escapes the root`);
    }
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw accessViolation(`${quotePath(rel)} is not a regular file`, 'not a regular file');
    return { fh, st };
  } catch (err) {
    await fh.close();
    if (err instanceof CallError) throw err;
    throw internalError(`stat ${quotePath(rel)}: ${err.code || err.message}`);
  }
}

// etagOf is the Go backend's etag: size, modification time (ns), change
// time (ns) and inode number, in hex. The change time cannot be set, and a
// file renamed into place is another inode, so copies that keep the mtime
// (cp -p, rsync -a) and same-length edits still change it.
function etagOf(st) {
  return `${st.size.toString(16)}-${st.mtimeNs.toString(16)}-${st.ctimeNs.toString(16)}-${st.ino.toString(16)}`;
}

// requestPath returns the normalised path as a binary string: path_bytes,
// the exact bytes the client sent, which an edge always sets; the text
// path (where each byte that is not UTF-8 became U+FFFD) only from an edge
// that predates it.
function requestPath(req) {
  return req.path_bytes && req.path_bytes.length > 0 ? str(req.path_bytes) : str(Buffer.from(req.path, 'utf8'));
}

// bootScript returns the iPXE script of the client of req, as a Buffer,
// with its etag and SHA-256. It differs per client, so its header has
// max_age 0: the edge cache asks again on every request and reuses its
// cached bytes only when the etag is the same, which, being the digest of
// the bytes, means the same script. One client's script is never served to
// another.
function bootScript(req) {
  const ip = req.client && req.client.ip ? req.client.ip.split('%')[0] : ''; // without an IPv6 zone
  if (ip === '') throw notFound('boot.ipxe: the request has no client address'); // an edge always sends it
  const body = Buffer.from(BOOT_SCRIPT.replaceAll('{ip}', ip), 'utf8');
  const digest = crypto.createHash('sha256').update(body).digest();
  return { body, etag: `ipxe-${digest.subarray(0, 16).toString('hex')}`, digest };
}

// checkRequest refuses what the edge never sends (it normalises the path).
function checkRequest(req, rel) {
  if (rel.startsWith('/') || rel.startsWith('\\')) {
    throw new CallError(grpc.status.INVALID_ARGUMENT, 'path is absolute');
  }
  if (rel.split(/[/\\]/).includes('..')) {
    throw new CallError(grpc.status.INVALID_ARGUMENT, 'path has a ".." element');
  }
  if (req.offset > MAX_OFFSET) {
    throw new CallError(grpc.status.INVALID_ARGUMENT, 'offset out of range');
  }
}

// --- digests ----------------------------------------------------------------

// Digests computes and caches the SHA-256 digests of file versions.
//
// The rule: a version (path and etag) is hashed once, and its digest kept
// in an LRU bounded in entries and bytes. A file of at most syncMax bytes
// is hashed before its first header, which waits at most waitMs for it (a
// cold, slow disk: the header goes without, and the hash goes on for the
// next requests; 0: never wait). A larger file is hashed in the background, one
// at a time, from its first request on; its headers carry the digest once
// it is known. Concurrent requests for one version share one hash.
//
// The hash reads the very file the request opened (through
// /proc/self/fd on Linux), whatever happens to its name meanwhile, in
// 1 MiB reads between which the event loop serves other calls, and checks
// with fstat at the end that the file was not rewritten in place while it
// read it.
class Digests {
  constructor(syncMax, waitMs) {
    this.syncMax = syncMax;
    this.waitMs = waitMs;
    this.cache = new Map(); // key -> digest Buffer, least recently used first
    this.cacheBytes = 0;
    this.running = new Map(); // key -> Promise of the digest
    this.background = Promise.resolve(); // the queue of background hashes
    this.stopping = false;
  }

  // get returns the digest of the file open as fh (path rel, version etag,
  // size bytes), or undefined.
  async get(rel, etag, fh, size) {
    const key = `${etag}\0${rel}`;
    const digest = this.cache.get(key);
    if (digest) {
      this.cache.delete(key);
      this.cache.set(key, digest);
      return digest;
    }
    let running = this.running.get(key);
    if (!running) {
      // The hash opens its own handle before the request goes on (and may
      // close fh).
      let own;
      try {
        own = await fsp.open(process.platform === 'linux' ? `/proc/self/fd/${fh.fd}` : bin(path.join(rootDir, rel)), 'r');
      } catch (err) {
        log(`no digest path=${quotePath(rel)} etag=${etag}: ${err.code || err.message}`);
        return undefined;
      }
      // Another request may have started a hash, or finished one,
      // meanwhile.
      running = this.running.get(key);
      const done = this.cache.get(key);
      if (running || done) {
        await own.close();
        if (done) return done;
      } else {
        const start = size > this.syncMax ? this.background : Promise.resolve();
        // The digest is in the cache before the hash leaves running, so
        // that a request always finds one or the other.
        running = start
          .then(() => this.hash(own, etag, size))
          .then((d) => {
            this.add(key, d);
            return d;
          })
          .finally(() => {
            this.running.delete(key);
            return own.close();
          });
        running.catch((err) => {
          if (!this.stopping) log(`no digest path=${quotePath(rel)} etag=${etag}: ${err.message}`);
        });
        if (size > this.syncMax) this.background = running.catch(() => {});
        this.running.set(key, running);
      }
    }
    if (size > this.syncMax || this.waitMs <= 0) return undefined;
    let timer;
    const wait = new Promise((resolve) => {
      timer = setTimeout(resolve, this.waitMs);
    });
    try {
      return await Promise.race([running, wait]);
    } catch {
      return undefined; // the hash failed
    } finally {
      clearTimeout(timer);
    }
  }

  // hash returns the SHA-256 of the file open as fh, if it is version etag
  // of size bytes from start to end.
  async hash(fh, etag, size) {
    if (etagOf(await fh.stat({ bigint: true })) !== etag) throw new Error('file changed before being hashed');
    const h = crypto.createHash('sha256');
    const buf = Buffer.allocUnsafe(1024 * 1024);
    let pos = 0;
    while (pos <= size) { // a byte more at most: a file that grows is another version
      if (this.stopping) throw new Error('stopping');
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    if (pos !== size || etagOf(await fh.stat({ bigint: true })) !== etag) {
      throw new Error('file changed while being hashed');
    }
    return h.digest();
  }

  add(key, digest) {
    const cost = Buffer.byteLength(key, 'latin1') + digest.length;
    if (cost > DIGEST_CACHE_BYTES || this.cache.has(key)) return;
    this.cache.set(key, digest);
    this.cacheBytes += cost;
    for (const [k, d] of this.cache) {
      if (this.cache.size <= DIGEST_CACHE_ENTRIES && this.cacheBytes <= DIGEST_CACHE_BYTES) break;
      this.cache.delete(k);
      this.cacheBytes -= Buffer.byteLength(k, 'latin1') + d.length;
    }
  }

  // stop makes running hashes give up.
  stop() {
    this.stopping = true;
  }
}

const digests = flags.digest && !flags['no-digest'] ? new Digests(digestSyncMax, digestWaitMs) : undefined;

// --- the service ----------------------------------------------------------

// write sends msg and waits until grpc-js has handed it to HTTP/2, which
// holds it while flow control stops the stream (the TFTP client is slower
// than the disk): one chunk at a time, at most a window is read ahead. It
// returns false if the call was cancelled meanwhile.
function write(call, msg) {
  return new Promise((resolve) => {
    if (call.cancelled) {
      resolve(false);
      return;
    }
    const onCancel = () => resolve(false);
    call.once('cancelled', onCancel);
    call.write(msg, () => {
      call.removeListener('cancelled', onCancel);
      resolve(!call.cancelled);
    });
  });
}

// read serves one Read call.
async function read(call) {
  const req = call.request;
  const start = process.hrtime.bigint();
  let outcome = 'OK';
  let detail = '';
  let sent = 0;
  let fh;
  let digest;
  const rel = requestPath(req);
  try {
    checkRequest(req, rel);
    if (rel === BOOT_SCRIPT_PATH) {
      const script = bootScript(req);
      ({ digest } = script);
      if (req.if_match !== '' && req.if_match !== script.etag) {
        throw new CallError(grpc.status.FAILED_PRECONDITION,
          `etag mismatch: want ${quote(req.if_match)}, have ${quote(script.etag)}`, 0, 'file changed');
      }
      const header = {
        size: script.body.length, etag: script.etag, offset: req.offset, sha256: digest,
        max_age: { seconds: 0, nanos: 0 }, // 0: never reused for another client
      };
      if (!(await write(call, { header }))) {
        outcome = 'CANCELLED';
        return;
      }
      if (req.offset < script.body.length) { // a few hundred bytes: one chunk
        if (!(await write(call, { data: script.body.subarray(req.offset) }))) {
          outcome = 'CANCELLED';
          return;
        }
        sent = script.body.length - req.offset;
      }
      call.end();
      return;
    }
    const opened = await openFile(rel);
    fh = opened.fh;
    const { st } = opened;
    const etag = etagOf(st);
    if (req.if_match !== '' && req.if_match !== etag) {
      throw new CallError(grpc.status.FAILED_PRECONDITION,
        `etag mismatch: want ${quote(req.if_match)}, have ${quote(etag)}`, 0, 'file changed');
    }

    // The header comes first and describes the whole file, even when the
    // request has an offset, which it confirms: the edge resumes a
    // transfer only from a header that echoes the offset asked for. The
    // digest, when known, lets the edge check the bytes it receives. The
    // edge must have the header within its header budget (2 s by default).
    const header = { size: Number(st.size), etag, offset: req.offset };
    if (digests) {
      digest = await digests.get(rel, etag, fh, Number(st.size));
      if (digest) header.sha256 = digest;
    }
    if (maxAge > 0) {
      const seconds = Math.floor(maxAge);
      header.max_age = { seconds, nanos: Math.round((maxAge - seconds) * 1e9) };
    }
    if (!(await write(call, { header }))) {
      outcome = 'CANCELLED';
      return;
    }

    // Then the data from the offset to the end. A new buffer per chunk:
    // grpc-js may still hold the previous one.
    let pos = req.offset;
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK_SIZE);
      let n;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, CHUNK_SIZE, pos));
      } catch (err) {
        throw internalError(`read ${quotePath(rel)}: ${err.code || err.message}`);
      }
      if (n === 0) break;
      if (!(await write(call, { data: buf.subarray(0, n) }))) {
        outcome = 'CANCELLED'; // the edge cancelled: stop reading
        return;
      }
      pos += n;
      sent += n;
    }
    call.end();
  } catch (err) {
    const e = err instanceof CallError ? err : new CallError(grpc.status.UNKNOWN, String(err));
    outcome = statusName[e.code];
    detail = e.message;
    call.emit('error', e.toStatus());
  } finally {
    if (fh) await fh.close();
    const client = req.client && req.client.ip ? `${req.client.ip}:${req.client.port}` : '-';
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    log(`read session=${req.session_id || '-'} edge=${req.edge_id || '-'} client=${client} ` +
      `path=${quotePath(rel)} offset=${req.offset} status=${outcome} bytes=${sent} ` +
      `sha256=${digest ? digest.toString('hex').slice(0, 16) : '-'} ms=${ms.toFixed(1)}` +
      (detail ? ` error=${quote(detail)}` : ''));
  }
}

// --- uploads ----------------------------------------------------------------

// The directory uploads are stored in (--upload-dir), as a binary string
// like rootDir; undefined: uploads are refused.
const uploadDir = (() => {
  if (flags['upload-dir'] === undefined) return undefined;
  try {
    const real = str(fs.realpathSync(flags['upload-dir'], asBuffer));
    if (fs.statSync(bin(real)).isDirectory()) return real;
  } catch {
    // reported below
  }
  console.error(`--upload-dir ${flags['upload-dir']}: not a directory`);
  process.exit(2);
})();
const uploadOverwrite = flags['upload-overwrite']; // false: create-only
// uploadMaxSize is parsed with the other flags; 0: no limit of our own (the
// edge has one).

const protocolError = (message) => new CallError(grpc.status.INVALID_ARGUMENT, message);
const uploadsOff = () => new CallError(grpc.status.PERMISSION_DENIED, 'uploads are not enabled (--upload-dir)', 2, 'uploads not enabled');
const tooLarge = (message) => new CallError(grpc.status.RESOURCE_EXHAUSTED, message, 3, 'file too large');
const fileExists = (message) => new CallError(grpc.status.ALREADY_EXISTS, message, 6, 'file already exists');

// writeFailed is the error of a failed write, link or rename: a full disk
// or quota is TFTP error 3, anything else error 0.
function writeFailed(what, rel, err) {
  const message = `${what} ${quotePath(rel)}: ${err.code || err.message}`;
  if (err.code === 'ENOSPC' || err.code === 'EDQUOT') {
    return new CallError(grpc.status.RESOURCE_EXHAUSTED, message, 3, 'disk full or allocation exceeded');
  }
  return internalError(message);
}

function insideUploads(real) {
  const rel = path.relative(uploadDir, real);
  return rel !== '' && rel !== '..' && !rel.startsWith('..' + path.sep) && !path.isAbsolute(rel);
}

// Upload is one upload being received: its temporary file in the target's
// directory, which only commit() puts under the file's name.
class Upload {
  // begin checks an upload of rel (a binary string, relative to the
  // upload directory) of declared bytes (undefined: unknown) and opens its
  // temporary file; it throws the refusal, before the edge acknowledges
  // the client.
  static async begin(rel, declared) {
    if (rel === '') throw accessViolation('empty path');
    if (rel.startsWith('/')) throw accessViolation(`${quotePath(rel)} is absolute`);
    // resolve follows every symbolic link and "..", also through names
    // that do not exist yet, so the target can be checked against the
    // directory before anything is created. The edge never sends a path
    // that climbs out; a symbolic link could.
    let real;
    try {
      real = await resolve(path.join(uploadDir, rel));
    } catch (err) {
      throw accessViolation(`resolve ${quotePath(rel)}: ${err.code || err.message}`);
    }
    if (!insideUploads(real)) throw accessViolation(`${quotePath(rel)} escapes the upload directory`);
    if (declared !== undefined && uploadMaxSize > 0 && declared > uploadMaxSize) {
      throw tooLarge(`${quotePath(rel)}: declared size ${declared} over --upload-max-size ${uploadMaxSize}`);
    }
    let st;
    try {
      st = await fsp.lstat(bin(real));
    } catch (err) {
      // ENOENT: a new file. ENOTDIR (a file on the way), EACCES, a NUL byte...
      if (err.code !== 'ENOENT') throw accessViolation(`stat ${quotePath(rel)}: ${err.code || err.message}`);
    }
    if (st && !st.isFile()) throw accessViolation(`${quotePath(rel)} exists and is not a regular file`, 'not a regular file');
    if (st && !uploadOverwrite) throw fileExists(`${quotePath(rel)} exists (create-only; --upload-overwrite replaces)`);

    const dir = path.dirname(real);
    // A hidden name, unique, in the target's directory: link() and
    // rename() stay within one file system.
    const tmp = path.join(dir, `.${path.basename(real).slice(0, 100)}.upload-${crypto.randomBytes(6).toString('hex')}`);
    let fh;
    try {
      await fsp.mkdir(bin(dir), { recursive: true });
      const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
      fh = await fsp.open(bin(tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
    } catch (err) {
      if (err.code === 'ENOSPC' || err.code === 'EDQUOT') throw writeFailed('create', rel, err);
      throw accessViolation(`create ${quotePath(rel)}: ${err.code || err.message}`);
    }
    const upload = new Upload(rel, real, tmp, fh);
    // resolve and mkdir/open are steps apart: a directory on the way may
    // have been replaced by a symbolic link in between. On Linux, /proc
    // tells where the file really is. (Node has no openat(): the link or
    // rename at the end goes by name again; the Python example holds the
    // directory open instead.)
    if (process.platform === 'linux') {
      let opened;
      try {
        opened = str(await fsp.readlink(`/proc/self/fd/${fh.fd}`, asBuffer));
      } catch (err) {
        await upload.close();
        throw internalError(`readlink ${quotePath(rel)}: ${err.code || err.message}`);
      }
      if (opened !== tmp || !insideUploads(opened)) {
        await upload.close();
        throw accessViolation(`${quotePath(rel)} escapes the upload directory`);
      }
    }
    return upload;
  }

  constructor(rel, real, tmp, fh) {
    this.rel = rel;
    this.real = real; // the file's name (a binary string)
    this.tmp = tmp; // the temporary file's name; undefined once stored or removed
    this.fh = fh;
    this.size = 0;
    this.hash = crypto.createHash('sha256');
    this.digest = undefined; // once end has arrived
  }

  async write(data) {
    if (uploadMaxSize > 0 && this.size + data.length > uploadMaxSize) {
      throw tooLarge(`${quotePath(this.rel)}: over --upload-max-size ${uploadMaxSize} bytes`);
    }
    try {
      for (let off = 0; off < data.length;) {
        const { bytesWritten } = await this.fh.write(data, off, data.length - off);
        off += bytesWritten;
      }
    } catch (err) {
      throw writeFailed('write', this.rel, err);
    }
    this.size += data.length;
    this.hash.update(data);
  }

  // commit stores the file under its name, if end describes what arrived.
  // cancelled() is asked once more before the name changes: a call the
  // edge gave up on stores nothing.
  async commit(end, cancelled) {
    this.digest = this.hash.digest();
    const sha = Buffer.from(end.sha256 || []);
    if (end.size !== this.size || !sha.equals(this.digest)) {
      throw new CallError(grpc.status.DATA_LOSS,
        `${quotePath(this.rel)}: end says ${end.size} bytes, sha256 ${sha.toString('hex').slice(0, 16)}; ` +
        `received ${this.size}, sha256 ${this.digest.toString('hex').slice(0, 16)}`, 0, 'integrity check failed');
    }
    try {
      await this.fh.sync();
      if (cancelled()) return false;
      if (uploadOverwrite) {
        await fsp.rename(bin(this.tmp), bin(this.real));
      } else {
        // link() fails if the name exists, where rename() would replace
        // it: two uploads of one new name, or a file put there since the
        // check in begin(), are never overwritten.
        try {
          await fsp.link(bin(this.tmp), bin(this.real));
        } catch (err) {
          if (err.code === 'EEXIST') throw fileExists(`${quotePath(this.rel)} appeared during the upload (create-only)`);
          throw err;
        }
        await fsp.unlink(bin(this.tmp));
      }
      this.tmp = undefined;
      // The new name is durable too.
      const dir = await fsp.open(bin(path.dirname(this.real)), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      if (err instanceof CallError) throw err;
      throw writeFailed('store', this.rel, err);
    }
    return true;
  }

  // close releases the file; if the upload was not stored, it removes the
  // temporary file, so that nothing is left of it.
  async close() {
    if (this.fh) {
      const { fh } = this;
      this.fh = undefined;
      await fh.close().catch(() => {});
    }
    if (this.tmp !== undefined) {
      const { tmp } = this;
      this.tmp = undefined;
      await fsp.unlink(bin(tmp)).catch((err) => log(`remove ${quotePath(tmp)}: ${err.code || err.message}`));
    }
  }
}

// MessageReader reads the messages of a client-streaming call one at a
// time: next() resolves to {msg}, {eof: true} when the edge closed its
// side, or {cancelled: true} when the call was cancelled (then, whatever
// is still queued).
class MessageReader {
  constructor(call) {
    this.queue = [];
    this.eof = false;
    this.cancelled = call.cancelled;
    this.wake = undefined;
    this.call = call;
    const wake = () => {
      if (this.wake) this.wake();
    };
    call.on('data', (msg) => {
      this.queue.push(msg);
      // Flow control: at most a few messages wait here, the others in
      // HTTP/2's window, and then at the edge.
      if (this.queue.length >= 4) call.pause();
      wake();
    });
    call.on('end', () => {
      this.eof = true;
      wake();
    });
    call.on('cancelled', () => {
      this.cancelled = true;
      wake();
    });
  }

  async next() {
    for (;;) {
      if (this.cancelled) return { cancelled: true };
      if (this.queue.length > 0) {
        const msg = this.queue.shift();
        if (this.queue.length < 4) this.call.resume();
        return { msg };
      }
      if (this.eof) return { eof: true };
      await new Promise((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}

// messageKind names what a WriteRequest carries (its oneof msg), '' if
// nothing.
function messageKind(msg) {
  if (msg.start) return 'start';
  if (msg.data) return 'data';
  if (msg.end) return 'end';
  return '';
}

// writeCall serves one Write call: start, accepted, data..., end, stored,
// OK. Nothing is stored under the file's name before end has arrived and
// matched what was received; a call cancelled by the edge, or one that
// ends without end, leaves nothing behind (the finally clause).
async function writeCall(call) {
  const started = process.hrtime.bigint();
  const reader = new MessageReader(call);
  let outcome = 'OK';
  let detail = '';
  let rel = '';
  let start;
  let declared;
  let upload;
  try {
    const first = await reader.next();
    if (first.cancelled) {
      outcome = 'CANCELLED';
      return;
    }
    if (first.eof || messageKind(first.msg) !== 'start') throw protocolError('the first message is not start');
    start = first.msg.start;
    rel = requestPath(start);
    declared = start.size; // undefined when the client declared none
    if (uploadDir === undefined) throw uploadsOff();
    // Every refusal comes before accepted: the client then gets the TFTP
    // ERROR before it sends any data.
    upload = await Upload.begin(rel, declared);
    if (!(await write(call, { accepted: {} }))) {
      outcome = 'CANCELLED';
      return;
    }

    // The data, in order, then end.
    let end;
    while (end === undefined) {
      const next = await reader.next();
      if (next.cancelled) {
        outcome = 'CANCELLED'; // by the edge: the TFTP session ended
        return;
      }
      if (next.eof) throw protocolError(`the stream ended without end after ${upload.size} bytes`);
      const kind = messageKind(next.msg);
      if (kind === 'data') await upload.write(next.msg.data);
      else if (kind === 'end') ({ end } = next.msg);
      else throw protocolError(`${kind || 'an empty message'} after start`);
    }
    if (!(await upload.commit(end, () => reader.cancelled))) {
      outcome = 'CANCELLED';
      return;
    }
    if (!(await write(call, { stored: { size: upload.size } }))) {
      outcome = 'CANCELLED'; // stored, but the edge gave up waiting
      return;
    }
    call.end();
  } catch (err) {
    const e = err instanceof CallError ? err : new CallError(grpc.status.UNKNOWN, String(err));
    outcome = statusName[e.code];
    detail = e.message;
    if (upload) await upload.close(); // before the edge hears of it
    call.emit('error', e.toStatus());
  } finally {
    if (upload) await upload.close();
    const client = start && start.client && start.client.ip ? `${start.client.ip}:${start.client.port}` : '-';
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    log(`write session=${(start && start.session_id) || '-'} edge=${(start && start.edge_id) || '-'} client=${client} ` +
      `path=${quotePath(rel)} declared=${declared === undefined ? '-' : declared} status=${outcome} ` +
      `bytes=${upload ? upload.size : 0} sha256=${upload && upload.digest && outcome === 'OK' ? upload.digest.toString('hex').slice(0, 16) : '-'} ` +
      `ms=${ms.toFixed(1)}` + (detail ? ` error=${quote(detail)}` : ''));
  }
}

// quote quotes text for a log line, the same way the Python example does.
function quote(s) {
  return quoteBytes(Buffer.from(s, 'utf8'));
}

// quotePath quotes a path (a binary string) for a log line, the same way
// the Python example does: a byte that is not part of valid UTF-8 shows as
// \xNN.
function quotePath(p) {
  return quoteBytes(bin(p));
}

function quoteBytes(b) {
  let out = '';
  for (let i = 0; i < b.length;) {
    const lead = b[i];
    let n = 1;
    if (lead >= 0xf0) n = 4;
    else if (lead >= 0xe0) n = 3;
    else if (lead >= 0xc0) n = 2;
    const seq = b.subarray(i, i + n);
    const text = seq.toString('utf8');
    if (seq.length === n && Buffer.from(text, 'utf8').equals(seq)) { // valid UTF-8 survives a round trip
      out += text === '\\' ? '\\\\' : text === '"' ? '\\"' : text;
      i += n;
    } else {
      out += `\\x${lead.toString(16).padStart(2, '0')}`;
      i += 1;
    }
  }
  return `"${out}"`;
}

function log(msg) {
  process.stderr.write(`${new Date().toISOString()} INFO ${msg}\n`);
}

// --- main -----------------------------------------------------------------

const server = new grpc.Server();
server.addService(tftpgwv1.ContentService.service, { Read: read, Write: writeCall });
server.bindAsync(flags.listen, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(`--listen ${flags.listen}: ${err.message}`);
    process.exit(2);
  }
  const host = flags.listen.slice(0, flags.listen.lastIndexOf(':'));
  const uploads = uploadDir === undefined ? '-'
    : `${quotePath(uploadDir)} ${uploadOverwrite ? 'overwrite' : 'create-only'} max=${uploadMaxSize || '-'}`;
  log(`tftp-backend (node) serving on ${host}:${port} root=${quotePath(rootDir)} uploads=${uploads}`);
});

function stop() {
  log(`stopping: running calls get ${STOP_GRACE_MS / 1000} s`);
  if (digests) digests.stop();
  const timer = setTimeout(() => server.forceShutdown(), STOP_GRACE_MS);
  timer.unref();
  server.tryShutdown(() => clearTimeout(timer));
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
