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
//
// Usage:
//
//   npm ci
//   node server.js --root /srv/tftp [--listen 127.0.0.1:50051]
//   tftpgw -backend 127.0.0.1:50051
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
    'proto-dir': { type: 'string', default: path.join(__dirname, '..', '..', 'proto') },
    help: { type: 'boolean', short: 'h' },
  },
});
if (flags.help || !flags.root) {
  console.error(`usage: node server.js --root DIR [--listen HOST:PORT] [--max-age SECONDS]
                      [--no-digest] [--digest-sync-max BYTES] [--digest-wait SECONDS]
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

// ReadError is a failed Read. code is the gRPC status code; message is the
// status message, which the edge only logs. tftpCode and tftpMessage, if
// tftpCode is not undefined, are attached as a TFTPError: the edge sends
// exactly them to the client, so tftpMessage must not reveal anything
// about the server.
class ReadError extends Error {
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

const notFound = (message) => new ReadError(grpc.status.NOT_FOUND, message, 1, 'file not found');
const accessViolation = (message, tftpMessage = 'access violation') =>
  new ReadError(grpc.status.PERMISSION_DENIED, message, 2, tftpMessage);
const internalError = (message) => new ReadError(grpc.status.INTERNAL, message, 0, 'internal error');

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
    if (err instanceof ReadError) throw err;
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
    if (err instanceof ReadError) throw err;
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

// checkRequest refuses what the edge never sends (it normalises the path).
function checkRequest(req, rel) {
  if (rel.startsWith('/') || rel.startsWith('\\')) {
    throw new ReadError(grpc.status.INVALID_ARGUMENT, 'path is absolute');
  }
  if (rel.split(/[/\\]/).includes('..')) {
    throw new ReadError(grpc.status.INVALID_ARGUMENT, 'path has a ".." element');
  }
  if (req.offset > MAX_OFFSET) {
    throw new ReadError(grpc.status.INVALID_ARGUMENT, 'offset out of range');
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
    const opened = await openFile(rel);
    fh = opened.fh;
    const { st } = opened;
    const etag = etagOf(st);
    if (req.if_match !== '' && req.if_match !== etag) {
      throw new ReadError(grpc.status.FAILED_PRECONDITION,
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
    const e = err instanceof ReadError ? err : new ReadError(grpc.status.UNKNOWN, String(err));
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
server.addService(tftpgwv1.ContentService.service, { Read: read });
server.bindAsync(flags.listen, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(`--listen ${flags.listen}: ${err.message}`);
    process.exit(2);
  }
  const host = flags.listen.slice(0, flags.listen.lastIndexOf(':'));
  log(`tftp-backend (node) serving on ${host}:${port} root=${quotePath(rootDir)}`);
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
