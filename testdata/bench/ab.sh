#!/usr/bin/env bash
# Interleaved A/B of tftpgw builds (and dnsmasq) on one small request:
# server CPU-µs per request, user and kernel, from /proc/PID/stat.
#
#   testdata/bench/ab.sh KIND ROUNDS SERVER...
#
# KIND is miss (a missing pxelinux.cfg/ name, ERROR 1 expected), probe
# (tsize with blksize 1468, answered with ERROR 8) or config (a 300-byte
# file with blksize 1468 and tsize, verified). Each SERVER is a directory
# holding a tftpgw binary (say one built from each tree compared), or
# "dnsmasq" (needs root: it listens on 127.0.0.1:69). Every round runs
# each server once, fresh, in the order given, with AB_N requests (default
# 40000), 8 at a time, from the 4094 addresses of 127.1.0.0/20, as
# fleet.sh's S does; tftpbench comes from AB_TFTPBENCH or the first
# directory. tftpgw runs as fleet.sh runs it, with AB_GWFLAGS added.
# BENCHMARKS.md ("Small requests: what the Go runtime costs") has runs.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
KIND=$1 ROUNDS=$2; shift 2
N=${AB_N:-40000}
TB=${AB_TFTPBENCH:-}
for s in "$@"; do [ -z "$TB" ] && [ -x "$s/tftpbench" ] && TB="$s/tftpbench"; done
[ -n "$TB" ] || { echo "${0##*/}: no tftpbench: set AB_TFTPBENCH" >&2; exit 2; }
command -v jq >/dev/null || { echo "${0##*/}: jq is required" >&2; exit 2; }
ROOT=$(mktemp -d /tmp/tftpgw-ab.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/pxelinux.cfg"
head -c 40000 /dev/urandom >"$ROOT/pxelinux.0"
head -c 300 /dev/zero | tr '\0' '#' >"$ROOT/pxelinux.cfg/default"
chmod -R a+rX "$ROOT"
case $KIND in
miss) ARGS=(-file pxelinux.cfg/01-52-54-00-00-00-01 -expect-error 1) ;;
probe) ARGS=(-file pxelinux.0 -probe -blksize 1468) ;;
config) ARGS=(-file pxelinux.cfg/default -blksize 1468 -tsize -verify-file "$ROOT/pxelinux.cfg/default") ;;
*) echo "${0##*/}: KIND is miss, probe or config" >&2; exit 2 ;;
esac
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
for r in $(seq "$ROUNDS"); do
	for s in "$@"; do
		if [ "$s" = dnsmasq ]; then
			dnsmasq --no-daemon --conf-file=/dev/null --pid-file= --port=0 --no-resolv --no-hosts --enable-tftp \
				--tftp-root="$ROOT" --listen-address=127.0.0.1 --bind-interfaces --tftp-max=2000 --user=root --quiet-tftp \
				--log-facility=/dev/null 2>/dev/null & PID=$!
			addr=127.0.0.1:69
		else
			# shellcheck disable=SC2086
			"$s/tftpgw" -listen 127.0.0.1:26969 -root "$ROOT" -log-level error -drain-timeout 1s -stats-interval 1h ${AB_GWFLAGS:-} & PID=$!
			addr=127.0.0.1:26969
		fi
		sleep 0.5
		read -r u0 s0 < <(ticks "$PID")
		out=$(timeout 300 "$TB" -server "$addr" -json -progress=false "${ARGS[@]}" -c 8 -n "$N" -src 127.1.0.0/20 2>/dev/null || true)
		read -r u1 s1 < <(ticks "$PID")
		kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
		ok=$(jq -r '.ok // 0' <<<"$out") el=$(jq -r '.elapsed_seconds // 0' <<<"$out")
		awk -v s="$s" -v r="$r" -v ok="$ok" -v u=$((u1 - u0)) -v k=$((s1 - s0)) -v t="$TCK" -v el="$el" 'BEGIN {
			if (ok == 0) { printf "round %d %-28s no expected answer\n", r, s; exit }
			printf "round %d %-28s ok=%d  user %.1f + kernel %.1f = %.1f µs/request  %.0f requests/s\n",
				r, s, ok, u / t * 1e6 / ok, k / t * 1e6 / ok, (u + k) / t * 1e6 / ok, ok / el }'
	done
done
