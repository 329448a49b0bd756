// Tier A: the header compiles as C++17 (-Wall -Wextra -Werror -pedantic) and
// links from C++ (extern "C" via cpp_compat).
#include <ibstack.h>
#include <cstdio>
#include <cstring>
#include <string>

static_assert(sizeof(ibstack_ib_info) == 104, "ibstack_ib_info size changed (ABI)");

int main() {
    std::string want = std::string("ibstack/") + IBSTACK_VERSION_STRING + " ";
    const char *v = ibstack_version();
    bool ok = v && std::strncmp(v, want.c_str(), want.size()) == 0;
    std::printf("%s - ibstack_version() from C++17\n", ok ? "ok" : "not ok");
    ibstack_config *cfg = nullptr;
    int rc = ibstack_config_new(&cfg);
    std::printf("%s - ibstack_config_new from C++ (rc %d)\n", rc == 0 && cfg ? "ok" : "not ok", rc);
    ibstack_config_free(cfg);
    return ok && rc == 0 ? 0 : 1;
}
