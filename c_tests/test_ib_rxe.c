/* Tier B (Soft-RoCE VM): open rxe0 and compare what ibstack reports with what
 * `ibv_devinfo -v` prints; bad device name, bad port and bad gid_idx each give
 * one clear error. Fails when no device is present. */
#include "harness.h"
#include <arpa/inet.h>
#include <ctype.h>

static char devinfo[65536];

static void load_devinfo(void) {
    FILE *p = popen("ibv_devinfo -v -d rxe0 2>&1", "r");
    size_t n = p ? fread(devinfo, 1, sizeof devinfo - 1, p) : 0;
    devinfo[n] = '\0';
    if (p) pclose(p);
}

/* text after "key" up to the end of its line, leading blanks skipped */
static const char *field(const char *key, char *out, size_t len) {
    const char *s = strstr(devinfo, key);
    out[0] = '\0';
    if (!s) return out;
    s += strlen(key);
    while (*s == ' ' || *s == '\t') s++;
    size_t i = 0;
    while (s[i] && s[i] != '\n' && i + 1 < len) { out[i] = s[i]; i++; }
    out[i] = '\0';
    return out;
}

static long num_field(const char *key) {
    char v[128];
    field(key, v, sizeof v);
    return v[0] ? strtol(v, NULL, 0) : -1;
}

static int count_our_pds(void) {
    char line[512];
    int n = 0;
    FILE *p = popen("rdma resource show pd 2>&1", "r");
    while (p && fgets(line, sizeof line, p))
        if (strstr(line, "comm test_ib_rxe")) n++;
    if (p) pclose(p);
    return n;
}

static ibstack_config *cfg_with(const char *key, const char *value) {
    ibstack_config *cfg = NULL;
    ibstack_config_new(&cfg);
    ibstack_config_set(cfg, "ms_async_rdma_device_name", "rxe0");
    ibstack_config_set(cfg, "ms_async_rdma_gid_idx", "1");
    if (key) ibstack_config_set(cfg, key, value);
    return cfg;
}

int main(void) {
    ibstack_device_list *list = NULL;
    CHECK_RC(ibstack_device_list_new(&list), 0, "device_list_new");
    size_t count = ibstack_device_list_count(list);
    CHECK(count >= 1, "at least one RDMA device present (%zu) — tier B needs the rxe VM", count);
    char name[64] = "";
    if (count) ibstack_device_list_name(list, 0, name, sizeof name);
    CHECK(strcmp(name, "rxe0") == 0, "first device is rxe0 (%s)", name);
    ibstack_device_list_free(list);

    load_devinfo();
    CHECK(strstr(devinfo, "hca_id:\trxe0") != NULL, "ibv_devinfo sees rxe0");

    ibstack_config *cfg = cfg_with(NULL, NULL);
    ibstack_ib *ib = NULL;
    CHECK_RC(ibstack_ib_new(cfg, &ib), 0, "ib_new(rxe0, gid_idx 1)");
    if (!ib) { printf("# cannot continue: %s\n", h_last_error()); return 1; }
    ibstack_ib_info info;
    CHECK_RC(ibstack_ib_query(ib, &info), 0, "ib_query");
    char dn[16];
    CHECK_RC(ibstack_ib_device_name(ib, dn, sizeof dn), 4, "device name length");
    CHECK(strcmp(dn, "rxe0") == 0, "device name rxe0");

    char v[256], want[256];
    field("state:", v, sizeof v);
    snprintf(want, sizeof want, "%s (%u)", ibstack_port_state_str(info.port_state), info.port_state);
    CHECK(strcmp(v, want) == 0, "port state \"%s\" == ibv_devinfo \"%s\"", want, v);
    CHECK(info.port_state == 4, "port is ACTIVE");
    field("active_mtu:", v, sizeof v);
    CHECK(atoi(v) == (int)info.active_mtu, "active MTU %u == ibv_devinfo %s", info.active_mtu, v);
    field("max_mtu:", v, sizeof v);
    CHECK(atoi(v) == (int)info.max_mtu, "max MTU %u == ibv_devinfo %s", info.max_mtu, v);
    CHECK(num_field("port_lid:") == (long)info.lid, "lid %u == ibv_devinfo", info.lid);
    field("link_layer:", v, sizeof v);
    CHECK(strcmp(v, "Ethernet") == 0 && info.link_layer == IBSTACK_LINK_LAYER_ETHERNET, "link layer Ethernet (%s)", v);
    CHECK(num_field("max_qp_wr:") == (long)info.max_qp_wr, "max_qp_wr %u", info.max_qp_wr);
    CHECK(num_field("max_srq_wr:") == (long)info.max_srq_wr, "max_srq_wr %u", info.max_srq_wr);
    CHECK(num_field("max_cqe:") == (long)info.max_cqe, "max_cqe %u", info.max_cqe);
    CHECK(num_field("max_sge:") == (long)info.max_sge, "max_sge %u", info.max_sge);
    CHECK(num_field("phys_port_cnt:") == (long)info.phys_port_cnt, "phys_port_cnt %u", info.phys_port_cnt);

    /* ibv_devinfo prints "GID[  1]:\t\t::ffff:10.99.0.1, RoCE v2" (inet_ntop form) */
    field("GID[  1]:", v, sizeof v);
    char *comma = strchr(v, ',');
    unsigned char parsed[16];
    int type_ok = comma && strcmp(comma, ", RoCE v2") == 0;
    if (comma) *comma = '\0';
    int parsed_ok = inet_pton(AF_INET6, v, parsed) == 1;
    CHECK(parsed_ok && memcmp(parsed, info.gid, 16) == 0 && type_ok, "GID[1] equals ibv_devinfo's %s", v);
    CHECK(info.gid_index == 1 && info.gid_type == IBSTACK_GID_TYPE_ROCE_V2, "GID index 1 is RoCE v2");
    CHECK(info.gid[10] == 0xff && info.gid[11] == 0xff, "GID 1 is IPv4-mapped");
    CHECK(info.tx_queue_len == 1024 && info.rx_queue_len == 4096, "queue lengths from Ceph's defaults (%u, %u)",
          info.tx_queue_len, info.rx_queue_len);
    CHECK(info.async_fd >= 0 && ibstack_ib_async_fd(ib) == info.async_fd, "async fd %d", info.async_fd);

    /* the PD is a real kernel object owned by this process, gone after free */
    CHECK(count_our_pds() == 1, "rdma resource show pd lists one PD owned by test_ib_rxe");
    ibstack_ib_free(ib);
    CHECK(count_our_pds() == 0, "the PD is gone after ibstack_ib_free");
    ibstack_config_free(cfg);

    /* empty device name = first device */
    cfg = cfg_with("ms_async_rdma_device_name", "");
    ib = NULL;
    CHECK_RC(ibstack_ib_new(cfg, &ib), 0, "empty device name opens the first device");
    if (ib) { ibstack_ib_device_name(ib, dn, sizeof dn); CHECK(strcmp(dn, "rxe0") == 0, "first device is rxe0"); }
    ibstack_ib_free(ib);
    ibstack_config_free(cfg);

    /* bad device name: the netdev instead of the RDMA device */
    cfg = cfg_with("ms_async_rdma_device_name", "d0");
    ib = (ibstack_ib *)0x1;
    CHECK_RC(ibstack_ib_new(cfg, &ib), -ENODEV, "device name d0 (a netdev)");
    CHECK_MSG_HAS("devices present: rxe0", "message lists the devices present");
    CHECK_MSG_HAS("its RDMA device is rxe0", "message maps the netdev to its RDMA device");
    CHECK(ib == (ibstack_ib *)0x1, "out untouched");
    printf("# message: %s\n", h_last_error());
    ibstack_config_free(cfg);

    cfg = cfg_with("ms_async_rdma_device_name", "mlx5_0");
    CHECK_RC(ibstack_ib_new(cfg, &ib), -ENODEV, "unknown device name mlx5_0");
    CHECK_MSG_HAS("\"mlx5_0\" matches no RDMA device", "message names the bad name");
    ibstack_config_free(cfg);

    /* bad port */
    cfg = cfg_with("ms_async_rdma_port_num", "2");
    CHECK_RC(ibstack_ib_new(cfg, &ib), -EINVAL, "port 2 on a one-port device");
    CHECK_MSG_HAS("1 port(s)", "message gives the port count");
    ibstack_config_free(cfg);

    /* bad gid_idx: an empty slot, and one outside the table */
    cfg = cfg_with("ms_async_rdma_gid_idx", "7");
    CHECK_RC(ibstack_ib_new(cfg, &ib), -EINVAL, "gid_idx 7 (empty slot)");
    CHECK_MSG_HAS("gid_idx = 7 is an empty slot", "message names the index");
    CHECK_MSG_HAS("table size", "message gives the table size");
    CHECK_MSG_HAS("1 = 0000:0000:0000:0000:0000:ffff:", "message lists the valid entries");
    printf("# message: %s\n", h_last_error());
    ibstack_config_free(cfg);

    cfg = cfg_with("ms_async_rdma_gid_idx", "60000");
    CHECK_RC(ibstack_ib_new(cfg, &ib), -EINVAL, "gid_idx 60000 (outside the table)");
    CHECK_MSG_HAS("outside the GID table", "message says outside the table");
    ibstack_config_free(cfg);

    /* sizes above the device limits are clamped, not fatal */
    cfg = cfg_with("ms_async_rdma_receive_queue_len", "100000000");
    ibstack_config_set(cfg, "ms_async_rdma_receive_buffers", "0");
    ib = NULL;
    CHECK_RC(ibstack_ib_new(cfg, &ib), 0, "receive_queue_len above max_srq_wr is clamped");
    if (ib) {
        ibstack_ib_query(ib, &info);
        CHECK(info.rx_queue_len == info.max_srq_wr, "rx_queue_len clamped to max_srq_wr %u", info.max_srq_wr);
    }
    ibstack_ib_free(ib);
    ibstack_config_free(cfg);

    cfg = cfg_with("ms_async_rdma_receive_buffers", "100");
    CHECK_RC(ibstack_ib_new(cfg, &ib), -EINVAL, "receive_buffers below the queue length");
    CHECK_MSG_HAS("receive_buffers", "message names receive_buffers");
    ibstack_config_free(cfg);
    DONE();
}
