#!/usr/bin/env python3
"""Example tftpgw stats sink in Python: prints what the edges report.

It implements tftpgw.v1.StatsSink (../../proto/tftpgw/v1/stats.proto) the
way the reference collector (cmd/tftp-collector) receives events:

  * Each Publish stream is one batch of one edge. Every event is printed
    to stdout as one line: a SessionStats as a "session" line (outcome,
    client, path, bytes, duration and the details an operator looks for),
    a ServerStats as a "server" line (the edge's counters for the
    interval). Diagnostics go to stderr.
  * The batch is acknowledged once its lines are written and flushed:
    PublishResponse.events_received is the number of events read from the
    stream, copies included, as stats.proto asks. If stdout cannot be
    written the call fails (INTERNAL) and acknowledges nothing, so the edge
    sends the events again.
  * An edge sends again the events of a batch whose acknowledgement it did
    not get, so an event can arrive twice: StatsEvent.instance (the edge
    process) and sequence (1, 2, 3... per process) tell the copies, which
    are not printed again, and the gaps, events the edge dropped (its queue
    was full), which are logged.

Usage:

    /usr/bin/python3 collector.py [--listen 127.0.0.1:7069]
    tftpgw -backend ... -stats-sink 127.0.0.1:7069 [-stats-interval 60s]

Needs grpcio and protobuf (Debian: apt-get install python3-grpcio
python3-protobuf). The code generated from the protos is in tftpgw/v1/;
regenerate it with `make generate`.
"""

import argparse
import asyncio
import collections
import ipaddress
import logging
import re
import signal
import sys

import grpc

from tftpgw.v1 import stats_pb2, stats_pb2_grpc

# How long running streams may finish after SIGTERM or SIGINT.
STOP_GRACE = 5.0

# The edge processes whose sequence numbers are remembered, least recently
# heard from forgotten first: a bound on memory whatever edges send.
MAX_INSTANCES = 4096

log = logging.getLogger("stats-sink")


def quote(s):
    """Quotes text for a line: backslash, double quote and control
    characters escaped, so that a line is always one line."""
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", s) + '"'


def address(a):
    """host:port of an Address, [host]:port for IPv6, - if absent."""
    if not a.ip:
        return "-"
    return f"[{a.ip}]:{a.port}" if ":" in a.ip else f"{a.ip}:{a.port}"


def enum_name(enum, value, prefix):
    """OUTCOME_OK -> OK, DIRECTION_WRITE -> WRITE; a number the stubs do not
    know (a newer edge) as it is."""
    try:
        return enum.Name(value).removeprefix(prefix)
    except ValueError:
        return str(value)


def session_line(s):
    """One line for a finished TFTP session."""
    direction = "write" if s.direction == stats_pb2.DIRECTION_WRITE else "read"
    # The bytes of the file: those the client acknowledged for a read (the
    # file's size when it completed), those received for an upload.
    moved = s.bytes_received if direction == "write" else s.bytes_acked
    fields = [
        s.start_time.ToJsonString() if s.HasField("start_time") else "-",
        "session",
        direction,
        enum_name(stats_pb2.Outcome, s.outcome, "OUTCOME_"),
        f"client={address(s.client_address)}",
        f"path={quote(s.path)}",
        f"bytes={moved}",
        f"ms={s.duration.ToNanoseconds() / 1e6:.1f}",
        f"edge={quote(s.edge_id)}",
        f"id={quote(s.session_id)}",
        f"tsize={s.transfer_size}",
        f"blksize={s.block_size}",
        f"windowsize={s.window_size}",
        f"retransmits={s.retransmits}",
    ]
    if s.rewritten_path:
        fields.append(f"rewritten={quote(s.rewritten_path)}")
    if s.HasField("error_sent"):
        fields.append(f"error_sent={s.error_sent.code}:{quote(s.error_sent.message)}")
    if s.HasField("error_received"):
        fields.append(f"error_received={s.error_received.code}:{quote(s.error_received.message)}")
    if s.HasField("backend"):
        b = s.backend
        fields.append(f"backend={b.peer or '-'}")
        if b.HasField("header_latency"):
            fields.append(f"header_ms={b.header_latency.ToNanoseconds() / 1e6:.1f}")
        if b.resumes:
            fields.append(f"resumes={b.resumes}")
    return " ".join(fields)


def server_line(r):
    """One line for an edge's periodic report: the counters of its interval
    (delta), and the edge's totals since it started."""
    d, t = r.delta, r.total
    sessions = t.sessions_ok + t.sessions_error + t.sessions_probe + t.sessions_aborted + t.sessions_timeout
    errors = ",".join(f"{code}:{n}" for code, n in sorted(d.errors_sent.items())) or "-"
    backend = ",".join(f"{code}:{n}" for code, n in sorted(d.backend_errors.items())) or "-"
    return " ".join([
        r.time.ToJsonString() if r.HasField("time") else "-",
        "server",
        f"edge={quote(r.edge_id)}",
        f"final={'true' if r.final else 'false'}",
        f"interval_s={r.interval.ToNanoseconds() / 1e9:.1f}",
        f"active={r.active_sessions}",
        f"ok={d.sessions_ok}",
        f"error={d.sessions_error}",
        f"probe={d.sessions_probe}",
        f"aborted={d.sessions_aborted}",
        f"timeout={d.sessions_timeout}",
        f"bytes_sent={d.bytes_sent}",
        f"retransmits={d.retransmits}",
        f"uploads_ok={d.uploads_ok}",
        f"bytes_received={d.bytes_received}",
        f"busy={d.busy_refusals}",
        f"errors_sent={errors}",
        f"backend_errors={backend}",
        f"dropped={d.stats_events_dropped}",
        f"total_sessions={sessions}",
        f"total_bytes_sent={t.bytes_sent}",
    ])


class Sequences:
    """The next sequence number expected from each edge process, to drop
    the copies of events an edge sends again and see the gaps."""

    def __init__(self):
        self.next = collections.OrderedDict()  # instance -> next sequence
        self.copies = 0

    def is_copy(self, ev):
        """Whether ev is a copy of an event already written."""
        expected = self.next.get(ev.instance) if ev.sequence and ev.instance else None
        return expected is not None and ev.sequence < expected

    def record(self, ev, edge):
        """Remembers that ev was written; logs the gap before it, if any."""
        seq, instance = ev.sequence, ev.instance
        if seq == 0 or not instance:  # an edge that does not number its events
            return
        expected = self.next.get(instance)
        if expected is not None and seq > expected:
            log.warning("stats events missing from edge=%s instance=%s: %d before sequence %d "
                        "(the edge dropped them and counts them in stats_events_dropped)",
                        quote(edge), instance, seq - expected, seq)
        self.next[instance] = max(seq + 1, expected or 0)
        self.next.move_to_end(instance)
        while len(self.next) > MAX_INSTANCES:
            self.next.popitem(last=False)


class StatsSink(stats_pb2_grpc.StatsSinkServicer):
    def __init__(self, out):
        self.out = out
        self.sequences = Sequences()

    async def Publish(self, request_iterator, context):
        peer, edge, n = context.peer(), "-", 0
        try:
            # The events are handled one by one on the event loop, so the
            # streams of many edges (and a retried batch running next to
            # its first try) interleave safely.
            async for ev in request_iterator:
                kind = ev.WhichOneof("event")
                if kind == "session":
                    edge = ev.session.edge_id
                elif kind == "server":
                    edge = ev.server.edge_id
                if self.sequences.is_copy(ev):
                    self.sequences.copies += 1
                else:
                    if kind == "session":
                        self.out.write(session_line(ev.session) + "\n")
                    elif kind == "server":
                        self.out.write(server_line(ev.server) + "\n")
                    else:  # a newer edge's event: still acknowledged
                        log.info("unknown stats event from %s, sequence %d", peer, ev.sequence)
                    # Written before it counts as seen: an event whose line
                    # could not be written is not taken for a copy when the
                    # edge sends it again.
                    self.out.flush()
                    self.sequences.record(ev, edge)
                n += 1
        except OSError as e:
            log.error("cannot write events: %s", e)
            await context.abort(grpc.StatusCode.INTERNAL, "stats sink cannot store events")
        # Every event is written: the edge may count them as delivered.
        log.debug("batch from %s edge=%s: %d events (%d copies so far)", peer, quote(edge), n, self.sequences.copies)
        return stats_pb2.PublishResponse(events_received=n)


async def serve(args):
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    stats_pb2_grpc.add_StatsSinkServicer_to_server(StatsSink(sys.stdout), server)
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        raise SystemExit(f"--listen {args.listen}: {e}")
    if port == 0:
        raise SystemExit(f"--listen {args.listen}: cannot listen")
    await server.start()
    host = args.listen.rsplit(":", 1)[0]
    log.info("stats sink (python) serving on %s:%d", host, port)
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning("accepting stats from anyone who can reach %s: no TLS and no authentication", args.listen)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: running streams get %.0f s", STOP_GRACE)
    await server.stop(STOP_GRACE)


def main():
    p = argparse.ArgumentParser(description="Example tftpgw stats sink: prints one line per session and per server report.")
    p.add_argument("--listen", default="127.0.0.1:7069",
                   help="host:port to serve gRPC on (default %(default)s; port 0 picks a free one)")
    p.add_argument("--debug", action="store_true", help="log every batch to stderr")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
