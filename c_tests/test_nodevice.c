/* Tier A (host without RDMA devices): listing gives zero devices and
 * opening one fails with -ENODEV and a message that says what to do. */
#include "harness.h"

int main(void) {
    ibstack_device_list *list = NULL;
    CHECK_RC(ibstack_device_list_new(&list), 0, "device_list_new on a host without devices");
    CHECK_RC(ibstack_device_list_count(list), 0, "no devices listed");
    char buf[32];
    CHECK_RC(ibstack_device_list_name(list, 0, buf, sizeof buf), -ERANGE, "name(0) of an empty list");
    ibstack_device_list_free(list);

    ibstack_config *cfg = NULL;
    ibstack_ib *ib = (ibstack_ib *)0x1; /* must stay untouched on failure */
    ibstack_config_new(&cfg);
    CHECK_RC(ibstack_ib_new(cfg, &ib), -ENODEV, "ib_new without a device");
    CHECK_MSG_HAS("no RDMA device found", "message says no device");
    CHECK_MSG_HAS("rdma_rxe", "message suggests loading a provider");
    CHECK_MSG_HAS("/sys/class/infiniband", "message names /sys/class/infiniband");
    CHECK(ib == (ibstack_ib *)0x1, "out-parameter untouched on failure");
    printf("# message: %s\n", h_last_error());
    ibstack_config_free(cfg);
    DONE();
}
