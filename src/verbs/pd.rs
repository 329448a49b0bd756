//! Protection domain.

use super::{check_ret, Context};
use crate::sys::os_error;
use crate::error::Result;
use rdma_sys as sys;
use std::sync::Arc;

/// `struct ibv_pd`, keeping its device context alive.
pub struct Pd {
    pd: *mut sys::ibv_pd,
    ctx: Arc<Context>,
}

// SAFETY: libibverbs objects may be used from any thread.
unsafe impl Send for Pd {}
unsafe impl Sync for Pd {}

impl Pd {
    pub fn new(ctx: Arc<Context>) -> Result<Self> {
        // SAFETY: ctx is open. Returns NULL + errno.
        let pd = unsafe { sys::ibv_alloc_pd(ctx.as_ptr()) };
        if pd.is_null() {
            return Err(os_error("ibv_alloc_pd"));
        }
        Ok(Pd { pd, ctx })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ibv_pd {
        self.pd
    }

    /// The raw `struct ibv_pd *`, for the C escape hatch.
    pub fn raw(&self) -> *mut std::os::raw::c_void {
        self.pd.cast()
    }

    /// The kernel's handle of this PD (as `rdma resource show pd` lists it).
    pub fn handle(&self) -> u32 {
        // SAFETY: pd is live.
        unsafe { (*self.pd).handle }
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: pd was allocated by ibv_alloc_pd and is freed once. Returns errno value.
        if let Err(e) = check_ret("ibv_dealloc_pd", unsafe { sys::ibv_dealloc_pd(self.pd) }) {
            log::error!("{} (PD leaked; an MR or QP still uses it)", e.msg);
        }
    }
}
