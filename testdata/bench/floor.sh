#!/usr/bin/env bash
# The floor of a socket per session, measured beside tftpgw and dnsmasq:
# a bare single-threaded C server (testdata/bench/floor/lockstep.c, one
# epoll loop, and the same on io_uring) with none of a server's work but
# the sockets, in the issue-19 scenarios. Needs root (dnsmasq on port 69),
# cc, liburing-dev, dnsmasq and jq; BENCHMARKS.md ("The floor of a socket
# per session") has a run.
#
#   testdata/bench/floor.sh BINDIR [ROUNDS]
#
# BINDIR holds tftpgw and tftpbench (go build -o BINDIR ./cmd/tftpgw
# ./cmd/tftpbench). Prints, per scenario, each server's CPU: lock-step
# 200 x 16 MiB at blksize 1468 (CPU-s per GiB), the three small requests
# (testdata/bench/ab.sh, CPU-µs per request) and the 100-machine storm
# (wall s and CPU-s), servers interleaved in each round.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
BIN=$(cd "$1" && pwd) R=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/tftpgw-floor.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$W"' EXIT
cc -O2 -o "$W/lockstep" "$HERE/floor/lockstep.c" -luring
# Directories that ab.sh runs as "tftpgw": -single-port, and the C server.
mkdir -p "$W/tftpgw-single-port" "$W/c-epoll" "$W/c-io_uring"
printf '#!/bin/sh\nexec %s "$@" -single-port\n' "$BIN/tftpgw" >"$W/tftpgw-single-port/tftpgw"
for m in epoll:epoll io_uring:uring; do # directory:lockstep's mode
	cat >"$W/c-${m%%:*}/tftpgw" <<EOS
#!/bin/bash
while [ \$# -gt 0 ]; do case \$1 in -listen) port=\${2##*:}; shift 2;; -root) root=\$2; shift 2;; *) shift;; esac; done
exec $W/lockstep ${m##*:} \$port \$root
EOS
done
chmod +x "$W"/*/tftpgw
TCK=$(getconf CLK_TCK)
# serve SPEC ROOT: start a server (SPEC: a directory from above, or
# dnsmasq), set PID and ADDR.
serve() {
	if [ "$1" = dnsmasq ]; then
		dnsmasq --no-daemon --conf-file=/dev/null --pid-file= --port=0 --no-resolv --no-hosts --enable-tftp \
			--tftp-root="$2" --listen-address=127.0.0.1 --bind-interfaces --tftp-max=10000 --user=root --quiet-tftp \
			--log-facility=/dev/null 2>/dev/null & PID=$!
		ADDR=127.0.0.1:69
	else
		"$1/tftpgw" -listen 127.0.0.1:28996 -root "$2" -log-level error -drain-timeout 1s -stats-interval 1h \
			-max-sessions -1 -max-sessions-per-client -1 -client-rate -1 & PID=$!
		ADDR=127.0.0.1:28996
	fi
	sleep 0.5
}
# cpu: the server's user + system CPU-s so far.
cpu() { awk -v t="$TCK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$PID/stat"; }
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
SERVERS=("$BIN" "$W/tftpgw-single-port" dnsmasq "$W/c-epoll" "$W/c-io_uring")
name() { case $1 in "$BIN") echo tftpgw ;; dnsmasq) echo dnsmasq ;; *) basename "$1" ;; esac; }

echo "== lock-step: 200 x 16 MiB, blksize 1468, server CPU-s per GiB"
mkdir -p "$W/a" && head -c $((16 << 20)) /dev/urandom >"$W/a/a.bin"
for r in $(seq "$R"); do
	for s in "${SERVERS[@]}"; do
		serve "$s" "$W/a"
		c0=$(cpu)
		out=$(timeout 300 "$BIN/tftpbench" -server "$ADDR" -file a.bin -blksize 1468 -c 200 -n 200 -json -progress=false || true)
		c1=$(cpu)
		stop
		jq -r --arg s "$(name "$s")" --arg r "$r" --arg c "$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')" \
			'"round \($r) \($s)\tok=\(.ok) failed=\(.failed)\t\(($c|tonumber) / (.bytes / 1073741824) * 100 | floor / 100) CPU-s/GiB"' <<<"$out"
	done
done

for k in miss probe config; do
	echo "== $k: server CPU-µs per request"
	AB_TFTPBENCH="$BIN/tftpbench" bash "$HERE/ab.sh" "$k" "$R" "$BIN" "$W/tftpgw-single-port" dnsmasq "$W/c-epoll" | sed "s|$W/||; s|$BIN|tftpgw|"
done

echo "== storm: 100 machines (boot/pxelinux-bios.boot), wall s and server CPU-s"
mkdir -p "$W/x/pxelinux.cfg"
head -c $((1 << 20)) /dev/urandom >"$W/x/pxelinux.0"
head -c 300 /dev/zero | tr '\0' '#' >"$W/x/pxelinux.cfg/default"
head -c $((8 << 20)) /dev/urandom >"$W/x/vmlinuz"
head -c $((16 << 20)) /dev/urandom >"$W/x/initrd.img"
chmod -R a+rX "$W/x"
for r in $(seq 1 $((R > 2 ? 2 : R))); do
	for s in "${SERVERS[@]}"; do
		serve "$s" "$W/x"
		c0=$(cpu)
		out=$(timeout 600 "$BIN/tftpbench" -server "$ADDR" -boot "$HERE/boot/pxelinux-bios.boot" -c 100 -n 100 -src 127.1.0.0/16 -json -progress=false || true)
		c1=$(cpu)
		stop
		jq -r --arg s "$(name "$s")" --arg r "$r" --arg c "$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')" \
			'"round \($r) \($s)\tbooted=\(.booted) failed=\(.failed)\twall \(.elapsed_seconds * 10 | floor / 10) s\tCPU \($c) s"' <<<"$out"
	done
done
