//! Growing a buffer that holds plaintext (request lines, unescaped values)
//! without leaving a copy behind: a plain `Vec` growth frees the old block
//! with its contents.

use zeroize::Zeroize;

/// Moves the contents of `buf` to a new allocation of `capacity` bytes
/// (at least its length) and zeroes the old one before it is freed.
pub(crate) fn reallocate(buf: &mut Vec<u8>, capacity: usize) {
    let mut grown = Vec::with_capacity(capacity.max(buf.len()));
    grown.extend_from_slice(buf);
    let mut old = std::mem::replace(buf, grown);
    old.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_move_to_the_new_capacity() {
        let mut buf = b"secret".to_vec();
        reallocate(&mut buf, 100);
        assert_eq!(buf, b"secret");
        assert!(buf.capacity() >= 100);
        reallocate(&mut buf, 1);
        assert_eq!(buf, b"secret", "never shorter than the contents");
    }
}
