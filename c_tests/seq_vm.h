/* test_seq vm: the device families on rxe0 and a host-driven stack, in random order.
 * The model: which ib / mem_mgr / cq / dispatcher / qp / stack / listener / conn handles are
 * live, which chunks the test holds (and from which pool), which it gave back (stale). */
#ifndef IBSTACK_SEQ_VM_H
#define IBSTACK_SEQ_VM_H

#define VM_IP "10.99.0.1"
#define BUFSZ 4096u

#define NIB 2
#define NMM 3
#define NCQ 2
#define NDISP 2
#define NQP 4
#define NLIS 2
#define NCONN 6
#define NHELD 96
#define NSTALE 64

typedef struct {
    ibstack_mem_mgr *p;
    int ib;        /* index of the ib it was made from, -1 for a stack's */
    int shared;    /* a dispatcher or a stack takes chunks from these pools too */
    int stack;     /* the stack's pools */
} mm_slot;

typedef struct {
    ibstack_chunk *c;
    int mm;        /* index into mms; the handle may be freed since (then mm_gen differs) */
    unsigned gen;  /* mms[mm] generation when it was got */
    int rx;        /* from the RX pool */
    int disp;      /* an RX chunk handed over by dispatcher_poll: index + 1 */
} chunk_slot;

typedef struct {
    ibstack_dispatcher *p;
    int mm, ib;
    const ibstack_cq *tx, *rx;
} disp_slot;

typedef struct {
    ibstack_qp *p;
    int d, mm;     /* its dispatcher's slot and mem_mgr slot at creation */
    unsigned gen;  /* that mem_mgr's generation */
} qp_slot;

static ibstack_config *vcfg[2]; /* host-driven stack configs: SRQ, no SRQ */
static ibstack_ib *ibs[NIB];
static mm_slot mms[NMM];
static unsigned mm_gen[NMM];
static ibstack_cq *cqs[NCQ];
static disp_slot ds[NDISP];
static qp_slot qps[NQP];
static ibstack_stack *st;
static int stacks_made;
static ibstack_listener *lis[NLIS];
static unsigned lis_gen[NLIS], st_gen; /* the stack a listener was made on; st_gen counts stacks */
static ibstack_conn *conns[NCONN];
static chunk_slot held[NHELD];
static int nheld;
static chunk_slot stale[NSTALE];
static int nstale, stale_next;
static uint8_t *big; /* send/recv buffer, larger than any pool */
#define BIG (4u << 20)

static int vm_setup(void) {
    big = malloc(BIG);
    if (!big) return 1;
    for (size_t i = 0; i < BIG; i++) big[i] = (uint8_t)(i * 7);
    for (int s = 0; s < 2; s++) {
        if (ibstack_config_new(&vcfg[s])) return 1;
        const char *kv[][2] = {
            {"ms_async_rdma_device_name", "rxe0"}, {"ms_async_rdma_gid_idx", "1"}, {"ms_async_rdma_buffer_size", "4096"},
            {"ms_async_rdma_send_buffers", "64"}, {"ms_async_rdma_receive_queue_len", "32"},
            {"ms_async_rdma_receive_buffers", "256"}, {"ibstack_rx_first_block", "64"}, {"ibstack_cq_depth", "512"},
            {"ibstack_stack_thread", "false"}, {"ms_async_rdma_polling_us", "0"}, {"ibstack_tcp_keepalive", "0"},
            {"ms_async_rdma_support_srq", s ? "false" : "true"},
        };
        for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
            if (ibstack_config_set(vcfg[s], kv[i][0], kv[i][1])) {
                printf("not ok - config %s: %s\n", kv[i][0], seq_msg());
                return 1;
            }
    }
    /* before any other verbs use (ibv_fork_init) */
    if (ibstack_global_init(vcfg[0])) {
        printf("not ok - global_init: %s\n", seq_msg());
        return 1;
    }
    return 0;
}

static void vm_cleanup(void) {
    for (int s = 0; s < 2; s++) ibstack_config_free(vcfg[s]);
    free(big);
}

/* ------------------------------------------------------------------ chunk model */

static int held_find(const ibstack_chunk *c) {
    for (int i = 0; i < nheld; i++)
        if (held[i].c == c) return i;
    return -1;
}

/* the pool of held chunk h is certainly alive: its mem_mgr handle is */
static int chunk_pool_live(const chunk_slot *h) { return h->mm >= 0 && mms[h->mm].p && mm_gen[h->mm] == h->gen; }

static int reused_notes;
static void held_drop(int i, int to_stale);

static void held_add(ibstack_chunk *c, int mm, int rx, int disp) {
    if (!c) return;
    int old = held_find(c);
    /* a chunk of a pool that is gone since (its mem_mgr freed, and whatever kept the pool
     * alive, a dispatcher or a stack, freed too) is no chunk any more: its descriptor's memory
     * may now be a chunk of a new pool at the same address */
    if (old >= 0 && !chunk_pool_live(&held[old])) {
        if (reused_notes++ < 3)
            printf("# note: chunk address %p of a pool freed since is a chunk of mem_mgr %d now\n", (void *)c, mm);
        held_drop(old, 0);
        old = -1;
    }
    if (old >= 0) seq_fail("model", "chunk %p was handed out while the test still holds it", (void *)c);
    if (nheld == NHELD) seq_fail("model", "too many held chunks");
    held[nheld++] = (chunk_slot){.c = c, .mm = mm, .gen = mm >= 0 ? mm_gen[mm] : 0, .rx = rx, .disp = disp};
}

/* the chunk left the test's hands: given back (stale) or handed to the library */
static void held_drop(int i, int to_stale) {
    if (to_stale) {
        stale[stale_next] = held[i];
        stale_next = (stale_next + 1) % NSTALE;
        if (nstale < NSTALE) nstale++;
    }
    held[i] = held[--nheld];
}


/* a stale chunk pointer is certainly free in its pool: only the test takes chunks from it */
static int stale_certainly_free(const chunk_slot *s) {
    return chunk_pool_live(s) && !mms[s->mm].shared && held_find(s->c) < 0;
}

/* ------------------------------------------------------------------ objects */

static void ib_op(void) {
    int i = (int)rn(NIB);
    C.op = "ib";
    if (!ibs[i]) {
        if (ST(V_VALID, ibstack_ib_new, vcfg[rn(2)], &ibs[i]) == 0) reg(ibs[i], T_IB);
    } else if (chance(30)) {
        FREE(V_VALID, ibstack_ib_free, ibs[i]);
        unreg(ibs[i]);
        ibs[i] = NULL;
    } else {
        ibstack_ib_info info;
        if (ST(V_VALID, ibstack_ib_query, ibs[i], &info) == 0 && (info.port_num != 1 || info.gid_index != 1))
            seq_fail("ibstack_ib_query", "port %u gid index %u", info.port_num, info.gid_index);
        char name[16];
        size_t len = rn(sizeof name);
        seq_check_text("ibstack_ib_device_name", name, len, CNT(V_VALID, 64, ibstack_ib_device_name, ibs[i], name, len));
    }
}

/* held chunks of slot i are forgotten: their pool may be destroyed, and a new pool may
 * then hand out chunks at the same addresses */
static void held_forget(int i) {
    for (int k = 0; k < nheld; k++)
        if (held[k].mm == i && !held[k].disp) held_drop(k--, 0);
}

static void mm_free_slot(int i) {
    FREE(V_VALID, ibstack_mem_mgr_free, mms[i].p);
    unreg(mms[i].p);
    mms[i].p = NULL;
    /* the stack's pools outlive the handle while the stack lives: a new handle of the same
     * stack names the same pools (the generation changes with the stack) */
    if (i != NMM - 1) {
        mm_gen[i]++;
        held_forget(i);
    }
}

static void mm_op(void) {
    int i = (int)rn(NMM);
    C.op = "mem_mgr";
    if (!mms[i].p) {
        if (i == NMM - 1) {
            if (st && ST(V_VALID, ibstack_stack_mem_mgr, st, &mms[i].p) == 0) {
                reg(mms[i].p, T_MM);
                mms[i].ib = -1;
                mms[i].shared = mms[i].stack = 1;
            }
            return;
        }
        int b = (int)rn(NIB);
        if (!ibs[b]) return;
        if (ST(V_VALID, ibstack_mem_mgr_new, ibs[b], &mms[i].p) == 0) {
            reg(mms[i].p, T_MM);
            mms[i].ib = b;
            mms[i].shared = mms[i].stack = 0;
        }
    } else if (chance(15)) {
        mm_free_slot(i);
    } else {
        ibstack_mem_stats s;
        if (ST(V_VALID, ibstack_mem_mgr_stats, mms[i].p, &s) == 0) {
            if (s.tx_free + s.tx_in_use != s.tx_total || s.tx_in_use > s.tx_total || s.rx_in_use > s.rx_allocated ||
                s.buffer_size != BUFSZ)
                seq_fail("ibstack_mem_mgr_stats", "tx total %llu free %llu in use %llu, rx allocated %llu in use %llu",
                         (unsigned long long)s.tx_total, (unsigned long long)s.tx_free, (unsigned long long)s.tx_in_use,
                         (unsigned long long)s.rx_allocated, (unsigned long long)s.rx_in_use);
            int mine = 0;
            for (int k = 0; k < nheld; k++) mine += chunk_pool_live(&held[k]) && held[k].mm == i && !held[k].rx;
            if ((uint64_t)mine > s.tx_in_use) seq_fail("ibstack_mem_mgr_stats", "tx in use %llu but the test holds %d", (unsigned long long)s.tx_in_use, mine);
        }
        size_t len = rn(2) ? sizeof pbuf : rn(40);
        seq_check_text("ibstack_mem_mgr_stats_json", pbuf, len, CNT(V_VALID, INT32_MAX, ibstack_mem_mgr_stats_json, mms[i].p, pbuf, len));
    }
}

static void chunk_get(void) {
    int i = (int)rn(NMM);
    if (!mms[i].p) return;
    C.op = "chunk_get";
    if (chance(70)) {
        ibstack_chunk *out[16] = {0};
        size_t bytes = chance(80) ? rn(6 * BUFSZ) : rand_size(BUFSZ);
        size_t cap = rn(17), n = 99;
        if (chance(3)) cap = SIZE_MAX; /* more room claimed than there is: at most ceil(bytes/4096) written */
        if (cap == SIZE_MAX && (bytes == 0 || bytes > 16 * BUFSZ)) bytes = 3 * BUFSZ;
        int nulln = chance(5);
        long rc = ST(cap > PTRDIFF_MAX / sizeof *out ? V_BAD : nulln ? V_ANY : V_VALID, ibstack_mem_mgr_get_tx_chunks, mms[i].p, bytes, out, cap, nulln ? NULL : &n);
        size_t got = 0;
        while (got < 16 && out[got]) got++;
        for (size_t k = got; k < 16; k++)
            if (out[k]) seq_fail("ibstack_mem_mgr_get_tx_chunks", "out[%zu] written after a NULL", k);
        if (rc == 0 && !nulln && n != got) seq_fail("ibstack_mem_mgr_get_tx_chunks", "*n_out %zu but %zu chunks written", n, got);
        size_t want = bytes / BUFSZ + (bytes % BUFSZ != 0);
        if (got > want || got > cap) seq_fail("ibstack_mem_mgr_get_tx_chunks", "%zu chunks for %zu bytes, cap %zu", got, bytes, cap);
        if (rc < 0 && got) seq_fail("ibstack_mem_mgr_get_tx_chunks", "failed but wrote %zu chunks", got);
        for (size_t k = 0; k < got; k++) {
            if (ibstack_chunk_offset(out[k]) != 0 || ibstack_chunk_capacity(out[k]) != BUFSZ)
                seq_fail("ibstack_mem_mgr_get_tx_chunks", "chunk not reset for writing: offset %u capacity %u",
                         ibstack_chunk_offset(out[k]), ibstack_chunk_capacity(out[k]));
            held_add(out[k], i, 0, 0);
        }
    } else {
        ibstack_chunk *c = NULL;
        if (ST(V_VALID, ibstack_mem_mgr_get_rx_chunk, mms[i].p, &c) == 0) held_add(c, i, 1, 0);
        if (chance(5)) ST(V_BAD, ibstack_mem_mgr_get_rx_chunk, mms[i].p, NULL);
    }
}

/* a pointer that is no chunk of mm i's pools (or of any pool) */
static ibstack_chunk *not_a_chunk(void) {
    void *f[] = {foreign_heap, &foreign_word, big, (char *)(held[0].c) + 8};
    return f[rn(nheld ? 4 : 3)];
}

static void chunk_return(void) {
    int i = (int)rn(NMM);
    if (!mms[i].p) return;
    C.op = "chunk_return";
    ibstack_chunk *list[8];
    int valid[8]; /* the first listing of a held TX chunk of this mem_mgr */
    size_t n = rn(7), k = 0;
    int ok = 1;
    while (k < n) {
        int pick = (int)rn(10);
        valid[k] = 0;
        if (pick < 6 && nheld) {
            chunk_slot *h = &held[rn((uint32_t)nheld)];
            list[k] = h->c;
            valid[k] = h->mm == i && chunk_pool_live(h) && !h->rx && !h->disp;
            for (size_t j = 0; j < k; j++)
                if (list[j] == list[k]) valid[k] = 0; /* a duplicate */
        } else if (pick < 8 && nstale) {
            chunk_slot *s = &stale[rn((uint32_t)nstale)];
            if (!(stale_certainly_free(s) && s->mm == i && !s->rx)) continue;
            list[k] = s->c;
        } else {
            list[k] = chance(30) ? NULL : not_a_chunk();
        }
        ok &= valid[k];
        k++;
    }
    long rc = ST(ok ? V_VALID : V_BAD, ibstack_mem_mgr_return_tx, mms[i].p, n || chance(50) ? list : NULL, n);
    if (ok && rc != 0) seq_fail("ibstack_mem_mgr_return_tx", "returning %zu held chunks failed", n);
    /* the valid ones are returned in any case */
    for (k = 0; k < n; k++)
        if (valid[k]) held_drop(held_find(list[k]), 1);
}

static void chunk_release(void) {
    C.op = "chunk_release";
    int i = (int)rn(NMM);
    if (!mms[i].p) return;
    if (nheld && chance(70)) {
        int h = (int)rn((uint32_t)nheld);
        chunk_slot c = held[h];
        int valid = c.rx && !c.disp && c.mm == i && chunk_pool_live(&c);
        long rc = ST(valid ? V_VALID : V_ANY, ibstack_mem_mgr_release_rx_chunk, mms[i].p, c.c);
        if (valid && rc != 0) seq_fail("ibstack_mem_mgr_release_rx_chunk", "a held RX chunk was refused");
        if (!c.rx && c.mm == i && chunk_pool_live(&c) && rc == 0) seq_fail("ibstack_mem_mgr_release_rx_chunk", "a TX chunk was taken as RX");
        if (rc == 0) held_drop(h, valid);
    } else if (nstale && chance(50)) {
        chunk_slot *s = &stale[rn((uint32_t)nstale)];
        if (stale_certainly_free(s) && s->rx && s->mm == i)
            ST(V_BAD, ibstack_mem_mgr_release_rx_chunk, mms[i].p, s->c);
    } else {
        ST(V_BAD, ibstack_mem_mgr_release_rx_chunk, mms[i].p, chance(20) ? NULL : not_a_chunk());
    }
}

/* the chunk functions on a held chunk (invariants), a stale or foreign one (no crash) */
static void chunk_ops(void) {
    C.op = "chunk_ops";
    if (!nheld || chance(20)) {
        ibstack_chunk *c = chance(50) && nstale ? stale[rn((uint32_t)nstale)].c : not_a_chunk();
        int foreign = held_find(c) < 0 && (c == foreign_heap || c == (void *)&foreign_word || c == (void *)big);
        switch (rn(6)) {
        case 0: Z(foreign ? V_BAD : V_ANY, ibstack_chunk_capacity, c); break;
        case 1: Z(foreign ? V_BAD : V_ANY, ibstack_chunk_buffer, c); break;
        case 2: Z(foreign ? V_BAD : V_ANY, ibstack_chunk_size, c); break;
        case 3: Z(foreign ? V_BAD : V_ANY, ibstack_chunk_qp, c); break;
        case 4: Z(foreign ? V_BAD : V_ANY, ibstack_chunk_lkey, c); break;
        default: Z(foreign ? V_BAD : V_ANY, ibstack_chunk_full, c); break;
        }
        return;
    }
    chunk_slot *h = &held[rn((uint32_t)nheld)];
    int live = chunk_pool_live(h);
    int e = live ? V_VALID : V_ANY;
    ibstack_chunk *c = h->c;
    uint32_t cap = (uint32_t)Z(V_ANY, ibstack_chunk_capacity, c);
    uint32_t off = (uint32_t)Z(V_ANY, ibstack_chunk_offset, c);
    uint32_t bound = (uint32_t)Z(V_ANY, ibstack_chunk_bound, c);
    uint32_t size = (uint32_t)Z(V_ANY, ibstack_chunk_size, c);
    if (live) {
        if (cap != BUFSZ || off > cap || bound > cap || (off <= bound && size != bound - off))
            seq_fail("ibstack_chunk_*", "capacity %u offset %u bound %u size %u", cap, off, bound, size);
        if (!Z(V_ANY, ibstack_chunk_buffer, c)) seq_fail("ibstack_chunk_buffer", "NULL for a held chunk");
        if (!h->rx && mms[h->mm].p &&
            (ibstack_chunk *)Z(V_ANY, ibstack_mem_mgr_tx_chunk_by_buffer, mms[h->mm].p, (char *)ibstack_chunk_buffer(c) + rn(BUFSZ)) != c)
            seq_fail("ibstack_mem_mgr_tx_chunk_by_buffer", "does not find the held chunk by its buffer");
    }
    size_t len = chance(80) ? rn(BUFSZ + 10) : rand_size(BUFSZ);
    switch (rn(7)) {
    case 0: {
        size_t w = (size_t)Z(live && len > PTRDIFF_MAX ? V_BAD : V_ANY, ibstack_chunk_write, c, chance(5) ? NULL : big, len);
        size_t room = cap - off;
        if (live && w > (len < room ? len : room)) seq_fail("ibstack_chunk_write", "wrote %zu of %zu with %zu room", w, len, room);
        break;
    }
    case 1: {
        size_t r = (size_t)Z(live && len > PTRDIFF_MAX ? V_BAD : V_ANY, ibstack_chunk_read, c, chance(5) ? NULL : big, len);
        if (live && r > size) seq_fail("ibstack_chunk_read", "read %zu with %u unread", r, size);
        break;
    }
    case 2: {
        uint32_t n = chance(50) ? rn(BUFSZ + 2) : (uint32_t)rand_int();
        /* the header says "capped at the capacity"; the library refuses n > capacity */
        if (ST(n <= cap ? e : V_ANY, ibstack_chunk_prepare_read, c, n) == 0 && live && ibstack_chunk_bound(c) > cap)
            seq_fail("ibstack_chunk_prepare_read", "bound %u past the capacity", ibstack_chunk_bound(c));
        break;
    }
    case 3: ST(e, ibstack_chunk_reset_read, c); break;
    case 4: ST(e, ibstack_chunk_reset_write, c); break;
    case 5: ST(e, ibstack_chunk_set_qp, c, (uint32_t)rand_int()); break;
    default: Z(V_ANY, ibstack_chunk_full, c); break;
    }
}

static void cq_op(void) {
    int i = (int)rn(NCQ);
    C.op = "cq";
    ibstack_wc wc[8];
    if (!cqs[i]) {
        int b = (int)rn(NIB);
        if (!ibs[b]) return;
        uint32_t depth = chance(70) ? rn(300) : (uint32_t)rand_int();
        if (ST(V_ANY, ibstack_cq_new, ibs[b], depth, &cqs[i]) == 0) reg(cqs[i], T_CQ);
        return;
    }
    switch (rn(7)) {
    case 0: FREE(V_VALID, ibstack_cq_free, cqs[i]); unreg(cqs[i]); cqs[i] = NULL; break;
    case 1: ST(V_VALID, ibstack_cq_rearm, cqs[i]); break;
    case 2: CNT(V_VALID, 1, ibstack_cq_get_event, cqs[i]); break;
    case 3: CNT(V_VALID, INT32_MAX, ibstack_cq_fd, cqs[i]); break;
    default: {
        int n = chance(80) ? (int)rn(9) : -(int)(1 + rn(100));
        CNT(n >= 0 ? V_VALID : V_BAD, n > 0 ? n : 0, ibstack_cq_poll, cqs[i], wc, n);
        break;
    }
    }
}

static void disp_free_slot(int i) {
    FREE(V_VALID, ibstack_dispatcher_free, ds[i].p);
    unreg(ds[i].p);
    /* its borrowed CQs live while its QPs do */
    for (int k = 0; k < live_n; k++)
        if (live_p[k] == ds[i].tx || live_p[k] == ds[i].rx) {
            limbo_add(live_p[k]);
            live_p[k] = live_p[--live_n];
            live_t[k] = live_t[live_n];
            k--;
        }
    ds[i].p = NULL;
    /* RX chunks it handed over: given back with release_rx only while it lives */
    for (int k = 0; k < nheld; k++)
        if (held[k].disp == i + 1) held_drop(k--, 0);
}

/* completions from dispatcher_poll: RECVs become held RX chunks */
static void disp_take(int i, const ibstack_wc *wc, long n) {
    for (long k = 0; k < n; k++)
        if (wc[k].status == 0 && wc[k].opcode == 128) {
            ibstack_chunk *c = (ibstack_chunk *)(uintptr_t)wc[k].wr_id;
            if (ibstack_chunk_bound(c) != wc[k].byte_len)
                seq_fail("ibstack_dispatcher_poll", "RECV of %u bytes, chunk bound %u", wc[k].byte_len, ibstack_chunk_bound(c));
            held_add(c, ds[i].mm, 1, i + 1);
            held[nheld - 1].gen = mms[ds[i].mm].p ? mm_gen[ds[i].mm] : ~0u;
        }
}

static void disp_op(void) {
    int i = (int)rn(NDISP);
    C.op = "dispatcher";
    if (!ds[i].p) {
        int b = (int)rn(NIB), m = (int)rn(NMM - 1);
        if (!ibs[b] || !mms[m].p) return;
        int same = mms[m].ib == b;
        if (ST(same ? V_VALID : V_ANY, ibstack_dispatcher_new, ibs[b], mms[m].p, &ds[i].p) == 0) {
            reg(ds[i].p, T_DISP);
            ds[i].mm = m;
            ds[i].ib = b;
            mms[m].shared = 1;
            ds[i].tx = (const ibstack_cq *)Z(V_VALID, ibstack_dispatcher_tx_cq, ds[i].p);
            ds[i].rx = (const ibstack_cq *)Z(V_VALID, ibstack_dispatcher_rx_cq, ds[i].p);
            if (!ds[i].tx || !ds[i].rx) seq_fail("ibstack_dispatcher_tx_cq", "NULL for a live dispatcher");
            reg((void *)ds[i].tx, T_CQ);
            reg((void *)ds[i].rx, T_CQ);
            if (chance(10)) FREE(V_BAD, ibstack_cq_free, (ibstack_cq *)ds[i].tx);
        }
        return;
    }
    ibstack_wc wc[8];
    switch (rn(12)) {
    case 0: disp_free_slot(i); break;
    case 1: case 2: case 3: {
        int n = (int)rn(9);
        disp_take(i, wc, CNT(V_VALID, n, ibstack_dispatcher_poll, ds[i].p, wc, n));
        break;
    }
    case 4: {
        uint32_t n = chance(60) ? rn(40) : chance(50) ? UINT32_MAX : (uint32_t)rand_int();
        qp_slot *q = &qps[rn(NQP)];
        CNT(V_ANY, n, ibstack_dispatcher_post_rx, ds[i].p, n, q->p);
        break;
    }
    case 5: CNT(V_VALID, 1, ibstack_dispatcher_wait, ds[i].p, (int)rn(3)); break;
    case 6: { /* an RX chunk handed over goes back */
        for (int k = 0; k < nheld; k++)
            if (held[k].disp == i + 1) {
                if (ST(V_VALID, ibstack_dispatcher_release_rx, ds[i].p, held[k].c) != 0)
                    seq_fail("ibstack_dispatcher_release_rx", "refused an RX chunk the dispatcher handed over");
                held_drop(k, 0);
                break;
            }
        if (chance(30)) ST(V_ANY, ibstack_dispatcher_release_rx, ds[i].p, chance(30) ? NULL : not_a_chunk());
        break;
    }
    case 7: { /* fabricated completions: wr_ids that are no posted buffer */
        int n = (int)rn(5);
        for (int k = 0; k < n; k++) {
            uint64_t ids[] = {rnd64(), 0xDEADBEEFull, (uint64_t)(uintptr_t)foreign_heap, 0, (uint64_t)(uintptr_t)big};
            wc[k] = (ibstack_wc){.wr_id = ids[rn(5)], .status = chance(50) ? 0 : rn(25), .opcode = chance(50) ? 128 : rn(4),
                                 .byte_len = (uint32_t)rand_int(), .qp_num = chance(50) ? (uint32_t)rnd64() : ibstack_qp_num(qps[rn(NQP)].p)};
        }
        if (chance(50)) ST(V_ANY, ibstack_dispatcher_handle_tx, ds[i].p, wc, n);
        else ST(V_ANY, ibstack_dispatcher_handle_rx, ds[i].p, wc, n);
        if (chance(10)) ST(V_BAD, ibstack_dispatcher_handle_rx, ds[i].p, NULL, 3);
        break;
    }
    case 8: { /* the borrowed CQs polled raw and handed over */
        const ibstack_cq *cq = chance(50) ? ds[i].tx : ds[i].rx;
        long n = CNT(V_VALID, 8, ibstack_cq_poll, cq, wc, 8);
        if (n > 0 && cq == ds[i].tx) ST(V_VALID, ibstack_dispatcher_handle_tx, ds[i].p, wc, (int)n);
        else if (n > 0) ST(V_VALID, ibstack_dispatcher_handle_rx, ds[i].p, wc, (int)n);
        break;
    }
    case 9: CNT(V_VALID, 1, ibstack_dispatcher_next_async_event, ds[i].p, &(ibstack_async_event){0}); break;
    default: probe(T_DISP, ds[i].p, V_VALID); break;
    }
}

static int qp_state(qp_slot *q) { return (int)CNT(V_VALID, 10, ibstack_qp_state, q->p); }

/* two QPs of one dispatcher connected to each other */
static void qp_pair(void) {
    qp_slot *a = &qps[rn(NQP)], *b = &qps[rn(NQP)];
    if (!a->p || !b->p || a == b || a->d != b->d || a->gen != b->gen || a->mm != b->mm) return;
    C.op = "qp_pair";
    if (qp_state(a) != 1 || qp_state(b) != 1) return;
    ibstack_cm_meta ma, mb;
    if (ST(V_VALID, ibstack_qp_local_meta, a->p, &ma) || ST(V_VALID, ibstack_qp_local_meta, b->p, &mb)) return;
    ma.peer_qpn = mb.local_qpn;
    mb.peer_qpn = ma.local_qpn;
    if (ST(V_VALID, ibstack_qp_to_rtr, a->p, &mb) || ST(V_VALID, ibstack_qp_to_rtr, b->p, &ma)) return;
    if (ST(V_VALID, ibstack_qp_to_rts, a->p) || ST(V_VALID, ibstack_qp_to_rts, b->p)) return;
    uint32_t r = 0;
    if (ST(V_VALID, ibstack_qp_remote_num, a->p, &r) == 0 && r != mb.local_qpn)
        seq_fail("ibstack_qp_remote_num", "%u, want %u", r, mb.local_qpn);
}

static void qp_op(void) {
    int i = (int)rn(NQP);
    qp_slot *q = &qps[i];
    C.op = "qp";
    if (!q->p) {
        int d = (int)rn(NDISP);
        if (!ds[d].p) return;
        if (ST(V_VALID, ibstack_qp_new, ds[d].p, &q->p) == 0) {
            reg(q->p, T_QP);
            q->d = d;
            q->mm = ds[d].mm;
            q->gen = mm_gen[ds[d].mm];
        }
        return;
    }
    ibstack_cm_meta m;
    switch (rn(14)) {
    case 0: FREE(V_VALID, ibstack_qp_free, q->p); unreg(q->p); q->p = NULL; break;
    case 1: ST(V_ANY, ibstack_qp_to_init, q->p); break;
    case 2: { /* RTR towards a random record */
        memset(&m, 0, sizeof m);
        m.local_qpn = chance(50) ? ibstack_qp_num(qps[rn(NQP)].p) : (uint32_t)rnd64();
        m.psn = (uint32_t)rnd64();
        for (int k = 0; k < 16; k++) m.gid[k] = (uint8_t)rnd64();
        ST(V_ANY, ibstack_qp_to_rtr, q->p, chance(5) ? NULL : &m);
        break;
    }
    case 3: ST(V_ANY, ibstack_qp_to_rts, q->p); break;
    case 4:
        if (chance(50)) ST(V_ANY, ibstack_qp_to_error, q->p);
        else ST(V_ANY, ibstack_qp_to_dead, q->p);
        break;
    case 5: qp_pair(); break;
    case 6: case 7: { /* post held TX chunks: valid, duplicated, stale, foreign */
        ibstack_chunk *list[6];
        size_t n = 1 + rn(5), k = 0;
        int clean = 1, tries = 0;
        while (k < n && tries++ < 20) {
            int pick = (int)rn(10);
            if (pick < 7 && nheld) {
                chunk_slot *h = &held[rn((uint32_t)nheld)];
                list[k] = h->c;
                if (h->rx || h->mm != q->mm || h->gen != q->gen || !chunk_pool_live(h)) clean = 0;
                for (size_t j = 0; j < k; j++)
                    if (list[j] == list[k]) clean = 0;
                if (!h->rx && chunk_pool_live(h)) ibstack_chunk_write(list[k], big, 1 + rn(BUFSZ));
            } else if (pick < 9 && nstale) {
                chunk_slot *s = &stale[rn((uint32_t)nstale)];
                if (!stale_certainly_free(s)) continue;
                list[k] = s->c;
                clean = 0;
            } else {
                list[k] = not_a_chunk();
                clean = 0;
            }
            k++;
        }
        n = k;
        if (!n) break;
        size_t posted = 77;
        int st_now = qp_state(q);
        long rc = ST(clean && st_now == 3 ? V_VALID : V_ANY, ibstack_qp_post_send, q->p, list, n, chance(10) ? NULL : &posted);
        int dup = 0;
        for (size_t a = 0; a < n; a++)
            for (size_t b = 0; b < a; b++) dup |= list[a] == list[b];
        if (dup && rc == 0) seq_fail("ibstack_qp_post_send", "a list holding the same chunk twice was posted (two sends, one buffer)");
        if (rc == 0) posted = n;
        else if (posted == 77) posted = 0;
        if (posted > n) seq_fail("ibstack_qp_post_send", "*posted %zu of %zu", posted, n);
        /* the posted ones belong to the dispatcher now */
        for (size_t a = 0; a < posted; a++) {
            int h = held_find(list[a]);
            if (h >= 0) held_drop(h, 0);
        }
        break;
    }
    case 8: ST(V_ANY, ibstack_qp_post_fin, q->p); break;
    case 9: { /* a hostile peer on the handshake socket */
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv)) break;
        char junk[200];
        size_t jl = rn(sizeof junk);
        for (size_t k = 0; k < jl; k++) junk[k] = (char)rnd64();
        if (chance(30)) memcpy(junk, "ceph v2\n", 8), jl = jl < 8 ? 8 : jl;
        if (chance(30)) {
            ibstack_cm_meta pm = {.local_qpn = (uint32_t)rnd64(), .psn = rn(1 << 24)};
            ibstack_cm_meta_encode(&pm, junk, sizeof junk);
            jl = 65;
        }
        if (write(sv[1], junk, jl) < 0) { /* nothing */ }
        if (chance(50)) close(sv[1]), sv[1] = -1;
        CNT(V_ANY, 1, ibstack_qp_handshake_step, q->p, chance(10) ? -1 : sv[0], chance(90) ? rn(2) : (uint32_t)rand_int());
        if (chance(30)) ST(V_ANY, ibstack_qp_handshake, q->p, sv[0], rn(3), 0);
        close(sv[0]);
        if (sv[1] >= 0) close(sv[1]);
        break;
    }
    default: probe(T_QP, q->p, V_VALID); break;
    }
}

/* ------------------------------------------------------------------ the stack */

static void stack_poll_some(int n) {
    for (int k = 0; k < n && st; k++) CNT(V_VALID, 1, ibstack_stack_poll, st);
}

static int conn_slot(void) {
    for (int k = 0; k < NCONN; k++)
        if (!conns[k]) return k;
    return -1;
}

static void conn_add(ibstack_conn *c) {
    int k = conn_slot();
    if (k < 0) seq_fail("model", "no conn slot");
    conns[k] = c;
    reg(c, T_CONN);
}

static int listener_port(void) {
    int k = (int)rn(NLIS);
    if (!lis[k]) return chance(50) ? 1 : (int)(20000 + rn(20000)); /* probably nothing listens */
    return (int)CNT(V_VALID, 65535, ibstack_listener_port, lis[k]);
}

/* an fd of a random kind; *own says whether it must be closed by the test on failure */
static int rand_fd(int want_listen) {
    switch (rn(want_listen ? 5 : 6)) {
    case 0: return chance(50) ? -1 : 100000;
    case 1: return open("/dev/null", O_RDONLY | O_CLOEXEC);
    case 2: return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    case 3: return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* neither listening nor connected */
    case 4: {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        inet_pton(AF_INET, VM_IP, &a.sin_addr);
        if (s >= 0 && (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 8))) {
            close(s);
            return -1;
        }
        return s;
    }
    default: { /* connected (or connecting) to one of the listeners */
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (chance(50) ? SOCK_NONBLOCK : 0), 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listener_port())};
        inet_pton(AF_INET, VM_IP, &a.sin_addr);
        if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
            close(s);
            return -1;
        }
        return s;
    }
    }
}

static void stack_op(void) {
    C.op = "stack";
    if (!st) {
        if (stacks_made < 2 && ST(V_VALID, ibstack_stack_new, vcfg[rn(2)], &st) == 0) {
            reg(st, T_STACK);
            stacks_made++;
            st_gen++;
            if (mms[NMM - 1].p) mm_free_slot(NMM - 1); /* the old stack's mem_mgr handle */
            mm_gen[NMM - 1]++;
            held_forget(NMM - 1);
        }
        return;
    }
    switch (rn(16)) {
    case 0:
        if (chance(30)) { /* freed before its connections and listeners: they keep it alive */
            FREE(V_VALID, ibstack_stack_free, st);
            unreg(st);
            st = NULL;
        }
        break;
    case 1: case 2: { /* listen */
        int k = (int)rn(NLIS);
        if (lis[k]) {
            if (chance(40)) {
                FREE(V_VALID, ibstack_listener_free, lis[k]);
                unreg(lis[k]);
                lis[k] = NULL;
            } else {
                ibstack_conn *c = NULL;
                int room = conn_slot() >= 0;
                long rc = ST(room ? V_VALID : V_BAD, ibstack_accept, lis[k], room ? &c : NULL);
                /* nothing polls or drains a freed stack: a connection accepted then would
                 * never progress and would keep the stack alive (a reference cycle) */
                if (rc == 0 && !(st && lis_gen[k] == st_gen))
                    seq_fail("ibstack_accept", "accepted a connection on a listener whose stack was freed");
                if (rc == 0) conn_add(c);
            }
            break;
        }
        static const char *ips[] = {VM_IP, VM_IP, "127.0.0.1", "0.0.0.0", "not-an-ip", "10.99.0.1:80", "", NULL};
        int ii = (int)rn(8);
        long rc = ST(ii < 4 ? V_VALID : V_BAD, ibstack_listen, st, ips[ii], 0, &lis[k]);
        lis_gen[k] = st_gen;
        if (rc == 0) reg(lis[k], T_LIS);
        else lis[k] = NULL;
        break;
    }
    case 3: { /* listener_adopt with a random fd */
        int k = (int)rn(NLIS);
        if (lis[k]) break;
        int fd = rand_fd(1);
        long rc = ST(V_ANY, ibstack_listener_adopt, st, fd, &lis[k]);
        lis_gen[k] = st_gen;
        if (rc == 0) reg(lis[k], T_LIS);
        else {
            lis[k] = NULL;
            if (fd >= 0 && fd < 100000 && fcntl(fd, F_GETFD) < 0) seq_fail("ibstack_listener_adopt", "failed but closed the caller's fd");
            if (fd >= 0 && fd < 100000) close(fd);
        }
        break;
    }
    case 4: case 5: { /* connect */
        if (conn_slot() < 0) break;
        ibstack_conn *c = NULL;
        static const char *ips[] = {VM_IP, VM_IP, VM_IP, "127.0.0.1", "256.1.1.1", NULL, "::1"};
        int ii = (int)rn(7);
        if (ST(ii < 4 ? V_VALID : ii < 6 ? V_BAD : V_ANY, ibstack_connect, st, ips[ii], (uint16_t)listener_port(), &c) == 0) conn_add(c);
        break;
    }
    case 6: { /* conn_adopt */
        if (conn_slot() < 0) break;
        ibstack_conn *c = NULL;
        int fd = rand_fd(0);
        uint32_t role = chance(90) ? rn(2) : (uint32_t)rand_int();
        long rc = ST(V_ANY, ibstack_conn_adopt, st, fd, role, &c);
        if (rc == 0) conn_add(c);
        else if (fd >= 0 && fd < 100000) {
            if (fcntl(fd, F_GETFD) < 0) seq_fail("ibstack_conn_adopt", "failed but closed the caller's fd");
            close(fd);
        }
        break;
    }
    case 7: { /* the stack's queries */
        ibstack_mem_stats s;
        ST(V_VALID, ibstack_stack_mem_stats, st, &s);
        ibstack_counters ctr;
        ST(V_VALID, ibstack_stack_counters, st, &ctr);
        size_t len = rn(2) ? sizeof pbuf : rn(100);
        seq_check_text("ibstack_stack_counters_json", pbuf, len, CNT(V_VALID, INT32_MAX, ibstack_stack_counters_json, st, pbuf, len));
        CNT(V_VALID, 64, ibstack_stack_conn_count, st);
        CNT(V_VALID, 64, ibstack_stack_qp_count, st);
        break;
    }
    default: stack_poll_some(1 + (int)rn(4)); break;
    }
}

static void conn_op(void) {
    int k = (int)rn(NCONN);
    ibstack_conn *c = conns[k];
    if (!c) return;
    C.op = "conn";
    switch (rn(12)) {
    case 0: { /* close */
        FREE(V_VALID, ibstack_conn_close, c);
        unreg(c);
        conns[k] = NULL;
        break;
    }
    case 1: ST(V_ANY, ibstack_conn_shutdown, c); break;
    case 2: case 3: case 4: { /* send: copies, zero-copy, NULL */
        size_t len = chance(70) ? rn(3 * BUFSZ) : rand_size(BIG);
        if (len > BIG) len = chance(20) ? SIZE_MAX : BIG; /* more than any pool: bounded by the pool */
        const void *b = big;
        int zc = -1;
        if (chance(20) && nheld) { /* a held TX chunk of the stack's pool, sent without a copy */
            int h = (int)rn((uint32_t)nheld);
            if (!held[h].rx && mms[held[h].mm].stack && chunk_pool_live(&held[h])) {
                zc = h;
                b = ibstack_chunk_buffer(held[h].c);
                len = 1 + rn(BUFSZ);
            }
        }
        if (chance(4)) b = NULL, len = 1 + rn(10);
        long n = CNT(b && len <= PTRDIFF_MAX ? V_VALID : V_BAD, len > INT64_MAX ? INT64_MAX : (long)len, ibstack_conn_send, c, b, len);
        if (zc >= 0 && n > 0) held_drop(zc, 0);
        break;
    }
    case 5: case 6: case 7: {
        size_t len = chance(70) ? rn(3 * BUFSZ) : rand_size(BIG);
        if (len > BIG) len = BIG;
        void *b = chance(4) && len ? NULL : big;
        CNT(b || !len ? V_VALID : V_BAD, (long)len, ibstack_conn_recv, c, b, len);
        break;
    }
    case 8: {
        struct sockaddr_storage ss;
        struct sockaddr_storage *o = chance(10) ? NULL : &ss;
        if (chance(50)) ST(o ? V_VALID : V_BAD, ibstack_conn_peer_addr, c, o);
        else ST(o ? V_VALID : V_BAD, ibstack_conn_local_addr, c, o);
        break;
    }
    case 9: {
        size_t len = rn(2) ? sizeof pbuf : rn(20);
        seq_check_text("ibstack_conn_error_message", pbuf, len, (long)Z(V_ANY, ibstack_conn_error_message, c, pbuf, len));
        break;
    }
    default: CNT(V_VALID, 1, ibstack_conn_is_connected, c); break;
    }
}

/* ------------------------------------------------------------------ the vm sequence */

static void vm_teardown_world(void) {
    C.op = "teardown";
    /* held chunks go back where they came from while their pools are known */
    for (int k = 0; k < nheld; k++) {
        chunk_slot *h = &held[k];
        if (h->disp && ds[h->disp - 1].p) ST(V_VALID, ibstack_dispatcher_release_rx, ds[h->disp - 1].p, h->c);
        else if (!h->disp && chunk_pool_live(h)) {
            if (h->rx) ST(V_VALID, ibstack_mem_mgr_release_rx_chunk, mms[h->mm].p, h->c);
            else ST(V_VALID, ibstack_mem_mgr_return_tx, mms[h->mm].p, &h->c, 1);
        }
    }
    nheld = 0;
    nstale = stale_next = 0;
    /* everything else in random order */
    for (int round = 0; round < 1000 && live_n; round++) {
        int i = (int)rn((uint32_t)live_n);
        void *p = live_p[i];
        int t = live_t[i];
        switch (t) {
        case T_CONN:
            for (int k = 0; k < NCONN; k++)
                if (conns[k] == p) conns[k] = NULL;
            FREE(V_VALID, ibstack_conn_close, p);
            break;
        case T_LIS:
            for (int k = 0; k < NLIS; k++)
                if (lis[k] == p) lis[k] = NULL;
            FREE(V_VALID, ibstack_listener_free, p);
            break;
        case T_STACK: stack_poll_some(3); FREE(V_VALID, ibstack_stack_free, p); st = NULL; break;
        case T_QP:
            for (int k = 0; k < NQP; k++)
                if (qps[k].p == p) qps[k].p = NULL;
            FREE(V_VALID, ibstack_qp_free, p);
            break;
        case T_DISP:
            for (int k = 0; k < NDISP; k++)
                if (ds[k].p == p) disp_free_slot(k);
            continue;
        case T_CQ: {
            int borrowed = 0;
            for (int k = 0; k < NDISP; k++) borrowed |= ds[k].p && (ds[k].tx == p || ds[k].rx == p);
            if (borrowed) continue;
            for (int k = 0; k < NCQ; k++)
                if (cqs[k] == p) cqs[k] = NULL;
            FREE(V_VALID, ibstack_cq_free, p);
            break;
        }
        case T_MM:
            for (int k = 0; k < NMM; k++)
                if (mms[k].p == p) mms[k].p = NULL, mm_gen[k]++;
            FREE(V_VALID, ibstack_mem_mgr_free, p);
            break;
        case T_IB:
            for (int k = 0; k < NIB; k++)
                if (ibs[k] == p) ibs[k] = NULL;
            FREE(V_VALID, ibstack_ib_free, p);
            break;
        default: continue;
        }
        unreg(p);
    }
    if (live_n) seq_fail("model", "%d handles left live after the teardown", live_n);
    memset(mms, 0, sizeof mms);
    memset(ds, 0, sizeof ds);
    memset(qps, 0, sizeof qps);
    stacks_made = 0;
}

static void vm_sequence(void) {
    int steps = 60 + (int)rn(200);
    for (int i = 0; i < steps; i++) {
        switch (rn(24)) {
        case 0: ib_op(); break;
        case 1: mm_op(); break;
        case 2: case 3: chunk_get(); break;
        case 4: chunk_return(); break;
        case 5: chunk_release(); break;
        case 6: case 7: chunk_ops(); break;
        case 8: cq_op(); break;
        case 9: case 10: disp_op(); break;
        case 11: case 12: qp_op(); break;
        case 13: case 14: case 15: stack_op(); break;
        case 16: case 17: case 18: conn_op(); break;
        case 19: stack_poll_some(2); break;
        case 20: probe_live(); break;
        case 21: cfg_set(); break;
        default: probe_bad(); break;
        }
    }
    vm_teardown_world();
}

#endif
