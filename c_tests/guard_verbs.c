/* guard_verbs: a plain libibverbs program (no ibstack) that makes the calls the
 * guard (libibstack_preload.so) watches, the way Ceph makes them: through the
 * PLT for ibv_modify_qp, inline (the context's ops table) for ibv_post_send.
 * Run by scripts/guard-vm with and without LD_PRELOAD of the guard.
 *
 *   guard_verbs mtu     INIT->RTR with path MTU 4096 on rxe0 (active MTU 1024);
 *                       prints the return value of ibv_modify_qp
 *   guard_verbs errno   an RC QP in RTS on itself, a chain of sends far longer
 *                       than its send queue posted in one ibv_post_send after
 *                       errno = EINPROGRESS; prints "post_send returned R errno E"
 *   guard_verbs bigcq   ibv_create_cq with twice the device's max_cqe; prints the outcome
 *
 * Exit status: 0 when the call was made as described, 3 when the situation could
 * not be set up (device, QP), 4 when the long chain was accepted (no failure). */
#define _GNU_SOURCE
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rig {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    union ibv_gid gid;
};

static int fail(const char *what) {
    fprintf(stderr, "guard_verbs: %s failed: errno %d (%s)\n", what, errno, strerror(errno));
    return 3;
}

static int open_rig(struct rig *r, uint32_t send_wr) {
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0) return fail("ibv_get_device_list");
    for (int i = 0; i < n && !r->ctx; i++)
        if (!strcmp(ibv_get_device_name(list[i]), "rxe0")) r->ctx = ibv_open_device(list[i]);
    ibv_free_device_list(list);
    if (!r->ctx) return fail("ibv_open_device(rxe0)");
    if (ibv_query_gid(r->ctx, 1, 1, &r->gid)) return fail("ibv_query_gid(1)");
    if (!(r->pd = ibv_alloc_pd(r->ctx))) return fail("ibv_alloc_pd");
    if (!(r->cq = ibv_create_cq(r->ctx, 64, NULL, NULL, 0))) return fail("ibv_create_cq");
    struct ibv_qp_init_attr ia = {
        .send_cq = r->cq, .recv_cq = r->cq, .qp_type = IBV_QPT_RC,
        .cap = {.max_send_wr = send_wr, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1},
    };
    if (!(r->qp = ibv_create_qp(r->pd, &ia))) return fail("ibv_create_qp");
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1,
                            .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE};
    int rc = ibv_modify_qp(r->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc) { errno = rc; return fail("ibv_modify_qp(INIT)"); }
    return 0;
}

/* INIT->RTR onto the QP itself, with Ceph's attributes and the given path MTU */
static int to_rtr(struct rig *r, enum ibv_mtu mtu) {
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = mtu;
    a.dest_qp_num = r->qp->qp_num;
    a.rq_psn = 0;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 0x12;
    a.ah_attr.is_global = 1;
    a.ah_attr.grh.dgid = r->gid;
    a.ah_attr.grh.sgid_index = 1;
    a.ah_attr.grh.hop_limit = 6;
    a.ah_attr.grh.traffic_class = 96;
    a.ah_attr.sl = 3;
    a.ah_attr.port_num = 1;
    return ibv_modify_qp(r->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                        IBV_QP_RQ_PSN | IBV_QP_MIN_RNR_TIMER | IBV_QP_MAX_DEST_RD_ATOMIC);
}

static int mode_mtu(void) {
    struct rig r = {0};
    int rc = open_rig(&r, 16);
    if (rc) return rc;
    rc = to_rtr(&r, IBV_MTU_4096);
    printf("ibv_modify_qp(INIT->RTR, path_mtu 4096) returned %d\n", rc);
    return 0;
}

static int mode_errno(void) {
    struct rig r = {0};
    int rc = open_rig(&r, 4);
    if (rc) return rc;
    if ((rc = to_rtr(&r, IBV_MTU_1024))) { errno = rc; return fail("ibv_modify_qp(RTR)"); }
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTS, .timeout = 0x12, .retry_cnt = 7, .rnr_retry = 7,
                            .sq_psn = 0, .max_rd_atomic = 1};
    rc = ibv_modify_qp(r.qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                                       IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc) { errno = rc; return fail("ibv_modify_qp(RTS)"); }
    enum { N = 512 };
    static struct ibv_send_wr wr[N];
    for (int i = 0; i < N; i++) {
        wr[i].wr_id = (uint64_t)i;
        wr[i].opcode = IBV_WR_SEND;
        wr[i].send_flags = IBV_SEND_SIGNALED;
        wr[i].num_sge = 0;
        wr[i].next = i + 1 < N ? &wr[i + 1] : NULL;
    }
    struct ibv_send_wr *bad = NULL;
    errno = EINPROGRESS; /* what a failed non-blocking connect left behind in Ceph */
    rc = ibv_post_send(r.qp, wr, &bad);
    int e = errno;
    printf("post_send returned %d errno %d (%s); bad_wr %ld of %d\n", rc, e, strerror(e),
           bad ? (long)(bad - wr) : -1L, N);
    return rc ? 0 : 4;
}

static int mode_bigcq(void) {
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0) return fail("ibv_get_device_list");
    struct ibv_context *ctx = ibv_open_device(list[0]);
    ibv_free_device_list(list);
    if (!ctx) return fail("ibv_open_device");
    struct ibv_device_attr a;
    if (ibv_query_device(ctx, &a)) return fail("ibv_query_device");
    struct ibv_cq *cq = ibv_create_cq(ctx, 2 * a.max_cqe, NULL, NULL, 0);
    printf("ibv_create_cq(%d entries, max_cqe %d): %s\n", 2 * a.max_cqe, a.max_cqe, cq ? "created" : strerror(errno));
    if (cq) ibv_destroy_cq(cq);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "mtu")) return mode_mtu();
    if (argc == 2 && !strcmp(argv[1], "errno")) return mode_errno();
    if (argc == 2 && !strcmp(argv[1], "bigcq")) return mode_bigcq();
    fprintf(stderr, "usage: %s mtu | errno | bigcq\n", argv[0]);
    return 2;
}
