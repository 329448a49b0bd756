//! Memory the pools register: anonymous mappings, optionally backed by 2 MiB
//! huge pages (ms_async_rdma_enable_hugepage), falling back to normal pages
//! with a warning when none are reserved.

use crate::error::{Error, Result};
use memmap2::{MmapMut, MmapOptions};

pub const HUGE_PAGE: usize = 2 << 20;

pub struct Region {
    map: MmapMut,
    huge: bool,
}

impl Region {
    /// Maps at least `len` bytes (rounded up to 2 MiB for huge pages).
    pub fn new(len: usize, want_huge: bool) -> Result<Region> {
        if want_huge {
            let rounded = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            match MmapOptions::new().len(rounded).huge(Some(21)).populate().map_anon() {
                Ok(map) => return Ok(Region { map, huge: true }),
                Err(e) => log::warn!(
                    "ms_async_rdma_enable_hugepage: no 2 MiB huge pages for {rounded} bytes ({e}); using normal pages \
                     (reserve some with 'sysctl vm.nr_hugepages=N')"
                ),
            }
        }
        let map = MmapOptions::new().len(len.max(1)).map_anon().map_err(|e| {
            Error::new(e.raw_os_error().unwrap_or(libc::ENOMEM), format!("mmap of {len} bytes failed: {e}"))
        })?;
        Ok(Region { map, huge: false })
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn is_huge(&self) -> bool {
        self.huge
    }
}
