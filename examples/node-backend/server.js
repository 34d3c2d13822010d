#!/usr/bin/env node
// Example tftpgw content service in Node.js: serves the files of a directory.
//
// It implements tftpgw.v1.ContentService (../../proto/tftpgw/v1/content.proto,
// loaded at run time) the way the Go reference backend (cmd/tftp-backend
// -root) does:
//
//   * Read sends one Header (size, etag, max_age) and then the file in
//     64 KiB data chunks, from the request's offset, and ends with OK.
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
//   * A cancelled call (the TFTP session ended) stops reading at once.
//
// Usage:
//
//   npm ci
//   node server.js --root /srv/tftp [--listen 127.0.0.1:50051]
//   tftpgw -backend 127.0.0.1:50051
'use strict';

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

// --- flags and the proto --------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    root: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1:50051' },
    'max-age': { type: 'string', default: '10' },
    'proto-dir': { type: 'string', default: path.join(__dirname, '..', '..', 'proto') },
    help: { type: 'boolean', short: 'h' },
  },
});
if (flags.help || !flags.root) {
  console.error(`usage: node server.js --root DIR [--listen HOST:PORT] [--max-age SECONDS] [--proto-dir DIR]

  --root DIR         directory to serve (required)
  --listen ADDR      host:port to serve gRPC on (default 127.0.0.1:50051; port 0 picks a free one)
  --max-age SECONDS  how long edges may cache a file without asking again; its etag
                     follows size and mtime (default 10; 0: ask every time)
  --proto-dir DIR    where tftpgw/v1/content.proto is (default ../../proto)`);
  process.exit(flags.help ? 0 : 2);
}
const maxAge = Number(flags['max-age']);
if (!Number.isFinite(maxAge) || maxAge < 0) {
  console.error(`--max-age ${flags['max-age']}: want a number of seconds >= 0`);
  process.exit(2);
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

const rootDir = (() => {
  try {
    const real = fs.realpathSync(flags.root);
    if (fs.statSync(real).isDirectory()) return real;
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

// resolve returns p with every symbolic link and ".." resolved, like
// fs.realpath, but also when p (or a directory on the way) does not exist:
// the missing part is kept as it is, and a dangling link is followed to
// its target. It is Python's os.path.realpath.
async function resolve(p, depth = 0) {
  if (depth > 40) throw Object.assign(new Error('too many levels of symbolic links'), { code: 'ELOOP' });
  try {
    return await fsp.realpath(p);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  const parent = path.dirname(p);
  if (parent === p) return p;
  const full = path.join(await resolve(parent, depth + 1), path.basename(p));
  let target;
  try {
    target = await fsp.readlink(full);
  } catch {
    return full; // missing, not a link
  }
  return resolve(path.resolve(path.dirname(full), target), depth + 1);
}

// openFile opens the regular file at rel, a path relative to the root, and
// returns its handle and stat (with bigint times). Symbolic links are
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
    if (!inside(real)) throw accessViolation(`${quote(rel)} escapes the root`);
    const { O_RDONLY, O_NONBLOCK, O_NOFOLLOW } = fs.constants;
    fh = await fsp.open(real, O_RDONLY | O_NONBLOCK | O_NOFOLLOW);
  } catch (err) {
    if (err instanceof ReadError) throw err;
    if (err.code === 'ENOENT') throw notFound(`open ${quote(rel)}: ${err.code}`);
    // permissions, symbolic link loops, ENOTDIR, a NUL byte...
    throw accessViolation(`open ${quote(rel)}: ${err.code || err.message}`);
  }
  try {
    // resolve and open are two steps: a directory on the way may have been
    // replaced by a symbolic link in between. On Linux, /proc tells which
    // file was really opened.
    if (process.platform === 'linux') {
      const opened = await fsp.readlink(`/proc/self/fd/${fh.fd}`);
      if (!inside(opened)) throw accessViolation(`${quote(rel)} escapes the root`);
    }
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw accessViolation(`${quote(rel)} is not a regular file`, 'not a regular file');
    return { fh, st };
  } catch (err) {
    await fh.close();
    if (err instanceof ReadError) throw err;
    throw internalError(`stat ${quote(rel)}: ${err.code || err.message}`);
  }
}

// etagOf is the Go backend's etag: size, modification time (ns), change
// time (ns) and inode number, in hex. The change time cannot be set, and a
// file renamed into place is another inode, so copies that keep the mtime
// (cp -p, rsync -a) and same-length edits still change it.
function etagOf(st) {
  return `${st.size.toString(16)}-${st.mtimeNs.toString(16)}-${st.ctimeNs.toString(16)}-${st.ino.toString(16)}`;
}

// checkRequest refuses what the edge never sends (it normalises the path).
function checkRequest(req) {
  if (req.path.startsWith('/') || req.path.startsWith('\\')) {
    throw new ReadError(grpc.status.INVALID_ARGUMENT, 'path is absolute');
  }
  if (req.path.split(/[/\\]/).includes('..')) {
    throw new ReadError(grpc.status.INVALID_ARGUMENT, 'path has a ".." element');
  }
  if (req.offset > MAX_OFFSET) {
    throw new ReadError(grpc.status.INVALID_ARGUMENT, 'offset out of range');
  }
}

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
  try {
    checkRequest(req);
    const opened = await openFile(req.path);
    fh = opened.fh;
    const { st } = opened;
    const etag = etagOf(st);
    if (req.if_match !== '' && req.if_match !== etag) {
      throw new ReadError(grpc.status.FAILED_PRECONDITION,
        `etag mismatch: want ${quote(req.if_match)}, have ${quote(etag)}`, 0, 'file changed');
    }

    // The header comes first and describes the whole file, even when the
    // request has an offset. The edge must have it within its header
    // budget (2 s by default).
    const header = { size: Number(st.size), etag };
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
        throw internalError(`read ${quote(req.path)}: ${err.code || err.message}`);
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
      `path=${quote(req.path)} offset=${req.offset} status=${outcome} bytes=${sent} ms=${ms.toFixed(1)}` +
      (detail ? ` error=${quote(detail)}` : ''));
  }
}

// quote quotes s for a log line, the same way the Python example does.
function quote(s) {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
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
  log(`tftp-backend (node) serving on ${host}:${port} root=${rootDir}`);
});

function stop() {
  log(`stopping: running calls get ${STOP_GRACE_MS / 1000} s`);
  const timer = setTimeout(() => server.forceShutdown(), STOP_GRACE_MS);
  timer.unref();
  server.tryShutdown(() => clearTimeout(timer));
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
