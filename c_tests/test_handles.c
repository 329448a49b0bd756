/* Handles that are not what they claim: a foreign pointer (a stack address, a heap block,
 * a small integer), a handle of another type, a freed handle and a double free, passed to
 * every family of functions. Each call must give -EINVAL (NULL / 0 / false where the return
 * type cannot carry an errno) with a message "ibstack_<fn>: ...", and a _free must leave
 * the object alone with the message set — never a crash. Under AddressSanitizer (make
 * check-asan) nothing may be reported either: the library never reads freed memory.
 *
 *   test_handles        tier A (host): config handles, foreign pointers, wrong types
 *   test_handles vm     tier B (Soft-RoCE rxe0): real ib, mem_mgr, chunk, cq, dispatcher,
 *                       qp, stack, listener and conn handles, freed and passed as each other
 */
#include "harness.h"

/* the call returned -EINVAL and the message names the function */
#define BAD(call, fn, what)                                                                 \
    do {                                                                                    \
        ibstack_config_set(NULL, "k", "v"); /* reset the message */                         \
        long b_rc = (long)(call);                                                           \
        const char *b_m = h_last_error();                                                   \
        int b_ok = b_rc == -EINVAL && strncmp(b_m, fn ": ", strlen(fn ": ")) == 0;          \
        if (!b_ok) printf("# %s: got %ld, message \"%s\"\n", fn, b_rc, b_m);                \
        CHECK(b_ok, "%s(%s) is -EINVAL with a message", fn, what);                          \
    } while (0)

/* the call returned zero/NULL/false and left a message naming the function */
#define BAD0(call, fn, what)                                                                \
    do {                                                                                    \
        ibstack_config_set(NULL, "k", "v"); /* reset the message */                         \
        int b_zero = !(call);                                                               \
        const char *b_m = h_last_error();                                                   \
        int b_ok = b_zero && strncmp(b_m, fn ": ", strlen(fn ": ")) == 0;                   \
        if (!b_ok) printf("# %s: zero %d, message \"%s\"\n", fn, b_zero, b_m);              \
        CHECK(b_ok, "%s(%s) is 0/NULL with a message", fn, what);                           \
    } while (0)

/* a _free left a message naming it (the object, if any, is untouched) */
#define FREE_IGNORED(call, fn, what)                                                        \
    do {                                                                                    \
        ibstack_config_set(NULL, "k", "v"); /* reset the message */                         \
        call;                                                                               \
        const char *b_m = h_last_error();                                                   \
        int b_ok = strncmp(b_m, fn ": ", strlen(fn ": ")) == 0 && strstr(b_m, "not freed"); \
        if (!b_ok) printf("# %s: message \"%s\"\n", fn, b_m);                               \
        CHECK(b_ok, "%s(%s) is ignored with a message", fn, what);                          \
    } while (0)

static char buf[256];

static void config_family(void *p, const char *what) {
    BAD(ibstack_config_set(p, "ms_async_rdma_sl", "1"), "ibstack_config_set", what);
    BAD(ibstack_config_get(p, "ms_async_rdma_sl", buf, sizeof buf), "ibstack_config_get", what);
    BAD(ibstack_config_load_file(p, "/nonexistent", NULL), "ibstack_config_load_file", what);
    BAD(ibstack_config_to_json(p, buf, sizeof buf), "ibstack_config_to_json", what);
    BAD(ibstack_global_init(p), "ibstack_global_init", what);
    BAD(ibstack_ib_new(p, &(ibstack_ib *){NULL}), "ibstack_ib_new", what);
    BAD(ibstack_stack_new(p, &(ibstack_stack *){NULL}), "ibstack_stack_new", what);
    FREE_IGNORED(ibstack_config_free(p), "ibstack_config_free", what);
}

static void device_list_family(void *p, const char *what) {
    BAD0(ibstack_device_list_count(p), "ibstack_device_list_count", what);
    BAD(ibstack_device_list_name(p, 0, buf, sizeof buf), "ibstack_device_list_name", what);
    FREE_IGNORED(ibstack_device_list_free(p), "ibstack_device_list_free", what);
}

static void ib_family(void *p, const char *what) {
    ibstack_ib_info info;
    BAD(ibstack_ib_query(p, &info), "ibstack_ib_query", what);
    BAD(ibstack_ib_device_name(p, buf, sizeof buf), "ibstack_ib_device_name", what);
    BAD(ibstack_ib_async_fd(p), "ibstack_ib_async_fd", what);
    BAD0(ibstack_ib_pd_raw(p), "ibstack_ib_pd_raw", what);
    BAD(ibstack_mem_mgr_new(p, &(ibstack_mem_mgr *){NULL}), "ibstack_mem_mgr_new", what);
    BAD(ibstack_cq_new(p, 16, &(ibstack_cq *){NULL}), "ibstack_cq_new", what);
    FREE_IGNORED(ibstack_ib_free(p), "ibstack_ib_free", what);
}

static void mem_family(void *p, const char *what) {
    ibstack_chunk *ch = NULL;
    size_t n = 0;
    ibstack_mem_stats st;
    BAD(ibstack_mem_mgr_get_tx_chunks(p, 1, &ch, 1, &n), "ibstack_mem_mgr_get_tx_chunks", what);
    BAD(ibstack_mem_mgr_return_tx(p, &ch, 1), "ibstack_mem_mgr_return_tx", what);
    BAD(ibstack_mem_mgr_get_rx_chunk(p, &ch), "ibstack_mem_mgr_get_rx_chunk", what);
    BAD(ibstack_mem_mgr_release_rx_chunk(p, (ibstack_chunk *)buf), "ibstack_mem_mgr_release_rx_chunk", what);
    BAD(ibstack_mem_mgr_stats(p, &st), "ibstack_mem_mgr_stats", what);
    BAD(ibstack_mem_mgr_stats_json(p, buf, sizeof buf), "ibstack_mem_mgr_stats_json", what);
    BAD0(ibstack_mem_mgr_is_tx_buffer(p, buf), "ibstack_mem_mgr_is_tx_buffer", what);
    BAD0(ibstack_mem_mgr_tx_chunk_by_buffer(p, buf), "ibstack_mem_mgr_tx_chunk_by_buffer", what);
    FREE_IGNORED(ibstack_mem_mgr_free(p), "ibstack_mem_mgr_free", what);
}

static void chunk_family(void *p, const char *what) {
    BAD0(ibstack_chunk_capacity(p), "ibstack_chunk_capacity", what);
    BAD0(ibstack_chunk_buffer(p), "ibstack_chunk_buffer", what);
    BAD0(ibstack_chunk_lkey(p), "ibstack_chunk_lkey", what);
    BAD0(ibstack_chunk_offset(p), "ibstack_chunk_offset", what);
    BAD0(ibstack_chunk_bound(p), "ibstack_chunk_bound", what);
    BAD0(ibstack_chunk_size(p), "ibstack_chunk_size", what);
    BAD0(ibstack_chunk_full(p), "ibstack_chunk_full", what);
    BAD0(ibstack_chunk_read(p, buf, 4), "ibstack_chunk_read", what);
    BAD0(ibstack_chunk_write(p, buf, 4), "ibstack_chunk_write", what);
    BAD(ibstack_chunk_prepare_read(p, 1), "ibstack_chunk_prepare_read", what);
    BAD(ibstack_chunk_reset_read(p), "ibstack_chunk_reset_read", what);
    BAD(ibstack_chunk_reset_write(p), "ibstack_chunk_reset_write", what);
    BAD(ibstack_chunk_set_qp(p, 1), "ibstack_chunk_set_qp", what);
    BAD0(ibstack_chunk_qp(p), "ibstack_chunk_qp", what);
}

static void cq_family(void *p, const char *what) {
    ibstack_wc wc[2];
    BAD(ibstack_cq_fd(p), "ibstack_cq_fd", what);
    BAD(ibstack_cq_rearm(p), "ibstack_cq_rearm", what);
    BAD(ibstack_cq_get_event(p), "ibstack_cq_get_event", what);
    BAD0(ibstack_cq_unacked_events(p), "ibstack_cq_unacked_events", what);
    BAD(ibstack_cq_poll(p, wc, 2), "ibstack_cq_poll", what);
    FREE_IGNORED(ibstack_cq_free(p), "ibstack_cq_free", what);
}

static void dispatcher_family(void *p, const char *what) {
    ibstack_wc wc[2];
    ibstack_async_event ev;
    ibstack_counters c;
    BAD0(ibstack_dispatcher_tx_cq(p), "ibstack_dispatcher_tx_cq", what);
    BAD0(ibstack_dispatcher_rx_cq(p), "ibstack_dispatcher_rx_cq", what);
    BAD(ibstack_dispatcher_poll(p, wc, 2), "ibstack_dispatcher_poll", what);
    BAD(ibstack_dispatcher_wait(p, 0), "ibstack_dispatcher_wait", what);
    BAD(ibstack_dispatcher_post_rx(p, 1, NULL), "ibstack_dispatcher_post_rx", what);
    BAD(ibstack_dispatcher_release_rx(p, (ibstack_chunk *)buf), "ibstack_dispatcher_release_rx", what);
    BAD(ibstack_dispatcher_next_async_event(p, &ev), "ibstack_dispatcher_next_async_event", what);
    BAD(ibstack_dispatcher_qp_count(p), "ibstack_dispatcher_qp_count", what);
    BAD(ibstack_dispatcher_counters(p, &c), "ibstack_dispatcher_counters", what);
    BAD(ibstack_dispatcher_counters_json(p, buf, sizeof buf), "ibstack_dispatcher_counters_json", what);
    BAD(ibstack_qp_history_json(p, buf, sizeof buf), "ibstack_qp_history_json", what);
    BAD(ibstack_dispatcher_handle_tx(p, wc, 0), "ibstack_dispatcher_handle_tx", what);
    BAD(ibstack_dispatcher_handle_rx(p, wc, 0), "ibstack_dispatcher_handle_rx", what);
    BAD(ibstack_qp_new(p, &(ibstack_qp *){NULL}), "ibstack_qp_new", what);
    FREE_IGNORED(ibstack_dispatcher_free(p), "ibstack_dispatcher_free", what);
}

static void qp_family(void *p, const char *what) {
    ibstack_cm_meta m = {0};
    uint32_t u;
    ibstack_chunk *ch = (ibstack_chunk *)buf;
    BAD(ibstack_qp_to_init(p), "ibstack_qp_to_init", what);
    BAD(ibstack_qp_to_rtr(p, &m), "ibstack_qp_to_rtr", what);
    BAD(ibstack_qp_to_rts(p), "ibstack_qp_to_rts", what);
    BAD(ibstack_qp_to_error(p), "ibstack_qp_to_error", what);
    BAD(ibstack_qp_to_dead(p), "ibstack_qp_to_dead", what);
    BAD(ibstack_qp_state(p), "ibstack_qp_state", what);
    BAD0(ibstack_qp_num(p), "ibstack_qp_num", what);
    BAD0(ibstack_qp_initial_psn(p), "ibstack_qp_initial_psn", what);
    BAD(ibstack_qp_remote_num(p, &u), "ibstack_qp_remote_num", what);
    BAD(ibstack_qp_local_meta(p, &m), "ibstack_qp_local_meta", what);
    BAD(ibstack_qp_peer_meta(p, &m), "ibstack_qp_peer_meta", what);
    BAD(ibstack_qp_handshake_step(p, -1, 0), "ibstack_qp_handshake_step", what);
    BAD(ibstack_qp_handshake_events(p), "ibstack_qp_handshake_events", what);
    BAD(ibstack_qp_handshake(p, -1, 0, 0), "ibstack_qp_handshake", what);
    BAD(ibstack_qp_post_send(p, &ch, 1, NULL), "ibstack_qp_post_send", what);
    BAD(ibstack_qp_post_fin(p), "ibstack_qp_post_fin", what);
    BAD(ibstack_qp_fault_message(p, buf, sizeof buf), "ibstack_qp_fault_message", what);
    BAD0(ibstack_qp_tx_outstanding(p), "ibstack_qp_tx_outstanding", what);
    FREE_IGNORED(ibstack_qp_free(p), "ibstack_qp_free", what);
}

static void stack_family(void *p, const char *what) {
    ibstack_mem_stats st;
    BAD(ibstack_stack_fd(p), "ibstack_stack_fd", what);
    BAD(ibstack_stack_poll(p), "ibstack_stack_poll", what);
    BAD(ibstack_stack_counters_json(p, buf, sizeof buf), "ibstack_stack_counters_json", what);
    BAD(ibstack_stack_history_json(p, buf, sizeof buf), "ibstack_stack_history_json", what);
    BAD(ibstack_stack_mem_stats(p, &st), "ibstack_stack_mem_stats", what);
    BAD(ibstack_stack_conn_count(p), "ibstack_stack_conn_count", what);
    BAD(ibstack_stack_qp_count(p), "ibstack_stack_qp_count", what);
    BAD(ibstack_listen(p, "127.0.0.1", 0, &(ibstack_listener *){NULL}), "ibstack_listen", what);
    BAD(ibstack_connect(p, "127.0.0.1", 1, &(ibstack_conn *){NULL}), "ibstack_connect", what);
    BAD(ibstack_listener_adopt(p, 0, &(ibstack_listener *){NULL}), "ibstack_listener_adopt", what);
    BAD(ibstack_conn_adopt(p, 0, IBSTACK_ROLE_CONNECTOR, &(ibstack_conn *){NULL}), "ibstack_conn_adopt", what);
    BAD(ibstack_stack_mem_mgr(p, &(ibstack_mem_mgr *){NULL}), "ibstack_stack_mem_mgr", what);
    ibstack_counters ctr;
    BAD(ibstack_stack_counters(p, &ctr), "ibstack_stack_counters", what);
    FREE_IGNORED(ibstack_stack_free(p), "ibstack_stack_free", what);
}

static void listener_family(void *p, const char *what) {
    BAD(ibstack_listener_fd(p), "ibstack_listener_fd", what);
    BAD(ibstack_listener_port(p), "ibstack_listener_port", what);
    BAD(ibstack_accept(p, &(ibstack_conn *){NULL}), "ibstack_accept", what);
    FREE_IGNORED(ibstack_listener_free(p), "ibstack_listener_free", what);
}

static void conn_family(void *p, const char *what) {
    BAD(ibstack_conn_is_connected(p), "ibstack_conn_is_connected", what);
    BAD0(ibstack_conn_error_message(p, buf, sizeof buf), "ibstack_conn_error_message", what);
    BAD(ibstack_conn_send(p, "x", 1), "ibstack_conn_send", what);
    BAD(ibstack_conn_recv(p, buf, 1), "ibstack_conn_recv", what);
    struct iovec iv = {.iov_base = buf, .iov_len = 1};
    BAD(ibstack_conn_sendv(p, &iv, 1), "ibstack_conn_sendv", what);
    BAD(ibstack_conn_fd(p), "ibstack_conn_fd", what);
    struct sockaddr_storage ss;
    BAD(ibstack_conn_peer_addr(p, &ss), "ibstack_conn_peer_addr", what);
    BAD(ibstack_conn_local_addr(p, &ss), "ibstack_conn_local_addr", what);
    BAD(ibstack_conn_shutdown(p), "ibstack_conn_shutdown", what);
    ibstack_chunk *lent[2];
    BAD(ibstack_conn_recv_chunks(p, lent, 2), "ibstack_conn_recv_chunks", what);
    BAD(ibstack_conn_release_chunks(p, lent, 0), "ibstack_conn_release_chunks", what);
    FREE_IGNORED(ibstack_conn_close(p), "ibstack_conn_close", what);
}

/* every family except config and chunk (which have their own checks) */
static void all_device_families(void *p, const char *what) {
    device_list_family(p, what);
    ib_family(p, what);
    mem_family(p, what);
    cq_family(p, what);
    dispatcher_family(p, what);
    qp_family(p, what);
    stack_family(p, what);
    listener_family(p, what);
    conn_family(p, what);
}

static int host(void) {
    int on_stack = 0;
    void *heap = calloc(1, 4096);
    ibstack_config *cfg = NULL, *freed = NULL;
    CHECK_RC(ibstack_config_new(&cfg), 0, "config_new");
    CHECK_RC(ibstack_config_new(&freed), 0, "config_new (to be freed)");
    ibstack_config_free(freed);

    void *foreign[] = {&on_stack, heap, (void *)(uintptr_t)0x10, (char *)cfg + 1};
    const char *fname[] = {"a stack address", "a heap block", "the integer 0x10", "a config handle + 1"};
    for (size_t i = 0; i < sizeof foreign / sizeof *foreign; i++) {
        config_family(foreign[i], fname[i]);
        chunk_family(foreign[i], fname[i]);
        all_device_families(foreign[i], fname[i]);
    }
    BAD(ibstack_config_set((ibstack_config *)&on_stack, "ms_async_rdma_sl", "1"), "ibstack_config_set", "foreign");
    CHECK_MSG_HAS("not an ibstack_config handle", "the message says the pointer is not a config handle");

    /* a freed config, used and freed again */
    config_family(freed, "a freed config");
    BAD(ibstack_config_get(freed, "ms_async_rdma_sl", buf, sizeof buf), "ibstack_config_get", "freed");
    CHECK_MSG_HAS("already freed", "the message says the handle was freed");
    FREE_IGNORED(ibstack_config_free(freed), "ibstack_config_free", "a double free");

    /* a live config passed as every other type */
    all_device_families(cfg, "a config handle");
    chunk_family(cfg, "a config handle");
    BAD(ibstack_ib_query((ibstack_ib *)cfg, &(ibstack_ib_info){0}), "ibstack_ib_query", "a config");
    CHECK_MSG_HAS("is an ibstack_config handle, not an ibstack_ib", "the message names both types");

    /* the config survived all of that */
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_sl", "3"), 0, "the config still works");
    CHECK_RC(ibstack_config_get(cfg, "ms_async_rdma_sl", buf, sizeof buf), 1, "and reads back");
    CHECK(strcmp(buf, "3") == 0, "with the value set");

    /* many handles created and freed: stale pointers stay detectable (quarantine) */
    ibstack_config *old = NULL;
    ibstack_config_new(&old);
    ibstack_config_free(old);
    for (int i = 0; i < 1000; i++) {
        ibstack_config *c = NULL;
        ibstack_config_new(&c);
        if (c == old) {
            CHECK(0, "a freed cell was reused after %d frees", i);
            break;
        }
        ibstack_config_free(c);
    }
    BAD(ibstack_config_to_json(old, buf, sizeof buf), "ibstack_config_to_json", "freed 1000 frees ago");

    ibstack_config_free(cfg);
    free(heap);
    return 0;
}

static int vm(void) {
    ibstack_config *cfg = NULL;
    ibstack_config_new(&cfg);
    const char *opts[][2] = {{"ms_async_rdma_device_name", "rxe0"}, {"ms_async_rdma_gid_idx", "1"},
                             {"ms_async_rdma_buffer_size", "16384"}, {"ms_async_rdma_send_buffers", "64"},
                             {"ms_async_rdma_receive_queue_len", "64"}, {"ms_async_rdma_receive_buffers", "512"}};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) ibstack_config_set(cfg, opts[i][0], opts[i][1]);

    ibstack_ib *ib = NULL;
    ibstack_mem_mgr *mm = NULL;
    ibstack_cq *cq = NULL;
    ibstack_dispatcher *d = NULL;
    ibstack_qp *qp = NULL;
    ibstack_chunk *ch = NULL;
    ibstack_stack *st = NULL;
    ibstack_listener *l = NULL;
    ibstack_conn *c = NULL;
    ibstack_device_list *dl = NULL;
    /* the stack first: it runs ibstack_global_init, which must precede other verbs use */
    CHECK_RC(ibstack_stack_new(cfg, &st), 0, "stack_new");
    CHECK_RC(ibstack_listen(st, "10.99.0.1", 0, &l), 0, "listen");
    CHECK_RC(ibstack_connect(st, "10.99.0.1", (uint16_t)ibstack_listener_port(l), &c), 0, "connect");
    CHECK_RC(ibstack_ib_new(cfg, &ib), 0, "ib_new");
    CHECK_RC(ibstack_mem_mgr_new(ib, &mm), 0, "mem_mgr_new");
    CHECK_RC(ibstack_cq_new(ib, 16, &cq), 0, "cq_new");
    CHECK_RC(ibstack_dispatcher_new(ib, mm, &d), 0, "dispatcher_new");
    CHECK_RC(ibstack_qp_new(d, &qp), 0, "qp_new");
    CHECK_RC(ibstack_device_list_new(&dl), 0, "device_list_new");
    if (!ib || !mm || !cq || !d || !qp || !st || !l || !c || !dl) return 1;

    /* each live handle passed as the others */
    void *h[] = {cfg, dl, ib, mm, cq, d, qp, st, l, c};
    const char *hn[] = {"config", "device_list", "ib", "mem_mgr", "cq", "dispatcher", "qp", "stack", "listener", "conn"};
    void (*fam[])(void *, const char *) = {config_family, device_list_family, ib_family, mem_family, cq_family,
                                           dispatcher_family, qp_family, stack_family, listener_family, conn_family};
    for (size_t i = 0; i < 10; i++) {
        char what[64];
        for (size_t j = 0; j < 10; j++) {
            if (i == j) continue;
            snprintf(what, sizeof what, "a live %s handle", hn[i]);
            fam[j](h[i], what);
        }
        chunk_family(h[i], what);
    }

    /* borrowed CQs: _free is refused and the CQ keeps working */
    const ibstack_cq *tx = ibstack_dispatcher_tx_cq(d);
    FREE_IGNORED(ibstack_cq_free((ibstack_cq *)tx), "ibstack_cq_free", "a dispatcher's borrowed TX CQ");
    CHECK_MSG_HAS("borrowed", "the message says the CQ is borrowed");
    CHECK(ibstack_cq_fd(tx) >= 0, "the borrowed CQ still works");
    CHECK(ibstack_cq_fd(ibstack_dispatcher_rx_cq(d)) >= 0, "the RX CQ too");

    /* a chunk: valid while its pool lives */
    CHECK_RC(ibstack_mem_mgr_get_rx_chunk(mm, &ch), 0, "get_rx_chunk");
    CHECK(ibstack_chunk_capacity(ch) == 16384, "chunk_capacity");
    chunk_family((char *)ch + 1, "a chunk + 1");
    CHECK_RC(ibstack_mem_mgr_release_rx_chunk(mm, ch), 0, "release_rx_chunk");

    /* free everything (the stack's children first), then use and free again */
    const ibstack_cq *rx = ibstack_dispatcher_rx_cq(d);
    ibstack_conn_close(c);
    ibstack_listener_free(l);
    ibstack_stack_free(st);
    ibstack_qp_free(qp);
    ibstack_dispatcher_free(d);
    ibstack_cq_free(cq);
    ibstack_mem_mgr_free(mm);
    ibstack_ib_free(ib);
    ibstack_device_list_free(dl);
    CHECK(1, "every handle freed");
    for (size_t j = 1; j < 10; j++) {
        char what[64];
        snprintf(what, sizeof what, "a freed %s handle", hn[j]);
        fam[j](h[j], what); /* uses and the double free */
    }
    cq_family((void *)tx, "the TX CQ of a freed dispatcher");
    cq_family((void *)rx, "the RX CQ of a freed dispatcher");
    chunk_family(ch, "a chunk of a freed pool");

    ibstack_config_free(cfg);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "vm") == 0) {
        if (vm()) return 1;
    } else {
        host();
    }
    DONE();
}
