#!/bin/sh
# account-guest.sh: the per-message cost account of scripts/bench --account. Runs inside the
# Soft-RoCE VM (scripts/rxe-vm) with strace, perf and alloc_count.so at hand.
#
# usage: account-guest.sh DIR
#   DIR holds ibstack_bench, alloc_count.so and bench.conf (IBSTACK_BASE: the -o options).
#
# For each way of driving the stack (host: one thread polls the stack and spins, as perftest
# does; thread+poll: the stack's polling thread, the application asleep in epoll on the fd, as
# Ceph's messenger workers are) and each pattern (bw 64 B, bw 64 KiB, lat 64 B), it runs the
# pair twice, with N and 2N messages, and divides the difference by N, so connection setup and
# teardown cancel out:
#   syscalls per message  strace -f -c (every thread of client and server), with the four most
#                         frequent calls of the difference
#   allocations per msg   alloc_count.so (malloc, calloc, realloc and the aligned ones)
# Then one perf profile (cpu-clock, the whole VM, 2 s past setup) of thread+poll lat 64 B: where the time goes.
set -u
D=$1
. "$D/bench.conf"
B=$D/ibstack_bench
ADDR=10.99.0.1
W=$(mktemp -d /tmp/acct.XXXXXX)
port=21000

# run_pair TAG WRAP-SERVER WRAP-CLIENT DRIVE-ARGS MODE SIZE ITERS: one server + client run
run_pair() {
    tag=$1 ws=$2 wc=$3 drive=$4 mode=$5 size=$6 iters=$7
    port=$((port + 1))
    # shellcheck disable=SC2086
    $ws "$B" server "$ADDR" "$port" $IBSTACK_BASE $drive > "$W/$tag.srv" 2>&1 &
    sp=$!
    i=0; while ! grep -q '^LISTENING' "$W/$tag.srv" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
    # shellcheck disable=SC2086
    $wc "$B" client "$ADDR" "$port" --mode "$mode" --size "$size" --iters "$iters" --warmup 10 $IBSTACK_BASE $drive \
        > "$W/$tag.cli" 2>&1
    crc=$?
    wait $sp; src=$?
    if [ $crc -ne 0 ] || [ $src -ne 0 ]; then
        echo "  FAILED: $tag (client $crc, server $src)"; tail -5 "$W/$tag.cli" "$W/$tag.srv" | sed 's/^/  | /'
        return 1
    fi
}

# strace -c tables of one side -> "name calls" lines
# (columns: % time, seconds, usecs/call, calls, [errors,] syscall)
calls_of() { awk '$NF != "total" && $NF != "syscall" && $4 ~ /^[0-9]+$/ { print $NF, $4 }' "$1"; }

# syscalls: TAG DRIVE MODE SIZE N
syscalls() {
    for k in 1 2; do
        n=$(($5 * k))
        run_pair "$1.s$k" "strace -f -c -S calls -o $W/$1.s$k.srv.st" "strace -f -c -S calls -o $W/$1.s$k.cli.st" \
            "$2" "$3" "$4" "$n" || return 1
    done
    for side in cli srv; do
        calls_of "$W/$1.s1.$side.st" > "$W/a"; calls_of "$W/$1.s2.$side.st" > "$W/b"
        awk -v n="$5" 'FNR == NR { a[$1] = $2; next } { d[$1] = $2 - a[$1] } END {
                t = 0; for (k in d) t += d[k];
                printf "%.2f", t / n; m = 0
                while (m < 4) { best = ""; for (k in d) if (best == "" || d[k] > d[best]) best = k
                                if (best == "" || d[best] / n < 0.05) break
                                printf "%s %s %.2f", (m ? "," : " ("), best, d[best] / n; delete d[best]; m++ }
                if (m) printf ")" }' "$W/a" "$W/b" > "$W/$side.sum"
    done
    printf '  %-12s %-10s syscalls/msg  client %s  server %s\n' "$6" "$3 $(label "$4")" "$(cat "$W/cli.sum")" "$(cat "$W/srv.sum")"
}

# allocs: TAG DRIVE MODE SIZE N
allocs() {
    for k in 1 2; do
        n=$(($5 * k))
        rm -f "$W/$1.a$k.srv" "$W/$1.a$k.cli"
        run_pair "$1.a$k" "env LD_PRELOAD=$D/alloc_count.so ALLOC_COUNT_OUT=$W/$1.a$k.srvc" \
            "env LD_PRELOAD=$D/alloc_count.so ALLOC_COUNT_OUT=$W/$1.a$k.clic" "$2" "$3" "$4" "$n" || return 1
    done
    c=$(awk -v n="$5" 'FNR == NR { a = $2; next } { printf "%.3f", ($2 - a) / n }' "$W/$1.a1.clic" "$W/$1.a2.clic")
    s=$(awk -v n="$5" 'FNR == NR { a = $2; next } { printf "%.3f", ($2 - a) / n }' "$W/$1.a1.srvc" "$W/$1.a2.srvc")
    printf '  %-12s %-10s allocations/msg  client %s  server %s\n' "$6" "$3 $(label "$4")" "$c" "$s"
}

label() { case $1 in 64) echo "64 B" ;; 65536) echo "64 KiB" ;; *) echo "$1 B" ;; esac; }

fails=0
echo "== per-message cost account (N and 2N messages, difference / N)"
for way in host thread; do
    case $way in
        host) drive="--drive host --wait spin" name=host-spin ;;
        thread) drive="--drive thread --wait poll" name=thread+poll ;;
    esac
    for pat in "bw 64 4000" "bw 65536 600" "lat 64 1000"; do
        set -- $pat
        syscalls "$way.$1.$2" "$drive" "$1" "$2" "$3" "$name" || fails=$((fails + 1))
        allocs "$way.$1.$2" "$drive" "$1" "$2" "$3" "$name" || fails=$((fails + 1))
    done
done

echo "== perf profile: thread+poll lat 64 B, the whole VM for 2 s in the middle of 30000 ping-pongs (cpu-clock, self time)"
port=$((port + 1))
# shellcheck disable=SC2086
"$B" server "$ADDR" "$port" $IBSTACK_BASE --drive thread --wait poll > "$W/perf.srv" 2>&1 &
sp=$!
i=0; while ! grep -q '^LISTENING' "$W/perf.srv" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
# shellcheck disable=SC2086
"$B" client "$ADDR" "$port" --mode lat --size 64 --iters 30000 $IBSTACK_BASE --drive thread --wait poll > "$W/perf.cli" 2>&1 &
cp=$!
sleep 1.5  # past setup (pool registration) and warm-up: only the ping-pong is sampled
perf record -q -a -e cpu-clock -F 4000 -o "$W/all.perf" -- sleep 2 > /dev/null 2>&1 || fails=$((fails + 1))
wait $cp || fails=$((fails + 1))
wait $sp
grep '^RESULT' "$W/perf.cli" | sed 's/^/  /'
echo "  -- by thread (comm)"
perf report -q -i "$W/all.perf" --stdio --no-children --sort comm 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8 | sed 's/^/  | /'
echo "  -- top symbols"
perf report -q -i "$W/all.perf" --stdio --no-children --sort comm,dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' \
    | head -30 | sed 's/^/  | /'
[ $fails -eq 0 ] || { echo "account: $fails runs failed"; exit 1; }
exit 0
