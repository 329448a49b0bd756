/* Connections (ibstack_stack / listener / conn) on Soft-RoCE, run in the VM. Every mode
 * forks before creating anything; each process builds its own stack.
 *   test_conn_rxe echo srq|nosrq N [BYTES]   echo of ECHO_TOTAL bytes (split over N connections)
 *                                            in random writes of 1 B … 4 MiB, checked on both sides
 *   test_conn_rxe backpressure srq|nosrq     a stopped reader gives -EAGAIN, a second connection
 *                                            of the same sender keeps flowing, nothing is lost
 *   test_conn_rxe close srq|nosrq connector|acceptor
 *                                            that side closes with data stuck in flight; the
 *                                            other reads it all, then -ECONNRESET; teardown
 *   test_conn_rxe race srq|nosrq             hand-made connector: data lands before record #3
 *   test_conn_rxe banner srq|nosrq           a msgr2 (posix) client faults its conn; the listener
 *                                            keeps working
 *   test_conn_rxe hostdriven srq|nosrq       ibstack_stack_thread=false, the test polls
 *   test_conn_rxe logcb srq|nosrq            a trace-level log callback that calls the library
 *                                            on the very connection and stack that logged
 *                                            (their locks were held while logging): no deadlock
 *   test_conn_rxe gidauto srq|nosrq          ibstack_gid_select = auto with a second address on
 *                                            rxe0's netdev: each connection uses the RoCE v2 GID
 *                                            of its local address on both ends; loopback is
 *                                            refused with EADDRNOTAVAIL naming the candidates */
#include "conn_util.h"

/* bytes echoed by one `echo` run, over all its connections (argv[4] overrides) */
#define ECHO_TOTAL (100ull * 1000 * 1000)
#define MAX_CONNS 8

static const char *qname(int srq) { return srq ? "SRQ" : "per-QP RQ"; }

static int exit_code(void) {
    fflush(stdout);
    return h_failed ? 1 : 0;
}

/* CHECKs a child's wait status */
static void check_child(child *c, const char *who, double secs) {
    int st = child_wait(c, secs);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s process exited cleanly (status %d)", who, st);
    close(c->to_child);
    close(c->from_child);
}

/* Reads one connection until its stream ends, checking the bytes against stream `seed`.
 * Edge-triggered epoll on the conn fd; gives up after `secs`, or `stall` seconds without data. */
static conn_result read_stream(ibstack_conn *c, uint32_t seed, double secs, double stall, const char *who) {
    conn_result r = {0, 0, 0, 0};
    csum sum = {0, 0};
    uint8_t *buf = malloc(ECHO_BUF);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(c), &ev);
    double end = now_s() + secs, last = now_s();
    for (;;) {
        ssize_t n = ibstack_conn_recv(c, buf, ECHO_BUF);
        if (n > 0) {
            if (memcmp(buf, pat_at(seed, r.bytes), (size_t)n)) {
                if (!r.mismatches) printf("# %s: %zd bytes at offset %llu differ\n", who, n, (unsigned long long)r.bytes);
                r.mismatches++;
            }
            csum_add(&sum, buf, (size_t)n);
            r.bytes += (uint64_t)n;
            last = now_s();
            continue;
        }
        if (n != -EAGAIN) {
            r.end_rc = n;
            break;
        }
        if (now_s() > end || now_s() - last > stall) {
            printf("# %s: no end of stream after %llu bytes (is_connected %d): %s\n", who, (unsigned long long)r.bytes,
                   ibstack_conn_is_connected(c), conn_msg(c));
            r.end_rc = -ETIMEDOUT;
            break;
        }
        epoll_wait(ep, &ev, 1, 100);
    }
    r.sum = csum_value(&sum);
    close(ep);
    free(buf);
    return r;
}

/* ================================================================== echo */

struct echo_args {
    int srq, nconns;
};

static int echo_server_child(int in, int out, void *arg) {
    struct echo_args *a = arg;
    (void)in;
    ibstack_stack *s;
    int rc = stack_open(&s, a->srq, NULL);
    CHECK_RC(rc, 0, "server: stack created (%s)", qname(a->srq));
    if (rc) return 1;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_listener *l = NULL;
    rc = listen_and_announce(s, &l, out);
    CHECK_RC(rc, 0, "server: listening on %s, ephemeral port %d", TEST_IP, l ? ibstack_listener_port(l) : -1);
    if (rc) return 1;
    conn_result res[MAX_CONNS];
    double t0 = now_s();
    int clean = echo_serve(s, 0, l, a->nconns, 1800, 30, res);
    uint64_t bytes = 0;
    int echoed = 1;
    for (int i = 0; i < a->nconns; i++) {
        bytes += res[i].bytes;
        echoed &= res[i].mismatches == 0;
    }
    CHECK(clean == a->nconns && echoed, "server: %d connections echoed to their end of stream (%llu bytes, %.1f s)", clean,
          (unsigned long long)bytes, now_s() - t0);
    ibstack_listener_free(l);
    check_teardown("server", s, 0, &base);
    write_all(out, res, sizeof res[0] * (size_t)a->nconns);
    ibstack_stack_free(s);
    return exit_code();
}

static void mode_echo(int srq, int nconns, uint64_t total) {
    pat_init();
    struct echo_args a = {srq, nconns};
    child srv;
    CHECK_RC(spawn(&srv, echo_server_child, &a), 0, "server process started");
    uint16_t port = 0;
    int rc = read_all(srv.from_child, &port, sizeof port, 60);
    CHECK(rc == 0, "server announced its port %u", port);
    if (rc) {
        check_child(&srv, "server", 5);
        return;
    }
    ibstack_stack *s;
    rc = stack_open(&s, srq, NULL);
    CHECK_RC(rc, 0, "client: stack created (%s)", qname(srq));
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    echo_client e[MAX_CONNS];
    memset(e, 0, sizeof e);
    int started = 0;
    for (int i = 0; i < nconns; i++) {
        e[i].seed = 100 + (uint32_t)i;
        e[i].total = total / (uint64_t)nconns + (i == 0 ? total % (uint64_t)nconns : 0);
        if (ibstack_connect(s, TEST_IP, port, &e[i].c) == 0) started++;
        else printf("# connect %d: %s\n", i, h_last_error());
    }
    CHECK(started == nconns, "client: %d connections started (ibstack_connect)", started);
    if (started != nconns) return;
    double t0 = now_s();
    int fin = run_clients(s, 0, e, nconns, 1800, 30);
    double dt = now_s() - t0;
    uint64_t sent = 0, rcvd = 0, mism = 0, writes = 0, eagain = 0;
    int sums = 1;
    for (int i = 0; i < nconns; i++) {
        sent += e[i].sent;
        rcvd += e[i].rcvd;
        mism += e[i].mismatches;
        writes += e[i].writes;
        eagain += e[i].eagain;
        sums &= csum_value(&e[i].sent_sum) == csum_value(&e[i].rcvd_sum);
    }
    double mbs = rcvd / dt / 1e6;
    CHECK(fin == nconns && rcvd == total && sent == total, "client: %d of %d connections got all %llu bytes back (%llu writes, %llu -EAGAIN; %.1f s, %.1f MB/s each way)",
          fin, nconns, (unsigned long long)rcvd, (unsigned long long)writes, (unsigned long long)eagain, dt, mbs);
    CHECK(mism == 0 && sums, "client: echoed bytes equal the sent bytes, in order (checksums match)");
    printf("# timing: echo %s %d conn(s): %llu bytes each way in %.2f s = %.1f MB/s\n", qname(srq), nconns,
           (unsigned long long)rcvd, dt, mbs);
    for (int i = 0; i < nconns; i++) ibstack_conn_close(e[i].c);
    check_teardown("client", s, 0, &base);
    conn_result res[MAX_CONNS];
    rc = read_all(srv.from_child, res, sizeof res[0] * (size_t)nconns, 120);
    int matched = 0, used[MAX_CONNS] = {0};
    for (int i = 0; !rc && i < nconns; i++)
        for (int j = 0; j < nconns; j++)
            if (!used[j] && res[j].bytes == e[i].sent && res[j].sum == csum_value(&e[i].sent_sum) && res[j].end_rc == -ECONNRESET) {
                used[j] = 1;
                matched++;
                break;
            }
    CHECK(matched == nconns, "server received each connection's bytes with the client's checksum, then -ECONNRESET (%d of %d)",
          matched, nconns);
    check_child(&srv, "server", 60);
    ibstack_stack_free(s);
}

/* ================================================================== back-pressure */

struct recv_args {
    int srq;
    const char *rx_buffers;
    int stall; /* read nothing until the parent writes 'R' */
    uint32_t seed;
};

static int receiver_child(int in, int out, void *arg) {
    struct recv_args *a = arg;
    const char *who = a->stall ? "stalled receiver" : "steady receiver";
    const char *extra[] = {"ms_async_rdma_receive_buffers", a->rx_buffers, NULL};
    ibstack_stack *s;
    int rc = stack_open(&s, a->srq, extra);
    CHECK_RC(rc, 0, "%s: stack created (%s, receive_buffers %s)", who, qname(a->srq), a->rx_buffers);
    if (rc) return 1;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_listener *l;
    rc = listen_and_announce(s, &l, out);
    CHECK_RC(rc, 0, "%s: listening", who);
    if (rc) return 1;
    ibstack_conn *c = NULL;
    CHECK_RC(accept_wait(s, 0, l, 60, &c), 0, "%s: connection accepted", who);
    if (!c) return 1;
    CHECK_RC(conn_wait_connected(s, 0, c, 20), 1, "%s: connected", who);
    if (a->stall) {
        char b = 0;
        rc = read_all(in, &b, 1, 300);
        CHECK(rc == 0 && b == 'R', "%s: told to resume reading", who);
        ibstack_mem_stats m = stack_mem(s);
        printf("# %s: RX in use while stopped: %llu of %llu allowed\n", who, (unsigned long long)m.rx_in_use,
               (unsigned long long)m.rx_limit);
    }
    conn_result r = read_stream(c, a->seed, 300, 30, who);
    write_all(out, &r, sizeof r);
    ibstack_conn_close(c);
    ibstack_listener_free(l);
    check_teardown(who, s, 0, &base);
    ibstack_stack_free(s);
    return exit_code();
}

typedef struct {
    ibstack_conn *c;
    uint32_t seed;
    uint64_t sent, limit, eagain;
    csum sum;
    double last_progress;
    int error;
} sender;

/* writes random-sized slices until -EAGAIN, the limit, or 4 MiB in this call (so a connection
 * that never blocks cannot starve the other one in the caller's loop) */
static void sender_pump(sender *x) {
    uint64_t budget = x->sent + 4 * MIB;
    while (!x->error && x->sent < x->limit && x->sent < budget) {
        size_t len = rand_write_len();
        if (len > x->limit - x->sent) len = (size_t)(x->limit - x->sent);
        const uint8_t *src = pat_at(x->seed, x->sent);
        ssize_t k = ibstack_conn_send(x->c, src, len);
        if (k == -EAGAIN) {
            x->eagain++;
            return;
        }
        if (k <= 0) {
            printf("# sender seed %u: send returned %zd (%s): %s\n", x->seed, k, ibstack_strerror((int)k), conn_msg(x->c));
            x->error = k ? (int)k : -EIO;
            return;
        }
        csum_add(&x->sum, src, (size_t)k);
        x->sent += (uint64_t)k;
        x->last_progress = now_s();
    }
}

static void mode_backpressure(int srq) {
    pat_init();
    struct recv_args aa = {srq, "256", 1, 201}, ab = {srq, "2048", 0, 202};
    child ca, cb;
    CHECK_RC(spawn(&ca, receiver_child, &aa) | spawn(&cb, receiver_child, &ab), 0, "two receiver processes started");
    uint16_t pa = 0, pb = 0;
    int rc = read_all(ca.from_child, &pa, 2, 60) | read_all(cb.from_child, &pb, 2, 60);
    CHECK(rc == 0, "receivers announced their ports (%u stalled, %u steady)", pa, pb);
    if (rc) return;
    const char *extra[] = {"ibstack_max_inflight_per_conn", "32", NULL};
    ibstack_stack *s;
    rc = stack_open(&s, srq, extra);
    CHECK_RC(rc, 0, "sender: stack created (%s, ibstack_max_inflight_per_conn 32)", qname(srq));
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    sender A = {.seed = 201, .limit = UINT64_MAX}, B = {.seed = 202, .limit = UINT64_MAX};
    rc = ibstack_connect(s, TEST_IP, pa, &A.c) | ibstack_connect(s, TEST_IP, pb, &B.c);
    CHECK_RC(rc, 0, "sender: connections A (to the stalled receiver) and B (to the steady one) started");
    if (rc) return;
    CHECK(conn_wait_connected(s, 0, A.c, 20) == 1 && conn_wait_connected(s, 0, B.c, 20) == 1, "sender: both connected");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET}, evs[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(A.c), &ev);
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(B.c), &ev);

    /* 1: A's receiver reads nothing; send on both until A accepts nothing for 1 s */
    double t0 = now_s(), end = t0 + 120;
    A.last_progress = B.last_progress = t0;
    while (!A.error && !B.error && now_s() < end && !(A.eagain && now_s() - A.last_progress > 1.0)) {
        sender_pump(&A);
        sender_pump(&B);
        epoll_wait(ep, evs, 4, 20);
    }
    int stalled = A.eagain && now_s() - A.last_progress > 1.0;
    CHECK(stalled && !A.error, "A stalls: -EAGAIN and no byte accepted for 1 s, after %llu bytes (%.1f s)", (unsigned long long)A.sent,
          now_s() - t0);
    if (!stalled) dump_stack("sender", s, 0);

    /* 2: two more seconds of the stall; B must keep moving */
    uint64_t a0 = A.sent, b0 = B.sent, e0 = A.eagain;
    double ts = now_s();
    while (!B.error && now_s() - ts < 2.0) {
        sender_pump(&A);
        sender_pump(&B);
        epoll_wait(ep, evs, 4, 20);
    }
    double dts = now_s() - ts;
    CHECK(A.sent == a0 && A.eagain > e0, "during the stall A accepted no byte and returned -EAGAIN %llu times",
          (unsigned long long)(A.eagain - e0));
    /* B can hold at most 32 chunks of 16 KiB in flight: more than that means completions */
    CHECK(B.sent - b0 > 4ull * 32 * 16384, "meanwhile B (same sender, other receiver) moved %llu bytes in %.1f s (%.1f MB/s)",
          (unsigned long long)(B.sent - b0), dts, (B.sent - b0) / dts / 1e6);

    /* 3: resume the reader; A must move again and finish 8 MiB more */
    CHECK_RC(write_all(ca.to_child, "R", 1), 0, "stalled receiver told to read again");
    A.limit = A.sent + 8 * MIB;
    double tr = now_s(), first = -1;
    end = tr + 120;
    while (!A.error && !B.error && A.sent < A.limit && now_s() < end) {
        sender_pump(&A);
        if (first < 0 && A.sent > a0) first = now_s() - tr;
        sender_pump(&B);
        epoll_wait(ep, evs, 4, 20);
    }
    CHECK(first >= 0 && first < 5, "A accepts bytes again %.3f s after its reader resumed", first);
    CHECK(A.sent == A.limit && !A.error, "A: all %llu bytes accepted (%.1f s after resuming)", (unsigned long long)A.sent,
          now_s() - tr);
    printf("# timing: backpressure %s: stall reached after %.1f s; B moved %llu bytes in total; A finished %.2f s after resume\n",
           qname(srq), ts - t0, (unsigned long long)B.sent, now_s() - tr);
    close(ep);
    ibstack_conn_close(A.c);
    ibstack_conn_close(B.c);
    conn_result ra = {0, 0, 1, 0}, rb = {0, 0, 1, 0};
    read_all(ca.from_child, &ra, sizeof ra, 120);
    read_all(cb.from_child, &rb, sizeof rb, 120);
    CHECK(ra.bytes == A.sent && ra.sum == csum_value(&A.sum) && ra.mismatches == 0 && ra.end_rc == -ECONNRESET,
          "stalled receiver got all %llu bytes in order, then -ECONNRESET (got %llu, end %lld)", (unsigned long long)A.sent,
          (unsigned long long)ra.bytes, (long long)ra.end_rc);
    CHECK(rb.bytes == B.sent && rb.sum == csum_value(&B.sum) && rb.mismatches == 0 && rb.end_rc == -ECONNRESET,
          "steady receiver got all %llu bytes in order, then -ECONNRESET (got %llu, end %lld)", (unsigned long long)B.sent,
          (unsigned long long)rb.bytes, (long long)rb.end_rc);
    check_teardown("sender", s, 0, &base);
    check_child(&ca, "stalled receiver", 60);
    check_child(&cb, "steady receiver", 60);
    ibstack_stack_free(s);
}

/* ================================================================== close with data in flight */

#define CLOSE_MAX (24u * MIB)
#define CLOSE_SEED 301

/* Sends until the peer (which is not reading, receive_buffers 256) holds its whole pool and
 * the rest is stuck in flight: -EAGAIN and nothing accepted for 0.5 s. Then closes and
 * announces (bytes, checksum) on ctl. */
static void closer(ibstack_stack *s, ibstack_conn *c, int ctl, const char *who) {
    sender x = {.c = c, .seed = CLOSE_SEED, .limit = CLOSE_MAX, .last_progress = now_s()};
    double end = now_s() + 60;
    while (!x.error && x.sent < x.limit && now_s() < end && !(x.eagain && now_s() - x.last_progress > 0.5)) {
        sender_pump(&x);
        usleep(2000); /* the fd stays readable (nothing drains it here): just retry */
    }
    int stuck = x.eagain && now_s() - x.last_progress > 0.5;
    uint64_t inflight = stack_mem(s).tx_in_use;
    CHECK(!x.error && stuck && inflight > 0, "%s: %llu bytes accepted, %llu TX chunks stuck in flight (-EAGAIN for 0.5 s)", who,
          (unsigned long long)x.sent, (unsigned long long)inflight);
    ibstack_conn_close(c);
    conn_result r = {x.sent, csum_value(&x.sum), 0, 0};
    CHECK_RC(write_all(ctl, &r, sizeof r), 0, "%s: closed with data in flight, told the peer", who);
}

/* Waits for the closer's announcement, then reads everything and the end of stream. */
static void reader(ibstack_conn *c, int ctl, const char *who) {
    conn_result want;
    int rc = read_all(ctl, &want, sizeof want, 120);
    CHECK(rc == 0, "%s: the peer closed (%llu bytes sent)", who, rc ? 0ull : (unsigned long long)want.bytes);
    if (rc) return;
    double t0 = now_s();
    conn_result got = read_stream(c, CLOSE_SEED, 60, 20, who);
    CHECK(got.bytes == want.bytes && got.sum == want.sum && got.mismatches == 0,
          "%s: read everything sent before the close: %llu of %llu bytes, checksums %s (%.2f s)", who,
          (unsigned long long)got.bytes, (unsigned long long)want.bytes, got.sum == want.sum ? "equal" : "differ", now_s() - t0);
    CHECK_RC(got.end_rc, -ECONNRESET, "%s: then -ECONNRESET (end of stream)", who);
    char b[16];
    CHECK_RC(ibstack_conn_recv(c, b, sizeof b), -ECONNRESET, "%s: recv keeps returning -ECONNRESET", who);
    ibstack_conn_close(c);
}

struct close_args {
    int srq, acceptor_closes;
};

static const char *close_extra[] = {"ms_async_rdma_receive_buffers", "256", NULL};

static int close_child(int in, int out, void *arg) {
    struct close_args *a = arg;
    ibstack_stack *s;
    int rc = stack_open(&s, a->srq, close_extra);
    CHECK_RC(rc, 0, "acceptor: stack created (%s, receive_buffers 256)", qname(a->srq));
    if (rc) return 1;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_listener *l;
    rc = listen_and_announce(s, &l, out);
    CHECK_RC(rc, 0, "acceptor: listening");
    if (rc) return 1;
    ibstack_conn *c = NULL;
    CHECK_RC(accept_wait(s, 0, l, 60, &c), 0, "acceptor: connection accepted");
    if (!c) return 1;
    CHECK_RC(conn_wait_connected(s, 0, c, 20), 1, "acceptor: connected");
    if (a->acceptor_closes) closer(s, c, out, "acceptor (closing)");
    else reader(c, in, "acceptor (reading)");
    ibstack_listener_free(l);
    check_teardown("acceptor", s, 0, &base);
    ibstack_stack_free(s);
    return exit_code();
}

static void mode_close(int srq, int acceptor_closes) {
    pat_init();
    struct close_args a = {srq, acceptor_closes};
    child ch;
    CHECK_RC(spawn(&ch, close_child, &a), 0, "acceptor process started");
    uint16_t port = 0;
    int rc = read_all(ch.from_child, &port, 2, 60);
    CHECK(rc == 0, "acceptor announced its port %u", port);
    if (rc) return;
    ibstack_stack *s;
    rc = stack_open(&s, srq, close_extra);
    CHECK_RC(rc, 0, "connector: stack created (%s, receive_buffers 256)", qname(srq));
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_conn *c = NULL;
    CHECK_RC(ibstack_connect(s, TEST_IP, port, &c), 0, "connector: connection started");
    if (!c) return;
    CHECK_RC(conn_wait_connected(s, 0, c, 20), 1, "connector: connected");
    double t0 = now_s();
    if (acceptor_closes) reader(c, ch.from_child, "connector (reading)");
    else closer(s, c, ch.to_child, "connector (closing)");
    check_teardown("connector", s, 0, &base);
    printf("# timing: close %s, %s closes: %.2f s from the close/announcement to teardown\n", qname(srq),
           acceptor_closes ? "acceptor" : "connector", now_s() - t0);
    check_child(&ch, "acceptor", 60);
    ibstack_stack_free(s);
}

/* ================================================================== handshake race */

#define RACE_MESSAGES 40 /* of 1..20000 bytes: well within the 128 receive buffers posted */
#define RACE_SEED 77

struct race_note {
    uint64_t bytes, sum; /* qp_util stream: sum of sum_byte over the bytes */
};

static int race_child(int in, int out, void *arg) {
    int srq = *(int *)arg;
    ibstack_stack *s;
    int rc = stack_open(&s, srq, NULL);
    CHECK_RC(rc, 0, "acceptor: stack created (%s)", qname(srq));
    if (rc) return 1;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_listener *l;
    rc = listen_and_announce(s, &l, out);
    CHECK_RC(rc, 0, "acceptor: listening");
    if (rc) return 1;
    /* accept whenever the listener offers the connection; the connector says (on `in`) when
     * its data has landed here, before it sends record #3 */
    struct race_note note;
    ibstack_conn *c = NULL;
    double end = now_s() + 60;
    int got_note = 0;
    while (!got_note && now_s() < end) {
        if (!c) ibstack_accept(l, &c);
        struct pollfd p[2] = {{.fd = in, .events = POLLIN}, {.fd = ibstack_listener_fd(l), .events = POLLIN}};
        if (poll(p, c ? 1 : 2, 100) > 0 && (p[0].revents & POLLIN)) got_note = read_all(in, &note, sizeof note, 5) == 0;
    }
    CHECK(got_note, "acceptor: the connector's data landed before record #3 (%llu bytes)", got_note ? (unsigned long long)note.bytes : 0ull);
    if (!got_note) return 1;
    if (c) CHECK_RC(ibstack_conn_is_connected(c), 0, "acceptor: the conn is not connected yet (record #3 not sent)");
    else printf("# acceptor: not accepted yet when the data had landed\n");
    if (!c) CHECK_RC(accept_wait(s, 0, l, 20, &c), 0, "acceptor: connection accepted");
    if (!c) return 1;
    CHECK_RC(conn_wait_connected(s, 0, c, 20), 1, "acceptor: connected once record #3 arrived");
    stream in_s = {.seed = RACE_SEED};
    uint8_t buf[65536];
    ssize_t n;
    end = now_s() + 30;
    struct pollfd p = {.fd = ibstack_conn_fd(c), .events = POLLIN};
    while ((n = ibstack_conn_recv(c, buf, sizeof buf)) > 0 || (n == -EAGAIN && now_s() < end)) {
        if (n == -EAGAIN) {
            poll(&p, 1, 50);
            continue;
        }
        for (ssize_t j = 0; j < n; j++) {
            if (buf[j] != stream_byte(in_s.seed, in_s.off + (uint64_t)j)) in_s.mismatches++;
            sum_byte(&in_s, buf[j]);
        }
        in_s.off += (uint64_t)n;
    }
    CHECK(in_s.off == note.bytes && in_s.mismatches == 0 && in_s.sum == note.sum,
          "acceptor: every byte sent before record #3 arrived, in order (%llu of %llu, %llu mismatches)",
          (unsigned long long)in_s.off, (unsigned long long)note.bytes, (unsigned long long)in_s.mismatches);
    CHECK_RC(n, -ECONNRESET, "acceptor: then the connector's close SEND ends the stream");
    ibstack_conn_close(c);
    ibstack_listener_free(l);
    check_teardown("acceptor", s, 0, &base);
    ibstack_stack_free(s);
    return exit_code();
}

/* polls the hand-made connector's dispatcher once; counts failed completions */
static int race_pump(rig *r, int *errors) {
    ibstack_wc wc[32];
    int n = ibstack_dispatcher_poll(r->d, wc, 32);
    for (int i = 0; i < n; i++) {
        if (wc[i].status != 0) {
            (*errors)++;
            printf("# connector: completion %s on QP %u\n", ibstack_wc_status_str(wc[i].status), wc[i].qp_num);
        } else {
            ibstack_dispatcher_release_rx(r->d, (ibstack_chunk *)(uintptr_t)wc[i].wr_id);
        }
    }
    return n;
}

static void mode_race(int srq) {
    child ch;
    CHECK_RC(spawn(&ch, race_child, &srq), 0, "acceptor process started");
    uint16_t port = 0;
    int rc = read_all(ch.from_child, &port, 2, 60);
    CHECK(rc == 0, "acceptor announced its port %u", port);
    if (rc) return;
    rig r;
    rc = rig_open(&r, srq, NULL);
    CHECK_RC(rc, 0, "connector: device, pools and dispatcher by hand (%s)", qname(srq));
    if (rc) return;
    ibstack_qp *q = NULL;
    CHECK_RC(ibstack_qp_new(r.d, &q), 0, "connector: QP");
    int fd = tcp_connect_ip(TEST_IP, port);
    CHECK(fd >= 0, "connector: TCP connection to the listener");
    if (!q || fd < 0) return;
    ibstack_cm_meta lm, pm;
    char rec[65];
    ibstack_qp_local_meta(q, &lm);
    lm.peer_qpn = 0;
    CHECK_RC(ibstack_cm_meta_encode(&lm, rec, sizeof rec), 65, "connector: record #1 encoded (65 bytes)");
    CHECK_RC(write_all(fd, rec, sizeof rec), 0, "connector: record #1 sent (peer_qpn 0)");
    rc = read_all(fd, rec, sizeof rec, 20);
    CHECK(rc == 0, "connector: 65 bytes of record #2 read");
    if (rc) return;
    CHECK_RC(ibstack_cm_meta_decode(rec, sizeof rec, &pm), 0, "connector: record #2 decodes");
    CHECK(pm.peer_qpn == lm.local_qpn, "connector: record #2 names our QP (%#x)", pm.peer_qpn);
    CHECK_RC(ibstack_qp_to_rtr(q, &pm), 0, "connector: INIT->RTR towards the acceptor's QP %#x", pm.local_qpn);
    CHECK_RC(ibstack_qp_to_rts(q), 0, "connector: RTR->RTS");
    stream out = {.seed = RACE_SEED};
    int errors = 0, posted = 0;
    crng_state = 4242;
    for (int m = 0; m < RACE_MESSAGES; m++) {
        size_t len = 1 + crng() % 20000;
        double end = now_s() + 10;
        while ((rc = send_message(&r, q, &out, len)) == -EAGAIN && now_s() < end) race_pump(&r, &errors);
        if (rc) break;
        posted++;
    }
    double end = now_s() + 10;
    while (ibstack_qp_tx_outstanding(q) > 0 && now_s() < end) race_pump(&r, &errors);
    double t_data = now_s();
    CHECK(posted == RACE_MESSAGES && ibstack_qp_tx_outstanding(q) == 0 && errors == 0,
          "connector: %d SENDs (%llu bytes) completed at the acceptor before record #3", posted, (unsigned long long)out.off);
    struct race_note note = {out.off, out.sum};
    write_all(ch.to_child, &note, sizeof note);
    while (now_s() - t_data < 0.3) {
        race_pump(&r, &errors);
        usleep(1000);
    }
    lm.peer_qpn = pm.local_qpn;
    ibstack_cm_meta_encode(&lm, rec, sizeof rec);
    CHECK_RC(write_all(fd, rec, sizeof rec), 0, "connector: record #3 sent %.0f ms after the data", (now_s() - t_data) * 1000);
    CHECK_RC(ibstack_qp_post_fin(q), 0, "connector: close SEND posted");
    /* keep the TCP connection open (its EOF is a fault) until the acceptor is done */
    int st = -1;
    end = now_s() + 90;
    while (now_s() < end) {
        race_pump(&r, &errors);
        if (waitpid(ch.pid, &st, WNOHANG) == ch.pid) break;
        usleep(1000);
    }
    if (now_s() >= end) {
        kill(ch.pid, SIGKILL);
        waitpid(ch.pid, &st, 0);
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "acceptor process exited cleanly (status %d)", st);
    CHECK(errors == 0, "connector: no failed completion");
    ibstack_qp_free(q);
    end = now_s() + 10;
    while (ibstack_dispatcher_qp_count(r.d) > 0 && now_s() < end)
        if (race_pump(&r, &errors) == 0) usleep(1000);
    CHECK_RC(ibstack_dispatcher_qp_count(r.d), 0, "connector: QP drained and destroyed");
    close(fd);
    rig_close(&r);
}

/* ================================================================== msgr2 banner */

static int banner_child(int in, int out, void *arg) {
    int srq = *(int *)arg;
    (void)in;
    ibstack_stack *s;
    int rc = stack_open(&s, srq, NULL);
    CHECK_RC(rc, 0, "listener: stack created (%s)", qname(srq));
    if (rc) return 1;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_listener *l;
    rc = listen_and_announce(s, &l, out);
    CHECK_RC(rc, 0, "listener: listening");
    if (rc) return 1;
    ibstack_conn *c = NULL;
    CHECK_RC(accept_wait(s, 0, l, 30, &c), 0, "listener: the posix client's connection is accepted");
    if (!c) return 1;
    int st = conn_wait_connected(s, 0, c, 10);
    CHECK(st < 0, "listener: that conn faults (is_connected %d: %s)", st, ibstack_strerror(st));
    const char *m = conn_msg(c);
    CHECK(strstr(m, "async+posix") != NULL, "listener: its message names async+posix: \"%s\"", m);
    ibstack_conn_close(c);
    write_all(out, "F", 1);
    conn_result res;
    int clean = echo_serve(s, 0, l, 1, 120, 20, &res);
    CHECK(clean == 1 && res.bytes > 0 && res.mismatches == 0, "listener: a normal ibstack connection afterwards is accepted and echoed (%llu bytes)",
          (unsigned long long)res.bytes);
    ibstack_listener_free(l);
    check_teardown("listener", s, 0, &base);
    ibstack_stack_free(s);
    return exit_code();
}

static void mode_banner(int srq) {
    pat_init();
    child ch;
    CHECK_RC(spawn(&ch, banner_child, &srq), 0, "listener process started");
    uint16_t port = 0;
    int rc = read_all(ch.from_child, &port, 2, 60);
    CHECK(rc == 0, "listener announced its port %u", port);
    if (rc) return;
    int fd = tcp_connect_ip(TEST_IP, port);
    CHECK(fd >= 0, "plain TCP client connected");
    const char banner[26] = "ceph v2\n\x10\x00"
                            "0123456789abcdef";
    CHECK_RC(write_all(fd, banner, sizeof banner), 0, "plain TCP client sent a msgr2 banner (26 bytes)");
    char f = 0;
    rc = read_all(ch.from_child, &f, 1, 30);
    CHECK(rc == 0 && f == 'F', "listener saw the fault");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, 2000);
    char b[128];
    ssize_t k = pr > 0 ? read(fd, b, sizeof b) : -2;
    printf("# the posix client's TCP socket after the fault: %s (read %zd)\n", k == 0 ? "EOF" : k > 0 ? "data" : "still open", k);
    close(fd);
    ibstack_stack *s;
    rc = stack_open(&s, srq, NULL);
    CHECK_RC(rc, 0, "client: stack created");
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    echo_client e = {.seed = 55, .total = 4 * MIB};
    CHECK_RC(ibstack_connect(s, TEST_IP, port, &e.c), 0, "client: ibstack connection to the same listener");
    if (!e.c) return;
    int fin = run_clients(s, 0, &e, 1, 120, 20);
    CHECK(fin == 1 && e.mismatches == 0 && csum_value(&e.sent_sum) == csum_value(&e.rcvd_sum), "client: %llu bytes echoed back intact",
          (unsigned long long)e.rcvd);
    ibstack_conn_close(e.c);
    check_teardown("client", s, 0, &base);
    check_child(&ch, "listener", 60);
    ibstack_stack_free(s);
}

/* ================================================================== host-driven stacks */

static const char *hd_extra[] = {"ibstack_stack_thread", "false", NULL};

static int hostdriven_child(int in, int out, void *arg) {
    int srq = *(int *)arg;
    (void)in;
    ibstack_stack *s;
    int rc = stack_open(&s, srq, hd_extra);
    CHECK_RC(rc, 0, "server: host-driven stack created (%s, ibstack_stack_thread false)", qname(srq));
    if (rc) return 1;
    CHECK(ibstack_stack_fd(s) >= 0, "server: ibstack_stack_fd gives an fd (%d)", ibstack_stack_fd(s));
    ibstack_mem_stats base = stack_mem(s);
    ibstack_listener *l;
    rc = listen_and_announce(s, &l, out);
    CHECK_RC(rc, 0, "server: listening");
    if (rc) return 1;
    conn_result res;
    int clean = echo_serve(s, 1, l, 1, 120, 20, &res);
    CHECK(clean == 1 && res.mismatches == 0, "server: echoed one connection by polling the stack itself (%llu bytes)",
          (unsigned long long)res.bytes);
    ibstack_listener_free(l);
    check_teardown("server", s, 1, &base);
    ibstack_stack_free(s);
    return exit_code();
}

static void mode_hostdriven(int srq) {
    pat_init();
    child ch;
    CHECK_RC(spawn(&ch, hostdriven_child, &srq), 0, "server process started");
    uint16_t port = 0;
    int rc = read_all(ch.from_child, &port, 2, 60);
    CHECK(rc == 0, "server announced its port %u", port);
    if (rc) return;
    ibstack_stack *s;
    rc = stack_open(&s, srq, hd_extra);
    CHECK_RC(rc, 0, "client: host-driven stack created");
    if (rc) return;
    int sfd = ibstack_stack_fd(s);
    CHECK(sfd >= 0, "client: ibstack_stack_fd gives an fd (%d)", sfd);
    ibstack_mem_stats base = stack_mem(s);
    echo_client e = {.seed = 66, .total = 1 * MIB};
    CHECK_RC(ibstack_connect(s, TEST_IP, port, &e.c), 0, "client: connection started");
    if (!e.c) return;
    usleep(300 * 1000);
    CHECK_RC(ibstack_conn_is_connected(e.c), 0, "client: without ibstack_stack_poll the handshake does not advance (300 ms)");
    double t0 = now_s();
    int fin = run_clients(s, 1, &e, 1, 120, 20);
    CHECK(fin == 1 && e.mismatches == 0 && csum_value(&e.sent_sum) == csum_value(&e.rcvd_sum),
          "client: round trip of %llu bytes driven by epoll on ibstack_stack_fd + ibstack_stack_poll (%.2f s)",
          (unsigned long long)e.rcvd, now_s() - t0);
    ibstack_conn_close(e.c);
    check_teardown("client", s, 1, &base);
    check_child(&ch, "server", 60);
    ibstack_stack_free(s);
}

/* ------------------------------------------------------------------ logcb */

static ibstack_conn *volatile logcb_conn;
static ibstack_stack *volatile logcb_stack;
static long logcb_records, logcb_reentries;

static void logcb_cb(void *ud, int level, const char *target, size_t tlen, const char *msg, size_t mlen) {
    (void)ud; (void)level; (void)target; (void)tlen; (void)msg; (void)mlen;
    __atomic_add_fetch(&logcb_records, 1, __ATOMIC_RELAXED);
    ibstack_conn *c = logcb_conn;
    ibstack_stack *s = logcb_stack;
    if (c) {
        char buf[256];
        (void)ibstack_conn_is_connected(c);
        (void)ibstack_conn_error_message(c, buf, sizeof buf);
        (void)ibstack_conn_send(c, buf, 0);
        (void)ibstack_conn_qp_num(c);
        __atomic_add_fetch(&logcb_reentries, 1, __ATOMIC_RELAXED);
    }
    if (s) {
        ibstack_counters k;
        (void)ibstack_stack_counters(s, &k);
        (void)ibstack_stack_conn_count(s);
    }
}

static void logcb_alarm(int sig) {
    (void)sig;
    static const char m[] = "not ok - logcb: no progress in 100 s (a log callback that calls the library deadlocked)\n";
    if (write(1, m, sizeof m - 1) < 0) _exit(3);
    _exit(1);
}

static void mode_logcb(int srq) {
    pat_init();
    child ch;
    CHECK_RC(spawn(&ch, hostdriven_child, &srq), 0, "server process started");
    uint16_t port = 0;
    int rc = read_all(ch.from_child, &port, 2, 60);
    CHECK(rc == 0, "server announced its port %u", port);
    if (rc) return;
    signal(SIGALRM, logcb_alarm);
    alarm(100);
    CHECK_RC(ibstack_set_log_callback(logcb_cb, NULL, 5), 0, "trace-level callback installed");
    ibstack_stack *s;
    rc = stack_open(&s, srq, NULL);
    CHECK_RC(rc, 0, "client: stack with its polling thread created");
    if (rc) return;
    logcb_stack = s;
    echo_client e = {.seed = 67, .total = 1 * MIB};
    CHECK_RC(ibstack_connect(s, TEST_IP, port, &e.c), 0, "client: connection started");
    if (!e.c) return;
    logcb_conn = e.c;
    double t0 = now_s();
    int fin = run_clients(s, 0, &e, 1, 90, 20);
    CHECK(fin == 1 && e.mismatches == 0 && csum_value(&e.sent_sum) == csum_value(&e.rcvd_sum),
          "client: round trip of %llu bytes while the callback re-enters on every record (%.2f s)",
          (unsigned long long)e.rcvd, now_s() - t0);
    printf("# saw: %ld records, %ld callbacks called the connection back\n", logcb_records, logcb_reentries);
    CHECK(logcb_reentries > 0, "the callback ran with the connection set (%ld times)", logcb_reentries);
    logcb_conn = NULL;
    ibstack_conn_close(e.c);
    wait_torn_down(s, 0, 30);
    logcb_stack = NULL;
    CHECK_RC(ibstack_set_log_callback(NULL, NULL, 0), 0, "callback detached");
    alarm(0);
    check_child(&ch, "server", 60);
    ibstack_stack_free(s);
}

/* ================================================================== gid_select = auto */

#define GID_IP_B "10.99.2.1"

/* the index of rxe0 port 1's RoCE v2 GID ending in `suffix` (e.g. "ffff:0a63:0201"), or -1 */
static int sysfs_gid_index(const char *suffix) {
    for (int i = 0; i < 16; i++) {
        char path[128], gid[128] = "", type[64] = "";
        snprintf(path, sizeof path, "/sys/class/infiniband/rxe0/ports/1/gids/%d", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        int ok = fgets(gid, sizeof gid, f) != NULL;
        fclose(f);
        snprintf(path, sizeof path, "/sys/class/infiniband/rxe0/ports/1/gid_attrs/types/%d", i);
        if (ok && (f = fopen(path, "r"))) {
            ok = fgets(type, sizeof type, f) && strstr(type, "v2");
            fclose(f);
        }
        if (ok && strstr(gid, suffix)) return i;
    }
    return -1;
}

static const char *gidauto_extra[] = {"ibstack_gid_select", "auto", "ms_async_rdma_gid_idx", "0", NULL};

/* echoes one connection until the peer closes (-ECONNRESET after its data); 0 when clean */
static int echo_until_close(ibstack_conn *c) {
    static uint8_t buf[65536];
    for (double end = now_s() + 60; now_s() < end;) {
        ptrdiff_t r = ibstack_conn_recv(c, buf, sizeof buf);
        if (r == -ECONNRESET) return 0;
        if (r == -EAGAIN) {
            struct pollfd p = {.fd = ibstack_conn_fd(c), .events = POLLIN};
            poll(&p, 1, 20);
            continue;
        }
        if (r < 0) return (int)r;
        for (ptrdiff_t off = 0; off < r;) {
            ptrdiff_t w = ibstack_conn_send(c, buf + off, (size_t)(r - off));
            if (w == -EAGAIN) {
                struct pollfd p = {.fd = ibstack_conn_fd(c), .events = POLLIN};
                poll(&p, 1, 20);
                ibstack_conn_recv(c, NULL, 0);
                continue;
            }
            if (w < 0) return (int)w;
            off += w;
        }
    }
    return -ETIMEDOUT;
}

/* the server: accepts connections one by one; for each, reports (gid index, echo result) */
static int gidauto_child(int in, int out, void *arg) {
    int srq = *(int *)arg;
    (void)in;
    ibstack_stack *s;
    int rc = stack_open(&s, srq, gidauto_extra);
    CHECK_RC(rc, 0, "server: stack with ibstack_gid_select = auto (%s)", qname(srq));
    if (rc) return 1;
    ibstack_listener *l;
    rc = ibstack_listen(s, "0.0.0.0", 0, &l);
    CHECK_RC(rc, 0, "server: listening on 0.0.0.0");
    if (rc) return 1;
    uint16_t port = (uint16_t)ibstack_listener_port(l);
    write_all(out, &port, 2);
    for (;;) {
        ibstack_conn *c = NULL;
        int r = accept_wait(s, 0, l, 60, &c);
        int32_t rep[2] = {r, 0};
        if (r == -EADDRNOTAVAIL) {
            const char *m = h_last_error();
            CHECK(strstr(m, "127.0.0.1") && strstr(m, GID_IP_B) && strstr(m, "10.99.0.1"),
                  "server: the loopback client's accept fails naming its address and the candidates: \"%s\"", m);
            write_all(out, rep, sizeof rep);
            break;
        }
        if (r) {
            CHECK_RC(r, 0, "server: accept");
            write_all(out, rep, sizeof rep);
            break;
        }
        rep[0] = ibstack_conn_gid_index(c);
        rep[1] = conn_wait_connected(s, 0, c, 10) == 1 ? echo_until_close(c) : -ENOTCONN;
        write_all(out, rep, sizeof rep);
        ibstack_conn_close(c);
    }
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    return exit_code();
}

/* sends `n` bytes of pattern `seed` and reads them back; 0 when they all came back intact */
static int roundtrip(ibstack_stack *s, ibstack_conn *c, uint32_t seed, size_t n) {
    static uint8_t back[65536];
    if (conn_wait_connected(s, 0, c, 10) != 1) return -ENOTCONN;
    size_t sent = 0, got = 0;
    for (double end = now_s() + 60; got < n && now_s() < end;) {
        if (sent < n) {
            size_t k = n - sent < 32768 ? n - sent : 32768;
            ptrdiff_t w = ibstack_conn_send(c, pat_at(seed, sent), k);
            if (w > 0) sent += (size_t)w;
            else if (w != -EAGAIN) return (int)w;
        }
        ptrdiff_t r = ibstack_conn_recv(c, back, sizeof back);
        if (r > 0) {
            if (memcmp(back, pat_at(seed, got), (size_t)r)) return -EILSEQ;
            got += (size_t)r;
        } else if (r != -EAGAIN) {
            return (int)r;
        } else {
            struct pollfd p = {.fd = ibstack_conn_fd(c), .events = POLLIN};
            poll(&p, 1, 5);
        }
    }
    return got == n ? 0 : -ETIMEDOUT;
}

/* one connection to ip:port from `s`: its gid index on both ends, and the data intact */
static void gidauto_conn(ibstack_stack *s, child *ch, const char *ip, uint16_t port, int want, const char *what) {
    ibstack_conn *c = NULL;
    int rc = ibstack_connect(s, ip, port, &c);
    CHECK_RC(rc, 0, "%s: connect to %s", what, ip);
    if (rc) return;
    int gi = ibstack_conn_gid_index(c);
    CHECK(gi == want, "%s: the client's connection uses GID index %d (want %d, the RoCE v2 GID of its local address)", what, gi, want);
    rc = roundtrip(s, c, (uint32_t)port + (uint32_t)want, 1 * MIB);
    CHECK_RC(rc, 0, "%s: 1 MiB echoed back intact (%s)", what, rc ? conn_msg(c) : "");
    ibstack_conn_close(c);
    int32_t rep[2] = {-1, -1};
    CHECK(read_all(ch->from_child, rep, sizeof rep, 60) == 0, "%s: the server reported", what);
    CHECK(rep[0] == want, "%s: the server's accepted connection uses GID index %d (want %d)", what, rep[0], want);
    CHECK_RC(rep[1], 0, "%s: the server echoed until the close", what);
}

static void mode_gidauto(int srq) {
    if (access("/etc/rxe-vm.cmd", F_OK) != 0) {
        CHECK(0, "gidauto adds an address to d0: it runs only inside scripts/rxe-vm's guest (no /etc/rxe-vm.cmd)");
        return;
    }
    system("/usr/bin/ip addr add " GID_IP_B "/24 dev d0 2>/dev/null");
    int ia = sysfs_gid_index("ffff:0a63:0001"), ib = -1;
    for (double end = now_s() + 10; ib < 0 && now_s() < end; usleep(50000)) ib = sysfs_gid_index("ffff:0a63:0201");
    CHECK(ia > 0 && ib > 0 && ia != ib, "rxe0 has RoCE v2 GIDs for 10.99.0.1 (index %d) and " GID_IP_B " (index %d)", ia, ib);
    if (ia <= 0 || ib <= 0) return;
    pat_init();
    child ch;
    CHECK_RC(spawn(&ch, gidauto_child, &srq), 0, "server process started");
    uint16_t port = 0;
    if (read_all(ch.from_child, &port, 2, 60)) {
        CHECK(0, "server announced its port");
        return;
    }
    ibstack_stack *s;
    int rc = stack_open(&s, srq, gidauto_extra);
    CHECK_RC(rc, 0, "client: stack with ibstack_gid_select = auto and ms_async_rdma_gid_idx = 0");
    if (rc) return;
    gidauto_conn(s, &ch, GID_IP_B, port, ib, "auto -> " GID_IP_B);
    gidauto_conn(s, &ch, "10.99.0.1", port, ia, "auto -> 10.99.0.1");
    /* from loopback, to a plain listener of this process (the server must not see it) */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t ll = sizeof la;
    CHECK(lfd >= 0 && !bind(lfd, (struct sockaddr *)&la, sizeof la) && !listen(lfd, 4) &&
              !getsockname(lfd, (struct sockaddr *)&la, &ll),
          "a plain TCP listener on 127.0.0.1");
    ibstack_conn *c = NULL;
    rc = ibstack_connect(s, "127.0.0.1", ntohs(la.sin_port), &c);
    CHECK_RC(rc, -EADDRNOTAVAIL, "client: a connection from 127.0.0.1 is refused");
    CHECK_MSG_HAS("local address 127.0.0.1", "client: the message names the address");
    CHECK_MSG_HAS(GID_IP_B, "client: the message names the candidates");
    if (lfd >= 0) close(lfd);
    ibstack_stack_free(s);
    /* a client of ms_async_rdma_gid_idx (Ceph's rule) meets the auto server */
    const char *idx_extra[] = {"ibstack_gid_select", "index", NULL};
    rc = stack_open(&s, srq, idx_extra);
    CHECK_RC(rc, 0, "client: stack with ibstack_gid_select = index (ms_async_rdma_gid_idx 1)");
    if (rc) return;
    gidauto_conn(s, &ch, "10.99.0.1", port, 1, "index -> 10.99.0.1");
    ibstack_stack_free(s);
    /* a plain TCP client from loopback: the server's accept names the cause */
    int fd = tcp_connect_ip("127.0.0.1", port);
    CHECK(fd >= 0, "plain TCP client connected from 127.0.0.1");
    int32_t rep[2] = {0, 0};
    CHECK(read_all(ch.from_child, rep, sizeof rep, 60) == 0 && rep[0] == -EADDRNOTAVAIL,
          "server: that accept returned -EADDRNOTAVAIL (%d)", rep[0]);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char b[8];
    CHECK(poll(&p, 1, 5000) == 1 && read(fd, b, sizeof b) <= 0, "the refused client's socket is closed by the server");
    close(fd);
    check_child(&ch, "server", 60);
    system("/usr/bin/ip addr del " GID_IP_B "/24 dev d0");
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "srq") && strcmp(argv[2], "nosrq"))) {
        fprintf(stderr,
                "usage: %s echo srq|nosrq CONNS [BYTES] | backpressure|race|banner|hostdriven|logcb|gidauto srq|nosrq |"
                " close srq|nosrq connector|acceptor\n",
                argv[0]);
        return 2;
    }
    int srq = strcmp(argv[2], "srq") == 0;
    const char *m = argv[1];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    double t0 = now_s();
    if (!strcmp(m, "echo") && argc >= 4) {
        int n = atoi(argv[3]);
        if (n < 1 || n > MAX_CONNS) return 2;
        mode_echo(srq, n, argc >= 5 ? strtoull(argv[4], NULL, 0) : ECHO_TOTAL);
    } else if (!strcmp(m, "backpressure")) {
        mode_backpressure(srq);
    } else if (!strcmp(m, "close") && argc >= 4 && (!strcmp(argv[3], "connector") || !strcmp(argv[3], "acceptor"))) {
        mode_close(srq, !strcmp(argv[3], "acceptor"));
    } else if (!strcmp(m, "race")) {
        mode_race(srq);
    } else if (!strcmp(m, "banner")) {
        mode_banner(srq);
    } else if (!strcmp(m, "hostdriven")) {
        mode_hostdriven(srq);
    } else if (!strcmp(m, "logcb")) {
        mode_logcb(srq);
    } else if (!strcmp(m, "gidauto")) {
        mode_gidauto(srq);
    } else {
        fprintf(stderr, "%s: unknown mode\n", argv[0]);
        return 2;
    }
    printf("# timing: mode %s %s took %.1f s\n", m, argv[2], now_s() - t0);
    DONE();
}
