#!/usr/bin/env bash
# What checking a content's SHA-256 costs the edge: tftpgw reads one file
# through tftp-backend with the digest in the header (-digest) and without
# it, in interleaved rounds, and the edge's CPU per GiB is compared.
# The edge cache is off (-cache-size 0), so every transfer is its own
# backend stream, hashed by the edge as it arrives. Only 127.0.0.1.
#
#   testdata/bench/digest.sh            # 5 pairs of 16 x 256 MiB
#   DIGEST_ROUNDS=3 DIGEST_MIB=64 testdata/bench/digest.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${DIGEST_ROUNDS:-5}
MIB=${DIGEST_MIB:-256}
PORT=${DIGEST_PORT:-26990}
WORK=$(mktemp -d /tmp/tftpgw-digest.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
(cd "$REPO" && go build -o "$WORK/bin/" ./cmd/tftpgw ./cmd/tftp-backend ./cmd/tftpbench)
mkdir -p "$WORK/root"
head -c $((MIB << 20)) /dev/urandom >"$WORK/root/f"
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; } # utime+stime of a process, in ticks
round() {
	local digest=$1
	"$WORK/bin/tftp-backend" -listen "127.0.0.1:$((PORT + 1))" -root "$WORK/root" -digest="$digest" \
		-digest-sync-max 4GiB -digest-wait 30s 2>"$WORK/backend.log" &
	local be=$!
	PIDS+=("$be")
	sleep 0.5
	"$WORK/bin/tftpgw" -listen "127.0.0.1:$PORT" -backend "127.0.0.1:$((PORT + 1))" -cache-size 0 2>"$WORK/tftpgw.log" &
	local gw=$!
	PIDS+=("$gw")
	sleep 0.5
	local bench=("$WORK/bin/tftpbench" -server "127.0.0.1:$PORT" -file f -blksize 1468 -windowsize 16 -verify-file "$WORK/root/f")
	timeout 120 "${bench[@]}" -c 1 -n 1 >/dev/null # the backend hashes the file (once) for this one
	local c0 t0
	c0=$(cpu "$gw")
	t0=$(date +%s.%N)
	timeout 600 "${bench[@]}" -c 4 -n 16 >"$WORK/bench.txt"
	local c1 t1
	c1=$(cpu "$gw")
	t1=$(date +%s.%N)
	kill "$gw" "$be"
	wait "$gw" "$be" 2>/dev/null || true
	awk -v d="$digest" -v c="$((c1 - c0))" -v t="$TCK" -v g="$(echo "16 * $MIB / 1024" | bc -l)" -v w="$(echo "$t1 - $t0" | bc -l)" \
		'BEGIN { printf "digest=%-5s edge %.2f CPU-s for %.1f GiB: %.2f CPU-s/GiB (wall %.1f s)\n", d, c/t, g, c/t/g, w }'
}
for _ in $(seq 1 "$ROUNDS"); do
	round true
	round false
done
