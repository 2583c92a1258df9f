//! A slab of records addressed by `u32` slots, grown in fixed chunks.
//!
//! Chunks instead of one `Vec`: a doubling `Vec` can hold twice the memory
//! it needs right after it grows, which at a million sessions costs more
//! than the index itself. A chunk never moves once allocated.

const CHUNK: usize = 512;
const NIL: u32 = u32::MAX;

enum Entry<T> {
    Occupied(T),
    Vacant(u32),
}

pub(crate) struct Slab<T> {
    chunks: Vec<Vec<Entry<T>>>,
    free: u32,
    len: usize,
    /// Entries were placed at chosen slots (restore): the free list must be
    /// rebuilt before the next insert.
    free_dirty: bool,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { chunks: Vec::new(), free: NIL, len: 0, free_dirty: false }
    }

    fn capacity_slots(&self) -> usize {
        self.chunks.len().saturating_sub(1) * CHUNK + self.chunks.last().map_or(0, Vec::len)
    }

    /// Links every vacant entry into the free list again.
    fn rebuild_free_list(&mut self) {
        let mut free = NIL;
        for (c, chunk) in self.chunks.iter_mut().enumerate().rev() {
            for (i, e) in chunk.iter_mut().enumerate().rev() {
                if let Entry::Vacant(next) = e {
                    *next = free;
                    free = (c * CHUNK + i) as u32;
                }
            }
        }
        self.free = free;
        self.free_dirty = false;
    }

    /// The slot the next [`insert`](Self::insert) will return.
    pub(crate) fn vacant(&mut self) -> u32 {
        if self.free_dirty {
            self.rebuild_free_list();
        }
        if self.free != NIL {
            return self.free;
        }
        match self.chunks.last() {
            Some(c) if c.len() < CHUNK => ((self.chunks.len() - 1) * CHUNK + c.len()) as u32,
            _ => (self.chunks.len() * CHUNK) as u32,
        }
    }

    /// Stores `value` at `slot` (restore), growing the slab with vacant
    /// entries as needed. `false` if the slot is taken.
    pub(crate) fn place(&mut self, slot: u32, value: T) -> bool {
        let target = slot as usize;
        if target >= (u32::MAX >> 1) as usize {
            return false;
        }
        while self.capacity_slots() <= target {
            if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                self.chunks.push(Vec::with_capacity(CHUNK));
            }
            self.chunks.last_mut().expect("just ensured a chunk").push(Entry::Vacant(NIL));
        }
        let entry = self.entry_mut(slot).expect("grown to hold the slot");
        if matches!(entry, Entry::Occupied(_)) {
            return false;
        }
        *entry = Entry::Occupied(value);
        self.len += 1;
        self.free_dirty = true;
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn entry(&self, slot: u32) -> Option<&Entry<T>> {
        let i = slot as usize;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn entry_mut(&mut self, slot: u32) -> Option<&mut Entry<T>> {
        let i = slot as usize;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// Starts fetching the entry at `slot` into the cache (see
    /// [`crate::prefetch`]); nothing if the slot was never allocated. The
    /// next entry's start is fetched too: an entry that straddles two cache
    /// lines usually ends in the line where the next one begins.
    pub(crate) fn prefetch(&self, slot: u32) {
        let (c, i) = (slot as usize / CHUNK, slot as usize % CHUNK);
        if let Some(chunk) = self.chunks.get(c) {
            for e in chunk.get(i..).unwrap_or_default().iter().take(2) {
                crate::prefetch::prefetch(e);
            }
        }
    }

    pub(crate) fn get(&self, slot: u32) -> Option<&T> {
        match self.entry(slot)? {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant(_) => None,
        }
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        match self.entry_mut(slot)? {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant(_) => None,
        }
    }

    /// Stores `value` and returns its slot. Slots below `u32::MAX >> 1` only:
    /// the top bit tags alias slots in the shard's index.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        if self.free_dirty {
            self.rebuild_free_list();
        }
        self.len += 1;
        if self.free != NIL {
            let slot = self.free;
            let entry = self.entry_mut(slot).expect("free list points into the slab");
            let Entry::Vacant(next) = *entry else { unreachable!("free list points at a vacant entry") };
            *entry = Entry::Occupied(value);
            self.free = next;
            return slot;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let chunk = self.chunks.last_mut().expect("just ensured a chunk");
        let slot = n * CHUNK + chunk.len();
        assert!(slot < (u32::MAX >> 1) as usize, "a shard holds at most 2^31 records");
        chunk.push(Entry::Occupied(value));
        slot as u32
    }

    pub(crate) fn remove(&mut self, slot: u32) -> Option<T> {
        if self.free_dirty {
            self.rebuild_free_list();
        }
        let free = self.free;
        let entry = self.entry_mut(slot)?;
        if matches!(entry, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(v) = std::mem::replace(entry, Entry::Vacant(free)) else { unreachable!() };
        self.free = slot;
        self.len -= 1;
        Some(v)
    }

    /// Occupied slots, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks.iter().flatten().enumerate().filter_map(|(i, e)| match e {
            Entry::Occupied(v) => Some((i as u32, v)),
            Entry::Vacant(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_slots_and_tracks_len() {
        xems_testkit::logs::capture();
        let mut s = Slab::new();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.len(), 2);
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(a), None);
        let c = s.insert("c");
        assert_eq!(c, a, "freed slot is reused");
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.len(), 2);
        for i in 0..2000 {
            s.insert(if i % 2 == 0 { "x" } else { "y" });
        }
        assert_eq!(s.len(), 2002);
        assert_eq!(s.get(9999), None);
    }

    #[test]
    fn prefetch_accepts_any_slot() {
        xems_testkit::logs::capture();
        let mut s = Slab::new();
        s.prefetch(0);
        for i in 0..CHUNK + 1 {
            s.insert(i);
        }
        // The last entry of a chunk (no next entry in it), the only entry
        // of the last chunk, slots never allocated and the "no slot" mark.
        for slot in [CHUNK as u32 - 1, CHUNK as u32, CHUNK as u32 + 1, 9999, NIL] {
            s.prefetch(slot);
        }
        assert_eq!(s.get(CHUNK as u32), Some(&CHUNK), "a hint changes nothing");
    }
}
