/* Tier A: configuration by Ceph's option names and ceph.conf loading. */
#include "harness.h"
#include <fcntl.h>
#include <unistd.h>

static const char *get(ibstack_config *cfg, const char *key) {
    static char buf[256];
    int n = ibstack_config_get(cfg, key, buf, sizeof buf);
    return n < 0 ? "(error)" : buf;
}

int main(void) {
    ibstack_config *cfg = NULL;
    CHECK_RC(ibstack_config_new(&cfg), 0, "config_new");

    /* Ceph 16.2.15 defaults */
    CHECK(strcmp(get(cfg, "ms_async_rdma_buffer_size"), "131072") == 0, "default buffer_size 131072");
    CHECK(strcmp(get(cfg, "ms_async_rdma_send_buffers"), "1024") == 0, "default send_buffers 1024");
    CHECK(strcmp(get(cfg, "ms_async_rdma_receive_buffers"), "32768") == 0, "default receive_buffers 32768");
    CHECK(strcmp(get(cfg, "ms_async_rdma_receive_queue_len"), "4096") == 0, "default receive_queue_len 4096");
    CHECK(strcmp(get(cfg, "ms_async_rdma_support_srq"), "true") == 0, "default support_srq true");
    CHECK(strcmp(get(cfg, "ms_async_rdma_port_num"), "1") == 0, "default port_num 1");
    CHECK(strcmp(get(cfg, "ms_async_rdma_polling_us"), "1000") == 0, "default polling_us 1000");
    CHECK(strcmp(get(cfg, "ms_async_rdma_gid_idx"), "0") == 0, "default gid_idx 0");
    CHECK(strcmp(get(cfg, "ms_async_rdma_sl"), "3") == 0, "default sl 3");
    CHECK(strcmp(get(cfg, "ms_async_rdma_dscp"), "96") == 0, "default dscp 96");
    CHECK(strcmp(get(cfg, "ms_async_rdma_type"), "ib") == 0, "default type ib");
    CHECK(strcmp(get(cfg, "ms_async_rdma_device_name"), "") == 0, "default device_name empty");

    /* set with Ceph's syntax */
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_buffer_size", "64K"), 0, "buffer_size 64K");
    CHECK(strcmp(get(cfg, "ms_async_rdma_buffer_size"), "65536") == 0, "64K is 65536 (IEC)");
    CHECK_RC(ibstack_config_set(cfg, "ms async rdma gid idx", "1"), 0, "key with spaces");
    CHECK(strcmp(get(cfg, "ms_async_rdma_gid_idx"), "1") == 0, "spaced key set gid_idx");

    /* errors */
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_gid_index", "1"), -EINVAL, "unknown key");
    CHECK_MSG_HAS("ms_async_rdma_gid_index", "unknown key is named");
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_port_num", "abc"), -EINVAL, "bad uint");
    CHECK_MSG_HAS("uint", "bad value names the expected type");
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_sl", "16"), -EINVAL, "sl out of range");
    CHECK(strcmp(get(cfg, "ms_async_rdma_sl"), "3") == 0, "failed set leaves the value unchanged");
    CHECK_RC(ibstack_config_get(cfg, "no_such_option", NULL, 0), -EINVAL, "get of an unknown key");

    /* ceph.conf */
    char path[] = "/tmp/ibstack-test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    const char *conf =
        "[global]\n"
        "fsid = 5a0f6f2e-0000-4000-8000-000000000000\n"
        "mon host = 10.0.0.1\n"
        "ms_async_rdma_device_name = mlx5_0   ; trailing comment\n"
        "ms async rdma buffer size = 128K\n"
        "# comment\n"
        "[osd]\n"
        "ms_async_rdma_gid_idx = 3\n"
        "[osd.3]\n"
        "ms_async_rdma_sl = 5\n";
    CHECK(write(fd, conf, strlen(conf)) == (ssize_t)strlen(conf), "write conf");
    close(fd);
    ibstack_config *c2 = NULL;
    ibstack_config_new(&c2);
    CHECK_RC(ibstack_config_load_file(c2, path, "osd.3"), 0, "load ceph.conf for osd.3");
    CHECK(strcmp(get(c2, "ms_async_rdma_device_name"), "mlx5_0") == 0, "[global] applied");
    CHECK(strcmp(get(c2, "ms_async_rdma_buffer_size"), "131072") == 0, "spaced key with size suffix");
    CHECK(strcmp(get(c2, "ms_async_rdma_gid_idx"), "3") == 0, "[osd] applied to osd.3");
    CHECK(strcmp(get(c2, "ms_async_rdma_sl"), "5") == 0, "[osd.3] applied");
    ibstack_config_free(c2);

    /* a bad line names file and line */
    fd = open(path, O_WRONLY | O_TRUNC);
    const char *bad = "[global]\nms_async_rdma_sl = 3\nms_async_rdma_port_num = two\n";
    CHECK(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad), "write bad conf");
    close(fd);
    CHECK_RC(ibstack_config_load_file(cfg, path, "osd"), -EINVAL, "bad value in ceph.conf");
    char want[300];
    snprintf(want, sizeof want, "%s:3", path);
    CHECK_MSG_HAS(want, "message names file:line");
    CHECK_MSG_HAS("ms_async_rdma_port_num", "message names the key");
    CHECK_MSG_HAS("uint", "message names the expected type");
    CHECK_RC(ibstack_config_load_file(cfg, "/nonexistent/ceph.conf", "osd"), -ENOENT, "missing file is -ENOENT");
    CHECK_MSG_HAS("/nonexistent/ceph.conf", "missing file is named");
    unlink(path);

    char json[4096];
    int jn = ibstack_config_to_json(cfg, json, sizeof json);
    CHECK(jn > 0 && jn < (int)sizeof json && json[0] == '{' && strstr(json, "\"ms_async_rdma_buffer_size\":65536"),
          "config_to_json has the options");
    ibstack_config_free(cfg);
    DONE();
}
