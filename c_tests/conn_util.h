/* Helpers for the connection tests (test_conn_rxe): stacks with small pools,
 * child processes with pipes, a reproducible byte pattern with a checksum, and
 * edge-triggered epoll loops for an echo server and echo clients. */
#ifndef IBSTACK_TEST_CONN_UTIL_H
#define IBSTACK_TEST_CONN_UTIL_H

/* qp_util.h defines helpers this file's users do not all call */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "qp_util.h"
#pragma GCC diagnostic pop

#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>

/* the address of d0 in the VM; rxe0 sits on it */
#define TEST_IP "10.99.0.1"
#define MIB (1024u * 1024u)

/* ------------------------------------------------------------------ pattern */

/* byte `off` of stream `seed` is pat[(off + seed * 7919) % PAT_PERIOD]; the array
 * repeats its start for 4 MiB past the period so any write of up to 4 MiB is one
 * contiguous slice. The period is prime so it never lines up with chunk sizes. */
#define PAT_PERIOD 1048573u
#define PAT_SPAN (PAT_PERIOD + 4u * MIB + 64u)
static uint8_t *pat;

static void pat_init(void) {
    if (pat) return;
    pat = malloc(PAT_SPAN);
    if (!pat) abort();
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (uint32_t i = 0; i < PAT_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pat[i] = (uint8_t)(x >> 24);
    }
    for (uint32_t i = PAT_PERIOD; i < PAT_SPAN; i++) pat[i] = pat[i - PAT_PERIOD];
}

static inline const uint8_t *pat_at(uint32_t seed, uint64_t off) {
    return pat + (off + (uint64_t)seed * 7919u) % PAT_PERIOD;
}

/* order-sensitive running checksum (Fletcher-style over 64-bit sums) */
typedef struct {
    uint64_t a, b;
} csum;

static inline void csum_add(csum *c, const void *p, size_t n) {
    const uint8_t *q = p;
    uint64_t a = c->a, b = c->b;
    for (size_t i = 0; i < n; i++) {
        a += (uint64_t)q[i] + 1;
        b += a;
    }
    c->a = a;
    c->b = b;
}

static inline uint64_t csum_value(const csum *c) { return c->a ^ (c->b * 0x9E3779B97F4A7C15ull); }

/* what a receiving process reports about one connection */
typedef struct {
    uint64_t bytes;
    uint64_t sum;
    uint64_t mismatches;
    int64_t end_rc; /* what recv returned at the end (-ECONNRESET expected) */
} conn_result;

static uint32_t crng_state = 0x1234567;
static inline uint32_t crng(void) {
    crng_state ^= crng_state << 13;
    crng_state ^= crng_state >> 17;
    crng_state ^= crng_state << 5;
    return crng_state;
}

/* 1 B … 4 MiB, log-uniform so small and large writes both occur */
static inline size_t rand_write_len(void) {
    uint32_t shift = crng() % 23; /* 0..22 */
    return 1 + crng() % (1u << shift);
}

/* ------------------------------------------------------------------ stacks */

/* small pools for the VM (as rig_open); extra "key", "value" pairs, NULL-terminated */
static int stack_open(ibstack_stack **out, int srq, const char *const *extra) {
    ibstack_config *cfg;
    *out = NULL;
    if (ibstack_config_new(&cfg)) return -1;
    const char *kv[][2] = {
        {"ms_async_rdma_device_name", "rxe0"}, {"ms_async_rdma_gid_idx", "1"},
        {"ms_async_rdma_buffer_size", "16384"}, {"ms_async_rdma_send_buffers", "256"},
        {"ms_async_rdma_receive_queue_len", "128"}, {"ms_async_rdma_receive_buffers", "2048"},
        {"ibstack_rx_first_block", "256"},
        {"ms_async_rdma_support_srq", srq ? "true" : "false"},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !rc; i++) rc = ibstack_config_set(cfg, kv[i][0], kv[i][1]);
    for (; !rc && extra && *extra; extra += 2) rc = ibstack_config_set(cfg, extra[0], extra[1]);
    if (!rc) rc = ibstack_stack_new(cfg, out);
    ibstack_config_free(cfg);
    return rc;
}

static ibstack_mem_stats stack_mem(const ibstack_stack *s) {
    ibstack_mem_stats m;
    memset(&m, 0, sizeof m);
    ibstack_stack_mem_stats(s, &m);
    return m;
}

/* prints the stack's counters (and optionally history) as "# " lines, for failures */
static void dump_stack(const char *who, const ibstack_stack *s, int history) {
    static char buf[1 << 16];
    int n = ibstack_stack_counters_json(s, buf, sizeof buf);
    printf("# %s counters (%d): %.6000s\n", who, n, buf);
    if (history) {
        n = ibstack_stack_history_json(s, buf, sizeof buf);
        printf("# %s history (%d): %.6000s\n", who, n, buf);
    }
    ibstack_mem_stats m = stack_mem(s);
    printf("# %s mem: tx_in_use %llu rx_in_use %llu rx_allocated %llu conns %d qps %d\n", who,
           (unsigned long long)m.tx_in_use, (unsigned long long)m.rx_in_use, (unsigned long long)m.rx_allocated,
           ibstack_stack_conn_count(s), ibstack_stack_qp_count(s));
    fflush(stdout);
}

static const char *conn_msg(const ibstack_conn *c) {
    static char buf[2048];
    buf[0] = 0;
    ibstack_conn_error_message(c, buf, sizeof buf);
    return buf;
}

/* Host-driven stacks (ibstack_stack_thread=false) must be polled while waiting. While
 * ibstack_stack_poll returns 1 it busy-polls (CQs not armed): call it again without
 * sleeping on its fd. */
static int hd_busy;

static int hd_poll(ibstack_stack *s) {
    int r = ibstack_stack_poll(s);
    if (r < 0) printf("# ibstack_stack_poll returned %d: %s\n", r, h_last_error());
    hd_busy = r == 1;
    return r;
}

/* how long a host-driven loop may sleep: not at all while the stack busy-polls */
static inline int hd_timeout(int hd, int ms) { return hd && hd_busy ? 0 : ms; }

static void stack_service(ibstack_stack *s, int hd, int ms) {
    if (!hd) {
        usleep(ms * 1000);
        return;
    }
    struct pollfd p = {.fd = ibstack_stack_fd(s), .events = POLLIN};
    poll(&p, 1, hd_timeout(hd, ms));
    hd_poll(s);
}

/* waits until the stack has no QP and no connection left; returns the QP count */
static int wait_torn_down(ibstack_stack *s, int hd, double secs) {
    double end = now_s() + secs;
    if (hd) hd_poll(s);
    while ((ibstack_stack_qp_count(s) > 0 || ibstack_stack_conn_count(s) > 0) && now_s() < end) stack_service(s, hd, 10);
    return ibstack_stack_qp_count(s);
}

/* rx_in_use settles asynchronously: wait up to `secs` for it to reach `want` */
static uint64_t wait_rx_in_use(ibstack_stack *s, int hd, uint64_t want, double secs) {
    double end = now_s() + secs;
    uint64_t v;
    while ((v = stack_mem(s).rx_in_use) != want && now_s() < end) stack_service(s, hd, 10);
    return v;
}

/* checks the end state every test wants: nothing left, pools at baseline */
static void check_teardown(const char *who, ibstack_stack *s, int hd, const ibstack_mem_stats *base) {
    double t0 = now_s();
    int qps = wait_torn_down(s, hd, 10);
    CHECK(qps == 0 && ibstack_stack_conn_count(s) == 0, "%s: every QP drained and destroyed, no connection left (%.2f s; qps %d conns %d)",
          who, now_s() - t0, qps, ibstack_stack_conn_count(s));
    uint64_t rx = wait_rx_in_use(s, hd, base->rx_in_use, 5);
    ibstack_mem_stats m = stack_mem(s);
    CHECK(m.tx_in_use == 0, "%s: TX pool back at baseline (tx_in_use %llu)", who, (unsigned long long)m.tx_in_use);
    CHECK(rx == base->rx_in_use, "%s: RX pool back at baseline (rx_in_use %llu, before the connection %llu)", who,
          (unsigned long long)rx, (unsigned long long)base->rx_in_use);
    if (qps || m.tx_in_use || rx != base->rx_in_use) dump_stack(who, s, 1);
}

/* ------------------------------------------------------------------ processes, pipes */

typedef struct {
    pid_t pid;
    int to_child;   /* parent writes */
    int from_child; /* parent reads */
} child;

typedef int (*child_fn)(int in, int out, void *arg);

/* forks a child running fn(in, out, arg); its exit status is fn's return value */
static int spawn(child *c, child_fn fn, void *arg) {
    int a[2], b[2];
    if (pipe(a) || pipe(b)) return -1;
    fflush(stdout);
    fflush(stderr);
    c->pid = fork();
    if (c->pid < 0) return -1;
    if (c->pid == 0) {
        close(a[1]);
        close(b[0]);
        int rc = fn(a[0], b[1], arg);
        fflush(stdout);
        _exit(rc);
    }
    close(a[0]);
    close(b[1]);
    c->to_child = a[1];
    c->from_child = b[0];
    return 0;
}

/* waits up to `secs` for the child; kills it after that. Returns the wait status or -1. */
static int child_wait(child *c, double secs) {
    double end = now_s() + secs;
    int status;
    while (now_s() < end) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid) return status;
        usleep(10000);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &status, 0);
    printf("# child %d killed after %.0f s\n", (int)c->pid, secs);
    return -1;
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            poll(&pf, 1, 100);
            continue;
        }
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* reads exactly n bytes within `secs`; 0 on success, -1 on EOF/error/timeout */
static int read_all(int fd, void *buf, size_t n, double secs) {
    char *p = buf;
    double end = now_s() + secs;
    while (n) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0) return -1;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, left) <= 0) continue;
        ssize_t k = read(fd, p, n);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* TCP connection to ip:port (blocking connect, then TCP_NODELAY) */
static int tcp_connect_ip(const char *ip, uint16_t port) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a)) {
        if (c >= 0) close(c);
        return -1;
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

/* ------------------------------------------------------------------ connections */

/* waits for the handshake: 1 connected, <0 failed, 0 on timeout */
static int conn_wait_connected(ibstack_stack *s, int hd, const ibstack_conn *c, double secs) {
    double end = now_s() + secs;
    for (;;) {
        int r = ibstack_conn_is_connected(c);
        if (r != 0 || now_s() > end) return r;
        struct pollfd p[2] = {{.fd = ibstack_conn_fd(c), .events = POLLIN}, {.fd = hd ? ibstack_stack_fd(s) : -1, .events = POLLIN}};
        poll(p, 2, hd_timeout(hd, 20));
        if (hd) hd_poll(s);
    }
}

/* waits for a connection on the listener; 0 and *out, or the error */
static int accept_wait(ibstack_stack *s, int hd, ibstack_listener *l, double secs, ibstack_conn **out) {
    double end = now_s() + secs;
    for (;;) {
        int r = ibstack_accept(l, out);
        if (r != -EAGAIN || now_s() > end) return r;
        struct pollfd p[2] = {{.fd = ibstack_listener_fd(l), .events = POLLIN}, {.fd = hd ? ibstack_stack_fd(s) : -1, .events = POLLIN}};
        poll(p, 2, hd_timeout(hd, 20));
        if (hd) hd_poll(s);
    }
}

/* a listener on TEST_IP with an ephemeral port; the port goes to `out_fd` (2 bytes) */
static int listen_and_announce(ibstack_stack *s, ibstack_listener **l, int out_fd) {
    int rc = ibstack_listen(s, TEST_IP, 0, l);
    if (rc) return rc;
    int p = ibstack_listener_port(*l);
    if (p <= 0 || p > 65535) return -EINVAL;
    uint16_t port = (uint16_t)p;
    return write_all(out_fd, &port, sizeof port) ? -EIO : 0;
}

/* ------------------------------------------------------------------ echo server */

#define ECHO_BUF (256u * 1024u)

typedef struct {
    ibstack_conn *c;
    uint8_t *buf;
    size_t len, off; /* received, not yet echoed: buf[off..len) */
    uint64_t in, out;
    csum sum;
    int64_t end_rc;
    int done;
} echo_peer;

/* recv/send until both would block; 1 when the peer's stream ended and everything was echoed,
 * 0 to wait for the fd, <0 on an error (printed) */
static int echo_progress(echo_peer *p) {
    for (;;) {
        if (p->off < p->len) {
            ssize_t k = ibstack_conn_send(p->c, p->buf + p->off, p->len - p->off);
            if (k == -EAGAIN) return 0;
            if (k <= 0) {
                printf("# server: send returned %zd (%s) after echoing %llu bytes: %s\n", k, ibstack_strerror((int)k),
                       (unsigned long long)p->out, conn_msg(p->c));
                p->end_rc = k ? k : -EIO;
                return -1;
            }
            p->off += (size_t)k;
            p->out += (uint64_t)k;
            continue;
        }
        ssize_t n = ibstack_conn_recv(p->c, p->buf, ECHO_BUF);
        if (n == -EAGAIN) return 0;
        if (n <= 0) {
            p->end_rc = n;
            if (n == -ECONNRESET) return 1;
            printf("# server: recv returned %zd (%s) after %llu bytes: %s\n", n, ibstack_strerror((int)n),
                   (unsigned long long)p->in, conn_msg(p->c));
            return -1;
        }
        csum_add(&p->sum, p->buf, (size_t)n);
        p->in += (uint64_t)n;
        p->len = (size_t)n;
        p->off = 0;
    }
}

#define TAG_LISTENER ((void *)1)
#define TAG_STACK ((void *)2)

/* Edge-triggered echo loop: accepts `expect` connections on `l` and echoes each until its
 * peer's stream ends, then closes it. Fills res[0..expect). Returns connections finished
 * cleanly. `hd`: the stack is host-driven, its fd joins the epoll set. Fails when no byte
 * moves for `stall` seconds or the whole run exceeds `secs`. */
static int echo_serve(ibstack_stack *s, int hd, ibstack_listener *l, int expect, double secs, double stall, conn_result *res) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = TAG_LISTENER};
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_listener_fd(l), &ev);
    if (hd) { /* level-triggered: readable while ibstack_stack_poll has work */
        ev.events = EPOLLIN;
        ev.data.ptr = TAG_STACK;
        epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_stack_fd(s), &ev);
        hd_poll(s);
    }
    echo_peer *peers = calloc((size_t)expect, sizeof *peers);
    int accepted = 0, finished = 0, clean = 0, accept_pending = 1;
    double end = now_s() + secs, last = now_s();
    uint64_t moved = 0, last_moved = 0;
    while (finished < expect) {
        if (accept_pending) {
            accept_pending = 0;
            ibstack_conn *c;
            int r;
            while ((r = ibstack_accept(l, &c)) == 0) {
                if (accepted == expect) {
                    printf("# server: unexpected extra connection\n");
                    ibstack_conn_close(c);
                    continue;
                }
                echo_peer *p = &peers[accepted++];
                p->c = c;
                p->buf = malloc(ECHO_BUF);
                struct epoll_event ce = {.events = EPOLLIN | EPOLLET, .data.ptr = p};
                epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(c), &ce);
                int pr = echo_progress(p);
                if (pr) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, ibstack_conn_fd(c), NULL);
                    ibstack_conn_close(c);
                    p->done = 1;
                    finished++;
                    clean += pr > 0;
                }
            }
            if (r != -EAGAIN) printf("# server: accept returned %d (%s): %s\n", r, ibstack_strerror(r), h_last_error());
        }
        struct epoll_event evs[32];
        int n = epoll_wait(ep, evs, 32, hd_timeout(hd, 100));
        if (hd && hd_busy) hd_poll(s);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == TAG_LISTENER) {
                accept_pending = 1;
            } else if (tag == TAG_STACK) {
                hd_poll(s);
            } else {
                echo_peer *p = tag;
                if (p->done) continue;
                int pr = echo_progress(p);
                if (pr) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, ibstack_conn_fd(p->c), NULL);
                    ibstack_conn_close(p->c);
                    p->done = 1;
                    finished++;
                    clean += pr > 0;
                }
            }
        }
        moved = 0;
        for (int i = 0; i < accepted; i++) moved += peers[i].in + peers[i].out;
        double t = now_s();
        if (moved != last_moved) {
            last = t;
            last_moved = moved;
        }
        if (t - last > stall || t > end) {
            printf("# server: %s: %d of %d connections accepted, %d finished, %llu bytes moved\n",
                   t > end ? "time limit" : "stalled (no byte moved)", accepted, expect, finished, (unsigned long long)moved);
            for (int i = 0; i < accepted; i++)
                printf("# server conn %d: in %llu out %llu pending %zu done %d is_connected %d\n", i,
                       (unsigned long long)peers[i].in, (unsigned long long)peers[i].out, peers[i].len - peers[i].off,
                       peers[i].done, peers[i].done ? 9 : ibstack_conn_is_connected(peers[i].c));
            dump_stack("server", s, 0);
            break;
        }
    }
    for (int i = 0; i < expect; i++) {
        if (i < accepted && !peers[i].done) ibstack_conn_close(peers[i].c);
        res[i].bytes = peers[i].in;
        res[i].sum = csum_value(&peers[i].sum);
        res[i].mismatches = peers[i].in != peers[i].out;
        res[i].end_rc = peers[i].end_rc;
        free(peers[i].buf);
    }
    free(peers);
    close(ep);
    return clean;
}

/* ------------------------------------------------------------------ echo clients */

typedef struct {
    ibstack_conn *c;
    uint32_t seed;
    uint64_t total, sent, rcvd, mismatches, eagain, writes;
    csum sent_sum, rcvd_sum;
    int connected, done, failed;
    uint8_t *rbuf;
} echo_client;

/* reads everything available and checks it; then writes random-sized slices until the
 * connection would block. 1 once every byte came back, 0 to wait, <0 on failure. */
static int client_progress(echo_client *e) {
    if (e->done) return 1;
    if (!e->connected) {
        int r = ibstack_conn_is_connected(e->c);
        if (r < 0) {
            printf("# client seed %u: handshake failed %d (%s): %s\n", e->seed, r, ibstack_strerror(r), conn_msg(e->c));
            return -1;
        }
        if (r == 0) return 0;
        e->connected = 1;
    }
    for (;;) {
        ssize_t n = ibstack_conn_recv(e->c, e->rbuf, ECHO_BUF);
        if (n == -EAGAIN) break;
        if (n <= 0) {
            printf("# client seed %u: recv returned %zd (%s) at %llu of %llu bytes: %s\n", e->seed, n, ibstack_strerror((int)n),
                   (unsigned long long)e->rcvd, (unsigned long long)e->total, conn_msg(e->c));
            return -1;
        }
        if (e->rcvd + (uint64_t)n > e->total || memcmp(e->rbuf, pat_at(e->seed, e->rcvd), (size_t)n) != 0) {
            if (!e->mismatches)
                printf("# client seed %u: %zd bytes at offset %llu differ from what was sent\n", e->seed, n,
                       (unsigned long long)e->rcvd);
            e->mismatches++;
        }
        csum_add(&e->rcvd_sum, e->rbuf, (size_t)n);
        e->rcvd += (uint64_t)n;
    }
    while (e->sent < e->total) {
        size_t len = rand_write_len();
        if (len > e->total - e->sent) len = (size_t)(e->total - e->sent);
        const uint8_t *src = pat_at(e->seed, e->sent);
        ssize_t k = ibstack_conn_send(e->c, src, len);
        if (k == -EAGAIN) {
            e->eagain++;
            break;
        }
        if (k <= 0 || (size_t)k > len) {
            printf("# client seed %u: send of %zu returned %zd (%s) at %llu: %s\n", e->seed, len, k, ibstack_strerror((int)k),
                   (unsigned long long)e->sent, conn_msg(e->c));
            return -1;
        }
        csum_add(&e->sent_sum, src, (size_t)k);
        e->sent += (uint64_t)k;
        e->writes++;
    }
    if (e->rcvd == e->total && e->sent == e->total) e->done = 1;
    return e->done;
}

/* Runs n echo clients (already connecting) to completion with an edge-triggered epoll loop.
 * Returns how many finished; the rest failed or stalled (diagnostics printed). */
static int run_clients(ibstack_stack *s, int hd, echo_client *e, int n, double secs, double stall) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (hd) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}; /* level-triggered */
        epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_stack_fd(s), &ev);
        hd_poll(s);
    }
    int finished = 0;
    for (int i = 0; i < n; i++) {
        e[i].rbuf = malloc(ECHO_BUF);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &e[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(e[i].c), &ev);
        int r = client_progress(&e[i]);
        if (r) {
            finished += r > 0;
            e[i].failed = r < 0;
            epoll_ctl(ep, EPOLL_CTL_DEL, ibstack_conn_fd(e[i].c), NULL);
        }
    }
    int over = 0;
    for (int i = 0; i < n; i++) over += e[i].done || e[i].failed;
    double end = now_s() + secs, last = now_s();
    uint64_t last_moved = 0;
    while (over < n) {
        struct epoll_event evs[32];
        int k = epoll_wait(ep, evs, 32, hd_timeout(hd, 100));
        if (hd && hd_busy) hd_poll(s);
        for (int i = 0; i < k; i++) {
            echo_client *c = evs[i].data.ptr;
            if (!c) {
                hd_poll(s);
                continue;
            }
            if (c->done || c->failed) continue;
            int r = client_progress(c);
            if (r) {
                over++;
                finished += r > 0;
                c->failed = r < 0;
                epoll_ctl(ep, EPOLL_CTL_DEL, ibstack_conn_fd(c->c), NULL);
            }
        }
        uint64_t moved = 0;
        for (int i = 0; i < n; i++) moved += e[i].sent + e[i].rcvd;
        double t = now_s();
        if (moved != last_moved) {
            last = t;
            last_moved = moved;
        }
        if (t - last > stall || t > end) {
            printf("# client: %s: %d of %d connections over\n", t > end ? "time limit" : "stalled (no byte moved)", over, n);
            for (int i = 0; i < n; i++)
                printf("# client conn %d: sent %llu rcvd %llu of %llu, eagain %llu, is_connected %d\n", i,
                       (unsigned long long)e[i].sent, (unsigned long long)e[i].rcvd, (unsigned long long)e[i].total,
                       (unsigned long long)e[i].eagain, ibstack_conn_is_connected(e[i].c));
            dump_stack("client", s, 0);
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        free(e[i].rbuf);
        e[i].rbuf = NULL;
    }
    close(ep);
    return finished;
}

#endif
