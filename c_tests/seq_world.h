/* test_seq's model of the world: which handles are live, which are dead (freed, some of
 * them long ago), and the random operations of the host, threads and vm sequences. */
#ifndef IBSTACK_SEQ_WORLD_H
#define IBSTACK_SEQ_WORLD_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

static void vm_cleanup(void);

enum { T_CFG, T_DL, T_IB, T_MM, T_CQ, T_DISP, T_QP, T_STACK, T_LIS, T_CONN, T_N };

/* ------------------------------------------------------------------ handle registry */

#define LIVE_MAX 256
#define DEAD_KEEP 128 /* the first dead handles are kept for the whole run: "freed long ago" */
#define DEAD_MAX 1024
static void *live_p[LIVE_MAX];
static int live_t[LIVE_MAX];
static int live_n;
static void *dead_p[DEAD_MAX];
static int dead_n, dead_next = DEAD_KEEP;
/* borrowed CQs of a freed dispatcher: they live on while its QPs do; never asserted on */
#define LIMBO_MAX 512
static void *limbo_p[LIMBO_MAX];
static int limbo_n;

static int live_type(const void *p) {
    for (int i = 0; i < live_n; i++)
        if (live_p[i] == p) return live_t[i];
    return -1;
}

static int in_limbo(const void *p) {
    for (int i = 0; i < limbo_n; i++)
        if (limbo_p[i] == p) return 1;
    return 0;
}

static void reg(void *p, int t) {
    if (!p) return;
    int lt = live_type(p);
    if (lt >= 0) seq_fail("model", "a new handle %p (type %d) equals a live handle of type %d", p, t, lt);
    if (live_n == LIVE_MAX) seq_fail("model", "too many live handles");
    live_p[live_n] = p;
    live_t[live_n++] = t;
}

static void dead_add(void *p) {
    if (dead_n < DEAD_KEEP) {
        dead_p[dead_n++] = p;
        return;
    }
    dead_p[dead_next] = p;
    if (++dead_next == DEAD_MAX) dead_next = DEAD_KEEP;
    if (dead_n < DEAD_MAX) dead_n++;
}

static void unreg(void *p) {
    for (int i = 0; i < live_n; i++)
        if (live_p[i] == p) {
            live_p[i] = live_p[--live_n];
            live_t[i] = live_t[live_n];
            dead_add(p);
            return;
        }
}

static void limbo_add(const void *p) {
    if (p && limbo_n < LIMBO_MAX) limbo_p[limbo_n++] = (void *)p;
}

static int foreign_word;
static void *foreign_heap;

/* a pointer that is not a live handle of type t: NULL, foreign, another type, freed */
static void *pick_bad(int t) {
    for (int tries = 0; tries < 8; tries++) {
        switch (rn(6)) {
        case 0: return NULL;
        case 1: {
            void *f[] = {&foreign_word, foreign_heap, (void *)(uintptr_t)0x10, (void *)UINTPTR_MAX, (void *)&C};
            return f[rn(5)];
        }
        case 2:
            if (live_n) {
                int i = (int)rn((uint32_t)live_n);
                return (char *)live_p[i] + 1 + rn(3);
            }
            break;
        case 3:
            if (live_n) {
                int i = (int)rn((uint32_t)live_n);
                if (live_t[i] != t) return live_p[i];
            }
            break;
        default:
            if (dead_n) {
                void *p = dead_p[rn((uint32_t)dead_n)];
                if (live_type(p) != t && !in_limbo(p)) return p;
            }
            break;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ family probes */

static _Thread_local char pbuf[65536]; /* per thread: the threads mode writes it from several */

/* One random function of family t with p as its handle. V_VALID probes (p live of type t)
 * use only calls that change nothing; V_BAD probes use every function, _free included. */
static void probe(int t, void *p, int expect) {
    int bad = expect == V_BAD;
    size_t len = chance(50) ? sizeof pbuf : (size_t)rn(64);
    ibstack_wc wc[4];
    ibstack_cm_meta m;
    memset(&m, 0, sizeof m);
    uint32_t u;
    struct sockaddr_storage ss;
    ibstack_counters ctr;
    ibstack_mem_stats ms;
    switch (t) {
    case T_CFG:
        switch (rn(bad ? 8 : 3)) {
        case 0: CNT(expect, INT32_MAX, ibstack_config_get, p, "ms_async_rdma_sl", pbuf, len); break;
        case 1: seq_check_text("ibstack_config_to_json", pbuf, len, CNT(expect, INT32_MAX, ibstack_config_to_json, p, pbuf, len)); break;
        case 2: CNT(expect, INT32_MAX, ibstack_config_get, p, "ms_async_rdma_device_name", pbuf, len); break;
        case 3: ST(expect, ibstack_config_set, p, "ms_async_rdma_sl", "1"); break;
        case 4: ST(expect, ibstack_config_load_file, p, "/nonexistent", NULL); break;
        case 5: ST(expect, ibstack_ib_new, p, &(ibstack_ib *){NULL}); break;
        case 6: ST(expect, ibstack_stack_new, p, &(ibstack_stack *){NULL}); break;
        default: FREE(expect, ibstack_config_free, p); break;
        }
        break;
    case T_DL:
        switch (rn(bad ? 3 : 2)) {
        case 0: Z(expect, ibstack_device_list_count, p); break;
        case 1: CNT(bad ? V_BAD : V_ANY, INT32_MAX, ibstack_device_list_name, p, 0, pbuf, len); break;
        default: FREE(expect, ibstack_device_list_free, p); break;
        }
        break;
    case T_IB:
        switch (rn(bad ? 7 : 4)) {
        case 0: ST(expect, ibstack_ib_query, p, &(ibstack_ib_info){0}); break;
        case 1: CNT(expect, INT32_MAX, ibstack_ib_device_name, p, pbuf, len); break;
        case 2: CNT(expect, INT32_MAX, ibstack_ib_async_fd, p); break;
        case 3: Z(expect, ibstack_ib_pd_raw, p); break;
        case 4: ST(expect, ibstack_mem_mgr_new, p, &(ibstack_mem_mgr *){NULL}); break;
        case 5: ST(expect, ibstack_cq_new, p, rn(64), &(ibstack_cq *){NULL}); break;
        default: FREE(expect, ibstack_ib_free, p); break;
        }
        break;
    case T_MM:
        switch (rn(bad ? 9 : 4)) {
        case 0: ST(expect, ibstack_mem_mgr_stats, p, &ms); break;
        case 1: seq_check_text("ibstack_mem_mgr_stats_json", pbuf, len, CNT(expect, INT32_MAX, ibstack_mem_mgr_stats_json, p, pbuf, len)); break;
        case 2: Z(bad ? V_BAD : V_ANY, ibstack_mem_mgr_is_tx_buffer, p, pbuf); break;
        case 3: Z(bad ? V_BAD : V_ANY, ibstack_mem_mgr_tx_chunk_by_buffer, p, pbuf); break;
        case 4: {
            ibstack_chunk *ch[2];
            size_t n = 7;
            ST(expect, ibstack_mem_mgr_get_tx_chunks, p, 1, ch, 2, &n);
            break;
        }
        case 5: ST(expect, ibstack_mem_mgr_return_tx, p, (ibstack_chunk *const *)&foreign_heap, 1); break;
        case 6: ST(expect, ibstack_mem_mgr_get_rx_chunk, p, &(ibstack_chunk *){NULL}); break;
        case 7: ST(expect, ibstack_mem_mgr_release_rx_chunk, p, foreign_heap); break;
        default: FREE(expect, ibstack_mem_mgr_free, p); break;
        }
        break;
    case T_CQ:
        switch (rn(bad ? 6 : 2)) {
        case 0: CNT(expect, INT32_MAX, ibstack_cq_fd, p); break;
        case 1: Z(bad ? V_BAD : V_ANY, ibstack_cq_unacked_events, p); break;
        case 2: ST(expect, ibstack_cq_rearm, p); break;
        case 3: CNT(expect, 1, ibstack_cq_get_event, p); break;
        case 4: CNT(expect, 4, ibstack_cq_poll, p, wc, 4); break;
        default: FREE(expect, ibstack_cq_free, p); break;
        }
        break;
    case T_DISP:
        switch (rn(bad ? 15 : 7)) {
        case 0: Z(bad ? V_BAD : V_ANY, ibstack_dispatcher_tx_cq, p); break;
        case 1: Z(bad ? V_BAD : V_ANY, ibstack_dispatcher_rx_cq, p); break;
        case 2: CNT(expect, INT32_MAX, ibstack_dispatcher_qp_count, p); break;
        case 3: ST(expect, ibstack_dispatcher_counters, p, &ctr); break;
        case 4: seq_check_text("ibstack_dispatcher_counters_json", pbuf, len, CNT(expect, INT32_MAX, ibstack_dispatcher_counters_json, p, pbuf, len)); break;
        case 5: seq_check_text("ibstack_qp_history_json", pbuf, len, CNT(expect, INT32_MAX, ibstack_qp_history_json, p, pbuf, len)); break;
        case 6: ST(expect, ibstack_dispatcher_handle_tx, p, wc, 0); break;
        case 7: CNT(expect, 4, ibstack_dispatcher_poll, p, wc, 4); break;
        case 8: CNT(expect, 1, ibstack_dispatcher_wait, p, 0); break;
        case 9: CNT(expect, 8, ibstack_dispatcher_post_rx, p, 8, NULL); break;
        case 10: ST(expect, ibstack_dispatcher_release_rx, p, foreign_heap); break;
        case 11: CNT(expect, 1, ibstack_dispatcher_next_async_event, p, &(ibstack_async_event){0}); break;
        case 12: ST(expect, ibstack_dispatcher_handle_rx, p, wc, 0); break;
        case 13: ST(expect, ibstack_qp_new, p, &(ibstack_qp *){NULL}); break;
        default: FREE(expect, ibstack_dispatcher_free, p); break;
        }
        break;
    case T_QP:
        switch (rn(bad ? 19 : 9)) {
        case 0: CNT(expect, 10, ibstack_qp_state, p); break;
        case 1: Z(bad ? V_BAD : V_ANY, ibstack_qp_num, p); break;
        case 2: Z(bad ? V_BAD : V_ANY, ibstack_qp_initial_psn, p); break;
        case 3: ST(expect, ibstack_qp_remote_num, p, &u); break;
        case 4: ST(expect, ibstack_qp_local_meta, p, &m); break;
        case 5: ST(bad ? V_BAD : V_ANY, ibstack_qp_peer_meta, p, &m); break;
        case 6: CNT(expect, 0xffff, ibstack_qp_handshake_events, p); break;
        case 7: CNT(expect, INT32_MAX, ibstack_qp_fault_message, p, pbuf, len); break;
        case 8: Z(bad ? V_BAD : V_ANY, ibstack_qp_tx_outstanding, p); break;
        case 9: ST(expect, ibstack_qp_to_init, p); break;
        case 10: ST(expect, ibstack_qp_to_rtr, p, &m); break;
        case 11: ST(expect, ibstack_qp_to_rts, p); break;
        case 12: ST(expect, ibstack_qp_to_error, p); break;
        case 13: ST(expect, ibstack_qp_to_dead, p); break;
        case 14: CNT(expect, 1, ibstack_qp_handshake_step, p, -1, 0); break;
        case 15: ST(expect, ibstack_qp_handshake, p, -1, 0, 0); break;
        case 16: ST(expect, ibstack_qp_post_send, p, (ibstack_chunk *const *)&foreign_heap, 1, NULL); break;
        case 17: ST(expect, ibstack_qp_post_fin, p); break;
        default: FREE(expect, ibstack_qp_free, p); break;
        }
        break;
    case T_STACK:
        switch (rn(bad ? 15 : 8)) {
        case 0: CNT(expect, INT32_MAX, ibstack_stack_fd, p); break;
        case 1: seq_check_text("ibstack_stack_counters_json", pbuf, len, CNT(expect, INT32_MAX, ibstack_stack_counters_json, p, pbuf, len)); break;
        case 2: seq_check_text("ibstack_stack_history_json", pbuf, len, CNT(expect, INT32_MAX, ibstack_stack_history_json, p, pbuf, len)); break;
        case 3: ST(expect, ibstack_stack_mem_stats, p, &ms); break;
        case 4: CNT(expect, INT32_MAX, ibstack_stack_conn_count, p); break;
        case 5: CNT(expect, INT32_MAX, ibstack_stack_qp_count, p); break;
        case 6: ST(expect, ibstack_stack_counters, p, &ctr); break;
        case 7: CNT(expect, 1, ibstack_stack_poll, p); break;
        case 8: ST(expect, ibstack_listen, p, "127.0.0.1", 0, &(ibstack_listener *){NULL}); break;
        case 9: ST(expect, ibstack_connect, p, "127.0.0.1", 1, &(ibstack_conn *){NULL}); break;
        case 10: ST(expect, ibstack_listener_adopt, p, -1, &(ibstack_listener *){NULL}); break;
        case 11: ST(expect, ibstack_conn_adopt, p, -1, IBSTACK_ROLE_CONNECTOR, &(ibstack_conn *){NULL}); break;
        case 12: ST(expect, ibstack_stack_mem_mgr, p, &(ibstack_mem_mgr *){NULL}); break;
        default: FREE(expect, ibstack_stack_free, p); break;
        }
        break;
    case T_LIS:
        switch (rn(bad ? 4 : 2)) {
        case 0: CNT(expect, INT32_MAX, ibstack_listener_fd, p); break;
        case 1: CNT(expect, 65535, ibstack_listener_port, p); break;
        case 2: ST(expect, ibstack_accept, p, &(ibstack_conn *){NULL}); break;
        default: FREE(expect, ibstack_listener_free, p); break;
        }
        break;
    default: /* T_CONN */
        switch (rn(bad ? 10 : 5)) {
        case 0: CNT(bad ? V_BAD : V_ANY, 1, ibstack_conn_is_connected, p); break;
        case 1: Z(bad ? V_BAD : V_ANY, ibstack_conn_error_message, p, pbuf, len); break;
        case 2: CNT(expect, INT32_MAX, ibstack_conn_fd, p); break;
        case 3: ST(bad ? V_BAD : V_ANY, ibstack_conn_peer_addr, p, &ss); break;
        case 4: ST(bad ? V_BAD : V_ANY, ibstack_conn_local_addr, p, &ss); break;
        case 5: CNT(expect, 1, ibstack_conn_send, p, "x", 1); break;
        case 6: CNT(expect, 1, ibstack_conn_recv, p, pbuf, 1); break;
        case 7: ST(expect, ibstack_conn_shutdown, p); break;
        case 8: ST(bad ? V_BAD : V_ANY, ibstack_conn_is_connected, p); break;
        default: FREE(expect, ibstack_conn_close, p); break;
        }
        break;
    }
}

/* a probe of a random family with a handle that is not live as that family */
static void probe_bad(void) {
    int t = (int)rn(T_N);
    C.op = "probe_bad";
    probe(t, pick_bad(t), V_BAD);
}

/* a query on a random live handle of the model */
static void probe_live(void) {
    if (!live_n) return;
    int i = (int)rn((uint32_t)live_n);
    C.op = "probe_live";
    probe(live_t[i], live_p[i], V_VALID);
}

/* ------------------------------------------------------------------ configurations */

typedef struct {
    const char *key;
    const char *good[6];
    const char *bad[6];
} opt_case;

static const opt_case opts[] = {
    {"ms_async_rdma_enable_hugepage", {"true", "false", "0", "1"}, {"maybe", "", "2x"}},
    {"ms_async_rdma_buffer_size", {"4096", "64K", "1M", "131072", "1"}, {"0", "2G", "-1", "18446744073709551616", "1X"}},
    {"ms_async_rdma_send_buffers", {"1", "64", "4294967295"}, {"0", "-1", "4294967296", "ten"}},
    {"ms_async_rdma_receive_buffers", {"0", "256", "4294967295"}, {"-1", "4294967296", "lots"}},
    {"ms_async_rdma_receive_queue_len", {"1", "128", "4096"}, {"0", "-5", "1e99"}},
    {"ms_async_rdma_support_srq", {"true", "false", "2"}, {"yes please", "t rue"}},
    {"ms_async_rdma_port_num", {"1", "2", "255"}, {"0", "256", "-1"}},
    {"ms_async_rdma_polling_us", {"0", "1000", "4294967295"}, {"-1", "x"}},
    {"ms_async_rdma_gid_idx", {"0", "1", "65535"}, {"-1", "65536", "one"}},
    {"ms_async_rdma_roce_ver", {"0", "1", "2"}, {"3", "-1"}},
    {"ms_async_rdma_sl", {"0", "3", "15"}, {"16", "-1", "255"}},
    {"ms_async_rdma_dscp", {"0", "96", "255"}, {"256", "-1"}},
    {"ms_async_rdma_cm", {"false", "true"}, {"perhaps"}},
    {"ms_tcp_listen_backlog", {"512", "-2147483648", "2147483647", "0"}, {"2147483648", "-2147483649", "z"}},
    {"ibstack_path_mtu", {"256", "512", "1024", "2048", "4096"}, {"4000", "0", "1000", "-1"}},
    {"ibstack_rx_first_block", {"0", "256", "4294967295"}, {"-1"}},
    {"ibstack_qp_history_len", {"0", "64"}, {"-64"}},
    {"ibstack_max_inflight_per_conn", {"0", "8"}, {"-8"}},
    {"ibstack_cq_depth", {"1", "30000"}, {"0", "-1"}},
    {"ibstack_stack_thread", {"true", "false"}, {"sometimes"}},
    {"ibstack_retry_cnt", {"0", "6", "7"}, {"8", "-1"}},
    {"ibstack_tcp_keepalive", {"0", "30", "86400"}, {"86401", "-1"}},
};
#define N_OPTS (sizeof opts / sizeof *opts)

static int ncount(const char *const *a) {
    int n = 0;
    while (n < 6 && a[n]) n++;
    return n;
}

/* a random printable token of 1..maxlen letters and digits */
static void rand_token(char *out, size_t maxlen) {
    static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
    size_t n = 1 + rn((uint32_t)maxlen);
    for (size_t i = 0; i < n; i++) out[i] = al[rn(sizeof al - 1)];
    out[n] = 0;
}

/* random bytes (maybe invalid UTF-8, never NUL inside) */
static void rand_junk(char *out, size_t maxlen) {
    size_t n = rn((uint32_t)maxlen + 1);
    for (size_t i = 0; i < n; i++) out[i] = (char)(1 + rn(255));
    out[n] = 0;
}

/* a key as Ceph may spell it: underscores, spaces or dashes */
static void spell_key(char *out, const char *key) {
    int style = (int)rn(4);
    size_t i = 0;
    for (; key[i]; i++) out[i] = key[i] == '_' ? (style == 1 ? ' ' : style == 2 ? '-' : '_') : key[i];
    out[i] = 0;
}

#define CFG_SLOTS 6
typedef struct {
    ibstack_config *p;
    char dev[72]; /* the model of ms_async_rdma_device_name */
} cfg_slot;
static cfg_slot cfgs[CFG_SLOTS];

static void cfg_new(void) {
    cfg_slot *s = &cfgs[rn(CFG_SLOTS)];
    C.op = "config_new";
    if (chance(5)) {
        ST(V_BAD, ibstack_config_new, NULL);
        return;
    }
    if (s->p) return;
    ibstack_config *c = NULL;
    if (ST(V_VALID, ibstack_config_new, &c) == 0) {
        reg(c, T_CFG);
        s->p = c;
        strcpy(s->dev, "");
    }
}

static void cfg_free(cfg_slot *s) {
    if (!s->p) return;
    C.op = "config_free";
    FREE(V_VALID, ibstack_config_free, s->p);
    unreg(s->p);
    s->p = NULL;
}

/* checks the device_name model of slot s against the library */
static void cfg_check_model(cfg_slot *s) {
    char b[128];
    long n = CNT(V_VALID, INT32_MAX, ibstack_config_get, s->p, "ms_async_rdma_device_name", b, sizeof b);
    if (n >= 0 && strcmp(b, s->dev) != 0)
        seq_fail("ibstack_config_get", "ms_async_rdma_device_name is \"%s\", the model says \"%s\"", b, s->dev);
}

static void cfg_set(void) {
    cfg_slot *s = &cfgs[rn(CFG_SLOTS)];
    void *h = s->p;
    int hv = h != NULL;
    if (chance(10)) {
        h = pick_bad(T_CFG);
        hv = 0;
    }
    char key[512], val[640];
    int kind = (int)rn(10);
    C.op = "config_set";
    const opt_case *o = &opts[rn(N_OPTS)];
    if (kind <= 3) { /* a good value */
        spell_key(key, o->key);
        strcpy(val, o->good[rn((uint32_t)ncount(o->good))]);
        long rc = ST(hv ? V_VALID : V_BAD, ibstack_config_set, h, key, val);
        if (hv && rc != 0) seq_fail("ibstack_config_set", "%s = %s was refused", key, val);
        return;
    }
    if (kind <= 5) { /* a bad value */
        spell_key(key, o->key);
        strcpy(val, o->bad[rn((uint32_t)ncount(o->bad))]);
        static _Thread_local char what[700];
        snprintf(what, sizeof what, "config_set of a bad value: \"%.100s\" = \"%.100s\", handle %p", key, val, h);
        C.op = what;
        ST(V_BAD, ibstack_config_set, h, key, val);
        return;
    }
    if (kind == 6) { /* the modelled string option */
        spell_key(key, "ms_async_rdma_device_name");
        rand_token(val, 60);
        if (ST(hv ? V_VALID : V_BAD, ibstack_config_set, h, key, val) == 0 && hv) strcpy(s->dev, val);
        if (hv) cfg_check_model(s);
        return;
    }
    if (kind == 7) { /* unknown keys, NULL key or value */
        static const char *unk[] = {"ms_async_rdma_gid_index", "ms_async_rdma_", "", "ibstack_nothing", "ms_async_rdma_devicename"};
        switch (rn(3)) {
        case 0: ST(V_BAD, ibstack_config_set, h, unk[rn(5)], "1"); break;
        case 1: ST(V_BAD, ibstack_config_set, h, NULL, "1"); break;
        default: ST(V_BAD, ibstack_config_set, h, o->key, NULL); break;
        }
        if (hv) cfg_check_model(s);
        return;
    }
    /* junk: anything but a crash or a contract violation; the model must not change
     * unless it succeeded on the modelled key */
    rand_junk(key, chance(50) ? 40 : 300);
    if (chance(50)) spell_key(key, o->key);
    rand_junk(val, chance(50) ? 20 : 500);
    ST(V_ANY, ibstack_config_set, h, key, val);
    if (hv) cfg_check_model(s);
}

static void cfg_get(void) {
    cfg_slot *s = &cfgs[rn(CFG_SLOTS)];
    void *h = s->p;
    int hv = h != NULL;
    if (chance(10)) {
        h = pick_bad(T_CFG);
        hv = 0;
    }
    C.op = "config_get";
    const char *key = opts[rn(N_OPTS)].key;
    char spelled[128];
    int known = 1;
    if (chance(10)) {
        key = chance(50) ? "ms_async_rdma_nope" : "";
        known = 0;
    } else if (chance(30)) {
        spell_key(spelled, key);
        key = spelled;
    }
    char *b = pbuf;
    size_t len = rand_size(600);
    if (len > sizeof pbuf && !chance(20)) len = rn(sizeof pbuf);
    if (chance(5)) b = NULL, len = chance(50) ? 0 : len;
    /* a length no buffer can have (above PTRDIFF_MAX) is refused up front */
    int expect = !hv || len > PTRDIFF_MAX ? V_BAD : known && (b || !len) ? V_VALID : V_ANY;
    long n = CNT(expect, INT32_MAX, ibstack_config_get, h, key, b, len);
    if (b == NULL && len > 0 && n >= 0) seq_fail("ibstack_config_get", "a NULL buffer of %zu bytes was accepted", len);
    seq_check_text("ibstack_config_get", b, len, n);
}

static void cfg_json(void) {
    cfg_slot *s = &cfgs[rn(CFG_SLOTS)];
    void *h = chance(90) ? (void *)s->p : pick_bad(T_CFG);
    int hv = h && h == s->p;
    C.op = "config_to_json";
    size_t len = rand_size(4096);
    if (len > sizeof pbuf && !chance(20)) len = rn(sizeof pbuf);
    long n = CNT(hv && len <= PTRDIFF_MAX ? V_VALID : V_BAD, INT32_MAX, ibstack_config_to_json, h, pbuf, len);
    seq_check_text("ibstack_config_to_json", pbuf, len, n);
    if (hv && n > 0 && (size_t)n < len && (pbuf[0] != '{' || pbuf[n - 1] != '}'))
        seq_fail("ibstack_config_to_json", "the JSON is not an object: %.80s", pbuf);
}

static char conf_path[256];

/* writes a random ceph.conf; returns whether every line is valid; *dev gets the
 * device name it sets in [global] only ("" for none) */
static int write_conf(char *dev) {
    FILE *f = fopen(conf_path, "w");
    if (!f) seq_fail("write_conf", "cannot write %s", conf_path);
    int valid = 1;
    dev[0] = 0;
    int lines = (int)rn(20);
    int in_global = 0;
    if (chance(70)) {
        fprintf(f, "[global]\n");
        in_global = 1;
    }
    for (int i = 0; i < lines; i++) {
        const opt_case *o = &opts[rn(N_OPTS)];
        char key[128], v[512];
        switch (rn(14)) {
        case 0: {
            static const char *sec[] = {"[global]", "[osd]", "[osd.3]", "[mon]", "[client.admin]", "[ global ]"};
            int k = (int)rn(6);
            fprintf(f, "%s\n", sec[k]);
            in_global = k == 0;
            break;
        }
        case 1: fprintf(f, chance(50) ? "# a comment = 3\n" : "; another [comment]\n"); break;
        case 2: fprintf(f, "\n"); break;
        case 3: fprintf(f, "osd_op_threads = %u\n", rn(9)); break; /* another subsystem's key */
        case 4:
        case 5:
        case 6:
            spell_key(key, o->key);
            fprintf(f, "%s%s = %s\n", chance(20) ? "  " : "", key, o->good[rn((uint32_t)ncount(o->good))]);
            break;
        case 7:
            if (in_global && !dev[0] && chance(50)) {
                rand_token(dev, 30);
                spell_key(key, "ms_async_rdma_device_name");
                fprintf(f, "%s = %s\n", key, dev);
            }
            break;
        case 8:
            spell_key(key, o->key);
            fprintf(f, "%s = %s\n", key, o->bad[rn((uint32_t)ncount(o->bad))]);
            valid = 0;
            break;
        case 9: fprintf(f, "ms_async_rdma_bogus_%u = 1\n", rn(10)); valid = 0; break;
        case 10: fprintf(f, "this line has no equals sign\n"); valid = 0; break;
        case 11:
            rand_junk(v, chance(80) ? 80 : 500);
            fprintf(f, "%s\n", v);
            valid = 0;
            break;
        case 12:
            for (int k = 0; k < 9000; k++) fputc('a' + (int)rn(26), f);
            fprintf(f, " = 1\n");
            valid = 0;
            break;
        default:
            spell_key(key, o->key);
            rand_junk(v, 30);
            fprintf(f, "%s =%s\n", key, v);
            valid = 0;
            break;
        }
    }
    if (chance(20)) fprintf(f, "ms_async_rdma_sl = 2"); /* no final newline */
    fclose(f);
    return valid;
}

static void cfg_load(void) {
    cfg_slot *s = &cfgs[rn(CFG_SLOTS)];
    void *h = s->p;
    int hv = h != NULL;
    if (chance(8)) {
        h = pick_bad(T_CFG);
        hv = 0;
    }
    C.op = "config_load_file";
    char dev[64];
    int valid = write_conf(dev);
    static const char *secs[] = {NULL, "", "osd", "osd.3", "mon", "mon.a", "client.admin", "x]y", "global"};
    const char *sec = secs[rn(9)];
    const char *path = conf_path;
    switch (rn(12)) {
    case 0: path = "/nonexistent/ceph.conf"; valid = -1; break;
    case 1: path = "/tmp"; valid = -1; break;
    case 2: path = NULL; valid = -2; break;
    case 3: path = ""; valid = -1; break;
    default: break;
    }
    char before[sizeof s->dev];
    memcpy(before, s->dev, sizeof before);
    long rc = ST(!hv || valid == -2 ? V_BAD : valid == 1 ? V_VALID : V_ANY, ibstack_config_load_file, h, path, sec);
    if (valid == -1 && rc >= 0) seq_fail("ibstack_config_load_file", "loading \"%s\" succeeded", path);
    if (!hv) return;
    if (rc == 0 && dev[0] && path == conf_path) strcpy(s->dev, dev);
    if (rc < 0 && memcmp(before, s->dev, sizeof before) != 0) seq_fail("model", "changed on a failure");
    cfg_check_model(s);
}

/* ------------------------------------------------------------------ device lists, no device */

#define DL_SLOTS 3
static ibstack_device_list *dls[DL_SLOTS];

static void dl_op(void) {
    int i = (int)rn(DL_SLOTS);
    C.op = "device_list";
    switch (rn(4)) {
    case 0:
        if (!dls[i] && ST(V_VALID, ibstack_device_list_new, &dls[i]) == 0) reg(dls[i], T_DL);
        if (chance(10)) ST(V_BAD, ibstack_device_list_new, NULL);
        break;
    case 1:
        if (dls[i]) {
            FREE(V_VALID, ibstack_device_list_free, dls[i]);
            unreg(dls[i]);
            dls[i] = NULL;
        }
        break;
    default:
        if (dls[i]) {
            size_t n = (size_t)Z(V_ANY, ibstack_device_list_count, dls[i]);
            size_t idx = chance(50) ? rn((uint32_t)n + 2) : rand_size(8);
            size_t len = rand_size(64);
            if (len > 256 && !chance(10)) len = 256;
            long r = CNT(V_ANY, INT32_MAX, ibstack_device_list_name, dls[i], idx, pbuf, len);
            if (idx >= n && r != -ERANGE) seq_fail("ibstack_device_list_name", "index %zu of %zu gave %ld, want -ERANGE", idx, n, r);
            if (idx < n && r < 0) seq_fail("ibstack_device_list_name", "index %zu of %zu failed", idx, n);
            seq_check_text("ibstack_device_list_name", pbuf, len, r);
        }
        break;
    }
}

/* without a device: opening one fails, never -EINVAL for a live config, never success */
static int host_has_device;
static void nodevice_op(void) {
    cfg_slot *s = &cfgs[rn(CFG_SLOTS)];
    if (!s->p || host_has_device) return;
    C.op = "nodevice";
    if (chance(50)) {
        ibstack_ib *ib = NULL;
        long rc = ST(V_VALID, ibstack_ib_new, s->p, &ib);
        if (rc == 0) seq_fail("ibstack_ib_new", "succeeded on a host without an RDMA device");
    } else {
        ibstack_stack *st = NULL;
        long rc = ST(V_VALID, ibstack_stack_new, s->p, &st);
        if (rc == 0) seq_fail("ibstack_stack_new", "succeeded on a host without an RDMA device");
    }
}

/* ------------------------------------------------------------------ pure functions */

static void pure_op(void) {
    C.op = "pure";
    int v = rand_int();
    switch (rn(9)) {
    case 0: if (!Z(V_ANY, ibstack_strerror, v)) seq_fail("ibstack_strerror", "NULL for %d", v); break;
    case 1: if (!Z(V_ANY, ibstack_wc_status_str, (uint32_t)v)) seq_fail("ibstack_wc_status_str", "NULL"); break;
    case 2: if (!Z(V_ANY, ibstack_qp_state_str, v)) seq_fail("ibstack_qp_state_str", "NULL"); break;
    case 3: if (!Z(V_ANY, ibstack_port_state_str, (uint32_t)v)) seq_fail("ibstack_port_state_str", "NULL"); break;
    case 4: if (!Z(V_ANY, ibstack_async_event_str, (uint32_t)v)) seq_fail("ibstack_async_event_str", "NULL"); break;
    case 5: {
        size_t len = rand_size(64);
        if (len > 8192) len = 8192;
        char *b = chance(20) ? NULL : pbuf;
        if (!b) len = 0;
        /* the message is of the config_to_json reset */
        seq_pre("ibstack_last_error_message");
        size_t full = ibstack_last_error_message(b, len);
        if (full == 0) seq_fail("ibstack_last_error_message", "empty after a failed call");
        seq_check_text("ibstack_last_error_message", b, len, (long)full);
        break;
    }
    case 6: { /* encode then decode: the record comes back */
        ibstack_cm_meta m = {.lid = (uint16_t)rnd64(), .local_qpn = (uint32_t)rnd64(), .psn = (uint32_t)rnd64(), .peer_qpn = (uint32_t)rnd64()};
        for (int i = 0; i < 16; i++) m.gid[i] = (uint8_t)rnd64();
        char rec[128];
        size_t len = chance(70) ? 65 + rn(60) : rand_size(65);
        if (len > sizeof rec && !chance(5)) len = sizeof rec;
        ibstack_cm_meta *mp = chance(5) ? NULL : &m;
        /* no buffer holds more than PTRDIFF_MAX bytes: such a length is -EINVAL */
        long rc = CNT(len >= 65 && len <= PTRDIFF_MAX && mp ? V_VALID : V_BAD, 65, ibstack_cm_meta_encode, mp, rec, len);
        if (rc == 65) {
            ibstack_cm_meta back;
            if (chance(30)) rec[rn(64)] = (char)rnd64(); /* a damaged record: anything but a crash */
            else if (ST(V_VALID, ibstack_cm_meta_decode, rec, 65, &back) == 0 &&
                     (back.lid != m.lid || back.local_qpn != m.local_qpn || back.psn != (m.psn & 0xffffff) ||
                      back.peer_qpn != m.peer_qpn || memcmp(back.gid, m.gid, 16) != 0) &&
                     back.psn != m.psn)
                seq_fail("ibstack_cm_meta_decode", "the record did not come back as encoded");
            ST(V_ANY, ibstack_cm_meta_decode, rec, chance(80) ? 65 : rn(128), &back);
        }
        break;
    }
    case 7: { /* hostile records: random bytes, banners, NULLs */
        char rec[256];
        size_t len = rn(sizeof rec);
        for (size_t i = 0; i < len; i++) rec[i] = (char)rnd64();
        if (chance(20)) memcpy(rec, "ceph v2\n", 8), len = len < 8 ? 8 : len;
        if (chance(20)) len = rand_size(64), len = len > sizeof rec && !chance(5) ? sizeof rec : len;
        ibstack_cm_meta out;
        long rc = ST(len > PTRDIFF_MAX ? V_BAD : V_ANY, ibstack_cm_meta_decode, chance(5) ? NULL : rec, len, chance(5) ? NULL : &out);
        if (rc == 0 && len != 65) seq_fail("ibstack_cm_meta_decode", "accepted %zu bytes", len);
        break;
    }
    default:
        seq_pre("ibstack_version");
        if (!ibstack_version()) seq_fail("ibstack_version", "NULL");
        break;
    }
}

/* ------------------------------------------------------------------ the host sequence */

static void host_sequence(void) {
    int steps = 50 + (int)rn(250);
    for (int i = 0; i < steps; i++) {
        switch (rn(20)) {
        case 0: case 1: cfg_new(); break;
        case 2: cfg_free(&cfgs[rn(CFG_SLOTS)]); break;
        case 3: case 4: case 5: cfg_set(); break;
        case 6: case 7: cfg_get(); break;
        case 8: cfg_json(); break;
        case 9: cfg_load(); break;
        case 10: dl_op(); break;
        case 11: nodevice_op(); break;
        case 12: case 13: pure_op(); break;
        case 14: probe_live(); break;
        default: probe_bad(); break;
        }
    }
    /* free in random order */
    for (int k = 0; k < CFG_SLOTS; k++) cfg_free(&cfgs[rn(CFG_SLOTS)]);
    for (int k = 0; k < CFG_SLOTS; k++) cfg_free(&cfgs[k]);
    for (int k = 0; k < DL_SLOTS; k++)
        if (dls[k]) {
            FREE(V_VALID, ibstack_device_list_free, dls[k]);
            unreg(dls[k]);
            dls[k] = NULL;
        }
    if (live_n) seq_fail("model", "%d handles left live after the sequence", live_n);
}

/* ------------------------------------------------------------------ threads sharing handles */

#define TSLOTS 6
static _Atomic(ibstack_config *) tcfg[TSLOTS];
static _Atomic(ibstack_device_list *) tdl[2];
#define TDEAD 64
static _Atomic(void *) tdead[TDEAD];
static atomic_uint tdead_next;
static atomic_int log_bad;

static void log_cb(void *ud, int level, const char *target, size_t tlen, const char *msg, size_t mlen) {
    (void)ud;
    if (level < 1 || level > 5 || strlen(target) != tlen || strlen(msg) != mlen) atomic_store(&log_bad, 1);
}

typedef struct {
    uint64_t seed;
    long seq;
    int tid, ops;
} targ;

static void *thread_main(void *a) {
    targ *t = a;
    memset(&C, 0, sizeof C);
    C.seed = t->seed;
    C.seq = t->seq;
    C.tid = t->tid;
    C.mode = "threads";
    C.rng = seq_seed(t->seed, t->seq, t->tid);
    char b[4096];
    for (int i = 0; i < t->ops; i++) {
        int k = (int)rn(TSLOTS);
        ibstack_config *c = atomic_load(&tcfg[k]);
        switch (rn(14)) {
        case 0: { /* new into an empty slot */
            C.op = "t_config_new";
            ibstack_config *n = NULL;
            if (ST(V_VALID, ibstack_config_new, &n) == 0) {
                ibstack_config *want = NULL;
                if (!atomic_compare_exchange_strong(&tcfg[k], &want, n)) FREE(V_VALID, ibstack_config_free, n);
            }
            break;
        }
        case 1: { /* free while the others may be calling on it */
            C.op = "t_config_free";
            ibstack_config *old = atomic_exchange(&tcfg[k], NULL);
            if (old) {
                FREE(V_VALID, ibstack_config_free, old);
                atomic_store(&tdead[atomic_fetch_add(&tdead_next, 1) % TDEAD], old);
            }
            break;
        }
        case 2: { /* a handle freed earlier, by any thread: used and freed again */
            C.op = "t_stale";
            void *d = atomic_load(&tdead[rn(TDEAD)]);
            if (!d) break;
            if (chance(50)) ST(V_ANY, ibstack_config_set, d, "ms_async_rdma_sl", "2");
            else CNT(V_ANY, INT32_MAX, ibstack_config_to_json, d, b, sizeof b);
            break;
        }
        case 3: case 4: case 5: {
            C.op = "t_config_set";
            const opt_case *o = &opts[rn(N_OPTS)];
            char key[128];
            spell_key(key, o->key);
            ST(V_ANY, ibstack_config_set, c, key, chance(70) ? o->good[rn((uint32_t)ncount(o->good))] : o->bad[rn((uint32_t)ncount(o->bad))]);
            break;
        }
        case 6: case 7: {
            C.op = "t_config_get";
            size_t len = rn(sizeof b);
            seq_check_text("ibstack_config_get", b, len, CNT(V_ANY, INT32_MAX, ibstack_config_get, c, opts[rn(N_OPTS)].key, b, len));
            break;
        }
        case 8: {
            C.op = "t_config_to_json";
            size_t len = rn(sizeof b);
            seq_check_text("ibstack_config_to_json", b, len, CNT(V_ANY, INT32_MAX, ibstack_config_to_json, c, b, len));
            break;
        }
        case 9: {
            C.op = "t_load_file";
            char path[300];
            snprintf(path, sizeof path, "%s.t%d", conf_path, t->tid);
            FILE *f = fopen(path, "w");
            if (f) {
                fprintf(f, "[global]\nms async rdma sl = %u\nms_async_rdma_polling_us = %u\n%s", rn(20), rn(5000),
                        chance(30) ? "ms_async_rdma_bogus = 1\n" : "");
                fclose(f);
            }
            ST(V_ANY, ibstack_config_load_file, c, path, chance(50) ? "osd.1" : NULL);
            break;
        }
        case 10: { /* device lists shared the same way */
            C.op = "t_device_list";
            int j = (int)rn(2);
            if (chance(30)) {
                ibstack_device_list *n = NULL;
                if (ST(V_VALID, ibstack_device_list_new, &n) == 0) {
                    ibstack_device_list *old = atomic_exchange(&tdl[j], n);
                    if (old) FREE(V_VALID, ibstack_device_list_free, old);
                }
            } else {
                ibstack_device_list *l = atomic_load(&tdl[j]);
                size_t n = (size_t)Z(V_ANY, ibstack_device_list_count, l);
                CNT(V_ANY, INT32_MAX, ibstack_device_list_name, l, rn((uint32_t)n + 2), b, sizeof b);
            }
            break;
        }
        case 11: /* ib_new/stack_new on a config another thread may free: no device here */
            C.op = "t_nodevice";
            if (!host_has_device) {
                ibstack_ib *ib = NULL;
                if (ST(V_ANY, ibstack_ib_new, c, &ib) == 0) seq_fail("ibstack_ib_new", "succeeded without a device");
            }
            break;
        case 12:
            C.op = "t_log";
            if (chance(10)) ST(V_ANY, ibstack_set_log_callback, chance(50) ? log_cb : NULL, NULL, rand_int());
            else pure_op();
            break;
        default: { /* a probe of any family with a config or a stale handle */
            C.op = "t_probe";
            void *p = chance(50) ? (void *)c : atomic_load(&tdead[rn(TDEAD)]);
            int fam = 1 + (int)rn(T_N - 1);
            if (p) probe(fam, p, V_BAD);
            break;
        }
        }
    }
    return NULL;
}

static void threads_sequence(void) {
    int n = 2 + (int)rn(3);
    pthread_t th[4];
    targ a[4];
    for (int i = 0; i < n; i++) {
        a[i] = (targ){.seed = C.seed, .seq = C.seq, .tid = i + 1, .ops = 100 + (int)rn(300)};
        if (pthread_create(&th[i], NULL, thread_main, &a[i])) seq_fail("pthread_create", "failed");
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    if (atomic_load(&log_bad)) seq_fail("log callback", "called with a bad level or lengths");
    for (int k = 0; k < TSLOTS; k++) {
        ibstack_config *old = atomic_exchange(&tcfg[k], NULL);
        if (old) FREE(V_VALID, ibstack_config_free, old);
    }
    for (int k = 0; k < 2; k++) {
        ibstack_device_list *old = atomic_exchange(&tdl[k], NULL);
        if (old) FREE(V_VALID, ibstack_device_list_free, old);
    }
    ibstack_set_log_callback(NULL, NULL, 0);
}

/* ------------------------------------------------------------------ setup */

static void seq_setup(void) {
    foreign_heap = calloc(1, 4096);
    snprintf(conf_path, sizeof conf_path, "/tmp/ibstack-seq-%d.conf", (int)getpid());
    ibstack_device_list *l = NULL;
    if (ibstack_device_list_new(&l) == 0) {
        host_has_device = ibstack_device_list_count(l) > 0;
        ibstack_device_list_free(l);
    }
}

static void seq_teardown(void) {
    char path[300];
    unlink(conf_path);
    for (int t = 0; t <= 4; t++) {
        snprintf(path, sizeof path, "%s.t%d", conf_path, t);
        unlink(path);
    }
    free(foreign_heap);
    vm_cleanup();
}

#include "seq_vm.h"

#endif
