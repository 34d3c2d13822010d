#!/usr/bin/env bash
# Compares two builds of tftpgw side by side, in one run, on the scenarios
# where a change to the engine or the transport would show: A (200 x 16 MiB
# lock-step at once, blksize 1468), B (5 transfers of 100 MiB one after the
# other, blksize 8192, windowsize 16) and C (the same with blksize 65464,
# windowsize 64), embedded backend (-root). Rounds alternate between the builds, each
# with a fresh server; the server's CPU (utime + stime) per GiB and MB/s
# are printed per round and as medians. Only 127.0.0.1.
#
#   testdata/bench/compare.sh [OLD_REV]   # OLD_REV (default main) against the working tree
#
# Knobs: COMPARE_ROUNDS (3), COMPARE_PORT (26980), COMPARE_SCENARIOS ("A B C").
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OLD=${1:-main}
ROUNDS=${COMPARE_ROUNDS:-3}
PORT=${COMPARE_PORT:-26980}
SCENARIOS=${COMPARE_SCENARIOS:-A B C}
WORK=$(mktemp -d /tmp/tftpgw-compare.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	git -C "$REPO" worktree remove --force "$WORK/old-src" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
git -C "$REPO" worktree add -q --detach "$WORK/old-src" "$OLD"
(cd "$WORK/old-src" && go build -o "$WORK/old/" ./cmd/tftpgw)
(cd "$REPO" && go build -o "$WORK/new/" ./cmd/tftpgw && go build -o "$WORK/" ./cmd/tftpbench)
mkdir -p "$WORK/root"
head -c $((16 << 20)) /dev/urandom >"$WORK/root/a.bin"
head -c $((100 << 20)) /dev/urandom >"$WORK/root/b.bin"
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
args() {
	case $1 in
	A) echo "-file a.bin -blksize 1468 -c 200 -n 200 -verify-file $WORK/root/a.bin" ;;
	B) echo "-file b.bin -blksize 8192 -windowsize 16 -c 1 -n 5 -verify-file $WORK/root/b.bin" ;;
	C) echo "-file b.bin -blksize 65464 -windowsize 64 -c 1 -n 5 -verify-file $WORK/root/b.bin" ;;
	esac
}
mib() { case $1 in A) echo $((200 * 16)) ;; *) echo 500 ;; esac; }
: >"$WORK/results"
round() { # scenario build round
	"$WORK/$2/tftpgw" -listen "127.0.0.1:$PORT" -root "$WORK/root" -client-rate -1 -max-sessions-per-client -1 2>/dev/null &
	local gw=$!
	PIDS+=("$gw")
	sleep 0.3
	local c0 t0 c1 t1
	c0=$(cpu "$gw")
	t0=$(date +%s.%N)
	# shellcheck disable=SC2046
	timeout 300 "$WORK/tftpbench" -server "127.0.0.1:$PORT" $(args "$1") -rcvbuf 4194304 >"$WORK/out" 2>&1 || echo "  ($1 $2 round $3 failed: $(tail -1 "$WORK/out"))"
	c1=$(cpu "$gw")
	t1=$(date +%s.%N)
	kill "$gw"
	wait "$gw" 2>/dev/null || true
	awk -v s="$1" -v b="$2" -v r="$3" -v c="$((c1 - c0))" -v tck="$TCK" -v m="$(mib "$1")" -v w="$(echo "$t1 - $t0" | bc -l)" \
		'BEGIN { printf "%s %s %d %.3f %.1f\n", s, b, r, c/tck/(m/1024), m*1.048576/w }' | tee -a "$WORK/results"
}
echo "scenario build round CPU-s/GiB MB/s   (old = $OLD, new = working tree)"
for s in $SCENARIOS; do
	for r in $(seq 1 "$ROUNDS"); do
		if ((r % 2)); then round "$s" old "$r"; round "$s" new "$r"; else round "$s" new "$r"; round "$s" old "$r"; fi
	done
done
echo
echo "medians: scenario build CPU-s/GiB MB/s"
for s in $SCENARIOS; do
	for b in old new; do
		c=$(awk -v s="$s" -v b="$b" '$1==s && $2==b {print $4}' "$WORK/results" | median)
		m=$(awk -v s="$s" -v b="$b" '$1==s && $2==b {print $5}' "$WORK/results" | median)
		echo "$s $b $c $m"
	done
done
