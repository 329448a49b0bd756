/* Tier A: the header alone compiles as strict C11 (-Wall -Wextra -Werror
 * -pedantic) and the frozen structs have the sizes the Rust side has. */
#include <ibstack.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(ibstack_ib_info) == 104, "ibstack_ib_info size changed (ABI)");
_Static_assert(offsetof(ibstack_ib_info, gid) == 16, "gid offset");
_Static_assert(offsetof(ibstack_ib_info, max_mr_size) == 80, "max_mr_size offset");
_Static_assert(offsetof(ibstack_ib_info, async_fd) == 100, "async_fd offset");
_Static_assert(IBSTACK_GID_TYPE_ROCE_V2 == 2, "gid type values are frozen");
_Static_assert(IBSTACK_LINK_LAYER_ETHERNET == 2, "link layer values are frozen");

int main(void) {
    char want[64];
    snprintf(want, sizeof want, "ibstack/%s ", IBSTACK_VERSION_STRING);
    const char *v = ibstack_version();
    int ok = v && strncmp(v, want, strlen(want)) == 0;
    printf("%s - ibstack_version() \"%s\" starts with \"%s\" (C11)\n", ok ? "ok" : "not ok", v ? v : "(null)", want);
    return ok ? 0 : 1;
}
