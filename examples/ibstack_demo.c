/* ibstack demo: list the RDMA devices, open one through ibstack (Ceph's
 * option names), print its port, GID and limits; then connect two queue pairs
 * with Ceph's cm_meta handshake over a TCP loopback connection, exchange
 * messages, close one side, drain both and print the counters and the QP
 * history. Built with `pkg-config --cflags --libs ibstack`.
 * usage: ibstack_demo [ceph.conf [section]] */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ibstack.h>

static int fail(const char *what, int rc) {
    char msg[2048];
    ibstack_last_error_message(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s\n  %s\n", what, ibstack_strerror(rc), msg);
    return 1;
}

/* a connected TCP loopback pair, both ends non-blocking */
static int tcp_pair(int *c, int *a) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&sa, &len))
        return -1;
    *c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*c, (struct sockaddr *)&sa, sizeof sa)) return -1;
    *a = accept(l, NULL, NULL);
    close(l);
    fcntl(*c, F_SETFL, O_NONBLOCK);
    fcntl(*a, F_SETFL, O_NONBLOCK);
    return *a < 0 ? -1 : 0;
}

/* copies text into TX chunks and posts them on qp */
static int send_text(ibstack_mem_mgr *mm, ibstack_qp *qp, const char *text) {
    ibstack_chunk *ch[8];
    size_t n = 0, len = strlen(text), posted = 0;
    int rc = ibstack_mem_mgr_get_tx_chunks(mm, len, ch, 8, &n);
    if (rc) return rc;
    ibstack_chunk_write(ch[0], text, len);
    rc = ibstack_qp_post_send(qp, ch, n, &posted);
    if (rc) ibstack_mem_mgr_return_tx(mm, ch + posted, n - posted);
    return rc;
}

/* polls the dispatcher until one receive arrives; prints it; returns its length */
static int receive_one(ibstack_dispatcher *d, ibstack_qp *a, ibstack_qp *b) {
    ibstack_wc wc;
    for (int spins = 0; spins < 10000000; spins++) {
        int n = ibstack_dispatcher_poll(d, &wc, 1);
        if (n < 0) return n;
        if (n == 0) continue;
        if (wc.status != 0) {
            printf("  completion error on QP %u: %s\n", wc.qp_num, ibstack_wc_status_str(wc.status));
            return -EIO;
        }
        ibstack_chunk *c = (ibstack_chunk *)(uintptr_t)wc.wr_id;
        char buf[256] = {0};
        ibstack_chunk_read(c, buf, sizeof buf - 1);
        const char *who = wc.qp_num == ibstack_qp_num(a) ? "A" : wc.qp_num == ibstack_qp_num(b) ? "B" : "?";
        if (wc.byte_len == 0)
            printf("  QP %s (%u) received the zero-length close SEND: the peer closed\n", who, wc.qp_num);
        else
            printf("  QP %s (%u) received %u bytes: \"%s\"\n", who, wc.qp_num, wc.byte_len, buf);
        ibstack_dispatcher_release_rx(d, c);
        return (int)wc.byte_len;
    }
    return -ETIMEDOUT;
}

static int queue_pairs(ibstack_ib *ib) {
    int rc;
    ibstack_mem_mgr *mm = NULL;
    ibstack_dispatcher *d = NULL;
    ibstack_qp *a = NULL, *b = NULL;
    if ((rc = ibstack_mem_mgr_new(ib, &mm))) return fail("ibstack_mem_mgr_new", rc);
    if ((rc = ibstack_dispatcher_new(ib, mm, &d))) return fail("ibstack_dispatcher_new", rc);
    if ((rc = ibstack_qp_new(d, &a)) || (rc = ibstack_qp_new(d, &b))) return fail("ibstack_qp_new", rc);
    printf("\nqueue pairs: A = QP %u, B = QP %u (state %s)\n", ibstack_qp_num(a), ibstack_qp_num(b),
           ibstack_qp_state_str(ibstack_qp_state(a)));
    int fa, fb;
    if (tcp_pair(&fa, &fb)) return fail("TCP loopback pair", -errno);
    /* A connects, B accepts; drive both non-blocking handshakes in turn */
    int da = 0, db = 0;
    while (!(da && db)) {
        if (!da && (da = ibstack_qp_handshake_step(a, fa, IBSTACK_ROLE_CONNECTOR)) < 0)
            return fail("handshake (A)", da);
        if (!db && (db = ibstack_qp_handshake_step(b, fb, IBSTACK_ROLE_ACCEPTOR)) < 0)
            return fail("handshake (B)", db);
    }
    ibstack_cm_meta m;
    char rec[65];
    ibstack_qp_local_meta(a, &m);
    ibstack_cm_meta_encode(&m, rec, sizeof rec);
    printf("  A's first cm_meta record on the TCP socket: \"%s\"\n", rec);
    printf("  handshake done: A %s, B %s\n", ibstack_qp_state_str(ibstack_qp_state(a)),
           ibstack_qp_state_str(ibstack_qp_state(b)));

    const char *msgs[][2] = {{"A", "hello from A"}, {"B", "hello back from B"}, {"A", "bye"}};
    for (int i = 0; i < 3; i++) {
        ibstack_qp *from = msgs[i][0][0] == 'A' ? a : b;
        if ((rc = send_text(mm, from, msgs[i][1]))) return fail("send", rc);
        if ((rc = receive_one(d, a, b)) < 0) return fail("receive", rc);
    }
    printf("  A closes: close SEND, then to_dead (ERR + beacon)\n");
    if ((rc = ibstack_qp_post_fin(a))) return fail("ibstack_qp_post_fin", rc);
    if ((rc = receive_one(d, a, b)) < 0) return fail("receive", rc);
    ibstack_qp_free(a);
    printf("  B sees the close and retires its QP too\n");
    ibstack_qp_free(b);
    close(fa);
    close(fb);
    ibstack_wc wc[8];
    for (int spins = 0; ibstack_dispatcher_qp_count(d) > 0 && spins < 10000000; spins++) ibstack_dispatcher_poll(d, wc, 8);
    printf("  drained: %d QPs left\n", ibstack_dispatcher_qp_count(d));

    static char json[1 << 16];
    ibstack_dispatcher_counters_json(d, json, sizeof json);
    printf("\ncounters: %s\n", json);
    ibstack_qp_history_json(d, json, sizeof json);
    printf("\nQP history: %s\n", json);
    ibstack_mem_stats s;
    ibstack_mem_mgr_stats(mm, &s);
    printf("\npools: TX %llu in use, RX %llu in use (the SRQ's posted buffers)\n", (unsigned long long)s.tx_in_use,
           (unsigned long long)s.rx_in_use);
    ibstack_dispatcher_free(d);
    ibstack_mem_mgr_free(mm);
    return 0;
}

int main(int argc, char **argv) {
    printf("library: %s\n", ibstack_version());

    ibstack_device_list *list = NULL;
    int rc = ibstack_device_list_new(&list);
    if (rc) return fail("ibstack_device_list_new", rc);
    size_t n = ibstack_device_list_count(list);
    printf("RDMA devices: %zu\n", n);
    for (size_t i = 0; i < n; i++) {
        char name[64];
        ibstack_device_list_name(list, i, name, sizeof name);
        printf("  [%zu] %s\n", i, name);
    }
    ibstack_device_list_free(list);

    ibstack_config *cfg = NULL;
    ibstack_config_new(&cfg);
    if (argc > 1 && (rc = ibstack_config_load_file(cfg, argv[1], argc > 2 ? argv[2] : "")) != 0)
        return fail("ibstack_config_load_file", rc);
    char dev[64], gidx[16];
    ibstack_config_get(cfg, "ms_async_rdma_device_name", dev, sizeof dev);
    ibstack_config_get(cfg, "ms_async_rdma_gid_idx", gidx, sizeof gidx);
    printf("opening ms_async_rdma_device_name=\"%s\" ms_async_rdma_gid_idx=%s\n", dev, gidx);

    ibstack_ib *ib = NULL;
    if ((rc = ibstack_ib_new(cfg, &ib)) != 0) return fail("ibstack_ib_new", rc);
    ibstack_ib_info in;
    ibstack_ib_query(ib, &in);
    char name[64], gid[INET6_ADDRSTRLEN];
    ibstack_ib_device_name(ib, name, sizeof name);
    inet_ntop(AF_INET6, in.gid, gid, sizeof gid);
    static const char *gid_types[] = {"IB", "RoCE v1", "RoCE v2"};
    static const char *links[] = {"unspecified", "InfiniBand", "Ethernet"};
    printf("device %s port %u: %s, link layer %s, lid %u\n", name, in.port_num,
           ibstack_port_state_str(in.port_state), in.link_layer < 3 ? links[in.link_layer] : "?", in.lid);
    printf("  GID[%u] = %s (%s), GID table %u entries\n", in.gid_index, gid,
           in.gid_type < 3 ? gid_types[in.gid_type] : "type unknown", in.gid_tbl_len);
    printf("  MTU active %u / max %u bytes\n", in.active_mtu, in.max_mtu);
    printf("  limits: max_qp %u, max_qp_wr %u, max_srq_wr %u, max_cqe %u, max_sge %u, max_mr_size %llu\n",
           in.max_qp, in.max_qp_wr, in.max_srq_wr, in.max_cqe, in.max_sge, (unsigned long long)in.max_mr_size);
    printf("  queues: tx_queue_len %u (+2 SQ slots: close SEND and beacon), rx_queue_len %u\n", in.tx_queue_len,
           in.rx_queue_len);
    printf("  protection domain allocated (ibv handle %u); async event fd %d\n", in.pd_handle, in.async_fd);
    fflush(stdout);
    if (system("rdma resource show pd | grep -v ib_core") != 0) printf("  (rdma resource show failed)\n");

    rc = queue_pairs(ib);
    ibstack_ib_free(ib);
    ibstack_config_free(cfg);
    printf("closed.\n");
    return rc;
}
