/* Minimal TAP-like harness for ibstack's C tests.
 * Each check prints "ok - name" or "not ok - name: detail"; c_tests/run.sh
 * adds them up and ends the run with "N passed, N failed". */
#ifndef IBSTACK_TEST_HARNESS_H
#define IBSTACK_TEST_HARNESS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ibstack.h>

static int h_failed;

static inline const char *h_last_error(void) {
    static char buf[4096];
    ibstack_last_error_message(buf, sizeof buf);
    return buf;
}

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            printf("ok - ");                                                    \
            printf(__VA_ARGS__);                                                \
            printf("\n");                                                       \
        } else {                                                                \
            h_failed++;                                                         \
            printf("not ok - ");                                                \
            printf(__VA_ARGS__);                                                \
            printf("  [%s:%d: %s] last error: %s\n", __FILE__, __LINE__, #cond, \
                   h_last_error());                                             \
        }                                                                       \
        fflush(stdout);                                                         \
    } while (0)

/* rc must equal want; prints both and the message on failure */
#define CHECK_RC(rc, want, ...)                                                 \
    do {                                                                        \
        long h_rc = (long)(rc);                                                 \
        if (h_rc != (long)(want)) printf("# got %ld, want %ld\n", h_rc, (long)(want)); \
        CHECK(h_rc == (long)(want), __VA_ARGS__);                               \
    } while (0)

#define CHECK_MSG_HAS(needle, ...)                                              \
    do {                                                                        \
        const char *h_m = h_last_error();                                       \
        int h_ok = strstr(h_m, (needle)) != NULL;                               \
        if (!h_ok) printf("# message \"%s\" lacks \"%s\"\n", h_m, (needle));    \
        CHECK(h_ok, __VA_ARGS__);                                               \
    } while (0)

#define DONE() return h_failed ? 1 : 0

#endif
