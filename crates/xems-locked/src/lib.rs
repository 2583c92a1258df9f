//! Memory for key material: pinned in RAM (never written to swap) and left
//! out of core dumps, where the operating system allows it.
//!
//! This crate is the one place in xems with `unsafe` code (every other crate
//! forbids it through the workspace lints): locking a memory
//! range and advising the kernel about it takes a raw address, and a range
//! that can be locked on its own needs an allocation of whole pages. Each
//! block below states why it is sound.
//!
//! Locking can fail (an unprivileged process has a small `RLIMIT_MEMLOCK`);
//! then the value still works, unlocked, and one warning is logged for the
//! process: refusing to start would be worse than running unlocked.
//!
//! # Security
//!
//! Moving a value into [`Locked::new`] may leave a copy of it on the stack
//! of the caller; stack memory is reused quickly, but it is not zeroized.

#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroize;

/// Pages of 4 KiB: the granularity of `mlock` on every platform we run on.
/// (Locking rounds to whole pages anyway; a larger real page size only
/// locks neighbours too.)
const PAGE: usize = 4096;

static WARNED: AtomicBool = AtomicBool::new(false);

/// A value in its own locked, non-dumpable pages, zeroized when dropped.
///
/// ```
/// use xems_locked::Locked;
///
/// let key = Locked::new([7u8; 32]);
/// assert_eq!(key[0], 7);
/// ```
pub struct Locked<T> {
    ptr: NonNull<T>,
    layout: Layout,
    locked: bool,
}

// SAFETY: `Locked<T>` owns its `T` exclusively (like `Box<T>`), so it may
// cross threads exactly when `T` may.
unsafe impl<T: Send> Send for Locked<T> {}
// SAFETY: `&Locked<T>` only gives out `&T`.
unsafe impl<T: Sync> Sync for Locked<T> {}

impl<T> Locked<T> {
    /// Moves `value` into freshly allocated pages, locks them and excludes
    /// them from core dumps.
    pub fn new(value: T) -> Self {
        let size = std::mem::size_of::<T>().max(1).next_multiple_of(PAGE);
        let align = std::mem::align_of::<T>().max(PAGE);
        let layout = Layout::from_size_align(size, align).expect("a page-rounded layout is valid");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else { alloc::handle_alloc_error(layout) };
        // SAFETY: `ptr` is a fresh allocation, aligned and large enough for
        // a `T`, which we initialise exactly once here.
        unsafe { ptr.as_ptr().write(value) };
        // SAFETY: `raw..raw + size` is one live allocation owned by this
        // value; locking and advising it does not touch its contents.
        let locked = unsafe { rustix::mm::mlock(raw.cast(), size) }.is_ok();
        // SAFETY: as above. A failure only means the pages may be dumped.
        let _ = unsafe { rustix::mm::madvise(raw.cast(), size, rustix::mm::Advice::LinuxDontDump) };
        if !locked && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "could not lock key material in memory (RLIMIT_MEMLOCK too small? raise it with `ulimit -l` or \
                 systemd LimitMEMLOCK=); running on, but keys may be swapped to disk"
            );
        }
        Locked { ptr, layout, locked }
    }

    /// Whether the pages are locked in memory.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl<T> Deref for Locked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `ptr` points at the `T` written in `new`, alive until
        // `drop`; we only hand out shared references.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for Locked<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: `ptr` points at the `T` written in `new`, alive until
        // `drop`; `&mut self` proves this is the only reference, as with
        // `Box<T>`.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for Locked<T> {
    fn drop(&mut self) {
        let raw = self.ptr.as_ptr().cast::<u8>();
        // SAFETY: the `T` is initialised and dropped exactly once, here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        // SAFETY: the whole allocation is ours and no longer holds a live
        // `T`; wiping it as bytes is sound.
        unsafe { std::slice::from_raw_parts_mut(raw, self.layout.size()) }.zeroize();
        if self.locked {
            // SAFETY: the range was locked in `new`.
            let _ = unsafe { rustix::mm::munlock(raw.cast(), self.layout.size()) };
        }
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(raw, self.layout) };
    }
}

impl<T> fmt::Debug for Locked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Locked(<redacted>, locked: {})", self.locked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_and_drops_values() {
        xems_testkit::logs::capture();
        let v = Locked::new(vec![1u8, 2, 3]);
        assert_eq!(&v[..], &[1, 2, 3]);
        let big = Locked::new([9u8; 10_000]);
        assert_eq!(big[9_999], 9);
        let tiny = Locked::new(());
        let _ = &*tiny;
        assert!(format!("{v:?}").contains("redacted"));
    }

    #[test]
    fn pages_are_locked_when_the_limit_allows() {
        xems_testkit::logs::capture();
        let v = Locked::new([1u8; 32]);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
        // One page fits any limit of four pages or more (Linux's default for
        // unprivileged users is 16 pages; root's is usually larger).
        let roomy = limit.is_none_or(|c| c >= 4 * PAGE as u64);
        assert_eq!(v.is_locked(), roomy, "limit {limit:?}");
    }
}
