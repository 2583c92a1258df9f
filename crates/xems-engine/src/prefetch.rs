//! Cache prefetch hints.
//!
//! A lookup in a large store is a chain of dependent cache misses (record,
//! then its sealed value and side record), each ~100-150 ns on a server.
//! Where the engine knows an address before it needs the bytes (the slot a
//! token names, before the token's keyed digest is computed; a record's
//! parts, before a successor token is minted), it asks the CPU to start the
//! fetch so the miss overlaps that computation instead of following it.
//! A hint changes no result, only when the bytes arrive.

/// Starts fetching the cache line holding the start of `value` (taking the
/// reference reads nothing: `&slice[i]` is only address arithmetic).
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_t0(value);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The most of a byte string [`prefetch_bytes`] asks for: a session value's
/// first lines; the hardware prefetcher follows a longer sequential read.
const MAX_LINES: usize = 8;

/// Starts fetching the cache lines of `bytes` (the first 512 bytes of a
/// longer slice). One address per 64 bytes from the start misses the last
/// line whenever the slice does not start on a line boundary, so its last
/// byte is asked for too.
#[inline]
pub(crate) fn prefetch_bytes(bytes: &[u8]) {
    for b in bytes.iter().step_by(64).take(MAX_LINES) {
        prefetch(b);
    }
    if let Some(last) = bytes.get(..MAX_LINES * 64).and_then(<[u8]>::last) {
        prefetch(last);
    }
}
