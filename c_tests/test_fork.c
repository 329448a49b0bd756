/* Tier A: the fork() rule. In a forked child, handles created before the fork
 * are refused with -ECHILD and a message naming fork(), their _free is ignored,
 * and objects the child creates itself work; the parent's handles are untouched. */
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int child_checks(ibstack_config *inherited) {
    int rc = ibstack_config_set(inherited, "ms_async_rdma_buffer_size", "8192");
    CHECK_RC(rc, -ECHILD, "child: a call on a handle from before fork() is -ECHILD");
    CHECK_MSG_HAS("fork()", "child: the message names fork()");
    CHECK_MSG_HAS("ibstack_config", "child: the message names the handle's type");
    ibstack_config_free(inherited); /* ignored: it is the parent's */
    CHECK_RC(ibstack_config_set(inherited, "ms_async_rdma_buffer_size", "8192"), -ECHILD,
             "child: its _free was ignored (the handle is still the parent's, still refused)");
    ibstack_config *mine = NULL;
    CHECK_RC(ibstack_config_new(&mine), 0, "child: creating its own config works");
    CHECK_RC(ibstack_config_set(mine, "ms_async_rdma_buffer_size", "8192"), 0, "child: using its own config works");
    ibstack_config_free(mine);
    CHECK_RC(ibstack_config_set(mine, "ms_async_rdma_buffer_size", "8192"), -EINVAL,
             "child: its own freed config is -EINVAL as usual");

    /* a grandchild: the child's own objects are, in turn, refused there */
    CHECK_RC(ibstack_config_new(&mine), 0, "child: a second config of its own");
    fflush(stdout);
    pid_t g = fork();
    if (g == 0) {
        int r = ibstack_config_set(mine, "ms_async_rdma_buffer_size", "8192");
        _exit(r == -ECHILD ? 0 : 1);
    }
    int st = -1;
    waitpid(g, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "grandchild: the child's config is refused there too (status %d)", st);
    CHECK_RC(ibstack_config_set(mine, "ms_async_rdma_buffer_size", "8192"), 0, "child: its config still works after that fork");
    ibstack_config_free(mine);
    return h_failed ? 1 : 0;
}

int main(void) {
    ibstack_config *cfg = NULL;
    CHECK_RC(ibstack_config_new(&cfg), 0, "parent: config created");
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_buffer_size", "4096"), 0, "parent: config set");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        CHECK(0, "fork: %s", strerror(errno));
        DONE();
    }
    if (pid == 0) {
        int r = child_checks(cfg);
        fflush(stdout);
        _exit(r);
    }
    int st = -1;
    CHECK(waitpid(pid, &st, 0) == pid, "parent: child reaped");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "parent: the child's checks passed and it did not crash (status %d)", st);
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_buffer_size", "16384"), 0, "parent: its config still works");
    char buf[64];
    CHECK(ibstack_config_get(cfg, "ms_async_rdma_buffer_size", buf, sizeof buf) >= 0 && !strcmp(buf, "16384"),
          "parent: and holds the parent's value (%s)", buf);
    ibstack_config_free(cfg);
    DONE();
}
