//! Ceph's `Infiniband::MemoryManager`: the registered TX cluster and the
//! growable RX pool, with chunks of `ms_async_rdma_buffer_size` bytes.
//!
//! * `chunk` — a buffer and its cursors (Ceph's `Chunk`).
//! * `freelist` — the lock-free sharded free list both pools use.
//! * `tx` — one contiguous registered region (Ceph's `Cluster`).
//! * `rx` — blocks registered on demand up to the configured limit.
//! * `region` — anonymous / huge-page mappings.
//! * `registrar` — the registration seam (real PD or host test double).

pub mod chunk;
pub(crate) mod freelist;
pub mod region;
pub mod registrar;
pub mod rx;
pub mod tx;

pub use chunk::{Chunk, ChunkKind, ChunkRef};
pub use registrar::{HostRegistrar, Registrar, VerbsRegistrar};
pub use rx::RxPool;
pub use tx::TxCluster;

use crate::config::Config;
use crate::error::Result;
use std::sync::Arc;

/// Pool figures, as `ibstack_mem_mgr_stats` reports them (C name
/// `ibstack_mem_stats`; frozen layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemStats {
    /// Chunk capacity (ms_async_rdma_buffer_size).
    pub buffer_size: u64,
    /// TX chunks: all, free, handed out, and how often none was free.
    pub tx_total: u64,
    pub tx_free: u64,
    pub tx_in_use: u64,
    pub tx_exhausted: u64,
    /// RX buffers registered so far, free, handed out; the limit (0 = none).
    pub rx_allocated: u64,
    pub rx_free: u64,
    pub rx_in_use: u64,
    pub rx_limit: u64,
    /// RX registrations (blocks) and how often the limit stopped a request.
    pub rx_blocks: u64,
    pub rx_exhausted: u64,
    /// Bytes registered (pinned) by both pools, and how many are huge pages.
    pub bytes_pinned: u64,
    pub hugepage_bytes: u64,
    /// Memory registrations made, and failed RX registrations.
    pub registrations: u64,
    pub registration_failures: u64,
}

impl MemStats {
    pub fn to_json(&self) -> String {
        format!(
            "{{\"buffer_size\":{},\"tx_total\":{},\"tx_free\":{},\"tx_in_use\":{},\"tx_exhausted\":{},\
             \"rx_allocated\":{},\"rx_free\":{},\"rx_in_use\":{},\"rx_limit\":{},\"rx_blocks\":{},\
             \"rx_exhausted\":{},\"bytes_pinned\":{},\"hugepage_bytes\":{},\"registrations\":{},\
             \"registration_failures\":{}}}",
            self.buffer_size,
            self.tx_total,
            self.tx_free,
            self.tx_in_use,
            self.tx_exhausted,
            self.rx_allocated,
            self.rx_free,
            self.rx_in_use,
            self.rx_limit,
            self.rx_blocks,
            self.rx_exhausted,
            self.bytes_pinned,
            self.hugepage_bytes,
            self.registrations,
            self.registration_failures
        )
    }
}

pub struct MemoryManager {
    pub tx: TxCluster,
    pub rx: RxPool,
}

impl MemoryManager {
    /// Builds both pools: the TX cluster (`tx_count` chunks, registered now)
    /// and the RX pool (registered on first use).
    pub fn new(cfg: &Config, tx_count: u32, registrar: Arc<dyn Registrar>) -> Result<MemoryManager> {
        let bs = u32::try_from(cfg.buffer_size)
            .map_err(|_| crate::Error::inval(format!("ms_async_rdma_buffer_size {} is too large", cfg.buffer_size)))?;
        let tx = TxCluster::new(tx_count, bs, cfg.enable_hugepage, registrar.as_ref())?;
        let first = if cfg.rx_first_block == 0 {
            // Ceph's rule (≈1 GiB at the defaults)
            let q2 = cfg.receive_queue_len.saturating_mul(2);
            if cfg.receive_buffers > 0 { cfg.receive_buffers.min(q2) } else { q2 }
        } else {
            cfg.rx_first_block
        };
        let rx = RxPool::new(bs, cfg.receive_buffers, first, cfg.enable_hugepage, registrar);
        Ok(MemoryManager { tx, rx })
    }

    /// The chunk a completion's `wr_id` names, if it is a header of either
    /// pool (checked before anything is dereferenced).
    pub fn from_wr_id(&self, wr_id: u64) -> Option<ChunkRef> {
        self.tx.from_wr_id(wr_id).or_else(|| self.rx.from_wr_id(wr_id))
    }

    /// Both pools registered on `pd` with the verbs registrar: what
    /// ibstack_mem_mgr_new and the stack build.
    pub fn on_pd(cfg: &Config, tx_count: u32, pd: Arc<crate::verbs::Pd>) -> Result<MemoryManager> {
        MemoryManager::new(cfg, tx_count, Arc::new(VerbsRegistrar::new(pd)))
    }

    /// The chunk header at `p`, if `p` is one of this manager's TX or RX
    /// chunks (nothing is read at `p` to decide).
    pub fn chunk_at(&self, p: *const Chunk) -> Option<ChunkRef> {
        self.from_wr_id(p as usize as u64)
    }

    /// The TX chunks `ptrs` name, all checked first to be this cluster's
    /// chunks and handed out (not free): what a post of caller chunks needs.
    /// `-EINVAL` names the first bad entry; nothing is allocated.
    pub fn tx_in_use<'a>(&'a self, ptrs: &'a [*const Chunk]) -> Result<impl ExactSizeIterator<Item = ChunkRef> + Clone + 'a> {
        let id = |p: *const Chunk| self.tx.from_wr_id(p as usize as u64);
        if let Some(i) = ptrs.iter().position(|&p| !id(p).is_some_and(|c| c.is_in_use())) {
            return Err(crate::Error::inval(format!(
                "chunks[{i}] ({:p}) is not a TX chunk handed out by the pool",
                ptrs[i]
            )));
        }
        // The addresses were just found in the header array; that cannot change.
        Ok(ptrs.iter().map(move |&p| id(p).expect("checked above")))
    }

    pub fn stats(&self) -> MemStats {
        let tx_in_use = self.tx.in_use() as u64;
        let rx_in_use = self.rx.in_use() as u64;
        let (rx_bytes, rx_huge) = self.rx.bytes_registered();
        let tx_bytes = self.tx.region_len() as u64;
        MemStats {
            buffer_size: self.tx.buffer_size() as u64,
            tx_total: self.tx.total() as u64,
            tx_free: self.tx.total() as u64 - tx_in_use,
            tx_in_use,
            tx_exhausted: self.tx.exhausted_count(),
            rx_allocated: self.rx.allocated(),
            rx_free: self.rx.allocated() - rx_in_use,
            rx_in_use,
            rx_limit: self.rx.limit() as u64,
            rx_blocks: self.rx.block_count() as u64,
            rx_exhausted: self.rx.exhausted_count(),
            bytes_pinned: tx_bytes + rx_bytes,
            hugepage_bytes: rx_huge + if self.tx.is_huge() { tx_bytes } else { 0 },
            registrations: 1 + self.rx.block_count() as u64,
            registration_failures: self.rx.registration_failures(),
        }
    }
}

#[cfg(test)]
mod tests;
