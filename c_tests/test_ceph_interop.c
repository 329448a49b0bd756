/* ibstack against real Ceph 16.2 daemons (run by scripts/ceph-guest.sh in the VM).
 *
 * usage: test_ceph_interop MODE [args]
 *   mon-hello IP PORT      connect to an async+rdma ceph-mon: handshake, the mon's msgr2
 *                          banner over RDMA, our banner + HELLO, the mon's HELLO back
 *   listen-hello IP        listen (port printed as "listening on IP:PORT"), accept an
 *                          async+rdma client (rados): its banner, our banner + HELLO, its HELLO
 *   listen-posix IP        listen, accept an async+posix client: expect -EPROTO
 *   connect-posix IP PORT  connect to an async+posix ceph-mon: expect -EPROTO
 *   bufsize IP PORT SIZE   connect with ms_async_rdma_buffer_size = 128K to a Ceph peer whose
 *                          buffers are SIZE bytes, write one SIZE*4 byte message: expect a fault
 *   connect-fail IP PORT   connect to a peer that cannot complete (Ceph with a bad GID index):
 *                          expect a failure, not a hang
 *   gid IDX                ibstack_stack_new with ms_async_rdma_gid_idx = IDX: expect -EINVAL
 *   memlock                ibstack_stack_new with Ceph's 128 KiB x 256 TX pool under a low
 *                          RLIMIT_MEMLOCK (run unprivileged): expect -ENOMEM
 *
 * The msgr2 pieces (banner, rev1 crc-mode frames, crc32c) are written here from the wire
 * description in shared/reference/ceph-in-vm.md. Every check prints "ok - " / "not ok - ";
 * "# " lines carry what the peer and the library said. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 60000

/* ------------------------------------------------------------------ crc32c */

/* Castagnoli, reflected polynomial 0x82F63B78, without pre- or post-inversion (as Ceph's
 * ceph_crc32c: the caller's seed goes in as is and the register comes out as is) */
static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i;
        for (int k = 0; k < 8; k++) r = (r >> 1) ^ (0x82F63B78u & (0u - (r & 1u)));
        crc_table[i] = r;
    }
}

static uint32_t crc32c(uint32_t seed, const uint8_t *p, size_t n) {
    uint32_t r = seed;
    while (n--) r = crc_table[(r ^ *p++) & 0xffu] ^ (r >> 8);
    return r;
}

/* ------------------------------------------------------------------ little-endian helpers */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* ------------------------------------------------------------------ msgr2 */

#define BANNER_LEN 26
#define PREAMBLE_LEN 32
#define TAG_HELLO 1
#define ENTITY_MON 1
#define ENTITY_CLIENT 8

/* "ceph v2\n", le16 16, le64 supported (bit 0: revision 1), le64 required */
static void make_banner(uint8_t b[BANNER_LEN]) {
    memcpy(b, "ceph v2\n", 8);
    put16(b + 8, 16);
    put64(b + 10, 1);
    put64(b + 18, 0);
}

static int check_banner(const uint8_t b[BANNER_LEN], const char *who) {
    int ok = memcmp(b, "ceph v2\n", 8) == 0 && get16(b + 8) == 16;
    printf("# %s's banner: \"%.7s\\n\" len %u supported 0x%llx required 0x%llx\n", who, (const char *)b, get16(b + 8),
           (unsigned long long)get64(b + 10), (unsigned long long)get64(b + 18));
    CHECK(ok, "%s's 26-byte msgr2 banner arrived over RDMA: \"ceph v2\\n\", le16 16", who);
    CHECK((get64(b + 10) & 1) && (get64(b + 18) & ~1ull) == 0,
          "%s's banner: supported has revision 1 (0x%llx), required asks nothing else (0x%llx)", who,
          (unsigned long long)get64(b + 10), (unsigned long long)get64(b + 18));
    return ok;
}

/* HELLO payload: entity type, then entity_addr_t in its msgr2 encoding: marker 1, a
 * versioned struct header (v1, compat 1, le32 length) around le32 type (2 = msgr2),
 * le32 nonce, le32 sockaddr length and the sockaddr_in (family le16, port and address
 * in network order, 8 zero bytes). Returns the payload length (36). */
static size_t hello_payload(uint8_t *p, uint8_t entity, const char *ip, uint16_t port) {
    uint8_t *q = p;
    *q++ = entity;
    *q++ = 1;                 /* entity_addr_t in the msgr2 (ADDR2) encoding */
    *q++ = 1;                 /* struct_v */
    *q++ = 1;                 /* compat */
    put32(q, 4 + 4 + 4 + 16); /* struct length */
    q += 4;
    put32(q, 2); /* TYPE_MSGR2 */
    q += 4;
    put32(q, 0); /* nonce */
    q += 4;
    put32(q, 16);
    q += 4;
    put16(q, 2); /* AF_INET */
    q[2] = (uint8_t)(port >> 8);
    q[3] = (uint8_t)port;
    unsigned a, b, c, d;
    if (sscanf(ip, "%u.%u.%u.%u", &a, &b, &c, &d) != 4) a = b = c = d = 0;
    q[4] = (uint8_t)a, q[5] = (uint8_t)b, q[6] = (uint8_t)c, q[7] = (uint8_t)d;
    memset(q + 8, 0, 8);
    q += 16;
    return (size_t)(q - p);
}

/* one-segment rev1 crc-mode frame: preamble, segment, le32 crc32c(-1) of the segment */
static size_t make_frame(uint8_t *f, uint8_t tag, const uint8_t *seg, size_t len) {
    memset(f, 0, PREAMBLE_LEN);
    f[0] = tag;
    f[1] = 1;
    put32(f + 2, (uint32_t)len);
    put16(f + 6, 8); /* the segment's alignment: Ceph's default, sizeof(void *) */
    put32(f + 28, crc32c(0, f, 28));
    memcpy(f + PREAMBLE_LEN, seg, len);
    put32(f + PREAMBLE_LEN + len, crc32c(0xffffffffu, seg, len));
    return PREAMBLE_LEN + len + 4;
}

/* checks a received one-segment frame (preamble already read into f, segment + crc
 * after it); prints the decoded HELLO */
static void check_hello_frame(const uint8_t *f, const char *who, int want_entity) {
    uint32_t pcrc = crc32c(0, f, 28), len = get32(f + 2);
    printf("# %s's frame: tag %u segments %u len0 %u align0 %u flags %u crc 0x%08x (ours 0x%08x)\n", who, f[0], f[1], len,
           get16(f + 6), f[26], get32(f + 28), pcrc);
    CHECK(f[0] == TAG_HELLO && f[1] == 1, "%s sent a HELLO frame (tag %u, %u segment)", who, f[0], f[1]);
    CHECK(get32(f + 28) == pcrc, "%s's preamble crc32c (seed 0) matches ours: 0x%08x", who, pcrc);
    if (len != 36) {
        CHECK(len == 36, "%s's HELLO segment is 36 bytes (%u)", who, len);
        return;
    }
    const uint8_t *s = f + PREAMBLE_LEN;
    uint32_t scrc = crc32c(0xffffffffu, s, len);
    CHECK(get32(s + len) == scrc, "%s's segment crc32c (seed 0xffffffff) matches ours: 0x%08x", who, scrc);
    printf("# %s's HELLO: entity type %u, addr marker %u v%u compat %u len %u type %u nonce %u, sockaddr len %u family %u "
           "%u.%u.%u.%u:%u\n",
           who, s[0], s[1], s[2], s[3], get32(s + 4), get32(s + 8), get32(s + 12), get32(s + 16), get16(s + 20), s[24],
           s[25], s[26], s[27], s[22] << 8 | s[23]);
    CHECK(s[0] == want_entity, "%s's HELLO names entity type %d (%u)", who, want_entity, s[0]);
}

/* ------------------------------------------------------------------ stack and I/O */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static const char *conn_msg(const ibstack_conn *c) {
    static char buf[4096];
    buf[0] = 0;
    ibstack_conn_error_message(c, buf, sizeof buf);
    return buf;
}

static int wait_fd(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms);
}

/* buffer size as Ceph's (128 KiB) unless told; counts as in the Ceph config of the rig */
static int open_stack(ibstack_stack **s, const char *gid, const char *bufsize) {
    ibstack_config *cfg;
    if (ibstack_config_new(&cfg)) return -1;
    const char *kv[][2] = {
        {"ms_async_rdma_device_name", "rxe0"},        {"ms_async_rdma_gid_idx", gid},
        {"ms_async_rdma_buffer_size", bufsize},       {"ms_async_rdma_send_buffers", "256"},
        {"ms_async_rdma_receive_queue_len", "256"},   {"ms_async_rdma_receive_buffers", "1024"},
        {"ibstack_rx_first_block", "256"},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !rc; i++) rc = ibstack_config_set(cfg, kv[i][0], kv[i][1]);
    if (!rc) rc = ibstack_stack_new(cfg, s);
    ibstack_config_free(cfg);
    return rc;
}

/* waits for the handshake: 1 done, or the negative result */
static int wait_connected(ibstack_conn *c) {
    double end = now_ms() + WAIT_MS;
    for (;;) {
        int r = ibstack_conn_is_connected(c);
        if (r != 0) return r;
        if (now_ms() > end) return -ETIMEDOUT;
        wait_fd(ibstack_conn_fd(c), 100);
    }
}

/* reads exactly n bytes (a byte stream over SENDs); 0 or the negative result */
static int recv_exact(ibstack_conn *c, uint8_t *buf, size_t n) {
    size_t got = 0;
    double end = now_ms() + WAIT_MS;
    while (got < n) {
        ptrdiff_t r = ibstack_conn_recv(c, buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0 || r != -EAGAIN) return r == 0 ? -ECONNRESET : (int)r;
        if (now_ms() > end) return -ETIMEDOUT;
        wait_fd(ibstack_conn_fd(c), 100);
    }
    return 0;
}

static int send_all(ibstack_conn *c, const uint8_t *buf, size_t n) {
    double end = now_ms() + WAIT_MS;
    while (n) {
        ptrdiff_t r = ibstack_conn_send(c, buf, n);
        if (r > 0) {
            buf += r;
            n -= (size_t)r;
            continue;
        }
        if (r != -EAGAIN) return (int)r;
        if (now_ms() > end) return -ETIMEDOUT;
        wait_fd(ibstack_conn_fd(c), 100);
    }
    return 0;
}

/* our banner and a HELLO naming `entity`, in one write (one SEND, as Ceph does) */
static int send_banner_hello(ibstack_conn *c, uint8_t entity, const char *ip, uint16_t port) {
    uint8_t out[BANNER_LEN + PREAMBLE_LEN + 64 + 4], seg[64];
    make_banner(out);
    size_t n = hello_payload(seg, entity, ip, port);
    n = BANNER_LEN + make_frame(out + BANNER_LEN, TAG_HELLO, seg, n);
    return send_all(c, out, n);
}

static int recv_hello(ibstack_conn *c, const char *who, int want_entity) {
    uint8_t f[PREAMBLE_LEN + 64 + 4];
    int r = recv_exact(c, f, PREAMBLE_LEN);
    CHECK_RC(r, 0, "%s's frame preamble arrived (32 bytes)", who);
    if (r) return r;
    uint32_t len = get32(f + 2);
    if (len > 64) {
        CHECK(len <= 64, "%s's first frame is a small one (segment %u bytes)", who, len);
        return -EPROTO;
    }
    r = recv_exact(c, f + PREAMBLE_LEN, len + 4);
    CHECK_RC(r, 0, "%s's frame segment and crc arrived (%u + 4 bytes)", who, len);
    if (!r) check_hello_frame(f, who, want_entity);
    return r;
}

/* waits until the connection ends (the peer went away): for listeners whose peer is
 * killed by the caller once its log shows what it did with our frames */
static void wait_end(ibstack_conn *c, int ms) {
    uint8_t buf[4096];
    double end = now_ms() + ms;
    while (now_ms() < end) {
        ptrdiff_t r = ibstack_conn_recv(c, buf, sizeof buf);
        if (r > 0) {
            printf("# %zd more bytes from the peer\n", r);
            continue;
        }
        if (r != -EAGAIN) {
            printf("# the connection ended: %zd (%s) %s\n", r, ibstack_strerror((int)r), conn_msg(c));
            return;
        }
        wait_fd(ibstack_conn_fd(c), 100);
    }
    printf("# the peer was still there after %d ms\n", ms);
}

static ibstack_listener *listen_print(ibstack_stack *s, const char *ip) {
    ibstack_listener *l = NULL;
    int rc = ibstack_listen(s, ip, 0, &l);
    CHECK_RC(rc, 0, "ibstack_listen on %s", ip);
    if (rc) return NULL;
    printf("listening on %s:%d\n", ip, ibstack_listener_port(l));
    fflush(stdout);
    return l;
}

static ibstack_conn *accept_wait(ibstack_listener *l) {
    ibstack_conn *c = NULL;
    double end = now_ms() + WAIT_MS;
    int rc;
    while ((rc = ibstack_accept(l, &c)) == -EAGAIN && now_ms() < end) wait_fd(ibstack_listener_fd(l), 100);
    CHECK_RC(rc, 0, "ibstack_accept took the Ceph client's connection");
    return rc ? NULL : c;
}

/* ------------------------------------------------------------------ modes */

static int mode_mon_hello(const char *ip, uint16_t port) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, "1", "131072");
    CHECK_RC(rc, 0, "ibstack_stack_new (buffer 128 KiB, as the mon)");
    if (rc) DONE();
    ibstack_conn *c = NULL;
    rc = ibstack_connect(s, ip, port, &c);
    CHECK_RC(rc, 0, "ibstack_connect %s:%u", ip, port);
    if (!rc) {
        rc = wait_connected(c);
        CHECK_RC(rc, 1, "handshake with the async+rdma ceph-mon done (ibstack_conn_is_connected == 1) %s", conn_msg(c));
        uint8_t b[BANNER_LEN];
        if (rc == 1 && (rc = recv_exact(c, b, BANNER_LEN)) == 0 && check_banner(b, "ceph-mon")) {
            rc = send_banner_hello(c, ENTITY_CLIENT, ip, port);
            CHECK_RC(rc, 0, "sent our banner and a HELLO (client, peer address %s:%u)", ip, port);
            if (!rc) recv_hello(c, "ceph-mon", ENTITY_MON);
        } else if (rc != 1) {
            CHECK(0, "received the mon's banner: %d %s", rc, conn_msg(c));
        }
        ibstack_conn_close(c);
    }
    ibstack_stack_free(s);
    DONE();
}

static int mode_listen_hello(const char *ip) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, "1", "131072");
    CHECK_RC(rc, 0, "ibstack_stack_new (buffer 128 KiB, as rados)");
    if (rc) DONE();
    ibstack_listener *l = listen_print(s, ip);
    ibstack_conn *c = l ? accept_wait(l) : NULL;
    if (c) {
        rc = wait_connected(c);
        CHECK_RC(rc, 1, "handshake with async+rdma rados done (ibstack_conn_is_connected == 1) %s", conn_msg(c));
        uint8_t b[BANNER_LEN];
        if (rc == 1 && (rc = recv_exact(c, b, BANNER_LEN)) == 0 && check_banner(b, "rados")) {
            rc = send_banner_hello(c, ENTITY_MON, "10.99.0.1", 0);
            CHECK_RC(rc, 0, "sent our banner and a HELLO (mon) to rados");
            if (!rc && !recv_hello(c, "rados", ENTITY_CLIENT)) {
                printf("waiting for the peer to go\n");
                fflush(stdout);
                wait_end(c, WAIT_MS);
            }
        } else if (rc != 1) {
            CHECK(0, "received rados' banner: %d %s", rc, conn_msg(c));
        }
        ibstack_conn_close(c);
    }
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    DONE();
}

/* the peer is Ceph's TCP messenger: the handshake must fail with -EPROTO naming it */
static void expect_posix(ibstack_conn *c, const char *peer) {
    int rc = wait_connected(c);
    const char *m = conn_msg(c);
    printf("# ibstack said: %d (%s) %s\n", rc, ibstack_strerror(rc), m);
    CHECK_RC(rc, -EPROTO, "the handshake with an async+posix %s fails with -EPROTO", peer);
    CHECK(strstr(m, "async+posix") && strstr(m, "ms_type"), "the message names async+posix and ms_type");
}

static int mode_listen_posix(const char *ip) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, "1", "131072");
    CHECK_RC(rc, 0, "ibstack_stack_new");
    if (rc) DONE();
    ibstack_listener *l = listen_print(s, ip);
    ibstack_conn *c = l ? accept_wait(l) : NULL;
    if (c) {
        expect_posix(c, "rados");
        ibstack_conn_close(c);
    }
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    DONE();
}

static int mode_connect_posix(const char *ip, uint16_t port) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, "1", "131072");
    CHECK_RC(rc, 0, "ibstack_stack_new");
    if (rc) DONE();
    ibstack_conn *c = NULL;
    rc = ibstack_connect(s, ip, port, &c);
    CHECK_RC(rc, 0, "ibstack_connect %s:%u", ip, port);
    if (!rc) {
        expect_posix(c, "ceph-mon");
        ibstack_conn_close(c);
    }
    ibstack_stack_free(s);
    DONE();
}

static int mode_bufsize(const char *ip, uint16_t port, size_t peer_size) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, "1", "131072");
    CHECK_RC(rc, 0, "ibstack_stack_new (buffer 128 KiB; the peer's is %zu)", peer_size);
    if (rc) DONE();
    ibstack_conn *c = NULL;
    rc = ibstack_connect(s, ip, port, &c);
    CHECK_RC(rc, 0, "ibstack_connect %s:%u", ip, port);
    if (!rc) {
        rc = wait_connected(c);
        CHECK_RC(rc, 1, "handshake done: cm_meta carries no buffer size, so it cannot notice %s", conn_msg(c));
        uint8_t b[BANNER_LEN];
        if (rc == 1 && (rc = recv_exact(c, b, BANNER_LEN)) == 0) {
            size_t n = peer_size * 4;
            uint8_t *big = calloc(1, n);
            make_banner(big); /* our banner, then bytes the peer's receive buffers cannot hold in one SEND */
            rc = send_all(c, big, n);
            free(big);
            printf("# ibstack_conn_send of %zu bytes (one SEND, larger than the peer's %zu-byte buffers): %d\n", n,
                   peer_size, rc);
            /* the SEND's completion comes back with an error: the connection faults */
            double end = now_ms() + WAIT_MS;
            uint8_t tmp[256];
            ptrdiff_t r = 0;
            while (now_ms() < end) {
                r = ibstack_conn_recv(c, tmp, sizeof tmp);
                if (r == -EAGAIN || r > 0) {
                    if (ibstack_conn_is_connected(c) < 0) break;
                    wait_fd(ibstack_conn_fd(c), 100);
                    continue;
                }
                break;
            }
            int st = ibstack_conn_is_connected(c);
            printf("# ibstack said: is_connected %d (%s), recv %zd: %s\n", st, ibstack_strerror(st), r, conn_msg(c));
            CHECK(st < 0, "the connection faulted (%d %s)", st, ibstack_strerror(st));
            const char *m = conn_msg(c);
            CHECK(strstr(m, "completion failed with REM_") || strstr(m, "completion failed with LOC_"),
                  "the message names the failed work completion's status");
        } else {
            CHECK(0, "received the peer's banner: %d %s", rc, conn_msg(c));
        }
        ibstack_conn_close(c);
    }
    ibstack_stack_free(s);
    DONE();
}

/* a peer that cannot finish its side (e.g. a Ceph daemon with a bad GID index): the
 * connection must fail within the bounded wait, never hang */
static int mode_connect_fail(const char *ip, uint16_t port) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, "1", "131072");
    CHECK_RC(rc, 0, "ibstack_stack_new");
    if (rc) DONE();
    ibstack_conn *c = NULL;
    rc = ibstack_connect(s, ip, port, &c);
    CHECK_RC(rc, 0, "ibstack_connect %s:%u", ip, port);
    if (!rc) {
        rc = wait_connected(c);
        if (rc == 1) { /* our side may finish first: the failure then shows on the stream */
            uint8_t b[BANNER_LEN];
            rc = recv_exact(c, b, BANNER_LEN);
            if (!rc) rc = 1;
        }
        printf("# ibstack said: %d (%s) %s\n", rc, rc < 0 ? ibstack_strerror(rc) : "connected", conn_msg(c));
        CHECK(rc < 0 && rc != -ETIMEDOUT, "the connection fails (%d %s), no hang", rc, rc < 0 ? ibstack_strerror(rc) : "");
        ibstack_conn_close(c);
    }
    ibstack_stack_free(s);
    DONE();
}

static int mode_gid(const char *idx) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, idx, "131072");
    printf("# ibstack said: %d (%s) %s\n", rc, ibstack_strerror(rc), h_last_error());
    CHECK_RC(rc, -EINVAL, "ibstack_stack_new with ms_async_rdma_gid_idx = %s fails with -EINVAL", idx);
    char needle[64];
    snprintf(needle, sizeof needle, "ms_async_rdma_gid_idx = %s", idx);
    CHECK_MSG_HAS(needle, "the message names the index");
    CHECK_MSG_HAS("1", "the message lists the valid entries");
    ibstack_stack_free(s);
    DONE();
}

static int mode_memlock(void) {
    ibstack_stack *s = NULL;
    int rc = open_stack(&s, "1", "131072");
    printf("# ibstack said (uid %d): %d (%s) %s\n", (int)getuid(), rc, ibstack_strerror(rc), h_last_error());
    CHECK_RC(rc, -ENOMEM, "ibstack_stack_new with a 32 MiB TX pool under a low memlock limit fails with -ENOMEM");
    CHECK_MSG_HAS("LimitMEMLOCK", "the message names LimitMEMLOCK");
    ibstack_stack_free(s);
    DONE();
}

int main(int argc, char **argv) {
    crc_init();
    /* the crc32c check value with Ceph's conventions: seed -1, no final inversion */
    CHECK(crc32c(0xffffffffu, (const uint8_t *)"123456789", 9) == ~0xE3069283u,
          "crc32c(-1, \"123456789\") = 0x%08x, the complement of the standard check value", crc32c(0xffffffffu, (const uint8_t *)"123456789", 9));
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "mon-hello") && argc == 4) return mode_mon_hello(argv[2], (uint16_t)atoi(argv[3]));
    if (!strcmp(m, "listen-hello") && argc == 3) return mode_listen_hello(argv[2]);
    if (!strcmp(m, "listen-posix") && argc == 3) return mode_listen_posix(argv[2]);
    if (!strcmp(m, "connect-posix") && argc == 4) return mode_connect_posix(argv[2], (uint16_t)atoi(argv[3]));
    if (!strcmp(m, "bufsize") && argc == 5) return mode_bufsize(argv[2], (uint16_t)atoi(argv[3]), (size_t)atol(argv[4]));
    if (!strcmp(m, "connect-fail") && argc == 4) return mode_connect_fail(argv[2], (uint16_t)atoi(argv[3]));
    if (!strcmp(m, "gid") && argc == 3) return mode_gid(argv[2]);
    if (!strcmp(m, "memlock") && argc == 2) return mode_memlock();
    fprintf(stderr, "usage: %s mon-hello IP PORT | listen-hello IP | listen-posix IP | connect-posix IP PORT |"
                    " bufsize IP PORT PEER_SIZE | connect-fail IP PORT | gid IDX | memlock\n", argv[0]);
    return 2;
}
