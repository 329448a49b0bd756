/* Zero-copy at the connection level, run in the VM, against a peer written on libibverbs
 * alone that speaks Ceph's async+rdma format by hand (raw_peer.h):
 *   fd wake-up: with CAP - 1 SENDs stuck in RNR retries and bytes coalesced behind them, a
 *   TX chunk sent is -EAGAIN (the coalesced bytes took the last SEND of the budget); the
 *   connection's fd fires once the peer takes the SENDs, and the peer gets the coalesced
 *   bytes, then the chunk;
 *   receive: the raw peer sends 3000 SENDs of 1..16384 B (a checksummed pattern stream);
 *   ibstack lends them with ibstack_conn_recv_chunks (one chunk = one SEND, stream order),
 *   the test keeps up to 24 lent and gives them back in a shuffled order with
 *   ibstack_conn_release_chunks; now and then it reads a few bytes with ibstack_conn_recv
 *   first, and the chunk lent next starts at that offset:
 *     - the stream arrives whole and in order; every chunk is one SEND, as long as it;
 *     - giving a chunk back twice, a foreign pointer, or a lent chunk through another
 *       release call (ibstack_mem_mgr_release_rx_chunk) is -EINVAL naming the way back,
 *       and gives nothing back;
 *     - after the peer's close SEND: -ECONNRESET once everything was lent;
 *   send: TX chunks taken from the stack's pools (ibstack_stack_mem_mgr) and filled in
 *   place, then ibstack_conn_send on their buffers: the raw peer receives each as one SEND
 *   with the bytes written there;
 *   the per-connection cap on SENDs in flight (ibstack_max_inflight_per_conn = 16) holds for
 *   zero-copy sends too: with the peer's receive queue used up (its SENDs wait in RNR
 *   retries), a TX chunk sent past the cap is -EAGAIN and stays the caller's; once the peer
 *   posts receives again, every byte arrives in order;
 *   close with chunks still lent: close gives them back (RX pool at its baseline).
 * usage: test_zerocopy_rxe thread|host srq|nosrq */
#include "raw_conn.h"

#define BUFSZ 16384u /* ms_async_rdma_buffer_size of stack_open */
#define NRECV 128u   /* the raw peer's receive buffers; 16 more are its send buffers */
#define NSEND 16u
#define SENDS 3000u
#define HOLD 24u
#define TX_SENDS 400u
#define CAP 16u /* ibstack_max_inflight_per_conn of this test */

typedef struct {
    raw_peer p;
    ibstack_conn *c; /* the stack's end */
    unsigned send_inflight, send_next;
    uint64_t errors, rx_bytes, rx_sends, rx_bad_len;
    csum rx_sum;
} peer;

static ibstack_stack *g_s;
static int g_hd;

static void peer_recv(void *ctx, const uint8_t *data, uint32_t len) {
    peer *k = ctx;
    csum_add(&k->rx_sum, data, len);
    k->rx_bytes += len;
    k->rx_sends++;
}

static void peer_sent(void *ctx) { ((peer *)ctx)->send_inflight--; }

static void service(peer *k) {
    raw_poll(&k->p, &k->errors, k, peer_recv, peer_sent);
    if (g_hd) hd_poll(g_s);
}

/* the raw peer sends `len` bytes (0 = the close SEND) from send buffer `next % NSEND` */
static int raw_send(peer *k, const void *data, uint32_t len) {
    double end = now_s() + 20;
    while (k->send_inflight >= NSEND && now_s() < end) service(k);
    if (k->send_inflight >= NSEND) return -ETIMEDOUT;
    uint8_t *b = k->p.buf + (size_t)(NRECV + k->send_next++ % NSEND) * BUFSZ;
    memcpy(b, data, len);
    struct ibv_sge sge = {(uintptr_t)b, len, k->p.mr->lkey};
    struct ibv_send_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = len ? 1 : 0, .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED}, *bad;
    if (ibv_post_send(k->p.qp, &wr, &bad)) return -EIO;
    k->send_inflight++;
    return 0;
}

static uint32_t send_len(unsigned i) {
    switch (i % 7) {
    case 0: return BUFSZ;
    case 1: return 1;
    default: return 1 + crng() % BUFSZ;
    }
}

/* gets a TX chunk from the stack's pools and sends `len` bytes of pattern `seed` at `off` from it,
 * retrying -EAGAIN for `secs` (servicing the peer when `serve`); returns what the last send returned,
 * the chunk staying in *ch while it is refused */
static ptrdiff_t zc_send(ibstack_mem_mgr *mm, ibstack_chunk **ch, peer *k, int serve, int seed, uint64_t off, uint32_t len,
                         double secs) {
    if (!*ch) {
        size_t got_n = 0;
        int r = ibstack_mem_mgr_get_tx_chunks(mm, 1, ch, 1, &got_n);
        if (r || got_n != 1) {
            printf("# ibstack_mem_mgr_get_tx_chunks: %d (%zu) %s\n", r, got_n, h_last_error());
            *ch = NULL;
            return r ? r : -EIO;
        }
    }
    memcpy(ibstack_chunk_buffer(*ch), pat_at(seed, off), len);
    ptrdiff_t w;
    for (double until = now_s() + secs; (w = ibstack_conn_send(k->c, ibstack_chunk_buffer(*ch), len)) == -EAGAIN &&
                                        now_s() < until;) {
        if (serve) raw_poll(&k->p, &k->errors, k, peer_recv, peer_sent);
        if (g_hd) hd_poll(g_s);
        else usleep(200);
    }
    if (w == (ptrdiff_t)len) *ch = NULL;
    return w;
}

/* A zero-copy send refused at the cap must leave the connection waiting for its fd. The case:
 * CAP - 1 SENDs in flight (the peer's receives used up, they wait in RNR retries), bytes
 * coalesced behind them, then a TX chunk: the coalesced bytes take the last SEND of the budget
 * and the chunk is -EAGAIN. Once the peer posts receives again and the SENDs complete, the
 * connection's fd fires, and the chunk goes out after the coalesced bytes. */
static void fd_wake_phase(ibstack_stack *s, peer *k) {
    ibstack_conn *c = k->c;
    ibstack_mem_mgr *mm = NULL;
    CHECK_RC(ibstack_stack_mem_mgr(s, &mm), 0, "fd wake-up: the stack's pools");
    if (!mm) return;
    int fd = ibstack_conn_fd(c);
    ibstack_mem_stats before = stack_mem(s);
    uint64_t off = 0, rx0 = k->rx_bytes;
    csum sum = {0, 0};
    k->rx_sum = (csum){0, 0};
    ibstack_chunk *ch = NULL;
    ptrdiff_t w = 0;
    int rc = 0;
    /* NRECV SENDs take the peer's posted receives, CAP - 1 more wait in RNR retries */
    for (unsigned i = 0; i < NRECV + CAP - 1; i++) {
        if ((w = zc_send(mm, &ch, k, 0, 11, off, 1000, 5)) != 1000) {
            printf("# fd wake-up: ibstack_conn_send(TX chunk) %u: %td %s\n", i, w, h_last_error());
            rc = w < 0 ? (int)w : -EIO;
            break;
        }
        csum_add(&sum, pat_at(11, off), 1000);
        off += 1000;
    }
    uint64_t flying = 0;
    for (double until = now_s() + 5; rc == 0 && now_s() < until;) {
        flying = stack_mem(s).tx_in_use - before.tx_in_use;
        if (flying <= CAP - 1) break;
        if (g_hd) hd_poll(s);
        else usleep(200);
    }
    CHECK(rc == 0 && flying == CAP - 1, "fd wake-up: %u SENDs accepted, %u of them in flight (%llu)", NRECV + CAP - 1, CAP - 1,
          (unsigned long long)flying);
    /* the polling thread wakes writers just after it counts their chunks back: let it finish */
    if (!g_hd) usleep(50 * 1000);
    /* nothing to read: -EAGAIN resets the fd (the first may keep it readable once for a wake-up
     * the host has not looked at yet: TX chunks back after an earlier -EAGAIN) */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint8_t b;
    ptrdiff_t r = 0;
    for (int i = 0; i < 3 && (i == 0 || poll(&p, 1, 0) != 0); i++) r = ibstack_conn_recv(c, &b, 1);
    CHECK(r == -EAGAIN && poll(&p, 1, 0) == 0, "fd wake-up: nothing to read yet (%td), the fd is quiet", r);
    static uint8_t small[100];
    memcpy(small, pat_at(11, off), sizeof small);
    w = ibstack_conn_send(c, small, sizeof small);
    CHECK(w == (ptrdiff_t)sizeof small, "fd wake-up: 100 B written with SENDs in flight are coalesced (%td)", w);
    if (w == (ptrdiff_t)sizeof small) {
        csum_add(&sum, small, sizeof small);
        off += sizeof small;
    }
    w = zc_send(mm, &ch, k, 0, 11, off, 1000, 0);
    CHECK(w == -EAGAIN && ch, "fd wake-up: the coalesced bytes take the last SEND of the budget; the TX chunk is -EAGAIN (%td)", w);
    CHECK(poll(&p, 1, 0) == 0, "fd wake-up: the fd stays quiet while nothing completes");
    int fired = 0;
    double t0 = now_s();
    for (double until = t0 + 5; !fired && now_s() < until;) {
        service(k);
        p.revents = 0;
        fired = poll(&p, 1, 2) == 1 && (p.revents & POLLIN);
    }
    CHECK(fired, "fd wake-up: the connection's fd fires once the peer takes the SENDs (%.3f s)", now_s() - t0);
    if (ch) {
        w = zc_send(mm, &ch, k, 1, 11, off, 1000, 5);
        CHECK(w == 1000, "fd wake-up: then the TX chunk is accepted (%td)", w);
        if (w == 1000) {
            csum_add(&sum, pat_at(11, off), 1000);
            off += 1000;
        }
    }
    if (ch) ibstack_mem_mgr_return_tx(mm, &ch, 1);
    for (double until = now_s() + 20; k->rx_bytes - rx0 < off && now_s() < until;) service(k);
    CHECK(k->rx_bytes - rx0 == off && csum_value(&k->rx_sum) == csum_value(&sum),
          "fd wake-up: the peer got every byte in order, the coalesced ones before the chunk (%llu of %llu B)",
          (unsigned long long)(k->rx_bytes - rx0), (unsigned long long)off);
    ibstack_mem_mgr_free(mm);
}

static void run(int hd, int srq) {
    const char *extra[] = {"ibstack_stack_thread", hd ? "false" : "true", "ibstack_max_inflight_per_conn", "16", NULL};
    ibstack_stack *s;
    CHECK_RC(stack_open(&s, srq, extra), 0, "stack (%s, %s)", hd ? "host-driven" : "polling thread", srq ? "SRQ" : "per-QP RQ");
    if (!s) return;
    g_s = s, g_hd = hd;
    ibstack_mem_stats base = stack_mem(s);
    static peer k;
    memset(&k, 0, sizeof k);
    CHECK_RC(raw_open(&k.p, NRECV + NSEND, BUFSZ), 0, "raw-verbs peer on rxe0 (%u receive + %u send buffers of %u B)", NRECV,
             NSEND, BUFSZ);
    k.p.initial_recv = NRECV;

    ibstack_mem_mgr *mm = NULL; /* taken only after the receive part: lent chunks need no handle of the pools */
    raw_conn wire;
    int up = raw_conn_open(&wire, s, hd, &k.p);
    ibstack_conn *c = wire.c;
    if (!up) goto out;
    k.c = c;
    fd_wake_phase(s, &k);

    /* ---- receive: lent chunks, shuffled give-backs */
    uint64_t sent_off = 0, got = 0, partial_reads = 0, partial_ok = 0, bad_len = 0, bad_order = 0, lent_total = 0;
    csum sent_sum = {0, 0}, got_sum = {0, 0};
    uint32_t lens[SENDS];
    unsigned next_send = 0, next_expect = 0;
    uint64_t expect_left = 0; /* bytes of SEND next_expect still unseen (after a partial recv) */
    ibstack_chunk *held[HOLD + 8];
    unsigned nheld = 0;
    int rc = 0, eos = 0;
    double t0 = now_s(), end = t0 + 60;
    while (!eos && !rc && now_s() < end) {
        /* keep the peer sending */
        while (next_send < SENDS && k.send_inflight < NSEND) {
            uint32_t len = send_len(next_send);
            lens[next_send] = len;
            if ((rc = raw_send(&k, pat_at(3, sent_off), len))) break;
            csum_add(&sent_sum, pat_at(3, sent_off), len);
            sent_off += len;
            next_send++;
            if (next_send == SENDS) rc = raw_send(&k, "", 0); /* then the close SEND */
        }
        service(&k);
        /* now and then a few bytes with the copying recv first */
        if (next_expect < SENDS && next_expect % 11 == 5 && expect_left == 0) {
            uint8_t small[5];
            ptrdiff_t r = ibstack_conn_recv(c, small, lens[next_expect] > 5 ? 5 : lens[next_expect] - 1);
            if (r > 0) {
                csum_add(&got_sum, small, (size_t)r);
                got += (uint64_t)r;
                expect_left = lens[next_expect] - (uint64_t)r;
                partial_reads++;
            }
        }
        ibstack_chunk *lent[8];
        ptrdiff_t n = ibstack_conn_recv_chunks(c, lent, 8);
        if (n == -ECONNRESET) {
            eos = 1;
        } else if (n < 0 && n != -EAGAIN) {
            printf("# ibstack_conn_recv_chunks: %td %s\n", n, h_last_error());
            rc = (int)n;
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            ibstack_chunk *ch = lent[i];
            uint32_t off = ibstack_chunk_offset(ch), size = ibstack_chunk_size(ch);
            uint32_t want = expect_left ? (uint32_t)expect_left : (next_expect < SENDS ? lens[next_expect] : 0);
            if (expect_left) {
                partial_ok += off == lens[next_expect] - expect_left;
                expect_left = 0;
            } else if (off != 0) {
                bad_order++;
            }
            if (size != want) bad_len++;
            csum_add(&got_sum, (const uint8_t *)ibstack_chunk_buffer(ch) + off, size);
            got += size;
            next_expect++;
            lent_total++;
            held[nheld++] = ch;
        }
        /* give back all but a few, in a shuffled order, two calls */
        if (nheld > HOLD) {
            for (unsigned i = nheld - 1; i > 0; i--) {
                unsigned j = crng() % (i + 1);
                ibstack_chunk *t = held[i];
                held[i] = held[j];
                held[j] = t;
            }
            unsigned give = nheld - 4, half = give / 2;
            int r1 = ibstack_conn_release_chunks(c, held, half);
            int r2 = ibstack_conn_release_chunks(c, held + half, give - half);
            if (r1 || r2) {
                printf("# ibstack_conn_release_chunks: %d %d %s\n", r1, r2, h_last_error());
                rc = r1 ? r1 : r2;
            }
            memmove(held, held + give, (nheld - give) * sizeof held[0]);
            nheld -= give;
        }
        if (n <= 0 && !hd) usleep(50);
    }
    CHECK(eos && rc == 0, "%u SENDs lent and given back, then the end of the stream (-ECONNRESET) (rc %d, %.2f s)", SENDS, rc,
          now_s() - t0);
    CHECK(got == sent_off && csum_value(&got_sum) == csum_value(&sent_sum), "every byte in order (%llu of %llu B, checksum)",
          (unsigned long long)got, (unsigned long long)sent_off);
    CHECK(next_expect == SENDS && bad_len == 0 && bad_order == 0,
          "one lent chunk per SEND, as long as it, each from offset 0 (%u chunks, %llu wrong lengths, %llu wrong offsets)",
          next_expect, (unsigned long long)bad_len, (unsigned long long)bad_order);
    CHECK(partial_reads >= 10 && partial_ok == partial_reads,
          "after a partial ibstack_conn_recv the next lent chunk starts where it stopped (%llu of %llu)",
          (unsigned long long)partial_ok, (unsigned long long)partial_reads);
    CHECK(k.errors == 0, "no error completion on the raw peer");

    /* ---- misuse of a lent chunk: refused, and nothing given back */
    CHECK_RC(ibstack_stack_mem_mgr(s, &mm), 0, "the stack's pools (ibstack_stack_mem_mgr)");
    if (nheld > 0) {
        uint64_t in_use = stack_mem(s).rx_in_use;
        int r = ibstack_mem_mgr_release_rx_chunk(mm, held[0]);
        CHECK(r == -EINVAL && strstr(h_last_error(), "ibstack_conn_release_chunks"),
              "a lent chunk given to ibstack_mem_mgr_release_rx_chunk: -EINVAL naming ibstack_conn_release_chunks (%d: %s)", r,
              h_last_error());
        ibstack_chunk *pair[2] = {held[0], (ibstack_chunk *)&k}; /* the second is no chunk at all */
        r = ibstack_conn_release_chunks(c, pair, 2);
        CHECK(r == -EINVAL && strstr(h_last_error(), "chunks[1]"), "a foreign pointer among them: -EINVAL naming chunks[1] (%s)",
              h_last_error());
        CHECK(stack_mem(s).rx_in_use == in_use, "and neither call gave anything back (rx_in_use %llu)",
              (unsigned long long)stack_mem(s).rx_in_use);
        CHECK_RC(ibstack_conn_release_chunks(c, held, 1), 0, "the lent chunk given back properly");
        r = ibstack_conn_release_chunks(c, held, 1);
        CHECK(r == -EINVAL && strstr(h_last_error(), "given back already"), "given back twice: -EINVAL (%s)", h_last_error());
        memmove(held, held + 1, (nheld - 1) * sizeof held[0]);
        nheld--;
    }

    /* ---- send from TX chunks filled in place */
    ibstack_mem_stats before_tx = stack_mem(s);
    uint64_t tx_off = 0, tx_refused = 0;
    csum tx_sum = {0, 0};
    uint64_t rx_sends0 = k.rx_sends, rx_bytes0 = k.rx_bytes;
    k.rx_sum = (csum){0, 0};
    for (unsigned i = 0; i < TX_SENDS && !rc; i++) {
        ibstack_chunk *ch = NULL;
        size_t got_n = 0;
        double until = now_s() + 20;
        int r;
        while ((r = ibstack_mem_mgr_get_tx_chunks(mm, 1, &ch, 1, &got_n)) == -EAGAIN && now_s() < until) service(&k);
        if (r || got_n != 1) {
            printf("# ibstack_mem_mgr_get_tx_chunks: %d (%zu) %s\n", r, got_n, h_last_error());
            rc = r ? r : -EIO;
            break;
        }
        uint32_t len = send_len(i);
        memcpy(ibstack_chunk_buffer(ch), pat_at(5, tx_off), len); /* filled in place */
        ptrdiff_t w;
        while ((w = ibstack_conn_send(c, ibstack_chunk_buffer(ch), len)) == -EAGAIN && now_s() < until) {
            tx_refused++;
            service(&k);
        }
        if (w != (ptrdiff_t)len) {
            printf("# ibstack_conn_send(TX chunk): %td %s\n", w, h_last_error());
            rc = w < 0 ? (int)w : -EIO;
            ibstack_mem_mgr_return_tx(mm, &ch, 1);
            break;
        }
        csum_add(&tx_sum, pat_at(5, tx_off), len);
        tx_off += len;
        service(&k);
    }
    for (double until = now_s() + 20; k.rx_bytes - rx_bytes0 < tx_off && now_s() < until;) service(&k);
    CHECK(rc == 0 && k.rx_bytes - rx_bytes0 == tx_off && csum_value(&k.rx_sum) == csum_value(&tx_sum),
          "%u SENDs from TX chunks filled in place: the raw peer got every byte in order (%llu of %llu B)", TX_SENDS,
          (unsigned long long)(k.rx_bytes - rx_bytes0), (unsigned long long)tx_off);
    CHECK(k.rx_sends - rx_sends0 == TX_SENDS, "one SEND per chunk (%llu)", (unsigned long long)(k.rx_sends - rx_sends0));
    for (double until = now_s() + 10; stack_mem(s).tx_in_use > before_tx.tx_in_use && now_s() < until;) service(&k);
    CHECK(stack_mem(s).tx_in_use == before_tx.tx_in_use, "the sent chunks went back to the pool (tx_in_use %llu)",
          (unsigned long long)stack_mem(s).tx_in_use);

    /* ---- the cap on SENDs in flight, for zero-copy sends: the peer stops reposting receives */
    if (rc == 0) {
        ibstack_mem_stats before_cap = stack_mem(s);
        uint64_t cap_off = 0, accepted = 0, rx_bytes1 = k.rx_bytes;
        csum cap_sum = {0, 0};
        k.rx_sum = (csum){0, 0};
        ibstack_chunk *ch = NULL;
        ptrdiff_t w = 0;
        /* NRECV SENDs fill the peer's posted receives, CAP more wait in RNR retries */
        for (unsigned i = 0; i < NRECV + 4 * CAP && rc == 0; i++) {
            /* the stack sees the completions of what the peer took (the peer itself is not serviced) */
            w = zc_send(mm, &ch, &k, 0, 7, cap_off, 1000, 1);
            if (w == -EAGAIN) break; /* no progress for 1 s: the cap (or the bug of a missing cap) */
            if (w != 1000) {
                printf("# ibstack_conn_send(TX chunk): %td %s\n", w, h_last_error());
                rc = w < 0 ? (int)w : -EIO;
                break;
            }
            csum_add(&cap_sum, pat_at(7, cap_off), 1000);
            cap_off += 1000;
            accepted++;
        }
        uint64_t in_use = stack_mem(s).tx_in_use - before_cap.tx_in_use - (ch ? 1 : 0);
        CHECK(w == -EAGAIN && ch, "with the peer's receives used up, a TX chunk sent past the cap is -EAGAIN and stays the caller's "
              "(%llu accepted, then %td: %s)", (unsigned long long)accepted, w, w < 0 ? h_last_error() : "");
        CHECK(in_use <= CAP && accepted <= NRECV + CAP,
              "the connection holds at most %u TX chunks in flight (%llu; %llu accepted against %u receives posted)", CAP,
              (unsigned long long)in_use, (unsigned long long)accepted, NRECV);
        if (ch) ibstack_mem_mgr_return_tx(mm, &ch, 1);
        for (double until = now_s() + 20; k.rx_bytes - rx_bytes1 < cap_off && now_s() < until;) service(&k);
        CHECK(k.rx_bytes - rx_bytes1 == cap_off && csum_value(&k.rx_sum) == csum_value(&cap_sum),
              "after the peer posts receives again, every byte arrives in order (%llu of %llu B)",
              (unsigned long long)(k.rx_bytes - rx_bytes1), (unsigned long long)cap_off);
    }

    /* ---- close with chunks still lent: close gives them back */
    printf("# closing with %u chunks still lent\n", nheld);
    CHECK(nheld > 0, "chunks are still lent at close (%u)", nheld);
out:
    if (mm) ibstack_mem_mgr_free(mm);
    raw_conn_teardown(&wire, s, hd, &base, &k.p);
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "thread") && strcmp(argv[1], "host")) || (strcmp(argv[2], "srq") && strcmp(argv[2], "nosrq"))) {
        fprintf(stderr, "usage: %s thread|host srq|nosrq\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pat_init();
    double t0 = now_s();
    run(!strcmp(argv[1], "host"), !strcmp(argv[2], "srq"));
    printf("# timing: %s %s took %.1f s\n", argv[1], argv[2], now_s() - t0);
    DONE();
}
