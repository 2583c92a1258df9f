//! Frame plaintexts: journal links and changes, snapshot blocks and ends.
//!
//! ```text
//! plaintext = type (1 byte) || body
//!
//! journal frames (frame 0 is always a link):
//!   0x01 link    varint previous segment's frame count (0 for the first segment)
//!   0x02 change  op (1) || sandbox (len u8, 1..=64 bytes) || varint family || op body
//!     op 1 put      route u8 || varint slot || key [16] || caller u8 || varint version || varint created_at
//!                   || varint idle_deadline || varint abs_deadline || varint idle_ttl_ms
//!                   || subject || value
//!     op 2 replace  varint version || varint idle_deadline || varint abs_deadline
//!                   || varint idle_ttl_ms || subject || value
//!     op 3 touch    varint idle_deadline || varint idle_ttl_ms
//!     op 4 rotate   old key [16] || old caller u8 || varint grace_until || new key [16] || varint token_born
//!                   || current
//!     op 5 remove   (nothing)
//!   subject = 0x00 | 0x01 [16]          value = varint len || bytes
//!   current = 0x00 | 0x01 token (len u8 || bytes) || varint until
//!   (journal times are absolute: ms since the UNIX epoch)
//!
//! snapshot frames (frames 0..n-1 are blocks, frame n is the end):
//!   0x10 block   sandbox (len u8 || bytes) || varint count || image*count
//!   0x11 end     varint images || varint blocks
//!   image = flags u8 (bit 0 subject, bit 1 retired, bit 2 current, bit 3 caller key)
//!           || varint family || route u8 || varint slot || key [16] || varint version
//!           || zz(base - created_at) || zz(token_born - created_at)
//!           || zz(idle_deadline - base) || zz(abs_deadline - created_at - 432000000)
//!           || varint idle_ttl_ms
//!           || [subject [16]] || [varint n || n * (key [16] || caller u8 || zz(grace_until - base))]
//!           || [token (len u8 || bytes) || zz(until - base)]
//!           || varint value len || value
//!   zz(x) = signed varint, zigzag; base = the snapshot header's time
//! ```

use xems_core::Token;
use xems_engine::{Change, Image, Put, RetiredKey};
use zeroize::Zeroizing;

use crate::format::{Cursor, varint};

/// Frame types.
pub(crate) const LINK: u8 = 0x01;
pub(crate) const CHANGE: u8 = 0x02;
pub(crate) const BLOCK: u8 = 0x10;
pub(crate) const END: u8 = 0x11;

const OP_PUT: u8 = 1;
const OP_REPLACE: u8 = 2;
const OP_TOUCH: u8 = 3;
const OP_ROTATE: u8 = 4;
const OP_REMOVE: u8 = 5;

/// The absolute lifetime cap, ms: absolute deadlines are stored relative to
/// `created_at + ABS`, which is 0 for almost every record.
const ABS: u64 = 432_000_000;

fn put_sandbox(buf: &mut Vec<u8>, sandbox: &str) {
    let b = sandbox.as_bytes();
    // Sandbox names are 1-64 bytes (validated by the engine).
    buf.push(b.len().min(255) as u8);
    buf.extend_from_slice(&b[..b.len().min(255)]);
}

fn put_subject(buf: &mut Vec<u8>, s: Option<[u8; 16]>) {
    match s {
        Some(s) => {
            buf.push(1);
            buf.extend_from_slice(&s);
        }
        None => buf.push(0),
    }
}

fn put_value(buf: &mut Vec<u8>, v: &[u8]) {
    varint::put(buf, v.len() as u64);
    buf.extend_from_slice(v);
}

/// Appends the plaintext of a link frame.
pub(crate) fn encode_link(buf: &mut Vec<u8>, prev_frames: u64) {
    buf.push(LINK);
    varint::put(buf, prev_frames);
}

/// An upper bound of the encoded size of a change (so the buffer can be
/// grown before any plaintext is written into it: growing it afterwards
/// would leave a copy of the plaintext in the freed allocation).
pub(crate) fn change_size_hint(change: &Change<'_>) -> usize {
    const FIXED: usize = 2 + 1 + 255 + 10 + 1 + 16 + 5 * 10 + 17 + 16 + 10;
    match change {
        Change::Put(p) => FIXED + p.value.len(),
        Change::Replace { value, .. } => FIXED + value.len(),
        Change::Rotate { .. } => FIXED + 16 + 1 + 1 + 255 + 10,
        _ => FIXED,
    }
}

/// Appends the plaintext of a change frame. Returns `false` for a change
/// this version does not know (nothing is appended then).
pub(crate) fn encode_change(buf: &mut Vec<u8>, change: &Change<'_>) -> bool {
    let start = buf.len();
    buf.push(CHANGE);
    match *change {
        Change::Put(ref p) => {
            buf.push(OP_PUT);
            put_sandbox(buf, p.sandbox);
            varint::put(buf, p.family);
            buf.push(p.route);
            varint::put(buf, u64::from(p.slot));
            buf.extend_from_slice(&p.key);
            buf.push(u8::from(p.caller_key));
            varint::put(buf, u64::from(p.version));
            varint::put(buf, p.created_at);
            varint::put(buf, p.idle_deadline);
            varint::put(buf, p.abs_deadline);
            varint::put(buf, u64::from(p.idle_ttl_ms));
            put_subject(buf, p.subject);
            put_value(buf, p.value);
        }
        Change::Replace { sandbox, family, version, value, idle_deadline, abs_deadline, idle_ttl_ms, subject } => {
            buf.push(OP_REPLACE);
            put_sandbox(buf, sandbox);
            varint::put(buf, family);
            varint::put(buf, u64::from(version));
            varint::put(buf, idle_deadline);
            varint::put(buf, abs_deadline);
            varint::put(buf, u64::from(idle_ttl_ms));
            put_subject(buf, subject);
            put_value(buf, value);
        }
        Change::Touch { sandbox, family, idle_deadline, idle_ttl_ms } => {
            buf.push(OP_TOUCH);
            put_sandbox(buf, sandbox);
            varint::put(buf, family);
            varint::put(buf, idle_deadline);
            varint::put(buf, u64::from(idle_ttl_ms));
        }
        Change::Rotate { sandbox, family, old_key, old_caller_key, grace_until, new_key, token_born, current } => {
            buf.push(OP_ROTATE);
            put_sandbox(buf, sandbox);
            varint::put(buf, family);
            buf.extend_from_slice(&old_key);
            buf.push(u8::from(old_caller_key));
            varint::put(buf, grace_until);
            buf.extend_from_slice(&new_key);
            varint::put(buf, token_born);
            match current {
                Some((token, until)) => {
                    buf.push(1);
                    let t = token.expose().as_bytes();
                    buf.push(t.len().min(255) as u8);
                    buf.extend_from_slice(&t[..t.len().min(255)]);
                    varint::put(buf, until);
                }
                None => buf.push(0),
            }
        }
        Change::Remove { sandbox, family } => {
            buf.push(OP_REMOVE);
            put_sandbox(buf, sandbox);
            varint::put(buf, family);
        }
        _ => {
            buf.truncate(start);
            return false;
        }
    }
    true
}

/// A decoded journal change, owning its data.
pub(crate) struct OwnedChange {
    pub(crate) sandbox: String,
    pub(crate) family: u64,
    pub(crate) op: Op,
}

/// The operation of a decoded change.
pub(crate) enum Op {
    Put {
        route: u8,
        slot: u32,
        key: [u8; 16],
        caller_key: bool,
        version: u32,
        created_at: u64,
        idle_deadline: u64,
        abs_deadline: u64,
        idle_ttl_ms: u32,
        subject: Option<[u8; 16]>,
        value: Zeroizing<Vec<u8>>,
    },
    Replace {
        version: u32,
        idle_deadline: u64,
        abs_deadline: u64,
        idle_ttl_ms: u32,
        subject: Option<[u8; 16]>,
        value: Zeroizing<Vec<u8>>,
    },
    Touch {
        idle_deadline: u64,
        idle_ttl_ms: u32,
    },
    Rotate {
        old_key: [u8; 16],
        old_caller_key: bool,
        grace_until: u64,
        new_key: [u8; 16],
        token_born: u64,
        current: Option<(Token, u64)>,
    },
    Remove,
}

impl OwnedChange {
    /// The engine's view of this change (to replay it with [`Image::apply`]).
    pub(crate) fn as_change(&self) -> Change<'_> {
        let sandbox = self.sandbox.as_str();
        let family = self.family;
        match &self.op {
            Op::Put {
                route,
                slot,
                key,
                caller_key,
                version,
                created_at,
                idle_deadline,
                abs_deadline,
                idle_ttl_ms,
                subject,
                value,
            } => Change::Put(Put {
                sandbox,
                family,
                route: *route,
                slot: *slot,
                key: *key,
                caller_key: *caller_key,
                version: *version,
                value,
                created_at: *created_at,
                idle_deadline: *idle_deadline,
                abs_deadline: *abs_deadline,
                idle_ttl_ms: *idle_ttl_ms,
                subject: *subject,
            }),
            Op::Replace { version, idle_deadline, abs_deadline, idle_ttl_ms, subject, value } => Change::Replace {
                sandbox,
                family,
                version: *version,
                value,
                idle_deadline: *idle_deadline,
                abs_deadline: *abs_deadline,
                idle_ttl_ms: *idle_ttl_ms,
                subject: *subject,
            },
            Op::Touch { idle_deadline, idle_ttl_ms } => {
                Change::Touch { sandbox, family, idle_deadline: *idle_deadline, idle_ttl_ms: *idle_ttl_ms }
            }
            Op::Rotate { old_key, old_caller_key, grace_until, new_key, token_born, current } => Change::Rotate {
                sandbox,
                family,
                old_key: *old_key,
                old_caller_key: *old_caller_key,
                grace_until: *grace_until,
                new_key: *new_key,
                token_born: *token_born,
                current: current.as_ref().map(|(t, u)| (t, *u)),
            },
            Op::Remove => Change::Remove { sandbox, family },
        }
    }
}

fn sandbox(c: &mut Cursor<'_>) -> Option<String> {
    let n = usize::from(c.u8()?);
    if n == 0 {
        return None;
    }
    String::from_utf8(c.bytes(n)?.to_vec()).ok()
}

fn subject(c: &mut Cursor<'_>) -> Option<Option<[u8; 16]>> {
    match c.u8()? {
        0 => Some(None),
        1 => Some(Some(c.array()?)),
        _ => None,
    }
}

fn value(c: &mut Cursor<'_>) -> Option<Zeroizing<Vec<u8>>> {
    let n = usize::try_from(c.varint()?).ok()?;
    Some(Zeroizing::new(c.bytes(n)?.to_vec()))
}

/// A 0/1 byte; anything else is malformed.
fn flag(c: &mut Cursor<'_>) -> Option<bool> {
    match c.u8()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

fn token(c: &mut Cursor<'_>) -> Option<Token> {
    let n = usize::from(c.u8()?);
    let text = std::str::from_utf8(c.bytes(n)?).ok()?;
    Some(Token::from_string(text.to_owned()))
}

/// A decoded journal frame.
pub(crate) enum JournalRec {
    Link { prev_frames: u64 },
    Change(OwnedChange),
}

/// Decodes a journal frame's plaintext; `None` if malformed.
pub(crate) fn decode_journal(plain: &[u8]) -> Option<JournalRec> {
    let mut c = Cursor::new(plain);
    let rec = match c.u8()? {
        LINK => JournalRec::Link { prev_frames: c.varint()? },
        CHANGE => {
            let op = c.u8()?;
            let sandbox = sandbox(&mut c)?;
            let family = c.varint()?;
            let op = match op {
                OP_PUT => Op::Put {
                    route: c.u8()?,
                    slot: c.u32v()?,
                    key: c.array()?,
                    caller_key: flag(&mut c)?,
                    version: c.u32v()?,
                    created_at: c.varint()?,
                    idle_deadline: c.varint()?,
                    abs_deadline: c.varint()?,
                    idle_ttl_ms: c.u32v()?,
                    subject: subject(&mut c)?,
                    value: value(&mut c)?,
                },
                OP_REPLACE => Op::Replace {
                    version: c.u32v()?,
                    idle_deadline: c.varint()?,
                    abs_deadline: c.varint()?,
                    idle_ttl_ms: c.u32v()?,
                    subject: subject(&mut c)?,
                    value: value(&mut c)?,
                },
                OP_TOUCH => Op::Touch { idle_deadline: c.varint()?, idle_ttl_ms: c.u32v()? },
                OP_ROTATE => Op::Rotate {
                    old_key: c.array()?,
                    old_caller_key: flag(&mut c)?,
                    grace_until: c.varint()?,
                    new_key: c.array()?,
                    token_born: c.varint()?,
                    current: match c.u8()? {
                        0 => None,
                        1 => Some((token(&mut c)?, c.varint()?)),
                        _ => return None,
                    },
                },
                OP_REMOVE => Op::Remove,
                _ => return None,
            };
            JournalRec::Change(OwnedChange { sandbox, family, op })
        }
        _ => return None,
    };
    c.is_empty().then_some(rec)
}

/// Appends the start of a block (type, sandbox); the count is written by
/// [`finish_block`] at `count_at` (a fixed 5-byte varint slot).
pub(crate) fn start_block(buf: &mut Vec<u8>, sandbox: &str) -> usize {
    buf.push(BLOCK);
    put_sandbox(buf, sandbox);
    let at = buf.len();
    buf.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x00]);
    at
}

/// Writes the image count of a block started by [`start_block`].
pub(crate) fn finish_block(buf: &mut [u8], count_at: usize, count: u32) {
    // A 5-byte LEB128 with padding continuation bytes: decoders accept it.
    let mut v = count;
    for i in 0..5 {
        let mut b = (v & 0x7f) as u8;
        v >>= 7;
        if i < 4 {
            b |= 0x80;
        }
        buf[count_at + i] = b;
    }
}

/// Appends one image of a block; times relative to `base`.
pub(crate) fn encode_image(buf: &mut Vec<u8>, img: &Image, route_mask: u8, base: u64) {
    let mut flags = 0u8;
    if img.subject.is_some() {
        flags |= 1;
    }
    if !img.retired.is_empty() {
        flags |= 2;
    }
    if img.current.is_some() {
        flags |= 4;
    }
    if img.caller_key {
        flags |= 8;
    }
    buf.push(flags);
    varint::put(buf, img.family);
    buf.push(img.route & route_mask);
    varint::put(buf, u64::from(img.slot));
    buf.extend_from_slice(&img.key);
    varint::put(buf, u64::from(img.version));
    varint::put_signed(buf, varint::diff(base, img.created_at));
    varint::put_signed(buf, varint::diff(img.token_born, img.created_at));
    varint::put_signed(buf, varint::diff(img.idle_deadline, base));
    varint::put_signed(buf, varint::diff(img.abs_deadline, img.created_at.saturating_add(ABS)));
    varint::put(buf, u64::from(img.idle_ttl_ms));
    if let Some(s) = img.subject {
        buf.extend_from_slice(&s);
    }
    if !img.retired.is_empty() {
        varint::put(buf, img.retired.len() as u64);
        for r in &img.retired {
            buf.extend_from_slice(&r.key);
            buf.push(u8::from(r.caller_key));
            varint::put_signed(buf, varint::diff(r.grace_until, base));
        }
    }
    if let Some((t, until)) = &img.current {
        let t = t.expose().as_bytes();
        buf.push(t.len().min(255) as u8);
        buf.extend_from_slice(&t[..t.len().min(255)]);
        varint::put_signed(buf, varint::diff(*until, base));
    }
    put_value(buf, &img.value);
}

/// Decodes a block: its images, in order. `None` if malformed.
pub(crate) fn decode_block(plain: &[u8], base: u64) -> Option<Vec<Image>> {
    let mut c = Cursor::new(plain);
    if c.u8()? != BLOCK {
        return None;
    }
    let sandbox = sandbox(&mut c)?;
    let count = c.varint()?;
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(plain.len()));
    for _ in 0..count {
        let flags = c.u8()?;
        if flags & !15 != 0 {
            return None;
        }
        let family = c.varint()?;
        let route = c.u8()?;
        let slot = c.u32v()?;
        let key: [u8; 16] = c.array()?;
        let version = c.u32v()?;
        let created_at = varint::add(base, c.signed()?.checked_neg()?)?;
        let token_born = varint::add(created_at, c.signed()?)?;
        let idle_deadline = varint::add(base, c.signed()?)?;
        let abs_deadline = varint::add(created_at.checked_add(ABS)?, c.signed()?)?;
        let idle_ttl_ms = c.u32v()?;
        let subject = if flags & 1 != 0 { Some(c.array::<16>()?) } else { None };
        let mut retired = Vec::new();
        if flags & 2 != 0 {
            let n = c.varint()?;
            if n == 0 || n > 1 << 20 {
                return None;
            }
            for _ in 0..n {
                let key: [u8; 16] = c.array()?;
                let caller_key = flag(&mut c)?;
                retired.push(RetiredKey { key, grace_until: varint::add(base, c.signed()?)?, caller_key });
            }
        }
        let current = if flags & 4 != 0 {
            let t = token(&mut c)?;
            Some((t, varint::add(base, c.signed()?)?))
        } else {
            None
        };
        let value = value(&mut c)?;
        let put = Put {
            sandbox: &sandbox,
            family,
            route,
            slot,
            key,
            caller_key: flags & 8 != 0,
            version,
            value: &[],
            created_at,
            idle_deadline,
            abs_deadline,
            idle_ttl_ms,
            subject,
        };
        let mut img = Image::from_put(&put);
        img.value = value;
        img.token_born = token_born;
        img.retired = retired;
        img.current = current;
        out.push(img);
    }
    c.is_empty().then_some(out)
}

/// Appends the plaintext of a snapshot's end frame.
pub(crate) fn encode_end(buf: &mut Vec<u8>, images: u64, blocks: u64) {
    buf.push(END);
    varint::put(buf, images);
    varint::put(buf, blocks);
}

/// Decodes an end frame: (images, blocks).
pub(crate) fn decode_end(plain: &[u8]) -> Option<(u64, u64)> {
    let mut c = Cursor::new(plain);
    if c.u8()? != END {
        return None;
    }
    let r = (c.varint()?, c.varint()?);
    c.is_empty().then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(family: u64) -> Image {
        let put = Put {
            sandbox: "active",
            family,
            route: 200,
            slot: family as u32 ^ 0x1234_5678,
            key: [family as u8; 16],
            caller_key: family.is_multiple_of(2),
            version: 3,
            value: b"hello world",
            created_at: 1_800_000_000_000,
            idle_deadline: 1_800_000_900_000,
            abs_deadline: 1_800_000_000_000 + ABS,
            idle_ttl_ms: 900_000,
            subject: Some([5; 16]),
        };
        let mut img = Image::from_put(&put);
        img.token_born = 1_800_000_000_500;
        img.retired = vec![
            RetiredKey { key: [1; 16], grace_until: 1_800_000_001_000, caller_key: true },
            RetiredKey { key: [2; 16], grace_until: 1_800_000_002_000, caller_key: false },
        ];
        img.current = Some((Token::mint(200), 1_800_000_002_000));
        img
    }

    #[test]
    fn block_round_trip() {
        xems_testkit::logs::capture();
        let base = 1_800_000_001_500;
        let mut buf = Vec::new();
        let at = start_block(&mut buf, "active");
        let imgs = [image(1), image(1 << 40)];
        for i in &imgs {
            encode_image(&mut buf, i, 63, base);
        }
        finish_block(&mut buf, at, 2);
        let back = decode_block(&buf, base).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in imgs.iter().zip(&back) {
            assert_eq!(
                (a.family, a.route & 63, a.slot, a.key, a.caller_key, a.version, &a.value[..], a.created_at),
                (b.family, b.route, b.slot, b.key, b.caller_key, b.version, &b.value[..], b.created_at)
            );
            assert_eq!(
                (a.token_born, a.idle_deadline, a.abs_deadline, a.idle_ttl_ms, a.subject),
                (b.token_born, b.idle_deadline, b.abs_deadline, b.idle_ttl_ms, b.subject)
            );
            assert_eq!(a.retired, b.retired);
            assert_eq!(
                a.current.as_ref().map(|c| (c.0.expose(), c.1)),
                b.current.as_ref().map(|c| (c.0.expose(), c.1))
            );
            assert_eq!(b.sandbox, "active");
        }
        // Every strict prefix fails to decode.
        for n in 0..buf.len() {
            assert!(decode_block(&buf[..n], base).is_none(), "prefix {n}");
        }
    }

    #[test]
    fn change_round_trip() {
        xems_testkit::logs::capture();
        let token = Token::mint(3);
        let put = Put {
            sandbox: "s",
            family: 9,
            route: 3,
            slot: 77_000,
            key: [4; 16],
            caller_key: true,
            version: 1,
            value: b"v",
            created_at: 10,
            idle_deadline: 20,
            abs_deadline: 30,
            idle_ttl_ms: 10,
            subject: None,
        };
        let changes = [
            Change::Put(put),
            Change::Replace {
                sandbox: "s",
                family: 9,
                version: 2,
                value: b"w",
                idle_deadline: 21,
                abs_deadline: 30,
                idle_ttl_ms: 11,
                subject: Some([1; 16]),
            },
            Change::Touch { sandbox: "s", family: 9, idle_deadline: 25, idle_ttl_ms: 4 },
            Change::Rotate {
                sandbox: "s",
                family: 9,
                old_key: [4; 16],
                old_caller_key: true,
                grace_until: 26,
                new_key: [5; 16],
                token_born: 24,
                current: Some((&token, 26)),
            },
            Change::Remove { sandbox: "s", family: 9 },
        ];
        for ch in &changes {
            let mut buf = Vec::new();
            assert!(encode_change(&mut buf, ch));
            assert!(buf.len() <= change_size_hint(ch), "{ch:?}: the hint bounds the encoding");
            let Some(JournalRec::Change(back)) = decode_journal(&buf) else { panic!("{ch:?}") };
            let mut again = Vec::new();
            encode_change(&mut again, &back.as_change());
            assert_eq!(buf, again, "{ch:?}");
            for n in 0..buf.len() {
                assert!(decode_journal(&buf[..n]).is_none());
            }
        }
    }
}
