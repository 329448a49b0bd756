/* Tier A: a program NOT linked against ibstack finds ibstack_version through
 * dlsym(RTLD_DEFAULT) when libibstack.so is preloaded (and not otherwise).
 * usage: test_preload expect-present|expect-absent */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    int want = argc > 1 && strcmp(argv[1], "expect-present") == 0;
    void *sym = dlsym(RTLD_DEFAULT, "ibstack_version");
    const char *(*version)(void) = NULL;
    memcpy(&version, &sym, sizeof sym); /* POSIX's sanctioned object-to-function pointer conversion */
    int present = version != NULL;
    if (present) printf("# found %s\n", version());
    int ok = present == want && (!present || strncmp(version(), "ibstack/", 8) == 0);
    printf("%s - dlsym(RTLD_DEFAULT, \"ibstack_version\") %s\n", ok ? "ok" : "not ok",
           want ? "resolves under LD_PRELOAD" : "is absent without LD_PRELOAD");
    return ok ? 0 : 1;
}
