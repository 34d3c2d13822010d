#!/usr/bin/env bash
# What a configuration's rewrite rules and policy cost the edge per
# request: 20,000 small transfers (a 1000-byte pxelinux.cfg/default, 8 at
# a time) from tftpgw -root with three configurations, in interleaved
# rounds, and the edge's CPU seconds compared:
#   plain     no rules, no policy
#   rules     a deny rule, 2 rewrite rules, 4 policy rules (examples/tftpgw.yaml's)
#   ifexists  rules plus the per-client {client_ip} rule with if_exists
#             (which opens hosts/127.0.0.1/pxelinux.cfg/default first, and
#             fails: it does not exist)
# The edge cache is off, the client limits lifted. Only 127.0.0.1.
#
#   testdata/bench/config.sh             # 5 rounds
#   CONFIG_ROUNDS=3 testdata/bench/config.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${CONFIG_ROUNDS:-5}
PORT=${CONFIG_PORT:-26980}
WORK=$(mktemp -d /tmp/tftpgw-config.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; rm -rf "$WORK"; }
trap cleanup EXIT
(cd "$REPO" && go build -o "$WORK/bin/" ./cmd/tftpgw ./cmd/tftpbench)
mkdir -p "$WORK/root/pxelinux.cfg"
head -c 1000 /dev/urandom >"$WORK/root/pxelinux.cfg/default"
limits='limits: {max_sessions_per_client: 10000, rrq_per_second_per_client: -1}'
printf 'root: %s\n%s\n' "$WORK/root" "$limits" >"$WORK/plain.yaml"
rules="rewrite:
  - {match: '^secret/', deny: true}
  - {match: '^/?boot/(.*)\$', replace: '\$1'}
  - {match: '(?i)^pxelinux\\.cfg/(.*)\$', replace: 'pxelinux.cfg/\$1', lowercase: true}
policy:
  - {clients: [10.0.0.0/8, \"fd00::/8\"], allow: true}
  - {clients: [10.9.0.0/16], refuse_options: [windowsize], max_blksize: 1024}
  - {clients: [127.0.0.0/8], allow: true}
  - {clients: [\"0.0.0.0/0\", \"::/0\"], allow: false, action: drop}"
printf 'root: %s\n%s\n%s\n' "$WORK/root" "$limits" "$rules" >"$WORK/rules.yaml"
printf 'root: %s\n%s\n%s\n' "$WORK/root" "$limits" "$(echo "$rules" | sed "4a\\  - {match: '^(.*)\$', replace: 'hosts/{client_ip}/\$1', if_exists: true}")" >"$WORK/ifexists.yaml"
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; } # utime+stime, in ticks
round() {
	"$WORK/bin/tftpgw" -config "$WORK/$1.yaml" -listen "127.0.0.1:$PORT" -log-level warn -cache-size 0 2>"$WORK/tftpgw.log" &
	PID=$!
	sleep 0.3
	local c0 c1
	c0=$(cpu "$PID")
	timeout 120 "$WORK/bin/tftpbench" -server "127.0.0.1:$PORT" -file pxelinux.cfg/default -c 8 -n 20000 -json >"$WORK/out.json"
	c1=$(cpu "$PID")
	kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['ok']==20000 else 1)" "$WORK/out.json" ||
		{ echo "$1: transfers failed: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['failed'], d['errors'])" "$WORK/out.json")" >&2; tail -3 "$WORK/tftpgw.log" >&2; }
	echo "scale=2; ($c1 - $c0) / $TCK" | bc
}
printf '%-6s %8s %8s %9s   (server CPU seconds for 20,000 requests)\n' round plain rules ifexists
for i in $(seq "$ROUNDS"); do
	printf '%-6s %8s %8s %9s\n' "$i" "$(round plain)" "$(round rules)" "$(round ifexists)"
done
