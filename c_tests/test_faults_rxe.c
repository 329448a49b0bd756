/* Hostile peers, careless callers, dying links: run in the Soft-RoCE VM. Each scenario
 * prints what the application saw and how long it took ("# saw: ...").
 *   test_faults_rxe deadlines srq|nosrq   host-driven stack (ibstack_stack_thread=false) that
 *                                         only sleeps in epoll: a SIGKILLed peer is reported,
 *                                         a connection closed while its EOF is undecided is
 *                                         retired, both without any other activity
 *   test_faults_rxe handshake srq|nosrq   silent and trickling (1 byte / 200 ms) TCP peers are
 *                                         failed at ibstack_handshake_timeout_ms, the listener
 *                                         keeps serving; a level-triggered poll() on the fd of
 *                                         a stalled handshake does not spin
 *   test_faults_rxe keepalive srq          an idle connection whose peer vanished (lo dropped):
 *                                         only the TCP keepalive notices
 * The next three take a driving mode, thread (default) or host (ibstack_stack_thread=false),
 * and use a veth pair with rxe1/rxe2 on it (set up here; see veth_up) so netem can shape RoCE:
 *   test_faults_rxe netem srq|nosrq [thread|host]      16 MiB checked byte by byte from rxe1 to
 *                                         rxe2 while netem drops 0.1%, then delays 20 ms: all
 *                                         bytes arrive unchanged, the connection stays up
 *   test_faults_rxe blackhole srq|nosrq [thread|host]  two echoing connections, A on rxe1-rxe2,
 *                                         B on rxe0; vA drops everything: A fails with
 *                                         RETRY_EXC_ERR (ibstack_retry_cnt 6) within 20 s, B
 *                                         keeps moving data
 *   test_faults_rxe churn srq|nosrq [thread|host]      1000 connections to a listener process
 *                                         opened, used and closed in a seeded random order
 *                                         (SEED=... replays one): library and kernel counts
 *                                         (rdma resource show) return to their baseline */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "conn_util.h"
#pragma GCC diagnostic pop
#include <stdarg.h>
#include <time.h>

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

/* ================================================================== a shapeable RDMA path */

/* rxe0's traffic between two processes never reaches a qdisc (rxe loops packets for its own
 * GIDs back inside the driver), so the shaped scenarios use a veth pair vA/vB with rxe1 on vA
 * (10.98.0.1) and rxe2 on vB (10.98.0.2); policy routes make the host send traffic for the
 * other end's address out of its own veth end instead of through the local table, so RoCE
 * (and the TCP side channel) from rxe1 to rxe2 leaves through vA, where netem shapes it. */
#define VA_IP "10.98.0.1"
#define VB_IP "10.98.0.2"
#define TC "/usr/sbin/tc"

/* runs a shell command (printf-style); its exit status */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(stdout);
    int st = system(cmd);
    int rc = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (rc) printf("# command failed (%d): %s\n", rc, cmd);
    return rc;
}

static int gid_ready(const char *dev, const char *suffix) {
    char path[128], buf[128] = "";
    snprintf(path, sizeof path, "/sys/class/infiniband/%s/ports/1/gids/1", dev);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(buf, sizeof buf, f) && strstr(buf, suffix);
    fclose(f);
    return ok;
}

/* sets up vA/vB, rxe1, rxe2 (once per VM boot); 0 when both devices have their IPv4 GID */
static int veth_up(void) {
    if (access("/sys/class/infiniband/rxe1", F_OK) != 0) {
        /* it rewrites the routing policy: only inside scripts/rxe-vm's guest */
        if (access("/etc/rxe-vm.cmd", F_OK) != 0) {
            printf("# not in the rxe-vm guest (no /etc/rxe-vm.cmd) and no rxe1: refusing to create vA/vB and change routing here\n");
            return -1;
        }
        int rc = sh("set -e; IP=/usr/bin/ip; $IP link add vA type veth peer name vB; "
                    "$IP addr add " VA_IP "/24 dev vA; $IP addr add " VB_IP "/24 dev vB; $IP link set vA up; $IP link set vB up; "
                    "for i in all default vA vB; do echo 0 > /proc/sys/net/ipv4/conf/$i/rp_filter; "
                    "echo 1 > /proc/sys/net/ipv4/conf/$i/accept_local; done; "
                    "$IP rule add pref 10 iif lo to " VB_IP " lookup 100; $IP rule add pref 11 iif lo to " VA_IP " lookup 101; "
                    "$IP route add " VB_IP " dev vA src " VA_IP " table 100; $IP route add " VA_IP " dev vB src " VB_IP " table 101; "
                    "$IP rule add pref 100 lookup local; $IP rule del pref 0; "
                    "/usr/bin/rdma link add rxe1 type rxe netdev vA; /usr/bin/rdma link add rxe2 type rxe netdev vB");
        if (rc) return rc;
    }
    for (double end = now_s() + 10; now_s() < end; usleep(50000))
        if (gid_ready("rxe1", "ffff:0a62:0001") && gid_ready("rxe2", "ffff:0a62:0002")) return 0;
    printf("# rxe1/rxe2 have no IPv4 GID at index 1\n");
    return -1;
}

/* a figure of `tc -s qdisc show dev DEV`'s first qdisc: "dropped" or "pkt" (packets sent) */
static long long qdisc_stat(const char *dev, const char *what) {
    char cmd[128], line[512];
    snprintf(cmd, sizeof cmd, TC " -s qdisc show dev %s", dev);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    long long sent_b = -1, pkt = -1, dropped = -1;
    while (fgets(line, sizeof line, p))
        if (pkt < 0 && sscanf(line, " Sent %lld bytes %lld pkt (dropped %lld", &sent_b, &pkt, &dropped) == 3) break;
    pclose(p);
    return !strcmp(what, "dropped") ? dropped : pkt;
}

static void qdisc_clear(void) {
    system(TC " qdisc del dev vA root 2>/dev/null; " TC " qdisc del dev vB root 2>/dev/null");
}

/* listens on ip (ephemeral port) and sends the port to out_fd */
static int listen_ip_announce(ibstack_stack *s, const char *ip, ibstack_listener **l, int out_fd) {
    int rc = ibstack_listen(s, ip, 0, l);
    if (rc) return rc;
    uint16_t port = (uint16_t)ibstack_listener_port(*l);
    return write_all(out_fd, &port, sizeof port) ? -EIO : 0;
}

/* the "-o" pairs for a stack on `dev` with the given driving mode (hd) */
#define DEV_EXTRA(dev, hd, ...) \
    { "ms_async_rdma_device_name", dev, "ibstack_stack_thread", (hd) ? "false" : "true", __VA_ARGS__ NULL }

static const char *drive_name(int hd) { return hd ? "host-driven" : "polling thread"; }

/* ================================================================== netem (E) */

#define NETEM_BYTES (32u * MIB)
#define NETEM_SEED 31

struct sink_report {
    uint64_t got, mismatches, first_bad;
    int64_t end_rc;
    double secs;
};

struct sink_args {
    int srq;
    uint64_t bytes;
};

/* rxe2's end: accepts one connection and checks every byte of stream NETEM_SEED; reports,
 * then waits for the parent's pipe to close */
static int sink_child(int in, int out, void *arg) {
    struct sink_args *a = arg;
    const char *extra[] = DEV_EXTRA("rxe2", 0, );
    ibstack_stack *s;
    int rc = stack_open(&s, a->srq, extra);
    if (rc) {
        printf("# sink: stack_open %d: %s\n", rc, h_last_error());
        return 1;
    }
    ibstack_listener *l;
    ibstack_conn *c;
    if (listen_ip_announce(s, VB_IP, &l, out) || accept_wait(s, 0, l, 30, &c) || conn_wait_connected(s, 0, c, 30) != 1) {
        printf("# sink: no connection: %s\n", h_last_error());
        return 1;
    }
    struct sink_report r = {.end_rc = 0};
    uint8_t *buf = malloc(ECHO_BUF);
    double t0 = now_s(), last = t0;
    while (r.got < a->bytes && now_s() - last < 30) {
        ssize_t n = ibstack_conn_recv(c, buf, ECHO_BUF);
        if (n == -EAGAIN) {
            struct pollfd p = {.fd = ibstack_conn_fd(c), .events = POLLIN};
            poll(&p, 1, 50);
            continue;
        }
        if (n <= 0) {
            r.end_rc = n;
            printf("# sink: recv %zd (%s) at %llu: %s\n", n, ibstack_strerror((int)n), (unsigned long long)r.got, conn_msg(c));
            break;
        }
        if (r.got + (uint64_t)n > a->bytes || memcmp(buf, pat_at(NETEM_SEED, r.got), (size_t)n)) {
            if (!r.mismatches) {
                size_t i = 0;
                while (i < (size_t)n && r.got + i < a->bytes && buf[i] == *pat_at(NETEM_SEED, r.got + i)) i++;
                r.first_bad = r.got + i;
            }
            r.mismatches++;
        }
        r.got += (uint64_t)n;
        last = now_s();
    }
    r.secs = now_s() - t0;
    free(buf);
    if (write_all(out, &r, sizeof r)) return 1;
    char b;
    struct pollfd p = {.fd = in, .events = POLLIN};
    poll(&p, 1, 120000);
    (void)!read(in, &b, 1);
    ibstack_conn_close(c);
    ibstack_listener_free(l);
    wait_torn_down(s, 0, 10);
    ibstack_stack_free(s);
    return 0;
}

/* waits for n bytes from fd while keeping a host-driven stack going; 0 or -1 */
static int read_serviced(int fd, void *buf, size_t n, ibstack_stack *s, int hd, double secs) {
    if (!hd) return read_all(fd, buf, n, secs);
    double end = now_s() + secs;
    size_t got = 0;
    hd_poll(s);
    while (got < n && now_s() < end) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = ibstack_stack_fd(s), .events = POLLIN}};
        poll(p, 2, hd_timeout(1, 20));
        if (p[0].revents) {
            ssize_t k = read(fd, (char *)buf + got, n - got);
            if (k <= 0) return -1;
            got += (size_t)k;
        }
        hd_poll(s);
    }
    return got == n ? 0 : -1;
}

static void mode_netem(int srq, int hd) {
    pat_init();
    qdisc_clear();
    CHECK_RC(veth_up(), 0, "veth pair vA/vB with rxe1 and rxe2 up");
    struct sink_args sa = {.srq = srq, .bytes = NETEM_BYTES};
    child ch;
    uint16_t port = 0;
    if (spawn(&ch, sink_child, &sa) || read_all(ch.from_child, &port, 2, 60)) {
        CHECK(0, "netem: the receiving process on rxe2 announced its port");
        return;
    }
    const char *extra[] = DEV_EXTRA("rxe1", hd, );
    ibstack_stack *s;
    int rc = stack_open(&s, srq, extra);
    CHECK_RC(rc, 0, "netem: stack on rxe1 (%s, %s)", qname(srq), drive_name(hd));
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_conn *c = NULL;
    rc = ibstack_connect(s, VB_IP, port, &c);
    CHECK_RC(rc, 0, "netem: connecting rxe1 -> rxe2 (" VB_IP ":%u)", port);
    if (rc) return;
    rc = conn_wait_connected(s, hd, c, 30);
    CHECK_RC(rc, 1, "netem: connected across the veth pair");
    if (rc != 1) return;

    /* phases by bytes handed to the library: clear, loss 0.1% of rxe1's packets (vA) and 2%
     * of rxe2's (vB: acknowledgements only, a few hundred, so 0.1% would rarely hit one), delay
     * 20 ms (vA), clear again */
    const uint64_t at_loss = 2 * MIB, at_delay = 14 * MIB, at_clear = 24 * MIB;
    double t0 = now_s(), t_loss = 0, t_delay = 0, t_clear = 0;
    long long dropped_a = -1, dropped_b = -1, delayed_pkts = -1;
    uint64_t sent = 0;
    int phase = 0, send_err = 0, tc_err = 0;
    while (sent < NETEM_BYTES && now_s() - t0 < 120) {
        if (phase == 0 && sent >= at_loss) {
            tc_err |= sh(TC " qdisc add dev vA root netem loss 0.1%%") | sh(TC " qdisc add dev vB root netem loss 2%%");
            t_loss = now_s();
            phase = 1;
        } else if (phase == 1 && sent >= at_delay) {
            dropped_a = qdisc_stat("vA", "dropped");
            dropped_b = qdisc_stat("vB", "dropped");
            tc_err |= sh(TC " qdisc del dev vB root") | sh(TC " qdisc replace dev vA root netem delay 20ms");
            t_delay = now_s();
            phase = 2;
        } else if (phase == 2 && sent >= at_clear) {
            delayed_pkts = qdisc_stat("vA", "pkt");
            tc_err |= sh(TC " qdisc del dev vA root");
            t_clear = now_s();
            phase = 3;
        }
        size_t len = NETEM_BYTES - sent < 1 * MIB ? NETEM_BYTES - sent : 1 * MIB;
        ssize_t k = ibstack_conn_send(c, pat_at(NETEM_SEED, sent), len);
        if (k == -EAGAIN) {
            if (hd) stack_service(s, 1, 5);
            else usleep(1000);
            continue;
        }
        if (k <= 0) {
            printf("# netem: send %zd (%s) at %llu: %s\n", k, ibstack_strerror((int)k), (unsigned long long)sent, conn_msg(c));
            send_err = 1;
            break;
        }
        sent += (uint64_t)k;
    }
    if (phase < 3) qdisc_clear();
    if (!t_clear) t_clear = now_s();
    struct sink_report r = {.end_rc = 1};
    int got_report = !send_err && !read_serviced(ch.from_child, &r, sizeof r, s, hd, 90);
    double total = now_s() - t0;
    printf("# saw: %u MiB rxe1 -> rxe2 (%s, %s): loss 0.1%% (vA) / 2%% (vB) for %.1f s (netem dropped %lld on vA, %lld on vB), delay 20 ms for "
           "%.1f s (%lld packets delayed), clear %.1f s -> the receiver got %llu bytes, %llu mismatching reads, in %.1f s; "
           "is_connected %d\n",
           NETEM_BYTES / MIB, qname(srq), drive_name(hd), t_delay - t_loss, dropped_a, dropped_b, t_clear - t_delay, delayed_pkts,
           total - (t_clear - t0), (unsigned long long)r.got, (unsigned long long)r.mismatches, total, ibstack_conn_is_connected(c));
    CHECK(!tc_err && phase == 3, "netem: loss, then delay, then clear were applied mid-transfer");
    CHECK(dropped_a > 0 && dropped_b >= 0, "netem: the loss phase dropped rxe1's RDMA packets on vA (%lld; %lld acknowledgements on vB): "
          "the path is shaped", dropped_a, dropped_b);
    CHECK(delayed_pkts > 100, "netem: the delay phase carried the transfer (%lld packets delayed)", delayed_pkts);
    CHECK(!send_err && sent == NETEM_BYTES, "netem: every byte was accepted by send (%llu)", (unsigned long long)sent);
    CHECK(got_report && r.got == NETEM_BYTES && r.end_rc == 0, "netem: the receiver got all %u bytes (%llu, rc %lld)",
          NETEM_BYTES, (unsigned long long)r.got, (long long)r.end_rc);
    CHECK(got_report && r.mismatches == 0, "netem: every byte arrived in order and unchanged (%llu bad reads, first at %llu)",
          (unsigned long long)r.mismatches, (unsigned long long)r.first_bad);
    CHECK_RC(ibstack_conn_is_connected(c), 1, "netem: the connection is still up after the faults");
    CHECK(total < 60, "netem: the transfer finished in %.1f s (< 60)", total);
    ibstack_conn_close(c);
    (void)!write(ch.to_child, "q", 1);
    check_child_exit(&ch, "netem receiver", 30);
    check_teardown("netem", s, hd, &base);
    ibstack_stack_free(s);
}

/* ================================================================== blackhole (F) */

/* rxe treats retry_cnt 7 as "retry forever"; 6 gives 7 tries of the fixed QP timeout
 * (0x12: 4.096 us << 18 = 1.07 s) */
#define BH_RETRY "6"

struct bh_args {
    int srq;
};

/* echoes on two connections: A accepted on rxe2 (VB_IP, the path that gets blackholed), B on
 * rxe0 (TEST_IP, untouched); A's failure is expected. Until the parent's pipe closes. Exits 0
 * when B echoed without an error. */
static int bh_child(int in, int out, void *arg) {
    struct bh_args *a = arg;
    const char *xa[] = DEV_EXTRA("rxe2", 0, "ibstack_retry_cnt", BH_RETRY, );
    const char *xb[] = DEV_EXTRA("rxe0", 0, "ibstack_retry_cnt", BH_RETRY, );
    ibstack_stack *sa, *sb;
    ibstack_listener *la, *lb;
    if (stack_open(&sa, a->srq, xa) || stack_open(&sb, a->srq, xb) || listen_ip_announce(sa, VB_IP, &la, out) ||
        listen_ip_announce(sb, TEST_IP, &lb, out)) {
        printf("# blackhole peer: setup failed: %s\n", h_last_error());
        return 1;
    }
    echo_peer p[2] = {{.buf = malloc(ECHO_BUF)}, {.buf = malloc(ECHO_BUF)}};
    if (accept_wait(sa, 0, la, 30, &p[0].c) || accept_wait(sb, 0, lb, 30, &p[1].c)) {
        printf("# blackhole peer: accept failed: %s\n", h_last_error());
        return 1;
    }
    int ok = 1;
    for (;;) {
        struct pollfd f[3] = {{.fd = in, .events = POLLIN}, {.fd = ibstack_conn_fd(p[0].c), .events = POLLIN},
                              {.fd = ibstack_conn_fd(p[1].c), .events = POLLIN}};
        poll(f, 3, 20);
        if (f[0].revents) break;
        for (int i = 0; i < 2; i++) {
            if (p[i].done) continue;
            int r = echo_progress(&p[i]);
            if (r) {
                p[i].done = 1;
                struct pollfd q = {.fd = in, .events = POLLIN};
                if (i == 1 && poll(&q, 1, 0) == 1) break; /* the parent said "q" before it closed B */
                if (i == 1) {
                    printf("# blackhole peer: B ended (%d) after %llu bytes: %s\n", r, (unsigned long long)p[1].in, conn_msg(p[1].c));
                    ok = 0;
                } else {
                    printf("# saw: blackhole peer (rxe2): A failed after echoing %llu bytes: %s\n", (unsigned long long)p[0].out,
                           conn_msg(p[0].c));
                }
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        ibstack_conn_close(p[i].c);
        free(p[i].buf);
    }
    ibstack_listener_free(la);
    ibstack_listener_free(lb);
    wait_torn_down(sa, 0, 10);
    wait_torn_down(sb, 0, 10);
    ibstack_stack_free(sa);
    ibstack_stack_free(sb);
    return ok ? 0 : 1;
}

/* one round of both stacks (host-driven) or a short sleep on the connections' fds */
static void bh_service(ibstack_stack *sa, ibstack_stack *sb, ibstack_conn *a, ibstack_conn *b, int hd) {
    static int busy;
    struct pollfd f[4] = {{.fd = ibstack_conn_fd(a), .events = POLLIN}, {.fd = ibstack_conn_fd(b), .events = POLLIN},
                          {.fd = hd ? ibstack_stack_fd(sa) : -1, .events = POLLIN},
                          {.fd = hd ? ibstack_stack_fd(sb) : -1, .events = POLLIN}};
    poll(f, 4, busy ? 0 : 10);
    if (hd) {
        int ra = hd_poll(sa), rb = hd_poll(sb);
        busy = ra == 1 || rb == 1;
    }
}

static void mode_blackhole(int srq, int hd) {
    pat_init();
    qdisc_clear();
    CHECK_RC(veth_up(), 0, "veth pair vA/vB with rxe1 and rxe2 up");
    struct bh_args ba = {.srq = srq};
    child ch;
    uint16_t port[2] = {0, 0};
    if (spawn(&ch, bh_child, &ba) || read_all(ch.from_child, port, 4, 60)) {
        CHECK(0, "blackhole: the echo process announced its ports");
        return;
    }
    const char *xa[] = DEV_EXTRA("rxe1", hd, "ibstack_retry_cnt", BH_RETRY, );
    const char *xb[] = DEV_EXTRA("rxe0", hd, "ibstack_retry_cnt", BH_RETRY, );
    ibstack_stack *sa = NULL, *sb = NULL;
    int rc = stack_open(&sa, srq, xa);
    if (!rc) rc = stack_open(&sb, srq, xb);
    CHECK_RC(rc, 0, "blackhole: stacks on rxe1 and rxe0 (%s, %s, ibstack_retry_cnt " BH_RETRY ")", qname(srq), drive_name(hd));
    if (rc) return;
    ibstack_mem_stats base_a = stack_mem(sa), base_b = stack_mem(sb);
    echo_client e[2] = {{.seed = 11, .total = 1ull << 40}, {.seed = 12, .total = 1ull << 40}};
    rc = ibstack_connect(sa, VB_IP, port[0], &e[0].c);
    if (!rc) rc = ibstack_connect(sb, TEST_IP, port[1], &e[1].c);
    CHECK_RC(rc, 0, "blackhole: connecting A (rxe1 -> rxe2) and B (rxe0 loopback)");
    if (rc) return;
    e[0].rbuf = malloc(ECHO_BUF);
    e[1].rbuf = malloc(ECHO_BUF);
    double t0 = now_s(), t_bh = 0, t_fault = 0, t_end = 0;
    uint64_t b_at_bh = 0, b_at_fault = 0, a_at_bh = 0;
    int a_r = 0, b_r = 0;
    /* 1.5 s of echo on both, then A's path is cut (vA drops everything it sends: rxe1's
     * requests and its ACKs of rxe2's data) until A faults, then 2 s more for B */
    while (now_s() - t0 < 40) {
        bh_service(sa, sb, e[0].c, e[1].c, hd);
        if (!a_r) a_r = client_progress(&e[0]);
        if (!b_r) b_r = client_progress(&e[1]);
        double t = now_s();
        if (b_r || (a_r && !t_bh)) break;
        if (!t_bh && t - t0 > 1.5 && e[0].rcvd > 0 && e[1].rcvd > 0) {
            a_at_bh = e[0].rcvd;
            b_at_bh = e[1].rcvd;
            CHECK(sh(TC " qdisc add dev vA root netem loss 100%%") == 0, "blackhole: vA drops every packet from now on");
            t_bh = now_s();
        }
        if (t_bh && a_r && !t_fault) {
            t_fault = t;
            b_at_fault = e[1].rcvd;
        }
        if (t_fault && t - t_fault > 2) break;
        if (t_bh && !t_fault && t - t_bh > 25) break;
    }
    t_end = now_s();
    qdisc_clear();
    int a_conn = ibstack_conn_is_connected(e[0].c), b_conn = ibstack_conn_is_connected(e[1].c);
    ibstack_counters ca;
    memset(&ca, 0, sizeof ca);
    ibstack_stack_counters(sa, &ca);
    printf("# saw: A (rxe1 -> rxe2, blackholed after %llu bytes echoed) -> is_connected %d (%s) after %.2f s: %s\n",
           (unsigned long long)a_at_bh, a_conn, ibstack_strerror(a_conn), t_fault ? t_fault - t_bh : -1.0, conn_msg(e[0].c));
    printf("# saw: B (rxe0) echoed %.1f MiB before the cut, %.1f MiB during the %.2f s until A failed, %.1f MiB in the %.1f s "
           "after; is_connected %d; A's stack counted %llu RETRY_EXC_ERR send completions\n",
           b_at_bh / (double)MIB, (b_at_fault - b_at_bh) / (double)MIB, t_fault - t_bh, (e[1].rcvd - b_at_fault) / (double)MIB,
           t_end - t_fault, b_conn, (unsigned long long)ca.tx_retry_errors);
    CHECK(t_bh > 0, "blackhole: both connections moved data before the cut (A %llu, B %llu bytes)", (unsigned long long)a_at_bh,
          (unsigned long long)b_at_bh);
    CHECK(t_fault > 0 && t_fault - t_bh < 20, "blackhole: the blackholed connection failed within 20 s (%.2f s)",
          t_fault ? t_fault - t_bh : -1.0);
    CHECK(a_conn == -ECONNRESET && strstr(conn_msg(e[0].c), "RETRY_EXC_ERR") && strstr(conn_msg(e[0].c), "stopped acknowledging"),
          "blackhole: it reports -ECONNRESET naming RETRY_EXC_ERR and the unacknowledging peer (%d)", a_conn);
    CHECK(ca.tx_retry_errors >= 1, "blackhole: the stack counted the RETRY_EXC_ERR completion (%llu)",
          (unsigned long long)ca.tx_retry_errors);
    CHECK(e[0].mismatches == 0 && e[1].mismatches == 0, "blackhole: every echoed byte was right (A %llu, B %llu bad reads)",
          (unsigned long long)e[0].mismatches, (unsigned long long)e[1].mismatches);
    CHECK(!b_r && b_conn == 1 && b_at_fault > b_at_bh && e[1].rcvd > b_at_fault,
          "blackhole: the other connection kept moving data during and after the cut (B r %d, is_connected %d)", b_r, b_conn);
    /* "q" first: the peer must not take B's close for a failure */
    (void)!write(ch.to_child, "q", 1);
    for (int i = 0; i < 2; i++) {
        ibstack_conn_close(e[i].c);
        free(e[i].rbuf);
    }
    check_child_exit(&ch, "blackhole echo peer", 30);
    check_teardown("blackhole A", sa, hd, &base_a);
    check_teardown("blackhole B", sb, hd, &base_b);
    ibstack_stack_free(sa);
    ibstack_stack_free(sb);
}

/* ================================================================== churn (G) */

#define CHURN_CONNS 1000
#define CHURN_MSG 64
/* both sides: without an SRQ each QP posts ms_async_rdma_receive_queue_len buffers, and a
 * closed connection's QP keeps them until it is retired: 16 x 512 QPs fit in the pool (the
 * listener's side of a connection the connector closed lingers: up to ~200 QPs seen) */
#define CHURN_POOL "ms_async_rdma_receive_buffers", "8192", "ms_async_rdma_receive_queue_len", "16"

struct churn_report {
    int conns, qps;
    uint64_t tx_in_use, rx_in_use, rx_base;
    long accepted, refused, echoed;
    int peak_qps;
    uint64_t reg_base, reg_after; /* memory registrations (the RX pool grows, never shrinks) */
};

struct churn_args {
    int srq;
};

/* the listener: accepts everything, echoes what arrives, closes a connection once it
 * ends; on the parent's 'd' closes the rest, waits until its stack is empty and reports;
 * exits when the pipe closes */
static int churn_child(int in, int out, void *arg) {
    struct churn_args *a = arg;
    const char *extra[] = DEV_EXTRA("rxe0", 0, CHURN_POOL, );
    ibstack_stack *s;
    ibstack_listener *l;
    if (stack_open(&s, a->srq, extra) || listen_ip_announce(s, TEST_IP, &l, out)) {
        printf("# churn listener: setup failed: %s\n", h_last_error());
        return 1;
    }
    struct churn_report r = {.rx_base = stack_mem(s).rx_in_use, .reg_base = stack_mem(s).registrations};
    enum { MAXC = 600 };
    struct {
        ibstack_conn *c;
        uint8_t buf[4 * CHURN_MSG];
        size_t len, off;
    } *cs = calloc(MAXC, sizeof *cs);
    int n = 0;
    for (;;) {
        struct pollfd f[2] = {{.fd = in, .events = POLLIN}, {.fd = ibstack_listener_fd(l), .events = POLLIN}};
        poll(f, 2, 2);
        if (f[0].revents) {
            char b;
            (void)!read(in, &b, 1); /* 'd' */
            break;
        }
        int q = ibstack_stack_qp_count(s);
        if (q > r.peak_qps) r.peak_qps = q;
        ibstack_conn *c;
        int rc;
        while (n < MAXC && (rc = ibstack_accept(l, &c)) != -EAGAIN) {
            if (rc) {
                if (!r.refused++) printf("# churn listener: accept %d (%s): %s\n", rc, ibstack_strerror(rc), h_last_error());
                continue;
            }
            r.accepted++;
            cs[n].c = c;
            cs[n].len = cs[n].off = 0;
            n++;
        }
        for (int i = 0; i < n; i++) {
            int gone = 0;
            for (;;) {
                if (cs[i].off < cs[i].len) {
                    ssize_t k = ibstack_conn_send(cs[i].c, cs[i].buf + cs[i].off, cs[i].len - cs[i].off);
                    if (k == -EAGAIN) break;
                    if (k <= 0) {
                        gone = 1;
                        break;
                    }
                    cs[i].off += (size_t)k;
                    r.echoed += k;
                    continue;
                }
                ssize_t k = ibstack_conn_recv(cs[i].c, cs[i].buf, sizeof cs[i].buf);
                if (k == -EAGAIN) break;
                if (k <= 0) {
                    gone = 1;
                    break;
                }
                cs[i].len = (size_t)k;
                cs[i].off = 0;
            }
            if (gone) {
                ibstack_conn_close(cs[i].c);
                cs[i--] = cs[--n];
            }
        }
    }
    for (int i = 0; i < n; i++) ibstack_conn_close(cs[i].c);
    free(cs);
    wait_torn_down(s, 0, 20);
    wait_rx_in_use(s, 0, r.rx_base, 5);
    ibstack_mem_stats m = stack_mem(s);
    r.conns = ibstack_stack_conn_count(s);
    r.qps = ibstack_stack_qp_count(s);
    r.tx_in_use = m.tx_in_use;
    r.rx_in_use = m.rx_in_use;
    r.reg_after = m.registrations;
    if (write_all(out, &r, sizeof r)) return 1;
    char b;
    struct pollfd p = {.fd = in, .events = POLLIN};
    poll(&p, 1, 60000);
    (void)!read(in, &b, 1); /* EOF */
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    return 0;
}

struct kres {
    int qp, cq, mr, pd, srq;
};
static struct kres kres_now(void) {
    struct kres k = {rdma_res_count("qp"), rdma_res_count("cq"), rdma_res_count("mr"), rdma_res_count("pd"), rdma_res_count("srq")};
    return k;
}
static int kres_eq(struct kres a, struct kres b) {
    return a.qp == b.qp && a.cq == b.cq && a.mr == b.mr && a.pd == b.pd && a.srq == b.srq;
}
/* waits up to secs for the kernel's counts to equal `want`; the last counts seen */
static struct kres kres_wait(struct kres want, double secs) {
    struct kres k = kres_now();
    for (double end = now_s() + secs; !kres_eq(k, want) && now_s() < end; usleep(100000)) k = kres_now();
    return k;
}
#define KRES_FMT "qp %d cq %d mr %d pd %d srq %d"
#define KRES_ARGS(k) (k).qp, (k).cq, (k).mr, (k).pd, (k).srq

static uint64_t churn_rng;
static uint32_t churn_next(void) {
    churn_rng ^= churn_rng << 13;
    churn_rng ^= churn_rng >> 7;
    churn_rng ^= churn_rng << 17;
    return (uint32_t)(churn_rng >> 32);
}

typedef struct {
    ibstack_conn *c;
    uint32_t id;
    uint64_t sent, rcvd;
    int up;
} churn_conn;

static void mode_churn(int srq, int hd) {
    pat_init();
    const char *seed_env = getenv("SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9E3779B97F4A7C15ull;
    if (!seed) seed = 1;
    churn_rng = seed;
    printf("# churn seed: SEED=0x%llx (%s, %s)\n", (unsigned long long)seed, qname(srq), drive_name(hd));
    struct kres k0 = kres_now();
    CHECK(k0.qp >= 0 && k0.cq >= 0 && k0.mr >= 0 && k0.pd >= 0 && k0.srq >= 0, "churn: rdma resource show works (" KRES_FMT ")",
          KRES_ARGS(k0));
    struct churn_args ca = {.srq = srq};
    child ch;
    uint16_t port = 0;
    if (spawn(&ch, churn_child, &ca) || read_all(ch.from_child, &port, 2, 60)) {
        CHECK(0, "churn: the listener process announced its port");
        return;
    }
    const char *extra[] = DEV_EXTRA("rxe0", hd, CHURN_POOL, );
    ibstack_stack *s;
    int rc = stack_open(&s, srq, extra);
    CHECK_RC(rc, 0, "churn: stack (%s, %s)", qname(srq), drive_name(hd));
    if (rc) return;
    ibstack_mem_stats base = stack_mem(s);
    ibstack_counters c0;
    ibstack_stack_counters(s, &c0);
    struct kres k1 = kres_now();
    printf("# churn: kernel objects with both stacks and no connection: " KRES_FMT " (before: " KRES_FMT ")\n", KRES_ARGS(k1),
           KRES_ARGS(k0));

    /* QPs alive (closed ones included until retired): every connection holds fds on both
     * sides (RLIMIT_NOFILE 1024; the listener's QPs outlive ours: ~1.5x as many there), and
     * without an SRQ 16 receive buffers each */
    const int cap = srq ? 100 : 24;
    churn_conn live[160];
    int nlive = 0, opened = 0, peak = 0, faults = 0, closed_pending = 0, closed_up = 0, connect_err = 0;
    uint64_t bytes = 0, mismatches = 0;
    double t0 = now_s();
    while ((opened < CHURN_CONNS || nlive > 0) && now_s() - t0 < 120) {
        uint32_t r = churn_next() % 100;
        if (opened < CHURN_CONNS && r < 45) {
            if (nlive < cap && ibstack_stack_qp_count(s) < cap) {
                churn_conn *x = &live[nlive];
                memset(x, 0, sizeof *x);
                x->id = (uint32_t)opened++;
                rc = ibstack_connect(s, TEST_IP, port, &x->c);
                if (rc) {
                    if (!connect_err++) printf("# churn: connect %d: %s\n", rc, h_last_error());
                } else if (++nlive > peak) {
                    peak = nlive;
                }
            }
        } else if (nlive && (r < 75 || opened >= CHURN_CONNS)) {
            int i = (int)(churn_next() % (uint32_t)nlive);
            ibstack_conn_close(live[i].c);
            if (live[i].up) closed_up++;
            else closed_pending++;
            live[i] = live[--nlive];
        } else if (nlive) {
            churn_conn *x = &live[churn_next() % (uint32_t)nlive];
            if (x->up && x->sent - x->rcvd < 2 * CHURN_MSG) {
                size_t len = 1 + churn_next() % CHURN_MSG;
                ssize_t k = ibstack_conn_send(x->c, pat_at(x->id, x->sent), len);
                if (k > 0) x->sent += (uint64_t)k;
            }
        }
        /* everyone: handshake state, echoes, unexpected faults */
        for (int i = 0; i < nlive; i++) {
            churn_conn *x = &live[i];
            int st = ibstack_conn_is_connected(x->c);
            if (st == 1) x->up = 1;
            uint8_t buf[4 * CHURN_MSG];
            ssize_t k;
            while (st == 1 && (k = ibstack_conn_recv(x->c, buf, sizeof buf)) > 0) {
                if (x->rcvd + (uint64_t)k > x->sent || memcmp(buf, pat_at(x->id, x->rcvd), (size_t)k)) mismatches++;
                x->rcvd += (uint64_t)k;
                bytes += (uint64_t)k;
            }
            if (st < 0) {
                if (!faults++) printf("# churn: connection %u failed %d (%s): %s\n", x->id, st, ibstack_strerror(st), conn_msg(x->c));
                ibstack_conn_close(x->c);
                live[i--] = live[--nlive];
            }
        }
        if (hd) stack_service(s, 1, churn_next() % 3 ? 0 : 1);
        else if (churn_next() % 4 == 0) usleep(churn_next() % 500);
    }
    double took = now_s() - t0;
    printf("# saw: %d connections opened and closed in random order in %.1f s: %d closed during the handshake, %d after it, "
           "%d failed on their own, peak %d alive; %llu bytes echoed back\n",
           opened, took, closed_pending, closed_up, faults, peak, (unsigned long long)bytes);
    CHECK(opened == CHURN_CONNS && nlive == 0, "churn: %d of %d connections opened and closed (%d still open)", opened, CHURN_CONNS, nlive);
    CHECK(connect_err == 0 && faults == 0, "churn: no connect failed (%d) and no connection failed on its own (%d)", connect_err, faults);
    CHECK(mismatches == 0 && closed_up > 0 && closed_pending > 0 && bytes > 0,
          "churn: echoes were right (%llu bad), both closes before and after the handshake happened", (unsigned long long)mismatches);
    double t1 = now_s();
    int qps = wait_torn_down(s, hd, 30);
    CHECK(qps == 0 && ibstack_stack_conn_count(s) == 0, "churn: every connection retired (%.2f s; conns %d, qps %d)", now_s() - t1,
          ibstack_stack_conn_count(s), qps);
    uint64_t rx = wait_rx_in_use(s, hd, base.rx_in_use, 5);
    ibstack_mem_stats m = stack_mem(s);
    /* the dispatcher takes a QP out of the count (qp_count) before ibv_destroy_qp and the
     * destroyed/active counters: the last one may still be in that window */
    ibstack_counters c1;
    ibstack_stack_counters(s, &c1);
    if (c1.active_queue_pair != c0.active_queue_pair) {
        printf("# note: qp_count is 0 but active_queue_pair is %llu (was %llu): a destroy in progress\n",
               (unsigned long long)c1.active_queue_pair, (unsigned long long)c0.active_queue_pair);
        for (double end = now_s() + 5; c1.active_queue_pair != c0.active_queue_pair && now_s() < end;) {
            stack_service(s, hd, 10);
            ibstack_stack_counters(s, &c1);
        }
    }
    printf("# saw: library counts after churn: conns %d qps %d tx_in_use %llu rx_in_use %llu (baseline %llu); QPs created %llu, "
           "destroyed %llu, active %llu, destroy errors %llu\n",
           ibstack_stack_conn_count(s), qps, (unsigned long long)m.tx_in_use, (unsigned long long)rx,
           (unsigned long long)base.rx_in_use, (unsigned long long)(c1.created_queue_pair - c0.created_queue_pair),
           (unsigned long long)(c1.qp_destroyed - c0.qp_destroyed), (unsigned long long)c1.active_queue_pair,
           (unsigned long long)c1.qp_destroy_errors);
    CHECK(m.tx_in_use == 0 && rx == base.rx_in_use, "churn: TX and RX pools back at baseline");
    CHECK(c1.created_queue_pair - c0.created_queue_pair == (uint64_t)opened && c1.qp_destroyed - c0.qp_destroyed == (uint64_t)opened &&
              c1.active_queue_pair == c0.active_queue_pair && c1.qp_destroy_errors == 0,
          "churn: the counters show %d QPs created and as many destroyed", opened);
    (void)!write(ch.to_child, "d", 1);
    struct churn_report cr;
    memset(&cr, 0, sizeof cr);
    rc = read_serviced(ch.from_child, &cr, sizeof cr, s, hd, 40);
    printf("# saw: listener: accepted %ld, refused %ld, echoed %ld bytes, peak %d QPs; after: conns %d qps %d tx_in_use %llu "
           "rx_in_use %llu (baseline %llu)\n",
           cr.accepted, cr.refused, cr.echoed, cr.peak_qps, cr.conns, cr.qps, (unsigned long long)cr.tx_in_use, (unsigned long long)cr.rx_in_use,
           (unsigned long long)cr.rx_base);
    CHECK(rc == 0 && cr.refused == 0 && cr.accepted <= opened && cr.accepted >= closed_up,
          "churn: the listener accepted %ld, refused none", cr.accepted);
    CHECK(rc == 0 && cr.conns == 0 && cr.qps == 0 && cr.tx_in_use == 0 && cr.rx_in_use == cr.rx_base,
          "churn: the listener's stack is back at its baseline too");
    /* the RX pools may have grown (new registered blocks, kept for reuse): the kernel's MR
     * count must match the registrations the two stacks made, every other count the baseline */
    struct kres want = k1;
    long grown = (long)(m.registrations - base.registrations) + (long)(cr.reg_after - cr.reg_base);
    want.mr += (int)grown;
    struct kres k2 = kres_wait(want, 10);
    printf("# saw: kernel objects after churn: " KRES_FMT " (baseline " KRES_FMT ", + %ld MRs for RX pool growth)\n", KRES_ARGS(k2),
           KRES_ARGS(k1), grown);
    CHECK(rc == 0 && kres_eq(k2, want), "churn: the kernel's QP/CQ/PD/SRQ counts are back at the baseline with both stacks still "
          "open, MRs at baseline + the pools' growth (%ld)", grown);
    (void)!write(ch.to_child, "q", 1);
    check_child_exit(&ch, "churn listener", 30);
    ibstack_stack_free(s);
    struct kres k3 = kres_wait(k0, 10);
    CHECK(kres_eq(k3, k0), "churn: and back at the first counts once both stacks are freed (" KRES_FMT ")", KRES_ARGS(k3));
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "srq") && strcmp(argv[2], "nosrq"))) {
        fprintf(stderr, "usage: %s deadlines|handshake|keepalive|netem|blackhole|churn srq|nosrq [thread|host]\n", argv[0]);
        return 2;
    }
    int srq = strcmp(argv[2], "srq") == 0;
    int hd = argc > 3 && !strcmp(argv[3], "host");
    if (argc > 3 && !hd && strcmp(argv[3], "thread")) {
        fprintf(stderr, "%s: the driving mode is thread or host\n", argv[0]);
        return 2;
    }
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
    } else if (!strcmp(m, "netem")) {
        mode_netem(srq, hd);
    } else if (!strcmp(m, "blackhole")) {
        mode_blackhole(srq, hd);
    } else if (!strcmp(m, "churn")) {
        mode_churn(srq, hd);
    } else {
        fprintf(stderr, "%s: unknown mode\n", argv[0]);
        return 2;
    }
    printf("# timing: mode %s %s%s%s took %.1f s\n", m, argv[2], argc > 3 ? " " : "", argc > 3 ? argv[3] : "", now_s() - t0);
    (void)exit_code;
    DONE();
}
