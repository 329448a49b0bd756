#!/bin/sh
# bench-guest.sh: the measuring half of scripts/bench. Runs inside the Soft-RoCE VM
# (scripts/rxe-vm), POSIX sh + busybox awk/sort/timeout.
#
# usage: bench-guest.sh CONF
#   CONF is a file of shell assignments written by scripts/bench:
#     ROUNDS=3  SIZES="64 4096 65536 1048576"  SCALE=1  RUN_TIMEOUT=120
#     IBSTACK_BIN=/path/ibstack_bench (empty: ibstack not measured)
#     IBSTACK_ARGS="-o key=value ... --wait spin"   (word-split, no spaces in values)
#     IBSTACK_LOG=...  (optional, exported to ibstack_bench)
#     TARGETS=1  IBSTACK_BASE="-o ..."  CPUTIME=/path/cputime   (scripts/bench --targets: every
#       target of issue #15 in one boot; see the targets section at the end)
#
# Every cell is measured in each of ROUNDS rounds; within a round, sizes go up and the
# contenders of a size take turns (the starting contender rotates each round). Both
# ends of every test run in this VM over rxe0's loopback (client -> 10.99.0.1).
# Prints each run's figure as it completes, then one table of per-cell medians.
# Exit status: 0, or 1 when any run failed (its cell shows "fail"; logs are printed).
set -u
[ $# -eq 1 ] && [ -r "$1" ] || { echo "usage: bench-guest.sh CONF" >&2; exit 2; }
ROUNDS=3 SIZES="64 4096 65536 1048576" SCALE=1 RUN_TIMEOUT=120 IBSTACK_BIN= IBSTACK_ARGS= IBSTACK_LOG=
TARGETS=0 IBSTACK_BASE= CPUTIME= MC_SIZE=65536 MC_CONNS=8 IDLE_SECS=5
. "$1"
[ -n "$IBSTACK_LOG" ] && export IBSTACK_LOG IBSTACK_LOG_STYLE=never

ADDR=10.99.0.1
# RoCE v2 IPv4 GID (index 1 on rxe), no cpufreq warning, Ceph's QP timeout 18 (perftest's
# default 14 retransmits spuriously under rxe).
PT_OPTS="-d rxe0 -x 1 -F -u 18"
WORK=$(mktemp -d /tmp/bench.XXXXXX)
RESULTS=$WORK/results
: > "$RESULTS"
port=20000
failures=0

next_port() { port=$((port + 1)); }

# Iterations for ~1.5 s per run at this VM's reference speeds (soft-roce-vm.md):
# a bandwidth message costs ~22 us + size at 50 MiB/s; a ping-pong ~2 x (12 us + size at 50 MiB/s).
bw_iters() { awk -v s="$1" -v k="$SCALE" 'BEGIN { t = 22e-6 + s / (50 * 1048576); n = int(k * 1.5 / t); if (n < 20) n = 20; print n }'; }
lat_iters() { awk -v s="$1" -v k="$SCALE" 'BEGIN { t = 2 * (12e-6 + s / (50 * 1048576)); n = int(k * 1.2 / t); if (n < 20) n = 20; print n }'; }

size_label() {
    case $1 in
        *[!0-9]*) echo "$1" ;;
        *) awk -v s="$1" 'BEGIN { if (s % 1048576 == 0) printf "%d MiB", s / 1048576;
                                  else if (s % 1024 == 0) printf "%d KiB", s / 1024; else printf "%d B", s }' ;;
    esac
}

# Waits (up to 15 s) until a TCP listener on port $1 exists, or process $2 is gone.
wait_tcp_listen() {
    hex=$(printf '%04X' "$1") i=0
    while [ $i -lt 300 ]; do
        awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05; i=$((i + 1))
    done
    return 1
}

# Waits until an rdma_cm listener on port $1 exists (rsockets), or process $2 is gone.
wait_cm_listen() {
    i=0
    while [ $i -lt 300 ]; do
        /usr/bin/rdma resource show cm_id 2>/dev/null | grep -q "state LISTEN .*src-addr [^ ]*:$1 " && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05; i=$((i + 1))
    done
    return 1
}

# Waits until file $1 holds the ibstack server's LISTENING line, or process $2 is gone.
wait_line() {
    i=0
    while [ $i -lt 600 ]; do
        grep -q '^LISTENING' "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05; i=$((i + 1))
    done
    return 1
}

# Ends the server $1 if it is still there after its client finished; its status in $srv_rc.
reap_server() {
    j=0
    while kill -0 "$1" 2>/dev/null && [ $j -lt 100 ]; do sleep 0.05; j=$((j + 1)); done
    kill "$1" 2>/dev/null
    wait "$1"; srv_rc=$?
}

show_logs() {  # $1 = what failed; the logs follow
    echo "  FAILED: $1"
    shift
    for f in "$@"; do
        echo "  --- $(basename "$f") (last 15 lines)"
        tail -n 15 "$f" | sed 's/^/  | /'
    done
}

# record CONTENDER METRIC SIZE VALUE   (VALUE "NA" = failed run); a setup baseline run (BASE=1)
# records nothing but its CPU (record_cpu)
record() { [ "${BASE:-}" = 1 ] || echo "$1 $2 $3 $4" >> "$RESULTS"; }

# With CPU set (targets mode), both ends of a run are under cputime (whole processes, setup
# included): records CONTENDER cpu_s SIZE (both ends' CPU seconds) and CONTENDER gib SIZE (GiB
# moved, $3 bytes). With BASE=1 as well the run is a setup baseline of a few messages: records
# only CONTENDER cpu0 SIZE. The tables charge (cpu_s - cpu0) / gib: CPU per GiB of the transfer,
# the same for perftest, rstream and ibstack_bench.
record_cpu() {  # contender size bytes
    [ -n "${CPU:-}" ] || return 0
    c=$(awk -F'[= ]' '$1 == "cpu_s" { t += $2; n++ } END { if (n == 2) printf "%.4f", t }' "$WORK/$tag.cpu" 2>/dev/null)
    [ -n "$c" ] || { echo "  (no CPU figure for $1)"; return 0; }
    if [ "${BASE:-}" = 1 ]; then
        printf '    %-12s setup baseline: CPU %s s both ends\n' "$1" "$c"
        echo "$1 cpu0 $2 $c" >> "$RESULTS"
        return 0
    fi
    printf '    %-12s CPU %s s both ends\n' "$1" "$c"
    record "$1" cpu_s "$2" "$c"
    record "$1" gib "$2" "$(awk -v b="$3" 'BEGIN { printf "%.6f", b / 1073741824 }')"
}

# Runs server + client for one test. $1 = tag, $2 = how the server is awaited
# (tcp|cm|line), then "--" separates the server's and the client's commands:
#   pair TAG WAIT SERVER-CMD... -- CLIENT-CMD...
# Leaves the logs in $srv and $cli, the statuses in $srv_rc and $cli_rc.
pair() {
    tag=$1 how=$2; shift 2
    srv=$WORK/$tag.server.log cli=$WORK/$tag.client.log
    scmd= ccmd= side=s
    # with CPU set, both ends run under cputime, which appends each one's CPU time to $WORK/TAG.cpu
    if [ -n "${CPU:-}" ]; then scmd="$CPUTIME $WORK/$tag.cpu" ccmd="$CPUTIME $WORK/$tag.cpu"; rm -f "$WORK/$tag.cpu"; fi
    for a in "$@"; do
        if [ "$side" = s ] && [ "$a" = -- ]; then side=c; continue; fi
        if [ "$side" = s ]; then scmd="$scmd $a"; else ccmd="$ccmd $a"; fi
    done
    # shellcheck disable=SC2086
    timeout -s KILL "$RUN_TIMEOUT" $scmd > "$srv" 2>&1 &
    spid=$!
    case $how in
        tcp) wait_tcp_listen "$port" "$spid" ;;
        cm) wait_cm_listen "$port" "$spid" ;;
        line) wait_line "$srv" "$spid" ;;
    esac
    if [ $? -ne 0 ]; then
        kill "$spid" 2>/dev/null; wait "$spid"; srv_rc=$?; cli_rc=255
        echo "server did not start listening" > "$cli"
        return
    fi
    # shellcheck disable=SC2086
    timeout -s KILL "$RUN_TIMEOUT" $ccmd > "$cli" 2>&1
    cli_rc=$?
    reap_server "$spid"
}

# ---------------------------------------------------------------- contenders
# Each prints one raw line and records its figure(s).

# perftest TOOL SIZE ITERS TAG AWK-PROGRAM: one server + client run; $v = the fields the
# awk program prints from the client's log (its first field the figure), or empty on failure.
# perftest converts cycles with a clock rate it calibrates at start; on a busy host the
# calibration can fail (it then reports 0 or inf) or disagree with /proc/cpuinfo (figures
# scaled wrongly). Such runs are repeated, up to 3 attempts.
perftest() {
    try=1
    while :; do
        next_port
        pair "$4.t$try" tcp "/usr/bin/$1" $PT_OPTS -s "$2" -n "$3" -p "$port" \
            -- "/usr/bin/$1" $PT_OPTS -s "$2" -n "$3" -p "$port" "$ADDR"
        v=$(awk -v s="$2" "$5" "$cli")
        [ "$cli_rc" -eq 0 ] && [ "$srv_rc" -eq 0 ] && [ -n "$v" ] || { v=; return 1; }
        if awk -v x="${v%% *}" 'BEGIN { exit !(x ~ /^[0-9]+(\.[0-9]+)?$/ && x + 0 > 0) }' &&
            ! grep -q 'differs from nominal' "$cli"; then
            return 0
        fi
        if [ $try -ge 3 ]; then
            echo "  perftest's clock calibration failed $try times ($1 -s $2: '${v%% *}')"
            v=; return 1
        fi
        echo "  (perftest's clock calibration failed in $1 -s $2, figure '${v%% *}': run again)"
        try=$((try + 1))
    done
}

run_send_bw() {  # size iters round
    # " #bytes #iterations BW peak[MB/sec] BW average[MB/sec] MsgRate[Mpps]"; MB = 2^20 B.
    # The peak is 0 above 20000 iterations (perftest skips it).
    if ! perftest ib_send_bw "$1" "$2" "r$3.s$1.send_bw" \
            '/#bytes/ { getline; if ($1 == s && NF >= 5) print $4, $3 }'; then
        show_logs "ib_send_bw -s $1 (client $cli_rc, server $srv_rc)" "$srv" "$cli"
        record ib_send_bw bw "$1" NA; failures=$((failures + 1)); return
    fi
    set -- "$1" "$2" "$3" $v
    printf 'r%s %-8s %-12s %10.2f MiB/s  (peak %s, %s msgs)\n' "$3" "$(size_label "$1")" ib_send_bw "$4" \
        "$(echo "$5" | sed 's/^0\.00$/not measured/')" "$2"
    record ib_send_bw bw "$1" "$4"
    record_cpu ib_send_bw "$1" $(($1 * $2))
}

run_send_lat() {  # size iters round
    # " #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%" (usec, round-trip/2)
    if ! perftest ib_send_lat "$1" "$2" "r$3.s$1.send_lat" \
            '/#bytes/ { getline; if ($1 == s && NF >= 6) print $5, $6, $3 }'; then
        show_logs "ib_send_lat -s $1 (client $cli_rc, server $srv_rc)" "$srv" "$cli"
        record ib_send_lat lat "$1" NA; failures=$((failures + 1)); return
    fi
    set -- "$1" "$2" "$3" $v
    printf 'r%s %-8s %-12s %10.2f us typical  (avg %.2f, min %.2f, %s iters)\n' "$3" "$(size_label "$1")" \
        ib_send_lat "$4" "$5" "$6" "$2"
    record ib_send_lat lat "$1" "$4"
}

# rstream: -C transfers one way then -C back (-I 1): a bandwidth run; -C 1 -I N: ping-pong.
# Its last column is usec per transfer (one direction), which gives both figures exactly.
run_rstream() {  # size count iters round kind
    next_port
    pair "r$4.s$1.rstream_$5" cm /usr/bin/rstream -b "$ADDR" -p "$port" -S "$1" -C "$2" -I "$3" \
        -- /usr/bin/rstream -s "$ADDR" -p "$port" -S "$1" -C "$2" -I "$3"
    us=$(awk '$1 == "custom" && NF == 8 { print $8 }' "$cli")
    if [ "$cli_rc" -ne 0 ] || [ "$srv_rc" -ne 0 ] || [ -z "$us" ]; then
        show_logs "rstream -S $1 -C $2 -I $3 (client $cli_rc, server $srv_rc)" "$srv" "$cli"
        record rstream "$5" "$1" NA; failures=$((failures + 1)); return
    fi
    if [ "$5" = bw ]; then
        mib=$(awk -v s="$1" -v u="$us" 'BEGIN { printf "%.3f", s / u * 1e6 / 1048576 }')
        printf 'r%s %-8s %-12s %10.2f MiB/s  (%s us/xfer, %s xfers each way)\n' "$4" "$(size_label "$1")" \
            rstream "$mib" "$us" "$2"
        record rstream bw "$1" "$mib"
        record_cpu rstream "$1" $((2 * $1 * $2))
    else
        printf 'r%s %-8s %-12s %10.2f us mean  (%s iters)\n' "$4" "$(size_label "$1")" rstream "$us" "$3"
        record rstream lat "$1" "$us"
    fi
}

run_ibstack() {  # size iters round mode [contender args...]: contender "ibstack" with $IBSTACK_ARGS by default
    sz=$1 it=$2 rd=$3 md=$4 who=ibstack
    if [ $# -ge 5 ]; then who=$5; shift 5; a="$*"; else a=$IBSTACK_ARGS; fi
    set -- "$sz" "$it" "$rd" "$md"
    next_port
    # shellcheck disable=SC2086
    pair "r$3.s$1.${who}_$4" line "$IBSTACK_BIN" server "$ADDR" "$port" $a \
        -- "$IBSTACK_BIN" client "$ADDR" "$port" --mode "$4" --size "$1" --iters "$2" $a
    line=$(grep '^RESULT ' "$cli" | tail -n 1)
    if [ "$4" = bw ]; then key=bw_mib_s; else key=lat_median_us; fi
    v=$(echo "$line" | awk -v k="$key" '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }')
    if [ "$cli_rc" -ne 0 ] || [ "$srv_rc" -ne 0 ] || [ -z "$v" ]; then
        show_logs "ibstack_bench $who --mode $4 --size $1 (client $cli_rc, server $srv_rc)" "$srv" "$cli"
        record "$who" "$4" "$1" NA
        [ "$4" = lat ] && record "$who" lat_avg "$1" NA
        failures=$((failures + 1)); return
    fi
    if [ "$4" = bw ]; then
        printf 'r%s %-8s %-12s %10.2f MiB/s  (%s)\n' "$3" "$(size_label "$1")" "$who" "$v" "${line#RESULT }"
        record "$who" bw "$1" "$v"
        record_cpu "$who" "$1" $(($1 * $2))
    else
        avg=$(echo "$line" | awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "lat_us") print kv[2] } }')
        printf 'r%s %-8s %-12s %10.2f us median  (%s)\n' "$3" "$(size_label "$1")" "$who" "$v" "${line#RESULT }"
        record "$who" lat "$1" "$v"
        record "$who" lat_avg "$1" "$avg"
    fi
}

canary() {  # $1 = start|end
    if ! perftest ib_send_lat 4096 1000 "canary.$1" '/#bytes/ { getline; if ($1 == s) print $5 }'; then
        show_logs "canary ib_send_lat -s 4096" "$srv" "$cli"
        failures=$((failures + 1)); return
    fi
    printf 'canary (%s): ib_send_lat -s 4096 typical %s us' "$1" "$v"
    if awk -v t="$v" 'BEGIN { exit !(t > 200) }'; then
        printf '  WARNING: above 200 us, this VM boot runs in slow mode; discard its figures\n'
    else
        printf '  (ok, <= 200 us)\n'
    fi
}

# ---------------------------------------------------------------- targets (TARGETS=1)
# Issue #15's targets in one boot. Contenders (ibstack_bench with IBSTACK_BASE plus):
#   ib_copy  --drive host              the copying stream API, the caller's thread driving the stack
#   ib_zc    --drive host --zc         sent from TX chunks, received by borrowing (bandwidth, and
#                                      latency in rows of its own)
#   ib_ceph  --drive thread --wait poll  Ceph's pattern: the stack's polling thread, the application
#                                      asleep in epoll on the connection's fd
# against ib_send_bw / ib_send_lat and rstream; CPU per GiB from the bandwidth runs (see record_cpu).
# Then MC_CONNS connections against one (ib_ceph, MC_SIZE bytes, the same bytes in all), and the
# idle CPU of two processes holding MC_CONNS live connections (ib_ceph) for IDLE_SECS seconds.
run_targets() {
    COPY="$IBSTACK_BASE --drive host" ZC="$IBSTACK_BASE --drive host --zc" CEPH="$IBSTACK_BASE --drive thread --wait poll"
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for s in $SIZES; do
            nb=$(bw_iters "$s") nl=$(lat_iters "$s")
            nrs=$(( (nb + 1) / 2 ))
            # setup baselines: the same programs moving 10 messages
            echo "r$r $(size_label "$s"): setup baselines (10 messages each)"
            CPU=1 BASE=1 run_ibstack "$s" 10 "$r" bw ib_copy $COPY > "$WORK/base.out"
            CPU=1 BASE=1 run_ibstack "$s" 10 "$r" bw ib_ceph $CEPH >> "$WORK/base.out"
            CPU=1 BASE=1 run_send_bw "$s" 10 "$r" >> "$WORK/base.out"
            CPU=1 BASE=1 run_rstream "$s" 5 1 "$r" bw >> "$WORK/base.out"
            grep 'setup baseline\|FAILED' "$WORK/base.out"
            k=0
            # a coalescing ibstack stream of small writes runs several times faster than one SEND
            # per message: more messages, so that its CPU figure is not one of setup
            nbc=$nb; [ "$s" -ge 1024 ] || nbc=$((nb * 16))
            while [ $k -lt 5 ]; do
                case $(( (k + r - 1) % 5 )) in
                    0) CPU=1 run_ibstack "$s" "$nbc" "$r" bw ib_copy $COPY ;;
                    1) CPU=1 run_ibstack "$s" "$nb" "$r" bw ib_zc $ZC ;;
                    2) CPU=1 run_ibstack "$s" "$nbc" "$r" bw ib_ceph $CEPH ;;
                    3) CPU=1 run_send_bw "$s" "$nb" "$r" ;;
                    4) CPU=1 run_rstream "$s" "$nrs" 1 "$r" bw ;;
                esac
                k=$((k + 1))
            done
            k=0
            while [ $k -lt 5 ]; do
                case $(( (k + r - 1) % 5 )) in
                    0) run_ibstack "$s" "$nl" "$r" lat ib_copy $COPY ;;
                    1) run_ibstack "$s" "$nl" "$r" lat ib_ceph $CEPH ;;
                    2) run_send_lat "$s" "$nl" "$r" ;;
                    3) run_rstream "$s" 1 "$nl" "$r" lat ;;
                    4) run_ibstack "$s" "$nl" "$r" lat ib_zc $ZC ;;
                esac
                k=$((k + 1))
            done
        done
        # connections in parallel: one, then MC_CONNS (order alternating by round)
        nb=$(bw_iters "$MC_SIZE")
        for n in $(if [ $((r % 2)) -eq 1 ]; then echo "1 $MC_CONNS"; else echo "$MC_CONNS 1"; fi); do
            run_ibstack "$MC_SIZE" "$nb" "$r" bw "ib_ceph_c$n" $CEPH --conns "$n"
        done
        r=$((r + 1))
    done
    # idle: both processes hold MC_CONNS connections; CPU over IDLE_SECS after the busy-poll window
    next_port
    # shellcheck disable=SC2086
    pair idle line "$IBSTACK_BIN" server "$ADDR" "$port" $CEPH --conns "$MC_CONNS" \
        -- "$IBSTACK_BIN" client "$ADDR" "$port" --mode idle --secs "$IDLE_SECS" $CEPH --conns "$MC_CONNS"
    ic=$(sed -n 's/^RESULT .*idle_cpu_pct=\([0-9.]*\).*/\1/p' "$cli")
    is=$(sed -n 's/^SERVER .*idle_cpu_pct=\([0-9.]*\).*/\1/p' "$srv" | sort -n | tail -n 1)
    if [ "$cli_rc" -ne 0 ] || [ "$srv_rc" -ne 0 ] || [ -z "$ic" ] || [ -z "$is" ]; then
        show_logs "idle (client $cli_rc, server $srv_rc)" "$srv" "$cli"
        failures=$((failures + 1))
    else
        echo "idle: $MC_CONNS live connections for $IDLE_SECS s: client process $ic %, server process $is % of a core"
        record ib_ceph idle_client 0 "$ic"
        record ib_ceph idle_server 0 "$is"
    fi
}

# awk functions shared by the tables: the per-cell medians of $RESULTS (collected by the rule at
# the end), printed cells and size labels. median(key) is "" without a figure, "fail" when every run
# of the cell failed, else the number.
AWK_MEDIANS='
function median(key,    n, i, j, v, t, a) {
    n = 0
    if (!(key in vals)) return ""
    split(vals[key], a, " ")
    for (i in a) if (a[i] != "NA") v[++n] = a[i] + 0
    if (n == 0) return "fail"
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function num(x) { return x != "" && x != "fail" }
function cell(x) { if (x == "") return "-"; if (x == "fail") return "fail"; return sprintf("%.2f", x) }
function label(s) {
    if (s % 1048576 == 0) return sprintf("%d MiB", s / 1048576)
    if (s % 1024 == 0) return sprintf("%d KiB", s / 1024)
    return sprintf("%d B", s)
}
# CPU seconds per GiB of a transfer: (whole run - setup baseline) / GiB moved (targets mode)
function cpu(c, s,    a, b, g) {
    a = median(c SUBSEP "cpu_s" SUBSEP s); b = median(c SUBSEP "cpu0" SUBSEP s); g = median(c SUBSEP "gib" SUBSEP s)
    if (!num(a) || !num(b) || !num(g) || g == 0) return "fail"
    return (a - b) / g
}
{ k = $1 SUBSEP $2 SUBSEP $3; vals[k] = (k in vals) ? vals[k] " " $4 : $4 }
'

# The targets table from $RESULTS: every target with the measured ratio and met / missed.
targets_table() {
    awk -v sizes="$SIZES" -v mcs="$MC_SIZE" -v mcn="$MC_CONNS" "$AWK_MEDIANS"'
function m(c, metric, s) { return median(c SUBSEP metric SUBSEP s) }
# one row: what, size, ibstack figure, reference figure, ratio wanted (op, bound)
function row(what, sz, a, b, op, bound,    r, ok) {
    if (!num(a) || !num(b) || b == 0) { printf "%-44s %-7s %10s %10s %7s %3s %-5s %s\n", what, sz, num(a) ? sprintf("%.2f", a) : "fail", num(b) ? sprintf("%.2f", b) : "fail", "-", op, bound, "not measured"; missed++; return }
    r = a / b
    ok = (op == ">=" && r >= bound) || (op == ">" && r > bound) || (op == "<=" && r <= bound) || (op == "<" && r < bound)
    printf "%-44s %-7s %10.2f %10.2f %7.2f %3s %-5s %s\n", what, sz, a, b, r, op, bound, ok ? "met" : "MISSED"
    if (ok) met++; else missed++
}
END {
    n = split(sizes, S, " ")
    printf "%-44s %-7s %10s %10s %7s %-9s %s\n", "target (ibstack / reference)", "size", "ibstack", "reference", "ratio", "wanted", "met?"
    for (i = 1; i <= n; i++) if (S[i] >= 4096) row("bandwidth, copying (ib_copy) / ib_send_bw", label(S[i]), m("ib_copy", "bw", S[i]), m("ib_send_bw", "bw", S[i]), ">=", 0.90)
    for (i = 1; i <= n; i++) if (S[i] >= 4096) row("bandwidth, zero-copy (ib_zc) / ib_send_bw", label(S[i]), m("ib_zc", "bw", S[i]), m("ib_send_bw", "bw", S[i]), ">=", 0.95)
    for (i = 1; i <= n; i++) row("latency median (ib_copy) / ib_send_lat typ.", label(S[i]), m("ib_copy", "lat", S[i]), m("ib_send_lat", "lat", S[i]), "<=", 1.10)
    for (i = 1; i <= n; i++) row("latency median (ib_zc) / ib_send_lat typ.", label(S[i]), m("ib_zc", "lat", S[i]), m("ib_send_lat", "lat", S[i]), "<=", 1.10)
    for (i = 1; i <= n; i++) if (S[i] == 64) row("64 B writes stream (ib_copy) / ib_send_bw", label(S[i]), m("ib_copy", "bw", S[i]), m("ib_send_bw", "bw", S[i]), ">=", 3)
    for (i = 1; i <= n; i++) row("bandwidth (ib_copy) / rstream", label(S[i]), m("ib_copy", "bw", S[i]), m("rstream", "bw", S[i]), ">", 1)
    for (i = 1; i <= n; i++) row("latency mean (ib_copy) / rstream mean", label(S[i]), m("ib_copy", "lat_avg", S[i]), m("rstream", "lat", S[i]), "<", 1)
    for (i = 1; i <= n; i++) row("latency mean (ib_zc) / rstream mean", label(S[i]), m("ib_zc", "lat_avg", S[i]), m("rstream", "lat", S[i]), "<", 1)
    for (i = 1; i <= n; i++) row("CPU s per GiB (ib_copy) / ib_send_bw", label(S[i]), cpu("ib_copy", S[i]), cpu("ib_send_bw", S[i]), "<=", 1.2)
    for (i = 1; i <= n; i++) row("Ceph pattern latency (ib_ceph) / ib_send_lat", label(S[i]), m("ib_ceph", "lat", S[i]), m("ib_send_lat", "lat", S[i]), "<=", S[i] == 64 ? 1.5 : 1.2)
    for (i = 1; i <= n; i++) if (S[i] >= 4096) row("Ceph pattern bandwidth (ib_ceph) / ib_send_bw", label(S[i]), m("ib_ceph", "bw", S[i]), m("ib_send_bw", "bw", S[i]), ">=", 0.90)
    row(sprintf("%d connections / 1 (ib_ceph, MiB/s together)", mcn), label(mcs), m("ib_ceph_c" mcn, "bw", mcs), m("ib_ceph_c1", "bw", mcs), ">=", 0.95)
    row("idle CPU, client process, % of a core / 1 %", "-", m("ib_ceph", "idle_client", 0), 1, "<", 1)
    row("idle CPU, server process, % of a core / 1 %", "-", m("ib_ceph", "idle_server", 0), 1, "<", 1)
    printf "targets: %d met, %d missed\n", met, missed
}' "$RESULTS"
}

# medians per contender and size (targets mode)
contender_table() {
    awk -v sizes="$SIZES" "$AWK_MEDIANS"'
END {
    nc = split("ib_copy ib_zc ib_ceph ib_send_bw rstream", C, " ")
    ns = split(sizes, S, " ")
    printf "%-11s %-8s %10s %12s %12s %12s\n", "contender", "size", "bw MiB/s", "CPU s/GiB", "lat med us", "lat mean us"
    for (i = 1; i <= nc; i++) for (j = 1; j <= ns; j++) {
        c = C[i]; s = S[j]
        lc = c == "ib_send_bw" ? "ib_send_lat" : c
        printf "%-11s %-8s %10s %12s %12s %12s\n", c, s, cell(median(c SUBSEP "bw" SUBSEP s)), cell(cpu(c, s)),
               c == "rstream" ? "-" : cell(median(lc SUBSEP "lat" SUBSEP s)),
               c == "rstream" ? cell(median("rstream" SUBSEP "lat" SUBSEP s)) : c == "ib_send_bw" ? "-" : cell(median(c SUBSEP "lat_avg" SUBSEP s))
    }
}' "$RESULTS"
}

# ---------------------------------------------------------------- run
echo "bench: $ROUNDS round(s), sizes: $SIZES, iteration scale $SCALE; vCPUs $(nproc), kernel $(uname -r)"
if [ -n "$IBSTACK_BIN" ]; then
    echo "bench: ibstack_bench args:$IBSTACK_ARGS"
else
    echo "bench: ibstack not measured (--no-ibstack)"
fi
canary start
echo "raw figures (rN = round N):"
if [ "$TARGETS" = 1 ]; then
    run_targets
    canary end
    echo
    echo "medians of $ROUNDS round(s) per contender (bandwidth MiB/s = 2^20 B/s; CPU = both ends' CPU seconds per GiB"
    echo "moved: whole processes minus the same programs' 10-message setup baseline; latency one-way = round-trip / 2;"
    echo "ib_send_bw's latency columns are ib_send_lat's t_typical, and it prints no mean)"
    contender_table
    echo
    targets_table
    if [ "$failures" -gt 0 ]; then
        echo "bench: $failures run(s) failed (logs above)"
        exit 1
    fi
    exit 0
fi
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for s in $SIZES; do
        nb=$(bw_iters "$s") nl=$(lat_iters "$s")
        # rstream's bandwidth run goes both ways: half the messages each way
        nrs=$(( (nb + 1) / 2 ))
        k=0
        while [ $k -lt 3 ]; do
            case $(( (k + r - 1) % 3 )) in
                0) [ -n "$IBSTACK_BIN" ] && run_ibstack "$s" "$nb" "$r" bw ;;
                1) run_send_bw "$s" "$nb" "$r" ;;
                2) run_rstream "$s" "$nrs" 1 "$r" bw ;;
            esac
            k=$((k + 1))
        done
        k=0
        while [ $k -lt 3 ]; do
            case $(( (k + r - 1) % 3 )) in
                0) [ -n "$IBSTACK_BIN" ] && run_ibstack "$s" "$nl" "$r" lat ;;
                1) run_send_lat "$s" "$nl" "$r" ;;
                2) run_rstream "$s" 1 "$nl" "$r" lat ;;
            esac
            k=$((k + 1))
        done
    done
    r=$((r + 1))
done
canary end

# ---------------------------------------------------------------- table of medians
echo
echo "medians of $ROUNDS round(s); bandwidth in MiB/s (2^20 B/s, whole run); ratio = ibstack / other (bandwidth: higher is better)"
echo "latency in us, one-way = round-trip / 2 for all three: ibstack median vs ib_send_lat t_typical;"
echo "  rstream reports only a mean, so it is set against ibstack's mean; ratio = ibstack / other (latency: lower is better)"
have_ib=0; [ -n "$IBSTACK_BIN" ] && have_ib=1
awk -v sizes="$SIZES" -v have_ib="$have_ib" "$AWK_MEDIANS"'
function ratio(a, b) { if (!num(a) || !num(b) || b == 0) return "-"; return sprintf("%.2f", a / b) }
END {
    printf "%-8s %9s %10s %6s %9s %6s | %9s %11s %6s | %9s %9s %6s\n", "", "ibstack", "ib_send_bw", "", "rstream", "",
           "ibstack", "ib_send_lat", "", "ibstack", "rstream", ""
    printf "%-8s %9s %10s %6s %9s %6s | %9s %11s %6s | %9s %9s %6s\n", "size", "MiB/s", "MiB/s", "ratio", "MiB/s",
           "ratio", "med us", "typical us", "ratio", "mean us", "mean us", "ratio"
    n = split(sizes, S, " ")
    for (i = 1; i <= n; i++) {
        s = S[i]
        ib = have_ib ? median("ibstack" SUBSEP "bw" SUBSEP s) : ""
        sb = median("ib_send_bw" SUBSEP "bw" SUBSEP s)
        rb = median("rstream" SUBSEP "bw" SUBSEP s)
        il = have_ib ? median("ibstack" SUBSEP "lat" SUBSEP s) : ""
        sl = median("ib_send_lat" SUBSEP "lat" SUBSEP s)
        ia = have_ib ? median("ibstack" SUBSEP "lat_avg" SUBSEP s) : ""
        rl = median("rstream" SUBSEP "lat" SUBSEP s)
        printf "%-8s %9s %10s %6s %9s %6s | %9s %11s %6s | %9s %9s %6s\n", label(s), cell(ib), cell(sb), ratio(ib, sb),
               cell(rb), ratio(ib, rb), cell(il), cell(sl), ratio(il, sl), cell(ia), cell(rl), ratio(ia, rl)
    }
}' "$RESULTS"
if [ "$failures" -gt 0 ]; then
    echo "bench: $failures run(s) failed (logs above)"
    exit 1
fi
exit 0
