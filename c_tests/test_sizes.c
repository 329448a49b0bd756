/* Tier A: lengths and counts no real buffer can have (above PTRDIFF_MAX: a
 * negative length cast to size_t) are -EINVAL with a message, never a slice
 * of the address space. The device-side counts are checked by
 * test_hostile_rxe sizes in the VM. */
#include "harness.h"

#include <stdint.h>

int main(void) {
    char buf[128] = {0};
    ibstack_cm_meta m;
    memset(&m, 0, sizeof m);
    const size_t huge = (size_t)PTRDIFF_MAX + 1;

    CHECK_RC(ibstack_cm_meta_decode(buf, SIZE_MAX, &m), -EINVAL, "cm_meta_decode(len SIZE_MAX)");
    CHECK_MSG_HAS("exceeds the largest possible buffer", "the message says why");
    CHECK_MSG_HAS("buf", "and names the argument");
    CHECK_RC(ibstack_cm_meta_decode(buf, huge, &m), -EINVAL, "cm_meta_decode(len PTRDIFF_MAX + 1)");
    CHECK_RC(ibstack_cm_meta_decode(buf, 65, &m), -EPROTO, "cm_meta_decode of 65 zero bytes is still a protocol error");
    CHECK_RC(ibstack_cm_meta_encode(&m, buf, SIZE_MAX), -EINVAL, "cm_meta_encode(len SIZE_MAX)");
    CHECK_MSG_HAS("exceeds the largest possible buffer", "the message says why");
    CHECK(ibstack_cm_meta_encode(&m, buf, sizeof buf) > 0, "cm_meta_encode with a real length works");

    ibstack_config *cfg = NULL;
    CHECK_RC(ibstack_config_new(&cfg), 0, "config_new");
    CHECK_RC(ibstack_config_get(cfg, "ms_async_rdma_sl", buf, SIZE_MAX), -EINVAL, "config_get(len SIZE_MAX)");
    CHECK_MSG_HAS("exceeds the largest possible buffer", "the message says why");
    CHECK_RC(ibstack_config_get(cfg, "ms_async_rdma_sl", buf, huge), -EINVAL, "config_get(len PTRDIFF_MAX + 1)");
    CHECK_RC(ibstack_config_get(cfg, "ms_async_rdma_sl", buf, (size_t)PTRDIFF_MAX), 1,
             "config_get(len PTRDIFF_MAX) is plausible: only the value's 2 bytes are written");
    CHECK_RC(ibstack_config_to_json(cfg, buf, SIZE_MAX), -EINVAL, "config_to_json(len SIZE_MAX)");
    ibstack_config_free(cfg);
    DONE();
}
