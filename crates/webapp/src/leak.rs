//! The deliberate memory leak: every `GET /` keeps a freshly written buffer forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Non-zero, so the allocator cannot hand back lazily mapped zero pages: every
/// page is written and counts towards RSS (and the cgroup memory limit).
const FILL: u8 = 0xA5;

/// Buffers that are never freed. Shared by all requests of one app; tests that
/// run several apps in one process get one `Leak` each.
#[derive(Debug)]
pub struct Leak {
    bytes_per_request: usize,
    buffers: Mutex<Vec<Box<[u8]>>>,
    total: AtomicU64,
}

impl Leak {
    pub fn new(bytes_per_request: usize) -> Self {
        Self {
            bytes_per_request,
            buffers: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
        }
    }

    /// Allocates, writes and keeps one buffer; returns the total leaked so far.
    pub fn leak_once(&self) -> u64 {
        let n = self.bytes_per_request;
        if n == 0 {
            return self.total();
        }
        // Fill outside the lock: writing 1 MiB is the slow part.
        let buffer = vec![FILL; n].into_boxed_slice();
        self.buffers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(buffer);
        self.total.fetch_add(n as u64, Ordering::Relaxed) + n as u64
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn bytes_per_request(&self) -> usize {
        self.bytes_per_request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_buffer_written() {
        let leak = Leak::new(4096 * 3 + 7);
        assert_eq!(leak.leak_once(), 12295);
        assert_eq!(leak.leak_once(), 2 * 12295);
        let buffers = leak.buffers.lock().unwrap();
        assert_eq!(buffers.len(), 2);
        assert!(buffers.iter().flat_map(|b| b.iter()).all(|&b| b == FILL));
    }

    #[test]
    fn zero_bytes_leaks_nothing() {
        let leak = Leak::new(0);
        assert_eq!(leak.leak_once(), 0);
        assert_eq!(leak.total(), 0);
        assert!(leak.buffers.lock().unwrap().is_empty());
    }
}
