#!/bin/sh
# guard-guest.sh: the guard (libibstack_preload.so) and ibstack-doctor tests inside the
# Soft-RoCE VM with real Ceph (busybox sh). Booted once by scripts/guard-vm:
#
#   guard-guest.sh GUARD_DIR CEPH_GUEST BUILD STAGE
#
# GUARD_DIR holds libibstack_preload.so, ibstack-doctor and guard_verbs; CEPH_GUEST is
# scripts/ceph-guest.sh (clusters, daemons, logs); BUILD/STAGE are c_tests/build and
# c_tests/stage (echo_server, the library). Prints "ok - " / "not ok - " per check, the
# doctor's --json answers between "#json NAME" and "#end" lines (parsed on the host), and
# "N passed, N failed" at the end.
set -u
G=$1 CG=$2 B=$3 S=$4
P=$G/libibstack_preload.so D=$G/ibstack-doctor V=$G/guard_verbs
IP=10.99.0.1
R=/tmp/guard
rm -rf "$R"; mkdir -p "$R"; chmod 1777 "$R"
passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() { d=$1; shift; if "$@"; then ok "$d"; else notok "$d"; fi; }
say() { echo "# $*"; }
show() { sed 's/^/#   /' "$@"; }
as_user() { /usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups "$@"; }
# line number of the first match of an extended regexp in FILE (0 = none)
first() { n=$(grep -nE -m1 -- "$1" "$2" | cut -d: -f1); echo "${n:-0}"; }
has() { grep -qE -- "$1" "$2"; }
lacks() { ! grep -qE -- "$1" "$2"; }

# ------------------------------------------------------------- A. C programs, no Ceph
say "A1. stale errno: a long send chain posted inline into a 4-entry send queue after errno = EINPROGRESS"
"$V" errno > "$R/errno.plain" 2>&1; rc_plain=$?
LD_PRELOAD=$P "$V" errno > "$R/errno.guard" 2>&1; rc_guard=$?
IBSTACK_PRELOAD=off LD_PRELOAD=$P "$V" errno > "$R/errno.off" 2>&1; rc_off=$?
for f in plain guard off; do echo "# $f: $(cat "$R/errno.$f" | tr '\n' ' ')"; done
vals() { sed -n 's/^post_send returned \(-*[0-9]*\) errno \([0-9]*\).*/\1 \2/p' "$1"; }
set -- $(vals "$R/errno.plain"); pr=${1:-0} pe=${2:-0}
check "without the guard the post fails ($pr) and errno stays EINPROGRESS (115): the stale errno Ceph prints" \
    test "$rc_plain" -eq 0 -a "$pr" -ne 0 -a "$pe" -eq 115
set -- $(vals "$R/errno.guard"); gr=${1:-0} ge=${2:-0}
[ "$gr" -lt 0 ] && gr=$((-gr))
check "with the guard errno after the failed post equals its return value ($gr = $ge)" \
    test "$rc_guard" -eq 0 -a "$gr" -ne 0 -a "$gr" -eq "$ge" -a "$ge" -ne 115
set -- $(vals "$R/errno.off"); oe=${2:-0}
check "IBSTACK_PRELOAD=off passes the post through untouched (errno $oe stays 115, no guard line)" \
    sh -c "[ $rc_off -eq 0 ] && [ $oe -eq 115 ] && ! grep -q 'ibstack guard:' $R/errno.off"

say "A2. path MTU 4096 above rxe0's active MTU 1024, ibv_modify_qp called directly"
"$V" mtu > "$R/mtu.plain" 2>&1
LD_PRELOAD=$P "$V" mtu > "$R/mtu.guard" 2>&1
show "$R/mtu.plain" "$R/mtu.guard"
check "the guard names the path MTU against the active MTU before the call" \
    has "^ibstack guard: ibv_modify_qp\(INIT->RTR of QP 0x[0-9a-f]+\) pre-flight: path MTU 4096 is above port 1's active MTU 1024" "$R/mtu.guard"
check "the call itself still happens and returns what it returns without the guard" \
    test "$(grep '^ibv_modify_qp' "$R/mtu.plain")" = "$(grep '^ibv_modify_qp' "$R/mtu.guard")" -a -n "$(grep '^ibv_modify_qp' "$R/mtu.plain")"
check "without the guard nothing names it" lacks "path MTU" "$R/mtu.plain"

say "A3. a completion queue twice the device's max_cqe"
"$V" bigcq > "$R/cq.plain" 2>&1
LD_PRELOAD=$P "$V" bigcq > "$R/cq.guard" 2>&1
show "$R/cq.guard"
check "the guard names the CQ size against max_cqe before the call" \
    has "^ibstack guard: ibv_create_cq: cqe [0-9]+ > the device's max_cqe [0-9]+" "$R/cq.guard"
check "the creation's outcome is the same with and without the guard" \
    test "$(grep '^ibv_create_cq' "$R/cq.plain")" = "$(grep '^ibv_create_cq' "$R/cq.guard")"

say "A4. programs that never call verbs"
/bin/true > "$R/true.plain" 2>&1; t1=$?
LD_PRELOAD=$P /bin/true > "$R/true.guard" 2>&1; t2=$?
check "/bin/true with the guard preloaded: same status, no output" sh -c "[ $t1 -eq $t2 ] && cmp -s $R/true.plain $R/true.guard && [ ! -s $R/true.guard ]"

# ------------------------------------------------------------- B. ibstack-doctor, no daemons
say "B. ibstack-doctor against good and broken configurations"
sh "$CG" init doc 3399 > /dev/null 2>&1
good=$R/good.conf
{ cat /tmp/ceph/doc/ceph.conf; echo "ms_type = async+rdma"; } > "$good"
chmod 644 "$good"
/usr/bin/ceph-conf -c "$good" --lookup fsid > "$R/cc.plain" 2>&1; c1=$?
LD_PRELOAD=$P /usr/bin/ceph-conf -c "$good" --lookup fsid > "$R/cc.guard" 2>&1; c2=$?
check "ceph-conf with the guard preloaded prints exactly what it prints without" sh -c "[ $c1 -eq $c2 ] && cmp -s $R/cc.plain $R/cc.guard"
doctor() {  # NAME CONF SECTION [as_user]: runs the doctor, keeps lines and json, sets $drc
    n=$1 c=$2 s=$3 u=${4:-}
    if [ -n "$u" ]; then
        (ulimit -l 8192; as_user "$D" -c "$c" -n "$s") > "$R/$n.txt" 2>&1; drc=$?
        (ulimit -l 8192; as_user "$D" -c "$c" -n "$s" --json) > "$R/$n.json" 2>&1
    else
        "$D" -c "$c" -n "$s" > "$R/$n.txt" 2>&1; drc=$?
        "$D" -c "$c" -n "$s" --json > "$R/$n.json" 2>&1
    fi
    show "$R/$n.txt"
    echo "#json $n $drc"; cat "$R/$n.json"; echo "#end"
}
doctor good "$good" osd.0
check "good configuration as root: exit 0, no problem line" sh -c "[ $drc -eq 0 ] && ! grep -q '^problem' $R/good.txt"
check "good configuration: the GID check names gid_idx 1 for 10.99.0.1" has "^ok gid: .*10\.99\.0\.1 -> gid_idx 1" "$R/good.txt"
check "no systemctl in the VM: the unit's LimitMEMLOCK is reported as unknown" has "^note memlock_unit: cannot tell ceph-osd@0.service" "$R/good.txt"
doctor user "$good" osd.0 user
check "good configuration as uid 1000 with ulimit -l 8192: a memlock problem naming the bytes and LimitMEMLOCK (exit $drc)" \
    sh -c "[ $drc -ge 1 ] && grep -qE '^problem memlock: this process \(uid 1000\).*33554432 bytes \(32.0 MiB\).*LimitMEMLOCK=infinity.*ceph_assert\(m\)' $R/user.txt"
bad() {  # NAME CHECK PATTERN key=value...: a copy of the good conf with the keys changed
    n=$1 ck=$2 pat=$3; shift 3
    c=$R/$n.conf
    cp "$good" "$c"
    for kv in "$@"; do
        k=${kv%%=*}
        grep -v "^$k = " "$c" > "$c.t"; mv "$c.t" "$c"
        echo "$k = ${kv#*=}" >> "$c"
    done
    doctor "$n" "$c" osd.0
    if [ $drc -ge 1 ] && grep -qE -- "^problem $ck: $pat" "$R/$n.txt"; then
        ok "$n: exit status counts the problem ($drc) and '$ck' names it"
    else
        notok "$n: exit status counts the problem ($drc) and '$ck' names it"
    fi
}
bad netdev device "ms_async_rdma_device_name = \"d0\" matches no RDMA device.*its RDMA device is rxe0" ms_async_rdma_device_name=d0
bad port2 port "ms_async_rdma_port_num = 2 does not exist on rxe0" ms_async_rdma_port_num=2
bad gid7 gid "ms_async_rdma_gid_idx = 7 is an empty slot.*valid entries: 0 = fe80.*1 = 10\.99\.0\.1" ms_async_rdma_gid_idx=7
bad gid0 gid "GID index 0 is .*fe80.* but the configured network is IPv4 \(10\.99\.0\.0/24\).*ms_async_rdma_gid_idx = 1" ms_async_rdma_gid_idx=0
bad pathmtu mtu "ibstack_path_mtu = 4096 is above the port's active MTU 1024" ibstack_path_mtu=4096
bad queues queues "the receive queue holds 2048 buffers .* ms_async_rdma_receive_buffers = 1024" ms_async_rdma_receive_queue_len=2048
bad hugepages hugepages "ms_async_rdma_enable_hugepage = true but only 0 huge pages" ms_async_rdma_enable_hugepage=true
c=$R/mstype.conf
sed 's/^ms_type = .*/ms_type = async+posix/' "$good" > "$c"; printf '[osd]\nms_type = async+rdma\n' >> "$c"
doctor mstype "$c" osd.0
check "ms_type mismatch ([global] posix, [osd] rdma): the problem explains recv_cm_meta bad length (26)" \
    sh -c "[ $drc -ge 1 ] && grep -qE '^problem ms_type: .*\\[client\\] async\\+posix.*recv_cm_meta got bad length \\(26\\)' $R/mstype.txt"
mv /dev/infiniband /dev/infiniband.hidden
doctor nodev "$good" osd.0
mv /dev/infiniband.hidden /dev/infiniband
check "/dev/infiniband hidden (as PrivateDevices=yes does): the problem names it" \
    sh -c "[ $drc -ge 1 ] && grep -qE '^problem device_nodes: .*PrivateDevices' $R/nodev.txt"
"$B/echo_server" -o ms_async_rdma_device_name=rxe0 -o ms_async_rdma_gid_idx=1 -o ms_async_rdma_send_buffers=64 \
    -o ms_async_rdma_receive_queue_len=64 -o ms_async_rdma_receive_buffers=256 -o ibstack_rx_first_block=64 \
    -n 2 $IP 0 > "$R/echo.out" 2>&1 &
epid=$!
i=0; while ! grep -q '^listening on' "$R/echo.out" && [ $i -lt 300 ] && kill -0 $epid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
eport=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$R/echo.out")
"$D" -c "$good" -n osd.0 --peer "$IP:$eport" > "$R/peer-echo.txt" 2>&1; prc=$?
show "$R/peer-echo.txt"
grep -q '^ok peer_rdma' "$R/peer-echo.txt" || show "$R/echo.out"
check "--peer against an ibstack echo listener: TCP, cm_meta handshake and a probe echoed over RDMA" \
    sh -c "[ $prc -eq 0 ] && grep -q '^ok peer_tcp' $R/peer-echo.txt && grep -q '^ok peer_handshake' $R/peer-echo.txt && grep -q '^ok peer_rdma: .*echoed' $R/peer-echo.txt"
kill $epid 2>/dev/null; wait $epid 2>/dev/null

# ------------------------------------------------------------- C. Ceph with and without the guard
say "C1. healthy async+rdma mon and rados, without and then with the guard"
norm() {  # the mon's messenger, RDMA and state lines without timestamps, thread ids, numbers, ids
          # and paths, as a sorted set (cluster-log and rocksdb lines come with the ticks of the
          # run's length, not with the transport)
    sed -E 's/^[0-9T:.+-]+ +[0-9a-f]+ +-?[0-9]+ //; s#/tmp/ceph/c(plain|guard)/#/tmp/ceph/C/#g;
            s/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/UUID/g;
            s/0x[0-9a-f]+/N/g; s/[0-9a-f]{8,}/H/g; s/[0-9]+/N/g' "$1" | grep -E "$KEEP" | sort -u | grep -v -E "$RACY"
}
# lines of the RDMA teardown whose presence depends on timing: they come and go between two
# runs without the guard too (a connection closed during its handshake, a completion after close)
KEEP='Infiniband|RDMA|Processor|Messenger|mon\.a@|-- '
RACY='RDMAConnectedSocketImpl (fault tcp fd|handle_connection recv handshake msg failed|read when ib not (active|connected))|RDMAStack handle_rx_event csi with qpn N may be dead'
run_pair() {  # TAG PORT PRELOAD: fresh cluster, mon, rados lspools, stop; keeps the logs
    tag=$1
    sh "$CG" init "c$tag" "$2" > /dev/null 2>&1
    PRELOAD=$3 sh "$CG" mon "c$tag"; mrc=$?
    PRELOAD=$3 sh "$CG" rados "c$tag" lspools > "$R/rados.$tag" 2>&1; rrc=$?
    sh "$CG" stop "c$tag"
    cp /tmp/ceph/c$tag/log/mon.a.log "$R/mon.$tag.log"
    cat /tmp/ceph/c$tag/log/mon.a.out "$R/rados.$tag" > "$R/stderr.$tag" 2>/dev/null
    echo "$mrc $rrc"
}
set -- $(run_pair plain 3310 ""); mp=$1 rp=$2
set -- $(run_pair guard 3320 "$P"); mg=$1 rg=$2
check "the mon leads and rados lspools works without the guard ($mp, $rp)" test "$mp" -eq 0 -a "$rp" -eq 0
check "the mon leads and rados lspools works with the guard preloaded into both ($mg, $rg)" test "$mg" -eq 0 -a "$rg" -eq 0
check "no 'ibstack guard:' problem line from the healthy mon or rados" lacks "ibstack guard:" "$R/stderr.guard"
norm "$R/mon.plain.log" > "$R/mon.plain.n"; norm "$R/mon.guard.log" > "$R/mon.guard.n"
diff "$R/mon.plain.n" "$R/mon.guard.n" > "$R/mon.diff"
echo "# mon log: $(wc -l < "$R/mon.plain.log") lines without, $(wc -l < "$R/mon.guard.log") with the guard; $(wc -l < "$R/mon.plain.n") distinct after filtering; diff:"
show "$R/mon.diff"
check "the mon's messenger/RDMA/state log lines are the same with the guard (timestamps, numbers, ids and racy teardown lines filtered)" test ! -s "$R/mon.diff"
check "the guarded mon's log does not mention ibstack" lacks "ibstack" "$R/mon.guard.log"

say "C2. doctor --peer against the guarded mon"
sh "$CG" init peer 3311 > /dev/null 2>&1
PRELOAD=$P sh "$CG" mon peer
"$D" -c /tmp/ceph/peer/ceph.conf -n client.admin --peer "$IP:3311" > "$R/peer-mon.txt" 2>&1
show "$R/peer-mon.txt"
check "--peer against a Ceph mon: handshake, then its msgr2 banner over RDMA" \
    sh -c "grep -q '^ok peer_handshake' $R/peer-mon.txt && grep -q '^ok peer_rdma: .*Ceph msgr2 banner over RDMA (26 bytes)' $R/peer-mon.txt"

say "C3. memlock: rados as uid 1000 with ulimit -l 8192, the guard preloaded"
AS_USER=1 MEMLOCK=8192 PRELOAD=$P sh "$CG" rados peer --client_mount_timeout 20 lspools > "$R/memlock.out" 2>&1
show "$R/memlock.out" | grep -E 'ibstack guard|ceph_assert' | cut -c1-600
g=$(first 'ibstack guard: .*memlock' "$R/memlock.out") a=$(first 'Infiniband.cc: [0-9]+: FAILED ceph_assert\(m\)' "$R/memlock.out")
check "the guard's memlock line (bytes, LimitMEMLOCK) comes before Ceph's ceph_assert(m) (lines $g < $a)" \
    sh -c "[ $g -gt 0 ] && [ $a -gt $g ] && grep -qE 'ibstack guard: .*memlock.*bytes.*LimitMEMLOCK=infinity' $R/memlock.out"
check "the failed ibv_reg_mr itself is explained (bytes asked, RLIMIT_MEMLOCK, CAP_IPC_LOCK, VmPin)" \
    has "ibstack guard: ibv_reg_mr of [0-9]+ bytes .* failed with .*RLIMIT_MEMLOCK 8388608 bytes.*CAP_IPC_LOCK no, already pinned \(VmPin\)" "$R/memlock.out"
sh "$CG" stop peer

say "C4. a mon with ms_async_rdma_gid_idx = 7 (empty on rxe0) and the guard; a healthy rados connects"
sh "$CG" init gid7 3312 ms_async_rdma_gid_idx=7 > /dev/null 2>&1
PRELOAD=$P sh "$CG" mon gid7
mo=/tmp/ceph/gid7/log/mon.a.out
sh "$CG" rados gid7 --ms_async_rdma_gid_idx 1 --client_mount_timeout 15 lspools > "$R/gid7.rados" 2>&1
i=0; while ! grep -q 'FAILED ceph_assert' "$mo" && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
grep -E 'ibstack guard|ceph_assert|RTR' "$mo" | cut -c1-700 | sed 's/^/#   /'
g=$(first 'ibstack guard: .*gid_idx = 7 is an empty slot.*valid entries' "$mo") a=$(first '\.cc: [0-9]+: FAILED ceph_assert' "$mo")
check "the guard names index 7 and the valid entries before Ceph's assert (lines $g < $a)" sh -c "[ $g -gt 0 ] && [ $a -gt $g ]"
m=$(first 'ibstack guard: .*ibv_modify_qp\(INIT->RTR' "$mo")
check "the RTR modify is named by the guard before the assert too (line $m)" sh -c "[ $m -gt 0 ] && [ $a -gt $m ]"
sh "$CG" stop gid7

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
