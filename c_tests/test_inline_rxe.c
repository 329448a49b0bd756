/* Inline SENDs (ibstack_max_inline) seen from the wire, run in the VM.
 *
 * An ibstack connection (polling thread, no write coalescing, so one write is one SEND)
 * writes messages whose sizes straddle the inline threshold to a peer written on
 * libibverbs alone (raw_peer.h), which sees every SEND:
 *   - rxe0 itself is asked first, on the raw peer's PD: what it grants for the configured
 *     inline size (ibv_create_qp reports it back in cap.max_inline_data) or that it
 *     refuses it;
 *   - the ibstack QP's history names the inline size it uses ("created": "max_inline N"):
 *     what the device granted, 0 with ibstack_max_inline = 0, and 0 plus "the device
 *     refused N" when the device refused it (the connection is made all the same, and the
 *     refusal is logged at info);
 *   - its first SEND (1 B) is recorded as inline exactly when inline is on;
 *   - 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4096, 16384 B and the
 *     granted size -1/+0/+1, 40 rounds of each: every SEND arrives with its own length, the
 *     byte stream in order (checksum), tx_chunks equals the SENDs, no error completion.
 * usage: test_inline_rxe default|0|N   (N = the ibstack_max_inline value to set) */
#include "raw_conn.h"

#define BUFSZ 16384u /* ms_async_rdma_buffer_size of stack_open */
#define NRECV 256u
#define ROUNDS 40u

typedef struct {
    raw_peer p;
    uint64_t bytes, sends, errors, len_mismatch, fin;
    const uint32_t *want; /* the length each SEND must have, in order */
    uint64_t nwant;
    csum sum;
} sink;

static void sink_recv(void *ctx, const uint8_t *data, uint32_t len) {
    sink *k = ctx;
    if (len == 0) {
        k->fin++;
        return;
    }
    uint32_t want = k->sends < k->nwant ? k->want[k->sends] : 0;
    if (len != want && k->len_mismatch++ < 3) printf("# SEND %llu: %u B, want %u B\n", (unsigned long long)k->sends, len, want);
    csum_add(&k->sum, data, len);
    k->bytes += len;
    k->sends++;
}

static void sink_poll(sink *k) { raw_poll(&k->p, &k->errors, k, sink_recv, NULL); }

static ibstack_counters counters(const ibstack_stack *s) {
    ibstack_counters c;
    memset(&c, 0, sizeof c);
    ibstack_stack_counters(s, &c);
    return c;
}

/* the device's own answer to an RC QP with one SGE and `inline_len` bytes inline, shaped as
 * ibstack's (send queue of 258): the granted size, or -errno */
static long probe_inline(raw_peer *p, uint32_t inline_len) {
    struct ibv_qp_init_attr ia = {.send_cq = p->cq, .recv_cq = p->cq, .qp_type = IBV_QPT_RC,
                                  .cap = {.max_send_wr = 258, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1,
                                          .max_inline_data = inline_len}};
    struct ibv_qp *qp = ibv_create_qp(p->pd, &ia);
    if (!qp) return -(long)errno;
    long got = (long)ia.cap.max_inline_data;
    ibv_destroy_qp(qp);
    return got;
}

/* the detail of event `ev` in the history of QP `qpn` (a live one), or "" */
static const char *history_detail(const ibstack_stack *s, uint32_t qpn, const char *ev) {
    static char json[1 << 16], out[512];
    out[0] = 0;
    if (ibstack_stack_history_json(s, json, sizeof json) >= (int)sizeof json) return out;
    char key[64], evkey[64];
    snprintf(key, sizeof key, "{\"qpn\":%u,", qpn);
    snprintf(evkey, sizeof evkey, "\"event\":\"%s\",\"detail\":\"", ev);
    const char *q = strstr(json, key);
    if (!q) return out;
    const char *end = strstr(q, "]}"); /* the end of this QP's events */
    const char *e = strstr(q, evkey);
    if (!e || (end && e > end)) return out;
    e += strlen(evkey);
    size_t n = 0;
    while (e[n] && e[n] != '"' && n + 1 < sizeof out) n++;
    memcpy(out, e, n);
    out[n] = 0;
    return out;
}

static char logged[2048];
static int logged_level;
static void log_cb(void *ud, int level, const char *target, size_t tlen, const char *msg, size_t mlen) {
    (void)ud, (void)target, (void)tlen;
    if (!logged[0] && strstr(msg, "inline")) {
        snprintf(logged, sizeof logged, "%.*s", (int)mlen, msg);
        logged_level = level;
    }
}

static void run(const char *setting) {
    const char *extra[] = {"ibstack_tx_coalesce", "false", "ibstack_max_inline", setting, NULL};
    if (!strcmp(setting, "default")) extra[2] = NULL;
    uint32_t asked = extra[2] ? (uint32_t)strtoul(setting, NULL, 10) : 128;
    CHECK_RC(ibstack_set_log_callback(log_cb, NULL, 3), 0, "info-level log callback installed");
    ibstack_stack *s;
    CHECK_RC(stack_open(&s, 0, extra), 0, "stack (polling thread, no coalescing, ibstack_max_inline %s)", setting);
    if (!s) return;
    ibstack_mem_stats base = stack_mem(s);
    static sink k;
    memset(&k, 0, sizeof k);
    CHECK_RC(raw_open(&k.p, NRECV, BUFSZ), 0, "raw-verbs peer on rxe0 (%u receive buffers of %u B)", NRECV, BUFSZ);

    /* what rxe0 does with the inline size asked for */
    long dev = asked ? probe_inline(&k.p, asked) : 0;
    printf("# rxe0 answers max_inline_data %u with %ld%s\n", asked, dev, dev < 0 ? " (-errno)" : "");
    uint32_t expect = dev > 0 ? (uint32_t)dev : 0;
    CHECK(dev >= (long)asked || dev == -EINVAL || dev == -ENOMEM, "rxe0 grants at least the %u B asked, or refuses with EINVAL/ENOMEM (%ld)",
          asked, dev);

    raw_conn wire;
    int up = raw_conn_open(&wire, s, 0, &k.p);
    ibstack_conn *c = wire.c;
    if (!up) goto out;
    uint32_t qpn = ibstack_conn_qp_num(c);

    char want_created[128];
    snprintf(want_created, sizeof want_created, "max_inline %u", expect);
    const char *created = history_detail(s, qpn, "created");
    printf("# QP %u created: %s\n", qpn, created);
    CHECK(strstr(created, want_created) != NULL, "the QP uses %u B inline, what the device granted (history: \"%s\")", expect, created);
    if (dev < 0) {
        char refused[64];
        snprintf(refused, sizeof refused, "the device refused %u", asked);
        CHECK(strstr(created, refused) != NULL, "the history says the device refused %u B", asked);
        CHECK(logged_level == 3 && strstr(logged, refused) != NULL, "the refusal was logged at info (level %d: \"%s\")", logged_level, logged);
    } else {
        CHECK(!strstr(created, "refused") && !logged[0], "nothing refused, nothing logged about inline (\"%s\")", logged);
    }

    /* the SEND lengths, in order: the first is 1 B, then ROUNDS rounds of every size */
    static uint32_t want[1 + ROUNDS * 32];
    uint32_t sizes[32] = {1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4096, BUFSZ};
    unsigned nsizes = 16;
    if (expect > 1 && expect < BUFSZ) {
        sizes[nsizes++] = expect - 1;
        sizes[nsizes++] = expect;
        sizes[nsizes++] = expect + 1;
    }
    size_t n = 0;
    want[n++] = 1;
    for (unsigned r = 0; r < ROUNDS; r++)
        for (unsigned i = 0; i < nsizes; i++) want[n++] = sizes[(i + r) % nsizes];
    k.want = want;
    k.nwant = n;

    uint64_t off = 0, chunks0 = counters(s).tx_chunks;
    csum sent = {0, 0};
    int rc = 0;
    double t0 = now_s();
    for (size_t w = 0; w < n && !rc; w++) {
        const uint8_t *p = pat_at(3, off);
        double end = now_s() + 20;
        for (;;) {
            ptrdiff_t r = ibstack_conn_send(c, p, want[w]);
            if (r == (ptrdiff_t)want[w]) break;
            if (r != -EAGAIN) {
                printf("# ibstack_conn_send(%u B): %td %s\n", want[w], r, h_last_error());
                rc = r < 0 ? (int)r : -EIO; /* a partial write would break one write = one SEND */
                break;
            }
            if (now_s() > end) {
                rc = -ETIMEDOUT;
                break;
            }
            sink_poll(&k);
        }
        if (rc) break;
        csum_add(&sent, p, want[w]);
        off += want[w];
        if (w == 0) {
            /* the first SEND is in the history with its size and whether it went inline */
            double e1 = now_s() + 5;
            while (k.sends < 1 && now_s() < e1) sink_poll(&k);
            const char *first = history_detail(s, qpn, "first_send");
            if (expect)
                CHECK(!strcmp(first, "1 B, inline"), "the first SEND (1 B) went inline (history: \"%s\")", first);
            else
                CHECK(!strcmp(first, "1 B"), "the first SEND (1 B) did not go inline (history: \"%s\")", first);
        }
        if (w % 16 == 15) sink_poll(&k);
    }
    CHECK_RC(rc, 0, "%zu writes of 1..%u B accepted (%llu B in %.2f s)", n, BUFSZ, (unsigned long long)off, now_s() - t0);
    double end = now_s() + 20;
    while ((k.bytes < off || counters(s).inflight_tx_chunks) && now_s() < end) sink_poll(&k);
    CHECK(k.sends == n && k.len_mismatch == 0, "every write arrived as one SEND of its own length (%llu SENDs, %llu of the wrong length)",
          (unsigned long long)k.sends, (unsigned long long)k.len_mismatch);
    CHECK(k.bytes == off && csum_value(&k.sum) == csum_value(&sent), "the byte stream is the one written, in order (%llu of %llu B, checksum)",
          (unsigned long long)k.bytes, (unsigned long long)off);
    ibstack_counters cn = counters(s);
    CHECK(cn.tx_chunks - chunks0 == n && cn.tx_total_wc_errors == 0, "tx_chunks counts them (%llu), no TX completion error (%llu)",
          (unsigned long long)(cn.tx_chunks - chunks0), (unsigned long long)cn.tx_total_wc_errors);

    ibstack_conn_close(c);
    wire.c = NULL;
    end = now_s() + 20;
    while (!k.fin && now_s() < end) sink_poll(&k);
    CHECK(k.fin == 1 && k.errors == 0, "the close SEND (empty, never inline) arrived; no error completion on the raw peer (%llu)",
          (unsigned long long)k.errors);
out:
    raw_conn_teardown(&wire, s, 0, &base, &k.p);
    ibstack_set_log_callback(NULL, NULL, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s default|0|N\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pat_init();
    double t0 = now_s();
    run(argv[1]);
    printf("# timing: %s took %.1f s\n", argv[1], now_s() - t0);
    DONE();
}
