/* Queue pairs, the cm_meta handshake, SEND/RECV streams and the beacon drain
 * on Soft-RoCE (run in the VM).
 *   test_qp_rxe one srq|nosrq    two QPs in one process (+ drain, errors, 1000 cycles)
 *   test_qp_rxe two srq|nosrq    connector and acceptor in two processes
 *   test_qp_rxe kill srq|nosrq   the acceptor process is killed mid-stream
 *   test_qp_rxe timeout srq|nosrq  stalled handshake peers on blocking and non-blocking
 *                                  fds give -ETIMEDOUT; a signal interrupts a wait */
#include "qp_util.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#define MESSAGES 10000
#define MAX_MSG 40000

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* polls the dispatcher once; receives for `rx_qpn` go into `s`; returns fins seen */
static int pump(rig *r, uint32_t rx_qpn, stream *s, int *errors) {
    ibstack_wc wc[64];
    int n = ibstack_dispatcher_poll(r->d, wc, 64);
    int fins = 0;
    for (int i = 0; i < n; i++) {
        if (wc[i].status != 0) {
            (*errors)++;
            continue;
        }
        if (wc[i].byte_len == 0) {
            fins++;
            ibstack_dispatcher_release_rx(r->d, (ibstack_chunk *)(uintptr_t)wc[i].wr_id);
        } else if (wc[i].qp_num == rx_qpn) {
            consume(r, s, &wc[i]);
        } else {
            ibstack_dispatcher_release_rx(r->d, (ibstack_chunk *)(uintptr_t)wc[i].wr_id);
        }
    }
    return fins;
}

/* sends `count` random-sized messages on `tx` while pumping; stops early when `rx` is NULL and
 * the caller only sends */
static int stream_messages(rig *r, ibstack_qp *tx, stream *out, uint32_t rx_qpn, stream *in, int count) {
    int errors = 0;
    for (int m = 0; m < count; m++) {
        size_t len = 1 + rng() % MAX_MSG;
        int rc;
        double end = now_s() + 20;
        while ((rc = send_message(r, tx, out, len)) == -EAGAIN && now_s() < end) pump(r, rx_qpn, in, &errors);
        if (rc) return rc;
        pump(r, rx_qpn, in, &errors);
    }
    return errors ? -EIO : 0;
}

static int wait_drained(rig *r, double secs) {
    double end = now_s() + secs;
    ibstack_wc wc[32];
    while (ibstack_dispatcher_qp_count(r->d) > 0 && now_s() < end) {
        int n = ibstack_dispatcher_poll(r->d, wc, 32);
        for (int i = 0; i < n; i++)
            if (wc[i].status == 0) ibstack_dispatcher_release_rx(r->d, (ibstack_chunk *)(uintptr_t)wc[i].wr_id);
        if (n == 0) usleep(100);
    }
    return ibstack_dispatcher_qp_count(r->d);
}

static ibstack_mem_stats stats(rig *r) {
    ibstack_mem_stats s;
    ibstack_mem_mgr_stats(r->mm, &s);
    return s;
}

static ibstack_counters counters(rig *r) {
    ibstack_counters c;
    ibstack_dispatcher_counters(r->d, &c);
    return c;
}

static void connect_pair(rig *r, ibstack_qp **qc, ibstack_qp **qa, int *fc, int *fa) {
    CHECK_RC(ibstack_qp_new(r->d, qc), 0, "connector QP created");
    CHECK_RC(ibstack_qp_new(r->d, qa), 0, "acceptor QP created");
    CHECK_RC(tcp_pair(fc, fa), 0, "TCP loopback pair");
    CHECK_RC(handshake_both(*qc, *fc, *qa, *fa), 0, "non-blocking three-record handshake completes on both sides");
}

static void one_process(int srq) {
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "device, pools and dispatcher (%s)", srq ? "SRQ" : "per-QP RQ");
    ibstack_mem_stats base = stats(&r);
    CHECK(base.tx_in_use == 0, "no TX chunk in use at start");
    CHECK(srq ? base.rx_in_use == 128 : base.rx_in_use == 0, "RX buffers posted at start: %llu (SRQ holds rx_queue_len)",
          (unsigned long long)base.rx_in_use);

    ibstack_qp *qc, *qa;
    int fc, fa;
    CHECK_RC(ibstack_qp_new(r.d, &qc), 0, "QP created");
    CHECK_RC(ibstack_qp_state(qc), 1, "a new QP is in INIT");
    CHECK(ibstack_qp_initial_psn(qc) <= 0xFFFFFF, "initial PSN is 24 bits");
    ibstack_cm_meta lm, pm;
    CHECK_RC(ibstack_qp_local_meta(qc, &lm), 0, "local record");
    CHECK(lm.local_qpn == ibstack_qp_num(qc) && lm.peer_qpn == 0, "local record names the QP, peer_qpn 0");
    CHECK(lm.gid[10] == 0xff && lm.gid[11] == 0xff && lm.gid[12] == 10, "local record carries the IPv4-mapped GID");
    CHECK_RC(ibstack_qp_to_init(qc), -EINVAL, "to_init from INIT is refused");
    CHECK_MSG_HAS("INIT", "the message names the state");
    CHECK_RC(ibstack_qp_peer_meta(qc, &pm), -ENOTCONN, "no peer record before RTR");
    CHECK_RC(ibstack_qp_to_rts(qc), -EINVAL, "INIT->RTS is refused");
    if (!srq) CHECK(stats(&r).rx_in_use == 128, "without SRQ the QP got rx_queue_len receive buffers");
    ibstack_qp_free(qc);
    CHECK_RC(wait_drained(&r, 5), 0, "a QP that never reached RTS is destroyed without a beacon");
    CHECK(counters(&r).beacons_skipped == 1, "beacon skipped for it");

    connect_pair(&r, &qc, &qa, &fc, &fa);
    CHECK_RC(ibstack_qp_state(qc), 3, "connector is RTS");
    CHECK_RC(ibstack_qp_state(qa), 3, "acceptor is RTS");
    uint32_t rn = 0;
    ibstack_qp_remote_num(qc, &rn);
    CHECK(rn == ibstack_qp_num(qa), "connector's dest QPN is the acceptor's QP");
    ibstack_qp_remote_num(qa, &rn);
    CHECK(rn == ibstack_qp_num(qc), "acceptor's dest QPN is the connector's QP");
    CHECK(ibstack_qp_peer_meta(qc, &pm) == 0 && pm.local_qpn == ibstack_qp_num(qa), "connector kept the acceptor's record");

    /* 10 000 messages of random sizes, checked byte by byte */
    stream out = {.seed = 7}, in = {.seed = 7};
    double t0 = now_s();
    int rc = stream_messages(&r, qc, &out, ibstack_qp_num(qa), &in, MESSAGES);
    CHECK_RC(rc, 0, "%d messages of 1..%d bytes posted", MESSAGES, MAX_MSG);
    int errors = 0;
    double end = now_s() + 30;
    while (in.off < out.off && now_s() < end) pump(&r, ibstack_qp_num(qa), &in, &errors);
    double dt = now_s() - t0;
    CHECK(in.off == out.off, "all %llu bytes arrived (%.1f MiB/s)", (unsigned long long)out.off, out.off / dt / 1048576);
    CHECK(in.mismatches == 0 && in.sum == out.sum, "no byte lost, changed or reordered (checksum %llx)",
          (unsigned long long)in.sum);
    CHECK(errors == 0, "no completion errors");
    ibstack_counters c = counters(&r);
    CHECK(c.tx_chunks >= MESSAGES && c.tx_bytes == out.off, "tx_chunks %llu, tx_bytes %llu", (unsigned long long)c.tx_chunks,
          (unsigned long long)c.tx_bytes);
    CHECK(c.rx_total_wc >= c.tx_chunks, "rx_total_wc %llu", (unsigned long long)c.rx_total_wc);

    /* the close SEND arrives as a zero-length receive */
    CHECK_RC(ibstack_qp_post_fin(qc), 0, "close SEND posted");
    int fins = 0;
    end = now_s() + 5;
    while (!fins && now_s() < end) fins = pump(&r, ibstack_qp_num(qa), &in, &errors);
    CHECK(fins == 1 && counters(&r).rx_fin == 1, "peer saw the close SEND (rx_fin 1)");

    /* to_dead with sends in flight and receives posted */
    stream burst = {.seed = 9};
    int queued = 0;
    for (int i = 0; i < 40; i++)
        if (send_message(&r, qc, &burst, 30000) == 0) queued++;
    CHECK(queued > 0 && ibstack_qp_tx_outstanding(qc) > 0, "%d messages in flight (%u sends outstanding)", queued,
          ibstack_qp_tx_outstanding(qc));
    CHECK_RC(ibstack_qp_to_dead(qc), 0, "to_dead: ERR + beacon");
    CHECK_RC(ibstack_qp_to_dead(qc), 0, "to_dead again is a no-op");
    ibstack_qp_free(qc);
    ibstack_qp_free(qa);
    close(fc);
    close(fa);
    CHECK_RC(wait_drained(&r, 10), 0, "both QPs drained and destroyed");
    ibstack_mem_stats s = stats(&r);
    CHECK(s.tx_in_use == 0, "every TX chunk back in its pool (in use %llu)", (unsigned long long)s.tx_in_use);
    CHECK(s.rx_in_use == base.rx_in_use, "every RX chunk back (in use %llu, baseline %llu)", (unsigned long long)s.rx_in_use,
          (unsigned long long)base.rx_in_use);
    c = counters(&r);
    CHECK(c.beacons_posted == 2 && c.active_queue_pair == 0 && c.qp_destroyed == 3, "beacons %llu, active %llu, destroyed %llu",
          (unsigned long long)c.beacons_posted, (unsigned long long)c.active_queue_pair, (unsigned long long)c.qp_destroyed);
    static char json[1 << 16];
    ibstack_qp_history_json(r.d, json, sizeof json);
    CHECK(strstr(json, "\"beacon_seen\"") && strstr(json, "\"destroyed\"") && strstr(json, "\"rts\"") &&
              strstr(json, "\"record_received\""),
          "QP history shows records, RTS, beacon and destruction");
    ibstack_dispatcher_counters_json(r.d, json, sizeof json);
    CHECK(strstr(json, "\"AsyncMessenger::RDMADispatcher\":{\"polling\"") != NULL, "counters JSON in perf-dump layout");

    /* stale errno: a failed post reports the provider's return value */
    ibstack_qp *qx;
    CHECK_RC(ibstack_qp_new(r.d, &qx), 0, "QP for the post-failure check");
    int prc = 0;
    for (int i = 0; i < 40 && prc >= 0; i++) {
        errno = EINPROGRESS;
        prc = ibstack_dispatcher_post_rx(r.d, 64, srq ? NULL : qx);
    }
    CHECK(prc < 0 && prc != -EINPROGRESS, "posting to a full %s fails with the verbs code %d (%s), not the stale errno",
          srq ? "SRQ" : "RQ", prc, strerror(-prc));
    CHECK_MSG_HAS(srq ? "ibv_post_srq_recv" : "ibv_post_recv", "the message names the call");
    CHECK(strstr(h_last_error(), "EINPROGRESS") == NULL, "and not EINPROGRESS");

    /* bad peer records and settings: one named error each */
    ibstack_cm_meta bad = lm;
    bad.local_qpn = ibstack_qp_num(qx);
    memset(bad.gid, 0, 16);
    CHECK_RC(ibstack_qp_to_rtr(qx, &bad), -EINVAL, "peer record with an all-zero GID is refused before verbs");
    CHECK_MSG_HAS("gid is all zero", "message names the zero GID");
    bad = lm;
    bad.local_qpn = 0;
    CHECK_RC(ibstack_qp_to_rtr(qx, &bad), -EINVAL, "peer record with QPN 0 is refused");
    CHECK_MSG_HAS("local_qpn", "message names the field");
    char garbage[65];
    memset(garbage, 'z', sizeof garbage);
    CHECK_RC(ibstack_cm_meta_decode(garbage, sizeof garbage, &pm), -EPROTO, "garbage record: EPROTO");
    CHECK_MSG_HAS("zzzz", "garbage bytes shown");
    CHECK_RC(ibstack_qp_state(qx), 1, "the QP is still usable (INIT) after refused transitions");
    ibstack_qp_free(qx);

    /* a peer speaking msgr2 (the posix messenger) */
    ibstack_qp *qm;
    int f1, f2;
    CHECK_RC(ibstack_qp_new(r.d, &qm), 0, "QP for the banner check");
    tcp_pair(&f1, &f2);
    const char banner[26] = "ceph v2\n\x10\x00" "0123456789abcdef";
    CHECK_RC(write(f1, banner, sizeof banner), 26, "fake posix peer sends its 26-byte banner");
    close(f1);
    CHECK_RC(ibstack_qp_handshake(qm, f2, IBSTACK_ROLE_ACCEPTOR, 2000), -EPROTO, "msgr2 banner: EPROTO");
    CHECK_MSG_HAS("async+posix", "message says the peer uses the TCP messenger");
    CHECK_MSG_HAS("ms_cluster_type", "message names the options to align");
    close(f2);
    ibstack_qp_free(qm);
    CHECK_RC(ibstack_qp_new(r.d, &qm), 0, "QP for the closed-peer check");
    tcp_pair(&f1, &f2);
    close(f1);
    CHECK_RC(ibstack_qp_handshake(qm, f2, IBSTACK_ROLE_ACCEPTOR, 2000), -ECONNRESET, "peer closed: ECONNRESET");
    close(f2);
    ibstack_qp_free(qm);
    CHECK(counters(&r).handshake_errors == 2, "two handshake errors counted");
    CHECK_RC(wait_drained(&r, 5), 0, "failed QPs retired");

    /* 1000 create/connect/drain cycles leave nothing behind */
    int qps0 = rdma_res_count("qp"), cqs0 = rdma_res_count("cq"), mrs0 = rdma_res_count("mr"), pds0 = rdma_res_count("pd");
    ibstack_mem_stats b2 = stats(&r);
    int failures = 0;
    t0 = now_s();
    for (int i = 0; i < 1000 && failures == 0; i++) {
        ibstack_qp *a, *b;
        int x, y;
        if (ibstack_qp_new(r.d, &a) || ibstack_qp_new(r.d, &b) || tcp_pair(&x, &y) || handshake_both(a, x, b, y)) {
            failures++;
            printf("# cycle %d: %s\n", i, h_last_error());
            break;
        }
        stream o = {.seed = (uint32_t)i}, q = {.seed = (uint32_t)i};
        if (send_message(&r, a, &o, 100 + i)) failures++;
        double e2 = now_s() + 5;
        while (q.off < o.off && now_s() < e2) pump(&r, ibstack_qp_num(b), &q, &errors);
        if (q.off != o.off || q.mismatches) failures++;
        ibstack_qp_free(a);
        ibstack_qp_free(b);
        close(x);
        close(y);
        if (wait_drained(&r, 5)) failures++;
    }
    dt = now_s() - t0;
    CHECK(failures == 0, "1000 cycles of create, handshake, one message, drain (%.1f ms each)", dt);
    CHECK(rdma_res_count("qp") == qps0 && rdma_res_count("cq") == cqs0 && rdma_res_count("mr") == mrs0 &&
              rdma_res_count("pd") == pds0,
          "kernel object counts back at baseline (qp %d cq %d mr %d pd %d)", qps0, cqs0, mrs0, pds0);
    s = stats(&r);
    CHECK(s.tx_in_use == b2.tx_in_use && s.rx_in_use == b2.rx_in_use, "pool in-use counts back at baseline");
    c = counters(&r);
    CHECK(c.active_queue_pair == 0 && c.created_queue_pair == c.qp_destroyed, "created %llu = destroyed %llu",
          (unsigned long long)c.created_queue_pair, (unsigned long long)c.qp_destroyed);
    rig_close(&r);
    CHECK(rdma_res_count("qp") == 0 && rdma_res_count("mr") == 0 && rdma_res_count("pd") == 0, "teardown frees every object");

    /* settings the port cannot honour */
    const char *mtu[] = {"ibstack_path_mtu", "4096", NULL};
    CHECK_RC(rig_open(&r, srq, mtu), 0, "rig with ibstack_path_mtu 4096");
    ibstack_qp *a, *b;
    CHECK(ibstack_qp_new(r.d, &a) == 0 && ibstack_qp_new(r.d, &b) == 0, "two QPs");
    ibstack_cm_meta peer;
    ibstack_qp_local_meta(b, &peer);
    CHECK_RC(ibstack_qp_to_rtr(a, &peer), -EINVAL, "path MTU above the port's active MTU is refused before verbs");
    CHECK_MSG_HAS("4096", "message shows the configured MTU");
    CHECK_MSG_HAS("1024", "and the port's");
    ibstack_qp_free(a);
    ibstack_qp_free(b);
    rig_close(&r);
    const char *gid[] = {"ms_async_rdma_gid_idx", "7", NULL};
    CHECK_RC(rig_open(&r, srq, gid), -EINVAL, "gid_idx 7 (outside rxe's table) is refused");
    CHECK_MSG_HAS("gid_idx", "message names ms_async_rdma_gid_idx");
    rig_close(&r);
}

/* child: acceptor that receives the stream until the close SEND; exit status = failures */
static int acceptor_child(int fd, int srq, int expect_messages) {
    rig r;
    if (rig_open(&r, srq, NULL)) return 10;
    ibstack_qp *q;
    if (ibstack_qp_new(r.d, &q) || ibstack_qp_handshake(q, fd, IBSTACK_ROLE_ACCEPTOR, 10000)) {
        fprintf(stderr, "child: %s\n", h_last_error());
        return 11;
    }
    stream in = {.seed = 3};
    int errors = 0, fins = 0;
    while (!fins) fins = pump(&r, ibstack_qp_num(q), &in, &errors);
    uint64_t want = 0;
    rng_state = 999;
    for (int m = 0; m < expect_messages; m++) want += 1 + rng() % MAX_MSG;
    int bad = (in.off != want) + (in.mismatches != 0) + (errors != 0);
    printf("# child received %llu of %llu bytes, %llu mismatches, checksum %llx\n", (unsigned long long)in.off,
           (unsigned long long)want, (unsigned long long)in.mismatches, (unsigned long long)in.sum);
    ibstack_qp_free(q);
    wait_drained(&r, 5);
    rig_close(&r);
    return bad;
}

/* forks acceptor_child on one end of a fresh TCP pair; *fc is the parent's end */
static pid_t spawn_acceptor(int srq, int expect_messages, int *fc) {
    int fa;
    CHECK_RC(tcp_pair(fc, &fa), 0, "TCP pair before fork");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(*fc);
        _exit(acceptor_child(fa, srq, expect_messages));
    }
    close(fa);
    return pid;
}

static void two_processes(int srq) {
    int fc;
    pid_t pid = spawn_acceptor(srq, MESSAGES, &fc);
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "parent rig (%s)", srq ? "SRQ" : "per-QP RQ");
    ibstack_qp *q;
    CHECK_RC(ibstack_qp_new(r.d, &q), 0, "connector QP");
    CHECK_RC(ibstack_qp_handshake(q, fc, IBSTACK_ROLE_CONNECTOR, 10000), 0, "blocking handshake with the other process");
    stream out = {.seed = 3}, none = {0};
    rng_state = 999;
    double t0 = now_s();
    CHECK_RC(stream_messages(&r, q, &out, 0, &none, MESSAGES), 0, "%d messages posted to the other process", MESSAGES);
    CHECK_RC(ibstack_qp_post_fin(q), 0, "close SEND");
    int status = -1;
    double end = now_s() + 60;
    int errors = 0;
    while (now_s() < end) {
        pump(&r, 0, &none, &errors);
        if (waitpid(pid, &status, WNOHANG) == pid) break;
    }
    double dt = now_s() - t0;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child received every byte in order (status %d; %.1f MiB/s)", status,
          out.off / dt / 1048576);
    ibstack_qp_free(q);
    CHECK_RC(wait_drained(&r, 10), 0, "connector QP drained");
    CHECK(stats(&r).tx_in_use == 0, "TX pool back at baseline");
    close(fc);
    rig_close(&r);
}

static void killed_peer(int srq) {
    int fc;
    pid_t pid = spawn_acceptor(srq, 1 << 30, &fc);
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "parent rig (%s)", srq ? "SRQ" : "per-QP RQ");
    ibstack_mem_stats base = stats(&r);
    ibstack_qp *q;
    CHECK_RC(ibstack_qp_new(r.d, &q), 0, "connector QP");
    CHECK_RC(ibstack_qp_handshake(q, fc, IBSTACK_ROLE_CONNECTOR, 10000), 0, "handshake");
    stream out = {.seed = 3}, none = {0};
    rng_state = 999;
    CHECK_RC(stream_messages(&r, q, &out, 0, &none, 300), 0, "300 messages streamed");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* keep sending into the void: these can never complete */
    int extra = 0;
    for (int i = 0; i < 20; i++)
        if (send_message(&r, q, &out, 20000) == 0) extra++;
    CHECK(extra > 0, "sends still accepted after the peer died (%d)", extra);
    char b;
    set_nonblock(fc);
    double end = now_s() + 5;
    ssize_t got = -1;
    int errors = 0;
    while (now_s() < end && (got = read(fc, &b, 1)) < 0) pump(&r, 0, &none, &errors);
    CHECK(got == 0, "survivor sees EOF on the TCP side channel");
    CHECK(ibstack_qp_tx_outstanding(q) > 0, "%u sends stuck in flight", ibstack_qp_tx_outstanding(q));
    ibstack_qp_free(q);
    CHECK_RC(wait_drained(&r, 10), 0, "QP drained and destroyed (no abort)");
    ibstack_counters c = counters(&r);
    CHECK(c.tx_wr_flush_errors > 0, "the stuck sends completed as flush errors (%llu)", (unsigned long long)c.tx_wr_flush_errors);
    ibstack_mem_stats s = stats(&r);
    CHECK(s.tx_in_use == 0 && s.rx_in_use == base.rx_in_use, "pools back at baseline");
    close(fc);
    rig_close(&r);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char m[] = "not ok - ibstack_qp_handshake blocked past its timeout (SIGALRM after 20 s)\n";
    if (write(1, m, sizeof m - 1) < 0) _exit(1);
    _exit(1);
}

/* One handshake against a peer that stalls: `sent` bytes of a record (0 =
 * silent), on a blocking or non-blocking fd. The call must give up at its
 * timeout with -ETIMEDOUT. */
static void stalled_peer(rig *r, int role, size_t sent, int nonblock) {
    ibstack_qp *q;
    int fc, fa;
    CHECK_RC(ibstack_qp_new(r->d, &q), 0, "QP created");
    CHECK_RC(tcp_pair(&fc, &fa), 0, "TCP loopback pair");
    int mine = role == IBSTACK_ROLE_CONNECTOR ? fc : fa, peer = role == IBSTACK_ROLE_CONNECTOR ? fa : fc;
    if (nonblock) set_nonblock(mine);
    const char rec[] = "0000:00000011:00000000:00000000:00000000000000000000ffff0a630001";
    if (sent) CHECK(write(peer, rec, sent) == (ssize_t)sent, "peer wrote %zu bytes of a record", sent);
    double t0 = now_s();
    int rc = ibstack_qp_handshake(q, mine, role, 500);
    double took = now_s() - t0;
    CHECK_RC(rc, -ETIMEDOUT, "%s, %s fd, peer sent %zu of 65 bytes: -ETIMEDOUT", role == IBSTACK_ROLE_CONNECTOR ? "connector" : "acceptor",
             nonblock ? "non-blocking" : "blocking", sent);
    CHECK(took >= 0.45 && took < 3.0, "gave up at the 500 ms timeout (after %.2f s)", took);
    CHECK_MSG_HAS("timed out", "the message says it timed out");
    ibstack_qp_free(q);
    close(fc);
    close(fa);
}

static void on_usr1(int sig) { (void)sig; }

static void *signal_later(void *main_thread) {
    struct timespec t = {0, 150 * 1000 * 1000};
    nanosleep(&t, NULL);
    pthread_kill(*(pthread_t *)main_thread, SIGUSR1);
    return NULL;
}

/* A signal that interrupts ibstack_dispatcher_wait is -EINTR, not a timeout. */
static void interrupted_wait(rig *r) {
    /* settle: poll until a short wait times out, so nothing is pending */
    ibstack_wc wc[16];
    for (int i = 0; i < 100 && ibstack_dispatcher_wait(r->d, 50) != 0; i++)
        while (ibstack_dispatcher_poll(r->d, wc, 16) > 0) {}
    struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t self = pthread_self(), t;
    pthread_create(&t, NULL, signal_later, &self);
    double t0 = now_s();
    int rc = ibstack_dispatcher_wait(r->d, 3000);
    double took = now_s() - t0;
    pthread_join(t, NULL);
    CHECK_RC(rc, -EINTR, "ibstack_dispatcher_wait interrupted by a signal after %.2f s: -EINTR", took);
    CHECK(took < 2.0, "it returned when the signal came, not at the timeout");
}

static void timeouts(int srq) {
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "device, pools and dispatcher (%s)", srq ? "SRQ" : "per-QP RQ");
    signal(SIGALRM, on_alarm);
    alarm(20);
    for (int nb = 0; nb < 2; nb++) {
        stalled_peer(&r, IBSTACK_ROLE_ACCEPTOR, 0, nb);
        stalled_peer(&r, IBSTACK_ROLE_ACCEPTOR, 10, nb);
        stalled_peer(&r, IBSTACK_ROLE_CONNECTOR, 0, nb);
        stalled_peer(&r, IBSTACK_ROLE_CONNECTOR, 10, nb);
    }
    alarm(0);
    CHECK_RC(wait_drained(&r, 10), 0, "the timed-out QPs drained and were destroyed");
    interrupted_wait(&r);
    rig_close(&r);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s one|two|kill|timeout srq|nosrq\n", argv[0]);
        return 2;
    }
    int srq = strcmp(argv[2], "srq") == 0;
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(argv[1], "one")) one_process(srq);
    else if (!strcmp(argv[1], "two")) two_processes(srq);
    else if (!strcmp(argv[1], "kill")) killed_peer(srq);
    else if (!strcmp(argv[1], "timeout")) timeouts(srq);
    else return 2;
    DONE();
}
