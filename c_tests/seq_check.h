/* The call checker of test_seq: every ibstack call of a random sequence goes through one of
 * the macros below, which reset the thread's last-error message, make the call and check
 * the C-ABI contract on the result:
 *   - a status is 0 or a negative errno; a count is 0..max or a negative errno;
 *   - a negative result is a real errno (-1 … -4095), never -ENOTRECOVERABLE (a panic
 *     caught at the boundary), and leaves a message "ibstack_<fn>: <detail>";
 *   - expect V_VALID (live handles, valid arguments, by the test's model): not -EINVAL;
 *   - expect V_BAD (a handle the model knows is not live, or a NULL one): exactly -EINVAL
 *     (0 / NULL / false with the message for return types that cannot carry an errno;
 *     a _free leaves a "... not freed" message).
 * A violation prints the seed, the sequence and the step, and ends the program. */
#ifndef IBSTACK_SEQ_CHECK_H
#define IBSTACK_SEQ_CHECK_H

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ibstack.h>

enum { V_ANY = 0, V_VALID = 1, V_BAD = 2 };

/* per thread: where we are, for the failure report */
typedef struct {
    uint64_t rng;       /* xorshift64* state of this sequence */
    uint64_t seed;      /* the run's seed */
    long seq;           /* sequence number within the run */
    long step;          /* calls made in this sequence */
    int tid;            /* thread index (concurrent variant), 0 otherwise */
    const char *mode;   /* "host", "threads", "vm": for the replay line */
    const char *op;     /* the operation being run (for the report) */
} seq_ctx;

static _Thread_local seq_ctx C;
static int seq_trace; /* TRACE=1: every call is printed, for replays */
static atomic_long seq_total_calls;
/* a violation found by a regression seed is reported but does not stop the others */
static int seq_violation_exit = 1;

static inline uint64_t rnd64(void) {
    uint64_t x = C.rng ? C.rng : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    C.rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}
/* uniform in [0, n) (n > 0) */
static inline uint32_t rn(uint32_t n) { return (uint32_t)((rnd64() >> 32) % n); }
/* true with probability pct % */
static inline int chance(int pct) { return (int)rn(100) < pct; }
static inline uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* the seed of sequence `seq` (thread `tid`) of a run seeded `seed` */
static inline uint64_t seq_seed(uint64_t seed, long seq, int tid) {
    return mix64(seed ^ mix64((uint64_t)seq * 0x100000001B3ull + (uint64_t)tid)) | 1;
}

/* a size from the interesting ones: 0, 1, small, page-ish, huge, SIZE_MAX, a negative int */
static inline size_t rand_size(size_t small_max) {
    switch (rn(9)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return (size_t)rn((uint32_t)small_max + 1);
    case 3: return (size_t)rn((uint32_t)small_max + 1);
    case 4: return small_max;
    case 5: return (size_t)1 << rn(64);
    case 6: return SIZE_MAX;
    case 7: return (size_t)(intptr_t)-(intptr_t)(1 + rn(4096)); /* a negative int passed as size_t */
    default: return (size_t)INT32_MAX + rn(3);
    }
}

static inline int rand_int(void) {
    static const int v[] = {0, 1, -1, 2, 3, 7, 64, 4096, INT32_MAX, INT32_MIN, -4096, 65535, 65536};
    return chance(70) ? v[rn(sizeof v / sizeof *v)] : (int)(uint32_t)rnd64();
}

static const char *seq_msg(void) {
    static _Thread_local char buf[8192];
    ibstack_last_error_message(buf, sizeof buf);
    return buf;
}

static void seq_fail(const char *fn, const char *fmt, ...) {
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    printf("not ok - %s: %s [op %s; seed 0x%016llx sequence %ld step %ld thread %d] last error: \"%.600s\"\n", fn, detail,
           C.op ? C.op : "?", (unsigned long long)C.seed, C.seq, C.step, C.tid, seq_msg());
    printf("# replay: SEED=0x%016llx ONLY=%ld ./test_seq %s   (the whole run: SEED=0x%016llx UNTIL=%ld)\n",
           (unsigned long long)C.seed, C.seq, C.mode, (unsigned long long)C.seed, C.seq);
    fflush(stdout);
    if (seq_violation_exit) _exit(1);
}

/* sets the thread's message to one of another function, so a failing call that leaves
 * no message of its own is caught */
static inline void seq_pre(const char *fn) {
    if (strcmp(fn, "ibstack_config_to_json") != 0)
        ibstack_config_to_json(NULL, NULL, 0);
    else
        ibstack_config_get(NULL, NULL, NULL, 0);
    C.step++;
    atomic_fetch_add_explicit(&seq_total_calls, 1, memory_order_relaxed);
}

static int seq_msg_names(const char *fn) {
    const char *m = seq_msg();
    size_t n = strlen(fn);
    return strncmp(m, fn, n) == 0 && m[n] == ':' && m[n + 1] == ' ' && m[n + 2] != 0;
}

/* max < 0: a status (0 or -errno); max >= 0: a count 0..max or -errno */
static long seq_post_int(const char *fn, long rc, long max, int expect) {
    if (seq_trace) printf("# %ld.%ld %s %s -> %ld\n", C.seq, C.step, C.op ? C.op : "", fn, rc);
    if (rc > 0 && (max < 0 || rc > max)) seq_fail(fn, "returned %ld (a status is 0 or -errno; count limit %ld)", rc, max);
    if (rc < -4095) seq_fail(fn, "returned %ld, not an errno", rc);
    if (rc == -ENOTRECOVERABLE) seq_fail(fn, "returned -ENOTRECOVERABLE: a panic reached the C boundary");
    if (rc < 0 && !seq_msg_names(fn)) seq_fail(fn, "returned %ld (%s) without a message naming the function", rc, ibstack_strerror((int)rc));
    if (expect == V_VALID && rc == -EINVAL) seq_fail(fn, "failed with -EINVAL on live handles with valid arguments");
    if (expect == V_BAD && rc != -EINVAL) seq_fail(fn, "returned %ld, want -EINVAL (a handle that is not live, or NULL)", rc);
    return rc;
}

/* return types that cannot carry an errno (u32, size_t, bool, pointers): V_BAD wants 0 and
 * the message; otherwise anything goes (0 may be a real value) */
static uintptr_t seq_post_zero(const char *fn, uintptr_t v, int expect) {
    if (seq_trace) printf("# %ld.%ld %s %s -> %#lx\n", C.seq, C.step, C.op ? C.op : "", fn, (unsigned long)v);
    if (expect == V_BAD) {
        if (v != 0) seq_fail(fn, "returned %#lx for a handle that is not live, want 0/NULL", (unsigned long)v);
        if (!seq_msg_names(fn)) seq_fail(fn, "returned 0 for a handle that is not live without a message naming the function");
    }
    return v;
}

static void seq_post_free(const char *fn, int expect) {
    if (seq_trace) printf("# %ld.%ld %s %s\n", C.seq, C.step, C.op ? C.op : "", fn);
    if (expect == V_BAD) {
        const char *m = seq_msg();
        if (!seq_msg_names(fn) || !strstr(m, "not freed")) seq_fail(fn, "a _free of a handle that is not live left no \"not freed\" message");
    } else if (expect == V_VALID && seq_msg_names(fn)) {
        seq_fail(fn, "the _free of a live handle was refused");
    }
}

/* ST: status; CNT: count up to max; Z: zero-on-failure return; FREE: a _free */
#define ST(expect, fn, ...) seq_post_int(#fn, (seq_pre(#fn), (long)fn(__VA_ARGS__)), -1, (expect))
#define CNT(expect, max, fn, ...) seq_post_int(#fn, (seq_pre(#fn), (long)fn(__VA_ARGS__)), (long)(max), (expect))
#define Z(expect, fn, ...) seq_post_zero(#fn, (seq_pre(#fn), (uintptr_t)fn(__VA_ARGS__)), (expect))
#define FREE(expect, fn, p) (seq_pre(#fn), fn(p), seq_post_free(#fn, (p) ? (expect) : V_ANY)) /* NULL: a no-op */

/* a string copied out with the library's convention: full length n returned, buf holds
 * min(n, len - 1) bytes and a NUL */
static void seq_check_text(const char *fn, const char *buf, size_t len, long n) {
    if (n < 0 || buf == NULL || len == 0) return;
    size_t k = (size_t)n < len - 1 ? (size_t)n : len - 1;
    if (buf[k] != 0) seq_fail(fn, "returned length %ld but byte %zu of the %zu-byte buffer is not the NUL", n, k, len);
    if (strlen(buf) != k) seq_fail(fn, "returned length %ld but the string in the %zu-byte buffer has %zu bytes", n, len, strlen(buf));
}

#endif
