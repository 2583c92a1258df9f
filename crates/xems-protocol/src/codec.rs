//! Splitting a byte stream into lines, with a hard cap on line length.
//!
//! The splitter never holds more than `max + one read` bytes for a line: once a
//! line grows past the cap, its bytes are counted and dropped until its
//! newline arrives, and the line is reported as [`Frame::TooLong`] so the
//! server still answers it with exactly one response (the host matches
//! responses by order).

use zeroize::Zeroize;

/// The default longest line: 16 MiB (a 10 MiB value, escaped, fits).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// One unit of input: a complete line, or a line that was too long.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A line without its `\n` (and without a trailing `\r`).
    Line(&'a [u8]),
    /// A line longer than the cap; its bytes were dropped.
    TooLong {
        /// Its length in bytes (without the newline).
        len: usize,
    },
}

/// A sans-I/O line splitter: feed bytes with [`extend`](Self::extend), take
/// frames with [`next_frame`](Self::next_frame), and at end of input take the
/// unterminated tail with [`finish`](Self::finish).
///
/// ```
/// use xems_protocol::{Frame, LineBuffer};
///
/// let mut lines = LineBuffer::new(8);
/// lines.extend(b"{\"a\":1}\r\n0123456789\nhal");
/// assert_eq!(lines.next_frame(), Some(Frame::Line(b"{\"a\":1}")));
/// assert_eq!(lines.next_frame(), Some(Frame::TooLong { len: 10 }));
/// assert_eq!(lines.next_frame(), None);
/// assert_eq!(lines.finish(), Some(Frame::Line(b"hal")));
/// ```
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Start of the current (unreturned) line in `buf`.
    start: usize,
    /// Bytes before this offset are known to hold no newline.
    scanned: usize,
    max: usize,
    /// Bytes of an over-long line dropped so far, when discarding.
    discarded: Option<usize>,
}

impl LineBuffer {
    /// A splitter refusing lines longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        LineBuffer { buf: Vec::new(), start: 0, scanned: 0, max, discarded: None }
    }

    /// The line-length cap.
    pub fn max_line(&self) -> usize {
        self.max
    }

    /// Appends input bytes.
    ///
    /// Lines hold tokens and values in plaintext, so no byte of a line is
    /// left behind: returned lines are zeroed when dropped from the buffer,
    /// and growing the buffer zeroes the old allocation (a plain `Vec`
    /// growth would free it with its contents).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read the next input into, for a reader that appends
    /// into a `Vec`'s spare capacity (tokio's `read_buf`), which saves
    /// reading into a separate buffer and copying (and wiping) it.
    ///
    /// Lines already returned are dropped first (their bytes zeroed), and
    /// at least `spare` bytes of capacity are free past the buffered input,
    /// so the read need not grow the `Vec` (a growth there would free the
    /// old block unwiped); the capacity is not written, so an idle
    /// connection holds only the pages its traffic touched. Append only:
    /// what is written past the current end is the new input, and nothing
    /// before it may change.
    ///
    /// ```
    /// use xems_protocol::{Frame, LineBuffer};
    ///
    /// let mut lines = LineBuffer::new(64);
    /// lines.input(16).extend_from_slice(b"{\"action\":\"ping\"}\n");
    /// assert_eq!(lines.next_frame(), Some(Frame::Line(b"{\"action\":\"ping\"}")));
    /// ```
    pub fn input(&mut self, spare: usize) -> &mut Vec<u8> {
        self.make_room(spare.max(1));
        &mut self.buf
    }

    /// Drops the lines already returned (zeroing the bytes they vacate) and
    /// makes room for `additional` more bytes, growing by reallocation.
    fn make_room(&mut self, additional: usize) {
        self.discard_overlong();
        if self.start > 0 {
            // Only the partial line is moved.
            let keep = self.buf.len() - self.start;
            self.buf.copy_within(self.start.., 0);
            self.buf[keep..].zeroize();
            self.buf.truncate(keep);
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < additional {
            let wanted = (self.buf.len() + additional).max(self.buf.capacity() * 2);
            self.reallocate(wanted);
        }
    }

    /// Moves the contents to a new allocation of `capacity` bytes and zeroes
    /// the old one.
    fn reallocate(&mut self, capacity: usize) {
        crate::wipe::reallocate(&mut self.buf, capacity);
    }

    /// Whether a partial line (or a discarded over-long one) is pending.
    pub fn has_partial(&self) -> bool {
        self.buf.len() > self.start || self.discarded.is_some()
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        match step(&self.buf, &mut self.start, &mut self.scanned, &mut self.discarded) {
            Some(span) => Some(span.frame(&self.buf, self.max)),
            None => {
                self.discard_overlong();
                None
            }
        }
    }

    /// Every complete frame buffered, one by one, all borrowed at once: a
    /// batch of requests decoded from them can borrow their text (see
    /// [`Secret`](crate::Secret)) until it is answered. A partial line
    /// longer than the cap is dropped at the next [`input`](Self::input)
    /// or [`extend`](Self::extend).
    ///
    /// ```
    /// use xems_protocol::{Frame, LineBuffer};
    ///
    /// let mut lines = LineBuffer::new(64);
    /// lines.extend(b"one\ntwo\nthr");
    /// let frames: Vec<Frame<'_>> = lines.frames().collect();
    /// assert_eq!(frames, [Frame::Line(b"one"), Frame::Line(b"two")]);
    /// ```
    pub fn frames(&mut self) -> Frames<'_> {
        let LineBuffer { buf, start, scanned, max, discarded } = self;
        Frames { buf, start, scanned, max: *max, discarded }
    }

    /// Drops the bytes of a partial line longer than the cap (counting
    /// them), so a line without a newline never holds more than the cap
    /// plus one read.
    fn discard_overlong(&mut self) {
        let partial = self.buf.len() - self.start;
        if partial > self.max && self.scanned == self.buf.len() {
            *self.discarded.get_or_insert(0) += partial;
            self.buf[self.start..].zeroize();
            self.buf.truncate(self.start);
            self.scanned = self.start;
            if self.buf.capacity() > 64 * 1024 {
                self.reallocate(self.buf.len().max(64 * 1024));
            }
        }
    }

    /// At end of input: the unterminated last line, if any.
    pub fn finish(&mut self) -> Option<Frame<'_>> {
        let (start, end) = (self.start, self.buf.len());
        self.start = end;
        self.scanned = end;
        if let Some(dropped) = self.discarded.take() {
            return Some(Frame::TooLong { len: dropped + (end - start) });
        }
        if start == end {
            return None;
        }
        Some(self.frame(start, end))
    }

    fn frame(&self, start: usize, end: usize) -> Frame<'_> {
        frame_of(&self.buf, start, end, self.max)
    }
}

/// The frame of `buf[start..end]` (a line without its `\n`).
fn frame_of(buf: &[u8], start: usize, end: usize, max: usize) -> Frame<'_> {
    let mut line = &buf[start..end];
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    if line.len() > max { Frame::TooLong { len: line.len() } } else { Frame::Line(line) }
}

/// Where the next frame is.
enum Span {
    /// `buf[start..end]`.
    Line(usize, usize),
    /// A line of this many bytes, dropped.
    TooLong(usize),
}

impl Span {
    fn frame(self, buf: &[u8], max: usize) -> Frame<'_> {
        match self {
            Span::Line(start, end) => frame_of(buf, start, end, max),
            Span::TooLong(len) => Frame::TooLong { len },
        }
    }
}

/// Steps over the next complete frame of `buf`, if there is one.
fn step(buf: &[u8], start: &mut usize, scanned: &mut usize, discarded: &mut Option<usize>) -> Option<Span> {
    let Some(pos) = memchr::memchr(b'\n', &buf[*scanned..]) else {
        *scanned = buf.len();
        return None;
    };
    let end = *scanned + pos;
    let line_start = *start;
    *start = end + 1;
    *scanned = end + 1;
    Some(match discarded.take() {
        Some(dropped) => Span::TooLong(dropped + (end - line_start)),
        None => Span::Line(line_start, end),
    })
}

/// The complete frames of a [`LineBuffer`], from [`LineBuffer::frames`].
#[derive(Debug)]
pub struct Frames<'a> {
    buf: &'a [u8],
    start: &'a mut usize,
    scanned: &'a mut usize,
    max: usize,
    discarded: &'a mut Option<usize>,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        let buf: &'a [u8] = self.buf;
        step(buf, self.start, self.scanned, self.discarded).map(|span| span.frame(buf, self.max))
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        // The whole capacity: returned lines and partial ones.
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, usize>> {
        let mut lb = LineBuffer::new(max);
        let mut out = Vec::new();
        let mut take = |f: Frame<'_>| match f {
            Frame::Line(l) => out.push(Ok(l.to_vec())),
            Frame::TooLong { len } => out.push(Err(len)),
        };
        for c in chunks {
            lb.extend(c);
            while let Some(f) = lb.next_frame() {
                take(f);
            }
        }
        if let Some(f) = lb.finish() {
            take(f);
        }
        out
    }

    #[test]
    fn splits_across_chunks() {
        let got = collect(100, &[b"ab", b"c\nd", b"e\n\n", b"f"]);
        assert_eq!(got, vec![Ok(b"abc".to_vec()), Ok(b"de".to_vec()), Ok(vec![]), Ok(b"f".to_vec())]);
    }

    #[test]
    fn over_long_lines_are_dropped_and_counted() {
        let big = [b'x'; 50];
        let got = collect(10, &[&big[..20], &big[20..], b"\nok\n"]);
        assert_eq!(got, vec![Err(50), Ok(b"ok".to_vec())]);
        // An over-long line in one chunk, and one cut by end of input.
        let got = collect(3, &[b"abcdef\nabc\nabcd"]);
        assert_eq!(got, vec![Err(6), Ok(b"abc".to_vec()), Err(4)]);
    }

    #[test]
    fn memory_stays_bounded_while_discarding() {
        let mut lb = LineBuffer::new(1024);
        let chunk = vec![b'y'; 64 * 1024];
        for _ in 0..100 {
            lb.extend(&chunk);
            assert!(lb.next_frame().is_none());
            assert!(lb.buf.len() <= 64 * 1024);
        }
        lb.extend(b"\n");
        assert_eq!(lb.next_frame(), Some(Frame::TooLong { len: 100 * 64 * 1024 }));
    }

    /// `frames` gives what `next_frame` gives, however the input is cut,
    /// over-long lines included, and memory stays bounded the same way.
    #[test]
    fn frames_are_next_frame_all_borrowed_at_once() {
        let data: &[u8] = b"one\ntwo\r\n\nthree-is-too-long\nfour-and-more-and-more\nfive\nsix";
        for step in 1..data.len() {
            let chunks: Vec<&[u8]> = data.chunks(step).collect();
            let mut lb = LineBuffer::new(10);
            let mut got = Vec::new();
            for c in &chunks {
                lb.input(c.len()).extend_from_slice(c);
                let frames: Vec<Frame<'_>> = lb.frames().collect();
                got.extend(frames.iter().map(|f| match f {
                    Frame::Line(l) => Ok(l.to_vec()),
                    Frame::TooLong { len } => Err(*len),
                }));
                assert!(lb.buf.len() <= 10 + 2 * step, "step {step}: bounded");
            }
            got.extend(lb.finish().map(|f| match f {
                Frame::Line(l) => Ok(l.to_vec()),
                Frame::TooLong { len } => Err(len),
            }));
            assert_eq!(got, collect(10, &chunks), "step {step}");
        }
    }

    /// Reading through `input` gives the frames `extend` gives, and keeps
    /// the spare room it promised.
    #[test]
    fn input_is_extend_without_the_copy() {
        let data: &[u8] = b"one\ntwo\r\n\nthree-is-too-long\nfour";
        for step in 1..data.len() {
            let mut lb = LineBuffer::new(10);
            let mut got = Vec::new();
            for part in data.chunks(step) {
                let buf = lb.input(step);
                assert!(buf.capacity() - buf.len() >= step);
                let cap = buf.capacity();
                buf.extend_from_slice(part);
                assert_eq!(buf.capacity(), cap, "the read fits the room made");
                while let Some(f) = lb.next_frame() {
                    got.push(format!("{f:?}"));
                }
            }
            got.extend(lb.finish().map(|f| format!("{f:?}")));
            let mut via_extend = Vec::new();
            for r in collect(10, &data.chunks(step).collect::<Vec<_>>()) {
                via_extend.push(match r {
                    Ok(l) => format!("{:?}", Frame::Line(&l)),
                    Err(len) => format!("{:?}", Frame::TooLong { len }),
                });
            }
            assert_eq!(got, via_extend, "step {step}");
        }
    }

    #[test]
    fn crlf_is_accepted() {
        assert_eq!(collect(10, &[b"a\r\n"]), vec![Ok(b"a".to_vec())]);
    }
}
