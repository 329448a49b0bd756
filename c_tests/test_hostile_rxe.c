/* Tier B (Soft-RoCE VM): hostile peers and careless callers.
 *   inject srq|nosrq   a receive completion that is not a SEND's (opcode 129,
 *                      IBV_WC_RECV_RDMA_WITH_IMM, status 0) handed to
 *                      ibstack_dispatcher_handle_rx faults the QP, is never
 *                      delivered as data, and its buffer is released once
 *   rawpeer srq|nosrq  a raw-verbs peer (its own RC QP on rxe0) does the
 *                      cm_meta handshake with an ibstack QP, SENDs, then posts
 *                      a zero-length RDMA WRITE with immediate
 *   chunks srq|nosrq   chunk ownership at the C API: the same TX chunk twice in
 *                      one post, re-posting or returning a chunk in flight,
 *                      releasing an RX chunk that is posted: -EINVAL naming it
 *   dispfree srq|nosrq  a dispatcher freed before its memory manager gives the
 *                      buffers posted to its receive queues back, and leaves an
 *                      RX chunk the host holds (QP field 0xFFFFFFFF) alone
 *   sizes srq|nosrq    implausible counts and lengths: -EINVAL, nothing posted
 *   stackfree srq|nosrq  ibstack_stack_free with a live connection and a
 *                      listener: the connection faults and wakes, the
 *                      listener refuses accept, everything is released
 *   closerace srq|nosrq [N]  N (10000) rounds of connect, accept and an
 *                      immediate close racing the polling thread: every
 *                      connection is retired (conn and QP counts back to 0)
 *   asyncev srq|nosrq  device async events (injected: rxe cannot provoke them)
 *                      reach the stack's connections: QP_FATAL and
 *                      LAST_WQE_REACHED fault that connection, PORT_ERR and
 *                      DEVICE_FATAL every one; each is woken
 *   logcb srq|nosrq    a log callback that calls the library back on the
 *                      connections and the stack whose locks were held when
 *                      the record was logged (a fault logs under the
 *                      connection's lock): no deadlock, every fault reported
 *   pollpanic srq|nosrq  a panic in the polling thread (injected, type 255):
 *                      every connection fails naming it, the stack keeps
 *                      working; a host-driven stack's poll returns it once
 *   rxcap srq|nosrq    ibstack_max_rx_per_conn = 64: a reader that stops
 *                      holds at most the cap plus its receive queue (per-QP
 *                      RQ: its sender waits, the data all arrives once it
 *                      reads) or fails with ENOBUFS naming the option (SRQ);
 *                      another connection of the same stack keeps moving
 *   fork srq|nosrq     a forked child's calls on the parent's stack and
 *                      connection fail with -ECHILD, its frees are ignored;
 *                      the parent's connection keeps working afterwards
 * usage: test_hostile_rxe MODE srq|nosrq */
#include "raw_peer.h"

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static ibstack_mem_stats stats(rig *r) {
    ibstack_mem_stats s;
    ibstack_mem_mgr_stats(r->mm, &s);
    return s;
}

static const char *fault_of(ibstack_qp *qp) {
    static char buf[1024];
    buf[0] = 0;
    ibstack_qp_fault_message(qp, buf, sizeof buf);
    return buf;
}

/* polls the dispatcher until `qp_count` reaches 0 or `secs` pass; receives are released */
static int drain_all(rig *r, double secs) {
    double end = now_s() + secs;
    ibstack_wc wc[32];
    while (ibstack_dispatcher_qp_count(r->d) > 0 && now_s() < end) {
        int n = ibstack_dispatcher_poll(r->d, wc, 32);
        for (int i = 0; i < n; i++)
            if (wc[i].status == 0) ibstack_dispatcher_release_rx(r->d, (ibstack_chunk *)(uintptr_t)wc[i].wr_id);
        if (n <= 0) usleep(100);
    }
    return ibstack_dispatcher_qp_count(r->d);
}

/* takes every free RX chunk once and counts how often `c` comes out; gives them back */
static int times_handed_out(rig *r, ibstack_chunk *c) {
    ibstack_mem_stats s = stats(r);
    uint64_t n = s.rx_free;
    ibstack_chunk **got = calloc(n + 1, sizeof *got);
    int seen = 0;
    uint64_t k = 0;
    for (; k < n; k++) {
        if (ibstack_mem_mgr_get_rx_chunk(r->mm, &got[k])) break;
        if (got[k] == c) seen++;
    }
    for (uint64_t i = 0; i < k; i++) ibstack_mem_mgr_release_rx_chunk(r->mm, got[i]);
    free(got);
    return seen;
}

static void inject(int srq) {
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "device, pools and dispatcher (%s)", srq ? "SRQ" : "per-QP RQ");
    uint64_t base = stats(&r).rx_in_use;
    ibstack_qp *qc, *qa;
    int fc, fa;
    CHECK_RC(ibstack_qp_new(r.d, &qc), 0, "connector QP");
    CHECK_RC(ibstack_qp_new(r.d, &qa), 0, "acceptor QP");
    CHECK_RC(tcp_pair(&fc, &fa), 0, "TCP pair");
    CHECK_RC(handshake_both(qc, fc, qa, fa), 0, "handshake");
    stream s = {.seed = 7};
    CHECK_RC(send_message(&r, qc, &s, 100), 0, "one SEND posted");
    /* the host polls the RX CQ itself: a real completion of a posted buffer */
    const ibstack_cq *rx = ibstack_dispatcher_rx_cq(r.d);
    ibstack_wc w;
    int n = 0;
    for (double end = now_s() + 10; n == 0 && now_s() < end;) n = ibstack_cq_poll(rx, &w, 1);
    CHECK(n == 1 && w.status == 0 && w.opcode == 128 && w.qp_num == ibstack_qp_num(qa),
          "a real receive completion polled from the RX CQ (n %d status %u opcode %u)", n, w.status, w.opcode);
    ibstack_chunk *chunk = (ibstack_chunk *)(uintptr_t)w.wr_id;
    /* what a zero-length RDMA WRITE with immediate would have produced */
    w.opcode = 129;
    w.byte_len = 0;
    CHECK_RC(ibstack_dispatcher_handle_rx(r.d, &w, 1), 0, "handle_rx takes the RECV_RDMA_WITH_IMM completion");
    int data = 0, errors = 0;
    ibstack_wc out[32];
    for (double end = now_s() + 1; now_s() < end;) {
        int k = ibstack_dispatcher_poll(r.d, out, 32);
        for (int i = 0; i < k; i++) {
            if (out[i].wr_id != w.wr_id) continue;
            if (out[i].status == 0) data++;
            else errors++;
        }
    }
    CHECK(data == 0, "the completion is not delivered as data (status 0) to the host (%d times)", data);
    CHECK(errors == 1, "it comes out once as an error completion (%d)", errors);
    const char *f = fault_of(qa);
    CHECK(strstr(f, "IBV_WC_RECV_RDMA_WITH_IMM") && strstr(f, "129"), "the QP is faulted naming the opcode: %s", f);
    CHECK(fault_of(qc)[0] == 0, "the sending QP is not faulted");
    CHECK_RC(ibstack_dispatcher_release_rx(r.d, chunk), -EINVAL, "its buffer is already back in the pool");
    /* With the SRQ, the idle poll above refills it from the free list, which hands out the most
     * recently freed buffer first: this one may be posted again. Either way it is in exactly one
     * place: posted, or in the free list once (a double free would leave a copy in the list). */
    int times = times_handed_out(&r, chunk);
    int rc = ibstack_dispatcher_release_rx(r.d, chunk);
    int posted = rc == -EINVAL && strstr(h_last_error(), "posted to a receive queue") != NULL;
    CHECK(rc == -EINVAL, "releasing it again is still refused (%d)", rc);
    if (srq && posted)
        CHECK(times == 0, "the SRQ refill posted it again, and it is not in the free list as well (%d)", times);
    else
        CHECK(times == 1, "the chunk is in the free list exactly once (%d)", times);
    CHECK_RC(ibstack_qp_to_dead(qc), 0, "connector to_dead");
    CHECK_RC(ibstack_qp_to_dead(qa), 0, "acceptor to_dead");
    ibstack_qp_free(qc);
    ibstack_qp_free(qa);
    CHECK_RC(drain_all(&r, 10), 0, "both QPs drained");
    CHECK(stats(&r).rx_in_use == base, "rx_in_use back to its baseline %llu (now %llu)", (unsigned long long)base,
          (unsigned long long)stats(&r).rx_in_use);
    close(fc);
    close(fa);
    rig_close(&r);
}

/* ------------------------------------------------------------------ a raw-verbs peer */

static int write_all(int fd, const char *b, size_t n) {
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EAGAIN) { usleep(100); continue; }
        if (k <= 0) return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* the connector's side of the three-record exchange, by hand; the ibstack QP
 * is the acceptor, stepped without blocking in between */
static int raw_handshake(raw_peer *p, ibstack_qp *qa, int fc, int fa) {
    set_nonblock(fa);
    uint32_t psn = 0x123456;
    char rec[65], got[65];
    if (raw_record(p, psn, 0, rec) || write_all(fc, rec, sizeof rec)) return -1;
    size_t have = 0;
    double end = now_s() + 10;
    while (have < sizeof got && now_s() < end) {
        int r = ibstack_qp_handshake_step(qa, fa, IBSTACK_ROLE_ACCEPTOR);
        if (r < 0) return r;
        struct pollfd pf = {fc, POLLIN, 0};
        if (poll(&pf, 1, 1) == 1) {
            ssize_t k = read(fc, got + have, sizeof got - have);
            if (k <= 0) return -2;
            have += (size_t)k;
        }
    }
    ibstack_cm_meta peer;
    if (have != sizeof got || ibstack_cm_meta_decode(got, sizeof got, &peer) || peer.peer_qpn != p->qp->qp_num) return -3;
    if (raw_connect(p, &peer, psn)) return -4;
    if (raw_record(p, psn, peer.local_qpn, rec) || write_all(fc, rec, sizeof rec)) return -5;
    for (end = now_s() + 10; now_s() < end;) {
        int r = ibstack_qp_handshake_step(qa, fa, IBSTACK_ROLE_ACCEPTOR);
        if (r != 0) return r == 1 ? 0 : r;
        usleep(100);
    }
    return -ETIMEDOUT;
}

/* waits for the raw peer's next send completion; returns its status or -1 */
static int raw_wait_send(raw_peer *p) {
    struct ibv_wc wc;
    for (double end = now_s() + 20; now_s() < end;) {
        int n = ibv_poll_cq(p->cq, 1, &wc);
        if (n < 0) return -1;
        if (n == 1) return (int)wc.status;
        usleep(100);
    }
    return -1;
}

static void rawpeer(int srq) {
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "device, pools and dispatcher (%s)", srq ? "SRQ" : "per-QP RQ");
    uint64_t base = stats(&r).rx_in_use;
    raw_peer p;
    CHECK_RC(raw_open(&p, 16, 4096), 0, "raw verbs peer: rxe0 opened, PD, CQ, RC QP in INIT, MR without remote access");
    ibstack_qp *qa;
    int fc, fa;
    CHECK_RC(ibstack_qp_new(r.d, &qa), 0, "ibstack QP");
    CHECK_RC(tcp_pair(&fc, &fa), 0, "TCP pair");
    CHECK_RC(raw_handshake(&p, qa, fc, fa), 0, "cm_meta handshake between the raw peer (connector) and ibstack (acceptor)");
    /* one honest SEND first: the pair works */
    memcpy(p.buf, "hello", 5);
    struct ibv_sge sge = {(uintptr_t)p.buf, 5, p.mr->lkey};
    struct ibv_send_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED}, *bad;
    CHECK_RC(ibv_post_send(p.qp, &wr, &bad), 0, "raw peer posts a SEND");
    CHECK_RC(raw_wait_send(&p), IBV_WC_SUCCESS, "the SEND completes");
    ibstack_wc out[32];
    int hello = 0, data = 0, errors = 0;
    for (double end = now_s() + 5; !hello && now_s() < end;) {
        int k = ibstack_dispatcher_poll(r.d, out, 32);
        for (int i = 0; i < k; i++) {
            if (out[i].status == 0 && out[i].byte_len == 5) hello++;
            if (out[i].status == 0) ibstack_dispatcher_release_rx(r.d, (ibstack_chunk *)(uintptr_t)out[i].wr_id);
        }
    }
    CHECK(hello == 1, "ibstack received the SEND as data");
    /* the attack: zero-length RDMA WRITE with immediate (no rkey is checked for 0 bytes) */
    struct ibv_send_wr w2 = {.wr_id = 2, .sg_list = NULL, .num_sge = 0, .opcode = IBV_WR_RDMA_WRITE_WITH_IMM,
                             .send_flags = IBV_SEND_SIGNALED, .imm_data = htonl(0x1234)};
    w2.wr.rdma.remote_addr = 0;
    w2.wr.rdma.rkey = 0;
    CHECK_RC(ibv_post_send(p.qp, &w2, &bad), 0, "raw peer posts a zero-length RDMA WRITE with immediate");
    int st = raw_wait_send(&p);
    printf("# the write completed on the raw peer with %s\n", st >= 0 ? ibv_wc_status_str(st) : "nothing");
    for (double end = now_s() + 2; now_s() < end;) {
        int k = ibstack_dispatcher_poll(r.d, out, 32);
        for (int i = 0; i < k; i++) {
            if (out[i].qp_num != ibstack_qp_num(qa)) continue;
            if (out[i].status == 0) {
                data++;
                printf("# delivered as data: opcode %u, %u bytes\n", out[i].opcode, out[i].byte_len);
                ibstack_dispatcher_release_rx(r.d, (ibstack_chunk *)(uintptr_t)out[i].wr_id);
            } else {
                errors++;
            }
        }
    }
    const char *f = fault_of(qa);
    printf("# ibstack QP fault: %s\n", f);
    CHECK(data == 0, "nothing of the write reaches the host as data (%d)", data);
    CHECK(st > 0 || strstr(f, "IBV_WC_RECV_RDMA_WITH_IMM"),
          "the write is refused (the QP grants no remote write) or faults the QP naming the opcode");
    /* the responder's QP went to ERR: without an SRQ its receives flush (with one, rxe flushes nothing) */
    if (!srq) CHECK(f[0] != 0 && errors > 0, "the ibstack QP is faulted (%d error completions)", errors);
    CHECK_RC(ibstack_qp_to_dead(qa), 0, "to_dead");
    ibstack_qp_free(qa);
    CHECK_RC(drain_all(&r, 10), 0, "the QP drained");
    CHECK(stats(&r).rx_in_use == base, "rx_in_use back to its baseline %llu (now %llu)", (unsigned long long)base,
          (unsigned long long)stats(&r).rx_in_use);
    close(fc);
    close(fa);
    raw_close(&p);
    rig_close(&r);
}

/* ------------------------------------------------------------------ chunk ownership */

static void chunks(int srq) {
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "device, pools and dispatcher (%s)", srq ? "SRQ" : "per-QP RQ");
    uint64_t base = stats(&r).rx_in_use;
    ibstack_qp *qc, *qa;
    int fc, fa;
    CHECK_RC(ibstack_qp_new(r.d, &qc), 0, "connector QP");
    CHECK_RC(ibstack_qp_new(r.d, &qa), 0, "acceptor QP");
    CHECK_RC(tcp_pair(&fc, &fa), 0, "TCP pair");
    CHECK_RC(handshake_both(qc, fc, qa, fa), 0, "handshake");
    ibstack_chunk *c[2];
    size_t n = 0, posted = 99;
    CHECK_RC(ibstack_mem_mgr_get_tx_chunks(r.mm, 1, c, 1, &n), 0, "one TX chunk");
    ibstack_chunk_write(c[0], "0123456789", 10);
    c[1] = c[0];
    CHECK_RC(ibstack_qp_post_send(qc, c, 2, &posted), -EINVAL, "the same chunk twice in one post is -EINVAL");
    CHECK_MSG_HAS("chunks[1]", "the message names the entry");
    CHECK(posted == 0, "nothing was posted (%zu)", posted);
    CHECK(stats(&r).tx_in_use == 1, "the chunk is still the caller's");
    CHECK_RC(ibstack_qp_post_send(qc, c, 1, &posted), 0, "posted once");
    CHECK_RC(ibstack_qp_post_send(qc, c, 1, &posted), -EINVAL, "re-posting the chunk in flight is -EINVAL");
    CHECK_MSG_HAS("in flight", "the message says it is in flight");
    CHECK(posted == 0, "nothing was posted the second time (%zu)", posted);
    CHECK_RC(ibstack_mem_mgr_return_tx(r.mm, c, 1), -EINVAL, "returning the chunk in flight is -EINVAL");
    CHECK_MSG_HAS("in flight", "the message says it is in flight");
    /* the receive: polled from the RX CQ by hand, so its buffer is still posted for the dispatcher */
    const ibstack_cq *rx = ibstack_dispatcher_rx_cq(r.d);
    ibstack_wc w;
    int k = 0;
    for (double end = now_s() + 10; k == 0 && now_s() < end;) k = ibstack_cq_poll(rx, &w, 1);
    CHECK(k == 1 && w.status == 0 && w.byte_len == 10, "the one SEND arrived (n %d status %u len %u)", k, w.status,
          w.byte_len);
    ibstack_chunk *rc = (ibstack_chunk *)(uintptr_t)w.wr_id;
    CHECK_RC(ibstack_dispatcher_release_rx(r.d, rc), -EINVAL, "releasing an RX chunk that is posted is -EINVAL");
    CHECK_MSG_HAS("posted", "the message says it is posted");
    CHECK_RC(ibstack_mem_mgr_release_rx_chunk(r.mm, rc), -EINVAL, "also through the memory manager");
    CHECK_RC(ibstack_dispatcher_handle_rx(r.d, &w, 1), 0, "the completion handed to the dispatcher");
    ibstack_wc out[32];
    int got = 0, sends_back = 0;
    for (double end = now_s() + 5; (!got || !sends_back) && now_s() < end;) {
        int m = ibstack_dispatcher_poll(r.d, out, 32);
        for (int i = 0; i < m; i++)
            if (out[i].status == 0 && out[i].wr_id == w.wr_id) got++;
        sends_back = stats(&r).tx_in_use == 0;
    }
    CHECK(got == 1, "the receive is delivered once (%d)", got);
    CHECK(sends_back, "the TX chunk came back with its one completion");
    CHECK_RC(ibstack_dispatcher_release_rx(r.d, rc), 0, "the delivered chunk is released");
    CHECK_RC(ibstack_dispatcher_release_rx(r.d, rc), -EINVAL, "and not twice");
    CHECK(fault_of(qc)[0] == 0 && fault_of(qa)[0] == 0, "no QP faulted");
    CHECK(times_handed_out(&r, rc) == 1, "the RX chunk is in the free list once");
    CHECK_RC(ibstack_qp_to_dead(qc), 0, "connector to_dead");
    CHECK_RC(ibstack_qp_to_dead(qa), 0, "acceptor to_dead");
    ibstack_qp_free(qc);
    ibstack_qp_free(qa);
    CHECK_RC(drain_all(&r, 10), 0, "both QPs drained");
    CHECK(stats(&r).rx_in_use == base && stats(&r).tx_in_use == 0, "pools back to their baseline");
    close(fc);
    close(fa);
    rig_close(&r);
}

/* ------------------------------------------------------------------ dispatcher freed before its pools */

/* a dispatcher freed while the host keeps its memory manager: the buffers still posted to
 * its receive queues go back to the pool, and an RX chunk the host holds stays the host's
 * even when the host wrote 0xFFFFFFFF (the SRQ's owner mark) into its QP field. Before,
 * the SRQ's posted buffers stayed "posted" forever and the host's chunk was taken back. */
static void dispfree(int srq) {
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "device, pools and dispatcher (%s)", srq ? "SRQ" : "per-QP RQ");
    uint64_t posted = stats(&r).rx_in_use;
    CHECK(!srq || posted > 0, "buffers posted to the SRQ: %llu (none without one)", (unsigned long long)posted);
    ibstack_chunk *mine = NULL;
    CHECK_RC(ibstack_mem_mgr_get_rx_chunk(r.mm, &mine), 0, "the host takes an RX chunk");
    CHECK_RC(ibstack_chunk_set_qp(mine, 0xFFFFFFFFu), 0, "and writes 0xFFFFFFFF into its QP field");
    ibstack_dispatcher_free(r.d);
    r.d = NULL;
    uint64_t left = 0;
    for (double end = now_s() + 5; (left = stats(&r).rx_in_use) != 1 && now_s() < end;) usleep(10000);
    CHECK(left == 1, "after ibstack_dispatcher_free only the host's chunk is in use (rx_in_use %llu, %llu posted before)",
          (unsigned long long)left, (unsigned long long)posted);
    CHECK_RC(ibstack_mem_mgr_release_rx_chunk(r.mm, mine), 0, "the host's chunk was still the host's: released once");
    CHECK(stats(&r).rx_in_use == 0, "the pool is empty of users");
    rig_close(&r);
}

/* ------------------------------------------------------------------ sizes */

static void sizes(int srq) {
    rig r;
    CHECK_RC(rig_open(&r, srq, NULL), 0, "device, pools and dispatcher (%s)", srq ? "SRQ" : "per-QP RQ");
    ibstack_qp *q;
    CHECK_RC(ibstack_qp_new(r.d, &q), 0, "a QP");
    ibstack_mem_stats before = stats(&r);
    CHECK_RC(ibstack_dispatcher_post_rx(r.d, UINT32_MAX, q), -EINVAL, "post_rx(n = (uint32_t)-1) is -EINVAL");
    CHECK_MSG_HAS("ms_async_rdma_receive_queue_len", "the message names the queue length");
    CHECK_RC(ibstack_dispatcher_post_rx(r.d, 129, q), -EINVAL, "post_rx(n = receive_queue_len + 1) is -EINVAL");
    ibstack_mem_stats after = stats(&r);
    CHECK(after.rx_in_use == before.rx_in_use && after.rx_allocated == before.rx_allocated,
          "no buffer was taken or registered (in use %llu -> %llu, allocated %llu -> %llu)",
          (unsigned long long)before.rx_in_use, (unsigned long long)after.rx_in_use,
          (unsigned long long)before.rx_allocated, (unsigned long long)after.rx_allocated);
    ibstack_chunk *c[1];
    size_t n = 0, posted = 99;
    CHECK_RC(ibstack_mem_mgr_get_tx_chunks(r.mm, 1, c, 1, &n), 0, "one TX chunk");
    CHECK_RC(ibstack_qp_post_send(q, c, SIZE_MAX / 8 + 1, &posted), -EINVAL, "post_send(n = SIZE_MAX / 8 + 1)");
    CHECK_MSG_HAS("exceeds the largest possible buffer", "the message says the count is implausible");
    CHECK(posted == 0, "nothing posted");
    uint32_t cap = ibstack_chunk_capacity(c[0]);
    char *mem = calloc(1, cap);
    CHECK_RC(ibstack_chunk_write(c[0], mem, SIZE_MAX), 0, "chunk_write(len SIZE_MAX) copies nothing");
    CHECK_MSG_HAS("exceeds the largest possible buffer", "and says why");
    CHECK_RC(ibstack_chunk_offset(c[0]), 0, "the write cursor did not move");
    ibstack_chunk_reset_write(c[0]);
    CHECK_RC(ibstack_chunk_read(c[0], mem, SIZE_MAX), 0, "chunk_read(len SIZE_MAX) copies nothing");
    CHECK_MSG_HAS("exceeds the largest possible buffer", "and says why");
    free(mem);
    CHECK_RC(ibstack_mem_mgr_return_tx(r.mm, c, 1), 0, "chunk returned");
    CHECK_RC(ibstack_mem_mgr_return_tx(r.mm, c, SIZE_MAX), -EINVAL, "return_tx(n SIZE_MAX)");
    CHECK_RC(ibstack_qp_to_dead(q), 0, "to_dead");
    ibstack_qp_free(q);
    CHECK_RC(drain_all(&r, 10), 0, "drained");
    rig_close(&r);
}

/* ------------------------------------------------------------------ stack freed under live handles */

static ibstack_config *stack_cfg(int srq) {
    ibstack_config *cfg;
    if (ibstack_config_new(&cfg)) return NULL;
    const char *kv[][2] = {
        {"ms_async_rdma_device_name", "rxe0"}, {"ms_async_rdma_gid_idx", "1"},
        {"ms_async_rdma_buffer_size", "16384"}, {"ms_async_rdma_send_buffers", "256"},
        {"ms_async_rdma_receive_queue_len", "128"}, {"ms_async_rdma_receive_buffers", "4096"},
        {"ibstack_rx_first_block", "256"}, {"ms_async_rdma_support_srq", srq ? "true" : "false"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (ibstack_config_set(cfg, kv[i][0], kv[i][1])) return NULL;
    return cfg;
}

static int res_back(int qp, int mr, int pd, double secs) {
    for (double end = now_s() + secs; now_s() < end; usleep(20000))
        if (rdma_res_count("qp") == qp && rdma_res_count("mr") == mr && rdma_res_count("pd") == pd) return 1;
    printf("# qp %d (was %d), mr %d (was %d), pd %d (was %d)\n", rdma_res_count("qp"), qp, rdma_res_count("mr"), mr,
           rdma_res_count("pd"), pd);
    return 0;
}

static char conn_err[1024];
static const char *conn_msg(const ibstack_conn *c) {
    conn_err[0] = 0;
    ibstack_conn_error_message(c, conn_err, sizeof conn_err);
    return conn_err;
}

static void stackfree(int srq) {
    int qp0 = rdma_res_count("qp"), mr0 = rdma_res_count("mr"), pd0 = rdma_res_count("pd");
    ibstack_config *cfg = stack_cfg(srq);
    ibstack_stack *s;
    CHECK_RC(ibstack_stack_new(cfg, &s), 0, "stack (%s)", srq ? "SRQ" : "per-QP RQ");
    ibstack_listener *l;
    CHECK_RC(ibstack_listen(s, "10.99.0.1", 0, &l), 0, "listening");
    uint16_t port = (uint16_t)ibstack_listener_port(l);
    ibstack_conn *c, *a = NULL;
    CHECK_RC(ibstack_connect(s, "10.99.0.1", port, &c), 0, "connecting");
    for (double end = now_s() + 10; !a && now_s() < end; usleep(1000))
        if (ibstack_accept(l, &a) != -EAGAIN && !a) break;
    CHECK(a != NULL, "accepted");
    int up = 0;
    for (double end = now_s() + 10; up != 2 && now_s() < end; usleep(1000))
        up = (ibstack_conn_is_connected(c) == 1) + (a && ibstack_conn_is_connected(a) == 1);
    CHECK(up == 2, "both ends connected");
    int fd = ibstack_conn_fd(c);
    char drain[8];
    while (read(fd, drain, sizeof drain) > 0) {}
    /* a second TCP client waits in the backlog for an accept */
    int raw = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "10.99.0.1", &sa.sin_addr);
    CHECK_RC(connect(raw, (struct sockaddr *)&sa, sizeof sa), 0, "a plain TCP client in the listener's backlog");
    CHECK(ibstack_stack_qp_count(s) == 2 && ibstack_stack_conn_count(s) == 2, "2 QPs, 2 connections");

    ibstack_stack_free(s);
    int rc = ibstack_conn_is_connected(c);
    CHECK(rc < 0, "after ibstack_stack_free the connection reports an error (%d), not 'handshake pending'", rc);
    CHECK(strstr(conn_msg(c), "stack was freed") != NULL, "its message says the stack was freed: %s", conn_err);
    struct pollfd pf = {fd, POLLIN, 0};
    CHECK(poll(&pf, 1, 2000) == 1, "its fd is readable");
    CHECK(ibstack_conn_send(c, "x", 1) < 0, "send fails");
    char b[8];
    CHECK(ibstack_conn_recv(a, b, sizeof b) < 0 && ibstack_conn_is_connected(a) < 0, "the accepted end fails too");
    ibstack_conn *x = NULL;
    rc = ibstack_accept(l, &x);
    CHECK(rc < 0 && rc != -EAGAIN && x == NULL, "the orphaned listener refuses accept (%d)", rc);
    CHECK_MSG_HAS("freed", "the message says the stack was freed");
    ibstack_conn_close(c);
    ibstack_conn_close(a);
    ibstack_listener_free(l);
    close(raw);
    CHECK(res_back(qp0, mr0, pd0, 10), "once the last handle is freed, every QP, MR and PD is released");
    ibstack_config_free(cfg);
}

/* ------------------------------------------------------------------ close racing the poller */

static void closerace(int srq, long rounds) {
    ibstack_config *cfg = stack_cfg(srq);
    ibstack_stack *s;
    CHECK_RC(ibstack_stack_new(cfg, &s), 0, "stack with its polling thread (%s)", srq ? "SRQ" : "per-QP RQ");
    ibstack_listener *l;
    CHECK_RC(ibstack_listen(s, "10.99.0.1", 0, &l), 0, "listening");
    uint16_t port = (uint16_t)ibstack_listener_port(l);
    double start = now_s(), budget = 60;
    long done = 0, accepted = 0, failed = 0;
    for (; done < rounds && now_s() - start < budget; done++) {
        ibstack_conn *c = NULL, *a = NULL;
        /* closed connections hold their fds (and, without an SRQ, 128 receive
         * buffers each) until the poller retires them: keep the backlog under
         * RLIMIT_NOFILE and the RX pool's 4096 buffers */
        for (double end = now_s() + 5; ibstack_stack_qp_count(s) > (srq ? 200 : 24) && now_s() < end;) usleep(500);
        if (ibstack_connect(s, "10.99.0.1", port, &c)) {
            if (!failed++) printf("# connect failed: %s\n", h_last_error());
            continue;
        }
        /* vary the moment of the close: right away, or after the poller may have started the handshake */
        if (done % 3 == 1) sched_yield();
        if (done % 3 == 2) usleep(done % 50);
        ibstack_conn_close(c);
        while (ibstack_accept(l, &a) == 0) {
            accepted++;
            if (done % 2) sched_yield();
            ibstack_conn_close(a);
        }
    }
    double took = now_s() - start;
    printf("# %ld rounds in %.1f s (%ld accepted, %ld connects failed)\n", done, took, accepted, failed);
    CHECK(done == rounds || done >= 1000, "at least 1000 rounds ran in %.0f s (%ld)", budget, done);
    CHECK(failed == 0, "every connect was started");
    ibstack_conn *a = NULL;
    for (double end = now_s() + 2; now_s() < end; usleep(1000))
        while (ibstack_accept(l, &a) == 0) ibstack_conn_close(a);
    int conns = -1, qps = -1;
    for (double end = now_s() + 30; now_s() < end; usleep(10000)) {
        conns = ibstack_stack_conn_count(s);
        qps = ibstack_stack_qp_count(s);
        if (conns == 0 && qps == 0) break;
    }
    CHECK(conns == 0 && qps == 0, "every connection was retired: %d connections, %d QPs left", conns, qps);
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    ibstack_config_free(cfg);
}

/* ------------------------------------------------------------------ async events to connections */

static int make_pair(ibstack_stack *s, ibstack_listener *l, ibstack_conn **c, ibstack_conn **a) {
    *a = NULL;
    if (ibstack_connect(s, "10.99.0.1", (uint16_t)ibstack_listener_port(l), c)) return -1;
    for (double end = now_s() + 10; !*a && now_s() < end; usleep(1000))
        if (ibstack_accept(l, a) != -EAGAIN && !*a) return -2;
    int up = 0;
    for (double end = now_s() + 10; up != 2 && now_s() < end; usleep(1000))
        up = (ibstack_conn_is_connected(*c) == 1) + (*a && ibstack_conn_is_connected(*a) == 1);
    char b[8];
    int fds[2] = {ibstack_conn_fd(*c), ibstack_conn_fd(*a)};
    for (int i = 0; i < 2; i++)
        while (read(fds[i], b, sizeof b) > 0) {}
    return up == 2 ? 0 : -3;
}

/* waits until `c` reports an error; 1 if it names `what` and its fd is readable */
static int faulted_with(ibstack_conn *c, const char *what) {
    int rc = 0;
    for (double end = now_s() + 5; (rc = ibstack_conn_is_connected(c)) >= 0 && now_s() < end;) usleep(1000);
    struct pollfd pf = {ibstack_conn_fd(c), POLLIN, 0};
    int readable = poll(&pf, 1, 1000) == 1;
    const char *m = conn_msg(c);
    if (rc >= 0 || !strstr(m, what) || !readable)
        printf("# is_connected %d, fd readable %d, message: %s\n", rc, readable, m);
    return rc < 0 && strstr(m, what) && readable;
}

/* a stack (SRQ or per-QP RQ, extra "key", "value" pairs, NULL-terminated), a listener on
 * rxe0 and n connected pairs; *cfg_out is the config (the caller frees it) */
static ibstack_stack *pairs_open(int srq, const char *const *extra, int n, ibstack_config **cfg_out, ibstack_listener **l,
                                 ibstack_conn **c, ibstack_conn **a) {
    ibstack_config *cfg = stack_cfg(srq);
    for (; extra && *extra; extra += 2) CHECK_RC(ibstack_config_set(cfg, extra[0], extra[1]), 0, "%s = %s", extra[0], extra[1]);
    ibstack_stack *s = NULL;
    CHECK_RC(ibstack_stack_new(cfg, &s), 0, "stack (%s)", srq ? "SRQ" : "per-QP RQ");
    CHECK_RC(ibstack_listen(s, "10.99.0.1", 0, l), 0, "listening");
    for (int i = 0; i < n; i++) CHECK_RC(make_pair(s, *l, &c[i], &a[i]), 0, "connected pair %d", i);
    *cfg_out = cfg;
    return s;
}

static void asyncev(int srq) {
    ibstack_config *cfg;
    ibstack_listener *l;
    ibstack_conn *c[3], *a[3];
    ibstack_stack *s = pairs_open(srq, NULL, 3, &cfg, &l, c, a);

    CHECK_RC(ibstack_stack_inject_async_event(s, IBV_EVENT_QP_FATAL, ibstack_conn_qp_num(c[0]), 0), 0,
             "IBV_EVENT_QP_FATAL injected for one connection's QP");
    CHECK(faulted_with(c[0], "IBV_EVENT_QP_FATAL"), "that connection fails naming the event and is woken");
    CHECK(ibstack_conn_send(c[0], "x", 1) < 0, "its send fails");
    CHECK_RC(ibstack_conn_is_connected(a[0]), 1, "the other end (its QP is healthy) is still connected");
    CHECK_RC(ibstack_conn_is_connected(c[1]), 1, "other connections are unaffected");
    CHECK_RC(ibstack_stack_inject_async_event(s, IBV_EVENT_QP_LAST_WQE_REACHED, ibstack_conn_qp_num(a[0]), 0), 0,
             "IBV_EVENT_QP_LAST_WQE_REACHED injected");
    CHECK(faulted_with(a[0], "last WQE reached"), "that connection fails too and is woken");
    CHECK_RC(ibstack_conn_is_connected(c[1]), 1, "pair 1 still connected");

    CHECK_RC(ibstack_stack_inject_async_event(s, IBV_EVENT_PORT_ERR, 0, 1), 0, "IBV_EVENT_PORT_ERR injected for port 1");
    CHECK(faulted_with(c[1], "IBV_EVENT_PORT_ERR") && faulted_with(a[1], "IBV_EVENT_PORT_ERR") &&
              faulted_with(c[2], "IBV_EVENT_PORT_ERR") && faulted_with(a[2], "IBV_EVENT_PORT_ERR"),
          "every connection on the device fails naming PORT_ERR and is woken");
    ibstack_conn *c3, *a3;
    CHECK_RC(make_pair(s, l, &c3, &a3), 0, "a new pair after the port error");
    CHECK_RC(ibstack_stack_inject_async_event(s, IBV_EVENT_DEVICE_FATAL, 0, 0), 0, "IBV_EVENT_DEVICE_FATAL injected");
    CHECK(faulted_with(c3, "IBV_EVENT_DEVICE_FATAL") && faulted_with(a3, "IBV_EVENT_DEVICE_FATAL"),
          "every connection fails naming DEVICE_FATAL and is woken");
    CHECK_RC(ibstack_stack_inject_async_event(s, 256, 0, 0), -EINVAL, "an event type above 255 is -EINVAL");
    for (int i = 0; i < 3; i++) {
        ibstack_conn_close(c[i]);
        ibstack_conn_close(a[i]);
    }
    ibstack_conn_close(c3);
    ibstack_conn_close(a3);
    int conns = -1, qps = -1;
    for (double end = now_s() + 20; now_s() < end; usleep(10000)) {
        conns = ibstack_stack_conn_count(s);
        qps = ibstack_stack_qp_count(s);
        if (conns == 0 && qps == 0) break;
    }
    CHECK(conns == 0 && qps == 0, "all retired: %d connections, %d QPs left", conns, qps);
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    ibstack_config_free(cfg);
}

static ibstack_conn *volatile lc_conns[4];
static ibstack_stack *volatile lc_stack;
static long lc_records, lc_calls;

static void lc_cb(void *ud, int level, const char *target, size_t tlen, const char *msg, size_t mlen) {
    (void)ud; (void)level; (void)target; (void)tlen; (void)msg; (void)mlen;
    __atomic_add_fetch(&lc_records, 1, __ATOMIC_RELAXED);
    char buf[256];
    for (int i = 0; i < 4; i++) {
        ibstack_conn *c = lc_conns[i];
        if (!c) continue;
        (void)ibstack_conn_is_connected(c);
        (void)ibstack_conn_error_message(c, buf, sizeof buf);
        (void)ibstack_conn_send(c, "x", 1);
        __atomic_add_fetch(&lc_calls, 1, __ATOMIC_RELAXED);
    }
    if (lc_stack) (void)ibstack_stack_conn_count(lc_stack);
}

static void lc_alarm(int sig) {
    (void)sig;
    static const char m[] = "not ok - logcb: stuck for 60 s: a log callback calling the library deadlocked\n";
    if (write(1, m, sizeof m - 1) < 0) _exit(3);
    _exit(1);
}

static void logcb(int srq) {
    signal(SIGALRM, lc_alarm);
    alarm(60);
    ibstack_config *cfg;
    ibstack_listener *l;
    ibstack_conn *c[2], *a[2];
    ibstack_stack *s = pairs_open(srq, NULL, 2, &cfg, &l, c, a);
    lc_stack = s;
    for (int i = 0; i < 2; i++) {
        lc_conns[2 * i] = c[i];
        lc_conns[2 * i + 1] = a[i];
    }
    CHECK_RC(ibstack_set_log_callback(lc_cb, NULL, 5), 0, "trace-level callback that calls the connections back");
    CHECK_RC(ibstack_stack_inject_async_event(s, IBV_EVENT_QP_FATAL, ibstack_conn_qp_num(c[0]), 0), 0,
             "QP_FATAL injected (the fault is logged under the connection's lock, on this thread)");
    CHECK(faulted_with(c[0], "IBV_EVENT_QP_FATAL"), "that connection reports the fault");
    CHECK_RC(ibstack_stack_inject_async_event(s, IBV_EVENT_PORT_ERR, 0, 1), 0, "PORT_ERR injected (every connection)");
    int all = 1;
    for (int i = 0; i < 2; i++) all &= faulted_with(c[i], "IBV_EVENT_") && faulted_with(a[i], "IBV_EVENT_");
    CHECK(all, "every connection reports its fault");
    printf("# saw: %ld records, %ld calls back into connections from the callback\n", lc_records, lc_calls);
    CHECK(lc_records > 0 && lc_calls > 0, "the callback ran and called back (%ld records)", lc_records);
    for (int i = 0; i < 4; i++) lc_conns[i] = NULL;
    for (int i = 0; i < 2; i++) {
        ibstack_conn_close(c[i]);
        ibstack_conn_close(a[i]);
    }
    int conns = -1;
    for (double end = now_s() + 20; now_s() < end && (conns = ibstack_stack_conn_count(s)) != 0; usleep(10000)) {}
    CHECK(conns == 0, "all retired (%d left)", conns);
    lc_stack = NULL;
    CHECK_RC(ibstack_set_log_callback(NULL, NULL, 0), 0, "callback detached");
    alarm(0);
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    ibstack_config_free(cfg);
}

/* one message over a connected pair, checked */
static int pair_roundtrip(ibstack_conn *c, ibstack_conn *a, const char *msg) {
    size_t n = strlen(msg);
    if (ibstack_conn_send(c, msg, n) != (ssize_t)n) return -1;
    char buf[128];
    size_t got = 0;
    for (double end = now_s() + 10; got < n && now_s() < end;) {
        ssize_t r = ibstack_conn_recv(a, buf + got, sizeof buf - got);
        if (r > 0) got += (size_t)r;
        else if (r != -EAGAIN) return -2;
        else usleep(1000);
    }
    return got == n && !memcmp(buf, msg, n) ? 0 : -3;
}

static void wait_retired(ibstack_stack *s, const char *who) {
    int conns = -1, qps = -1;
    for (double end = now_s() + 20; now_s() < end; usleep(10000)) {
        conns = ibstack_stack_conn_count(s);
        qps = ibstack_stack_qp_count(s);
        if (conns == 0 && qps == 0) break;
    }
    CHECK(conns == 0 && qps == 0, "%s: all retired: %d connections, %d QPs left", who, conns, qps);
}

static void pollpanic(int srq) {
    ibstack_config *cfg;
    ibstack_listener *l;
    ibstack_conn *c[2], *a[2];
    ibstack_stack *s = pairs_open(srq, NULL, 2, &cfg, &l, c, a);
    double t0 = now_s();
    CHECK_RC(ibstack_stack_inject_async_event(s, 255, 0, 0), 0, "a panic in the polling thread injected");
    int all = 1;
    for (int i = 0; i < 2; i++) all &= faulted_with(c[i], "panic") && faulted_with(a[i], "panic");
    CHECK(all, "every connection fails naming the panic and is woken");
    CHECK(ibstack_conn_send(c[0], "x", 1) == -ENOTRECOVERABLE, "a send on one of them is -ENOTRECOVERABLE");
    printf("# saw: %s (after %.3f s)\n", conn_msg(c[0]), now_s() - t0);
    ibstack_conn *c2, *a2;
    CHECK_RC(make_pair(s, l, &c2, &a2), 0, "the stack still connects after the panic");
    CHECK_RC(pair_roundtrip(c2, a2, "after the panic"), 0, "and the new pair moves data");
    for (int i = 0; i < 2; i++) {
        ibstack_conn_close(c[i]);
        ibstack_conn_close(a[i]);
    }
    ibstack_conn_close(c2);
    ibstack_conn_close(a2);
    wait_retired(s, "threaded");
    ibstack_listener_free(l);
    ibstack_stack_free(s);

    CHECK_RC(ibstack_config_set(cfg, "ibstack_stack_thread", "false"), 0, "host-driven config");
    CHECK_RC(ibstack_stack_new(cfg, &s), 0, "host-driven stack");
    CHECK_RC(ibstack_stack_inject_async_event(s, 255, 0, 0), 0, "panic injected");
    CHECK_RC(ibstack_stack_poll(s), -ENOTRECOVERABLE, "ibstack_stack_poll returns the panic as -ENOTRECOVERABLE");
    CHECK_MSG_HAS("panic", "its message names the panic");
    int rc = ibstack_stack_poll(s);
    CHECK(rc >= 0, "the next poll works (%d)", rc);
    ibstack_stack_free(s);
    ibstack_config_free(cfg);
}

static uint8_t rc_byte(uint64_t i) { return (uint8_t)(i * 131 + (i >> 11)); }

/* sends `total` bytes of the pattern from offset *off on c, reading b's side
 * into a running check; returns bytes moved c→b or <0 */
static long long move_bytes(ibstack_conn *c, ibstack_conn *b, uint64_t total, double secs) {
    static uint8_t buf[16384];
    uint64_t sent = 0, got = 0;
    for (double end = now_s() + secs; got < total && now_s() < end;) {
        if (sent < total) {
            size_t n = total - sent < sizeof buf ? (size_t)(total - sent) : sizeof buf;
            for (size_t i = 0; i < n; i++) buf[i] = rc_byte(sent + i);
            ssize_t r = ibstack_conn_send(c, buf, n);
            if (r > 0) sent += (uint64_t)r;
            else if (r != -EAGAIN) return -1;
        }
        uint8_t in[16384];
        ssize_t r = ibstack_conn_recv(b, in, sizeof in);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++)
                if (in[i] != rc_byte(got + (uint64_t)i)) return -2;
            got += (uint64_t)r;
        } else if (r != -EAGAIN) return -3;
    }
    return (long long)got;
}

static void rxcap(int srq) {
    static const char *const opts[] = {"ibstack_max_rx_per_conn", "64", "ms_async_rdma_receive_buffers", "2048", NULL};
    ibstack_config *cfg;
    ibstack_listener *l;
    ibstack_conn *c[2], *a[2];
    ibstack_stack *s = pairs_open(srq, opts, 2, &cfg, &l, c, a);
    ibstack_mem_stats m0;
    ibstack_stack_mem_stats(s, &m0);

    /* the slow reader: a[0] never reads while c[0] sends as much as it can */
    static uint8_t buf[16384];
    uint64_t sent = 0;
    double last_progress = now_s(), t0 = now_s();
    int failed = 0;
    while (now_s() - last_progress < 1.5 && now_s() - t0 < 60) {
        for (size_t i = 0; i < sizeof buf; i++) buf[i] = rc_byte(sent + i);
        ssize_t r = ibstack_conn_send(c[0], buf, sizeof buf);
        if (r > 0) {
            sent += (uint64_t)r;
            last_progress = now_s();
        } else if (r == -EAGAIN) {
            usleep(1000);
        } else {
            failed = 1;
            break;
        }
        if (srq && ibstack_conn_is_connected(a[0]) < 0) break;
    }
    ibstack_mem_stats m1;
    ibstack_stack_mem_stats(s, &m1);
    long long extra = (long long)m1.rx_in_use - (long long)m0.rx_in_use;
    printf("# saw: the sender got %llu bytes (%llu buffers) accepted before stalling; RX in use %llu -> %llu (pool limit %llu)\n",
           (unsigned long long)sent, (unsigned long long)(sent / 16384), (unsigned long long)m0.rx_in_use,
           (unsigned long long)m1.rx_in_use, (unsigned long long)m1.rx_limit);
    if (!srq) {
        CHECK(!failed && ibstack_conn_is_connected(c[0]) == 1 && ibstack_conn_is_connected(a[0]) == 1,
              "per-QP RQ: the stopped reader's sender stalls without an error");
        CHECK(extra <= 64 + 128 + 8, "the stopped reader holds at most the cap plus its receive queue (%lld more buffers in use)", extra);
    } else {
        CHECK(faulted_with(a[0], "ibstack_max_rx_per_conn"), "SRQ: the connection past the cap fails naming the option");
        char m[512];
        ibstack_conn_error_message(a[0], m, sizeof m);
        CHECK(strstr(m, "ENOBUFS") != NULL, "with ENOBUFS: %s", m);
        CHECK(extra <= 64 + 8, "and held no more than the cap (%lld more buffers in use)", extra);
    }
    long long moved = move_bytes(c[1], a[1], 4 << 20, 30);
    CHECK(moved == 4 << 20, "another connection of the stack moves 4 MiB meanwhile, checked (%lld)", moved);
    if (!srq) {
        /* the reader resumes: everything the sender had accepted arrives, in order */
        uint64_t got = 0;
        int bad = 0;
        uint8_t in[16384];
        for (double end = now_s() + 60; got < sent && now_s() < end;) {
            ssize_t r = ibstack_conn_recv(a[0], in, sizeof in);
            if (r > 0) {
                for (ssize_t i = 0; i < r; i++) bad += in[i] != rc_byte(got + (uint64_t)i);
                got += (uint64_t)r;
            } else if (r != -EAGAIN) break;
            else usleep(500);
        }
        CHECK(got == sent && bad == 0, "the reader resumes and gets every byte in order (%llu of %llu, %d wrong)",
              (unsigned long long)got, (unsigned long long)sent, bad);
        long long more = move_bytes(c[0], a[0], 2 << 20, 30);
        CHECK(more == 2 << 20, "and the connection flows again (%lld bytes)", more);
    }
    for (int i = 0; i < 2; i++) {
        ibstack_conn_close(c[i]);
        ibstack_conn_close(a[i]);
    }
    wait_retired(s, "rxcap");
    ibstack_mem_stats m2;
    ibstack_stack_mem_stats(s, &m2);
    CHECK(m2.rx_in_use <= m0.rx_in_use, "RX buffers back (%llu in use)", (unsigned long long)m2.rx_in_use);
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    ibstack_config_free(cfg);
}

static void forkmode(int srq) {
    ibstack_config *cfg;
    ibstack_listener *l;
    ibstack_conn *c, *a;
    ibstack_stack *s = pairs_open(srq, NULL, 1, &cfg, &l, &c, &a);
    CHECK_RC(pair_roundtrip(c, a, "before fork"), 0, "data moves before the fork");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(30); /* a hang is a failure too */
        int bad = 0;
        ssize_t r = ibstack_conn_send(c, "from the child", 14);
        if (r != -ECHILD) printf("not ok - child: ibstack_conn_send on the parent's connection gave %zd\n", r), bad++;
        else printf("ok - child: ibstack_conn_send on the parent's connection is -ECHILD: %s\n", h_last_error());
        char buf[64];
        r = ibstack_conn_recv(a, buf, sizeof buf);
        if (r != -ECHILD) printf("not ok - child: ibstack_conn_recv gave %zd\n", r), bad++;
        else printf("ok - child: ibstack_conn_recv is -ECHILD\n");
        if (ibstack_stack_poll(s) != -ECHILD) printf("not ok - child: ibstack_stack_poll is not -ECHILD\n"), bad++;
        else printf("ok - child: ibstack_stack_poll is -ECHILD\n");
        ibstack_conn_close(c);
        ibstack_conn_close(a);
        ibstack_listener_free(l);
        ibstack_stack_free(s); /* ignored: tearing down the parent's QPs through the shared device fd would break it */
        printf("ok - child: the frees of the parent's objects returned\n");
        fflush(stdout);
        _exit(bad ? 1 : 0);
    }
    int st = -1;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "the child saw -ECHILD everywhere and exited (status %d)", st);
    CHECK_RC(ibstack_conn_is_connected(c), 1, "parent: the connection is still connected");
    CHECK_RC(pair_roundtrip(c, a, "after the child"), 0, "parent: data still moves, the child's bytes never arrived");
    CHECK_RC(pair_roundtrip(a, c, "and back"), 0, "parent: in both directions");
    ibstack_conn_close(c);
    ibstack_conn_close(a);
    wait_retired(s, "parent");
    ibstack_listener_free(l);
    ibstack_stack_free(s);
    ibstack_config_free(cfg);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s inject|rawpeer|chunks|sizes|stackfree|asyncev|logcb|pollpanic|fork|rxcap|closerace srq|nosrq [N]\n", argv[0]);
        return 2;
    }
    (void)consume;
    int srq = strcmp(argv[2], "srq") == 0;
    if (!strcmp(argv[1], "inject")) inject(srq);
    else if (!strcmp(argv[1], "rawpeer")) rawpeer(srq);
    else if (!strcmp(argv[1], "chunks")) chunks(srq);
    else if (!strcmp(argv[1], "dispfree")) dispfree(srq);
    else if (!strcmp(argv[1], "sizes")) sizes(srq);
    else if (!strcmp(argv[1], "stackfree")) stackfree(srq);
    else if (!strcmp(argv[1], "asyncev")) asyncev(srq);
    else if (!strcmp(argv[1], "logcb")) logcb(srq);
    else if (!strcmp(argv[1], "pollpanic")) pollpanic(srq);
    else if (!strcmp(argv[1], "fork")) forkmode(srq);
    else if (!strcmp(argv[1], "rxcap")) rxcap(srq);
    else if (!strcmp(argv[1], "closerace")) closerace(srq, argc > 3 ? atol(argv[3]) : 10000);
    else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    DONE();
}
