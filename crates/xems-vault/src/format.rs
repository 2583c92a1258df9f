//! The on-disk format: file headers, record framing, associated data and
//! varints. `docs/VAULT-FORMAT.md` is the specification; this module is the
//! code that reads and writes it, and the layout below must match it.
//!
//! ```text
//! A vault is a directory:
//!   LOCK                  the owner's PID; flock(2)-locked while open
//!   journal.<gen>         journal segments, gen = decimal, zero-padded to 6+ digits
//!   snapshot.<gen>        at most one live snapshot (older ones are leftovers)
//!   *.tmp                 files being written; deleted at open
//!
//! Every vault file = header (220 bytes) || frame*
//!
//! header (all integers little-endian):
//!   off  len  field
//!     0    8  magic "XEMS-VLT"
//!     8    2  format version (1)
//!    10    1  kind: 1 = journal, 2 = snapshot
//!    11    1  flags: bit 0 = hardware-bound; other bits 0
//!    12    2  shard count of the engine the vault belongs to
//!    14    2  reserved, 0
//!    16    4  key id of the master secret that wraps the keys
//!    20    4  reserved, 0
//!    24   16  vault id (random; the same in every file of the vault)
//!    40   16  file id (random; unique per file)
//!    56    8  generation
//!    64   16  link: journal = file id of the previous segment (0 for the
//!             first); snapshot = file id of the journal segment it pairs with
//!    80    8  time, ms since the UNIX epoch: journal = creation time;
//!             snapshot = the base time its records are relative to
//!    88    8  machine tag: hardware-bound = SHA-256("xems/v1/vault/machine" ||
//!             vault id || machine id)[0..8]; otherwise 0
//!    96   32  KEK salt (random)
//!   128   12  wrap nonce (random)
//!   140   80  AES-256-GCM(KEK, wrap nonce, aad = header[0..140],
//!             data root (32) || file key (32)) = 64 bytes + 16-byte tag
//!   220       first frame
//!
//! frame:
//!   off  len  field
//!     0    4  n = sealed length (ciphertext + 16-byte tag), 16..=2^31
//!     4    4  !n (bitwise complement: a damaged length is detected)
//!     8    n  AES-256-GCM(file key, nonce, aad, plaintext)
//!   nonce = seq (u64 LE) || 00 00 00 00; seq = the frame's index in its file, from 0
//!   aad   = vault id (16) || file id (16) || kind (1) || seq (u64 LE, 8)
//! ```
//!
//! The frame plaintexts (journal links and changes, snapshot blocks and
//! ends) are encoded by [`crate::codec`].

use std::fmt;

use crate::error::VaultError;

/// The first 8 bytes of every vault file.
pub(crate) const MAGIC: [u8; 8] = *b"XEMS-VLT";

/// The format version this code writes, and the only one it reads.
pub(crate) const VERSION: u16 = 1;

/// Bytes of a file header.
pub(crate) const HEADER_LEN: usize = 220;

/// Where the wrapped keys start (everything before is their associated data).
pub(crate) const WRAP_AAD_LEN: usize = 140;

/// Bytes of a frame header.
pub(crate) const FRAME_HEADER_LEN: usize = 8;

/// AES-GCM tag bytes.
pub(crate) const TAG_LEN: usize = 16;

/// The largest sealed frame a reader accepts (a value is at most a few
/// MiB in practice; the cap keeps a damaged length from allocating much).
pub(crate) const MAX_FRAME: u32 = 1 << 31;

/// Header flag: the KEK mixes in a machine identity.
pub(crate) const FLAG_HARDWARE_BOUND: u8 = 1;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// An append-only journal segment.
    Journal,
    /// A snapshot.
    Snapshot,
}

impl FileKind {
    pub(crate) fn byte(self) -> u8 {
        match self {
            FileKind::Journal => 1,
            FileKind::Snapshot => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(FileKind::Journal),
            2 => Some(FileKind::Snapshot),
            _ => None,
        }
    }

    /// The file name prefix.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            FileKind::Journal => "journal",
            FileKind::Snapshot => "snapshot",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// The name of the file of `kind` and generation `gen`.
pub(crate) fn file_name(kind: FileKind, generation: u64) -> String {
    format!("{}.{generation:06}", kind.prefix())
}

/// Parses a file name made by [`file_name`].
pub(crate) fn parse_file_name(name: &str) -> Option<(FileKind, u64)> {
    let (prefix, digits) = name.split_once('.')?;
    let kind = match prefix {
        "journal" => FileKind::Journal,
        "snapshot" => FileKind::Snapshot,
        _ => return None,
    };
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, digits.parse().ok()?))
}

/// A file header, decoded but not yet authenticated (see [`crate::keys`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: FileKind,
    pub(crate) flags: u8,
    pub(crate) shards: u16,
    pub(crate) key_id: u32,
    pub(crate) vault_id: [u8; 16],
    pub(crate) file_id: [u8; 16],
    pub(crate) generation: u64,
    pub(crate) link: [u8; 16],
    pub(crate) time: u64,
    pub(crate) machine_tag: [u8; 8],
    pub(crate) salt: [u8; 32],
    pub(crate) wrap_nonce: [u8; 12],
    pub(crate) wrapped: [u8; 80],
}

impl Header {
    /// Whether the KEK mixes in a machine identity.
    pub(crate) fn hardware_bound(&self) -> bool {
        self.flags & FLAG_HARDWARE_BOUND != 0
    }

    /// The bytes the wrap authenticates (`header[0..140]`).
    pub(crate) fn aad(&self) -> [u8; WRAP_AAD_LEN] {
        let mut b = [0u8; WRAP_AAD_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10] = self.kind.byte();
        b[11] = self.flags;
        b[12..14].copy_from_slice(&self.shards.to_le_bytes());
        b[16..20].copy_from_slice(&self.key_id.to_le_bytes());
        b[24..40].copy_from_slice(&self.vault_id);
        b[40..56].copy_from_slice(&self.file_id);
        b[56..64].copy_from_slice(&self.generation.to_le_bytes());
        b[64..80].copy_from_slice(&self.link);
        b[80..88].copy_from_slice(&self.time.to_le_bytes());
        b[88..96].copy_from_slice(&self.machine_tag);
        b[96..128].copy_from_slice(&self.salt);
        b[128..140].copy_from_slice(&self.wrap_nonce);
        b
    }

    /// The full 220 bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..WRAP_AAD_LEN].copy_from_slice(&self.aad());
        b[WRAP_AAD_LEN..].copy_from_slice(&self.wrapped);
        b
    }

    /// Decodes a header. Checks the magic, the version and the fields'
    /// ranges; the wrap (which authenticates all of it) is checked when the
    /// keys are unwrapped.
    pub(crate) fn decode(bytes: &[u8], file: &str) -> Result<Self, VaultError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(VaultError::NotAVault { file: file.to_owned() });
        }
        if bytes.len() < 10 {
            return Err(VaultError::corrupt(file, 0, "the header is cut short"));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(VaultError::UnsupportedVersion { file: file.to_owned(), found: version, supported: VERSION });
        }
        if bytes.len() < HEADER_LEN {
            return Err(VaultError::corrupt(file, 0, "the header is cut short"));
        }
        let kind = FileKind::from_byte(bytes[10]).ok_or_else(|| VaultError::corrupt(file, 10, "unknown file kind"))?;
        let flags = bytes[11];
        if flags & !FLAG_HARDWARE_BOUND != 0 {
            return Err(VaultError::corrupt(file, 11, "unknown header flags"));
        }
        if bytes[14..16] != [0, 0] || bytes[20..24] != [0; 4] {
            return Err(VaultError::corrupt(file, 14, "reserved header bytes are not zero"));
        }
        let shards = u16::from_le_bytes([bytes[12], bytes[13]]);
        if !shards.is_power_of_two() || shards > 256 {
            return Err(VaultError::corrupt(file, 12, "shard count is not a power of two from 1 to 256"));
        }
        let arr = |r: std::ops::Range<usize>| -> &[u8] { &bytes[r] };
        Ok(Header {
            kind,
            flags,
            shards,
            key_id: u32::from_le_bytes(arr(16..20).try_into().expect("4 bytes")),
            vault_id: arr(24..40).try_into().expect("16 bytes"),
            file_id: arr(40..56).try_into().expect("16 bytes"),
            generation: u64::from_le_bytes(arr(56..64).try_into().expect("8 bytes")),
            link: arr(64..80).try_into().expect("16 bytes"),
            time: u64::from_le_bytes(arr(80..88).try_into().expect("8 bytes")),
            machine_tag: arr(88..96).try_into().expect("8 bytes"),
            salt: arr(96..128).try_into().expect("32 bytes"),
            wrap_nonce: arr(128..140).try_into().expect("12 bytes"),
            wrapped: arr(140..220).try_into().expect("80 bytes"),
        })
    }
}

/// The nonce of frame `seq`.
pub(crate) fn record_nonce(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&seq.to_le_bytes());
    n
}

/// The associated data of frame `seq` of a file.
pub(crate) fn record_aad(vault_id: &[u8; 16], file_id: &[u8; 16], kind: FileKind, seq: u64) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..16].copy_from_slice(vault_id);
    a[16..32].copy_from_slice(file_id);
    a[32] = kind.byte();
    a[33..].copy_from_slice(&seq.to_le_bytes());
    a
}

/// The 8-byte frame header of a frame whose sealed part is `n` bytes.
pub(crate) fn frame_header(n: u32) -> [u8; FRAME_HEADER_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&n.to_le_bytes());
    h[4..].copy_from_slice(&(!n).to_le_bytes());
    h
}

/// LEB128 and zigzag varints.
pub(crate) mod varint {
    /// Appends `v` as LEB128.
    pub(crate) fn put(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    /// Appends a signed value, zigzag-encoded.
    pub(crate) fn put_signed(buf: &mut Vec<u8>, v: i64) {
        put(buf, ((v << 1) ^ (v >> 63)) as u64);
    }

    /// The signed difference `a - b`, saturated to `i64`.
    pub(crate) fn diff(a: u64, b: u64) -> i64 {
        let d = i128::from(a) - i128::from(b);
        d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// `base + d`, or `None` outside `u64`.
    pub(crate) fn add(base: u64, d: i64) -> Option<u64> {
        u64::try_from(i128::from(base) + i128::from(d)).ok()
    }
}

/// A cursor over a decrypted plaintext; every read is bounds-checked and a
/// short or malformed input is `None` (the caller turns it into a
/// corruption error: the record authenticated, so it is a bug or a forgery).
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return None;
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn signed(&mut self) -> Option<i64> {
        let z = self.varint()?;
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    pub(crate) fn u32v(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        xems_testkit::logs::capture();
        let mut buf = Vec::new();
        let values = [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX];
        for v in values {
            varint::put(&mut buf, v);
        }
        let signed = [0i64, -1, 1, i64::MIN, i64::MAX, -432_000_000];
        for v in signed {
            varint::put_signed(&mut buf, v);
        }
        let mut c = Cursor::new(&buf);
        for v in values {
            assert_eq!(c.varint(), Some(v));
        }
        for v in signed {
            assert_eq!(c.signed(), Some(v));
        }
        assert!(c.is_empty());
        assert_eq!(Cursor::new(&[0xff; 11]).varint(), None, "overlong");
        assert_eq!(Cursor::new(&[0x80]).varint(), None, "cut short");
    }

    #[test]
    fn frame_headers_check_their_length() {
        xems_testkit::logs::capture();
        let h = frame_header(20);
        assert_eq!(u32::from_le_bytes(h[..4].try_into().unwrap()), 20);
        assert_eq!(u32::from_le_bytes(h[4..].try_into().unwrap()), !20);
    }

    #[test]
    fn names() {
        xems_testkit::logs::capture();
        assert_eq!(file_name(FileKind::Journal, 7), "journal.000007");
        assert_eq!(parse_file_name("journal.000007"), Some((FileKind::Journal, 7)));
        assert_eq!(parse_file_name("snapshot.1234567"), Some((FileKind::Snapshot, 1_234_567)));
        assert_eq!(parse_file_name("snapshot.000001.tmp"), None);
        assert_eq!(parse_file_name("journal.7"), None);
        assert_eq!(parse_file_name("LOCK"), None);
    }
}
