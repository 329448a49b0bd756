/* ibstack demo: list the RDMA devices, open one through ibstack (Ceph's
 * option names), print its port, GID and limits, and show the protection
 * domain the library allocated. Built with `pkg-config --cflags --libs ibstack`.
 * usage: ibstack_demo [ceph.conf [section]] */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <ibstack.h>

static int fail(const char *what, int rc) {
    char msg[2048];
    ibstack_last_error_message(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s\n  %s\n", what, ibstack_strerror(rc), msg);
    return 1;
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
    printf("  queues: tx_queue_len %u (one more SQ slot is the beacon's), rx_queue_len %u\n", in.tx_queue_len,
           in.rx_queue_len);
    printf("  protection domain allocated (ibv handle %u); async event fd %d\n", in.pd_handle, in.async_fd);
    fflush(stdout);
    if (system("rdma resource show pd | grep -v ib_core") != 0) printf("  (rdma resource show failed)\n");

    ibstack_ib_free(ib);
    ibstack_config_free(cfg);
    printf("closed.\n");
    return 0;
}
