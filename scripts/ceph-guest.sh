#!/bin/sh
# ceph-guest.sh: start and drive real Ceph daemons inside the Soft-RoCE VM (busybox sh).
# Booted by scripts/ceph-vm; every command works on one "cluster" NAME, whose files live in
# $CEPH_ROOT/NAME (default /tmp/ceph/NAME): ceph.conf, the mon's and OSDs' data, logs, pids.
#
#   ceph-guest.sh init NAME PORT [key=value]...   conf + monmap for a one-mon cluster on
#                                                 v2:10.99.0.1:PORT (extra keys go to [global])
#   ceph-guest.sh mon NAME                        mkfs and start mon.a; waits until it leads
#   ceph-guest.sh osd NAME ID                     mkfs and start osd.ID (memstore); waits for active
#   ceph-guest.sh rados NAME ARGS...              run rados against the cluster (-c conf)
#   ceph-guest.sh stop NAME                       kill the cluster's daemons
#   ceph-guest.sh logs NAME [LINES]               print the tail of every log of the cluster
#   ceph-guest.sh test BUILD STAGE                the interop suite of scripts/ceph-vm test
#
# Per command, these environment variables choose how the process runs:
#   MS=async+rdma|async+posix   the messenger (--ms_type; default async+rdma)
#   AS_USER=1                   run as the unprivileged ibuser (uid 1000) instead of root
#   MEMLOCK=KiB|unlimited       ulimit -l before starting (with AS_USER, e.g. 8192)
#   PRELOAD=/path/lib.so        LD_PRELOAD for the process
#   DEBUG_MS=N                  debug_ms of the process (default 1; 20 shows every frame)
#   CEPH_ARGS="--key value ..." further command-line options (Ceph's own variable)
set -u
IP=10.99.0.1
CEPH_ROOT=${CEPH_ROOT:-/tmp/ceph}
MS=${MS:-async+rdma}
AS_USER=${AS_USER:-}
MEMLOCK=${MEMLOCK:-}
PRELOAD=${PRELOAD:-}
DEBUG_MS=${DEBUG_MS:-1}

say() { echo "# $*"; }
now() { cut -d' ' -f1 /proc/uptime; }               # seconds, 10 ms resolution
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# launch_exec OUT CMD...: becomes CMD (exec) the way MS/AS_USER/MEMLOCK/PRELOAD say; run it
# with & for a daemon, so that $! is the daemon's own pid (stop kills that pid)
launch_exec() {
    out=$1; shift
    [ -n "$MEMLOCK" ] && ulimit -l "$MEMLOCK"
    [ -n "$PRELOAD" ] && export LD_PRELOAD="$PRELOAD"
    if [ -n "$AS_USER" ]; then
        exec /usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups "$@" >"$out" 2>&1
    fi
    exec "$@" >"$out" 2>&1
}

# launch OUT CMD...: runs CMD in the foreground, as launch_exec sets it up
launch() {
    ( launch_exec "$@" )
}

# wait_for FILE PATTERN SECONDS [PID]: polls FILE for an extended regexp; 0 when found,
# 1 after SECONDS or when PID (if given) died first
wait_for() {
    f=$1 pat=$2 limit=$3 pid=${4:-}
    t0=$(now)
    while :; do
        grep -Eq -- "$pat" "$f" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            grep -Eq -- "$pat" "$f" 2>/dev/null && return 0
            return 1
        fi
        awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a >= l) }' && return 1
        sleep 0.2
    done
}

common_args() {  # NAME WHO: the options every process of the cluster gets
    d=$CEPH_ROOT/$1
    echo "-c $d/ceph.conf --ms_type $MS --debug_ms $DEBUG_MS --log-file $d/log/$2.log --log_to_stderr false"
}

cmd_init() {  # NAME PORT [key=value]...
    name=$1 port=$2; shift 2
    # an OSD puts itself under host=$(hostname) in the CRUSH map: "(none)" is refused
    [ "$(hostname)" != "(none)" ] || hostname ceph-vm
    d=$CEPH_ROOT/$name
    rm -rf "$d"; mkdir -p "$d/log" "$d/run"
    chmod 1777 "$d/log" "$d/run"
    fsid=$(cat /proc/sys/kernel/random/uuid)
    {
        echo "[global]"
        echo "fsid = $fsid"
        echo "mon_initial_members = a"
        echo "mon_host = v2:$IP:$port"
        echo "public_network = 10.99.0.0/24"
        echo "ms_bind_msgr1 = false"
        echo "ms_bind_ipv6 = false"
        echo "auth_cluster_required = none"
        echo "auth_service_required = none"
        echo "auth_client_required = none"
        echo "ms_async_rdma_device_name = rxe0"
        echo "ms_async_rdma_port_num = 1"
        echo "ms_async_rdma_gid_idx = 1"
        echo "ms_async_rdma_buffer_size = 131072"
        echo "ms_async_rdma_send_buffers = 256"
        echo "ms_async_rdma_receive_buffers = 1024"
        echo "ms_async_rdma_receive_queue_len = 256"
        echo "client_mount_timeout = 40"
        echo "run_dir = $d/run"
        echo "mon_data = $d/mon-\$id"
        echo "osd_data = $d/osd-\$id"
        echo "osd_objectstore = memstore"
        echo "memstore_device_bytes = 1073741824"
        echo "osd_pool_default_size = 1"
        echo "osd_pool_default_min_size = 1"
        echo "mon_allow_pool_size_one = true"
        echo "osd_pool_default_pg_num = 8"
        echo "osd_pool_default_pgp_num = 8"
        echo "osd_pool_default_pg_autoscale_mode = off"
        echo "osd_crush_chooseleaf_type = 0"
        echo "mon_warn_on_pool_no_redundancy = false"
        echo "osd_heartbeat_grace = 60"
        echo "mon_osd_report_timeout = 300"
        for kv in "$@"; do echo "${kv%%=*} = ${kv#*=}"; done
    } > "$d/ceph.conf"
    echo "$port" > "$d/port"
    /usr/bin/monmaptool --create --fsid "$fsid" --addv a "[v2:$IP:$port]" "$d/monmap" >/dev/null 2>&1 \
        || { echo "monmaptool failed"; return 1; }
    /usr/bin/ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null 2>&1 \
        || { echo "ceph-authtool failed"; return 1; }
}

cmd_mon() {  # NAME: mkfs, start, wait until it leads (or died)
    name=$1 d=$CEPH_ROOT/$1
    /usr/bin/ceph-mon -c "$d/ceph.conf" --mkfs -i a --monmap "$d/monmap" --keyring "$d/keyring" \
        >"$d/log/mkfs-mon.out" 2>&1 || { echo "ceph-mon --mkfs failed:"; cat "$d/log/mkfs-mon.out"; return 1; }
    [ -n "$AS_USER" ] && chown -R 1000:1000 "$d"
    launch_exec "$d/log/mon.a.out" /usr/bin/ceph-mon $(common_args "$name" mon.a) -f -i a &
    echo $! >> "$d/pids"
    echo $! > "$d/mon.pid"
    wait_for "$d/log/mon.a.log" 'mon\.a@0\(leader\)' 60 "$(cat "$d/mon.pid")"
}

cmd_osd() {  # NAME ID
    name=$1 id=$2 d=$CEPH_ROOT/$1
    mkdir -p "$d/osd-$id"
    uuid=$(cat /proc/sys/kernel/random/uuid)
    /usr/bin/ceph-osd $(common_args "$name" "mkfs-osd.$id") -i "$id" --mkfs --osd-uuid "$uuid" \
        >"$d/log/mkfs-osd.$id.out" 2>&1 || { echo "ceph-osd --mkfs failed:"; cat "$d/log/mkfs-osd.$id.out"; return 1; }
    [ -n "$AS_USER" ] && chown -R 1000:1000 "$d"
    launch_exec "$d/log/osd.$id.out" /usr/bin/ceph-osd $(common_args "$name" "osd.$id") -f -i "$id" &
    echo $! >> "$d/pids"
    wait_for "$d/log/osd.$id.log" 'state: booting -> active' 120 $!
}

cmd_rados() {  # NAME ARGS...
    name=$1; shift
    d=$CEPH_ROOT/$name
    n=$(ls "$d/log" | grep -c '^rados')
    launch "$d/log/rados.$n.out" /usr/bin/rados $(common_args "$name" "rados.$n") "$@"
    rc=$?
    cat "$d/log/rados.$n.out"
    return $rc
}

cmd_stop() {  # NAME
    d=$CEPH_ROOT/$1
    [ -f "$d/pids" ] || return 0
    for p in $(cat "$d/pids"); do kill "$p" 2>/dev/null; done
    for p in $(cat "$d/pids"); do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null
    done
    rm -f "$d/pids"
}

cmd_logs() {  # NAME [LINES]
    d=$CEPH_ROOT/$1 lines=${2:-40}
    for f in "$d"/log/*; do
        [ -s "$f" ] || continue
        echo "# ---- $f (last $lines lines)"
        tail -n "$lines" "$f" | sed 's/^/#   /'
    done
}

case "${1:-}" in
    init|mon|osd|rados|stop|logs) c=$1; shift; "cmd_$c" "$@"; exit $? ;;
    test) ;;
    *) sed -n '2,24p' "$0"; exit 2 ;;
esac

# ====================================================================== the interop suite
build=$2 stage=$3
T=$build/test_ceph_interop.so
passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() {  # DESC CMD...: the command's success is the check
    d=$1; shift
    if "$@"; then ok "$d"; else notok "$d"; fi
}
# runs a test_ceph_interop mode and counts its ok / not ok lines; extra failure if it
# exited non-zero without reporting one
interop() {  # LABEL OUTFILE CMD...
    label=$1 o=$2; shift 2
    "$@" > "$o" 2>&1
    rc=$?
    cat "$o"
    p=$(grep -c '^ok - ' "$o") f=$(grep -c '^not ok - ' "$o")
    passed=$((passed + p)); failed=$((failed + f))
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then notok "$label exited with $rc without a failed check"; fi
    [ $rc -eq 0 ]
}
# Ceph's own line for a situation: the first line matching PATTERN in FILES
ceph_says() {  # PATTERN FILE...
    pat=$1; shift
    grep -hE -m1 -- "$pat" "$@" 2>/dev/null | head -1 | cut -c1-400
}
table=$CEPH_ROOT/mismatch-table
mkdir -p "$CEPH_ROOT"; : > "$table"
row() { printf '%s\n    ibstack: %s\n    Ceph:    %s\n' "$1" "$2" "$3" >> "$table"; }
t_suite=$(now)

echo "# Ceph: $(/usr/bin/ceph-mon --version 2>&1 | head -1)"
echo "# ibstack: $(ls "$stage/lib" | grep '^libibstack.so.[0-9]*\.' | head -1)"

# ---------------------------------------------------------------- a. the cluster on its own
say "a. mon + 2 OSDs on async+rdma, memstore"
t0=$(now)
MS=async+rdma DEBUG_MS=5 sh "$0" init main 3300 && MS=async+rdma DEBUG_MS=5 sh "$0" mon main
check "ceph-mon (async+rdma) leads its one-mon cluster on v2:$IP:3300 ($(since "$t0") s)" test $? -eq 0
t0=$(now)
sh "$0" osd main 0 && sh "$0" osd main 1
osd_rc=$?
check "osd.0 and osd.1 (async+rdma, memstore) are active ($(since "$t0") s)" test $osd_rc -eq 0
if [ $osd_rc -eq 0 ]; then
    dd if=/dev/urandom of=/tmp/obj.in bs=1M count=64 2>/dev/null
    t0=$(now)
    sh "$0" rados main -p p --create put obj /tmp/obj.in > /tmp/put.out 2>&1
    put_rc=$? put_s=$(since "$t0")
    t0=$(now)
    sh "$0" rados main -p p get obj /tmp/obj.out > /tmp/get.out 2>&1
    get_rc=$? get_s=$(since "$t0")
    check "rados put of a 64 MiB object over async+rdma ($put_s s)" test $put_rc -eq 0
    check "rados get of it back ($get_s s)" test $get_rc -eq 0
    check "the object came back byte for byte (cmp; sha1 $(sha1sum /tmp/obj.in | cut -c1-12))" cmp -s /tmp/obj.in /tmp/obj.out
    rm -f /tmp/obj.out
    # the library preloaded into a Ceph program that does not use it changes nothing
    PRELOAD=$stage/lib/libibstack.so.0 sh "$0" rados main -p p ls > /tmp/ls.out 2>&1
    check "rados ls with LD_PRELOAD=libibstack.so.0 still works over async+rdma" grep -qx obj /tmp/ls.out
    sh "$0" rados main -p p bench 10 write > /tmp/bench.out 2>&1
    bench_rc=$?
    bw=$(awk -F: '/^Bandwidth \(MB\/sec\)/ {gsub(/ /, "", $2); print $2}' /tmp/bench.out)
    grep -E '^(Total time run|Total writes made|Write size|Bandwidth|Average IOPS|Average Latency)' /tmp/bench.out | sed 's/^/#   /'
    check "rados bench 10 write over async+rdma: ${bw:-?} MiB/s (baseline)" test $bench_rc -eq 0 -a -n "$bw"
    echo "# figures: put 64 MiB $put_s s, get 64 MiB $get_s s, bench write ${bw:-?} MiB/s"
    [ $put_rc -eq 0 ] && [ $get_rc -eq 0 ] && [ $bench_rc -eq 0 ] || { cat /tmp/put.out /tmp/get.out /tmp/bench.out; sh "$0" logs main; }
else
    sh "$0" logs main
fi
# the OSDs are not needed further: give their memory back
for p in $(tail -n +2 "$CEPH_ROOT/main/pids" 2>/dev/null); do kill "$p" 2>/dev/null; done
mon_pid=$(cat "$CEPH_ROOT/main/mon.pid" 2>/dev/null)
echo "$mon_pid" > "$CEPH_ROOT/main/pids"
rm -f /tmp/obj.in

# ---------------------------------------------------------------- b. ibstack client -> ceph-mon
say "b. ibstack client -> async+rdma ceph-mon at $IP:3300"
mlog=$CEPH_ROOT/main/log/mon.a.log
before=$(grep -c 'received hello: peer_type=8' "$mlog")
interop "mon-hello" /tmp/b.out "$T" mon-hello $IP 3300
if wait_for "$mlog" 'handle_hello' 30; then :; fi
# the line for our connection: the mon saw more hellos than before
i=0
while [ "$(grep -c 'received hello: peer_type=8' "$mlog")" -le "$before" ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
line=$(grep 'received hello: peer_type=8' "$mlog" | tail -1)
echo "# mon log: $(echo "$line" | cut -c1-300)"
check "the mon parsed our HELLO (its log: received hello: peer_type=8 peer_addr_for_me=v2:$IP:3300)" \
    sh -c "echo '$line' | grep -q 'peer_addr_for_me=v2:$IP:3300'"

# ---------------------------------------------------------------- c. rados -> ibstack listener
say "c. async+rdma rados -> ibstack listener"
"$T" listen-hello $IP > /tmp/c.out 2>&1 &
tpid=$!
wait_for /tmp/c.out '^listening on' 30 $tpid
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' /tmp/c.out)
MS=async+rdma DEBUG_MS=20 launch_exec "$CEPH_ROOT/main/log/rados-c.out" /usr/bin/rados -c "$CEPH_ROOT/main/ceph.conf" \
    --ms_type async+rdma --debug_ms 20 --log-file "$CEPH_ROOT/main/log/rados-c.log" -m "v2:$IP:$port" \
    --client_mount_timeout 60 --mon_client_hunt_interval 30 lspools &
rpid=$!
rlog=$CEPH_ROOT/main/log/rados-c.log
wait_for "$rlog" 'received hello: peer_type=1' 60 $rpid
hello_rc=$?
kill $rpid 2>/dev/null; wait $rpid 2>/dev/null
wait $tpid; trc=$?
cat /tmp/c.out
passed=$((passed + $(grep -c '^ok - ' /tmp/c.out))); failed=$((failed + $(grep -c '^not ok - ' /tmp/c.out)))
[ $trc -eq 0 ] || grep -q '^not ok - ' /tmp/c.out || notok "listen-hello exited with $trc"
echo "# rados log: $(ceph_says '_handle_peer_banner_payload' "$rlog")"
echo "# rados log: $(ceph_says 'received hello' "$rlog")"
check "rados accepted our banner and our HELLO (its log: received hello: peer_type=1)" test $hello_rc -eq 0
[ $hello_rc -eq 0 ] || tail -n 60 "$rlog" | sed 's/^/#   /'

# ---------------------------------------------------------------- d. mismatches
say "d1. async+posix rados -> ibstack listener"
"$T" listen-posix $IP > /tmp/d1.out 2>&1 &
tpid=$!
wait_for /tmp/d1.out '^listening on' 30 $tpid
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' /tmp/d1.out)
rlog=$CEPH_ROOT/main/log/rados-d1.log
launch_exec "$CEPH_ROOT/main/log/rados-d1.out" /usr/bin/rados -c "$CEPH_ROOT/main/ceph.conf" --ms_type async+posix \
    --debug_ms 20 --log-file "$rlog" -m "v2:$IP:$port" --client_mount_timeout 60 lspools &
rpid=$!
wait $tpid; trc=$?
# what rados makes of it: give it until its next retry to log the failure
wait_for "$rlog" '(fault|failed|banner).*(error|reset|Connection|bad|short)|read_bulk|_fault' 30 $rpid
kill $rpid 2>/dev/null; wait $rpid 2>/dev/null
cat /tmp/d1.out
passed=$((passed + $(grep -c '^ok - ' /tmp/d1.out))); failed=$((failed + $(grep -c '^not ok - ' /tmp/d1.out)))
[ $trc -eq 0 ] || grep -q '^not ok - ' /tmp/d1.out || notok "listen-posix exited with $trc"
csays=$(ceph_says '(fault|failed|banner).*(error|reset|Connection|bad|short)|read_bulk' "$rlog")
echo "# rados log: $csays"
row "async+posix rados -> ibstack listener" "$(sed -n 's/^# ibstack said: //p' /tmp/d1.out | cut -c1-300)" "$csays"

say "d2. ibstack client -> async+posix ceph-mon"
MS=async+posix DEBUG_MS=5 sh "$0" init posix 3301 && MS=async+posix DEBUG_MS=5 sh "$0" mon posix
check "ceph-mon (async+posix) leads on v2:$IP:3301" test $? -eq 0
interop "connect-posix" /tmp/d2.out "$T" connect-posix $IP 3301
plog=$CEPH_ROOT/posix/log/mon.a.log
wait_for "$plog" 'bad banner' 30
check "the posix mon logged 'bad banner'" test $? -eq 0
csays=$(ceph_says 'bad banner' "$plog")
echo "# mon log: $csays"
row "ibstack client -> async+posix ceph-mon" "$(sed -n 's/^# ibstack said: //p' /tmp/d2.out | cut -c1-300)" "$csays"
sh "$0" stop posix

say "d3. ms_async_rdma_buffer_size: ibstack 128 KiB -> ceph-mon 16 KiB"
MS=async+rdma DEBUG_MS=5 sh "$0" init buf16k 3302 ms_async_rdma_buffer_size=16384 && MS=async+rdma DEBUG_MS=5 sh "$0" mon buf16k
check "ceph-mon (async+rdma, 16 KiB buffers) leads on v2:$IP:3302" test $? -eq 0
interop "bufsize" /tmp/d3.out "$T" bufsize $IP 3302 16384
blog=$CEPH_ROOT/buf16k/log/mon.a.log
wait_for "$blog" 'status\(|wc error|work request returned error' 30
csays=$(ceph_says 'status\(|work request returned error' "$blog" "$CEPH_ROOT/buf16k/log/mon.a.out")
echo "# mon log: $csays"
check "the mon logged the failed receive" test -n "$csays"
check "the mon survived it" kill -0 "$(cat "$CEPH_ROOT/buf16k/mon.pid")"
row "ms_async_rdma_buffer_size ibstack 128 KiB, ceph-mon 16 KiB (64 KiB write)" "$(sed -n 's/^# ibstack said: //p' /tmp/d3.out | cut -c1-300)" "$csays"
sh "$0" stop buf16k

say "d4. memlock: unprivileged, ulimit -l 8192"
AS_USER=1 MEMLOCK=8192; launch /tmp/d5.raw "$T" memlock; trc=$?
cat /tmp/d5.raw; passed=$((passed + $(grep -c '^ok - ' /tmp/d5.raw))); failed=$((failed + $(grep -c '^not ok - ' /tmp/d5.raw)))
[ $trc -eq 0 ] || grep -q '^not ok - ' /tmp/d5.raw || notok "memlock exited with $trc"
rlog=$CEPH_ROOT/main/log/rados-memlock.log
launch "$CEPH_ROOT/main/log/rados-memlock.out" /usr/bin/rados -c "$CEPH_ROOT/main/ceph.conf" \
    --ms_type async+rdma --log-file "$rlog" --client_mount_timeout 30 lspools
rrc=$?
AS_USER= MEMLOCK=
csays=$(ceph_says 'FAILED ceph_assert' "$CEPH_ROOT/main/log/rados-memlock.out" "$rlog")
echo "# rados (uid 1000, ulimit -l 8192) exited with $rrc: $csays"
check "rados as uid 1000 with ulimit -l 8192 aborts with FAILED ceph_assert(m)" \
    sh -c "[ $rrc -ne 0 ] && echo '$csays' | grep -q 'FAILED ceph_assert(m)'"
row "memlock 8 MiB, uid 1000" "$(sed -n 's/^# ibstack said[^:]*: //p' /tmp/d5.raw | cut -c1-300)" "$csays"

say "d5. a GID index that does not exist (7)"
interop "gid" /tmp/d4.out "$T" gid 7
MS=async+rdma DEBUG_MS=5 sh "$0" init gid7 3303 ms_async_rdma_gid_idx=7 && MS=async+rdma DEBUG_MS=5 sh "$0" mon gid7
mon_rc=$?
glog=$CEPH_ROOT/gid7/log
gpid=$(cat "$CEPH_ROOT/gid7/mon.pid" 2>/dev/null)
# Ceph reads the GID lazily and takes the empty slot (all zeros) without complaint: the
# mon comes up, and fails only when a peer's connection moves its QP to RTR
say "ceph-mon with ms_async_rdma_gid_idx = 7 came up: $([ $mon_rc -eq 0 ] && echo yes || echo no)"
interop "connect-fail" /tmp/d4b.out "$T" connect-fail $IP 3303
wait_for "$glog/mon.a.out" 'FAILED ceph_assert' 20 "$gpid"
rtr=$(ceph_says 'RTR state' "$glog/mon.a.log" "$glog/mon.a.out")
csays=$(ceph_says 'FAILED ceph_assert' "$glog/mon.a.out" "$glog/mon.a.log")
echo "# gid7 mon log: $rtr"
echo "# gid7 mon log: $csays"
check "ceph-mon with ms_async_rdma_gid_idx = 7 fails its RTR transition when a peer connects" test -n "$rtr"
i=0; while kill -0 "$gpid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
kill -0 "$gpid" 2>/dev/null && alive=yes || alive=no
echo "# gid7 mon still running: $alive"
row "ms_async_rdma_gid_idx = 7 (ibstack stack / Ceph mon, an ibstack client connects)" \
    "$(sed -n 's/^# ibstack said: //p' /tmp/d4.out | cut -c1-300) || client of that mon: $(sed -n 's/^# ibstack said: //p' /tmp/d4b.out | cut -c1-200)" \
    "$rtr || $csays (mon still running: $alive)"
sh "$0" stop gid7
# a Ceph client with the bad index, against the healthy mon (last: it takes the mon down)
mpid=$(cat "$CEPH_ROOT/main/mon.pid")
rlog=$CEPH_ROOT/main/log/rados-gid7.log
launch_exec "$CEPH_ROOT/main/log/rados-gid7.out" /usr/bin/rados -c "$CEPH_ROOT/main/ceph.conf" --ms_type async+rdma \
    --ms_async_rdma_gid_idx 7 --debug_ms 5 --log-file "$rlog" --client_mount_timeout 60 lspools &
rpid=$!
wait_for "$mlog" 'RTR state' 30 "$mpid"
wait_for "$CEPH_ROOT/main/log/mon.a.out" 'FAILED ceph_assert' 10 "$mpid"
wait_for "$rlog" 'send_cm_meta|recv_cm_meta|RTR|fault' 20 $rpid
kill $rpid 2>/dev/null; wait $rpid 2>/dev/null
rtr=$(ceph_says 'RTR state' "$mlog" "$CEPH_ROOT/main/log/mon.a.out")
csays=$(ceph_says 'FAILED ceph_assert' "$CEPH_ROOT/main/log/mon.a.out" "$mlog")
rsays=$(ceph_says 'send_cm_meta|recv_cm_meta|RTR' "$rlog" "$CEPH_ROOT/main/log/rados-gid7.out")
echo "# mon log: $rtr"
echo "# mon log: $csays"
echo "# rados (gid 7) log: $rsays"
check "rados with ms_async_rdma_gid_idx = 7: its peer, the healthy mon, fails the RTR transition" test -n "$rtr"
row "rados with ms_async_rdma_gid_idx = 7 -> healthy async+rdma mon" "(ibstack_stack_new refuses the index up front, see above)" \
    "mon: $rtr || $csays; rados: $rsays"
sh "$0" stop main
echo "# ---- mismatch table"
sed 's/^/# /' "$table"
echo "# the Ceph suite took $(since "$t_suite") s inside the VM"
if [ $failed -gt 0 ]; then sh "$0" logs main 30; fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
