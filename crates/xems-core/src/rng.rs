//! Randomness for tokens, nonces and keys.
//!
//! Tokens come from a ChaCha20 generator per thread, seeded from the
//! operating system's CSPRNG (`getrandom(2)`) and reseeded from it after
//! every 64 KiB of output, with the full 20 rounds and fast key erasure
//! (see `Generator`). This is how OpenSSL, Go's
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

use rand::SeedableRng;
use rand::rngs::OsRng;
use rand_chacha::ChaCha20Core;
use rand_chacha::rand_core::block::BlockRngCore;
use zeroize::Zeroize;

/// Output after which the generator takes a fresh seed from the kernel.
const RESEED_AFTER: u64 = 64 * 1024;

/// Bytes of each ChaCha20 output batch that become the next key.
const KEY_BYTES: usize = 32;

/// A ChaCha20 generator with fast key erasure (Bernstein, "Fast-key-erasure
/// random-number generators", 2017): each batch of output starts with the
/// key of the next batch, so the state in memory never lets anyone recompute
/// bytes already handed out; and handed-out bytes are zeroed in the buffer.
/// A memory dump of the process therefore reveals no token minted before
/// it (a plain ChaCha20 stream with its key in memory would reveal every
/// token since the last reseed).
struct Generator {
    core: ChaCha20Core,
    buf: <ChaCha20Core as BlockRngCore>::Results,
    /// Next unread byte of `buf` (as bytes); `buf` is used up at its length.
    pos: usize,
    /// Bytes handed out since the last seed from the kernel.
    since_reseed: u64,
}

impl Generator {
    fn new() -> Self {
        let core = ChaCha20Core::try_from_rng(&mut OsRng).expect("the operating system's random generator failed");
        let buf = Default::default();
        let mut g = Generator { core, buf, pos: 0, since_reseed: 0 };
        g.pos = g.len();
        g
    }

    fn len(&self) -> usize {
        self.buf.as_ref().len() * 4
    }

    fn refill(&mut self) {
        if self.since_reseed >= RESEED_AFTER {
            self.core = ChaCha20Core::try_from_rng(&mut OsRng).expect("the operating system's random generator failed");
            self.since_reseed = 0;
        }
        self.core.generate(&mut self.buf);
        let mut key = [0u8; KEY_BYTES];
        for (chunk, word) in key.chunks_exact_mut(4).zip(self.buf.as_mut()) {
            chunk.copy_from_slice(&word.to_le_bytes());
            *word = 0;
        }
        // Overwrites the old key in place.
        self.core = ChaCha20Core::from_seed(key);
        key.zeroize();
        self.pos = KEY_BYTES;
    }

    fn fill(&mut self, dest: &mut [u8]) {
        let mut done = 0;
        while done < dest.len() {
            if self.pos == self.len() {
                self.refill();
            }
            let words = self.buf.as_mut();
            let (w, b) = (self.pos / 4, self.pos % 4);
            if b == 0 && dest.len() - done >= 4 {
                // Whole words at once (the common case: tokens take 32
                // bytes from a word boundary), each zeroed once handed out.
                let k = ((dest.len() - done) / 4).min(words.len() - w);
                for (chunk, word) in dest[done..done + 4 * k].chunks_exact_mut(4).zip(&words[w..w + k]) {
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
                words[w..w + k].zeroize();
                done += 4 * k;
                self.pos += 4 * k;
                continue;
            }
            let mut bytes = words[w].to_le_bytes();
            let n = (4 - b).min(dest.len() - done);
            dest[done..done + n].copy_from_slice(&bytes[b..b + n]);
            bytes[b..b + n].fill(0);
            words[w] = u32::from_le_bytes(bytes);
            bytes.zeroize();
            done += n;
            self.pos += n;
        }
        self.since_reseed += dest.len() as u64;
    }
}

thread_local! {
    static RNG: RefCell<Generator> = RefCell::new(Generator::new());
}

/// Fills `dest` from the per-thread ChaCha20 generator.
pub(crate) fn fill(dest: &mut [u8]) {
    RNG.with(|rng| rng.borrow_mut().fill(dest));
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
        xems_testkit::logs::capture();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut b = [0u8; 32];
            fill(&mut b);
            assert!(seen.insert(b), "a 32-byte draw repeated");
        }
    }

    #[test]
    fn handed_out_bytes_leave_no_trace_in_the_generator() {
        xems_testkit::logs::capture();
        let mut g = Generator::new();
        let mut a = [0u8; 32];
        g.fill(&mut a);
        let mut b = [0u8; 7];
        g.fill(&mut b);
        // Everything before `pos` is zero: handed out, or the next key.
        let used: Vec<u8> = g.buf.as_ref().iter().flat_map(|w| w.to_le_bytes()).take(g.pos).collect();
        assert_eq!(g.pos, KEY_BYTES + 39);
        assert!(used.iter().all(|&x| x == 0));
        assert_ne!(a, [0u8; 32]);
        // Many batches, odd sizes, with reseeds.
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let mut d = vec![0u8; 16 + i % 40];
            g.fill(&mut d);
            assert!(seen.insert(d));
        }
    }

    #[test]
    fn whole_words_and_single_bytes_give_the_same_stream() {
        xems_testkit::logs::capture();
        let seeded = || {
            let mut g = Generator::new();
            g.core = ChaCha20Core::from_seed([7; 32]);
            g.pos = g.len();
            g
        };
        let (mut words, mut bytes) = (seeded(), seeded());
        let mut a = vec![0u8; 1000];
        for chunk in a.chunks_mut(40) {
            words.fill(chunk);
        }
        let mut b = vec![0u8; 1000];
        for byte in b.chunks_mut(1) {
            bytes.fill(byte);
        }
        assert_eq!(a, b);
    }

    #[test]
    fn threads_draw_different_streams() {
        xems_testkit::logs::capture();
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
