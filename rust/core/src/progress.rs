//! Progress counters and cancellation shared between Rust workers and the polling caller.
//! Workers only touch atomics; the calling thread polls them (and Python's signals) every ~100 ms.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Progress {
    /// Input bytes consumed, and their total (known once inputs are listed).
    pub bytes: AtomicU64,
    pub total_bytes: AtomicU64,
    pub documents: AtomicU64,
    pub tokens: AtomicU64,
    pub instances: AtomicU64,
    /// Current stage: 0 = tokenize, 1 = instances, 2 = done.
    pub stage: AtomicU64,
    cancel: AtomicBool,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
