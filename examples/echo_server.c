/* ibstack echo server: one edge-triggered epoll loop over the listener fd and every
 * connection's fd; each connection's bytes are sent back as they come.
 * Built with `pkg-config --cflags --libs ibstack`.
 *
 * usage: echo_server [-o key=value]... [-c ceph.conf [-s section]] [-n N] [ip [port]]
 *   -o key=value   set a configuration option (ms_async_rdma_device_name=rxe0, ...)
 *   -c FILE        load a ceph.conf first ([global], then -s SECTION)
 *   -n N           exit after N connections have ended (default: run until SIGINT/SIGTERM)
 *   ip port        address to listen on (default 0.0.0.0, port 0 = pick one)
 * Prints "listening on IP:PORT" once ready, one line per finished connection, and the
 * stack's counters at exit. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <ibstack.h>

#define BUF_SIZE (256 * 1024)

typedef struct peer {
    struct peer *prev, *next; /* open connections */
    ibstack_conn *conn;
    unsigned id;
    unsigned char *buf;
    size_t len, off; /* received and not yet echoed: buf[off..len) */
    unsigned long long in, out;
    uint64_t sum_a, sum_b; /* running checksum of the bytes received */
} peer;

static peer *open_peers;
static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static const char *last_error(void) {
    static char msg[2048];
    ibstack_last_error_message(msg, sizeof msg);
    return msg;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-o key=value]... [-c ceph.conf [-s section]] [-n N] [ip [port]]\n", argv0);
    exit(2);
}

/* Echoes until the connection would block. Returns 0 to wait for its fd, 1 when the
 * peer's stream ended (everything echoed), -1 on an error. */
static int serve(peer *p) {
    for (;;) {
        if (p->off < p->len) {
            ssize_t k = ibstack_conn_send(p->conn, p->buf + p->off, p->len - p->off);
            if (k == -EAGAIN) return 0; /* TX chunks will come back: the fd tells us */
            if (k < 0) return -1;
            p->off += (size_t)k;
            p->out += (unsigned long long)k;
            continue;
        }
        ssize_t n = ibstack_conn_recv(p->conn, p->buf, BUF_SIZE);
        if (n == -EAGAIN) return 0;
        if (n == -ECONNRESET) return 1; /* the peer closed: end of stream */
        if (n <= 0) return -1;
        for (ssize_t i = 0; i < n; i++) {
            p->sum_a += (uint64_t)p->buf[i] + 1;
            p->sum_b += p->sum_a;
        }
        p->in += (unsigned long long)n;
        p->len = (size_t)n;
        p->off = 0;
    }
}

static void finish(int ep, peer *p, int how) {
    char msg[512] = "";
    if (how < 0) ibstack_conn_error_message(p->conn, msg, sizeof msg);
    printf("conn %u: %s, %llu bytes in, %llu echoed, checksum %016llx%s%s\n", p->id, how > 0 ? "peer closed" : how < 0 ? "failed" : "closed at exit",
           p->in, p->out, (unsigned long long)(p->sum_a ^ (p->sum_b * 0x9E3779B97F4A7C15ull)), *msg ? ": " : "", msg);
    fflush(stdout);
    epoll_ctl(ep, EPOLL_CTL_DEL, ibstack_conn_fd(p->conn), NULL);
    ibstack_conn_close(p->conn); /* sends the close after the data still in flight */
    if (p->prev) p->prev->next = p->next;
    else open_peers = p->next;
    if (p->next) p->next->prev = p->prev;
    free(p->buf);
    free(p);
}

int main(int argc, char **argv) {
    const char *conf = NULL, *section = NULL;
    char *opts[128];
    int nopts = 0;
    long limit = -1;
    int opt;
    while ((opt = getopt(argc, argv, "o:c:s:n:h")) != -1) {
        if (opt == 'o' && nopts < 128 && strchr(optarg, '=')) opts[nopts++] = optarg;
        else if (opt == 'c') conf = optarg;
        else if (opt == 's') section = optarg;
        else if (opt == 'n') limit = atol(optarg);
        else usage(argv[0]);
    }
    if (argc - optind > 2) usage(argv[0]);
    const char *ip = optind < argc ? argv[optind] : "0.0.0.0";
    int port = optind + 1 < argc ? atoi(argv[optind + 1]) : 0;
    if (port < 0 || port > 65535) usage(argv[0]);

    /* the file first, then -o options over it */
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
    ibstack_listener *listener;
    rc = ibstack_listen(stack, ip, (uint16_t)port, &listener);
    if (rc) {
        fprintf(stderr, "listen %s:%d: %s: %s\n", ip, port, ibstack_strerror(rc), last_error());
        ibstack_stack_free(stack);
        return 1;
    }
    printf("listening on %s:%d\n", ip, ibstack_listener_port(listener));
    fflush(stdout);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_listener_fd(listener), &ev);
    unsigned next_id = 0;
    long ended = 0;
    int accept_now = 1; /* try once before the first wait */
    while (!stop && (limit < 0 || ended < limit)) {
        if (accept_now) {
            accept_now = 0;
            ibstack_conn *c;
            while ((rc = ibstack_accept(listener, &c)) == 0) { /* edge-triggered: until -EAGAIN */
                peer *p = calloc(1, sizeof *p);
                p->conn = c;
                p->id = next_id++;
                p->buf = malloc(BUF_SIZE);
                p->next = open_peers;
                if (open_peers) open_peers->prev = p;
                open_peers = p;
                struct epoll_event ce = {.events = EPOLLIN | EPOLLET, .data.ptr = p};
                epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(c), &ce);
                int r = serve(p);
                if (r) {
                    finish(ep, p, r);
                    ended++;
                }
            }
            if (rc != -EAGAIN) fprintf(stderr, "accept: %s: %s\n", ibstack_strerror(rc), last_error());
        }
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                accept_now = 1;
                continue;
            }
            peer *p = evs[i].data.ptr;
            int r = serve(p);
            if (r) {
                finish(ep, p, r);
                ended++;
            }
        }
    }
    while (open_peers) finish(ep, open_peers, 0); /* interrupted: close what is still open */
    static char json[1 << 16];
    if (ibstack_stack_counters_json(stack, json, sizeof json) > 0) printf("counters: %s\n", json);
    close(ep);
    ibstack_listener_free(listener);
    ibstack_stack_free(stack);
    return 0;
}
