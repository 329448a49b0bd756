/* Randomized, seeded sequences of C-API calls (see seq_check.h for what every call is held to).
 *
 *   test_seq [host]   tier A: configs (set/get/load_file of random ceph.conf files, to_json),
 *                     device lists, ib_new/stack_new without a device, every family's functions
 *                     with NULL, foreign, wrong-type, freed and long-freed handles, the static
 *                     string functions, cm_meta encode/decode of random bytes
 *   test_seq threads  the host calls from 2-4 threads sharing config and device-list handles,
 *                     one freeing while the others call (for ASan and ThreadSanitizer)
 *   test_seq vm       tier B (rxe0): ib, mem_mgr, chunks, cq, dispatcher, qp (loopback pairs),
 *                     and a host-driven stack with listeners, connect/accept/adopt,
 *                     send/recv/shutdown/close, all in random order with stale pointers
 *
 * Environment: SEED (default: from the clock; printed first), SECS (time budget), SEQS (at most
 * this many sequences), ONLY=n (run sequence n alone), UNTIL=n (run sequences 0..n).
 * Regression seeds (below) run first, every time. */
#include "seq_check.h"
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define SEQ_LEAK_CHECK 1
#endif
#include "seq_world.h"

/* runs that once found something: {mode, seed, last sequence}; sequences 0..last of the seed
 * run first, every time (the model carries dead handles from one sequence to the next, so a
 * run is replayed from its start) */
static const struct {
    const char *mode;
    uint64_t seed;
    long until;
} regressions[] = {
    /* a listener that outlived its stack accepted a connection nothing would ever poll or
     * drain; the stack and the connection kept each other alive (LeakSanitizer at exit) */
    {"vm", 0xfea6f9ed165fbeddull, 19},
    /* a length above PTRDIFF_MAX (SIZE_MAX here, to ibstack_cm_meta_encode) became a Rust slice
     * of that length: undefined behaviour, an abort in a debug build ("unsafe precondition(s)
     * violated: slice::from_raw_parts_mut"), success claimed in a release build */
    {"host", 0x80880a9d75004be1ull, 54},
};

static double now_secs(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t env_u64(const char *name, uint64_t dflt) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

typedef void (*seq_fn)(void);
#ifdef SEQ_LEAK_CHECK
static int seq_leak_check;
#endif

static void run_one(const char *mode, seq_fn fn, uint64_t seed, long seq) {
    memset(&C, 0, sizeof C);
    C.seed = seed;
    C.seq = seq;
    C.mode = mode;
    C.rng = seq_seed(seed, seq, 0);
    fn();
#ifdef SEQ_LEAK_CHECK
    /* everything of the sequence is freed by now: what LeakSanitizer finds leaked, it leaked */
    if (seq_leak_check && __lsan_do_recoverable_leak_check()) seq_fail("LeakSanitizer", "the sequence leaked (report above)");
#endif
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "host";
    seq_fn fn = NULL;
    double dflt_secs = 15;
    if (strcmp(mode, "host") == 0) {
        fn = host_sequence;
    } else if (strcmp(mode, "threads") == 0) {
        fn = threads_sequence;
        dflt_secs = 5;
    } else if (strcmp(mode, "vm") == 0) {
        fn = vm_sequence;
        dflt_secs = 45;
        if (vm_setup()) return 1;
    } else {
        fprintf(stderr, "usage: %s [host|threads|vm]\n", argv[0]);
        return 2;
    }
    uint64_t seed = env_u64("SEED", 0);
    if (!seed) seed = mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)) | 1;
    double secs = (double)env_u64("SECS", (uint64_t)dflt_secs);
    long max_seqs = (long)env_u64("SEQS", 1000000);
    long only = getenv("ONLY") ? (long)env_u64("ONLY", 0) : -1;
    long until = getenv("UNTIL") ? (long)env_u64("UNTIL", 0) : -1;
#ifdef SEQ_LEAK_CHECK
    seq_leak_check = strcmp(mode, "vm") == 0 && !getenv("NO_LEAK_CHECK"); /* after each VM sequence */
#endif
    seq_trace = getenv("TRACE") != NULL;
    printf("# test_seq %s: SEED=0x%016llx (replay with SEED=0x%016llx ./test_seq %s)\n", mode, (unsigned long long)seed,
           (unsigned long long)seed, mode);
    fflush(stdout);
    seq_setup();

    double t0 = now_secs();
    long regs = 0;
    if (only < 0 && until < 0) {
        for (size_t i = 0; i < sizeof regressions / sizeof *regressions; i++) {
            if (strcmp(regressions[i].mode, mode) != 0) continue;
            for (long q = 0; q <= regressions[i].until; q++, regs++) run_one(mode, fn, regressions[i].seed, q);
        }
        printf("ok - %ld regression sequences of mode %s\n", regs, mode);
        fflush(stdout);
    }
    long n = 0;
    if (only >= 0) {
        run_one(mode, fn, seed, only);
        n = 1;
    } else {
        for (long s = 0; s < max_seqs && (until >= 0 ? s <= until : now_secs() - t0 < secs); s++, n++)
            run_one(mode, fn, seed, s);
    }
    seq_teardown();
    double dt = now_secs() - t0;
    printf("ok - %s: %ld sequences, %ld calls, %.1f s, no contract violation (SEED=0x%016llx)\n", mode, n + regs,
           (long)atomic_load(&seq_total_calls), dt, (unsigned long long)seed);
    fflush(stdout); /* before LeakSanitizer's exit check */
    return 0;
}
