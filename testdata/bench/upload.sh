#!/usr/bin/env bash
# Uploads side by side: tftpgw -root (uploads on), tftpd-hpa's in.tftpd -c
# and atftpd, each receiving the same uploads from tftpbench -put, in
# interleaved rounds: 40 files of 8 MiB, 4 at a time, blksize 1468, in
# lock-step (every server) and with windowsize 8 (tftpgw and atftpd; in.tftpd
# has no windowsize). Reported per server: wall seconds and the server's
# CPU seconds per GiB received, from a cgroup made for the server (v2 or
# v1 cpuacct), which counts in.tftpd's child per upload too. Every upload
# must succeed and be stored with its size. Loopback only; needs root
# (in.tftpd -s chroots, the cgroup) and skips a server that is not
# installed.
#
#   testdata/bench/upload.sh              # 3 rounds
#   UPLOAD_ROUNDS=5 testdata/bench/upload.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${UPLOAD_ROUNDS:-3}
PORT=${UPLOAD_PORT:-26990}
N=40 C=4 SIZE=$((8 << 20))
WORK=$(mktemp -d /tmp/tftpgw-upload.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; rm -rf "$WORK"; }
trap cleanup EXIT
(cd "$REPO" && go build -o "$WORK/bin/" ./cmd/tftpgw ./cmd/tftpbench)
CG=""
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	CG=/sys/fs/cgroup/tftpgw-upload-$$; mkdir "$CG"; cpu() { awk '$1 == "usage_usec" {print $2 / 1e6}' "$CG/cpu.stat"; }
elif [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
	CG=/sys/fs/cgroup/cpuacct/tftpgw-upload-$$; mkdir "$CG"; cpu() { awk '{print $1 / 1e9}' "$CG/cpuacct.usage"; }
else
	echo "no cgroup: cannot count in.tftpd's children" >&2; exit 1
fi
trap 'cleanup; for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do echo "$p" >"$(dirname "$CG")/cgroup.procs"; done; rmdir "$CG"' EXIT
files=$(seq -f 'up/f%g' 1 "$N" | paste -sd,)
start() { # server dir
	rm -rf "$2"; mkdir -p "$2/up"; chmod 777 "$2" "$2/up"
	case $1 in
	tftpgw) "$WORK/bin/tftpgw" -root "$2" -listen "127.0.0.1:$PORT" -upload-allow 'up/*' -upload-max-size 0 -upload-overwrite \
		-max-sessions-per-client -1 -client-rate -1 -log-level warn 2>"$WORK/server.log" & ;;
	in.tftpd) in.tftpd -L -c -s "$2" -a "127.0.0.1:$PORT" 2>"$WORK/server.log" & ;;
	atftpd) atftpd --daemon --no-fork --port "$PORT" --bind-address 127.0.0.1 --maxthread 100 --logfile /dev/null --user root --group root "$2" 2>"$WORK/server.log" & ;;
	esac
	PID=$!
	echo "$PID" >"$CG/cgroup.procs"
	sleep 0.3
}
run() { # server window -> "wall cpu" per GiB
	local dir=$WORK/root-$1 c0 c1 t0 t1 opt=()
	[ "$2" -gt 1 ] && opt=(-windowsize "$2")
	start "$1" "$dir"
	c0=$(cpu); t0=$(date +%s.%N)
	timeout 300 "$WORK/bin/tftpbench" -server "127.0.0.1:$PORT" -put -size "$SIZE" -file "$files" -c "$C" -n "$N" -blksize 1468 "${opt[@]}" -json >"$WORK/out.json"
	t1=$(date +%s.%N); sleep 0.5; c1=$(cpu)
	kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['ok']==$N else 1)" "$WORK/out.json" ||
		{ echo "$1 w$2: uploads failed: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['failed'], d['errors'])" "$WORK/out.json")" >&2; }
	local stored; stored=$(find "$dir/up" -type f -size "${SIZE}c" | wc -l)
	[ "$stored" -eq "$N" ] || echo "$1 w$2: $stored of $N files stored whole" >&2
	echo "scale=2; g=$N*$SIZE/1073741824; ($t1-$t0)/g" | bc | tr '\n' ' '
	echo "scale=2; g=$N*$SIZE/1073741824; ($c1-$c0)/g" | bc
}
have() { command -v "$1" >/dev/null; }
printf '%-6s %-9s %-7s %12s %14s\n' round server window 'wall s/GiB' 'server CPU-s/GiB'
for i in $(seq "$ROUNDS"); do
	for w in 1 8; do
		for s in tftpgw in.tftpd atftpd; do
			[ "$s" = tftpgw ] || have "$s" || continue
			[ "$s" = in.tftpd ] && [ "$w" -gt 1 ] && continue
			out=$(run "$s" "$w") || true
			read -r wall cpu <<<"$out"
			printf '%-6s %-9s %-7s %12s %14s\n' "$i" "$s" "$w" "$wall" "$cpu"
		done
	done
done
