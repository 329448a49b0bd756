/* ibstack echo client: opens C connections to an echo server, sends B bytes in total
 * (B / C each) in writes of random size (1 B ... 4 MiB), reads the echo back at the same
 * time and checks every byte and a checksum. Prints the throughput. One edge-triggered
 * epoll loop over the connections' fds. Built with `pkg-config --cflags --libs ibstack`.
 *
 * usage: echo_client [-o key=value]... [-c ceph.conf [-s section]] [-r seed] ip port [bytes [connections]]
 *   bytes          total to echo (default 10M); suffixes K M G (x1000) or Ki Mi Gi (x1024)
 *   connections    how many connections share it (default 1)
 * Exit status 0 when every byte came back unchanged and in order. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <ibstack.h>

#define BUF_SIZE (256 * 1024)
#define MAX_WRITE (4u << 20)

/* The bytes sent are a slice of a fixed pseudo-random pattern: byte i of connection k
 * is pattern[(i + k * 7919) % PERIOD]; the array repeats its start for MAX_WRITE bytes
 * so every write is one contiguous slice. PERIOD is prime so no boundary lines up. */
#define PERIOD 1048573u
static unsigned char *pattern;

static void make_pattern(uint64_t seed) {
    pattern = malloc(PERIOD + MAX_WRITE);
    uint64_t x = seed | 1;
    for (uint32_t i = 0; i < PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)(x >> 24);
    }
    for (uint32_t i = PERIOD; i < PERIOD + MAX_WRITE; i++) pattern[i] = pattern[i - PERIOD];
}

static const unsigned char *slice(uint32_t k, uint64_t off) { return pattern + (off + (uint64_t)k * 7919u) % PERIOD; }

typedef struct {
    uint64_t a, b;
} checksum;

static void checksum_add(checksum *c, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        c->a += (uint64_t)p[i] + 1;
        c->b += c->a;
    }
}

static unsigned long long checksum_value(const checksum *c) { return c->a ^ (c->b * 0x9E3779B97F4A7C15ull); }

typedef struct {
    ibstack_conn *conn;
    uint32_t id;
    uint64_t total, sent, rcvd, writes, eagain;
    checksum sent_sum, rcvd_sum;
    int connected, state; /* state: 0 running, 1 done, -1 failed */
} client;

static uint32_t rng = 2463534242u;
static size_t write_size(void) { /* 1 B ... 4 MiB, log-uniform */
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    uint32_t shift = rng % 23;
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return 1 + rng % (1u << shift);
}

static const char *last_error(void) {
    static char msg[2048];
    ibstack_last_error_message(msg, sizeof msg);
    return msg;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-o key=value]... [-c ceph.conf [-s section]] [-r seed] ip port [bytes [connections]]\n", argv0);
    exit(2);
}

static uint64_t parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    uint64_t m = 1;
    if (*end == 'K' || *end == 'k') m = 1000;
    else if (*end == 'M') m = 1000 * 1000;
    else if (*end == 'G') m = 1000 * 1000 * 1000;
    if (m > 1 && end[1] == 'i') m = m == 1000 ? 1024 : m == 1000000 ? 1024 * 1024 : 1024ull * 1024 * 1024;
    return (uint64_t)(v * (double)m);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void fail(client *c, const char *what, ssize_t rc) {
    char msg[1024] = "";
    ibstack_conn_error_message(c->conn, msg, sizeof msg);
    fprintf(stderr, "conn %u: %s returned %zd (%s) after %llu sent / %llu received: %s\n", c->id, what, rc,
            ibstack_strerror((int)rc), (unsigned long long)c->sent, (unsigned long long)c->rcvd, msg);
    c->state = -1;
}

/* Reads what is there (checking it), then writes until the connection would block. */
static void step(client *c, unsigned char *buf) {
    if (!c->connected) {
        int r = ibstack_conn_is_connected(c->conn);
        if (r < 0) {
            fail(c, "the handshake", r);
            return;
        }
        if (r == 0) return; /* the fd fires again when it completes */
        c->connected = 1;
    }
    for (;;) { /* edge-triggered: read until -EAGAIN */
        ssize_t n = ibstack_conn_recv(c->conn, buf, BUF_SIZE);
        if (n == -EAGAIN) break;
        if (n <= 0) {
            fail(c, "recv", n);
            return;
        }
        if (c->rcvd + (uint64_t)n > c->total || memcmp(buf, slice(c->id, c->rcvd), (size_t)n)) {
            fprintf(stderr, "conn %u: the %zd bytes echoed at offset %llu differ from what was sent\n", c->id, n,
                    (unsigned long long)c->rcvd);
            c->state = -1;
            return;
        }
        checksum_add(&c->rcvd_sum, buf, (size_t)n);
        c->rcvd += (uint64_t)n;
    }
    while (c->sent < c->total) {
        size_t len = write_size();
        if (len > c->total - c->sent) len = (size_t)(c->total - c->sent);
        ssize_t k = ibstack_conn_send(c->conn, slice(c->id, c->sent), len);
        if (k == -EAGAIN) { /* no TX chunk free: the fd fires when some come back */
            c->eagain++;
            break;
        }
        if (k <= 0) {
            fail(c, "send", k);
            return;
        }
        checksum_add(&c->sent_sum, slice(c->id, c->sent), (size_t)k); /* k may be < len */
        c->sent += (uint64_t)k;
        c->writes++;
    }
    if (c->rcvd == c->total && c->sent == c->total) c->state = 1;
}

int main(int argc, char **argv) {
    const char *conf = NULL, *section = NULL;
    char *opts[128];
    int nopts = 0, opt;
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    while ((opt = getopt(argc, argv, "o:c:s:r:h")) != -1) {
        if (opt == 'o' && nopts < 128 && strchr(optarg, '=')) opts[nopts++] = optarg;
        else if (opt == 'c') conf = optarg;
        else if (opt == 's') section = optarg;
        else if (opt == 'r') seed = strtoull(optarg, NULL, 0);
        else usage(argv[0]);
    }
    if (argc - optind < 2 || argc - optind > 4) usage(argv[0]);
    const char *ip = argv[optind];
    int port = atoi(argv[optind + 1]);
    uint64_t bytes = argc - optind > 2 ? parse_size(argv[optind + 2]) : 10 * 1000 * 1000;
    int nconns = argc - optind > 3 ? atoi(argv[optind + 3]) : 1;
    if (port <= 0 || port > 65535 || nconns < 1 || nconns > 4096 || bytes < (uint64_t)nconns) usage(argv[0]);

    ibstack_config *cfg;
    if (ibstack_config_new(&cfg)) return 1;
    if (conf && ibstack_config_load_file(cfg, conf, section)) {
        fprintf(stderr, "%s: %s\n", conf, last_error());
        return 2;
    }
    for (int i = 0; i < nopts; i++) {
        char *eq = strchr(opts[i], '=');
        *eq = 0;
        if (ibstack_config_set(cfg, opts[i], eq + 1)) {
            fprintf(stderr, "-o %s=%s: %s\n", opts[i], eq + 1, last_error());
            return 2;
        }
    }
    int rc = ibstack_global_init(cfg);
    ibstack_stack *stack = NULL;
    if (!rc) rc = ibstack_stack_new(cfg, &stack);
    ibstack_config_free(cfg);
    if (rc) {
        fprintf(stderr, "stack: %s: %s\n", ibstack_strerror(rc), last_error());
        return 1;
    }
    make_pattern(seed);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    client *cs = calloc((size_t)nconns, sizeof *cs);
    unsigned char *buf = malloc(BUF_SIZE);
    double t0 = now();
    int over = 0;
    for (int i = 0; i < nconns; i++) {
        client *c = &cs[i];
        c->id = (uint32_t)i;
        c->total = bytes / (uint64_t)nconns + (i == 0 ? bytes % (uint64_t)nconns : 0);
        rc = ibstack_connect(stack, ip, (uint16_t)port, &c->conn); /* returns at once */
        if (rc) {
            fprintf(stderr, "connect %s:%d: %s: %s\n", ip, port, ibstack_strerror(rc), last_error());
            c->state = -1;
            over++;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(c->conn), &ev);
    }
    double t_connected = 0;
    while (over < nconns) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 10000);
        if (n == 0) {
            fprintf(stderr, "no progress for 10 s; giving up\n");
            break;
        }
        for (int i = 0; i < n; i++) {
            client *c = evs[i].data.ptr;
            if (c->state) continue;
            step(c, buf);
            if (c->connected && t_connected == 0) t_connected = now();
            if (c->state) {
                over++;
                epoll_ctl(ep, EPOLL_CTL_DEL, ibstack_conn_fd(c->conn), NULL);
            }
        }
    }
    double t1 = now();
    uint64_t rcvd = 0, writes = 0, eagain = 0;
    int good = 0;
    for (int i = 0; i < nconns; i++) {
        client *c = &cs[i];
        rcvd += c->rcvd;
        writes += c->writes;
        eagain += c->eagain;
        if (c->state == 1 && checksum_value(&c->sent_sum) == checksum_value(&c->rcvd_sum)) good++;
        if (nconns <= 16)
            printf("conn %d: %llu bytes sent, %llu echoed, checksum %016llx %s\n", i, (unsigned long long)c->sent,
                   (unsigned long long)c->rcvd, checksum_value(&c->rcvd_sum), c->state == 1 ? "ok" : "FAILED");
        if (c->conn) ibstack_conn_close(c->conn);
    }
    double dt = t1 - (t_connected ? t_connected : t0);
    printf("%d of %d connections ok: %llu bytes echoed in %llu writes (%llu -EAGAIN) in %.2f s: %.1f MB/s each way\n", good, nconns,
           (unsigned long long)rcvd, (unsigned long long)writes, (unsigned long long)eagain, dt, rcvd / dt / 1e6);
    /* closing is asynchronous: let the QPs drain before the stack goes */
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 500 && ibstack_stack_qp_count(stack) > 0; i++) nanosleep(&tick, NULL);
    close(ep);
    free(buf);
    free(cs);
    ibstack_stack_free(stack);
    return good == nconns ? 0 : 1;
}
