/* The stream API a host messenger needs (run in the VM): adopting the host's
 * listening, accepted, connected and connecting TCP sockets, the connection's
 * TCP addresses, zero-copy sends of TX chunks from the stack's memory
 * manager, the counters struct, and shutdown separate from close.
 *   test_stream_api_rxe srq|nosrq */
/* the shared helpers include the echo machinery this test does not use */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "conn_util.h"
#pragma GCC diagnostic pop

#include <signal.h>

static int tcp_socket_nb(void) { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); }

/* a listening socket of the host's own on TEST_IP, ephemeral port */
static int host_listener(uint16_t *port) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, TEST_IP, &a.sin_addr);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 16)) return -1;
    socklen_t al = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return l;
}

static int fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static uint16_t port_of(const struct sockaddr_storage *ss) {
    return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port) : 0;
}

static int same_addr(const struct sockaddr_storage *ss, const struct sockaddr_in *sin) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    return ss->ss_family == AF_INET && a->sin_port == sin->sin_port && a->sin_addr.s_addr == sin->sin_addr.s_addr;
}

/* bytes from `from` to `to`: send all of `msg`, receive it on the other side */
static int transfer(ibstack_stack *s, ibstack_conn *from, ibstack_conn *to, const char *msg, size_t n) {
    if (ibstack_conn_send(from, msg, n) != (ssize_t)n) return -1;
    char buf[256];
    size_t got = 0;
    double end = now_s() + 10;
    while (got < n && now_s() < end) {
        ssize_t r = ibstack_conn_recv(to, buf + got, sizeof buf - got);
        if (r > 0) got += (size_t)r;
        else if (r != -EAGAIN) return -1;
        else stack_service(s, 0, 2);
    }
    return got == n && !memcmp(buf, msg, n) ? 0 : -1;
}

/* receives until end of stream: returns the bytes before it, or -1 */
static ssize_t recv_to_eos(ibstack_stack *s, ibstack_conn *c, char *buf, size_t cap) {
    size_t got = 0;
    double end = now_s() + 10;
    while (now_s() < end) {
        ssize_t r = ibstack_conn_recv(c, buf + got, cap - got);
        if (r > 0) got += (size_t)r;
        else if (r == -ECONNRESET) return (ssize_t)got;
        else if (r != -EAGAIN) return -1;
        else stack_service(s, 0, 2);
    }
    return -1;
}

static void adopt_errors(ibstack_stack *s) {
    ibstack_conn *c = NULL;
    ibstack_listener *l = NULL;
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_RC(ibstack_conn_adopt(s, udp, IBSTACK_ROLE_CONNECTOR, &c), -EINVAL, "a UDP socket is refused");
    CHECK_MSG_HAS("not a TCP socket", "the message says why");
    CHECK(fd_open(udp), "a refused fd stays open and the caller's");
    close(udp);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    CHECK_RC(ibstack_listener_adopt(s, p[0], &l), -ENOTSOCK, "a pipe is not a socket");
    close(p[0]);
    close(p[1]);
    CHECK_RC(ibstack_conn_adopt(s, -1, IBSTACK_ROLE_ACCEPTOR, &c), -EBADF, "fd -1: -EBADF");
    uint16_t port;
    int hl = host_listener(&port);
    CHECK_RC(ibstack_conn_adopt(s, hl, IBSTACK_ROLE_ACCEPTOR, &c), -EINVAL, "a listening socket is not a connection");
    CHECK_MSG_HAS("listening socket", "the message names the listening socket");
    int fresh = tcp_socket_nb();
    CHECK_RC(ibstack_listener_adopt(s, fresh, &l), -EINVAL, "a socket that does not listen is not a listener");
    CHECK_RC(ibstack_conn_adopt(s, fresh, IBSTACK_ROLE_ACCEPTOR, &c), -ENOTCONN, "an unconnected socket cannot be the acceptor");
    CHECK_RC(ibstack_conn_adopt(s, fresh, 7, &c), -EINVAL, "role 7 is refused");
    CHECK_MSG_HAS("IBSTACK_ROLE_CONNECTOR", "the message names the roles");
    CHECK(fd_open(hl) && fd_open(fresh), "refused fds stay open");
    CHECK(c == NULL && l == NULL, "no handle written on failure");
    close(hl);
    close(fresh);
}

static void run(int srq) {
    ibstack_stack *s;
    CHECK_RC(stack_open(&s, srq, NULL), 0, "stack (%s)", srq ? "SRQ" : "per-QP RQ");
    if (!s) return;
    ibstack_mem_stats base = stack_mem(s);
    adopt_errors(s);

    /* the host's listener, adopted */
    uint16_t port;
    int hl = host_listener(&port);
    ibstack_listener *l = NULL;
    CHECK_RC(ibstack_listener_adopt(s, hl, &l), 0, "the host's listening socket adopted");
    CHECK(!fd_open(hl), "the adopted fd was taken over (closed; the listener serves through its own)");
    CHECK(ibstack_listener_port(l) == port, "listener port %d is the socket's %u", ibstack_listener_port(l), port);

    /* a connecting socket (non-blocking connect in progress), adopted as connector */
    int cs = tcp_socket_nb();
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, TEST_IP, &to.sin_addr);
    int cr = connect(cs, (struct sockaddr *)&to, sizeof to);
    CHECK(cr == 0 || errno == EINPROGRESS, "non-blocking connect started (%s)", cr ? strerror(errno) : "done");
    ibstack_conn *client = NULL, *server = NULL;
    CHECK_RC(ibstack_conn_adopt(s, cs, IBSTACK_ROLE_CONNECTOR, &client), 0, "the connecting socket adopted as connector");
    CHECK_RC(accept_wait(s, 0, l, 10, &server), 0, "the adopted listener accepts it");
    CHECK(conn_wait_connected(s, 0, client, 10) == 1 && conn_wait_connected(s, 0, server, 10) == 1,
          "both ends connected over RDMA");

    /* addresses: each end's local address is the other's peer address */
    struct sockaddr_storage cl, cp, sl, sp;
    CHECK_RC(ibstack_conn_local_addr(client, &cl), 0, "client local address");
    CHECK_RC(ibstack_conn_peer_addr(client, &cp), 0, "client peer address");
    CHECK_RC(ibstack_conn_local_addr(server, &sl), 0, "server local address");
    CHECK_RC(ibstack_conn_peer_addr(server, &sp), 0, "server peer address (the client as the server saw it)");
    CHECK(same_addr(&cp, &to) && same_addr(&sl, &to), "the client's peer and the server's local address are %s:%u", TEST_IP, port);
    CHECK(port_of(&cl) != 0 && port_of(&cl) == port_of(&sp) && !memcmp(&((struct sockaddr_in *)&cl)->sin_addr, &((struct sockaddr_in *)&sp)->sin_addr, 4),
          "the client's local address (port %u) is the server's peer address (port %u)", port_of(&cl), port_of(&sp));
    CHECK_RC(transfer(s, client, server, "over adopted sockets", 20), 0, "bytes flow client -> server");
    CHECK_RC(transfer(s, server, client, "and back", 8), 0, "bytes flow server -> client");

    /* zero-copy: a TX chunk of the stack's pool, filled by the host */
    ibstack_mem_mgr *mm = NULL;
    CHECK_RC(ibstack_stack_mem_mgr(s, &mm), 0, "the stack's memory manager");
    ibstack_chunk *ch[1];
    size_t n = 0;
    CHECK_RC(ibstack_mem_mgr_get_tx_chunks(mm, 1000, ch, 1, &n), 0, "one TX chunk from the stack's pool");
    ibstack_counters before, after;
    CHECK_RC(ibstack_stack_counters(s, &before), 0, "counters as a struct");
    if (n == 1) {
        char *buf = (char *)ibstack_chunk_buffer(ch[0]);
        CHECK(buf != NULL, "the chunk's buffer");
        for (int i = 0; i < 1000; i++) buf[i] = (char)('a' + i % 26);
        CHECK(ibstack_conn_send(client, buf, 1000) == 1000, "the filled chunk is sent without a copy");
        char got[1000];
        size_t g = 0;
        double end = now_s() + 10;
        while (g < sizeof got && now_s() < end) {
            ssize_t r = ibstack_conn_recv(server, got + g, sizeof got - g);
            if (r > 0) g += (size_t)r;
            else stack_service(s, 0, 2);
        }
        int same = g == sizeof got;
        for (int i = 0; same && i < 1000; i++) same = got[i] == (char)('a' + i % 26);
        CHECK(same, "the peer received the chunk's 1000 bytes");
    }
    CHECK_RC(ibstack_stack_counters(s, &after), 0, "counters again");
    CHECK(after.tx_chunks == before.tx_chunks + 1 && after.tx_bytes == before.tx_bytes + 1000,
          "tx_chunks %llu -> %llu, tx_bytes %llu -> %llu: one chunk of 1000 bytes", (unsigned long long)before.tx_chunks,
          (unsigned long long)after.tx_chunks, (unsigned long long)before.tx_bytes, (unsigned long long)after.tx_bytes);
    char json[8192];
    char want[64];
    snprintf(want, sizeof want, "\"tx_chunks\":%llu", (unsigned long long)after.tx_chunks);
    CHECK(ibstack_stack_counters_json(s, json, sizeof json) > 0 && strstr(json, want), "the JSON says %s too", want);
    ibstack_mem_mgr_free(mm);

    /* shutdown: the peer reads everything, then its end of stream; receiving goes on */
    CHECK(ibstack_conn_send(client, "last words", 10) == 10, "data before the shutdown");
    CHECK_RC(ibstack_conn_shutdown(client), 0, "shutdown of the sending half");
    CHECK_RC(ibstack_conn_shutdown(client), 0, "a second shutdown does nothing");
    CHECK(ibstack_conn_send(client, "x", 1) == -EPIPE, "send after shutdown: -EPIPE");
    char eos[64];
    ssize_t got = recv_to_eos(s, server, eos, sizeof eos);
    CHECK(got == 10 && !memcmp(eos, "last words", 10), "the peer read the data, then its end of stream (%zd bytes)", got);
    CHECK_RC(transfer(s, server, client, "still open", 10), 0, "the shut-down end still receives");
    ibstack_conn_close(server);
    ibstack_conn_close(client);

    /* the host's accepted socket, adopted as acceptor, against ibstack_connect */
    uint16_t port2;
    int hl2 = host_listener(&port2);
    ibstack_conn *c2 = NULL, *a2 = NULL;
    CHECK_RC(ibstack_connect(s, TEST_IP, port2, &c2), 0, "ibstack_connect to a plain listener of the host");
    int ps = accept4(hl2, NULL, NULL, SOCK_CLOEXEC);
    CHECK(ps >= 0, "the host accepted the TCP connection itself");
    close(hl2);
    CHECK_RC(ibstack_conn_adopt(s, ps, IBSTACK_ROLE_ACCEPTOR, &a2), 0, "the accepted socket adopted as acceptor");
    CHECK(conn_wait_connected(s, 0, c2, 10) == 1 && conn_wait_connected(s, 0, a2, 10) == 1, "connected");
    CHECK_RC(transfer(s, c2, a2, "accepted by the host", 20), 0, "bytes flow");
    ibstack_conn_close(a2);
    ibstack_conn_close(c2);

    /* a blocking-connected socket adopted as connector */
    int bs = tcp_connect_ip(TEST_IP, port);
    CHECK(bs >= 0, "blocking connect");
    ibstack_conn *c3 = NULL, *a3 = NULL;
    CHECK_RC(ibstack_conn_adopt(s, bs, IBSTACK_ROLE_CONNECTOR, &c3), 0, "a connected socket adopted as connector");
    CHECK_RC(accept_wait(s, 0, l, 10, &a3), 0, "accepted");
    CHECK(conn_wait_connected(s, 0, c3, 10) == 1 && conn_wait_connected(s, 0, a3, 10) == 1, "connected");
    CHECK_RC(transfer(s, a3, c3, "connected first", 15), 0, "bytes flow");
    ibstack_conn_close(a3);
    ibstack_conn_close(c3);
    ibstack_listener_free(l);
    check_teardown("stream api", s, 0, &base);
    ibstack_stack_free(s);
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "srq") && strcmp(argv[1], "nosrq"))) {
        fprintf(stderr, "usage: %s srq|nosrq\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    run(!strcmp(argv[1], "srq"));
    DONE();
}
