/* An ibstack connection to a raw-verbs peer (raw_peer.h) in the VM, for the tests that watch
 * the wire (test_coalesce_rxe, test_zerocopy_rxe): the peer listens on d0's address, the stack
 * connects, the peer accepts and does its side of the cm_meta exchange while a host-driven
 * stack is polled. Link with -libverbs. */
#ifndef IBSTACK_TEST_RAW_CONN_H
#define IBSTACK_TEST_RAW_CONN_H

/* conn_util.h defines helpers its users do not all call */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "conn_util.h"
#pragma GCC diagnostic pop
#include "raw_peer.h"

typedef struct {
    int l;           /* the peer's listening socket */
    int fd;          /* the peer's side of the TCP side channel */
    ibstack_conn *c; /* the stack's connection (NULL when ibstack_connect failed) */
} raw_conn;

/* 1 when the exchange is done and the connection connected; the checks say what failed */
static int raw_conn_open(raw_conn *rc, ibstack_stack *s, int hd, raw_peer *p) {
    rc->c = NULL;
    rc->fd = -1;
    rc->l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, TEST_IP, &a.sin_addr);
    socklen_t al = sizeof a;
    CHECK(rc->l >= 0 && !bind(rc->l, (struct sockaddr *)&a, sizeof a) && !listen(rc->l, 4) &&
              !getsockname(rc->l, (struct sockaddr *)&a, &al),
          "TCP listener of the raw peer on %s", TEST_IP);
    CHECK_RC(ibstack_connect(s, TEST_IP, ntohs(a.sin_port), &rc->c), 0, "ibstack_connect to the raw peer");
    rc->fd = accept(rc->l, NULL, NULL);
    CHECK(rc->fd >= 0, "the raw peer accepted the TCP connection");
    raw_accept_state hs = {0};
    int h = 0;
    for (double end = now_s() + 20; rc->fd >= 0 && h == 0 && now_s() < end;) {
        h = raw_accept_step(p, rc->fd, &hs);
        if (hd) hd_poll(s);
        else usleep(200);
    }
    CHECK_RC(h, 1, "cm_meta exchange done on the raw peer (records #1 to #3)");
    CHECK_RC(conn_wait_connected(s, hd, rc->c, 10), 1, "the ibstack connection is connected");
    return h == 1 && rc->c;
}

/* closes the connection and the peer's sockets, checks the stack is back at `base`, frees it all */
static void raw_conn_teardown(raw_conn *rc, ibstack_stack *s, int hd, const ibstack_mem_stats *base, raw_peer *p) {
    if (rc->c) ibstack_conn_close(rc->c);
    if (rc->fd >= 0) close(rc->fd);
    if (rc->l >= 0) close(rc->l);
    check_teardown(hd ? "host-driven" : "polling thread", s, hd, base);
    raw_close(p);
    ibstack_stack_free(s);
}

#endif
