//! Randomness for tokens and keys, from the operating system's CSPRNG.
//!
//! Asking the kernel for 32 bytes per token costs a system call (about half
//! a microsecond here), more than the rest of a rotation. So each thread reads
//! the OS generator in 1 KiB batches and hands the bytes out once each,
//! zeroing them as they leave the buffer: every token is still 256 bits
//! straight from `getrandom(2)`, and no byte is ever handed out twice.
//!
//! # Security
//!
//! A process that `fork`s without `exec` duplicates this buffer in the child;
//! do not fork a process that holds a store (no supported deployment does).

use std::cell::RefCell;

use zeroize::Zeroize;

const BATCH: usize = 1024;

struct Batch {
    bytes: [u8; BATCH],
    /// Bytes before `pos` have been handed out (and zeroed).
    pos: usize,
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

thread_local! {
    static BATCH_BUF: RefCell<Batch> = const { RefCell::new(Batch { bytes: [0; BATCH], pos: BATCH }) };
}

/// Fills `dest` with bytes from the OS CSPRNG, through the per-thread batch.
pub(crate) fn fill(dest: &mut [u8]) {
    if dest.len() > BATCH / 4 {
        return fill_os(dest);
    }
    BATCH_BUF.with(|cell| {
        let mut batch = cell.borrow_mut();
        if BATCH - batch.pos < dest.len() {
            fill_os(&mut batch.bytes);
            batch.pos = 0;
        }
        let start = batch.pos;
        let end = start + dest.len();
        dest.copy_from_slice(&batch.bytes[start..end]);
        batch.bytes[start..end].zeroize();
        batch.pos = end;
    });
}

/// Fills `dest` straight from the OS CSPRNG.
pub(crate) fn fill_os(dest: &mut [u8]) {
    // The kernel generator does not fail once the system is booted; if it
    // ever does, continuing with predictable tokens would be far worse.
    getrandom::fill(dest).expect("the operating system's random generator failed");
}

/// Fills `dest` with random bytes from the OS CSPRNG (for nonces, ids and
/// keys in other xems crates).
pub fn random_bytes(dest: &mut [u8]) {
    fill(dest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut b = [0u8; 32];
            fill(&mut b);
            assert!(seen.insert(b), "a 32-byte draw repeated");
        }
    }
}
