#!/bin/sh
# Runs ibstack's C tests and adds up their "ok" / "not ok" lines.
# usage: run.sh host|vm|asan|vm-asan BUILD_DIR STAGE_DIR
# Ends with "N passed, N failed"; exits non-zero if anything failed.
mode=$1 build=$2 stage=$3
passed=0 failed=0

tally() {  # $1 = label, $2 = exit status, $3 = output file
    p=$(grep -c '^ok - ' "$3")
    f=$(grep -c '^not ok - ' "$3")
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $1 exited with status $2 without reporting a failed check"
        failed=$((failed + 1))
    fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && [ "$2" -eq 0 ]; then
        echo "not ok - $1 ran no check"
        failed=$((failed + 1))
    fi
}

run() {  # $1 = label, rest = command
    label=$1; shift
    echo "# --- $label"
    out=$(mktemp)
    "$@" > "$out" 2>&1
    rc=$?
    cat "$out"
    tally "$label" "$rc" "$out"
    rm -f "$out"
}

check() {  # $1 = description, rest = command whose success is the check
    d=$1; shift
    if "$@" >/dev/null 2>&1; then echo "ok - $d"; passed=$((passed + 1)); else echo "not ok - $d"; failed=$((failed + 1)); fi
}

lib=$stage/lib/libibstack.so
if [ "$mode" = host ]; then
    for v in so a; do
        for t in test_null_args test_config test_nodevice test_log test_fork test_handles test_sizes; do run "$t ($v)" "$build/$t.$v"; done
    done
    # random call sequences (SEED=... to replay one; the seed is printed first)
    run "test_seq host (so)" env SECS=8 "$build/test_seq.so" host
    run "test_seq threads (so)" env SECS=4 "$build/test_seq.so" threads
    run "test_seq host (a)" env SECS=3 "$build/test_seq.a" host
    run "test_seq threads (a)" env SECS=2 "$build/test_seq.a" threads
    run "test_header (C11, .so)" "$build/test_header.so"
    run "test_header_cpp (C++17, .a)" "$build/test_header_cpp.a"
    run "test_preload without LD_PRELOAD" "$build/test_preload" expect-absent
    run "test_preload with LD_PRELOAD" env LD_PRELOAD="$lib" "$build/test_preload" expect-present
    echo "# --- library checks"
    check "nm -D exports only ibstack_* symbols" \
        sh -c "test -z \"\$(nm -D --defined-only '$lib' | awk '{print \$3}' | grep -v '^ibstack_' | grep -v '^IBSTACK_')\""
    check "nm -D exports ibstack_version under a version node IBSTACK_0.*" \
        sh -c "nm -D --defined-only '$lib' | grep -q ' ibstack_version@@IBSTACK_0\.[0-9]*\$'"
    check "readelf shows the soname libibstack.so.0" sh -c "readelf -d '$lib' | grep -q 'Library soname: \[libibstack.so.0\]'"
    check "the header declares only ibstack_/IBSTACK_ names" \
        sh -c "! grep -E '^(#define |typedef |[a-z].*\\()' '$stage/include/ibstack.h' | grep -v -E 'IBSTACK_|ibstack_|__cplusplus'"
    check "pkg-config --modversion works" sh -c "PKG_CONFIG_PATH='$stage/lib/pkgconfig' pkg-config --modversion ibstack"
    plain=$(sh -c 'echo hello; printf "%s\n" a b c | sort -r; ls / | wc -l' 2>&1; echo "rc=$?")
    pre=$(LD_PRELOAD="$lib" sh -c 'echo hello; printf "%s\n" a b c | sort -r; ls / | wc -l' 2>&1; echo "rc=$?")
    check "LD_PRELOAD into an unrelated program changes nothing" test "$plain" = "$pre"
elif [ "$mode" = vm ]; then
    for v in so a; do
        run "test_ib_rxe ($v)" "$build/test_ib_rxe.$v"
        run "test_memlock ($v, uid 1000, ulimit -l 8192)" \
            sh -c "ulimit -l 8192 && exec /usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups '$build/test_memlock.$v'"
        echo 0 > /proc/sys/vm/nr_hugepages
        run "test_mem_rxe ($v, no huge pages reserved)" "$build/test_mem_rxe.$v"
        echo 64 > /proc/sys/vm/nr_hugepages
        run "test_mem_rxe ($v, 64 huge pages reserved)" "$build/test_mem_rxe.$v" expect-huge
        echo 0 > /proc/sys/vm/nr_hugepages
    done
    run "test_handles vm (so)" "$build/test_handles.so" vm
    # random call sequences on rxe0 (host-driven stacks, connections, chunks, dispatchers),
    # and the run whose chunk-address reuse once read as a model violation
    run "test_seq vm (so)" env SECS=20 "$build/test_seq.so" vm
    run "test_seq vm replay (so)" env SEED=0xbdcb20c6006ca2b5 UNTIL=57 "$build/test_seq.so" vm
    # queue pairs: the shared library for every scenario, the static one for one
    for q in srq nosrq; do
        for s in one two kill timeout; do run "test_qp_rxe $s $q (so)" "$build/test_qp_rxe.so" $s $q; done
    done
    run "test_qp_rxe two srq (a)" "$build/test_qp_rxe.a" two srq
    # connections: each mode forks its peers; echo moves 100 MB each way per run
    for q in srq nosrq; do
        for n in 1 8; do run "test_conn_rxe echo $q $n (so)" "$build/test_conn_rxe.so" echo $q $n; done
        run "test_conn_rxe backpressure $q (so)" "$build/test_conn_rxe.so" backpressure $q
        run "test_stream_api_rxe $q (so)" "$build/test_stream_api_rxe.so" $q
        for side in connector acceptor; do run "test_conn_rxe close $q $side (so)" "$build/test_conn_rxe.so" close $q $side; done
        for m in race banner hostdriven logcb gidauto; do run "test_conn_rxe $m $q (so)" "$build/test_conn_rxe.so" $m $q; done
    done
    run "test_conn_rxe echo srq 8, 10 MB (a)" "$build/test_conn_rxe.a" echo srq 8 10000000
    # the data path allocates nothing (counting malloc interposed by the test)
    for q in srq nosrq; do
        for m in conn qp; do run "test_alloc_rxe $m $q (so)" "$build/test_alloc_rxe.so" $m $q; done
    done
    run "test_alloc_rxe conn srq (a)" "$build/test_alloc_rxe.a" conn srq
    # hostile peers, careless callers, dying links (each scenario prints "# saw: ..." and its time)
    for q in srq nosrq; do
        for m in deadlines handshake; do run "test_faults_rxe $m $q (so)" "$build/test_faults_rxe.so" $m $q; done
        [ "$q" = srq ] && run "test_faults_rxe keepalive $q (so)" "$build/test_faults_rxe.so" keepalive $q
    done
    # shaped RDMA path (veth vA/vB with rxe1/rxe2, set up by the test): netem loss/delay mid-transfer
    # (~6 s each), a blackholed connection beside a healthy one (~20 s each), 1000 connection
    # lifetimes in a seeded random order (~10 s each; SEED=... replays one)
    for q in srq nosrq; do
        for d in thread host; do
            run "test_faults_rxe netem $q $d (so)" "$build/test_faults_rxe.so" netem $q $d
            run "test_faults_rxe churn $q $d (so)" "$build/test_faults_rxe.so" churn $q $d
        done
    done
    run "test_faults_rxe blackhole srq thread (so)" "$build/test_faults_rxe.so" blackhole srq thread
    run "test_faults_rxe blackhole nosrq host (so)" "$build/test_faults_rxe.so" blackhole nosrq host
    # hostile peers and careless callers
    for q in srq nosrq; do
        for m in inject rawpeer chunks dispfree sizes stackfree asyncev logcb pollpanic fork rxcap; do run "test_hostile_rxe $m $q (so)" "$build/test_hostile_rxe.so" $m $q; done
    done
    # write coalescing seen from a raw-verbs peer (every SEND counted; ~3 s each)
    for d in thread host; do
        for o in on off; do run "test_coalesce_rxe $d $o (so)" "$build/test_coalesce_rxe.so" $d $o; done
    done
    # inline SENDs (ibstack_max_inline): the default, off, and a size rxe0 refuses (~1 s each)
    for m in default 0 1024; do run "test_inline_rxe $m (so)" "$build/test_inline_rxe.so" $m; done
    run "test_inline_rxe default (a)" "$build/test_inline_rxe.a" default
    # zero-copy receive (lent chunks) and send (TX chunks filled in place) against a raw-verbs peer
    for d in thread host; do
        for q in srq nosrq; do run "test_zerocopy_rxe $d $q (so)" "$build/test_zerocopy_rxe.so" $d $q; done
    done
    # close racing the polling thread: 10000 rounds, bounded to 60 s (~5000 fit in the TCG VM)
    run "test_hostile_rxe closerace srq 10000 (so)" "$build/test_hostile_rxe.so" closerace srq 10000
    run "test_hostile_rxe closerace nosrq 2000 (so)" "$build/test_hostile_rxe.so" closerace nosrq 2000
    # the examples, as the README demo runs them: one server, two clients (1 + 4 connections)
    ex_opts="-o ms_async_rdma_device_name=rxe0 -o ms_async_rdma_gid_idx=1 -o ms_async_rdma_buffer_size=16384 \
        -o ms_async_rdma_send_buffers=256 -o ms_async_rdma_receive_queue_len=128 -o ms_async_rdma_receive_buffers=2048"
    es_out=$(mktemp)
    "$build/echo_server" -n 5 $ex_opts 10.99.0.1 0 > "$es_out" 2>&1 &
    es_pid=$!
    port=""
    for i in $(seq 50); do
        port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$es_out")
        [ -n "$port" ] && break
        sleep 0.2
    done
    run "examples: echo_client, 20 MB over 1 connection" sh -c "'$build/echo_client' $ex_opts 10.99.0.1 '$port' 20M 1 &&
        echo 'ok - echo_client 20M 1' || echo 'not ok - echo_client 20M 1'"
    run "examples: echo_client, 20 MB over 4 connections" sh -c "'$build/echo_client' $ex_opts 10.99.0.1 '$port' 20M 4 &&
        echo 'ok - echo_client 20M 4' || echo 'not ok - echo_client 20M 4'"
    i=0
    while kill -0 $es_pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 $es_pid 2>/dev/null && kill $es_pid
    wait $es_pid
    es_rc=$?
    echo "# --- echo_server output"
    cat "$es_out"
    rm -f "$es_out"
    check "examples: echo_server served both clients and exited (status $es_rc)" test "$es_rc" -eq 0
elif [ "$mode" = asan ]; then
    # tests linked with -fsanitize=address against the ASan build of the library; an ASan
    # report exits non-zero (halt_on_error) and counts as a failure; leaks are reported too
    export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:exitcode=99
    for v in so a; do
        for t in test_null_args test_config test_nodevice test_log test_fork test_handles test_sizes; do
            run "$t (ASan, $v)" "$build/$t.$v"
        done
    done
    run "test_seq host (ASan, so)" env SECS=8 "$build/test_seq.so" host
    run "test_seq threads (ASan, so)" env SECS=4 "$build/test_seq.so" threads
    run "test_seq host (ASan, a)" env SECS=3 "$build/test_seq.a" host
    run "test_seq threads (ASan, a)" env SECS=2 "$build/test_seq.a" threads
elif [ "$mode" = vm-asan ]; then
    # the randomized sequences on rxe0 against the ASan library (make check-vm-asan)
    export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:exitcode=99
    # every family's handles, live, freed, double-freed and of the wrong type, against the ASan library
    run "test_handles vm (ASan, so)" "$build/test_handles.so" vm
else
    echo "usage: $0 host|vm|asan|vm-asan BUILD STAGE" >&2; exit 2
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
