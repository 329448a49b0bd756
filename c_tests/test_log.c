/* Tier A: log records reach the host's callback with levels and targets;
 * NULL restores the default sink. */
#include "harness.h"

static int records, max_seen;
static char last_msg[512], last_target[128];

static void cb(void *ud, int level, const char *target, size_t tlen, const char *msg, size_t mlen) {
    (void)ud;
    records++;
    if (level > max_seen) max_seen = level;
    snprintf(last_msg, sizeof last_msg, "%.*s", (int)mlen, msg);
    snprintf(last_target, sizeof last_target, "%.*s", (int)tlen, target);
    *(int *)ud += (strlen(msg) == mlen && strlen(target) == tlen);
}

int main(void) {
    int consistent = 0;
    ibstack_config *cfg = NULL;
    ibstack_config_new(&cfg);

    CHECK_RC(ibstack_set_log_callback(cb, &consistent, 4), 0, "install callback at debug");
    ibstack_config_set(cfg, "ms_async_rdma_no_such", "1"); /* failure is logged at debug */
    CHECK(records > 0, "a failed call produced a record (%d)", records);
    CHECK(strstr(last_msg, "ms_async_rdma_no_such") != NULL, "record carries the message: %s", last_msg);
    CHECK(strncmp(last_target, "ibstack", 7) == 0, "record target is an ibstack module: %s", last_target);
    CHECK(consistent == records, "strings are NUL-terminated and lengths match");

    int before = records;
    ibstack_set_log_callback(cb, &consistent, 1); /* errors only */
    ibstack_config_set(cfg, "ms_async_rdma_no_such", "1");
    CHECK(records == before, "debug records filtered at level 1");

    ibstack_set_log_callback(NULL, NULL, 0);
    ibstack_config_set(cfg, "ms_async_rdma_no_such", "1");
    CHECK(records == before, "NULL callback detaches");
    CHECK(max_seen <= 4, "no record above the requested level");
    ibstack_config_free(cfg);
    DONE();
}
