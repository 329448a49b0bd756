/* ibstack_bench: bandwidth and ping-pong latency over ibstack's stream API,
 * the ibstack column of scripts/bench (which compares it with ib_send_bw,
 * ib_send_lat and rstream in the Soft-RoCE VM).
 *
 *   ibstack_bench server <ip> <port> [options]
 *   ibstack_bench client <ip> <port> --mode bw|lat --size N --iters N [options]
 *
 * bw:  the client sends `iters` messages of `size` bytes (one ibstack_conn_send
 *      call per message, repeated for what a partial send left over); the server
 *      reads size x iters bytes and answers with one byte. The client prints
 *      RESULT ... bw_mib_s=X, timed from the first send to the arrival of that
 *      byte (MiB = 2^20 bytes).
 * lat: `warmup` untimed then `iters` timed ping-pongs of `size` bytes; the
 *      server echoes. The client prints RESULT ... lat_us=X (mean round-trip / 2,
 *      i.e. one-way, as rstream and ib_send_lat count it) and lat_median_us,
 *      lat_min_us, lat_p99_us (also round-trip / 2).
 *
 * idle: the client opens its connection(s), makes one exchange on each, sends a
 *      start byte on each, waits past the busy-poll window (1 s), then sleeps --secs S
 *      with the connections live, sends a done byte on each and prints RESULT ...
 *      idle_cpu_pct=X: the CPU time of its whole process (every thread, the stack's
 *      polling thread included; getrusage) over those S seconds, as a percentage of
 *      one core. The server prints the same figure for its process between start and
 *      done (its window includes the client's 1 s of settling).
 *
 * Every RESULT / SERVER line also carries cpu_s=X, the process's CPU time (user +
 * system, every thread) over the timed part. Round trips are timed with the TSC on
 * x86_64 (calibrated against CLOCK_MONOTONIC at start, as perftest uses cycles):
 * on a guest whose clocksource is HPET every clock_gettime is a system call and an
 * emulated device read, which the benchmark must not add to what it measures;
 * timeouts use CLOCK_MONOTONIC_COARSE.
 *
 * Before timing, the client sends a 24-byte hello (mode, size, iters, warmup,
 * flags) and waits for the server's one-byte "ready", so the connection is up
 * in both directions and the server has its buffers.
 *
 * Options (both roles):
 *   -o key=value     an ibstack/Ceph option (repeatable), e.g.
 *                    -o ms_async_rdma_device_name=rxe0 -o ms_async_rdma_gid_idx=1
 *   --wait spin|poll on -EAGAIN retry at once (spin, the default) or sleep in
 *                    epoll_wait on ibstack_conn_fd (edge-triggered)
 *   --drive thread|host  the stack's own polling thread does the polling (thread,
 *                    the default), or this program's single thread drives it with
 *                    ibstack_stack_poll while it spins (host; implies --wait spin)
 *   --timeout S      give up when one operation makes no progress for S seconds
 *                    (default 60); also bounds the handshake and accept
 *   --verify         check every received byte (costs CPU; not for timing)
 *   --zc             bw and lat modes without copies (client's flag, the server
 *                    follows): messages go out from TX chunks of the stack's pools
 *                    (ibstack_stack_mem_mgr, ibstack_mem_mgr_get_tx_chunks) with
 *                    ibstack_conn_send on each chunk's buffer, not writing the payload
 *                    unless --verify (as perftest); the receiver borrows the received
 *                    buffers with ibstack_conn_recv_chunks and gives them back with
 *                    ibstack_conn_release_chunks (lat: both ends, the server's echo
 *                    from its own TX chunks as ib_send_lat answers from its buffer)
 *   --count N        server: serve N connections one after another, then exit (1)
 *   --conns N        bw and idle modes: N connections in parallel, one thread each
 *                    (client and server; the server serves them together). bw: each
 *                    sends iters/N messages; RESULT bw_mib_s is all bytes over the time
 *                    from the common start to the last server's ack (default 1)
 * Client only: --mode, --size N[K|M], --iters N, --warmup N (default iters/10,
 * at least 1, at most 1000), --secs S (idle mode, default 5).
 * IBSTACK_LOG=debug (and the library's other environment variables) pass through.
 * Exit status: 0 on success, 1 on any failure (the message says which call
 * failed and why), 2 on a usage error. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <ibstack.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

enum mode { MODE_NONE = 0, MODE_BW = 1, MODE_LAT = 2, MODE_IDLE = 3 };
enum wait_kind { WAIT_SPIN, WAIT_POLL };
#define HELLO_MAGIC 0x42534249u /* "IBSB" little-endian */
#define HELLO_LEN 24
#define FLAG_VERIFY 1u
#define FLAG_ZC 2u
#define READY_BYTE 'R'
#define ACK_BYTE 'A'
#define START_BYTE 'S'
#define DONE_BYTE 'D'
#define MAX_CONNS 64

struct options {
    int server;
    const char *ip;
    uint16_t port;
    enum mode mode;
    size_t size;
    uint32_t iters;
    long warmup; /* -1: default */
    enum wait_kind wait;
    int host_drive;
    double timeout_s;
    int verify;
    int zc;
    unsigned count;
    unsigned conns;
    double idle_s;
    int nkv;
    char **kv;
};

static struct options opt;
static ibstack_stack *g_stack; /* polled by this thread with --drive host */
static __thread int epfd = -1;        /* epoll set holding this thread's conn fd (--wait poll) */
static __thread unsigned long stalls; /* epoll_wait timeouts: a wakeup that never came */
static __thread int wait_ms = 1000;   /* epoll_wait's timeout (idle mode: longer, not to be the CPU it measures) */

/* ------------------------------------------------------------------ helpers */

/* for timeouts: the coarse clock is read from the vDSO without touching the clocksource */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* for what is measured: the TSC, calibrated once (seconds per tick) */
static double tick_s;

static uint64_t ticks(void) {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return (uint64_t)(mono_s() * 1e9);
#endif
}

static void calibrate_ticks(void) {
#if defined(__x86_64__)
    double t0 = mono_s();
    uint64_t c0 = ticks();
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL);
    double t1 = mono_s();
    uint64_t c1 = ticks();
    tick_s = c1 > c0 ? (t1 - t0) / (double)(c1 - c0) : 1e-9;
#else
    tick_s = 1e-9;
#endif
}

static double secs_since(uint64_t t0) { return (double)(ticks() - t0) * tick_s; }

/* CPU time of the whole process (user + system, every thread) */
static double cpu_now(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
           (double)u.ru_stime.tv_usec * 1e-6;
}

static void last_error(const char *what, long rc) {
    char msg[2048];
    ibstack_last_error_message(msg, sizeof msg);
    fprintf(stderr, "ibstack_bench: %s failed: %s\n  %s\n", what, ibstack_strerror((int)rc),
            msg[0] ? msg : "(no message)");
}

static void conn_error(ibstack_conn *c, const char *what, long rc) {
    char cmsg[2048], lmsg[2048];
    cmsg[0] = lmsg[0] = '\0';
    if (c) ibstack_conn_error_message(c, cmsg, sizeof cmsg);
    ibstack_last_error_message(lmsg, sizeof lmsg);
    fprintf(stderr, "ibstack_bench: %s failed: %s\n  connection: %s\n  last error: %s\n", what,
            ibstack_strerror((int)rc), cmsg[0] ? cmsg : "(no message)", lmsg[0] ? lmsg : "(no message)");
}

/* One wait for an operation that returned -EAGAIN. `since` is 0 on the first
 * wait of an operation. Returns 0 to retry, -ETIMEDOUT when the operation made
 * no progress for opt.timeout_s. */
struct waiter {
    double since;
    unsigned spins;
};

static int wait_conn(struct waiter *w) {
    if (w->since == 0) w->since = now_s();
    if (opt.host_drive) {
        int r = ibstack_stack_poll(g_stack);
        if (r < 0) {
            last_error("ibstack_stack_poll", r);
            return r;
        }
        if ((++w->spins & 1023) != 0) return 0;
    } else if (opt.wait == WAIT_SPIN) {
        if ((++w->spins & 1023) != 0) return 0;
    } else {
        struct epoll_event ev;
        int n = epoll_wait(epfd, &ev, 1, wait_ms);
        if (n < 0 && errno != EINTR) {
            perror("ibstack_bench: epoll_wait");
            return -errno;
        }
        if (n == 0) stalls++;
    }
    if (now_s() - w->since > opt.timeout_s) return -ETIMEDOUT;
    return 0;
}

static int watch_conn(ibstack_conn *c) {
    if (opt.wait != WAIT_POLL) return 0;
    int fd = ibstack_conn_fd(c);
    if (fd < 0) {
        conn_error(c, "ibstack_conn_fd", fd);
        return -1;
    }
    if (epfd >= 0) close(epfd);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("ibstack_bench: epoll_create1");
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        perror("ibstack_bench: epoll_ctl(ibstack_conn_fd)");
        return -1;
    }
    return 0;
}

static int wait_connected(ibstack_conn *c, const char *who) {
    struct waiter w = {0, 0};
    for (;;) {
        int r = ibstack_conn_is_connected(c);
        if (r == 1) return 0;
        if (r < 0) {
            conn_error(c, who, r);
            return -1;
        }
        if (r != 0) {
            fprintf(stderr, "ibstack_bench: ibstack_conn_is_connected returned %d\n", r);
            return -1;
        }
        if (wait_conn(&w) < 0) {
            conn_error(c, who, -ETIMEDOUT);
            fprintf(stderr, "  (handshake not complete after %.0f s)\n", opt.timeout_s);
            return -1;
        }
    }
}

static int send_all(ibstack_conn *c, const void *buf, size_t len) {
    const char *p = buf;
    size_t off = 0;
    struct waiter w = {0, 0};
    while (off < len) {
        ssize_t n = ibstack_conn_send(c, p + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            w.since = 0;
            continue;
        }
        if (n == 0 || n == -EAGAIN) {
            int r = wait_conn(&w);
            if (r == 0) continue;
            n = r;
        }
        conn_error(c, "ibstack_conn_send", (long)n);
        if (n == -ETIMEDOUT) fprintf(stderr, "  (no send progress for %.0f s)\n", opt.timeout_s);
        return -1;
    }
    return 0;
}

/* Reads up to len bytes (at least one). Returns the count or -1. */
static ssize_t recv_some(ibstack_conn *c, void *buf, size_t len) {
    struct waiter w = {0, 0};
    for (;;) {
        ssize_t n = ibstack_conn_recv(c, buf, len);
        if (n > 0) return n;
        if (n == 0 || n == -EAGAIN) {
            int r = wait_conn(&w);
            if (r == 0) continue;
            n = r;
        }
        if (n == -ECONNRESET)
            fprintf(stderr, "ibstack_bench: the peer closed the connection early\n");
        conn_error(c, "ibstack_conn_recv", (long)n);
        if (n == -ETIMEDOUT) fprintf(stderr, "  (nothing received for %.0f s)\n", opt.timeout_s);
        return -1;
    }
}

static int recv_all(ibstack_conn *c, void *buf, size_t len) {
    char *p = buf;
    size_t off = 0;
    while (off < len) {
        ssize_t n = recv_some(c, p + off, len - off);
        if (n < 0) return -1;
        off += (size_t)n;
    }
    return 0;
}

/* Waits for the peer's close (-ECONNRESET), so that our last bytes are not
 * torn down in flight. Returns 0, or -1 when data or an error arrives instead. */
static int wait_eof(ibstack_conn *c) {
    char b;
    struct waiter w = {0, 0};
    for (;;) {
        ssize_t n = ibstack_conn_recv(c, &b, 1);
        if (n == -ECONNRESET) return 0;
        if (n > 0) {
            fprintf(stderr, "ibstack_bench: unexpected data after the end of the test\n");
            return -1;
        }
        if (n == 0 || n == -EAGAIN) {
            if (wait_conn(&w) == 0) continue;
            fprintf(stderr, "ibstack_bench: the peer did not close within %.0f s\n", opt.timeout_s);
            return -1;
        }
        conn_error(c, "ibstack_conn_recv (waiting for the peer's close)", (long)n);
        return -1;
    }
}

/* Test data: byte i of message m. */
static inline unsigned char pattern(uint64_t m, size_t i) {
    return (unsigned char)(i * 131u + m * 7u + 7u);
}

static void fill(unsigned char *buf, size_t size, uint64_t m) {
    for (size_t i = 0; i < size; i++) buf[i] = pattern(m, i);
}

static int check(const unsigned char *buf, size_t n, uint64_t offset, size_t size) {
    for (size_t k = 0; k < n; k++) {
        uint64_t o = offset + k;
        unsigned char want = pattern(o / size, (size_t)(o % size));
        if (buf[k] != want) {
            fprintf(stderr, "ibstack_bench: data mismatch at stream byte %" PRIu64 " (message %" PRIu64
                    ", byte %zu): got 0x%02x, want 0x%02x\n", o, o / size, (size_t)(o % size), buf[k], want);
            return -1;
        }
    }
    return 0;
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned char *alloc_buf(size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, size ? size : 1) != 0) {
        fprintf(stderr, "ibstack_bench: cannot allocate %zu bytes\n", size);
        return NULL;
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ stack */

static ibstack_stack *make_stack(void) {
    ibstack_config *cfg = NULL;
    int rc = ibstack_config_new(&cfg);
    if (rc != 0) {
        last_error("ibstack_config_new", rc);
        return NULL;
    }
    if (opt.host_drive && (rc = ibstack_config_set(cfg, "ibstack_stack_thread", "false")) != 0) {
        last_error("ibstack_config_set(ibstack_stack_thread)", rc);
        ibstack_config_free(cfg);
        return NULL;
    }
    for (int i = 0; i < opt.nkv; i++) {
        char *eq = strchr(opt.kv[i], '=');
        *eq = '\0';
        rc = ibstack_config_set(cfg, opt.kv[i], eq + 1);
        *eq = '=';
        if (rc != 0) {
            char what[512];
            snprintf(what, sizeof what, "ibstack_config_set(%s)", opt.kv[i]);
            last_error(what, rc);
            ibstack_config_free(cfg);
            return NULL;
        }
    }
    if ((rc = ibstack_global_init(cfg)) != 0) {
        last_error("ibstack_global_init", rc);
        ibstack_config_free(cfg);
        return NULL;
    }
    ibstack_stack *stack = NULL;
    rc = ibstack_stack_new(cfg, &stack);
    ibstack_config_free(cfg);
    if (rc != 0) {
        last_error("ibstack_stack_new", rc);
        return NULL;
    }
    return stack;
}

/* ------------------------------------------------------------------ zero-copy (--zc) */

/* the stack's pools for zero-copy sends (the caller frees them), or NULL with the error shown */
static ibstack_mem_mgr *stack_pools(ibstack_stack *stack) {
    ibstack_mem_mgr *mm = NULL;
    int rc = ibstack_stack_mem_mgr(stack, &mm);
    if (rc != 0) {
        last_error("ibstack_stack_mem_mgr", rc);
        return NULL;
    }
    return mm;
}

/* a TX chunk could not be had or sent yet: let the stack make progress */
static int zc_wait(struct waiter *w) {
    if (opt.host_drive) {
        int r = ibstack_stack_poll(g_stack);
        if (r < 0) {
            last_error("ibstack_stack_poll", r);
            return r;
        }
    } else {
        sched_yield();
    }
    if (!w->since) w->since = now_s();
    return now_s() - w->since > opt.timeout_s ? -ETIMEDOUT : 0;
}

/* message `m` of `len` bytes, one TX chunk after another, each sent from its own buffer
 * (written with the pattern only when `verify`) */
static int send_zc(ibstack_conn *c, ibstack_mem_mgr *mm, size_t len, uint64_t m, int verify) {
    size_t off = 0;
    struct waiter w = {0, 0};
    while (off < len) {
        ibstack_chunk *ch = NULL;
        size_t n = 0;
        int r = ibstack_mem_mgr_get_tx_chunks(mm, 1, &ch, 1, &n);
        if (r == -EAGAIN) {
            if ((r = zc_wait(&w)) == 0) continue;
        }
        if (r != 0 || n != 1) {
            last_error("ibstack_mem_mgr_get_tx_chunks", r ? r : -EIO);
            return -1;
        }
        size_t k = len - off < ibstack_chunk_capacity(ch) ? len - off : ibstack_chunk_capacity(ch);
        unsigned char *b = ibstack_chunk_buffer(ch);
        if (verify)
            for (size_t i = 0; i < k; i++) b[i] = pattern(m, off + i);
        ssize_t s;
        while ((s = ibstack_conn_send(c, b, k)) == -EAGAIN && (r = zc_wait(&w)) == 0) {}
        if (s != (ssize_t)k) {
            conn_error(c, "ibstack_conn_send (TX chunk)", (long)(s < 0 ? s : r ? r : -EIO));
            ibstack_mem_mgr_return_tx(mm, &ch, 1);
            return -1;
        }
        w.since = 0;
        off += k;
    }
    return 0;
}

/* `total` bytes of messages of `size` bytes, from stream byte `from` on, borrowed chunk by
 * chunk and given back */
static int recv_zc(ibstack_conn *c, uint64_t from, uint64_t total, uint32_t size, int verify) {
    ibstack_chunk *lent[64];
    uint64_t got = from, end = from + total;
    struct waiter w = {0, 0};
    while (got < end) {
        ssize_t n = ibstack_conn_recv_chunks(c, lent, 64);
        if (n == 0 || n == -EAGAIN) {
            int r = wait_conn(&w);
            if (r == 0) continue;
            n = r;
        }
        if (n < 0) {
            conn_error(c, "ibstack_conn_recv_chunks", (long)n);
            return -1;
        }
        w.since = 0;
        for (ssize_t i = 0; i < n; i++) {
            uint32_t k = ibstack_chunk_size(lent[i]);
            const unsigned char *b = (const unsigned char *)ibstack_chunk_buffer(lent[i]) + ibstack_chunk_offset(lent[i]);
            if (verify && check(b, k, got, size) < 0) return -1;
            got += k;
        }
        int r = ibstack_conn_release_chunks(c, lent, (size_t)n);
        if (r != 0) {
            last_error("ibstack_conn_release_chunks", r);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ server */

static int serve_one(ibstack_conn *c) {
    unsigned char hello[HELLO_LEN];
    if (watch_conn(c) < 0 || wait_connected(c, "accepted connection") < 0) return -1;
    if (recv_all(c, hello, sizeof hello) < 0) return -1;
    if (get32(hello) != HELLO_MAGIC) {
        fprintf(stderr, "ibstack_bench: bad hello from the client (not an ibstack_bench client?)\n");
        return -1;
    }
    uint32_t mode = get32(hello + 4), flags = get32(hello + 8), size = get32(hello + 12),
             iters = get32(hello + 16), warmup = get32(hello + 20);
    if ((mode != MODE_BW && mode != MODE_LAT && mode != MODE_IDLE) || size == 0 || iters == 0) {
        fprintf(stderr, "ibstack_bench: bad hello: mode %u size %u iters %u\n", mode, size, iters);
        return -1;
    }
    int verify = (flags & FLAG_VERIFY) != 0;
    size_t bufsize = mode == MODE_BW ? (size < 65536 ? 65536 : size) : size;
    unsigned char *buf = alloc_buf(bufsize);
    if (!buf) return -1;
    int ret = -1;
    char ready = READY_BYTE, ack = ACK_BYTE;
    if (send_all(c, &ready, 1) < 0) goto out;

    uint64_t t0 = ticks();
    double c0 = cpu_now();
    if (mode == MODE_IDLE) {
        /* the client opens all its connections, sends one byte when its idle time starts
         * (the others' handshakes are not idle time) and one more when it ends */
        char b, d;
        wait_ms = 10000;
        if (recv_all(c, &b, 1) < 0) goto out;
        t0 = ticks();
        c0 = cpu_now();
        if (recv_all(c, &d, 1) < 0) goto out;
        if (b != START_BYTE || d != DONE_BYTE) {
            fprintf(stderr, "ibstack_bench: idle: the client sent 0x%02x 0x%02x instead of start, done\n",
                    (unsigned char)b, (unsigned char)d);
            goto out;
        }
        double secs = secs_since(t0), cpu = cpu_now() - c0;
        printf("SERVER mode=idle secs=%.3f cpu_s=%.4f idle_cpu_pct=%.3f\n", secs, cpu, cpu / secs * 100.0);
    } else if (mode == MODE_BW && (flags & FLAG_ZC)) {
        uint64_t total = (uint64_t)size * iters, got = 0;
        if (recv_zc(c, 0, total, size, verify) < 0) goto out;
        got = total;
        if (send_all(c, &ack, 1) < 0) goto out;
        double secs = secs_since(t0);
        printf("SERVER mode=bw zc=1 size=%u iters=%u bytes=%" PRIu64 " secs=%.6f bw_mib_s=%.3f cpu_s=%.4f stalls=%lu\n",
               size, iters, got, secs, (double)got / secs / 1048576.0, cpu_now() - c0, stalls);
    } else if (mode == MODE_BW) {
        uint64_t total = (uint64_t)size * iters, got = 0;
        while (got < total) {
            uint64_t want = total - got;
            ssize_t n = recv_some(c, buf, want < bufsize ? (size_t)want : bufsize);
            if (n < 0) goto out;
            if (verify && check(buf, (size_t)n, got, size) < 0) goto out;
            got += (uint64_t)n;
        }
        if (send_all(c, &ack, 1) < 0) goto out;
        double secs = secs_since(t0);
        printf("SERVER mode=bw size=%u iters=%u bytes=%" PRIu64 " secs=%.6f bw_mib_s=%.3f cpu_s=%.4f stalls=%lu\n",
               size, iters, total, secs, (double)total / secs / 1048576.0, cpu_now() - c0, stalls);
    } else if (flags & FLAG_ZC) {
        /* the echo comes from TX chunks of this side's pool, written only with --verify (the
         * pattern of message m, as the client checks it), as ib_send_lat answers from its buffer */
        ibstack_mem_mgr *mm = stack_pools(g_stack);
        if (!mm) goto out;
        uint64_t n = (uint64_t)warmup + iters, m = 0;
        for (; m < n; m++)
            if (recv_zc(c, m * size, size, size, verify) < 0 || send_zc(c, mm, size, m, verify) < 0) break;
        ibstack_mem_mgr_free(mm);
        if (m < n) goto out;
        printf("SERVER mode=lat zc=1 size=%u iters=%u warmup=%u secs=%.6f cpu_s=%.4f stalls=%lu\n", size, iters,
               warmup, secs_since(t0), cpu_now() - c0, stalls);
    } else {
        uint64_t n = (uint64_t)warmup + iters;
        for (uint64_t m = 0; m < n; m++) {
            if (recv_all(c, buf, size) < 0) goto out;
            if (verify && check(buf, size, m * size, size) < 0) goto out;
            if (send_all(c, buf, size) < 0) goto out;
        }
        printf("SERVER mode=lat size=%u iters=%u warmup=%u secs=%.6f cpu_s=%.4f stalls=%lu\n", size, iters, warmup,
               secs_since(t0), cpu_now() - c0, stalls);
    }
    fflush(stdout);
    ret = wait_eof(c);
out:
    if (epfd >= 0) {
        close(epfd);
        epfd = -1;
    }
    free(buf);
    return ret;
}

struct server_worker {
    pthread_t th;
    ibstack_conn *c;
    int rc;
};

static void *serve_thread(void *arg) {
    struct server_worker *w = arg;
    w->rc = serve_one(w->c);
    return NULL;
}

/* Accepts one connection into *c. */
static int accept_one(ibstack_stack *stack, ibstack_listener *l, int lfd, ibstack_conn **c) {
    double since = now_s();
    for (;;) {
        int rc = ibstack_accept(l, c);
        if (rc == 0) return 0;
        if (rc != -EAGAIN) {
            last_error("ibstack_accept", rc);
            return -1;
        }
        if (now_s() - since > opt.timeout_s) {
            fprintf(stderr, "ibstack_bench: no client connected within %.0f s\n", opt.timeout_s);
            return -1;
        }
        if (opt.host_drive) {
            int r = ibstack_stack_poll(stack);
            if (r < 0) {
                last_error("ibstack_stack_poll", r);
                return -1;
            }
            continue;
        }
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, 1000) < 0 && errno != EINTR) {
            perror("ibstack_bench: poll(listener fd)");
            return -1;
        }
    }
}

static int run_server(ibstack_stack *stack) {
    ibstack_listener *l = NULL;
    int rc = ibstack_listen(stack, opt.ip, opt.port, &l);
    if (rc != 0) {
        last_error("ibstack_listen", rc);
        return -1;
    }
    int lfd = ibstack_listener_fd(l);
    if (lfd < 0) {
        last_error("ibstack_listener_fd", lfd);
        ibstack_listener_free(l);
        return -1;
    }
    printf("LISTENING %s %u\n", opt.ip, (unsigned)opt.port);
    fflush(stdout);
    int ret = 0;
    struct server_worker w[MAX_CONNS];
    for (unsigned k = 0; k < opt.count && ret == 0; k++) {
        if (opt.conns == 1) {
            /* one connection: served by this thread */
            if (accept_one(stack, l, lfd, &w[0].c) != 0) {
                ret = -1;
                break;
            }
            ret = serve_one(w[0].c);
            ibstack_conn_close(w[0].c);
            continue;
        }
        /* each connection served by a thread of its own from its accept on (a client may
         * wait for one connection's answer before it opens the next) */
        unsigned n = 0, started = 0;
        while (n < opt.conns && accept_one(stack, l, lfd, &w[n].c) == 0) {
            n++;
            if (pthread_create(&w[n - 1].th, NULL, serve_thread, &w[n - 1]) != 0) {
                fprintf(stderr, "ibstack_bench: pthread_create failed\n");
                break;
            }
            started++;
        }
        if (started < opt.conns) ret = -1;
        for (unsigned i = 0; i < started; i++) {
            pthread_join(w[i].th, NULL);
            if (w[i].rc != 0) ret = -1;
        }
        for (unsigned i = 0; i < n; i++) ibstack_conn_close(w[i].c);
    }
    ibstack_listener_free(l);
    return ret;
}

/* ------------------------------------------------------------------ client */

/* Connects, sends the hello and waits for the server's ready. */
static int client_open(ibstack_stack *stack, uint32_t iters, uint32_t warmup, ibstack_conn **out) {
    ibstack_conn *c = NULL;
    int rc = ibstack_connect(stack, opt.ip, opt.port, &c);
    if (rc != 0) {
        last_error("ibstack_connect", rc);
        return -1;
    }
    unsigned char hello[HELLO_LEN];
    put32(hello, HELLO_MAGIC);
    put32(hello + 4, (uint32_t)opt.mode);
    put32(hello + 8, (opt.verify ? FLAG_VERIFY : 0) | (opt.zc ? FLAG_ZC : 0));
    put32(hello + 12, (uint32_t)opt.size);
    put32(hello + 16, iters);
    put32(hello + 20, warmup);
    char b;
    if (watch_conn(c) < 0 || wait_connected(c, "ibstack_connect handshake") < 0 ||
        send_all(c, hello, sizeof hello) < 0 || recv_all(c, &b, 1) < 0) {
        ibstack_conn_close(c);
        return -1;
    }
    if (b != READY_BYTE) {
        fprintf(stderr, "ibstack_bench: the server answered 0x%02x instead of ready\n", (unsigned char)b);
        ibstack_conn_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* bw mode: one connection of --conns, in its own thread */
struct bw_worker {
    pthread_t th;
    ibstack_stack *stack;
    pthread_barrier_t *go;
    uint32_t iters;
    uint64_t t_start, t_end;
    unsigned long stalls;
    int rc;
};

static void *bw_thread(void *arg) {
    struct bw_worker *w = arg;
    ibstack_conn *c = NULL;
    ibstack_mem_mgr *mm = NULL;
    unsigned char *buf = alloc_buf(opt.size);
    int ok = buf && client_open(w->stack, w->iters, 0, &c) == 0;
    if (ok && opt.zc && !(mm = stack_pools(w->stack))) ok = 0;
    if (buf) fill(buf, opt.size, 0);
    pthread_barrier_wait(w->go); /* every connection is up: all start together */
    w->rc = -1;
    if (!ok) goto out;
    w->t_start = ticks();
    for (uint32_t m = 0; m < w->iters; m++) {
        if (opt.zc) {
            if (send_zc(c, mm, opt.size, m, opt.verify) < 0) goto out;
            continue;
        }
        if (opt.verify) fill(buf, opt.size, m);
        if (send_all(c, buf, opt.size) < 0) goto out;
    }
    char b;
    if (recv_all(c, &b, 1) < 0) goto out;
    w->t_end = ticks();
    if (b != ACK_BYTE) {
        fprintf(stderr, "ibstack_bench: the server answered 0x%02x instead of the ack\n", (unsigned char)b);
        goto out;
    }
    w->rc = 0;
out:
    w->stalls = stalls;
    if (mm) ibstack_mem_mgr_free(mm);
    if (c) ibstack_conn_close(c);
    if (epfd >= 0) {
        close(epfd);
        epfd = -1;
    }
    free(buf);
    return NULL;
}

static int run_bw(ibstack_stack *stack) {
    struct bw_worker w[MAX_CONNS];
    pthread_barrier_t go;
    unsigned n = opt.conns;
    if (pthread_barrier_init(&go, NULL, n + 1) != 0) return -1;
    unsigned started = 0;
    for (; started < n; started++) {
        w[started] = (struct bw_worker){.stack = stack, .go = &go, .iters = opt.iters / n + (started < opt.iters % n)};
        if (pthread_create(&w[started].th, NULL, bw_thread, &w[started]) != 0) break;
    }
    if (started < n) {
        /* the barrier counts n + 1: without every thread it would never open */
        fprintf(stderr, "ibstack_bench: pthread_create failed after %u threads\n", started);
        exit(1);
    }
    pthread_barrier_wait(&go);
    double c0 = cpu_now();
    int ret = 0;
    uint64_t t0 = UINT64_MAX, t1 = 0;
    unsigned long all_stalls = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(w[i].th, NULL);
        all_stalls += w[i].stalls;
        if (w[i].rc != 0) ret = -1;
        if (w[i].t_start < t0) t0 = w[i].t_start;
        if (w[i].t_end > t1) t1 = w[i].t_end;
    }
    pthread_barrier_destroy(&go);
    if (ret != 0) return -1;
    double secs = (double)(t1 - t0) * tick_s;
    uint64_t total = (uint64_t)opt.size * opt.iters;
    printf("RESULT mode=bw%s conns=%u size=%zu iters=%u bytes=%" PRIu64 " secs=%.6f bw_mib_s=%.3f cpu_s=%.4f stalls=%lu\n",
           opt.zc ? " zc=1" : "", n, opt.size, opt.iters, total, secs, (double)total / secs / 1048576.0,
           cpu_now() - c0, all_stalls);
    fflush(stdout);
    return 0;
}

static int run_idle(ibstack_stack *stack) {
    ibstack_conn *c[MAX_CONNS];
    unsigned n = 0;
    int ret = -1;
    while (n < opt.conns && client_open(stack, 1, 0, &c[n]) == 0) n++;
    if (n == opt.conns) {
        char start = START_BYTE;
        ret = 0;
        for (unsigned i = 0; i < n && ret == 0; i++)
            if (send_all(c[i], &start, 1) < 0) ret = -1;
        /* past the busy-poll window (ms_async_rdma_polling_us, 1 ms by default) */
        struct timespec settle = {1, 0};
        nanosleep(&settle, NULL);
        double c0 = cpu_now(), t0 = mono_s();
        struct timespec d = {(time_t)opt.idle_s, (long)((opt.idle_s - (double)(time_t)opt.idle_s) * 1e9)};
        nanosleep(&d, NULL);
        double secs = mono_s() - t0, cpu = cpu_now() - c0;
        char done = DONE_BYTE;
        for (unsigned i = 0; i < n && ret == 0; i++)
            if (send_all(c[i], &done, 1) < 0) ret = -1;
        if (ret == 0)
            printf("RESULT mode=idle conns=%u secs=%.3f cpu_s=%.4f idle_cpu_pct=%.3f\n", n, secs, cpu,
                   cpu / secs * 100.0);
        fflush(stdout);
    }
    for (unsigned i = 0; i < n; i++) ibstack_conn_close(c[i]);
    return ret;
}

static int run_lat(ibstack_stack *stack) {
    ibstack_conn *c = NULL;
    ibstack_mem_mgr *mm = NULL;
    int ret = -1;
    unsigned char *buf = NULL, *echo = NULL;
    double *rtt = NULL;
    uint32_t warmup = (uint32_t)(opt.warmup >= 0 ? opt.warmup
                                                 : (opt.iters / 10 < 1 ? 1 : opt.iters / 10 > 1000 ? 1000 : opt.iters / 10));
    buf = alloc_buf(opt.size);
    echo = alloc_buf(opt.size);
    rtt = malloc(sizeof *rtt * opt.iters);
    if (!buf || !echo || !rtt) {
        fprintf(stderr, "ibstack_bench: out of memory\n");
        goto out;
    }
    fill(buf, opt.size, 0);
    if (client_open(stack, opt.iters, warmup, &c) < 0) goto out;
    if (opt.zc && !(mm = stack_pools(stack))) goto out;

    double total = 0, c0 = cpu_now(), m0 = mono_s();
    for (uint64_t m = 0; m < (uint64_t)warmup + opt.iters; m++) {
        uint64_t t;
        if (opt.zc) {
            /* sent from TX chunks, the echo borrowed and given back; --verify checks both in place */
            t = ticks();
            if (send_zc(c, mm, opt.size, m, opt.verify) < 0 || recv_zc(c, m * opt.size, opt.size, (uint32_t)opt.size, opt.verify) < 0)
                goto out;
        } else {
            if (opt.verify) fill(buf, opt.size, m);
            t = ticks();
            if (send_all(c, buf, opt.size) < 0 || recv_all(c, echo, opt.size) < 0) goto out;
        }
        double rt = secs_since(t);
        if (!opt.zc && opt.verify && memcmp(buf, echo, opt.size) != 0) {
            fprintf(stderr, "ibstack_bench: the echo of message %" PRIu64 " differs from what was sent\n", m);
            goto out;
        }
        if (m >= warmup) {
            rtt[m - warmup] = rt;
            total += rt;
        } else {
            m0 = mono_s();
        }
    }
    double wall = mono_s() - m0;
    qsort(rtt, opt.iters, sizeof *rtt, cmp_double);
    double med = opt.iters % 2 ? rtt[opt.iters / 2] : (rtt[opt.iters / 2 - 1] + rtt[opt.iters / 2]) / 2;
    size_t p99 = (size_t)((double)opt.iters * 0.99);
    if (p99 >= opt.iters) p99 = opt.iters - 1;
    /* every figure is round-trip / 2 (one-way), in microseconds; wall_us is the timed round trips
     * by CLOCK_MONOTONIC (also one-way), a check on the TSC figures */
    printf("RESULT mode=lat%s size=%zu iters=%u warmup=%u lat_us=%.2f lat_median_us=%.2f lat_min_us=%.2f "
           "lat_p99_us=%.2f wall_us=%.2f cpu_s=%.4f stalls=%lu\n",
           opt.zc ? " zc=1" : "", opt.size, opt.iters, warmup, total / opt.iters / 2 * 1e6, med / 2 * 1e6, rtt[0] / 2 * 1e6,
           rtt[p99] / 2 * 1e6, wall / opt.iters / 2 * 1e6, cpu_now() - c0, stalls);
    fflush(stdout);
    ret = 0;
out:
    free(rtt);
    free(buf);
    free(echo);
    if (mm) ibstack_mem_mgr_free(mm);
    if (c) ibstack_conn_close(c);
    return ret;
}

static int run_client(ibstack_stack *stack) {
    switch (opt.mode) {
    case MODE_BW: return run_bw(stack);
    case MODE_IDLE: return run_idle(stack);
    default: return run_lat(stack);
    }
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
    fprintf(stderr,
            "usage: ibstack_bench server <ip> <port> [-o key=value]... [--wait spin|poll] [--drive thread|host] [--timeout S]\n"
            "                     [--verify] [--count N] [--conns N]\n"
            "       ibstack_bench client <ip> <port> --mode bw|lat|idle --size N[K|M] --iters N [--warmup N]\n"
            "                     [-o key=value]... [--wait spin|poll] [--timeout S] [--verify] [--zc] [--conns N]\n"
            "                     [--secs S]\n");
    exit(2);
}

static unsigned long long parse_num(const char *what, const char *s, unsigned long long max) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end != s && (*end == 'K' || *end == 'k')) v <<= 10, end++;
    else if (end != s && (*end == 'M' || *end == 'm')) v <<= 20, end++;
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        fprintf(stderr, "ibstack_bench: bad %s '%s' (at most %llu)\n", what, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc < 4) usage();
    if (!strcmp(argv[1], "server")) opt.server = 1;
    else if (strcmp(argv[1], "client")) usage();
    opt.ip = argv[2];
    opt.port = (uint16_t)parse_num("port", argv[3], 65535);
    opt.warmup = -1;
    opt.wait = WAIT_SPIN;
    opt.timeout_s = 60;
    opt.count = 1;
    opt.conns = 1;
    opt.idle_s = 5;
    opt.kv = calloc((size_t)argc, sizeof *opt.kv);
    if (!opt.kv) return 1;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--zc")) {
            opt.zc = 1;
            continue;
        }
        if (!strcmp(a, "--verify")) {
            opt.verify = 1;
            continue;
        }
        if (!v) usage();
        i++;
        if (!strcmp(a, "-o")) {
            if (!strchr(v, '=')) {
                fprintf(stderr, "ibstack_bench: -o wants key=value, got '%s'\n", v);
                return 2;
            }
            opt.kv[opt.nkv++] = argv[i];
        } else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "bw")) opt.mode = MODE_BW;
            else if (!strcmp(v, "lat")) opt.mode = MODE_LAT;
            else if (!strcmp(v, "idle")) opt.mode = MODE_IDLE;
            else usage();
        } else if (!strcmp(a, "--wait")) {
            if (!strcmp(v, "spin")) opt.wait = WAIT_SPIN;
            else if (!strcmp(v, "poll")) opt.wait = WAIT_POLL;
            else usage();
        } else if (!strcmp(a, "--drive")) {
            if (!strcmp(v, "thread")) opt.host_drive = 0;
            else if (!strcmp(v, "host")) opt.host_drive = 1;
            else usage();
        } else if (!strcmp(a, "--size")) {
            opt.size = (size_t)parse_num("size", v, 1u << 30);
        } else if (!strcmp(a, "--iters")) {
            opt.iters = (uint32_t)parse_num("iters", v, UINT32_MAX);
        } else if (!strcmp(a, "--warmup")) {
            opt.warmup = (long)parse_num("warmup", v, UINT32_MAX);
        } else if (!strcmp(a, "--timeout")) {
            opt.timeout_s = (double)parse_num("timeout", v, 86400);
        } else if (!strcmp(a, "--conns")) {
            opt.conns = (unsigned)parse_num("conns", v, MAX_CONNS);
        } else if (!strcmp(a, "--secs")) {
            opt.idle_s = (double)parse_num("secs", v, 3600);
        } else if (!strcmp(a, "--count")) {
            opt.count = (unsigned)parse_num("count", v, UINT32_MAX);
        } else {
            usage();
        }
    }
    if (opt.mode == MODE_IDLE) {
        if (opt.size == 0) opt.size = 1;
        if (opt.iters == 0) opt.iters = 1;
    }
    if (opt.conns == 0 || (!opt.server && opt.mode == MODE_LAT && opt.conns != 1)) {
        fprintf(stderr, "ibstack_bench: --conns takes 1..%d (and 1 in lat mode)\n", MAX_CONNS);
        usage();
    }
    if (!opt.server && (opt.mode == MODE_NONE || opt.size == 0 || opt.iters == 0)) {
        fprintf(stderr, "ibstack_bench: the client needs --mode, --size > 0 and --iters > 0\n");
        usage();
    }

    if (opt.host_drive) opt.wait = WAIT_SPIN;
    calibrate_ticks();
    ibstack_stack *stack = make_stack();
    if (!stack) return 1;
    g_stack = stack;
    int rc = opt.server ? run_server(stack) : run_client(stack);
    if (epfd >= 0) close(epfd);
    ibstack_stack_free(stack);
    free(opt.kv);
    return rc == 0 ? 0 : 1;
}
