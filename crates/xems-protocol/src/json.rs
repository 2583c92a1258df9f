//! The JSON string kernels of the hot path: writing a string escaped as
//! `serde_json` escapes it, and reading one back.
//!
//! A session value is usually JSON text itself, so it has a `"` every few
//! bytes: the cost of both directions is per escape, not per byte. Both
//! kernels work eight bytes at a time with exact marks (every byte to
//! escape, and only those), write whole eight-byte words into space made
//! ahead of time, and step the write position back over what was not
//! meant; no `memcpy` call and no capacity check per run. Property tests
//! hold both to `serde_json`, byte for byte.

use std::borrow::Cow;

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `x`, and nothing else (no borrow runs
/// between bytes: `(b & 0x7F) + 0x7F` never carries out of its byte).
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x) & HIGH
}

/// The high bit of each control byte (below 0x20) of `w`.
fn controls(w: u64) -> u64 {
    !(((w & LOW7) + ONES * 0x60) | w) & HIGH
}

/// The high bit of each byte of `w` that a JSON string cannot hold raw:
/// control bytes (below 0x20), `"` and `\`. Exact, so every mark of a word
/// can be handled without looking at the word again.
fn marks(w: u64) -> u64 {
    controls(w) | zero_bytes(w ^ (ONES * u64::from(b'"'))) | zero_bytes(w ^ (ONES * u64::from(b'\\')))
}

/// The byte index of the lowest mark.
fn first(marks: u64) -> usize {
    (marks.trailing_zeros() / 8) as usize
}

fn word(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..at + 8).map(|w| u64::from_le_bytes(w.try_into().expect("eight bytes")))
}

/// How `serde_json` escapes each byte: 0 for none, `u` for `\u00XX`, else
/// the letter after the backslash.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Room a step of the writer may use past its position: a word of eight
/// bytes that all escape to six, plus the eight-byte store after them.
const ROOM: usize = 8 * 6 + 8;

/// Writes byte `b` at `out[0..]`, escaped if it must be; returns its length.
fn put(out: &mut [u8], b: u8) -> usize {
    if ESCAPE[usize::from(b)] == 0 {
        out[0] = b;
        1
    } else {
        put_escaped(out, b)
    }
}

/// Writes the escape of a byte that has one: two bytes (`\"`, `\n`, ...),
/// or six for the other control bytes (`\u00XX`).
fn put_escaped(out: &mut [u8], b: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[usize::from(b)] {
        b'u' => {
            out[..6].copy_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
            6
        }
        e => {
            out[..2].copy_from_slice(&[b'\\', e]);
            2
        }
    }
}

/// Appends `text` as a JSON string, quotes included, escaped exactly as
/// `serde_json` escapes it.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    let mut at = out.len();
    // Space is zero-filled ahead of the write position and cut back at the
    // end; a value without escapes needs the first fill only.
    out.resize(at + text.len() + ROOM, 0);
    let mut i = 0;
    while let Some(w) = word(text, i) {
        if out.len() < at + ROOM {
            out.resize(at + (text.len() - i) + ROOM * 2, 0);
        }
        let mut m = marks(w);
        // `from`: the first byte of the word not yet placed.
        let mut from = 0;
        if controls(w) == 0 {
            // Only `"` and `\`, the escapes of JSON text: each is itself
            // after a backslash, so the backslash goes in and the byte is
            // placed with the rest of the word (no table lookup, no branch
            // on the kind of escape).
            while m != 0 {
                let k = first(m);
                out[at..at + 8].copy_from_slice(&(w >> (8 * from)).to_le_bytes());
                at += k - from;
                out[at] = b'\\';
                at += 1;
                from = k;
                m &= m - 1;
            }
        } else {
            while m != 0 {
                let k = first(m);
                out[at..at + 8].copy_from_slice(&(w >> (8 * from)).to_le_bytes());
                at += k - from;
                at += put_escaped(&mut out[at..], text[i + k]);
                from = k + 1;
                m &= m - 1;
            }
        }
        if from < 8 {
            out[at..at + 8].copy_from_slice(&(w >> (8 * from)).to_le_bytes());
            at += 8 - from;
        }
        i += 8;
    }
    if out.len() < at + ROOM {
        out.resize(at + ROOM, 0);
    }
    for &b in &text[i..] {
        at += put(&mut out[at..], b);
    }
    out.truncate(at);
    out.push(b'"');
}

/// What each byte after a backslash stands for; 0 where the escape is not
/// one this fast path reads (`\u`, or invalid).
const UNESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    t[b'b' as usize] = 0x08;
    t[b'f' as usize] = 0x0C;
    t[b'n' as usize] = b'\n';
    t[b'r' as usize] = b'\r';
    t[b't' as usize] = b'\t';
    t
};

/// The byte an escape letter stands for.
fn unescaped(letter: u8) -> Option<u8> {
    Some(UNESCAPE[usize::from(letter)]).filter(|&b| b != 0)
}

/// Reads the JSON string whose opening quote is `bytes[open]`: its content
/// (borrowed when it has no escapes) and the index just past its closing
/// quote. `None` for what this fast path leaves to `serde_json`: `\u`
/// escapes, invalid escapes, raw control bytes and a missing closing quote.
/// The content of valid UTF-8 input is valid UTF-8: only ASCII escapes are
/// replaced, by ASCII bytes. The escaped case is a separate function, so
/// this one stays small enough to inline.
#[inline]
pub(crate) fn read_str(bytes: &[u8], open: usize) -> Option<(Cow<'_, [u8]>, usize)> {
    let start = open + 1;
    let i = next_mark(bytes, start)?;
    if bytes[i] == b'"' {
        return Some((Cow::Borrowed(&bytes[start..i]), i + 1));
    }
    unescape(bytes, start, i)
}

/// A string's content as [`read_text`] finds it.
pub(crate) enum Text<'a> {
    /// Its escaped text, exactly as `serde_json` would write its content
    /// (the value's JSON form: it can be copied into an answer as is).
    Json(&'a [u8]),
    /// Its content, unescaped: the line wrote it otherwise (`\/`, a `\u`
    /// escape `serde_json` would not write, uppercase hex).
    Raw(Cow<'a, [u8]>),
}

/// Reads the JSON string whose opening quote is `bytes[open]`, as
/// [`read_str`] does, but keeps its escaped text when every escape in it is
/// the one `serde_json` writes for that character; otherwise unescapes it.
/// `None` where [`read_str`] gives up.
pub(crate) fn read_text(bytes: &[u8], open: usize) -> Option<(Text<'_>, usize)> {
    let start = open + 1;
    let mut i = start;
    // A word at a time, every mark of a word handled from the one load (as
    // in `unescape`): a session value has an escape every few bytes.
    'words: while let Some(w) = word(bytes, i) {
        if plain_text16(bytes, i) {
            i += 16;
            continue;
        }
        let mut m = marks(w);
        // JSON text's usual word: each escape a `\"` whole inside it (every
        // quote right after a backslash, every backslash right before a
        // quote, none in the last byte). Checked on the whole word, with
        // no branch per escape.
        let backslashes = zero_bytes(w ^ (ONES * u64::from(b'\\')));
        if controls(w) == 0 && m & !backslashes == backslashes << 8 && backslashes >> 63 == 0 {
            i += 8;
            continue;
        }
        while m != 0 {
            let k = first(m);
            match bytes[i + k] {
                b'"' => return Some((Text::Json(&bytes[start..i + k]), i + k + 1)),
                b'\\' => {
                    let Some(len) = canonical_escape(bytes, i + k) else { break 'words };
                    let next = k + len;
                    if next >= 8 {
                        i += next;
                        continue 'words;
                    }
                    // The escaped bytes' marks go with the backslash's.
                    m &= !0 << (8 * next);
                }
                _ => break 'words,
            }
        }
        i += 8;
    }
    // Fewer than eight bytes left, or an escape the JSON form does not use.
    loop {
        match *bytes.get(i)? {
            b'"' => return Some((Text::Json(&bytes[start..i]), i + 1)),
            b'\\' => match canonical_escape(bytes, i) {
                Some(len) => i += len,
                None => break,
            },
            b if b < 0x20 => break,
            _ => i += 1,
        }
    }
    let (content, after) = read_str(bytes, open)?;
    Some((Text::Raw(content), after))
}

/// Whether the sixteen bytes at `bytes[at..]` are JSON text whose escapes
/// are all `\"` whole inside them (the word test of [`read_text`], sixteen
/// bytes at once with SSE2: one compare per kind of byte instead of the
/// eight-byte arithmetic). `false` when there are not sixteen bytes, or off
/// x86-64 (the word test then does all the work).
#[inline]
fn plain_text16(bytes: &[u8], at: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use safe_arch::{
            cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
        };
        let Some(chunk) = bytes.get(at..at + 16) else { return false };
        let v = load_unaligned_m128i(chunk.try_into().expect("sixteen bytes"));
        let mask = |m| move_mask_i8_m128i(m) as u32;
        let quotes = mask(cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'"' as i8)));
        let backslashes = mask(cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'\\' as i8)));
        // A control byte is one that `min(b, 0x1F)` leaves unchanged.
        let controls = mask(cmp_eq_mask_i8_m128i(min_u8_m128i(v, set_splat_i8_m128i(0x1F)), v));
        controls == 0 && quotes == (backslashes << 1) & 0xFFFF && backslashes & 0x8000 == 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (bytes, at);
        false
    }
}

/// The length of the escape at `bytes[i]` (a backslash) when it is the one
/// [`write_str`] writes for its character (`put_escaped` is the
/// definition: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u00xx` in lowercase
/// hex for the other control bytes).
fn canonical_escape(bytes: &[u8], i: usize) -> Option<usize> {
    let byte = match *bytes.get(i + 1)? {
        b'u' => {
            let hex = std::str::from_utf8(bytes.get(i + 2..i + 6)?).ok()?;
            u8::try_from(u32::from_str_radix(hex, 16).ok()?).ok()?
        }
        letter => unescaped(letter)?,
    };
    if ESCAPE[usize::from(byte)] == 0 {
        return None;
    }
    let mut canonical = [0u8; 6];
    let len = put_escaped(&mut canonical, byte);
    (bytes.get(i..i + len)? == &canonical[..len]).then_some(len)
}

/// The most an escaped string's first buffer holds beyond what precedes
/// its first escape; it grows from there.
const FIRST_ROOM: usize = 4096;

/// Room one step of [`unescape`] may write past its position: a word's
/// stores reach at most 15 bytes ahead (and the tail at most 7).
const STEP_ROOM: usize = 16;

/// The rest of [`read_str`] for a string with an escape at `bytes[i]`.
#[inline(never)]
fn unescape(bytes: &[u8], start: usize, mut i: usize) -> Option<(Cow<'_, [u8]>, usize)> {
    // Escaped. The buffer holds what was read so far and a little more,
    // and doubles (wiping the old block) when a step might not fit: sized by the rest of the line
    // instead, a 16 MiB line with an escape in each of its fields would
    // allocate (and zero) 16 MiB per field. Not `vec![0; n]`: glibc's
    // `calloc` bypasses its per-thread cache (a library does not know the
    // allocator it runs on).
    let prefix = i - start;
    let first_room = prefix + (bytes.len() - i).min(FIRST_ROOM) + STEP_ROOM;
    #[expect(clippy::slow_vector_initialization, reason = "calloc bypasses glibc's thread cache (above)")]
    let mut out = {
        let mut out = Vec::with_capacity(first_room);
        out.resize(first_room, 0);
        out
    };
    out[..prefix].copy_from_slice(&bytes[start..i]);
    let mut at = prefix;
    let done = |mut out: Vec<u8>, at, after| {
        out.truncate(at);
        Some((Cow::Owned(out), after))
    };
    // Doubles the zero-filled buffer, wiping the block it leaves (it holds
    // the plaintext read so far).
    let grow = |out: &mut Vec<u8>| {
        let len = out.len() * 2;
        crate::wipe::reallocate(out, len);
        out.resize(len, 0);
    };
    // A word at a time: store it whole, then step `at` back over what is
    // not content, handling every mark of the word from the one load.
    while let Some(w) = word(bytes, i) {
        if out.len() < at + STEP_ROOM {
            grow(&mut out);
        }
        let mut m = marks(w);
        // `from`: the first byte of the word not yet read.
        let mut from = 0;
        loop {
            out[at..at + 8].copy_from_slice(&(w >> (8 * from)).to_le_bytes());
            if m == 0 {
                at += 8 - from;
                from = 8;
                break;
            }
            let k = first(m);
            at += k - from;
            match bytes[i + k] {
                b'"' => return done(out, at, i + k + 1),
                b'\\' => {}
                _ => return None,
            }
            out[at] = unescaped(*bytes.get(i + k + 1)?)?;
            at += 1;
            from = k + 2;
            if from >= 8 {
                break;
            }
            // The backslash's mark, and the escaped byte's if it has one.
            m &= !(0xFFFF << (8 * k));
        }
        i += from;
    }
    // Fewer than eight bytes left.
    if out.len() < at + STEP_ROOM {
        grow(&mut out);
    }
    loop {
        match *bytes.get(i)? {
            b'"' => return done(out, at, i + 1),
            b'\\' => {
                out[at] = unescaped(*bytes.get(i + 1)?)?;
                i += 2;
            }
            b if b < 0x20 => return None,
            b => {
                out[at] = b;
                i += 1;
            }
        }
        at += 1;
    }
}

/// The index of the first byte at or after `i` that a string cannot hold
/// raw (its end, an escape, or an error), if there is one.
#[inline]
fn next_mark(bytes: &[u8], mut i: usize) -> Option<usize> {
    while let Some(w) = word(bytes, i) {
        let m = marks(w);
        if m != 0 {
            return Some(i + first(m));
        }
        i += 8;
    }
    bytes[i..].iter().position(|&b| ESCAPE[usize::from(b)] != 0).map(|k| i + k)
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Strings dense in what must be escaped, at every alignment and length.
    pub(crate) fn dense_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('x'),
                    Just('\u{7f}'),
                    Just('é'),
                    Just('\u{1F600}'),
                    (0u8..0x20).prop_map(char::from)
                ],
                0..40
            )
            .prop_map(|v| v.into_iter().collect()),
        ]
    }

    /// `text` written after `prefix` bytes reads exactly as `serde_json`
    /// writes it there.
    fn writes_as_serde(text: &str, prefix: usize) -> Result<(), TestCaseError> {
        let mut out = vec![b'.'; prefix];
        write_str(&mut out, text.as_bytes());
        let mut expected = vec![b'.'; prefix];
        serde_json::to_writer(&mut expected, text).unwrap();
        prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap());
        Ok(())
    }

    proptest! {
        #[test]
        fn marks_are_exact(w in any::<u64>()) {
            let expected = w.to_le_bytes().iter().enumerate().fold(0u64, |acc, (k, &b)| {
                if ESCAPE[usize::from(b)] != 0 { acc | 0x80 << (8 * k) } else { acc }
            });
            prop_assert_eq!(marks(w), expected);
        }

        #[test]
        fn writes_what_serde_writes(text in dense_text(), prefix in 0usize..9) {
            writes_as_serde(&text, prefix)?;
        }

        /// JSON text (quotes and backslashes, no control bytes): every word
        /// takes the backslash-only path, at every alignment.
        #[test]
        fn writes_json_text_as_serde_does(
            text in proptest::collection::vec(prop_oneof![Just('"'), Just('\\'), Just('x'), Just('é')], 0..80)
                .prop_map(|v| v.into_iter().collect::<String>()),
            prefix in 0usize..9,
        ) {
            writes_as_serde(&text, prefix)?;
        }

        /// What serde_json writes reads back as the same text, followed by
        /// anything; what this kernel accepts, serde_json reads the same.
        #[test]
        fn reads_what_serde_reads(text in dense_text(), tail in "[ ,}x\"]{0,12}") {
            let mut line = serde_json::to_vec(&text).unwrap();
            let end = line.len();
            line.extend_from_slice(tail.as_bytes());
            match read_str(&line, 0) {
                Some((content, after)) => {
                    prop_assert_eq!(after, end);
                    prop_assert_eq!(&content[..], text.as_bytes());
                }
                // Only `\u` escapes are left to serde_json.
                None => prop_assert!(text.bytes().any(|b| ESCAPE[usize::from(b)] == b'u')),
            }
        }

        /// What serde_json writes is kept in its JSON form, at every
        /// alignment, followed by anything; the same text with an escape
        /// serde_json would not write (`\/`, uppercase hex, `\u` for a
        /// letter) is unescaped to the same content (or, for `\u`, left to
        /// serde_json).
        #[test]
        fn keeps_what_serde_writes_in_its_json_form(
            text in dense_text(),
            prefix in 0usize..9,
            tail in "[ ,}x\"]{0,12}",
            other in prop_oneof![Just(r"\/"), Just(r"\u001F"), Just(r"\u0041")],
        ) {
            let mut line = vec![b' '; prefix];
            serde_json::to_writer(&mut line, &text).unwrap();
            let end = line.len();
            line.extend_from_slice(tail.as_bytes());
            let Some((Text::Json(kept), after)) = read_text(&line, prefix) else {
                return Err(TestCaseError::fail("not kept in its JSON form"));
            };
            prop_assert_eq!(after, end);
            prop_assert_eq!(kept, &line[prefix + 1..end - 1]);

            line.truncate(end - 1);
            line.extend_from_slice(other.as_bytes());
            line.push(b'"');
            match read_text(&line, prefix) {
                Some((Text::Raw(content), after)) => {
                    prop_assert_eq!(after, line.len());
                    let expected: String = serde_json::from_slice(&line[prefix..]).unwrap();
                    prop_assert_eq!(&content[..], expected.as_bytes());
                }
                Some((Text::Json(_), _)) => prop_assert!(false, "an escape serde_json does not write was kept"),
                // As `read_str`, `\u` escapes are left to serde_json.
                None => prop_assert!(line.windows(2).any(|w| w == br"\u")),
            }
        }

        #[test]
        fn reading_arbitrary_bytes_agrees_with_serde(body in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), Just(b'n'), Just(b'u'), Just(b'/'), Just(b'a'), Just(0x01u8)], 0..30)) {
            let mut line = vec![b'"'];
            line.extend_from_slice(&body);
            if let Some((content, after)) = read_str(&line, 0) {
                let theirs: String = serde_json::from_slice(&line[..after]).unwrap();
                prop_assert_eq!(&content[..], theirs.as_bytes());
            }
        }

        /// The same for `read_text`, over runs long enough for its
        /// sixteen-byte test, and what it keeps in the JSON form is what
        /// serde_json writes for what it reads.
        #[test]
        fn reading_arbitrary_text_agrees_with_serde(body in proptest::collection::vec(
            prop_oneof![4 => Just(&b"\\\""[..]), 4 => Just(&b"abcdefg"[..]), 1 => Just(&b"\""[..]),
                        1 => Just(&b"\\"[..]), 1 => Just(&b"\\n"[..]), 1 => Just(&b"\x01"[..]),
                        1 => Just(&b"\\u0001"[..]), 1 => Just(&b"\\/"[..]), 1 => Just(&b"\xc3\xa9"[..])],
            0..40)) {
            let mut line = vec![b'"'];
            line.extend(body.concat());
            line.push(b'"');
            // The first string of the line, as serde_json reads it.
            let theirs = serde_json::Deserializer::from_slice(&line).into_iter::<String>().next().and_then(Result::ok);
            match read_text(&line, 0) {
                Some((Text::Json(kept), after)) => {
                    let theirs = theirs.expect("serde_json reads it too");
                    prop_assert_eq!(&line[..after], serde_json::to_vec(&theirs).unwrap());
                    prop_assert_eq!(kept, &line[1..after - 1]);
                }
                Some((Text::Raw(content), _)) => {
                    prop_assert_eq!(Some(&content[..]), theirs.as_ref().map(String::as_bytes));
                }
                // Given up on: `\u` escapes go to serde_json; the rest it refuses.
                None => prop_assert!(theirs.is_none() || line.windows(2).any(|w| w == br"\u")),
            }
        }
    }

    /// An escaped string's buffer follows its own length, not the line's.
    #[test]
    fn an_escaped_string_does_not_allocate_the_rest_of_the_line() {
        let mut line = br#""a\"b" "#.to_vec();
        line.extend(std::iter::repeat_n(b'x', 1 << 20));
        let (content, after) = read_str(&line, 0).unwrap();
        assert_eq!(&content[..], b"a\"b");
        assert_eq!(after, 6);
        let Cow::Owned(buf) = content else { panic!("escaped content is owned") };
        assert!(buf.capacity() <= 2 * FIRST_ROOM, "capacity {}", buf.capacity());
        // A long escaped string still reads whole, growing as it goes.
        let text: String = (0..100_000).map(|n| if n % 7 == 0 { '"' } else { 'v' }).collect();
        let line = serde_json::to_vec(&text).unwrap();
        let (content, _) = read_str(&line, 0).unwrap();
        assert_eq!(&content[..], text.as_bytes());
    }

    #[test]
    fn borrowed_without_escapes() {
        let line = br#""plain text, long enough for two words" tail"#;
        let (content, after) = read_str(line, 0).unwrap();
        assert!(matches!(content, Cow::Borrowed(_)));
        assert_eq!(&line[after..], b" tail");
        assert!(read_str(br#""unterminated"#, 0).is_none());
        assert!(read_str(br#""bad \x escape""#, 0).is_none());
        assert!(read_str(b"\"raw \x01 control\"", 0).is_none());
    }
}
