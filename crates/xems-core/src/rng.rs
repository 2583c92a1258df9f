//! Randomness for tokens, nonces and keys.
//!
//! Tokens come from a ChaCha20 generator per thread, seeded from the
//! operating system's CSPRNG (`getrandom(2)`) and reseeded from it after
//! every 64 KiB of output: rand's `ReseedingRng`, the construction of
//! `rand::ThreadRng`, with the full 20 rounds. This is how OpenSSL, Go's
//! `crypto/rand` and BoringSSL serve random bytes: asking the kernel for 32
//! bytes per token costs a system call and the kernel's own ChaCha20, about
//! 0.12 to 0.5 µs here, a tenth of a whole rotation (see `xems-bench --
//! crypto`), while a userspace ChaCha20 block costs nanoseconds.
//!
//! Long-term keys (`MasterSecret::generate`, the engine's per-process salt)
//! come straight from the kernel.
//!
//! # Security
//!
//! A process that `fork`s without `exec` duplicates the generator's state in
//! the child; do not fork a process that holds a store (no supported
//! deployment does).

use std::cell::RefCell;

use rand::RngCore;
use rand::rngs::{OsRng, ReseedingRng};
use rand_chacha::ChaCha20Core;

/// Output after which the generator takes a fresh seed from the kernel.
const RESEED_AFTER: u64 = 64 * 1024;

thread_local! {
    static RNG: RefCell<ReseedingRng<ChaCha20Core, OsRng>> = RefCell::new(
        ReseedingRng::new(RESEED_AFTER, OsRng).expect("the operating system's random generator failed"),
    );
}

/// Fills `dest` from the per-thread ChaCha20 generator.
pub(crate) fn fill(dest: &mut [u8]) {
    RNG.with(|rng| rng.borrow_mut().fill_bytes(dest));
}

/// Fills `dest` straight from the OS CSPRNG.
pub(crate) fn fill_os(dest: &mut [u8]) {
    // The kernel generator does not fail once the system is booted; if it
    // ever does, continuing with predictable keys would be far worse.
    getrandom::fill(dest).expect("the operating system's random generator failed");
}

/// Fills `dest` with random bytes from the per-thread CSPRNG (for nonces,
/// ids and routing bytes in other xems crates).
pub fn random_bytes(dest: &mut [u8]) {
    fill(dest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut b = [0u8; 32];
            fill(&mut b);
            assert!(seen.insert(b), "a 32-byte draw repeated");
        }
    }

    #[test]
    fn threads_draw_different_streams() {
        let draw = || {
            let mut b = [0u8; 32];
            fill(&mut b);
            b
        };
        let here = draw();
        let there = std::thread::spawn(draw).join().unwrap();
        assert_ne!(here, there);
    }
}
