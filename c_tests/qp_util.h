/* Helpers for the queue-pair tests: a device + pools + dispatcher bundle, a
 * TCP loopback pair, a stream sender/receiver over QPs with checksums. */
#ifndef IBSTACK_TEST_QP_UTIL_H
#define IBSTACK_TEST_QP_UTIL_H

#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    ibstack_config *cfg;
    ibstack_ib *ib;
    ibstack_mem_mgr *mm;
    ibstack_dispatcher *d;
} rig;

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* small pools so the VM's memory suffices; extra "key=value" pairs override */
static int rig_open(rig *r, int srq, const char *const *extra) {
    memset(r, 0, sizeof *r);
    if (ibstack_config_new(&r->cfg)) return -1;
    const char *kv[][2] = {
        {"ms_async_rdma_device_name", "rxe0"}, {"ms_async_rdma_gid_idx", "1"},
        {"ms_async_rdma_buffer_size", "16384"}, {"ms_async_rdma_send_buffers", "256"},
        {"ms_async_rdma_receive_queue_len", "128"}, {"ms_async_rdma_receive_buffers", "4096"},
        {"ibstack_rx_first_block", "256"},
        {"ms_async_rdma_support_srq", srq ? "true" : "false"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (ibstack_config_set(r->cfg, kv[i][0], kv[i][1])) return -1;
    for (; extra && *extra; extra += 2)
        if (ibstack_config_set(r->cfg, extra[0], extra[1])) return -1;
    int rc = ibstack_ib_new(r->cfg, &r->ib);
    if (!rc) rc = ibstack_mem_mgr_new(r->ib, &r->mm);
    if (!rc) rc = ibstack_dispatcher_new(r->ib, r->mm, &r->d);
    return rc;
}

static void rig_close(rig *r) {
    ibstack_dispatcher_free(r->d);
    ibstack_mem_mgr_free(r->mm);
    ibstack_ib_free(r->ib);
    ibstack_config_free(r->cfg);
    memset(r, 0, sizeof *r);
}

static inline void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* listening socket on 127.0.0.1, ephemeral port */
static int tcp_listen(uint16_t *port) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 16)) return -1;
    socklen_t al = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return l;
}

static int tcp_connect(uint16_t port) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (connect(c, (struct sockaddr *)&a, sizeof a)) return -1;
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

/* a connected loopback pair: *c is the connecting end, *a the accepted end */
static int tcp_pair(int *c, int *a) {
    uint16_t port;
    int l = tcp_listen(&port);
    if (l < 0) return -1;
    *c = tcp_connect(port);
    *a = accept(l, NULL, NULL);
    close(l);
    return (*c >= 0 && *a >= 0) ? 0 : -1;
}

/* Drives both handshakes with non-blocking steps until both are done. */
static int handshake_both(ibstack_qp *qc, int fc, ibstack_qp *qa, int fa) {
    set_nonblock(fc);
    set_nonblock(fa);
    int dc = 0, da = 0;
    double end = now_s() + 10;
    while (!(dc && da) && now_s() < end) {
        if (!dc) {
            int r = ibstack_qp_handshake_step(qc, fc, IBSTACK_ROLE_CONNECTOR);
            if (r < 0) return r;
            dc = r;
        }
        if (!da) {
            int r = ibstack_qp_handshake_step(qa, fa, IBSTACK_ROLE_ACCEPTOR);
            if (r < 0) return r;
            da = r;
        }
    }
    return dc && da ? 0 : -ETIMEDOUT;
}

/* deterministic byte stream: byte i of stream `seed` */
static inline uint8_t stream_byte(uint32_t seed, uint64_t i) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> 32);
}

typedef struct {
    uint32_t seed;
    uint64_t off;      /* bytes produced/consumed so far */
    uint64_t sum;      /* running checksum of the bytes */
    uint64_t messages; /* sends or receive completions */
    uint64_t mismatches;
} stream;

static inline void sum_byte(stream *s, uint8_t b) { s->sum = (s->sum * 131) + b + 1; }

/* Copies `len` bytes of the stream into TX chunks and posts them on `qp`.
 * Returns 0, -EAGAIN when the pool has too few chunks (nothing taken), or the error. */
static int send_message(rig *r, ibstack_qp *qp, stream *s, size_t len) {
    ibstack_chunk *ch[64];
    size_t n = 0;
    int rc = ibstack_mem_mgr_get_tx_chunks(r->mm, len, ch, 64, &n);
    if (rc) return rc;
    size_t per = ibstack_chunk_capacity(ch[0]);
    if (n * per < len) {
        ibstack_mem_mgr_return_tx(r->mm, ch, n);
        return -EAGAIN;
    }
    uint8_t buf[65536];
    size_t left = len;
    for (size_t i = 0; i < n; i++) {
        size_t k = left < per ? left : per;
        for (size_t j = 0; j < k; j++) {
            buf[j] = stream_byte(s->seed, s->off + j);
            sum_byte(s, buf[j]);
        }
        ibstack_chunk_write(ch[i], buf, k);
        s->off += k;
        left -= k;
    }
    size_t posted = 0;
    rc = ibstack_qp_post_send(qp, ch, n, &posted);
    if (rc) ibstack_mem_mgr_return_tx(r->mm, ch + posted, n - posted);
    else s->messages++;
    return rc;
}

/* Consumes one delivered receive into the stream check; releases the chunk. */
static void consume(rig *r, stream *s, const ibstack_wc *w) {
    ibstack_chunk *c = (ibstack_chunk *)(uintptr_t)w->wr_id;
    uint8_t buf[65536];
    size_t k = ibstack_chunk_read(c, buf, sizeof buf);
    for (size_t j = 0; j < k; j++) {
        if (buf[j] != stream_byte(s->seed, s->off + j)) s->mismatches++;
        sum_byte(s, buf[j]);
    }
    s->off += k;
    s->messages++;
    ibstack_dispatcher_release_rx(r->d, c);
}

/* count of lines of `rdma resource show <what>` not owned by the kernel */
static int rdma_res_count(const char *what) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "/usr/bin/rdma resource show %s 2>/dev/null | grep -vc ib_core", what);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    int n = -1;
    if (fscanf(p, "%d", &n) != 1) n = -1;
    pclose(p);
    return n;
}

#endif
