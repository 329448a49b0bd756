/* Write coalescing (ibstack_tx_coalesce) seen from the wire, run in the VM.
 *
 * An ibstack connection writes a stream of small writes (1..200 B) to a peer written on
 * libibverbs alone that speaks Ceph's async+rdma format by hand (raw_peer.h: cm_meta
 * records, one RECV per SEND, the zero-length close SEND), so the test sees every SEND:
 *   - the byte stream arrives whole and in order (count and order-sensitive checksum);
 *   - held: the peer has one receive posted, so a SEND waits in RNR retries; the writes
 *     made meanwhile are held and go as one SEND once it posts the rest (on), or are each
 *     a SEND (off);
 *   - on: far fewer SENDs than writes (host-driven), some SEND longer than any single
 *     write, none longer than a buffer; off: exactly one SEND per write;
 *   - a write made with nothing in flight reaches the peer by itself (nobody polls the
 *     stack meanwhile): coalescing never holds back the only write of a ping-pong;
 *   - ibstack_conn_sendv packs its buffers into full SENDs (64 x 1000 B: 4 SENDs);
 *   - small writes followed at once by the end (close with the polling thread, shutdown
 *     then close when host-driven) all precede the close SEND, and nothing follows it;
 *   - the stack's tx_chunks counter equals the SENDs the peer received, and every TX
 *     chunk is back in the pool at the end.
 * usage: test_coalesce_rxe thread|host on|off
 *   thread: the stack's polling thread (the default); host: ibstack_stack_thread = false,
 *   the test calls ibstack_stack_poll every 16 writes and whenever a write is refused. The writes
 *   come in bursts of 16; the raw peer takes its receives between bursts. */
#include "raw_conn.h"

#define BUFSZ 16384u /* ms_async_rdma_buffer_size of stack_open */
#define NRECV 256u
#define WRITES 100000u
#define MAX_WRITE 200u
#define TAIL_WRITES 2000u
#define HELD_WRITES 64u /* at most 64 x 200 B: one buffer */

typedef struct {
    raw_peer p;
    uint64_t bytes, sends, max_len, after_fin, errors;
    int fin;
    csum sum;
} sink;

/* takes what the raw peer received and reposts its buffers */
static void sink_recv(void *ctx, const uint8_t *data, uint32_t len) {
    sink *k = ctx;
    if (len == 0) {
        k->fin++;
        return;
    }
    if (k->fin) k->after_fin++;
    csum_add(&k->sum, data, len);
    k->bytes += len;
    k->sends++;
    if (len > k->max_len) k->max_len = len;
}

static void sink_poll(sink *k) { raw_poll(&k->p, &k->errors, k, sink_recv, NULL); }

static uint64_t tx_chunks(const ibstack_stack *s) {
    ibstack_counters c;
    memset(&c, 0, sizeof c);
    ibstack_stack_counters(s, &c);
    return c.tx_chunks;
}

/* one write of `len` bytes at stream offset *off, retried on -EAGAIN while the peer (unless
 * `k` is NULL) and (host mode) the stack are serviced; 0, or the error */
static int write_one(ibstack_stack *s, int hd, ibstack_conn *c, sink *k, uint64_t *off, size_t len, csum *sent) {
    const uint8_t *p = pat_at(1, *off);
    size_t done = 0;
    double end = now_s() + 30;
    while (done < len) {
        int r = ibstack_conn_send(c, p + done, len - done);
        if (r > 0) {
            csum_add(sent, p + done, (size_t)r);
            done += (size_t)r;
            continue;
        }
        if (r != -EAGAIN) {
            printf("# ibstack_conn_send: %d %s\n", r, h_last_error());
            return r;
        }
        if (now_s() > end) return -ETIMEDOUT;
        if (k) sink_poll(k);
        if (hd) hd_poll(s);
    }
    *off += len;
    return 0;
}

/* services the peer (and a host-driven stack) until `cond` holds or `secs` pass */
#define SERVICE_UNTIL(cond, secs)                                                          \
    do {                                                                                   \
        double end_ = now_s() + (secs);                                                    \
        while (!(cond) && now_s() < end_) {                                                \
            sink_poll(&k);                                                                 \
            if (hd) hd_poll(s);                                                            \
        }                                                                                  \
    } while (0)

static uint64_t tx_in_flight(const ibstack_stack *s) {
    ibstack_counters c;
    memset(&c, 0, sizeof c);
    ibstack_stack_counters(s, &c);
    return c.inflight_tx_chunks;
}

static void run(int hd, int on) {
    const char *extra[] = {"ibstack_stack_thread", hd ? "false" : "true", "ibstack_tx_coalesce", on ? "true" : "false", NULL};
    ibstack_stack *s;
    CHECK_RC(stack_open(&s, 0, extra), 0, "stack (%s, ibstack_tx_coalesce = %s)", hd ? "host-driven" : "polling thread",
             on ? "true" : "false");
    if (!s) return;
    ibstack_mem_stats base = stack_mem(s);
    static sink k;
    memset(&k, 0, sizeof k);
    CHECK_RC(raw_open(&k.p, NRECV, BUFSZ), 0, "raw-verbs peer on rxe0 (%u receive buffers of %u B)", NRECV, BUFSZ);
    k.p.initial_recv = 1; /* the held phase below: one receive posted, the rest later */

    /* the raw peer listens on d0's address; the stack connects */
    raw_conn wire;
    int up = raw_conn_open(&wire, s, hd, &k.p);
    ibstack_conn *c = wire.c;
    if (!up) goto out;

    uint64_t off = 0;
    csum sent = {0, 0};
    int rc = 0;

    /* held: the peer has one receive posted, so the second SEND waits in RNR retries (in
     * flight, not acknowledged) until it posts the rest; writes made meanwhile coalesce */
    uint64_t held0 = tx_chunks(s);
    for (unsigned i = 0; i < HELD_WRITES && !rc; i++) {
        rc = write_one(s, hd, c, NULL, &off, 1 + crng() % MAX_WRITE, &sent);
        if (hd && i % 16 == 15) hd_poll(s);
    }
    CHECK_RC(rc, 0, "%u small writes while the peer has one receive posted (%llu B)", HELD_WRITES, (unsigned long long)off);
    uint64_t held = tx_chunks(s) - held0;
    if (on)
        CHECK(held <= 3, "coalescing: the writes made while a SEND waits for the peer are held, not sent (%llu SENDs posted)",
              (unsigned long long)held);
    else
        CHECK(held == HELD_WRITES, "without coalescing each of them is a SEND (%llu)", (unsigned long long)held);
    for (unsigned i = 1; i < NRECV; i++)
        if (raw_post_recv(&k.p, i)) k.errors++;
    SERVICE_UNTIL(k.bytes >= off && tx_in_flight(s) == 0, 20);
    CHECK(k.bytes == off && csum_value(&k.sum) == csum_value(&sent),
          "once the peer posts its receives every byte arrives in order (%llu of %llu B in %llu SENDs)",
          (unsigned long long)k.bytes, (unsigned long long)off, (unsigned long long)k.sends);
    if (on) CHECK(k.sends <= held + 1, "the held bytes went as one more SEND (%llu SENDs in all)", (unsigned long long)k.sends);

    uint64_t chunks0 = tx_chunks(s), sends0 = k.sends;
    unsigned writes = 0;
    double t0 = now_s();
    for (; writes < WRITES && !rc; writes++) {
        rc = write_one(s, hd, c, &k, &off, 1 + crng() % MAX_WRITE, &sent);
        /* bursts of 16 writes, as an application writing a message in pieces: the peer (and,
         * host-driven, the stack) is serviced between bursts */
        if (writes % 16 == 15) {
            sink_poll(&k);
            if (hd) hd_poll(s);
        }
    }
    CHECK_RC(rc, 0, "%u writes of 1..%u B accepted (%llu B in %.2f s)", writes, MAX_WRITE, (unsigned long long)off, now_s() - t0);
    SERVICE_UNTIL(k.bytes >= off && tx_in_flight(s) == 0, 20);
    uint64_t sends = k.sends - sends0;
    printf("# %u writes -> %llu SENDs on the wire (%.1f writes per SEND, longest %llu B)\n", writes, (unsigned long long)sends,
           sends ? (double)writes / (double)sends : 0.0, (unsigned long long)k.max_len);
    CHECK(k.bytes == off, "the peer received every byte (%llu of %llu)", (unsigned long long)k.bytes, (unsigned long long)off);
    CHECK(csum_value(&k.sum) == csum_value(&sent), "the byte stream is the one written, in order (checksum)");
    CHECK(k.max_len <= BUFSZ, "no SEND is longer than a buffer (%llu B)", (unsigned long long)k.max_len);
    if (on) {
        /* host-driven, completions are seen every 16 writes: at least 4 writes a SEND. With the
         * polling thread a SEND is often acknowledged and reaped before the next write (rxe runs
         * the exchange inside the post), and a write with nothing in flight goes at once; the
         * held phase above is the deterministic check there */
        if (hd)
            CHECK(sends * 4 <= writes, "coalescing: at most a quarter as many SENDs as writes (%llu SENDs)", (unsigned long long)sends);
        CHECK(k.max_len > MAX_WRITE, "some SEND carries several writes (longest %llu B > %u B)", (unsigned long long)k.max_len, MAX_WRITE);
    } else {
        CHECK(sends == writes, "without coalescing every write is one SEND (%llu SENDs)", (unsigned long long)sends);
        CHECK(k.max_len <= MAX_WRITE, "and no SEND is longer than a write (%llu B)", (unsigned long long)k.max_len);
    }
    CHECK(tx_chunks(s) - chunks0 == sends, "tx_chunks counts the SENDs the peer received (%llu)", (unsigned long long)(tx_chunks(s) - chunks0));

    /* nothing in flight: one write goes out by itself, nobody polls the stack */
    CHECK(tx_in_flight(s) == 0, "nothing in flight before the single write");
    rc = write_one(s, 0, c, &k, &off, 10, &sent);
    double t1 = now_s();
    while (k.bytes < off && now_s() < t1 + 5) sink_poll(&k);
    CHECK(rc == 0 && k.bytes == off && k.sends == sends0 + sends + 1, "a write with nothing in flight is one SEND at once (%.0f us, without polling the stack)",
          (now_s() - t1) * 1e6);
    SERVICE_UNTIL(tx_in_flight(s) == 0, 10);

    /* vectored: 64 buffers of 1000 B in one ibstack_conn_sendv with nothing in flight are packed
     * into full SENDs (4 of 16384 B), never a SEND per buffer; bad vectors are refused */
    SERVICE_UNTIL(tx_in_flight(s) == 0, 10);
    {
        struct iovec iv[64];
        for (int i = 0; i < 64; i++) {
            iv[i].iov_base = (void *)pat_at(1, off + (uint64_t)i * 1000);
            iv[i].iov_len = 1000;
        }
        uint64_t s0 = k.sends, b0 = k.bytes, m0 = k.max_len;
        k.max_len = 0;
        ptrdiff_t w = ibstack_conn_sendv(c, iv, 64);
        CHECK(w == 64000, "ibstack_conn_sendv of 64 x 1000 B takes them all (%td)", w);
        if (w == 64000) {
            csum_add(&sent, pat_at(1, off), 64000);
            off += 64000;
        }
        SERVICE_UNTIL(k.bytes >= off && tx_in_flight(s) == 0, 10);
        CHECK(k.bytes - b0 == 64000 && k.sends - s0 == 4 && k.max_len == BUFSZ,
              "they arrive packed into full SENDs: %llu SENDs for %llu B, longest %llu B", (unsigned long long)(k.sends - s0),
              (unsigned long long)(k.bytes - b0), (unsigned long long)k.max_len);
        if (m0 > k.max_len) k.max_len = m0;
        struct iovec bad[2] = {{.iov_base = NULL, .iov_len = 5}, {.iov_base = (void *)"x", .iov_len = 1}};
        CHECK_RC(ibstack_conn_sendv(c, bad, 2), -EINVAL, "a NULL base with a length: -EINVAL (%s)", h_last_error());
        CHECK_RC(ibstack_conn_sendv(c, iv, 1025), -EINVAL, "more than 1024 buffers: -EINVAL");
        CHECK_RC(ibstack_conn_sendv(c, NULL, 0), 0, "no buffer: 0 bytes");
    }

    /* a burst of small writes, then the end right away: all of it precedes the close SEND */
    for (unsigned i = 0; i < TAIL_WRITES && !rc; i++) rc = write_one(s, hd, c, &k, &off, 1 + crng() % MAX_WRITE, &sent);
    CHECK_RC(rc, 0, "%u more small writes", TAIL_WRITES);
    if (hd) CHECK_RC(ibstack_conn_shutdown(c), 0, "ibstack_conn_shutdown right after them");
    ibstack_conn_close(c);
    wire.c = NULL;
    SERVICE_UNTIL(k.fin, 20);
    CHECK(k.fin == 1 && k.after_fin == 0, "the close SEND arrived once, nothing after it (%d, %llu SENDs after)", k.fin,
          (unsigned long long)k.after_fin);
    CHECK(k.bytes == off && csum_value(&k.sum) == csum_value(&sent),
          "every byte of the burst arrived before the close SEND, in order (%llu of %llu)", (unsigned long long)k.bytes,
          (unsigned long long)off);
    CHECK(k.errors == 0, "no error completion on the raw peer (%llu)", (unsigned long long)k.errors);
out:
    raw_conn_teardown(&wire, s, hd, &base, &k.p);
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "thread") && strcmp(argv[1], "host")) || (strcmp(argv[2], "on") && strcmp(argv[2], "off"))) {
        fprintf(stderr, "usage: %s thread|host on|off\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pat_init();
    double t0 = now_s();
    run(!strcmp(argv[1], "host"), !strcmp(argv[2], "on"));
    printf("# timing: %s %s took %.1f s\n", argv[1], argv[2], now_s() - t0);
    DONE();
}
