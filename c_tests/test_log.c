/* Tier A: log records reach the host's callback with levels and targets;
 * NULL restores the default sink; the callback may call the library
 * (its last error message survives); detaching waits for callbacks running
 * on other threads. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

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

/* --- a callback that calls back into the library --- */
static ibstack_config *reenter_cfg;
static int reenter_calls, reenter_nested_rc, reenter_set_rc, reenter_depth, reenter_max_depth;
static char reenter_seen[512];

static void reenter_cb(void *ud, int level, const char *target, size_t tlen, const char *msg, size_t mlen) {
    (void)ud; (void)level; (void)target; (void)tlen; (void)msg; (void)mlen;
    reenter_calls++;
    if (++reenter_depth > reenter_max_depth) reenter_max_depth = reenter_depth;
    /* the message of the call that logged is readable here */
    ibstack_last_error_message(reenter_seen, sizeof reenter_seen);
    /* a failing call: sets the last error and logs from inside the callback */
    reenter_nested_rc = ibstack_config_set(reenter_cfg, "ms_async_rdma_nested_key", "1");
    reenter_set_rc = ibstack_set_log_callback(NULL, NULL, 0);
    reenter_depth--;
}

/* --- a slow callback on another thread, and a detach racing it --- */
static volatile int slow_entered, slow_left;
static int slow_user_data = 1234;

static void slow_cb(void *ud, int level, const char *target, size_t tlen, const char *msg, size_t mlen) {
    (void)level; (void)target; (void)tlen; (void)msg; (void)mlen;
    if (__atomic_exchange_n(&slow_entered, 1, __ATOMIC_SEQ_CST)) return;
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    /* user_data must still be valid: the detaching thread frees it only after
     * ibstack_set_log_callback(NULL) returned */
    if (*(volatile int *)ud == 1234) __atomic_store_n(&slow_left, 1, __ATOMIC_SEQ_CST);
    else __atomic_store_n(&slow_left, 2, __ATOMIC_SEQ_CST);
}

static void *slow_logger(void *arg) {
    ibstack_config *cfg = arg;
    ibstack_config_set(cfg, "ms_async_rdma_slow_key", "1");
    return NULL;
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

    /* re-entering from the callback: no panic, no deadlock, no recursion */
    reenter_cfg = cfg;
    CHECK_RC(ibstack_set_log_callback(reenter_cb, NULL, 5), 0, "install a re-entering callback");
    int rc = ibstack_config_set(cfg, "ms_async_rdma_outer_key", "1");
    CHECK(rc == -ENOENT || rc == -EINVAL, "the outer call fails as before (%d)", rc);
    CHECK(reenter_calls > 0, "the re-entering callback ran (%d calls)", reenter_calls);
    CHECK(reenter_max_depth == 1, "the callback is not entered recursively (depth %d)", reenter_max_depth);
    CHECK(strstr(reenter_seen, "ms_async_rdma_outer_key") != NULL,
          "inside the callback the logging call's message is readable: %s", reenter_seen);
    CHECK(reenter_nested_rc == rc, "a library call from inside the callback works (%d)", reenter_nested_rc);
    CHECK_RC(reenter_set_rc, -EDEADLK, "ibstack_set_log_callback from inside the callback is refused");
    CHECK_MSG_HAS("ms_async_rdma_outer_key", "after the callback the caller still sees its own error");
    CHECK_RC(ibstack_set_log_callback(NULL, NULL, 0), 0, "detach from outside works");

    /* detaching waits for a callback in progress on another thread */
    int *heap_ud = malloc(sizeof *heap_ud);
    *heap_ud = slow_user_data;
    CHECK_RC(ibstack_set_log_callback(slow_cb, heap_ud, 5), 0, "install a slow callback");
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, slow_logger, cfg), 0, "start a thread that logs");
    for (int i = 0; i < 5000 && !__atomic_load_n(&slow_entered, __ATOMIC_SEQ_CST); i++) usleep(1000);
    CHECK(slow_entered, "the slow callback was entered on the other thread");
    CHECK_RC(ibstack_set_log_callback(NULL, NULL, 0), 0, "detach while it runs");
    int left = __atomic_load_n(&slow_left, __ATOMIC_SEQ_CST);
    CHECK(left == 1, "detach returned only after the callback finished with valid user_data (%d)", left);
    *heap_ud = 0;
    free(heap_ud);
    pthread_join(t, NULL);
    ibstack_config_free(cfg);
    DONE();
}
