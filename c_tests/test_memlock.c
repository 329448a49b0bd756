/* Tier B (VM, run as an unprivileged user with `ulimit -l 8192`): the default
 * pools do not fit an 8 MiB memlock limit; ibstack_global_init says so in one
 * message naming the limit, the need and the fixes — no abort. A small
 * configuration passes. */
#include "harness.h"
#include <sys/resource.h>
#include <unistd.h>

int main(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_MEMLOCK, &rl);
    CHECK(getuid() != 0, "running unprivileged (uid %u)", (unsigned)getuid());
    CHECK(rl.rlim_cur == 8u << 20, "memlock soft limit is 8 MiB (%llu)", (unsigned long long)rl.rlim_cur);

    ibstack_config *cfg = NULL;
    ibstack_config_new(&cfg);
    ibstack_config_set(cfg, "ms_async_rdma_device_name", "rxe0");
    CHECK_RC(ibstack_global_init(cfg), -ENOMEM, "global_init with Ceph's default pools");
    CHECK_MSG_HAS("8388608 bytes (8.0 MiB)", "message names the current limit");
    CHECK_MSG_HAS("4429185024 bytes", "message names the bytes needed");
    CHECK_MSG_HAS("LimitMEMLOCK=infinity", "message names the systemd fix");
    CHECK_MSG_HAS("/etc/security/limits.d", "message names limits.d");
    CHECK_MSG_HAS("ulimit -l", "message names ulimit");
    printf("# operator sees: %s\n", h_last_error());

    /* 64 KiB x (16 + 64) = 5 MiB fits */
    ibstack_config_set(cfg, "ms_async_rdma_buffer_size", "64K");
    ibstack_config_set(cfg, "ms_async_rdma_send_buffers", "16");
    ibstack_config_set(cfg, "ms_async_rdma_receive_buffers", "64");
    CHECK_RC(ibstack_global_init(cfg), 0, "global_init with pools that fit");

    /* the device is still usable by the unprivileged user */
    ibstack_ib *ib = NULL;
    ibstack_config_set(cfg, "ms_async_rdma_receive_queue_len", "32");
    CHECK_RC(ibstack_ib_new(cfg, &ib), 0, "ib_new as an unprivileged user");
    ibstack_ib_free(ib);

    /* creating Ceph's default TX pool (1024 x 128 KiB) as this user: one clear message, no abort */
    ibstack_config_set(cfg, "ms_async_rdma_buffer_size", "128K");
    ibstack_config_set(cfg, "ms_async_rdma_send_buffers", "1024");
    ib = NULL;
    CHECK_RC(ibstack_ib_new(cfg, &ib), 0, "ib_new with Ceph's default TX pool size");
    ibstack_mem_mgr *mm = (ibstack_mem_mgr *)0x1;
    CHECK_RC(ibstack_mem_mgr_new(ib, &mm), -ENOMEM, "mem_mgr_new: the default pools do not fit 8 MiB");
    CHECK_MSG_HAS("134217728 bytes (128.0 MiB)", "message names the bytes the TX pool needs");
    CHECK_MSG_HAS("RLIMIT_MEMLOCK is 8388608 bytes (8.0 MiB)", "message names the limit");
    CHECK_MSG_HAS("LimitMEMLOCK=infinity", "message names the fix");
    CHECK(mm == (ibstack_mem_mgr *)0x1, "out untouched");
    printf("# operator sees: %s\n", h_last_error());
    ibstack_ib_free(ib);
    ibstack_config_free(cfg);
    DONE();
}
