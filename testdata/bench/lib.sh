# Shared by run.sh and fleet.sh (sourced, not run): logging and cleanup,
# finding or installing the peer servers, starting and stopping servers,
# and the cgroup that measures their CPU. The sourcing script sets WORK,
# NOTES, PIDS, NS, PORT, ROOT, GW, BE (before starting servers), IS_ROOT
# and CLK_TCK first.
# shellcheck shell=bash

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
note() { printf -- '- %s\n' "$*" >>"$NOTES"; log "NOTE: $*"; }

cleanup() {
	local rc=$?
	set +e
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	cg_done
	[ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
	if [ "${BENCH_KEEP:-0}" = 1 ]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites ----------------------------------------------------------
command -v jq >/dev/null || { echo "${0##*/}: jq is required (apt-get install -y jq)" >&2; exit 1; }
IS_ROOT=0; [ "$(id -u)" -eq 0 ] && IS_ROOT=1

TFTPD_HPA=$(command -v in.tftpd || true)
if [ -z "$TFTPD_HPA" ] && [ "$IS_ROOT" = 1 ] && command -v apt-get >/dev/null; then
	log "installing tftpd-hpa"
	# The service is never started: policy-rc.d or not, we only use the binary.
	DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq tftpd-hpa >/dev/null 2>&1 || true
	TFTPD_HPA=$(command -v in.tftpd || true)
fi
[ -z "$TFTPD_HPA" ] && note "tftpd-hpa: in.tftpd not found and could not be installed (needs root and apt-get): its rows are missing."

# dnsmasq (Debian package dnsmasq-base: the binary only, no service) for A.
DNSMASQ=$(command -v dnsmasq || true)
[ -z "$DNSMASQ" ] && [ -x /usr/sbin/dnsmasq ] && DNSMASQ=/usr/sbin/dnsmasq
if [ -z "$DNSMASQ" ] && [ "$IS_ROOT" = 1 ] && command -v apt-get >/dev/null; then
	log "installing dnsmasq-base"
	DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq dnsmasq-base >/dev/null 2>&1 || true
	DNSMASQ=$(command -v dnsmasq || true)
	[ -z "$DNSMASQ" ] && [ -x /usr/sbin/dnsmasq ] && DNSMASQ=/usr/sbin/dnsmasq
fi
if [ -z "$DNSMASQ" ]; then
	note "dnsmasq: not found and could not be installed (apt-get install dnsmasq-base, needs root): no dnsmasq rows."
elif [ "$IS_ROOT" != 1 ]; then
	note "dnsmasq: its TFTP port is fixed at 69, which needs root: no dnsmasq rows."
	DNSMASQ=""
fi
DNSMASQ_VERSION=$([ -n "$DNSMASQ" ] && "$DNSMASQ" --version 2>/dev/null | head -1 | sed 's/ *Copyright.*//' || true)

# ip and nft (Debian's iproute2 and nftables) for F's lossy namespace.
if { ! command -v ip >/dev/null || ! command -v nft >/dev/null; } && [ "$IS_ROOT" = 1 ] && command -v apt-get >/dev/null; then
	log "installing iproute2 and nftables (for F)"
	DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq iproute2 nftables >/dev/null 2>&1 || true
fi

# atftpd conflicts with tftpd-hpa in Debian: unpack it instead of installing.
ATFTPD=$(command -v atftpd || true)
if [ -z "$ATFTPD" ]; then
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/tftpgw-bench
	if [ -x "$cache/atftpd/usr/sbin/atftpd" ]; then
		ATFTPD="$cache/atftpd/usr/sbin/atftpd"
	elif command -v apt-get >/dev/null; then
		log "fetching atftpd into $cache (apt-get download + dpkg-deb -x)"
		mkdir -p "$cache"
		if (cd "$WORK" && timeout 120 apt-get download -q atftpd >/dev/null 2>&1) &&
			dpkg-deb -x "$WORK"/atftpd_*.deb "$cache/atftpd"; then
			ATFTPD="$cache/atftpd/usr/sbin/atftpd"
		fi
	fi
fi
[ -z "$ATFTPD" ] && note "atftpd: not found and could not be fetched with apt-get download: no atftpd rows."

# Raise the descriptor limit for D (10k client sockets, 10k server sockets).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

# ---- process helpers --------------------------------------------------------
# nextport: the next port number, in NP (no subshell, so PORT advances).
nextport() { PORT=$((PORT + 1)); NP=$PORT; }

# wait_port PROTO PORT PID [NS]: until something listens, or fail.
wait_port() {
	local proto=$1 port=$2 pid=$3 ns=${4:-} flag=-lun
	[ "$proto" = tcp ] && flag=-ltn
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		if [ -n "$ns" ]; then
			ip netns exec "$ns" ss -H "$flag" "sport = :$port" 2>/dev/null | grep -q . && return 0
		else
			ss -H "$flag" "sport = :$port" 2>/dev/null | grep -q . && return 0
		fi
		sleep 0.05
	done
	return 1
}

# start LOGNAME CMD...: start a server in the background; its pid in LASTPID.
start() {
	local name=$1; shift
	"$@" >"$WORK/$name.log" 2>&1 &
	LASTPID=$!
	PIDS+=("$LASTPID")
	cg_add "$LASTPID"
}

# stop PID...: end servers this script started, and forget them.
stop() {
	local p q keep
	for p in "$@"; do
		kill -TERM "$p" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
		keep=()
		for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
		PIDS=("${keep[@]}")
	done
}

# Server CPU: tftpd-hpa forks a child per transfer and ignores SIGCHLD, so
# the children's CPU never reaches its cutime. When the machine lets us, every
# server goes into a cgroup made for this run (cgroup v1 cpuacct, or v2),
# whose counter includes exited children; otherwise /proc/PID/stat.
CG="" CG_KIND=none
cg_init() {
	local d
	if [ -d /sys/fs/cgroup/cpuacct ] && [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
		d=/sys/fs/cgroup/cpuacct/tftpgw-bench-$$
		mkdir "$d" 2>/dev/null && [ -f "$d/cpuacct.usage" ] && CG=$d CG_KIND=v1
	elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		d=/sys/fs/cgroup/tftpgw-bench-$$
		mkdir "$d" 2>/dev/null && [ -f "$d/cpu.stat" ] && CG=$d CG_KIND=v2
	fi
	return 0
}
cg_add() {
	[ -n "$CG" ] || return 0
	echo "$1" >"$CG/cgroup.procs" 2>/dev/null && return 0
	note "could not move a server into $CG: server CPU falls back to /proc/PID/stat (tftpd-hpa's children are then missed)"
	CG_KIND=none
}
cg_done() {
	[ -n "$CG" ] || return 0
	local parent p
	parent=$(dirname "$CG")
	# Anything left (a tftpd-hpa child finishing) goes back to the parent group.
	for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do echo "$p" >"$parent/cgroup.procs" 2>/dev/null; done
	rmdir "$CG" 2>/dev/null || true
}

# cpu_ns PID...: CPU time in ns of the servers (the cgroup when there is one).
cpu_ns() {
	case $CG_KIND in
	v1) cat "$CG/cpuacct.usage" ;;
	v2) awk '$1 == "usage_usec" {printf "%.0f", $2 * 1000}' "$CG/cpu.stat" ;;
	*) echo $(($(cputicks '$12 + $13 + $14 + $15' "$@") * 1000000000 / CLK_TCK)) ;;
	esac
}

# sys_ns PID...: of cpu_ns, the time spent in the kernel (system calls and
# the packet processing they do) in ns.
sys_ns() {
	case $CG_KIND in
	v1) awk -v hz="$CLK_TCK" '$1 == "system" {printf "%.0f", $2 * 1000000000 / hz}' "$CG/cpuacct.stat" ;;
	v2) awk '$1 == "system_usec" {printf "%.0f", $2 * 1000}' "$CG/cpu.stat" ;;
	*) echo $(($(cputicks '$13 + $15' "$@") * 1000000000 / CLK_TCK)) ;;
	esac
}

# cputicks AWK-EXPR PID...: the expression over the fields of /proc/PID/stat
# summed over the pids (after the comm field: state is $1, utime $12, stime
# $13, cutime $14, cstime $15).
cputicks() {
	local sum=0 p s expr=$1
	shift
	for p in "$@"; do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		s=${s##*) }
		sum=$((sum + $(awk "{print $expr}" <<<"$s")))
	done
	echo "$sum"
}

# busy_ns: CPU time of the whole machine (every process), in ns.
busy_ns() { awk -v hz="$CLK_TCK" '$1 == "cpu" {printf "%.0f", ($2 + $3 + $4 + $7 + $8 + $9) * 1000000000 / hz; exit}' /proc/stat; }

hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
io_field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }

# Servers: each start_* sets SRV_PIDS (what to measure) and SRV_ADDR.
start_gw() { # extra tftpgw flags...
	nextport; local p=$NP
	start "tftpgw-$p" ${NSEXEC:+$NSEXEC} "$GW" -listen "127.0.0.1:$p" -root "$ROOT" \
		-log-level error -drain-timeout 1s -stats-interval 1h "$@"
	local pid=$LASTPID
	wait_port udp "$p" "$pid" "$NSNAME" || { note "tftpgw did not start: $(tail -3 "$WORK/tftpgw-$p.log" | tr '\n' ' ')"; return 1; }
	SRV_PIDS=("$pid") SRV_ADDR="127.0.0.1:$p"
}
start_grpc() { # extra tftpgw flags... (tftp-backend's extra flags in the array GRPC_BE_ARGS)
	nextport; local bp=$NP
	nextport; local p=$NP
	start "backend-$bp" "$BE" -listen "127.0.0.1:$bp" -root "$ROOT" ${GRPC_BE_ARGS[@]+"${GRPC_BE_ARGS[@]}"}
	local bpid=$LASTPID
	wait_port tcp "$bp" "$bpid" || { note "tftp-backend did not start: $(tail -3 "$WORK/backend-$bp.log" | tr '\n' ' ')"; return 1; }
	start "tftpgw-$p" "$GW" -listen "127.0.0.1:$p" -backend "127.0.0.1:$bp" \
		-log-level error -drain-timeout 1s -stats-interval 1h "$@"
	local gpid=$LASTPID
	wait_port udp "$p" "$gpid" || { note "tftpgw -backend did not start: $(tail -3 "$WORK/tftpgw-$p.log" | tr '\n' ' ')"; stop "$bpid"; return 1; }
	SRV_PIDS=("$gpid" "$bpid") SRV_ADDR="127.0.0.1:$p" BACKEND_PID=$bpid
}
start_hpa() {
	[ -n "$TFTPD_HPA" ] || return 1
	nextport; local p=$NP
	start "hpa-$p" "$TFTPD_HPA" -L -s "$ROOT" -a "127.0.0.1:$p"
	local pid=$LASTPID
	wait_port udp "$p" "$pid" || { note "in.tftpd did not start: $(tail -3 "$WORK/hpa-$p.log" | tr '\n' ' ')"; return 1; }
	SRV_PIDS=("$pid") SRV_ADDR="127.0.0.1:$p"
}
start_atftpd() {
	[ -n "$ATFTPD" ] || return 1
	nextport; local p=$NP
	start "atftpd-$p" ${NSEXEC:+$NSEXEC} "$ATFTPD" --daemon --no-fork --port "$p" \
		--bind-address 127.0.0.1 --logfile /dev/null "$ROOT"
	local pid=$LASTPID
	wait_port udp "$p" "$pid" "$NSNAME" || { note "atftpd did not start: $(tail -3 "$WORK/atftpd-$p.log" | tr '\n' ' ')"; return 1; }
	SRV_PIDS=("$pid") SRV_ADDR="127.0.0.1:$p"
}
# dnsmasq serves TFTP on port 69 only (no option moves it): 127.0.0.1:69,
# DNS off (--port=0), no config file, no pid file, no hosts/resolv files,
# no privilege drop (the scratch root is readable anyway), logs discarded.
# start_dnsmasq [--tftp-max=N]: without it, dnsmasq's default limit (50).
DNSMASQ_PORT_BUSY=0
start_dnsmasq() {
	[ -n "$DNSMASQ" ] && [ "$DNSMASQ_PORT_BUSY" = 0 ] || return 1
	local busy
	busy=$(ss -H -lunp 'sport = :69' 2>/dev/null || true)
	if [ -n "$busy" ]; then
		note "dnsmasq: UDP port 69 is already in use on this machine, so dnsmasq cannot listen on 127.0.0.1:69: no dnsmasq rows. Listener: $(tr -s ' \n' ' ' <<<"$busy" | head -c 300)"
		DNSMASQ_PORT_BUSY=1
		return 1
	fi
	DNSMASQ_RUN=$((${DNSMASQ_RUN:-0} + 1))
	local name="dnsmasq-$DNSMASQ_RUN"
	start "$name" "$DNSMASQ" --no-daemon --conf-file=/dev/null --pid-file= --port=0 \
		--no-resolv --no-hosts --enable-tftp --tftp-root="$ROOT" --listen-address=127.0.0.1 \
		--bind-interfaces --user=root --log-facility=/dev/null --quiet-tftp "$@"
	local pid=$LASTPID
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		ss -H -lunp 'sport = :69' 2>/dev/null | grep -q "pid=$pid," && { SRV_PIDS=("$pid") SRV_ADDR="127.0.0.1:69"; return 0; }
		sleep 0.05
	done
	note "dnsmasq did not start on 127.0.0.1:69: $(tail -3 "$WORK/$name.log" 2>/dev/null | tr '\n' ' ' | head -c 300)"
	stop "$pid"
	return 1
}
NSEXEC="" NSNAME=""

