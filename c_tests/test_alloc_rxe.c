/* Tier B (Soft-RoCE VM): the data path allocates nothing.
 *
 * The test executable defines malloc, calloc, realloc, free, posix_memalign,
 * aligned_alloc and memalign and forwards them to glibc's __libc_* entry points;
 * the library (Rust's allocator is libc malloc) and libibverbs resolve to these,
 * so every allocation made while `counting` is set is counted.
 *
 *   test_alloc_rxe conn srq|nosrq   one host-driven stack, connector and acceptor
 *                                   in this process: after a warm-up, 2,000 rounds
 *                                   of ibstack_conn_send (64 B .. 64 KiB) + draining
 *                                   ibstack_conn_recv + ibstack_stack_poll
 *   test_alloc_rxe qp srq|nosrq     two QPs on one dispatcher: ibstack_qp_post_send +
 *                                   ibstack_dispatcher_poll + ibstack_dispatcher_release_rx
 * Each prints the number of allocations counted and checks that it is 0. */
/* conn_util.h defines helpers this test does not all call */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "conn_util.h"
#pragma GCC diagnostic pop

#include <malloc.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static volatile int counting;
static unsigned long n_alloc; /* malloc, calloc, realloc, the aligned ones */
static unsigned long n_free;

static inline void count(unsigned long *c) {
    if (counting) __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n) {
    count(&n_alloc);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    count(&n_alloc);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    count(&n_alloc);
    return __libc_realloc(p, n);
}
void free(void *p) {
    if (p) count(&n_free);
    __libc_free(p);
}
void *memalign(size_t align, size_t n) {
    count(&n_alloc);
    return __libc_memalign(align, n);
}
void *aligned_alloc(size_t align, size_t n) {
    count(&n_alloc);
    return __libc_memalign(align, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
    count(&n_alloc);
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

#define WARMUP 300
#define ROUNDS 2000
#define CHUNK_SIZE 16384u /* ms_async_rdma_buffer_size of rig_open and stack_open */

static const char *const hd_opts[] = {"ibstack_stack_thread", "false", NULL};

static const char *qname(int srq) { return srq ? "SRQ" : "per-QP RQ"; }

/* ------------------------------------------------------------------ connections */

static uint8_t rbuf[256 * 1024];

/* sends `len` bytes of stream position `*soff` from `a` and drains them on `b`, polling
 * the stack; returns 0 when every byte arrived intact, -1 on an error or a stall */
static int conn_round(ibstack_stack *s, ibstack_conn *a, ibstack_conn *b, size_t len, uint32_t seed, uint64_t *soff,
                      uint64_t *roff) {
    size_t sent = 0;
    uint64_t want = *soff + len;
    double end = 0;
    unsigned spins = 0;
    while (*roff < want) {
        if (sent < len) {
            ssize_t k = ibstack_conn_send(a, pat_at(seed, *soff), len - sent);
            if (k > 0) {
                sent += (size_t)k;
                *soff += (uint64_t)k;
            } else if (k != -EAGAIN) {
                return -1;
            }
        }
        if (ibstack_stack_poll(s) < 0) return -1;
        for (;;) {
            ssize_t n = ibstack_conn_recv(b, rbuf, sizeof rbuf);
            if (n == -EAGAIN) break;
            if (n <= 0) return -1;
            if (memcmp(rbuf, pat_at(seed, *roff), (size_t)n)) return -1;
            *roff += (uint64_t)n;
        }
        /* a stall check that reads the clock rarely (now_s does not allocate either) */
        if (++spins % 4096 == 0) {
            if (end == 0) end = now_s() + 20;
            else if (now_s() > end) return -1;
        }
    }
    return 0;
}

/* rounds [from, to): sizes 64 B .. 64 KiB, both directions in turn */
static int conn_rounds(ibstack_stack *s, ibstack_conn *c, ibstack_conn *d, int from, int to, uint64_t off[4]) {
    for (int i = from; i < to; i++) {
        size_t len = (size_t)64 << (i % 11); /* 64 .. 65536 */
        int r = (i & 1) ? conn_round(s, d, c, len, 21, &off[2], &off[3]) : conn_round(s, c, d, len, 12, &off[0], &off[1]);
        if (r) return i;
    }
    return to;
}

static void mode_conn(int srq) {
    pat_init();
    ibstack_stack *s;
    int rc = stack_open(&s, srq, hd_opts);
    CHECK_RC(rc, 0, "host-driven stack created (%s)", qname(srq));
    if (rc) return;
    ibstack_listener *l;
    rc = ibstack_listen(s, TEST_IP, 0, &l);
    CHECK_RC(rc, 0, "listening on %s", TEST_IP);
    if (rc) return;
    ibstack_conn *c = NULL, *d = NULL;
    rc = ibstack_connect(s, TEST_IP, (uint16_t)ibstack_listener_port(l), &c);
    CHECK_RC(rc, 0, "connector started");
    if (rc) return;
    rc = accept_wait(s, 1, l, 20, &d);
    CHECK_RC(rc, 0, "connection accepted in the same process");
    if (rc) return;
    int ok = conn_wait_connected(s, 1, c, 20) == 1 && conn_wait_connected(s, 1, d, 20) == 1;
    CHECK(ok, "both ends connected (connector: %s)", conn_msg(c));
    if (!ok) return;

    uint64_t off[4] = {0, 0, 0, 0};
    int done = conn_rounds(s, c, d, 0, WARMUP, off);
    CHECK(done == WARMUP, "warm-up: %d of %d rounds", done, WARMUP);
    if (done != WARMUP) return;
    n_alloc = n_free = 0;
    counting = 1;
    done = conn_rounds(s, c, d, WARMUP, WARMUP + ROUNDS, off);
    counting = 0;
    unsigned long allocs = n_alloc, frees = n_free;
    CHECK(done == WARMUP + ROUNDS, "%d rounds of send 64 B..64 KiB + recv + stack_poll, both directions (%llu + %llu bytes)",
          done - WARMUP, (unsigned long long)off[1], (unsigned long long)off[3]);
    printf("# %s: %d rounds: %lu allocations, %lu frees\n", qname(srq), done - WARMUP, allocs, frees);
    CHECK(allocs == 0 && frees == 0, "%s: the connection data path made no allocation (%lu allocations, %lu frees)", qname(srq),
          allocs, frees);
    if (allocs || frees) dump_stack("alloc", s, 0);

    ibstack_conn_close(c);
    ibstack_conn_close(d);
    wait_torn_down(s, 1, 10);
    ibstack_listener_free(l);
    ibstack_stack_free(s);
}

/* ------------------------------------------------------------------ queue pairs */

typedef struct {
    ibstack_qp *a, *b;
} qp_pair;

/* posts `nchunks` TX chunks of `len` bytes on `from` and waits for their receives
 * (released at once) and their send completions; 0 on success */
static int qp_round(ibstack_dispatcher *disp, ibstack_mem_mgr *mm, ibstack_qp *from, size_t len, int nchunks) {
    ibstack_chunk *ch[8];
    size_t got = 0;
    if (ibstack_mem_mgr_get_tx_chunks(mm, CHUNK_SIZE * (size_t)nchunks, ch, (size_t)nchunks, &got) || got != (size_t)nchunks) return -1;
    for (size_t i = 0; i < got; i++) {
        ibstack_chunk_reset_write(ch[i]);
        if (ibstack_chunk_write(ch[i], pat_at(3, i), len) != len) return -1;
    }
    size_t posted = 0;
    if (ibstack_qp_post_send(from, ch, got, &posted) || posted != got) return -1;
    int rx = 0, spins = 0;
    ibstack_mem_stats m;
    ibstack_wc wc[16];
    for (;;) {
        int n = ibstack_dispatcher_poll(disp, wc, 16);
        if (n < 0) return -1;
        for (int i = 0; i < n; i++) {
            if (wc[i].status != 0 || wc[i].byte_len != len) return -1;
            if (ibstack_dispatcher_release_rx(disp, (ibstack_chunk *)(uintptr_t)wc[i].wr_id)) return -1;
            rx++;
        }
        if (rx == nchunks && ibstack_qp_tx_outstanding(from) == 0) {
            ibstack_mem_mgr_stats(mm, &m);
            if (m.tx_in_use == 0) return 0;
        }
        if (++spins > 20000000) return -1;
    }
}

static void mode_qp(int srq) {
    pat_init();
    rig r;
    int rc = rig_open(&r, srq, NULL);
    CHECK_RC(rc, 0, "rig opened (%s)", qname(srq));
    if (rc) return;
    qp_pair p;
    int fa = -1, fb = -1;
    rc = ibstack_qp_new(r.d, &p.a);
    if (!rc) rc = ibstack_qp_new(r.d, &p.b);
    if (!rc) rc = tcp_pair(&fa, &fb);
    if (!rc) rc = handshake_both(p.a, fa, p.b, fb);
    CHECK_RC(rc, 0, "two QPs connected to each other (RTS): %s", rc ? h_last_error() : "");
    if (rc) return;
    int done = 0, total = WARMUP + ROUNDS;
    for (int i = 0; i < total; i++) {
        if (i == WARMUP) {
            n_alloc = n_free = 0;
            counting = 1;
        }
        size_t len = (size_t)64 << (i % 9); /* 64 .. 16384 (one chunk) */
        if (qp_round(r.d, r.mm, (i & 1) ? p.b : p.a, len, 1 + i % 4)) break;
        done++;
    }
    counting = 0;
    unsigned long allocs = n_alloc, frees = n_free;
    CHECK(done == total, "%d rounds of qp_post_send (1..4 chunks) + dispatcher_poll + dispatcher_release_rx", done - WARMUP);
    printf("# %s: %d QP rounds: %lu allocations, %lu frees\n", qname(srq), done - WARMUP, allocs, frees);
    CHECK(allocs == 0 && frees == 0, "%s: the QP data path made no allocation (%lu allocations, %lu frees)", qname(srq), allocs,
          frees);
    ibstack_qp_to_dead(p.a);
    ibstack_qp_to_dead(p.b);
    ibstack_qp_free(p.a);
    ibstack_qp_free(p.b);
    close(fa);
    close(fb);
    rig_close(&r);
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "srq") && strcmp(argv[2], "nosrq")) || (strcmp(argv[1], "conn") && strcmp(argv[1], "qp"))) {
        fprintf(stderr, "usage: %s conn|qp srq|nosrq\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int srq = !strcmp(argv[2], "srq");
    if (!strcmp(argv[1], "conn"))
        mode_conn(srq);
    else
        mode_qp(srq);
    fflush(stdout);
    return h_failed ? 1 : 0;
}
