/* Tier B (Soft-RoCE VM): the TX cluster and RX pool register real MRs on
 * rxe0, and their lkeys carry a loopback RC SEND/RECV (raw verbs on the
 * library's PD). RX exhaustion and recovery; huge pages or their fallback.
 * usage: test_mem_rxe [expect-huge] */
#include "harness.h"
#include <infiniband/verbs.h>
#include <stdint.h>

#define BS (128 * 1024)

static int count_lines(const char *cmd, const char *needle) {
    char line[512];
    int n = 0;
    FILE *p = popen(cmd, "r");
    while (p && fgets(line, sizeof line, p))
        if (strstr(line, needle)) n++;
    if (p) pclose(p);
    return n;
}

static int connect_qp(struct ibv_qp *qp, uint32_t remote_qpn, const uint8_t gid[16]) {
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_INIT;
    a.port_num = 1;
    a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) return -1;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = IBV_MTU_1024;
    a.dest_qp_num = remote_qpn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 18;
    a.ah_attr.is_global = 1;
    memcpy(&a.ah_attr.grh.dgid, gid, 16);
    a.ah_attr.grh.sgid_index = 1;
    a.ah_attr.grh.hop_limit = 6;
    a.ah_attr.port_num = 1;
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
        return -2;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 18;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.max_rd_atomic = 1;
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                  IBV_QP_MAX_QP_RD_ATOMIC))
        return -3;
    return 0;
}

/* SEND `len` pattern bytes from tx through qp_a, receive into rx on qp_b; verify */
static int loopback(struct ibv_cq *cq, struct ibv_qp *qa, struct ibv_qp *qb, ibstack_chunk *tx, ibstack_chunk *rx,
                    uint32_t len, unsigned seed) {
    unsigned char *pat = malloc(len), *got = malloc(len);
    for (uint32_t i = 0; i < len; i++) pat[i] = (unsigned char)(seed + i * 7);
    ibstack_chunk_reset_write(tx);
    if (ibstack_chunk_write(tx, pat, len) != len) return -1;
    struct ibv_sge rs = {(uintptr_t)ibstack_chunk_buffer(rx), ibstack_chunk_capacity(rx), ibstack_chunk_lkey(rx)};
    struct ibv_recv_wr rwr = {.wr_id = (uintptr_t)rx, .sg_list = &rs, .num_sge = 1}, *bad_r;
    if (ibv_post_recv(qb, &rwr, &bad_r)) return -2;
    struct ibv_sge ss = {(uintptr_t)ibstack_chunk_buffer(tx), ibstack_chunk_offset(tx), ibstack_chunk_lkey(tx)};
    struct ibv_send_wr swr = {.wr_id = (uintptr_t)tx, .sg_list = &ss, .num_sge = 1, .opcode = IBV_WR_SEND,
                              .send_flags = IBV_SEND_SIGNALED}, *bad_s;
    if (ibv_post_send(qa, &swr, &bad_s)) return -3;
    int seen = 0, rc = 0;
    for (long spins = 0; seen < 2 && spins < 200000000L; spins++) {
        struct ibv_wc wc;
        int n = ibv_poll_cq(cq, 1, &wc);
        if (n < 0) return -4;
        if (n == 0) continue;
        seen++;
        if (wc.status != IBV_WC_SUCCESS) {
            printf("# completion error %s (wr_id %llx)\n", ibv_wc_status_str(wc.status), (unsigned long long)wc.wr_id);
            rc = -5;
        } else if (wc.opcode == IBV_WC_RECV) {
            if (wc.wr_id != (uintptr_t)rx || wc.byte_len != len) rc = -6;
            ibstack_chunk_prepare_read(rx, wc.byte_len);
        }
    }
    if (seen < 2) return -7;
    if (ibstack_chunk_read(rx, got, len) != len || memcmp(pat, got, len) != 0) rc = -8;
    free(pat);
    free(got);
    return rc;
}

int main(int argc, char **argv) {
    int expect_huge = argc > 1 && strcmp(argv[1], "expect-huge") == 0;
    ibstack_config *cfg = NULL;
    ibstack_config_new(&cfg);
    ibstack_config_set(cfg, "ms_async_rdma_device_name", "rxe0");
    ibstack_config_set(cfg, "ms_async_rdma_gid_idx", "1");
    ibstack_config_set(cfg, "ms_async_rdma_send_buffers", "64");
    ibstack_config_set(cfg, "ms_async_rdma_receive_buffers", "96");
    ibstack_config_set(cfg, "ms_async_rdma_receive_queue_len", "32");
    ibstack_config_set(cfg, "ibstack_rx_first_block", "32");
    ibstack_config_set(cfg, "ms_async_rdma_enable_hugepage", "true");
    CHECK_RC(ibstack_global_init(cfg), 0, "global_init (hugepages enabled)");
    CHECK(getenv("RDMAV_HUGEPAGES_SAFE") && strcmp(getenv("RDMAV_HUGEPAGES_SAFE"), "1") == 0,
          "RDMAV_HUGEPAGES_SAFE=1 set before registration");
    ibstack_ib *ib = NULL;
    CHECK_RC(ibstack_ib_new(cfg, &ib), 0, "ib_new");
    if (!ib) return 1;
    ibstack_ib_info info;
    ibstack_ib_query(ib, &info);

    const char *mr_cmd = "rdma resource show mr 2>&1";
    int mrs_before = count_lines(mr_cmd, "comm test_mem_rxe");
    ibstack_mem_mgr *mm = NULL;
    CHECK_RC(ibstack_mem_mgr_new(ib, &mm), 0, "mem_mgr_new registers the TX cluster");
    if (!mm) return 1;
    ibstack_mem_stats st;
    ibstack_mem_mgr_stats(mm, &st);
    CHECK(st.tx_total == 64 && st.tx_free == 64 && st.rx_allocated == 0 && st.registrations == 1,
          "TX: 64 chunks in one registration, RX not yet registered");
    CHECK(st.bytes_pinned >= 64ull * BS, "bytes pinned %llu", (unsigned long long)st.bytes_pinned);
    if (expect_huge)
        CHECK(st.hugepage_bytes >= 64ull * BS, "TX cluster on huge pages (%llu bytes)", (unsigned long long)st.hugepage_bytes);
    else
        CHECK(st.hugepage_bytes == 0, "no huge pages reserved: fell back to normal pages");
    CHECK(count_lines(mr_cmd, "comm test_mem_rxe") == mrs_before + 1, "the kernel lists one MR for the TX cluster");

    ibstack_chunk *tx[4];
    size_t n = 0;
    CHECK_RC(ibstack_mem_mgr_get_tx_chunks(mm, 3 * BS - 1, tx, 4, &n), 0, "get_tx_chunks");
    CHECK(n == 3, "ceil((3 x 128K - 1) / 128K) = 3 chunks (%zu)", n);
    ibstack_chunk *last = ibstack_mem_mgr_tx_chunk_by_buffer(mm, (char *)ibstack_chunk_buffer(tx[0]));
    CHECK(last == tx[0], "tx_chunk_by_buffer finds the chunk");
    CHECK(ibstack_mem_mgr_is_tx_buffer(mm, ibstack_chunk_buffer(tx[2])), "is_tx_buffer");

    ibstack_chunk *rx[96];
    CHECK_RC(ibstack_mem_mgr_get_rx_chunk(mm, &rx[0]), 0, "get_rx_chunk registers the first RX block");
    ibstack_mem_mgr_stats(mm, &st);
    CHECK(st.rx_allocated == 32 && st.rx_blocks == 1, "first RX block = ibstack_rx_first_block (32)");
    CHECK(count_lines(mr_cmd, "comm test_mem_rxe") == mrs_before + 2, "the kernel lists the RX block's MR");

    /* lkeys work: raw RC loopback on the library's PD */
    struct ibv_pd *pd = ibstack_ib_pd_raw(ib);
    CHECK(pd != NULL, "ib_pd_raw");
    struct ibv_cq *cq = ibv_create_cq(pd->context, 64, NULL, NULL, 0);
    struct ibv_qp_init_attr qa = {.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
                                  .cap = {.max_send_wr = 8, .max_recv_wr = 8, .max_send_sge = 1, .max_recv_sge = 1}};
    struct ibv_qp *q1 = ibv_create_qp(pd, &qa), *q2 = ibv_create_qp(pd, &qa);
    CHECK(cq && q1 && q2, "raw CQ and two RC QPs on the library's PD");
    CHECK(connect_qp(q1, q2->qp_num, info.gid) == 0 && connect_qp(q2, q1->qp_num, info.gid) == 0, "QPs connected");
    CHECK_RC(loopback(cq, q1, q2, tx[0], rx[0], 100000, 1), 0, "SEND TX chunk 0 -> RX chunk: data intact");
    CHECK_RC(loopback(cq, q2, q1, tx[2], rx[0], BS, 2), 0, "SEND a full 128 KiB chunk: data intact");
    /* RX chunks of a later block and the last TX chunk of the region */
    for (int i = 1; i < 40; i++) ibstack_mem_mgr_get_rx_chunk(mm, &rx[i]);
    ibstack_mem_mgr_stats(mm, &st);
    CHECK(st.rx_blocks == 2 && st.rx_allocated == 96, "second RX block doubles, capped by the limit (32 + 64)");
    ibstack_chunk *all[64];
    size_t m = 0;
    ibstack_mem_mgr_get_tx_chunks(mm, 61 * (size_t)BS, all, 64, &m);
    CHECK(m == 61, "the remaining 61 TX chunks");
    CHECK_RC(loopback(cq, q1, q2, all[60], rx[39], 4096, 3), 0, "SEND from another TX chunk into an RX chunk of block 2");
    ibstack_mem_mgr_return_tx(mm, all, m);

    /* RX exhaustion and recovery */
    for (int i = 40; i < 96; i++) CHECK_RC(ibstack_mem_mgr_get_rx_chunk(mm, &rx[i]), 0, "rx chunk %d", i);
    ibstack_chunk *extra = NULL;
    CHECK_RC(ibstack_mem_mgr_get_rx_chunk(mm, &extra), -ENOBUFS, "RX pool exhausted at the limit");
    CHECK_MSG_HAS("allocated 96, requested 1 more, limit 96", "message gives allocated, requested and limit");
    CHECK_RC(ibstack_mem_mgr_release_rx_chunk(mm, rx[5]), 0, "release one");
    CHECK_RC(ibstack_mem_mgr_get_rx_chunk(mm, &extra), 0, "get succeeds after the release");
    CHECK(extra == rx[5], "the released chunk is reused");
    CHECK_RC(ibstack_mem_mgr_release_rx_chunk(mm, tx[0]), -EINVAL, "a TX chunk is not an RX chunk");

    /* cleanup: everything back */
    ibv_destroy_qp(q1);
    ibv_destroy_qp(q2);
    ibv_destroy_cq(cq);
    for (int i = 0; i < 96; i++) ibstack_mem_mgr_release_rx_chunk(mm, rx[i]);
    CHECK_RC(ibstack_mem_mgr_return_tx(mm, tx, 3), 0, "return_tx");
    CHECK_RC(ibstack_mem_mgr_return_tx(mm, tx, 1), -EINVAL, "returning twice is rejected");
    CHECK_MSG_HAS("returned twice", "message says returned twice");
    ibstack_mem_mgr_stats(mm, &st);
    CHECK(st.tx_in_use == 0 && st.rx_in_use == 0, "pools back to zero in use");
    char json[1024];
    CHECK(ibstack_mem_mgr_stats_json(mm, json, sizeof json) > 0 && strstr(json, "\"rx_allocated\":96"), "stats JSON");
    printf("# stats: %s\n", json);
    ibstack_mem_mgr_free(mm);
    CHECK(count_lines(mr_cmd, "comm test_mem_rxe") == mrs_before, "every MR deregistered after mem_mgr_free");
    ibstack_ib_free(ib);
    ibstack_config_free(cfg);
    DONE();
}
