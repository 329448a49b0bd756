//! Memory registration.

use super::{check_ret, Pd};
use crate::sys::os_error;
use crate::error::Result;
use rdma_sys as sys;
use std::sync::Arc;

/// A registered memory region (`struct ibv_mr`), keeping its PD alive.
pub struct Mr {
    mr: *mut sys::ibv_mr,
    _pd: Arc<Pd>,
}

// SAFETY: libibverbs objects may be used from any thread.
unsafe impl Send for Mr {}
unsafe impl Sync for Mr {}

impl Mr {
    /// Registers `len` bytes at `addr` with LOCAL_WRITE only (Ceph also
    /// asked for REMOTE_WRITE, which its SEND-only protocol never uses: no
    /// rkey of ours lets a peer write into our buffers).
    ///
    /// # Safety
    /// `addr..addr+len` must stay mapped for the life of the returned `Mr`.
    pub unsafe fn register(pd: Arc<Pd>, addr: *mut u8, len: usize) -> Result<Mr> {
        let access = sys::ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0;
        // SAFETY: pd is live; the caller keeps the range mapped. Returns NULL + errno.
        let mr = unsafe { sys::ibv_reg_mr(pd.as_ptr(), addr.cast(), len, access as i32) };
        if mr.is_null() {
            return Err(os_error(&format!("ibv_reg_mr({len} bytes)")));
        }
        Ok(Mr { mr, _pd: pd })
    }

    pub fn lkey(&self) -> u32 {
        // SAFETY: mr is live.
        unsafe { (*self.mr).lkey }
    }

    pub fn rkey(&self) -> u32 {
        // SAFETY: mr is live.
        unsafe { (*self.mr).rkey }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: registered once, deregistered once. Returns an errno value.
        if let Err(e) = check_ret("ibv_dereg_mr", unsafe { sys::ibv_dereg_mr(self.mr) }) {
            log::error!("{} (registration leaked)", e.msg);
        }
    }
}
