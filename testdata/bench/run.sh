#!/usr/bin/env bash
# End-to-end benchmark of tftpgw against tftpd-hpa, atftpd and (in A and D)
# dnsmasq on loopback; then fleet.sh (small requests, UEFI windowed, boot
# storm, against all three).
# Writes BENCHMARKS.md at the repository root (see testdata/bench/header.md
# for the method). Usage: testdata/bench/run.sh   (as root for F and the
# package installs; everything else runs as any user).
#
# Environment:
#   BENCH_OUT     output file (default: REPO/BENCHMARKS.md)
#   BENCH_ROUNDS  rounds of A (default 3); B and C run 3 rounds, F 2
#   BENCH_PORT    first port used on 127.0.0.1 (default 26900)
#   BENCH_QUICK=1 smoke run with small sizes; writes /tmp/tftpgw-bench-quick.md
#   BENCH_KEEP=1  keep the scratch directory
#   BENCH_SKIP_FLEET=1  leave out fleet.sh (small requests, UEFI windowed, boot storm)
#   BENCH_SCENARIOS     the scenarios of this script to run (default "A BC_B BC_C D E F")
set -euo pipefail

# ---- targets (the performance issue's, word for word; edit here) -------------
TARGET_A_CPU_RATIO=0.5      # A: tftpgw CPU-s/GiB <= 0.5 x tftpd-hpa's (same run)
TARGET_A_CPU_ABS=2.3        # A: ... and below 2.3 CPU-s/GiB; MB/s >= tftpd-hpa's
TARGET_GRPC_CPU_RATIO=1     # A through tftp-backend: gateway + backend CPU-s/GiB <= tftpd-hpa's
TARGET_B_RATIO=3            # B: >= 3 x tftpd-hpa's MB/s for the same request
TARGET_C_MBPS=2000          # C: one 100 MiB transfer, blksize 65464, windowsize 64
TARGET_D_SESSIONS=10000     # D: concurrent small-file sessions, 0 failures
TARGET_D_RSS_MIB=512        # D: ... RSS <= 512 MiB
TARGET_D_TTFD_P99=0.050     # D: ... time to first DATA p99 <= 50 ms
TARGET_E_READ_RATIO=1.1     # E: bytes the backend reads <= 1.1 x the file
TARGET_A_DNSMASQ_RATIO=0.8  # A (issue 19): tftpgw CPU-s/GiB <= 0.8 x dnsmasq's (same run)
TARGET_A_SP_DNSMASQ_RATIO=0.7 # A (issue 19): the same with -single-port <= 0.7 x dnsmasq's

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$REPO/testdata/bench"
QUICK=${BENCH_QUICK:-0}
ROUNDS=${BENCH_ROUNDS:-3}
PORT=${BENCH_PORT:-26900}
WORK=$(mktemp -d /tmp/tftpgw-bench.XXXXXX)
chmod 755 "$WORK" # in.tftpd drops to user tftp and must read the root
OUT=${BENCH_OUT:-$REPO/BENCHMARKS.md}
[ "$QUICK" = 1 ] && OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/tftpgw-bench-quick.md}
BIN="$WORK/bin"
ROOT="$WORK/root"
RES="$WORK/results.tsv"   # one line per measured run
NOTES="$WORK/notes.md"    # why something did not run, errors seen
NS=""                     # network namespace of F, once created
PIDS=()                   # every server started, killed on exit
CLK_TCK=$(getconf CLK_TCK)
START_TS=$(date +%s)
: >"$RES"
: >"$NOTES"

# ---- sizes --------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
	A_N=20 A_C=20 A_MIB=4 BC_MIB=16 D_C=1000 E_C=50 E_MIB=8 F_N=4 F_KIB=256 F_CAP=20
else
	A_N=200 A_C=200 A_MIB=16 BC_MIB=100 D_C=$TARGET_D_SESSIONS E_C=500 E_MIB=32 F_N=20 F_KIB=1024 F_CAP=45
fi

. "$HERE/lib.sh"

# ---- build and files ---------------------------------------------------------
# The tree the binaries are built from (the output files themselves aside).
TREE="$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -n "$(cd "$REPO" && git status --porcelain -- . ':!BENCHMARKS.md*' 2>/dev/null)" ]; then TREE="$TREE + uncommitted changes"; fi
log "building binaries into $BIN"
mkdir -p "$BIN" "$ROOT"
(cd "$REPO" && go build -o "$BIN/" ./cmd/tftpgw ./cmd/tftp-backend ./cmd/tftpbench)
GW="$BIN/tftpgw" BE="$BIN/tftp-backend" TB="$BIN/tftpbench"

log "creating test files"
mkfile() { head -c "$2" /dev/urandom >"$ROOT/$1"; }
mkfile a.bin $((A_MIB << 20))
mkfile b.bin $((BC_MIB << 20))
mkfile e.bin $((E_MIB << 20))
mkfile f.bin $((F_KIB << 10))
# 16 small files with the same 4 KiB content, so one -verify-file checks them all.
SMALL=()
mkfile s00.bin 4096
for i in $(seq -w 0 15); do [ "$i" = 00 ] || cp "$ROOT/s00.bin" "$ROOT/s$i.bin"; SMALL+=("s$i.bin"); done
SMALL_LIST=$(IFS=,; echo "${SMALL[*]}")
chmod -R a+rX "$ROOT"

# Does tftpgw have a content cache yet (another branch adds -cache-size)?
GW_HELP=$("$GW" -h 2>&1 || true)
CACHE_ARGS=()
if grep -q -- '-cache-size' <<<"$GW_HELP"; then
	if grep -q -- '-cache-size int' <<<"$GW_HELP"; then CACHE_ARGS=(-cache-size $((256 << 20))); else CACHE_ARGS=(-cache-size 256MiB); fi
fi

# bench SCEN SERVER ROUND CAP_SECONDS EXTRA tftpbench-args...: one measured
# client run against SRV_ADDR; appends a line to $RES. EXTRA is a command
# whose output (tab-separated) fills the extra columns, run after the client.
bench() {
	local scen=$1 server=$2 round=$3 cap=$4 extra=$5; shift 5
	local json="$WORK/$scen-$server-$round.json" c0 c1 b0 b1 s0 s1 rc=0
	c0=$(cpu_ns "${SRV_PIDS[@]}") b0=$(busy_ns) s0=$(sys_ns "${SRV_PIDS[@]}")
	log "$scen $server round $round: tftpbench $* (cap ${cap}s)"
	${NSEXEC:+$NSEXEC} timeout -s INT -k 15 "$cap" "$TB" -server "$SRV_ADDR" -json "$@" >"$json" 2>"$json.err" || rc=$?
	sleep 1 # let tftpd-hpa reap its per-transfer children
	c1=$(cpu_ns "${SRV_PIDS[@]}") b1=$(busy_ns) s1=$(sys_ns "${SRV_PIDS[@]}")
	LAST_SYS_NS=$((s1 - s0)) LAST_JSON=$json
	if ! jq -e .transfers "$json" >/dev/null 2>&1; then
		note "$scen $server round $round: tftpbench gave no summary (exit $rc): $(tail -c 300 "$json.err" | tr '\n' ' ')"
		printf '%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t\t\n' "$scen" "$server" "$round" >>"$RES"
		return 0
	fi
	if [ "$rc" = 124 ] || [ "$rc" = 130 ]; then
		note "$scen $server round $round: stopped by the ${cap}s cap; the numbers cover the transfers up to then."
	fi
	local errs; errs=$(jq -r '.errors | to_entries | sort_by(-.value) | .[:3] | map("\(.value)x \(.key)") | join("; ")' "$json")
	if [ -n "$errs" ]; then note "$scen $server round $round errors: ${errs:0:400}"; fi
	local ex=""; [ -n "$extra" ] && ex=$($extra)
	jq -r --arg s "$scen" --arg v "$server" --arg r "$round" --arg ct "$((c1 - c0))" --arg hz 1000000000 --arg ex "$ex" --arg busy "$((b1 - b0))" '
		(($ct|tonumber) / ($hz|tonumber)) as $cpu |
		[$s, $v, $r, .ok, .failed, .bytes, .elapsed_seconds, .mb_per_second, $cpu,
		 (if .bytes > 0 then $cpu / (.bytes / 1073741824) else 0 end),
		 .ttfb_seconds.p99, .latency_seconds.p99,
		 # cores kept busy by everything else on the machine (other users, not this run),
		 # the run itself being the servers plus tftpbench (client CPU from its summary)
		 ((((($busy|tonumber) / 1e9) - $cpu - .cpu_seconds) / (.elapsed_seconds + 1)) | if . < 0 then 0 else . end)]
		+ ($ex | split("\t")) | map(tostring) | join("\t")' "$json" >>"$RES"
}

cg_init
[ "$CG_KIND" = none ] && note "no cgroup could be made for the servers: server CPU comes from /proc/PID/stat, which misses tftpd-hpa's per-transfer children."

# ---- scenarios -----------------------------------------------------------------
# A's extra columns: the servers' kernel CPU-s per GiB (of the total), and
# tftpbench's CPU-s per GiB (it shares the 2 cores with the server).
a_extra() {
	jq -r --arg s "$LAST_SYS_NS" 'if .bytes > 0 then (.bytes / 1073741824) as $g | [($s | tonumber) / 1e9, .cpu_seconds] | map(. / $g | tostring) | join("\t") else "NA\tNA" end' "$LAST_JSON"
}
scen_A() {
	local r s
	for r in $(seq 1 "$ROUNDS"); do
		for s in tftpgw tftpgw-single-port tftpgw-grpc tftpd-hpa dnsmasq dnsmasq-default; do
			case $s in
			tftpgw) start_gw || { note "A: tftpgw did not start"; continue; } ;;
			tftpgw-single-port) start_gw -single-port || { note "A: tftpgw -single-port did not start"; continue; } ;;
			tftpgw-grpc) start_grpc || { note "A: tftpgw + tftp-backend did not start"; continue; } ;;
			tftpd-hpa) start_hpa || { note "A: tftpd-hpa did not start"; continue; } ;;
			dnsmasq) start_dnsmasq --tftp-max=1000 || continue ;;
			dnsmasq-default) start_dnsmasq || continue ;;
			esac
			bench A "$s" "$r" 300 a_extra -file a.bin -blksize 1468 -c "$A_C" -n "$A_N" -verify-file "$ROOT/a.bin"
			stop "${SRV_PIDS[@]}"
		done
	done
}

scen_BC() { # SCEN BLKSIZE WINDOWSIZE
	local scen=$1 bs=$2 ws=$3 r s
	for r in 1 2 3; do
		for s in tftpgw tftpd-hpa; do
			case $s in
			tftpgw) start_gw || { note "$scen: tftpgw did not start"; continue; } ;;
			tftpd-hpa) start_hpa || { note "$scen: tftpd-hpa did not start"; continue; } ;;
			esac
			# The measured transfer is not hashed: sha256 of 100 MiB takes
			# longer than the transfer. The one after it is verified.
			bench "$scen" "$s" "$r" 120 "" -file b.bin -blksize "$bs" -windowsize "$ws" -c 1 -n 1
			if ! ${NSEXEC:+$NSEXEC} timeout -k 5 120 "$TB" -server "$SRV_ADDR" -file b.bin -blksize "$bs" -windowsize "$ws" -n 1 -verify-file "$ROOT/b.bin" >/dev/null 2>&1; then
				note "$scen $s round $r: the verified transfer after the measured one failed"
			fi
			stop "${SRV_PIDS[@]}"
		done
	done
}

# D's extra columns: VmHWM, idle RSS, tftpbench's own CPU-s (it shares the
# 2 cores with the server), first DATA p99 by kernel timestamps.
d_extra() {
	local j="$WORK/D-$D_NAME-1.json"
	printf '%s\t%s\t%s\t%s' "$(hwm_kb "${SRV_PIDS[0]}")" "$D_IDLE_RSS" \
		"$(jq -r '.cpu_seconds // "NA"' "$j" 2>/dev/null || echo NA)" "$(jq -r '.ttfb_wire_seconds.p99 // "NA"' "$j" 2>/dev/null || echo NA)"
}
scen_D() {
	if [ "$NOFILE" -lt $((D_C + 200)) ]; then
		note "D: the open-file limit is $NOFILE (hard limit), below $D_C sockets; tftpbench will fail the excess transfers."
	fi
	# The default (a socket per session) and -single-port (no socket per
	# session), which shows what the per-session socket costs; then the
	# peers as references for what this machine allows: tftpd-hpa (a
	# process per transfer) and dnsmasq (one event loop) with its limit
	# raised to the burst.
	local args
	for D_NAME in tftpgw tftpgw-single-port tftpd-hpa dnsmasq; do
		args=(-max-sessions -1 -max-sessions-per-client -1 -client-rate -1)
		[ "$D_NAME" = tftpgw-single-port ] && args+=(-single-port)
		case $D_NAME in
		tftpd-hpa) start_hpa || continue ;;
		dnsmasq) start_dnsmasq --tftp-max="$D_C" || continue ;;
		*) start_gw "${args[@]}" || { note "D: $D_NAME did not start"; continue; } ;;
		esac
		D_IDLE_RSS=$(rss_kb "${SRV_PIDS[0]}")
		bench D "$D_NAME" 1 300 d_extra -file "$SMALL_LIST" -blksize 1468 -c "$D_C" -n "$D_C" -verify-file "$ROOT/s00.bin" -retries 5
		stop "${SRV_PIDS[@]}"
	done
}

e_extra() {
	printf '%s\t%s' "$(($(io_field "$BACKEND_PID" rchar) - E_R0))" "$(($(io_field "$BACKEND_PID" wchar) - E_W0))"
}
# E runs twice: tftp-backend as deployed (its -digest hashes each file
# version once before its first header, a read of the file of its own),
# and with -digest=false, where what the backend reads is the one stream
# the edge cache shares among the clients.
scen_E() {
	local v
	for v in tftpgw-grpc tftpgw-grpc-nodigest; do
		GRPC_BE_ARGS=()
		[ "$v" = tftpgw-grpc-nodigest ] && GRPC_BE_ARGS=(-digest=false)
		start_grpc -max-sessions -1 -max-sessions-per-client -1 -client-rate -1 "${CACHE_ARGS[@]}" || { note "E: tftpgw + tftp-backend ${GRPC_BE_ARGS[*]} did not start"; continue; }
		E_R0=$(io_field "$BACKEND_PID" rchar) E_W0=$(io_field "$BACKEND_PID" wchar)
		bench E "$v" 1 300 e_extra -file e.bin -blksize 8192 -windowsize 16 -c "$E_C" -n "$E_C" -verify-file "$ROOT/e.bin"
		stop "${SRV_PIDS[@]}"
	done
	GRPC_BE_ARGS=()
}

scen_F() {
	if [ "$IS_ROOT" != 1 ]; then note "F: not run: needs root for ip netns and nft."; return 0; fi
	if ! command -v nft >/dev/null || ! command -v ip >/dev/null; then note "F: not run: ip or nft missing (apt-get install -y iproute2 nftables)."; return 0; fi
	NS="tftpgw-bench-$$"
	if ! ip netns add "$NS" 2>"$WORK/netns.err"; then note "F: not run: ip netns add failed: $(cat "$WORK/netns.err")"; NS=""; return 0; fi
	if ! ip netns exec "$NS" sh -ec '
		ip link set lo up
		ip addr add 127.0.0.2/8 dev lo
		nft add table inet tftpbench
		nft add chain inet tftpbench in "{ type filter hook input priority 0; }"
		nft add rule inet tftpbench in meta l4proto udp numgen random mod 100 "<" 5 drop' 2>"$WORK/nft.err"; then
		note "F: not run: namespace setup or nft failed: $(tr '\n' ' ' <"$WORK/nft.err")"
		return 0
	fi
	NSEXEC="ip netns exec $NS" NSNAME=$NS
	local r s
	for r in 1 2; do
		for s in tftpgw atftpd tftpgw-retries20; do
			case $s in
			tftpgw) start_gw || { note "F: tftpgw did not start"; continue; } ;;
			tftpgw-retries20) start_gw -retries 20 || { note "F: tftpgw did not start"; continue; } ;;
			atftpd) start_atftpd || { note "F: atftpd did not start"; continue; } ;;
			esac
			bench F "$s" "$r" "$F_CAP" "" -file f.bin -blksize 1468 -c "$F_N" -n "$F_N" -verify-file "$ROOT/f.bin"
			stop "${SRV_PIDS[@]}"
		done
	done
	NSEXEC="" NSNAME=""
}

# Run each scenario; one that breaks records why and the others still run.
for s in ${BENCH_SCENARIOS:-A BC_B BC_C D E F}; do
	case $s in
	A) scen_A ;;
	BC_B) scen_BC B 8192 16 ;;
	BC_C) scen_BC C 65464 64 ;;
	D) scen_D ;;
	E) scen_E ;;
	F) scen_F ;;
	esac || note "scenario $s stopped early (exit $?)"
done

# The fleet's scenarios (small requests, UEFI windowed, boot storm) are
# fleet.sh's; its Markdown goes into the report below.
FLEET_MD="$WORK/fleet.md"
if [ "${BENCH_SKIP_FLEET:-0}" != 1 ]; then
	BENCH_OUT="$FLEET_MD" BENCH_BIN="$BIN" BENCH_PORT=$((PORT + 100)) BENCH_QUICK="$QUICK" "$HERE/fleet.sh" ||
		note "fleet.sh failed (exit $?): no fleet section"
fi
END_TS=$(date +%s)

# ---- report ---------------------------------------------------------------------
# med SCEN SERVER COLUMN: median of a column over the rounds (NA if none).
med() {
	awk -F'\t' -v s="$1" -v v="$2" -v c="$3" '$1 == s && $2 == v && $c != "NA" && $c != "" {print $c}' "$RES" |
		sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
# sumc SCEN SERVER COLUMN: sum over the rounds.
sumc() { awk -F'\t' -v s="$1" -v v="$2" -v c="$3" '$1 == s && $2 == v && $c != "NA" {t += $c; n++} END {print n ? t : "NA"}' "$RES"; }
rounds() { awk -F'\t' -v s="$1" -v v="$2" '$1 == s && $2 == v' "$RES" | wc -l; }
allr() { awk -F'\t' -v s="$1" -v v="$2" -v c="$3" -v f="$4" '$1 == s && $2 == v {printf f, (n++ ? ", " : ""), $c}' "$RES"; }
fmt() { [ "$1" = NA ] && echo "n/a" || printf "%.${2:-1}f" "$1"; }
# cmp A B: "yes" when A > B (both numbers)
gt() { awk -v a="$1" -v b="$2" 'BEGIN {print (a != "NA" && b != "NA" && a + 0 > b + 0) ? "met" : "not met"}'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN {print (a != "NA" && b != "NA" && a + 0 < b + 0) ? "met" : "not met"}'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {print (a != "NA" && b != "NA" && a + 0 >= b + 0) ? "met" : "not met"}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {print (a != "NA" && b != "NA" && a + 0 <= b + 0) ? "met" : "not met"}'; }
mul() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "NA") print "NA"; else print a * b}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "NA" || b == "NA" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b}'; }
zero() { [ "$1" = 0 ] && echo met || echo "not met"; }

{
	cat "$HERE/header.md"
	echo
	echo "## Results"
	echo
	echo "Generated by \`testdata/bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the run took $(((END_TS - START_TS) / 60)) min $(((END_TS - START_TS) % 60)) s."
	[ "$QUICK" = 1 ] && echo && echo "**BENCH_QUICK=1: small sizes, not the scenarios below.**"
	echo
	echo "| machine | |"
	echo "|---|---|"
	echo "| CPU | $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) |"
	echo "| memory | $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) |"
	echo "| kernel | $(uname -r) |"
	echo "| Go | $(go version | awk '{print $3}') |"
	echo "| tree | $TREE |"
	echo "| tftpd-hpa | $([ -n "$TFTPD_HPA" ] && dpkg-query -W -f '${Version}' tftpd-hpa 2>/dev/null || echo missing) |"
	echo "| atftpd | $([ -n "$ATFTPD" ] && "$ATFTPD" --version 2>&1 | head -1 || echo missing) |"
	echo "| dnsmasq | $([ -n "$DNSMASQ" ] && echo "$DNSMASQ_VERSION ($(dpkg-query -W -f '${Version}' dnsmasq-base 2>/dev/null || echo '?'))" || echo missing) |"
	echo "| open files | $NOFILE |"
	echo "| server CPU from | $(case $CG_KIND in v1) echo 'cgroup v1 cpuacct.usage' ;; v2) echo 'cgroup v2 cpu.stat' ;; *) echo '/proc/PID/stat (tftpd-hpa children missed)' ;; esac) |"
	echo "| net.core.rmem_max | $(cat /proc/sys/net/core/rmem_max) |"

	echo
	echo "### A: $A_N x ${A_MIB} MiB, blksize 1468, $A_C at a time, no windowsize"
	echo
	echo "$A_N transfers of a ${A_MIB} MiB file, blksize 1468, lock-step. Median of $ROUNDS rounds, run alternately. dnsmasq runs twice per round: with \`--tftp-max=1000\`, so it can serve all $A_C at once, and at its default limit of 50 sessions, to show the transfers it turns away. The targets are the issue's: tftpgw's CPU-s/GiB at most $TARGET_A_CPU_RATIO x tftpd-hpa's and below $TARGET_A_CPU_ABS, MB/s at least tftpd-hpa's, and through tftp-backend gateway + backend CPU-s/GiB at most tftpd-hpa's. The absolute $TARGET_A_CPU_ABS is dnsmasq's figure from the issue's table (338 MB/s at 2.3 CPU-s/GiB, another machine); dnsmasq measured in this run is shown next to it."
	echo
	echo "The kernel column is the part of the server CPU spent in the kernel (system calls, and the loopback delivery to the client that a send does): what any server pays that sends and receives a datagram per block through the socket API. tftpbench shares the 2 cores, which both programs keep busy: MB/s follows server plus tftpbench CPU per GiB, and tftpbench's own varies with the server it talks to."
	echo
	echo "| server | rounds | failed (all rounds) | MB/s (median) | MB/s (each round) | server CPU-s/GiB (median) | of which kernel (median) | tftpbench CPU-s/GiB (median) | transfer p99 s | cores busy elsewhere | target |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	hpa_cpu=$(med A tftpd-hpa 10) hpa_mbps=$(med A tftpd-hpa 8)
	dq_cpu=$(med A dnsmasq 10) dq_mbps=$(med A dnsmasq 8)
	for s in tftpgw tftpgw-single-port tftpgw-grpc tftpd-hpa dnsmasq dnsmasq-default; do
		[ "$(rounds A $s)" = 0 ] && continue
		case $s in dnsmasq | dnsmasq-default) [ "$(rounds A $s)" = 0 ] && [ -z "$DNSMASQ" ] && continue ;; esac
		f=$(sumc A $s 5) m=$(med A $s 8) c=$(med A $s 10)
		case $s in
		tftpgw)
			t="0 failures: $(zero "$f"); CPU/GiB <= $TARGET_A_CPU_RATIO x tftpd-hpa's: $(le "$c" "$(mul "$hpa_cpu" "$TARGET_A_CPU_RATIO")") ($(ratio "$c" "$hpa_cpu") x)"
			t="$t; < $TARGET_A_CPU_ABS CPU-s/GiB: $(lt "$c" "$TARGET_A_CPU_ABS")"
			[ "$dq_cpu" != NA ] && t="$t (dnsmasq, the issue's 2.3, measures $(fmt "$dq_cpu" 2) here: CPU/GiB below dnsmasq's: $(lt "$c" "$dq_cpu"))"
			t="$t; MB/s >= tftpd-hpa's: $(ge "$m" "$hpa_mbps")"
			[ "$dq_cpu" != NA ] && t="$t; issue 19: CPU/GiB <= $TARGET_A_DNSMASQ_RATIO x dnsmasq's: $(le "$c" "$(mul "$dq_cpu" "$TARGET_A_DNSMASQ_RATIO")") ($(ratio "$c" "$dq_cpu") x)" ;;
		tftpgw-single-port)
			t="0 failures: $(zero "$f")"
			[ "$dq_cpu" != NA ] && t="$t; issue 19: CPU/GiB <= $TARGET_A_SP_DNSMASQ_RATIO x dnsmasq's: $(le "$c" "$(mul "$dq_cpu" "$TARGET_A_SP_DNSMASQ_RATIO")") ($(ratio "$c" "$dq_cpu") x)" ;;
		tftpgw-grpc)
			t="0 failures: $(zero "$f"); gateway + backend CPU/GiB <= $TARGET_GRPC_CPU_RATIO x tftpd-hpa's: $(le "$c" "$(mul "$hpa_cpu" "$TARGET_GRPC_CPU_RATIO")") ($(ratio "$c" "$hpa_cpu") x)" ;;
		tftpd-hpa) t="(reference)" ;;
		dnsmasq) t="(reference; the issue's 338 MB/s at 2.3 CPU-s/GiB is dnsmasq measured elsewhere)" ;;
		dnsmasq-default) t="(reference: dnsmasq's default limit of 50 sessions; the issue saw about half of the transfers fail)" ;;
		esac
		label=$s
		case $s in
		tftpgw) label="tftpgw -root" ;;
		tftpgw-single-port) label="tftpgw -root -single-port" ;;
		tftpgw-grpc) label="tftpgw -backend (gateway + tftp-backend CPU)" ;;
		dnsmasq) label="dnsmasq --tftp-max=1000" ;;
		dnsmasq-default) label="dnsmasq, default limit (50 sessions)" ;;
		esac
		echo "| $label | $(rounds A $s) | $f | $(fmt "$m") | $(allr A $s 8 '%s%.0f') | $(fmt "$c" 2) | $(fmt "$(med A $s 14)" 2) | $(fmt "$(med A $s 15)" 2) | $(fmt "$(med A $s 12)" 2) | $(allr A $s 13 '%s%.2f') | $t |"
	done

	for sc in B C; do
		if [ $sc = B ]; then
			echo; echo "### B: one ${BC_MIB} MiB transfer, blksize 8192, windowsize 16"; echo
			echo "tftpd-hpa does not implement windowsize (RFC 7440): it answers lock-step, which is the point of the comparison. Median of 3 rounds."
		else
			echo; echo "### C: one ${BC_MIB} MiB transfer, blksize 65464, windowsize 64"; echo
			echo "tftpd-hpa again runs lock-step (65464-byte blocks). Median of 3 rounds."
		fi
		echo
		echo "| server | rounds | failed | MB/s (median) | MB/s (each round) | server CPU-s/GiB | target |"
		echo "|---|---|---|---|---|---|---|"
		hm=$(med $sc tftpd-hpa 8)
		for s in tftpgw tftpd-hpa; do
			m=$(med $sc $s 8)
			if [ $s = tftpd-hpa ]; then t="(reference)"
			elif [ $sc = B ]; then t=">= $TARGET_B_RATIO x tftpd-hpa's MB/s: $(ge "$m" "$(mul "$hm" "$TARGET_B_RATIO")") ($(ratio "$m" "$hm") x)"
			else t=">= $TARGET_C_MBPS MB/s: $(awk -v a="$m" -v b="$TARGET_C_MBPS" 'BEGIN {print (a != "NA" && a + 0 >= b) ? "met" : "not met"}')"; fi
			echo "| $s | $(rounds $sc $s) | $(sumc $sc $s 5) | $(fmt "$m") | $(allr $sc $s 8 '%s%.0f') | $(fmt "$(med $sc $s 10)" 2) | $t |"
		done
	done

	echo
	echo "### D: $D_C concurrent small-file sessions"
	echo
	echo "$D_C transfers started at once (\`-c $D_C -n $D_C\`), rotating over 16 files of 4 KiB, blksize 1468. tftpgw with \`-max-sessions -1 -max-sessions-per-client -1 -client-rate -1\` (the defaults, 4096 sessions and 256 per client address, would refuse most of a single-address load by design)."
	echo
	echo "tftpbench runs on the same 2 cores: its own CPU is shown next to the server's (server + client CPU-s over the wall time is how busy the machine was). Time to first DATA is given twice: as tftpbench's transfers saw it, and *on the wire*, by the kernel's receive timestamps with tftpbench's own time between an OACK and its ACK 0 left out (\`ttfb_wire_seconds\`): the difference is tftpbench's scheduling delay among its $D_C transfers, which a firmware client on a machine of its own does not have."
	echo
	echo "tftpd-hpa (a process per transfer) and dnsmasq (one event loop, its session limit raised to $D_C with \`--tftp-max\`) take the same burst as references for what this machine allows. A request a server drops or answers late waits for tftpbench's retransmission (every 2 s, 5 times), which is what their percentiles show."
	echo
	echo "| server | transfers | ok | failed | first DATA p99 s (tftpbench) | first DATA p99 s (wire) | transfer p99 s | wall s | RSS peak (VmHWM) MiB | RSS idle MiB | server CPU-s | server CPU per session µs | tftpbench CPU-s | target |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	awk -F'\t' -v tgt="$D_C" -v rss="$TARGET_D_RSS_MIB" -v ttfd="$TARGET_D_TTFD_P99" '$1 == "D" {
		label = ($2 == "tftpgw-single-port") ? "tftpgw -single-port" : $2
		if (label == "dnsmasq") label = "dnsmasq --tftp-max=" tgt
		ref = ($2 == "tftpd-hpa" || $2 == "dnsmasq")
		if ($4 == "NA") { printf "| %s | %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | not measured |\n", label, tgt; next }
		wire = ($17 == "NA" || $17 == "") ? "n/a" : sprintf("%.3f", $17)
		wv = (wire == "n/a") ? "not measured" : (($17 <= ttfd) ? "met" : "not met")
		verdict = sprintf("0 failures at %d: %s; RSS <= %d MiB: %s; first DATA p99 <= %.0f ms: %s as tftpbench saw it, %s on the wire",
			tgt, ($5 == 0 && $4 >= tgt) ? "met" : "not met", rss, ($14 / 1024 <= rss) ? "met" : "not met", ttfd * 1000, ($11 <= ttfd) ? "met" : "not met", wv)
		if (ref) verdict = "(reference)"
		# tftpd-hpa serves from a child per transfer: its listener RSS says nothing.
		hwm = ($2 == "tftpd-hpa") ? "n/a" : sprintf("%.1f", $14 / 1024)
		idle = ($2 == "tftpd-hpa") ? "n/a" : sprintf("%.1f", $15 / 1024)
		printf "| %s | %d | %d | %d | %.3f | %s | %.3f | %.1f | %s | %s | %.2f | %.0f | %s | %s |\n",
			label, $4 + $5, $4, $5, $11, wire, $12, $7, hwm, idle, $9, ($4 + $5 > 0 ? $9 * 1e6 / ($4 + $5) : 0), ($16 == "NA" ? "n/a" : sprintf("%.2f", $16)), verdict }' "$RES"

	echo
	echo "### E: $E_C clients fetching the same ${E_MIB} MiB file through tftp-backend"
	echo
	if [ ${#CACHE_ARGS[@]} -gt 0 ]; then
		echo "tftpgw has a content cache: run with \`${CACHE_ARGS[*]}\`."
	else
		echo "This tftpgw has no \`-cache-size\` flag yet (not in \`tftpgw -h\`): every transfer is its own backend stream. Rerun when the cache lands."
	fi
	echo "blksize 8192, windowsize 16, all $E_C at once; tftpgw with the per-client limits lifted as in D."
	echo
	echo "| path | ok | failed | MB/s | bytes delivered | backend rchar | rchar / file size | rchar / bytes delivered | backend wchar | server CPU-s/GiB | target |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	awk -F'\t' -v fs="$((E_MIB << 20))" -v cached="${#CACHE_ARGS[@]}" -v ratio="$TARGET_E_READ_RATIO" '$1 == "E" {
		label = ($2 == "tftpgw-grpc-nodigest") ? "tftpgw -backend (tftp-backend -digest=false)" : "tftpgw -backend (tftp-backend as deployed: -digest)"
		if ($4 == "NA") { print "| " label " | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | not measured |"; next }
		t = (cached > 0) ? ((($14 / fs) <= ratio) ? "backend reads <= " ratio " x the file: met" : "backend reads <= " ratio " x the file: not met") : "backend reads <= " ratio " x the file (needs the cache): not met"
		if ($2 != "tftpgw-grpc-nodigest" && cached > 0 && ($14 / fs) > ratio && ($15 / fs) <= ratio) t = t " (one read is the digest'"'"'s hash, once per file version; the stream, wchar, is " sprintf("%.1f", $15 / fs) " x)"
		printf "| %s | %d | %d | %.0f | %.1f MiB | %.1f MiB | %.1f | %.3f | %.1f MiB | %.2f | %s |\n",
			label, $4, $5, $8, $6 / 1048576, $14 / 1048576, $14 / fs, ($6 > 0 ? $14 / $6 : 0), $15 / 1048576, $10, t }' "$RES"

	echo
	echo "### F: 5% UDP loss, lock-step (blksize 1468, no windowsize)"
	echo
	echo "$F_N transfers of a $F_KIB KiB file, all at once, in a private network namespace dropping 5% of UDP packets at input. Each run is capped at ${F_CAP} s (SIGINT: tftpbench still reports the bytes received so far); MB/s is bytes received / wall time, failed transfers included. Two rounds, alternately. \`tftpgw -retries 20\` is an extra row: the adaptive timer with a retry budget that outlasts the client's 2 s timer. The client retransmits after 2 s (no timeout option) and re-ACKs a duplicate DATA once per gap."
	echo
	echo "| server | rounds | ok | failed | MB/s (median) | MB/s (each round) | wall s (median) | transfer p99 s | target |"
	echo "|---|---|---|---|---|---|---|---|---|"
	am=$(med F atftpd 8)
	for s in tftpgw tftpgw-retries20 atftpd; do
		[ "$(rounds F $s)" = 0 ] && continue
		m=$(med F $s 8)
		if [ $s = atftpd ]; then t="(reference, fixed timer)"; else t="faster than atftpd: $(gt "$m" "$am"); 0 failures: $(zero "$(sumc F $s 5)")"; fi
		label=$s; [ $s = tftpgw ] && label="tftpgw (adaptive RTO, defaults)"; [ $s = tftpgw-retries20 ] && label="tftpgw -retries 20"
		echo "| $label | $(rounds F $s) | $(sumc F $s 4) | $(sumc F $s 5) | $(fmt "$m" 2) | $(allr F $s 8 '%s%.2f') | $(fmt "$(med F $s 7)") | $(fmt "$(med F $s 12)" 2) | $t |"
	done
	[ "$(awk -F'\t' '$1 == "F"' "$RES" | wc -l)" = 0 ] && echo "| (not run: see notes) | | | | | | | | |"

	if [ -s "$FLEET_MD" ]; then
		echo
		cat "$FLEET_MD"
	fi

	echo
	echo "### Notes from this run"
	echo
	if [ -s "$NOTES" ]; then cat "$NOTES"; else echo "- none"; fi
	echo
	echo "### Raw results"
	echo
	echo "One line per measured run: scenario, server, round, ok, failed, bytes, elapsed s, MB/s, server CPU-s, server CPU-s/GiB, TTFB p99 s, transfer p99 s, cores busy with other work during the run (machine CPU from /proc/stat minus the servers and tftpbench, per second of the run: above about 0.2 the machine was shared and the numbers are low), extra (A: server kernel CPU-s/GiB, tftpbench CPU-s/GiB; D: VmHWM kB, idle RSS kB, tftpbench CPU-s, first DATA p99 s on the wire; E: backend rchar, wchar)."
	echo
	echo '```'
	cat "$RES"
	echo '```'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT"
