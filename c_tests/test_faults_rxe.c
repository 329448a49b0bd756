/* Hostile peers, careless callers, dying links: run in the Soft-RoCE VM. Each scenario
 * prints what the application saw and how long it took ("# saw: ...").
 *   test_faults_rxe deadlines srq|nosrq   host-driven stack (ibstack_stack_thread=false) that
 *                                         only sleeps in epoll: a SIGKILLed peer is reported,
 *                                         a connection closed while its EOF is undecided is
 *                                         retired, both without any other activity
 *   test_faults_rxe handshake srq|nosrq   silent and trickling (1 byte / 200 ms) TCP peers are
 *                                         failed at ibstack_handshake_timeout_ms, the listener
 *                                         keeps serving; a level-triggered poll() on the fd of
 *                                         a stalled handshake does not spin */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "conn_util.h"
#pragma GCC diagnostic pop

static const char *qname(int srq) { return srq ? "SRQ" : "per-QP RQ"; }

static int exit_code(void) {
    fflush(stdout);
    return h_failed ? 1 : 0;
}

static void check_child_exit(child *c, const char *who, double secs) {
    int st = child_wait(c, secs);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s process exited cleanly (status %d)", who, st);
    close(c->to_child);
    close(c->from_child);
}

/* ------------------------------------------------------------------ a simple peer process */

/* A threaded-stack peer: listens, announces its port, accepts one connection, sends
 * `greet` bytes of stream 5, then echoes until the parent's pipe closes (or it is killed). */
struct peer_args {
    int srq;
    uint32_t greet;
    const char *const *extra;
};

static int peer_child(int in, int out, void *arg) {
    struct peer_args *a = arg;
    ibstack_stack *s;
    int rc = stack_open(&s, a->srq, a->extra);
    if (rc) {
        printf("# peer: stack_open %d: %s\n", rc, h_last_error());
        return 1;
    }
    ibstack_listener *l;
    if (listen_and_announce(s, &l, out)) return 1;
    ibstack_conn *c;
    if (accept_wait(s, 0, l, 30, &c)) return 1;
    if (conn_wait_connected(s, 0, c, 30) != 1) return 1;
    uint64_t sent = 0;
    while (sent < a->greet) {
        ssize_t k = ibstack_conn_send(c, pat_at(5, sent), a->greet - sent);
        if (k == -EAGAIN) {
            usleep(1000);
            continue;
        }
        if (k <= 0) return 1;
        sent += (uint64_t)k;
    }
    uint8_t buf[4096];
    for (;;) {
        struct pollfd p[2] = {{.fd = in, .events = POLLIN}, {.fd = ibstack_conn_fd(c), .events = POLLIN}};
        poll(p, 2, 100);
        if (p[0].revents) break;
        ssize_t n = ibstack_conn_recv(c, buf, sizeof buf);
        if (n > 0) ibstack_conn_send(c, buf, (size_t)n);
        else if (n != -EAGAIN) break;
    }
    ibstack_conn_close(c);
    ibstack_listener_free(l);
    wait_torn_down(s, 0, 5);
    ibstack_stack_free(s);
    return 0;
}

/* Sleeps in epoll on the stack's fd and the connection's fd (host-driven: the stack's fd
 * level-triggered, ibstack_stack_poll on each wake-up) until recv reports something other
 * than -EAGAIN or `secs` pass. Returns recv's result; *wakeups counts epoll returns. */
static ssize_t hd_wait_error(ibstack_stack *s, ibstack_conn *c, double secs, int *wakeups) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 1};
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_stack_fd(s), &ev);
    ev.data.u32 = 2;
    ev.events = EPOLLIN | EPOLLET;
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(c), &ev);
    double end = now_s() + secs;
    uint8_t buf[4096];
    ssize_t n = -EAGAIN;
    *wakeups = 0;
    hd_poll(s);
    while (now_s() < end) {
        while ((n = ibstack_conn_recv(c, buf, sizeof buf)) > 0) {
        }
        if (n != -EAGAIN) break;
        int left = (int)((end - now_s()) * 1000) + 1;
        int k = epoll_wait(ep, &ev, 1, hd_timeout(1, left));
        if (k > 0) ++*wakeups;
        if (k > 0 || hd_busy) hd_poll(s);
    }
    close(ep);
    return n;
}

/* ================================================================== deadlines (A) */

static const char *hd_extra[] = {"ibstack_stack_thread", "false", NULL};

/* starts a peer, connects from the host-driven stack `s`, reads the greeting */
static ibstack_conn *hd_connect_peer(ibstack_stack *s, child *ch, struct peer_args *pa, const char *who) {
    if (spawn(ch, peer_child, pa)) return NULL;
    uint16_t port = 0;
    if (read_all(ch->from_child, &port, 2, 60)) {
        CHECK(0, "%s: the peer announced its port", who);
        return NULL;
    }
    ibstack_conn *c = NULL;
    int rc = ibstack_connect(s, TEST_IP, port, &c);
    CHECK_RC(rc, 0, "%s: connection started", who);
    if (rc) return NULL;
    rc = conn_wait_connected(s, 1, c, 30);
    CHECK_RC(rc, 1, "%s: connected by epoll + ibstack_stack_poll", who);
    uint8_t buf[4096];
    uint64_t got = 0;
    double end = now_s() + 20;
    while (got < pa->greet && now_s() < end) {
        ssize_t n = ibstack_conn_recv(c, buf, sizeof buf);
        if (n > 0) {
            if (memcmp(buf, pat_at(5, got), (size_t)n)) printf("# %s: greeting differs at %llu\n", who, (unsigned long long)got);
            got += (uint64_t)n;
        } else if (n == -EAGAIN) {
            stack_service(s, 1, 10);
        } else {
            break;
        }
    }
    CHECK(got == pa->greet, "%s: read the peer's %u-byte greeting (%llu)", who, pa->greet, (unsigned long long)got);
    return c;
}

static void mode_deadlines(int srq) {
    pat_init();
    ibstack_stack *s;
    int rc = stack_open(&s, srq, hd_extra);
    CHECK_RC(rc, 0, "host-driven stack created (%s)", qname(srq));
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    struct peer_args pa = {.srq = srq, .greet = 100000};

    /* 1. the peer is SIGKILLed: its TCP EOF arrives without the close SEND; after the 300 ms
     * grace the connection must fault, although nothing else happens on the stack */
    child ch;
    ibstack_conn *c = hd_connect_peer(s, &ch, &pa, "kill");
    if (!c) return;
    double t0 = now_s();
    kill(ch.pid, SIGKILL);
    int wakeups;
    ssize_t n = hd_wait_error(s, c, 5, &wakeups);
    double dt = now_s() - t0;
    printf("# saw: peer SIGKILLed -> recv %zd (%s) after %.2f s, %d wake-ups: %s\n", n, ibstack_strerror((int)n), dt, wakeups,
           conn_msg(c));
    CHECK(n == -ECONNRESET && dt < 1.5 && strstr(conn_msg(c), "without its close SEND"),
          "kill: a host sleeping in epoll sees the SIGKILLed peer's error within 1.5 s (%.2f s, rc %zd)", dt, n);
    child_wait(&ch, 5);
    close(ch.to_child);
    close(ch.from_child);
    t0 = now_s();
    ibstack_conn_close(c);
    int qps = wait_torn_down(s, 1, 5);
    CHECK(qps == 0 && ibstack_stack_conn_count(s) == 0, "kill: the faulted connection is retired after close (%.2f s)", now_s() - t0);

    /* 2. the peer is SIGKILLed and the host closes the connection while the EOF is still within
     * its grace period: the close SEND is never acknowledged (the peer QP is gone), so only the
     * EOF deadline retires it; the host does nothing but sleep in epoll on the stack's fd */
    c = hd_connect_peer(s, &ch, &pa, "close");
    if (!c) return;
    kill(ch.pid, SIGKILL);
    waitpid(ch.pid, NULL, 0);
    close(ch.to_child);
    close(ch.from_child);
    /* let the stack take in the TCP EOF (not its verdict: that needs 300 ms) */
    double until = now_s() + 0.08;
    while (now_s() < until) stack_service(s, 1, 5);
    CHECK_RC(ibstack_conn_is_connected(c), 1, "close: 80 ms after the kill the connection is not failed yet (EOF grace)");
    t0 = now_s();
    ibstack_conn_close(c);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_stack_fd(s), &ev);
    hd_poll(s);
    wakeups = 0;
    while (ibstack_stack_conn_count(s) > 0 && now_s() - t0 < 5) {
        /* no timeout-driven polling: only the stack's fd (or its busy window) calls poll */
        int k = epoll_wait(ep, &ev, 1, hd_timeout(1, 5000));
        if (k > 0) wakeups++;
        if (k > 0 || hd_busy) hd_poll(s);
    }
    close(ep);
    dt = now_s() - t0;
    printf("# saw: closed during the EOF grace -> conn_count %d after %.2f s, %d wake-ups\n", ibstack_stack_conn_count(s), dt, wakeups);
    CHECK(ibstack_stack_conn_count(s) == 0 && dt < 1.5,
          "close: the closing connection is retired within 1.5 s by the stack's timer alone (%.2f s, conn_count %d)", dt,
          ibstack_stack_conn_count(s));
    check_teardown("deadlines", s, 1, &base);
    ibstack_stack_free(s);
}

/* ================================================================== handshake (B) */

/* a plain TCP listener on TEST_IP (ephemeral port) */
static int raw_listen(uint16_t *port) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, TEST_IP, &a.sin_addr);
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 64) || getsockname(l, (struct sockaddr *)&a, &len)) return -1;
    *port = ntohs(a.sin_port);
    return l;
}

/* the acceptor side of an echo of `bytes` (checked) with a threaded peer process */
struct echo_peer_args {
    int srq;
    uint16_t port;
    uint64_t bytes;
};

static int echo_connector_child(int in, int out, void *arg) {
    struct echo_peer_args *a = arg;
    (void)in;
    (void)out;
    ibstack_stack *s;
    if (stack_open(&s, a->srq, NULL)) return 1;
    echo_client e = {.seed = 9, .total = a->bytes};
    if (ibstack_connect(s, TEST_IP, a->port, &e.c)) return 1;
    int fin = run_clients(s, 0, &e, 1, 60, 20);
    int ok = fin == 1 && e.mismatches == 0 && csum_value(&e.sent_sum) == csum_value(&e.rcvd_sum);
    if (!ok) printf("# echo connector: fin %d mismatches %llu\n", fin, (unsigned long long)e.mismatches);
    ibstack_conn_close(e.c);
    wait_torn_down(s, 0, 5);
    ibstack_stack_free(s);
    return ok ? 0 : 1;
}

#define SILENT 10

static void mode_handshake(int srq) {
    pat_init();
    /* without SRQ each connection posts receive_queue_len (128) buffers: 1024 receive buffers
     * hold 8 connections, so 10 silent peers exhaust the pool unless the deadline frees them */
    const char *extra[] = {"ibstack_handshake_timeout_ms", "1500", "ms_async_rdma_receive_buffers", "1024", NULL};
    ibstack_stack *s;
    int rc = stack_open(&s, srq, extra);
    if (rc == -EINVAL && strstr(h_last_error(), "ibstack_handshake_timeout_ms")) {
        /* a library without the option: run the scenario anyway to show what it does then */
        printf("# this library has no ibstack_handshake_timeout_ms: %s\n", h_last_error());
        rc = stack_open(&s, srq, extra + 2);
    }
    CHECK_RC(rc, 0, "stack created (%s, handshake timeout 1500 ms, 1024 receive buffers)", qname(srq));
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_listener *l;
    rc = ibstack_listen(s, TEST_IP, 0, &l);
    CHECK_RC(rc, 0, "listening");
    if (rc) return;
    uint16_t port = (uint16_t)ibstack_listener_port(l);

    /* 1. SILENT silent TCP peers and one trickling a valid-looking record prefix */
    int raw[SILENT + 1];
    ibstack_conn *acc[SILENT + 1];
    int naccepted = 0;
    double t0 = now_s();
    for (int i = 0; i <= SILENT; i++) raw[i] = tcp_connect_ip(TEST_IP, port);
    const char *prefix = "0000:00000011:00000000:00000000:";
    size_t trickled = 0;
    double next_byte = now_s();
    int accept_err = 0, nobufs = 0;
    while (now_s() - t0 < 1.0) {
        ibstack_conn *c;
        int r = ibstack_accept(l, &c);
        if (r == 0 && naccepted <= SILENT) acc[naccepted++] = c;
        else if (r == -ENOBUFS) nobufs++;
        if (r != 0 && r != -EAGAIN && !accept_err) {
            accept_err = r;
            printf("# accept: %d (%s): %s\n", r, ibstack_strerror(r), h_last_error());
        }
        if (now_s() >= next_byte && trickled < strlen(prefix)) {
            if (write(raw[0], prefix + trickled, 1) == 1) trickled++;
            next_byte += 0.2;
        }
        usleep(10000);
    }
    /* without SRQ the pool holds 8 connections' receive queues: the rest are refused at accept
     * (-ENOBUFS, their TCP socket closed) until the deadline frees the stalled ones */
    printf("# saw: %d silent + 1 trickling TCP peers -> %d accepted, %d refused at accept with -ENOBUFS\n", SILENT, naccepted, nobufs);
    CHECK(naccepted >= (srq ? SILENT + 1 : 8) && naccepted + nobufs == SILENT + 1,
          "%d silent + 1 trickling TCP peers: %d accepted, %d refused with -ENOBUFS (pool full)", SILENT, naccepted, nobufs);
    int timed_out = 0, named = 0;
    double last_fault = 0;
    while (now_s() - t0 < 6 && timed_out < naccepted) {
        timed_out = 0;
        named = 0;
        for (int i = 0; i < naccepted; i++) {
            int r = ibstack_conn_is_connected(acc[i]);
            if (r == -ETIMEDOUT) {
                timed_out++;
                named += strstr(conn_msg(acc[i]), "waiting for the connector's record #1") != NULL &&
                         strstr(conn_msg(acc[i]), "ibstack_handshake_timeout_ms") != NULL;
            }
        }
        if (now_s() >= next_byte && trickled < strlen(prefix)) {
            if (write(raw[0], prefix + trickled, 1) == 1) trickled++;
            next_byte += 0.2;
        }
        last_fault = now_s() - t0;
        usleep(20000);
    }
    printf("# saw: %d of %d stalled handshakes -> -ETIMEDOUT after %.2f s\n", timed_out, naccepted, last_fault);
    if (naccepted) printf("# saw: the trickler: \"%s\"\n", conn_msg(acc[0]));
    if (naccepted > 1) printf("# saw: a silent one: \"%s\"\n", conn_msg(acc[naccepted - 1]));
    CHECK(naccepted && strstr(conn_msg(acc[0]), "(0 of 65") == NULL, "the trickling peer's timeout reports the bytes it got (%zu sent)", trickled);
    CHECK(timed_out == naccepted && named == naccepted && last_fault > 1.3 && last_fault < 3.0,
          "every stalled handshake failed with -ETIMEDOUT naming the stage and the option, at the deadline (%d/%d, %.2f s)",
          named, naccepted, last_fault);
    int refused = 0;
    for (int i = 0; i <= SILENT; i++) {
        char b;
        struct pollfd p = {.fd = raw[i], .events = POLLIN};
        if (raw[i] >= 0 && poll(&p, 1, 1000) == 1 && read(raw[i], &b, 1) <= 0) refused++;
        if (raw[i] >= 0) close(raw[i]);
    }
    CHECK(refused == SILENT + 1, "the stalled TCP peers saw their connection shut down (%d of %d)", refused, SILENT + 1);
    for (int i = 0; i < naccepted; i++) ibstack_conn_close(acc[i]);
    int qps = wait_torn_down(s, 0, 5);
    CHECK(qps == 0, "the failed handshakes' QPs are gone once closed (qps %d)", qps);

    /* 2. the listener keeps serving: a real connection echoes 4 MiB */
    child ch;
    struct echo_peer_args ea = {.srq = srq, .port = port, .bytes = 4 * MIB};
    CHECK_RC(spawn(&ch, echo_connector_child, &ea), 0, "real connector process started");
    ibstack_conn *c = NULL;
    rc = accept_wait(s, 0, l, 20, &c);
    CHECK_RC(rc, 0, "the listener accepts a real connection after the flood");
    if (!rc) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        echo_peer p = {.c = c, .buf = malloc(ECHO_BUF)};
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
        epoll_ctl(ep, EPOLL_CTL_ADD, ibstack_conn_fd(c), &ev);
        double end = now_s() + 60;
        int pr = 0;
        while (!(pr = echo_progress(&p)) && now_s() < end) epoll_wait(ep, &ev, 1, 100);
        CHECK(pr == 1 && p.in == 4 * MIB && p.out == p.in, "the real connection echoed %llu bytes to its end of stream",
              (unsigned long long)p.in);
        ibstack_conn_close(c);
        free(p.buf);
        close(ep);
    }
    check_child_exit(&ch, "real connector", 60);

    /* 3. a level-triggered poll() on the fd of a handshake stalled at a silent peer: it must
     * not return readable over and over (count wake-ups over 1 s), then fires for the timeout */
    int rl = raw_listen(&port);
    CHECK(rl >= 0, "a silent plain-TCP listener on port %u", port);
    c = NULL;
    rc = ibstack_connect(s, TEST_IP, port, &c);
    CHECK_RC(rc, 0, "ibstack_connect to the silent listener");
    if (!rc) {
        int fd = ibstack_conn_fd(c);
        int wake = 0;
        t0 = now_s();
        while (now_s() - t0 < 1.0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 100) == 1) {
                wake++;
                uint8_t b[16];
                ibstack_conn_recv(c, b, sizeof b);
                ibstack_conn_is_connected(c);
            }
        }
        printf("# saw: level-triggered poll() on a stalled handshake's fd -> %d wake-ups in 1 s\n", wake);
        CHECK(wake <= 3, "a level-triggered poll() on a stalled handshake's fd does not spin (%d wake-ups in 1 s)", wake);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 3000);
        int r = ibstack_conn_is_connected(c);
        printf("# saw: connector to a silent acceptor -> %d (%s) after %.2f s: %s\n", r, ibstack_strerror(r), now_s() - t0,
               conn_msg(c));
        CHECK(pr == 1 && r == -ETIMEDOUT && strstr(conn_msg(c), "waiting for the acceptor's record #2"),
              "the fd fires for the connector's handshake timeout, -ETIMEDOUT naming the stage (%.2f s)", now_s() - t0);
        ibstack_conn_close(c);
    }
    if (rl >= 0) close(rl);
    ibstack_listener_free(l);
    check_teardown("handshake", s, 0, &base);
    ibstack_stack_free(s);
}

/* ================================================================== keepalive (D) */

/* An idle connection whose peer host vanished without a FIN: all loopback
 * traffic is dropped (netem loss 100% on lo; the RDMA path is untouched) and
 * only the side channel's TCP keepalive can notice. With
 * ibstack_tcp_keepalive = 1 (probes after 1 s idle, 3 probes 1 s apart) both
 * ends must fault within a few seconds; with keepalive off, nothing does. */
static void keepalive_case(int srq, const char *ka, double wait_s) {
    const char *extra[] = {"ibstack_stack_thread", "false", "ibstack_tcp_keepalive", ka, NULL};
    ibstack_stack *s = NULL;
    CHECK_RC(stack_open(&s, srq, extra), 0, "keepalive %s s: host-driven stack (%s)", ka, qname(srq));
    if (!s) return;
    ibstack_listener *l = NULL;
    ibstack_conn *c = NULL, *a = NULL;
    CHECK_RC(ibstack_listen(s, TEST_IP, 0, &l), 0, "listener");
    CHECK_RC(ibstack_connect(s, TEST_IP, (uint16_t)ibstack_listener_port(l), &c), 0, "connect");
    CHECK_RC(accept_wait(s, 1, l, 10, &a), 0, "accept");
    CHECK(conn_wait_connected(s, 1, c, 10) == 1 && conn_wait_connected(s, 1, a, 10) == 1, "connected");
    CHECK(system("/usr/sbin/tc qdisc add dev lo root netem loss 100%") == 0, "all loopback traffic dropped from now on");
    double t0 = now_s(), tc = -1, ta = -1;
    while (now_s() < t0 + wait_s && (tc < 0 || ta < 0)) {
        stack_service(s, 1, 20);
        if (tc < 0 && ibstack_conn_is_connected(c) < 0) tc = now_s() - t0;
        if (ta < 0 && ibstack_conn_is_connected(a) < 0) ta = now_s() - t0;
    }
    CHECK(system("/usr/sbin/tc qdisc del dev lo root") == 0, "loopback traffic restored");
    if (strcmp(ka, "0")) {
        CHECK(tc >= 0 && ta >= 0, "keepalive %s s: both ends of the idle connection faulted (connector after %.1f s, acceptor after %.1f s)",
              ka, tc, ta);
        CHECK(tc < 12 && ta < 12, "within about three keepalive periods plus the probes");
        printf("# keepalive %s s: the application saw: %s\n", ka, conn_msg(c));
        CHECK(strstr(conn_msg(c), "TCP side channel") != NULL, "the error names the TCP side channel");
    } else {
        CHECK(tc < 0 && ta < 0, "keepalive off: after %.0f s nothing noticed the vanished peer (why the option exists)", wait_s);
    }
    ibstack_conn_close(c);
    ibstack_conn_close(a);
    ibstack_listener_free(l);
    wait_torn_down(s, 1, 15);
    CHECK(ibstack_stack_conn_count(s) == 0, "keepalive %s s: connections retired", ka);
    ibstack_stack_free(s);
}

static void mode_keepalive(int srq) {
    keepalive_case(srq, "0", 6);
    keepalive_case(srq, "1", 15);
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "srq") && strcmp(argv[2], "nosrq"))) {
        fprintf(stderr, "usage: %s deadlines|handshake|keepalive srq|nosrq\n", argv[0]);
        return 2;
    }
    int srq = strcmp(argv[2], "srq") == 0;
    const char *m = argv[1];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    double t0 = now_s();
    if (!strcmp(m, "deadlines")) {
        mode_deadlines(srq);
    } else if (!strcmp(m, "handshake")) {
        mode_handshake(srq);
    } else if (!strcmp(m, "keepalive")) {
        mode_keepalive(srq);
    } else {
        fprintf(stderr, "%s: unknown mode\n", argv[0]);
        return 2;
    }
    printf("# timing: mode %s %s took %.1f s\n", m, argv[2], now_s() - t0);
    (void)exit_code;
    DONE();
}
