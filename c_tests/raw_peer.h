/* A peer written on libibverbs alone that speaks Ceph's async+rdma wire format by hand:
 * its own context, PD, CQ and RC QP on rxe0, the 65-byte cm_meta records over a TCP
 * socket (encoded with ibstack_cm_meta_encode), then one RECV per SEND into buffers of
 * its own. Used where a test must see exactly what goes on the wire (SEND sizes, the
 * zero-length close SEND) or must play a peer that misbehaves. Link with -libverbs. */
#ifndef IBSTACK_TEST_RAW_PEER_H
#define IBSTACK_TEST_RAW_PEER_H

#include "qp_util.h"

#include <infiniband/verbs.h>
#include <stdlib.h>

typedef struct {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    struct ibv_mr *mr;
    uint8_t *buf; /* nbuf receive buffers of bufsize bytes (buffer 0 also serves for sending) */
    size_t bufsize;
    unsigned nbuf;
    unsigned initial_recv; /* receives raw_accept_step posts (buffers 0..n-1); 0 = all nbuf */
    union ibv_gid gid;
} raw_peer;

/* rxe0, PD, one CQ for both queues, an RC QP in INIT with room for `nbuf` receives, the
 * buffers registered for local access only (no remote write); GID index 1 (the IPv4 GID) */
static inline int raw_open(raw_peer *p, unsigned nbuf, size_t bufsize) {
    memset(p, 0, sizeof *p);
    p->nbuf = nbuf;
    p->bufsize = bufsize;
    p->buf = calloc(nbuf, bufsize);
    if (!p->buf) return -ENOMEM;
    int n = 0;
    struct ibv_device **l = ibv_get_device_list(&n);
    for (int i = 0; l && i < n; i++)
        if (!strcmp(ibv_get_device_name(l[i]), "rxe0")) p->ctx = ibv_open_device(l[i]);
    if (l) ibv_free_device_list(l);
    if (!p->ctx) return -1;
    p->pd = ibv_alloc_pd(p->ctx);
    p->cq = p->pd ? ibv_create_cq(p->ctx, (int)nbuf + 64, NULL, NULL, 0) : NULL;
    if (!p->cq) return -2;
    struct ibv_qp_init_attr ia = {.send_cq = p->cq, .recv_cq = p->cq, .qp_type = IBV_QPT_RC,
                                  .cap = {.max_send_wr = 16, .max_recv_wr = nbuf, .max_send_sge = 1, .max_recv_sge = 1}};
    p->qp = ibv_create_qp(p->pd, &ia);
    p->mr = p->qp ? ibv_reg_mr(p->pd, p->buf, (size_t)nbuf * bufsize, IBV_ACCESS_LOCAL_WRITE) : NULL;
    if (!p->mr || ibv_query_gid(p->ctx, 1, 1, &p->gid)) return -3;
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = IBV_ACCESS_LOCAL_WRITE};
    return ibv_modify_qp(p->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS) ? -4 : 0;
}

/* RTR towards the QP the peer's record `m` describes, then RTS starting at `psn`
 * (Ceph's settings: MTU 1024 here, min RNR timer 18, timeout 14, retry 3, RNR retry 7) */
static inline int raw_connect(raw_peer *p, const ibstack_cm_meta *m, uint32_t psn) {
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = IBV_MTU_1024;
    a.dest_qp_num = m->local_qpn;
    a.rq_psn = m->psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 18;
    a.ah_attr.is_global = 1;
    memcpy(&a.ah_attr.grh.dgid, m->gid, 16);
    a.ah_attr.grh.sgid_index = 1;
    a.ah_attr.grh.hop_limit = 6;
    a.ah_attr.port_num = 1;
    if (ibv_modify_qp(p->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                     IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
        return -1;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 14;
    a.retry_cnt = 3;
    a.rnr_retry = 7;
    a.sq_psn = psn;
    a.max_rd_atomic = 1;
    return ibv_modify_qp(p->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                        IBV_QP_MAX_QP_RD_ATOMIC)
               ? -2
               : 0;
}

/* posts receive buffer `i` (wr_id i) */
static inline int raw_post_recv(raw_peer *p, unsigned i) {
    struct ibv_sge sge = {(uintptr_t)(p->buf + (size_t)i * p->bufsize), (uint32_t)p->bufsize, p->mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = i, .sg_list = &sge, .num_sge = 1}, *bad;
    return ibv_post_recv(p->qp, &wr, &bad);
}

/* One poll of the peer's CQ. An error completion is counted in *errors (the first three are
 * printed) and skipped; a send completion calls on_send (may be NULL); a receive calls on_recv
 * with its bytes (len 0: a close SEND), then its buffer is posted again. Returns how many
 * completions there were. */
static inline int raw_poll(raw_peer *p, uint64_t *errors, void *ctx, void (*on_recv)(void *ctx, const uint8_t *data, uint32_t len),
                           void (*on_send)(void *ctx)) {
    struct ibv_wc wc[32];
    int n = ibv_poll_cq(p->cq, 32, wc);
    for (int i = 0; i < n; i++) {
        if (wc[i].status != IBV_WC_SUCCESS) {
            if ((*errors)++ < 3) printf("# raw peer completion %s (opcode %d)\n", ibv_wc_status_str(wc[i].status), wc[i].opcode);
            continue;
        }
        if (!(wc[i].opcode & IBV_WC_RECV)) {
            if (on_send) on_send(ctx);
            continue;
        }
        unsigned b = (unsigned)wc[i].wr_id;
        on_recv(ctx, p->buf + (size_t)b * p->bufsize, wc[i].byte_len);
        if (raw_post_recv(p, b) && (*errors)++ < 3) printf("# raw peer: ibv_post_recv failed\n");
    }
    return n;
}

static inline void raw_close(raw_peer *p) {
    if (p->qp) ibv_destroy_qp(p->qp);
    if (p->mr) ibv_dereg_mr(p->mr);
    if (p->cq) ibv_destroy_cq(p->cq);
    if (p->pd) ibv_dealloc_pd(p->pd);
    if (p->ctx) ibv_close_device(p->ctx);
    free(p->buf);
    memset(p, 0, sizeof *p);
}

/* this peer's cm_meta record: its QP, `psn`, its GID, and the peer's QPN (0 in record #1) */
static inline int raw_record(const raw_peer *p, uint32_t psn, uint32_t peer_qpn, char rec[65]) {
    ibstack_cm_meta me = {.lid = 0, .local_qpn = p->qp->qp_num, .psn = psn, .peer_qpn = peer_qpn};
    memcpy(me.gid, p->gid.raw, 16);
    return ibstack_cm_meta_encode(&me, rec, 65) < 0 ? -1 : 0;
}

/* The acceptor's side of the exchange on a connected TCP socket `fd`, one step per call so
 * the caller can drive a host-driven stack in between: read record #1, go to RTS with every
 * receive buffer posted (or the first `initial_recv`), send record #2, read record #3. *stage starts at 0; returns 1 when
 * done, 0 to be called again, <0 on a failure. */
typedef struct {
    int stage;
    size_t have;
    char got[65];
} raw_accept_state;

static inline int raw_accept_step(raw_peer *p, int fd, raw_accept_state *s) {
    const uint32_t psn = 0x654321;
    ssize_t k = recv(fd, s->got + s->have, sizeof s->got - s->have, MSG_DONTWAIT);
    if (k == 0) return -EPIPE;
    if (k < 0) return errno == EAGAIN ? 0 : -errno;
    s->have += (size_t)k;
    if (s->have < sizeof s->got) return 0;
    ibstack_cm_meta m;
    if (ibstack_cm_meta_decode(s->got, sizeof s->got, &m)) return -EPROTO;
    s->have = 0;
    if (s->stage == 1) return m.peer_qpn == p->qp->qp_num ? 1 : -EPROTO;
    if (m.peer_qpn != 0) return -EPROTO;
    unsigned n = p->initial_recv && p->initial_recv < p->nbuf ? p->initial_recv : p->nbuf;
    for (unsigned i = 0; i < n; i++)
        if (raw_post_recv(p, i)) return -EIO;
    if (raw_connect(p, &m, psn)) return -EIO;
    char rec[65];
    if (raw_record(p, psn, m.local_qpn, rec) || send(fd, rec, sizeof rec, 0) != (ssize_t)sizeof rec) return -EIO;
    s->stage = 1;
    return 0;
}

#endif
