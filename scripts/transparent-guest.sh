#!/bin/sh
# transparent-guest.sh: transparent mode (LD_PRELOAD=libibstack_preload.so IBSTACK_PRELOAD=rdma)
# against real Ceph 16.2.15 daemons, inside the Soft-RoCE VM (booted by scripts/ceph-vm transparent).
# Uses scripts/ceph-guest.sh for the clusters.
#   transparent-guest.sh test PRELOAD_SO    the suite: "ok - ..." / "not ok - ..." and "N passed, N failed"
#   transparent-guest.sh bench PRELOAD_SO [ROUNDS [perf]]
#                                           rados bench write + seq figures: preloaded async+posix and
#                                           Ceph's own async+rdma, in this one boot, ROUNDS (default 2)
#                                           interleaved rounds (no checks); with perf, a
#                                           system-wide profile of each seq run
set -u
mode=$1 P=$2
G=$(dirname "$0")/ceph-guest.sh
CEPH_ROOT=${CEPH_ROOT:-/tmp/ceph}
passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() { _desc=$1; shift; if "$@"; then ok "$_desc"; else notok "$_desc"; return 1; fi; }
now() { cut -d' ' -f1 /proc/uptime; }
has() { echo "$1" | grep -q -- "$2"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "# $*"; }
rc_qps() { rdma resource show qp 2>/dev/null | grep -c 'type RC'; }
n_mrs() { rdma resource show mr 2>/dev/null | grep -c 'mrn'; }
rxe_pkts() { rdma statistic show link rxe0/1 2>/dev/null | tr ' ' '\n' | awk '/^sent_pkts$/ {getline; print; exit}'; }
# the last output file of the cluster's most recent rados run
last_out() { ls -t "$CEPH_ROOT/$1"/log/rados.*.out 2>/dev/null | head -1; }
export IBSTACK_PRELOAD=rdma

# how the next ceph-guest.sh commands run: the messenger and the preload (empty = none)
as() { export MS=$1 PRELOAD=$2; }
# the three data checks of the issue against cluster NAME, for the client set by `as`
data_checks() {  # NAME LABEL
    name=$1 label=$2
    t0=$(now)
    create=--create
    sh "$G" rados "$name" lspools 2>/dev/null | grep -qx p && create=
    t0=$(now)
    sh "$G" rados "$name" -p p $create put "obj-$label" /tmp/obj.in > /tmp/tp.out 2>&1; prc=$?
    put_s=$(since "$t0"); t0=$(now)
    sh "$G" rados "$name" -p p get "obj-$label" /tmp/obj.out > /tmp/t.out 2>&1; grc=$?
    check "$label: put ($put_s s) and get ($(since "$t0") s) of a 64 MiB object, compared byte for byte" \
        sh -c "[ $prc -eq 0 ] && [ $grc -eq 0 ] && cmp -s /tmp/obj.in /tmp/obj.out" || tail -5 /tmp/tp.out /tmp/t.out | sed 's/^/#   /'
    rm -f /tmp/obj.out
    t0=$(now)
    sh "$G" rados "$name" lspools > /tmp/t.out 2>&1
    check "$label: rados lspools ($(since "$t0") s)" grep -qx p /tmp/t.out
    sh "$G" rados "$name" -p p bench 10 write --no-cleanup > /tmp/bench.out 2>&1; brc=$?
    bw=$(awk -F: '/^Bandwidth \(MB\/sec\)/ {gsub(/ /, "", $2); print $2}' /tmp/bench.out)
    check "$label: rados bench 10 write: ${bw:-?} MiB/s" test $brc -eq 0 -a -n "$bw"
    [ $brc -eq 0 ] || tail -20 /tmp/bench.out | sed 's/^/#   /'
    sh "$G" rados "$name" -p p cleanup > /dev/null 2>&1
    # memstore OSDs keep every object in memory: drop this one again
    sh "$G" rados "$name" -p p rm "obj-$label" > /dev/null 2>&1
}

if [ "$mode" = bench ]; then
    [ "$(hostname)" != "(none)" ] || hostname ceph-vm
    dd if=/dev/urandom of=/tmp/obj.in bs=1M count=8 2>/dev/null
    # rounds interleave the two (third argument, default 2): the VM's speed drifts within a boot
    rounds=${3:-2} prof=${4:-}
    for how in $(for r in $(seq "$rounds"); do echo rdma posix; done); do
        if [ $how = rdma ]; then as async+rdma ""; else as async+posix "$P"; fi
        sh "$G" init b$how 3310 >/dev/null && sh "$G" mon b$how >/dev/null && sh "$G" osd b$how 0 >/dev/null \
            || { echo "# $how: cluster did not start"; sh "$G" logs b$how 20; continue; }
        sh "$G" rados b$how -p p --create put warm /tmp/obj.in >/dev/null 2>&1
        sh "$G" rados b$how -p p bench 10 write --no-cleanup > /tmp/bw.out 2>&1
        if [ "$prof" = perf ]; then
            # the whole VM, 6 s in the middle of the seq run
            sh "$G" rados b$how -p p bench 10 seq > /tmp/bs.out 2>&1 &
            bp=$!
            sleep 2
            perf record -q -a -e cpu-clock -F 2000 -o "/tmp/seq.$how.perf" -- sleep 6 > /dev/null 2>&1
            wait $bp
        else
            sh "$G" rados b$how -p p bench 10 seq > /tmp/bs.out 2>&1
        fi
        w=$(awk -F: '/^Bandwidth \(MB\/sec\)/ {gsub(/ /, "", $2); print $2}' /tmp/bw.out)
        s=$(awk -F: '/^Bandwidth \(MB\/sec\)/ {gsub(/ /, "", $2); print $2}' /tmp/bs.out)
        wl=$(awk -F: '/^Average Latency/ {gsub(/ /, "", $2); print $2}' /tmp/bw.out)
        label=$([ $how = rdma ] && echo "Ceph's own async+rdma" || echo "async+posix preloaded (ibstack)")
        echo "# bench: $label: write ${w:-?} MiB/s (average latency ${wl:-?} s), seq ${s:-?} MiB/s"
        if [ "$prof" = perf ]; then
            echo "# profile of seq, $label: samples by thread name"
            perf report -q -i "/tmp/seq.$how.perf" --stdio --no-children --sort comm 2>/dev/null | grep -v '^#' \
                | grep -v '^$' | head -14 | sed 's/^/#   /'
            echo "# profile of seq, $label: top symbols"
            perf report -q -i "/tmp/seq.$how.perf" --stdio --no-children --sort comm,dso,sym 2>/dev/null | grep -v '^#' \
                | grep -v '^$' | head -40 | sed 's/^/#   /'
        fi
        sh "$G" stop b$how
    done
    exit 0
fi

[ "$mode" = test ] || { sed -n '2,8p' "$0"; exit 2; }
t_suite=$(now)
dd if=/dev/urandom of=/tmp/obj.in bs=1M count=64 2>/dev/null
qp0=$(rc_qps) mr0=$(n_mrs)

# ---------------------------------------------------------------- 1. Ceph's own async+rdma daemons, preloaded rados
say "1. async+rdma mon + OSD (Ceph's RDMA code) <- preloaded async+posix rados"
as async+rdma ""
sh "$G" init own 3300 && sh "$G" mon own && sh "$G" osd own 0 || sh "$G" logs own 20
check "async+rdma cluster up" test $? -eq 0
as async+posix "$P"
data_checks own preloaded-client
sh "$G" rados own lspools > /dev/null 2>&1
check "the preloaded rados said it converts the Ceph ports" grep -q 'ibstack rdma: converting TCP ports 3300,6789,6800-7300' "$(last_out own)"
sh "$G" stop own

# ---------------------------------------------------------------- 2. preloaded daemons
say "2. preloaded async+posix mon + 2 OSDs on v2:10.99.0.1:6789, pools of size 2"
as async+posix "$P"
sh "$G" init pre 6789 osd_pool_default_size=2 osd_pool_default_min_size=2 &&
    sh "$G" mon pre && sh "$G" osd pre 0 && sh "$G" osd pre 1
up=$?
check "preloaded async+posix cluster up (mon, osd.0, osd.1)" test $up -eq 0
[ $up -eq 0 ] || sh "$G" logs pre 30 | grep -v '^#   20' | tail -60
qps=$(rc_qps)
check "its daemons talk over RDMA: rdma resource show qp lists $((qps - qp0)) RC QPs" test $((qps - qp0)) -ge 4
as async+rdma ""
data_checks pre async+rdma-client
as async+posix "$P"
data_checks pre preloaded-client
# dual-stack: a plain posix client (no preload) is served as TCP
as async+posix ""
data_checks pre plain-posix-client
# replication: a plain client writes to the primary over TCP; the primary's copy to the
# replica goes OSD to OSD, over ibstack RDMA
p0=$(rxe_pkts)
sh "$G" rados pre -p p put repl /tmp/obj.in > /dev/null 2>&1; rrc=$?
p1=$(rxe_pkts)
say "rxe0 sent_pkts grew by $((p1 - p0)) during a 64 MiB put over TCP into a pool of size 2"
check "OSD-to-OSD replication of that put ran over RDMA (rxe0 sent $((p1 - p0)) packets, 64 MiB needs 65536 of 1 KiB)" \
    test $rrc -eq 0 -a $((p1 - p0)) -ge 65536
ib=$(cat "$CEPH_ROOT"/pre/log/mon.a.log "$CEPH_ROOT"/pre/log/osd.*.log | grep -c 'Infiniband')
check "the preloaded daemons' logs show no Ceph RDMA code ($ib Infiniband lines)" test "$ib" -eq 0
# stress: 8 preloaded clients at once
# four 1 MiB writes in flight per client, and 40 MiB of registered buffers each: 16 concurrent
# 4 MiB writes from each of 8 clients take more memory than the VM has for two memstore OSDs
say "stress: 8 concurrent preloaded rados bench clients (-t 4 -b 1 MiB) for 20 s"
as async+posix "$P"
qb=$(rc_qps) mb=$(n_mrs)
i=0
while [ $i -lt 8 ]; do
    LD_PRELOAD=$P timeout -s KILL 90 /usr/bin/rados -c "$CEPH_ROOT/pre/ceph.conf" --ms_type async+posix \
        --ms_async_rdma_send_buffers 64 --ms_async_rdma_receive_buffers 256 \
        --log-file "$CEPH_ROOT/pre/log/stress.$i.log" -p p bench 20 write -t 4 -b 1048576 --run-name "s$i" \
        > /tmp/stress.$i 2>&1 &
    i=$((i + 1))
done
wait
bad=0 tot=0
for i in 0 1 2 3 4 5 6 7; do
    b=$(awk -F: '/^Bandwidth \(MB\/sec\)/ {gsub(/ /, "", $2); print $2}' /tmp/stress.$i)
    if [ -z "$b" ] || grep -qiE 'error|failed' /tmp/stress.$i; then bad=$((bad + 1)); tail -5 /tmp/stress.$i | sed 's/^/#   /'; fi
    tot=$(awk -v a="$tot" -v b="${b:-0}" 'BEGIN { print a + b }')
done
check "8 concurrent clients: none failed ($bad with an error; $tot MiB/s together)" test $bad -eq 0
# the daemons tear the clients' QPs down as they notice the closes: wait for it (up to 15 s)
i=0; while { [ "$(rc_qps)" -ne "$qb" ] || [ "$(n_mrs)" -ne "$mb" ]; } && [ $i -lt 75 ]; do sleep 0.2; i=$((i + 1)); done
qa=$(rc_qps) ma=$(n_mrs)
check "after they exited: RC QPs back to $qa (before $qb), MRs $ma (before $mb)" test "$qa" -eq "$qb" -a "$ma" -eq "$mb"
sh "$G" stop pre
i=0; while [ "$(rc_qps)" -ne "$qp0" ] && [ $i -lt 75 ]; do sleep 0.2; i=$((i + 1)); done
ps | grep -E 'ceph-|rados' | grep -v grep | sed 's/^/# still running: /'
check "with every daemon gone: RC QPs $(rc_qps), MRs $(n_mrs) (at the start $qp0, $mr0)" test "$(rc_qps)" -eq "$qp0" -a "$(n_mrs)" -eq "$mr0"

# ---------------------------------------------------------------- 3. fallback
say "3. preloaded rados -> plain async+posix mon: TCP fallback"
as async+posix ""
# its port is one the preloaded client converts (ibstack_preload_ports of this cluster's ceph.conf)
sh "$G" init plain 3301 ibstack_preload_ports=3301,6800-7300 && sh "$G" mon plain
check "plain async+posix mon up" test $? -eq 0
as async+posix "$P"
sh "$G" rados plain lspools > /tmp/t.out 2>&1; frc=$?
check "preloaded rados lspools against it works (status $frc)" test $frc -eq 0
why=$(grep -h 'tcp fallback' "$(last_out plain)" | head -1)
say "it said: $why"
check "and says why it fell back to TCP" has "$why" "answered with Ceph's TCP banner"
sh "$G" stop plain

# ---------------------------------------------------------------- 4. daemonizing mon, unrelated programs
say "4. a preloaded mon that daemonizes (no -f); a Ceph program that opens no Ceph port"
# a mon port outside the default list, converted because the cluster's ceph.conf says so;
# its connections pick their GID by address (ibstack_gid_select = auto), Ceph's client by index
sh "$G" init daemon 3302 ibstack_preload_ports=3302,6800-7300 ibstack_gid_select=auto
d=$CEPH_ROOT/daemon
/usr/bin/ceph-mon -c "$d/ceph.conf" --mkfs -i a --monmap "$d/monmap" --keyring "$d/keyring" > /dev/null 2>&1
LD_PRELOAD=$P /usr/bin/ceph-mon -c "$d/ceph.conf" --ms_type async+posix --log-file "$d/log/mon.a.log" -i a \
    --pid-file "$d/mon.pid" > "$d/log/mon.a.out" 2>&1
i=0; while ! grep -q 'mon\.a@0(leader)' "$d/log/mon.a.log" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
[ -s "$d/mon.pid" ] && cat "$d/mon.pid" > "$d/pids"
as async+rdma ""
sh "$G" rados daemon lspools > /tmp/t.out 2>&1; drc=$?
check "an async+rdma rados talks to the daemonized preloaded mon, whose GIDs are chosen by address (status $drc)" test $drc -eq 0
sh "$G" stop daemon
plain=$(/usr/bin/ceph-conf -c "$d/ceph.conf" --lookup fsid 2>&1; echo "rc=$?")
pre=$(LD_PRELOAD=$P /usr/bin/ceph-conf -c "$d/ceph.conf" --lookup fsid 2>&1; echo "rc=$?")
check "ceph-conf --lookup behaves exactly as without the preload ($(echo "$pre" | tr '\n' ' '))" test "$plain" = "$pre"

dmesg | grep -iE 'oom|killed process' | tail -3 | sed 's/^/# dmesg: /'
echo "# the transparent suite took $(since "$t_suite") s inside the VM"
[ $failed -eq 0 ] || for c in own pre plain daemon; do sh "$G" logs $c 20 2>/dev/null | grep -v '^#   20' | tail -40; done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
