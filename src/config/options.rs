//! The options: every option is declared here once, and nowhere else.
//!
//! Each entry gives the option's description, its Ceph name, the [`Config`]
//! field that holds it with the field's type, the default, the Ceph type and
//! the checks beyond the type's syntax; `declare.rs` describes the entry
//! syntax and what the `options!` macro generates from it. To add an option,
//! add an entry (Ceph's options first, in Ceph's order, then ibstack's own,
//! whose names start with `ibstack_` and whose descriptions with "ibstack
//! extension").

/// The upper bound of options stored in 32 bits.
const U32_MAX: u64 = u32::MAX as u64;
/// The reason given when such an option is out of range.
const WHY_U32: &str = "the value must fit in 32 bits";

options! {
    // --- Ceph 16.2.15 options (names, types and defaults as Ceph defines them)

    /// RDMA device to use (e.g. mlx5_0); empty = the first device found
    "ms_async_rdma_device_name" => device_name: String = "", Str;

    /// allocate the registered buffer pools from huge pages
    "ms_async_rdma_enable_hugepage" => enable_hugepage: bool = false, Bool;

    /// size of each registered send/receive buffer (chunk) in bytes
    "ms_async_rdma_buffer_size" => buffer_size: u64 = 131072, Size,
        range(1..=(1 << 30),
              "a registered buffer holds at least 1 byte and at most 1 GiB (1073741824)");

    /// number of registered send buffers
    "ms_async_rdma_send_buffers" => send_buffers: u32 = 1024, Uint,
        range(1..=U32_MAX, "at least one send buffer is needed");

    /// number of registered receive buffers
    "ms_async_rdma_receive_buffers" => receive_buffers: u32 = 32768, Uint,
        range(0..=U32_MAX, WHY_U32);

    /// depth of the (shared) receive queue
    "ms_async_rdma_receive_queue_len" => receive_queue_len: u32 = 4096, Uint,
        range(1..=U32_MAX, "a receive queue needs at least one entry");

    /// use a shared receive queue for all queue pairs
    "ms_async_rdma_support_srq" => support_srq: bool = true, Bool;

    /// device port to use (ports are numbered from 1)
    "ms_async_rdma_port_num" => port_num: u32 = 1, Uint,
        range(1..=255,
              "device ports are numbered from 1 (see ibv_devinfo) and the port number is 8 bits");

    /// busy-poll the completion queues this long before sleeping, in microseconds
    "ms_async_rdma_polling_us" => polling_us: u32 = 1000, Uint,
        range(0..=U32_MAX, WHY_U32);

    /// GID table index; selects e.g. a RoCEv1 or RoCEv2 GID
    "ms_async_rdma_gid_idx" => gid_idx: u32 = 0, Int,
        range(0..=65535,
              "a GID table index is 0 or more (Ceph would accept a negative index and fail later)");

    /// local GID to use instead of looking it up by index
    "ms_async_rdma_local_gid" => local_gid: String = "", Str;

    /// RoCE version used with RDMA-CM
    "ms_async_rdma_roce_ver" => roce_ver: u32 = 1, Int,
        range(0..=2, "the RoCE version is 0, 1 or 2");

    /// InfiniBand service level of the queue pairs
    "ms_async_rdma_sl" => sl: u8 = 3, Int,
        range(0..=15, "an InfiniBand service level has 4 bits");

    /// traffic class byte for RoCE (96 = DSCP 24)
    "ms_async_rdma_dscp" => dscp: u8 = 96, Int,
        range(0..=255, "it is the 8-bit traffic class byte (DSCP << 2; 96 = DSCP 24)");

    /// set up connections with RDMA-CM instead of the TCP handshake
    "ms_async_rdma_cm" => cm: bool = false, Bool;

    /// transport type: iwarp, or anything else for ib (as Ceph reads it)
    "ms_async_rdma_type" => rdma_type: String = "ib", Str;

    /// backlog of the listening socket used for the connection handshake
    "ms_tcp_listen_backlog" => tcp_listen_backlog: i32 = 512, Int,
        range((i32::MIN as i64)..=(i32::MAX as i64),
              "the value must fit in a 32-bit signed integer");

    // --- ibstack extensions (not Ceph options)

    /// ibstack extension: path MTU of the queue pairs (256, 512, 1024, 2048 or 4096)
    "ibstack_path_mtu" => path_mtu: u32 = 1024, Uint,
        range(0..=U32_MAX, WHY_U32),
        one_of([256, 512, 1024, 2048, 4096],
               "the InfiniBand path MTU sizes; note 4K means 4000 for a uint");

    /// ibstack extension: RX buffers registered in the first RX pool block (0 = Ceph's rule)
    "ibstack_rx_first_block" => rx_first_block: u32 = 256, Uint,
        range(0..=U32_MAX, WHY_U32);

    /// ibstack extension: number of destroyed queue pairs whose history is kept
    "ibstack_qp_history_len" => qp_history_len: u32 = 64, Uint,
        range(0..=U32_MAX, WHY_U32);

    /// ibstack extension: cap on in-flight TX chunks per connection (0 = half the TX pool)
    "ibstack_max_inflight_per_conn" => max_inflight_per_conn: u32 = 0, Uint,
        range(0..=U32_MAX, WHY_U32);

    /// ibstack extension: number of entries of each completion queue
    "ibstack_cq_depth" => cq_depth: u32 = 30000, Uint,
        range(1..=U32_MAX, "a completion queue needs at least one entry");

    /// ibstack extension: the stack runs its own polling thread (false = the host drives it via ibstack_stack_fd / ibstack_stack_poll)
    "ibstack_stack_thread" => stack_thread: bool = true, Bool;

    /// ibstack extension: RC retry count of the queue pairs (Ceph uses 7; rxe treats 7 as infinite, so a dead link is only reported with 6 or less)
    "ibstack_retry_cnt" => retry_cnt: u8 = 7, Uint,
        range(0..=7, "the RC retry count has 3 bits (7 = retry forever on some providers)");

    /// ibstack extension: TCP keepalive idle time of the handshake side channel, in seconds (0 = off); a peer host that vanishes is reported after about twice this
    "ibstack_tcp_keepalive" => tcp_keepalive: u32 = 30, Uint,
        range(0..=86400, "keepalive idle times are at most a day (86400 s)");

    /// ibstack extension: longest a stream connection's TCP connect and cm_meta handshake may take, in milliseconds (0 = no limit); a peer that stays silent or trickles is then failed with ETIMEDOUT naming the stage, freeing its QP and receive buffers
    "ibstack_handshake_timeout_ms" => handshake_timeout_ms: u32 = 5000, Uint,
        range(0..=U32_MAX, WHY_U32);

    /// ibstack extension: most received buffers one stream connection may hold unread (0 = auto: a quarter of ms_async_rdma_receive_buffers with per-QP receive queues, no cap with the SRQ). With per-QP receive queues a connection at the cap stops getting its receive queue refilled, so only its sender waits (RNR retries) until the application reads; the SRQ is shared, so there a connection past an explicit cap fails with ENOBUFS instead of taking the pool from the others
    "ibstack_max_rx_per_conn" => max_rx_per_conn: u32 = 0, Uint,
        range(0..=U32_MAX, WHY_U32);

    /// ibstack extension: transparent mode (LD_PRELOAD=libibstack_preload.so, IBSTACK_PRELOAD=rdma): the TCP ports whose listeners and outgoing connections become RDMA, as a comma-separated list of ports and ranges (default: Ceph's mon ports and ms_bind_port_min..ms_bind_port_max)
    "ibstack_preload_ports" => preload_ports: String = "3300,6789,6800-7300", Str;

    /// ibstack extension: transparent mode: a converted listener also serves clients that speak Ceph's TCP messenger (their banner comes first) as plain TCP, so posix daemons keep working during a rolling migration
    "ibstack_preload_accept_tcp" => preload_accept_tcp: bool = true, Bool;

    /// ibstack extension: transparent mode: a converted connection whose peer answers with Ceph's TCP banner (a posix daemon) reconnects over plain TCP and carries on
    "ibstack_preload_fallback" => preload_fallback: bool = true, Bool;

    /// ibstack extension: how a connection picks its GID: index (Ceph's way: ms_async_rdma_gid_idx for every connection) or auto (per connection, the RoCE v2 GID whose address is the local address of the connection's TCP side channel, so no host needs its own gid_idx; on an InfiniBand port auto uses ms_async_rdma_gid_idx)
    "ibstack_gid_select" => gid_select: String = "index", Str,
        one_of(["index", "auto"]);

    /// ibstack extension: write coalescing: a write smaller than a buffer, made while this connection has SENDs in flight, is appended to one pending buffer that is posted as one SEND when everything in flight was acknowledged or the buffer fills (as TCP's Nagle rule; a write with nothing in flight is posted at once, so ping-pong latency is unchanged); the byte stream the peer reads is the same
    "ibstack_tx_coalesce" => tx_coalesce: bool = true, Bool;

    /// ibstack extension: largest SEND, in bytes, posted with IBV_SEND_INLINE (the payload is copied into the work request, so the device does not read the buffer by DMA; saves a PCIe round trip on small messages). Queue pairs ask the device for this much inline data; a device that refuses it gets queue pairs without inline (logged at info), never a failed connection. 0 = never inline
    "ibstack_max_inline" => max_inline: u32 = 128, Uint,
        range(0..=1024, "inline data is for small messages: at most 1024 bytes (devices support a few hundred)");
}
