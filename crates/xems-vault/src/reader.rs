//! Reading a vault file: its header, then its frames one by one, each
//! authenticated before its plaintext is looked at. See [`crate::format`]
//! for the byte layout.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Result, VaultError};
use crate::format::{FRAME_HEADER_LEN, FileKind, HEADER_LEN, Header, MAX_FRAME, TAG_LEN, record_aad, record_nonce};
use crate::keys::FileKeys;

/// Reads the header of a vault file.
pub(crate) fn read_header(path: &Path, name: &str) -> Result<(Header, u64)> {
    let mut f = File::open(path).map_err(VaultError::io(format!("cannot open {}", path.display())))?;
    let size = f.metadata().map_err(VaultError::io(format!("cannot stat {}", path.display())))?.len();
    let mut buf = vec![0u8; HEADER_LEN.min(size as usize)];
    f.read_exact(&mut buf).map_err(VaultError::io(format!("cannot read {}", path.display())))?;
    Ok((Header::decode(&buf, name)?, size))
}

/// What [`FrameReader::next`] found.
pub(crate) enum Next<'a> {
    /// An authenticated frame's plaintext.
    Frame(&'a [u8]),
    /// The end of the file at a frame boundary.
    End,
    /// An incomplete last frame (or an all-zero tail) starting at this
    /// offset: what a crash in the middle of a write leaves.
    Torn(u64),
}

/// Reads the frames of one file in order.
pub(crate) struct FrameReader<'k> {
    file: BufReader<File>,
    name: String,
    size: u64,
    pos: u64,
    seq: u64,
    kind: FileKind,
    vault_id: [u8; 16],
    file_id: [u8; 16],
    keys: &'k FileKeys,
    buf: Zeroizing<Vec<u8>>,
}

impl<'k> FrameReader<'k> {
    /// A reader positioned after the header.
    pub(crate) fn new(path: &Path, name: &str, header: &Header, keys: &'k FileKeys) -> Result<Self> {
        let mut f = File::open(path).map_err(VaultError::io(format!("cannot open {}", path.display())))?;
        let size = f.metadata().map_err(VaultError::io(format!("cannot stat {}", path.display())))?.len();
        f.seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(VaultError::io(format!("cannot read {}", path.display())))?;
        Ok(FrameReader {
            file: BufReader::with_capacity(256 * 1024, f),
            name: name.to_owned(),
            size,
            pos: HEADER_LEN as u64,
            seq: 0,
            kind: header.kind,
            vault_id: header.vault_id,
            file_id: header.file_id,
            keys,
            buf: Zeroizing::new(Vec::new()),
        })
    }

    /// Frames read so far.
    pub(crate) fn frames(&self) -> u64 {
        self.seq
    }

    /// The offset after the last frame read.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// The next frame.
    ///
    /// # Errors
    ///
    /// A damaged frame header, a frame that fails authentication, or I/O.
    pub(crate) fn next(&mut self) -> Result<Next<'_>> {
        let rest = self.size - self.pos;
        if rest == 0 {
            return Ok(Next::End);
        }
        if rest < FRAME_HEADER_LEN as u64 {
            return Ok(Next::Torn(self.pos));
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        self.file.read_exact(&mut h).map_err(VaultError::io(format!("cannot read {}", self.name)))?;
        let n = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
        let check = u32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
        if check != !n || (n as usize) < TAG_LEN || n > MAX_FRAME {
            if h.iter().all(|b| *b == 0) && self.rest_is_zero()? {
                return Ok(Next::Torn(self.pos));
            }
            return Err(VaultError::corrupt(
                &self.name,
                self.pos,
                format!("damaged frame header (record {})", self.seq),
            ));
        }
        if rest - (FRAME_HEADER_LEN as u64) < u64::from(n) {
            return Ok(Next::Torn(self.pos));
        }
        self.buf.clear();
        self.buf.resize(n as usize, 0);
        self.file.read_exact(&mut self.buf).map_err(VaultError::io(format!("cannot read {}", self.name)))?;
        let aad = record_aad(&self.vault_id, &self.file_id, self.kind, self.seq);
        let at = self.pos;
        let seq = self.seq;
        let plain = self
            .keys
            .record_key
            .open_in_place(record_nonce(self.seq), &aad, &mut self.buf)
            .map_err(|_| VaultError::corrupt(&self.name, at, format!("record {seq} failed authentication")))?;
        self.pos += FRAME_HEADER_LEN as u64 + u64::from(n);
        self.seq += 1;
        Ok(Next::Frame(plain))
    }

    fn rest_is_zero(&mut self) -> Result<bool> {
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.file.read(&mut chunk).map_err(VaultError::io(format!("cannot read {}", self.name)))?;
            if n == 0 {
                return Ok(true);
            }
            if chunk[..n].iter().any(|b| *b != 0) {
                return Ok(false);
            }
        }
    }
}

/// A vault file found in the directory, with its header.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) header: Header,
    pub(crate) size: u64,
}
