//! The master secret and the keyring that holds it with its predecessors.
//!
//! A master secret is exactly 32 bytes. It is accepted as 32 plain bytes
//! (what XyPriss passes with `--secret`), or as `hex:` / `base64:` text that
//! decodes to 32 bytes. Anything else is refused with the length found.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use subtle::ConstantTimeEq;
use xems_locked::Locked;
use zeroize::{Zeroize, Zeroizing};

/// Why a secret was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The decoded secret does not have exactly 32 bytes.
    #[error("secret must be exactly 32 bytes, got {found} ({hint})")]
    WrongLength {
        /// The number of bytes found.
        found: usize,
        /// What to do about it.
        hint: &'static str,
    },
    /// `hex:` was given but the rest is not hexadecimal.
    #[error("secret after hex: is not valid hexadecimal")]
    BadHex,
    /// `base64:` was given but the rest is not base64.
    #[error("secret after base64: is not valid base64")]
    BadBase64,
    /// A secret file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Two secrets of a keyring are the same or share a key id.
    #[error("keyring holds two secrets with key id {0}")]
    DuplicateKeyId(KeyId),
}

/// The 32-byte master secret.
///
/// Private bytes, zeroized on drop, compared in constant time, never printed.
///
/// ```
/// use xems_core::MasterSecret;
///
/// let s = MasterSecret::parse("0123456789abcdef0123456789abcdef").unwrap();
/// assert_eq!(format!("{s:?}"), format!("MasterSecret({}, <redacted>)", s.key_id()));
/// let err = MasterSecret::parse("too short").unwrap_err();
/// assert!(err.to_string().contains("got 9"));
/// ```
pub struct MasterSecret {
    /// In locked pages excluded from core dumps and wiped on drop (like the
    /// derived keys), off the stack: moving a secret (or a configuration
    /// holding one) copies a pointer and leaves no copy of the bytes in a
    /// stack frame. The vault keeps its keyring for as long as it runs.
    bytes: Locked<[u8; 32]>,
    id: KeyId,
}

impl MasterSecret {
    /// A secret from raw bytes.
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let secret = Self::from_slice(&bytes);
        bytes.zeroize();
        secret
    }

    /// A secret from exactly 32 bytes, copied straight to the heap.
    fn from_slice(bytes: &[u8]) -> Self {
        let mut locked = Locked::new([0u8; 32]);
        locked.copy_from_slice(bytes);
        let id = KeyId::of(&locked);
        MasterSecret { bytes: locked, id }
    }

    /// A fresh random secret from the operating system.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::rng::fill_os(&mut bytes[..]);
        Self::from_bytes(*bytes)
    }

    /// Parses a secret: 32 plain bytes, `hex:<64 hex digits>` or
    /// `base64:<44 characters>`.
    ///
    /// # Errors
    ///
    /// A length other than 32 bytes (the message states the length found), or
    /// bad hex or base64 after the prefix.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let decoded: Zeroizing<Vec<u8>> = if let Some(hex) = text.strip_prefix("hex:") {
            Zeroizing::new(decode_hex(hex.trim()).ok_or(SecretError::BadHex)?)
        } else if let Some(b64) = text.strip_prefix("base64:") {
            let b64 = b64.trim();
            let engine = if b64.contains(['-', '_']) {
                &base64::engine::general_purpose::URL_SAFE
            } else {
                &base64::engine::general_purpose::STANDARD
            };
            let decoded = engine
                .decode(b64)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
                .map_err(|_| SecretError::BadBase64)?;
            Zeroizing::new(decoded)
        } else {
            Zeroizing::new(text.as_bytes().to_vec())
        };
        if decoded.len() != 32 {
            return Err(SecretError::WrongLength {
                found: decoded.len(),
                hint: "pass hex:<64 hex digits> or base64:<44 characters> for binary keys",
            });
        }
        Ok(Self::from_slice(&decoded))
    }

    /// Reads a secret from a file, ignoring one trailing newline.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or its content is not a valid secret.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|source| SecretError::File { path: path.display().to_string(), source })?,
        );
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        Self::parse(trimmed)
    }

    /// The identifier of this secret: a short one-way fingerprint that is
    /// written into ciphertext headers so readers pick the right key.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// The raw bytes. Every use is a place where the secret leaves its box:
    /// keep them few and greppable.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl Clone for MasterSecret {
    fn clone(&self) -> Self {
        Self::from_slice(&self.bytes[..])
    }
}

impl PartialEq for MasterSecret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes[..].ct_eq(&other.bytes[..]).into()
    }
}

impl Eq for MasterSecret {}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterSecret({}, <redacted>)", self.id)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        // An odd digit count is a length problem: report it as one.
        return s.bytes().all(|b| b.is_ascii_hexdigit()).then(|| vec![0; s.len() / 2]);
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A short public identifier of a secret (32 bits of a one-way derivation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct KeyId(u32);

impl KeyId {
    fn of(secret: &[u8; 32]) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"xems/v1/key-id");
        let prk = salt.extract(secret);
        let mut out = [0u8; 4];
        prk.expand(&[b"xems/v1/key-id"], Len(4))
            .and_then(|okm| okm.fill(&mut out))
            .expect("4 bytes is a valid HKDF length");
        KeyId(u32::from_be_bytes(out))
    }

    /// The id as a number (as stored in headers).
    pub const fn get(self) -> u32 {
        self.0
    }

    /// An id read from a header.
    pub const fn from_u32(v: u32) -> Self {
        KeyId(v)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// An output length for ring's HKDF.
pub(crate) struct Len(pub(crate) usize);

impl ring::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The current master secret and the previous ones that are still readable.
///
/// New material is always written under the current secret; previous secrets
/// only open what was written before a rotation.
///
/// ```
/// use xems_core::{Keyring, MasterSecret};
///
/// let old = MasterSecret::generate();
/// let new = MasterSecret::generate();
/// let ring = Keyring::new(new.clone()).with_previous(old.clone()).unwrap();
/// assert_eq!(ring.current().key_id(), new.key_id());
/// assert!(ring.find(old.key_id()).is_some());
/// ```
#[derive(Clone, Debug)]
pub struct Keyring {
    current: MasterSecret,
    previous: Vec<MasterSecret>,
}

impl Keyring {
    /// A keyring with one secret.
    pub fn new(current: MasterSecret) -> Self {
        Keyring { current, previous: Vec::new() }
    }

    /// A keyring with a fresh random secret (ephemeral stores).
    pub fn ephemeral() -> Self {
        Self::new(MasterSecret::generate())
    }

    /// Adds a previous secret that stays readable.
    ///
    /// # Errors
    ///
    /// The secret's key id is already in the keyring.
    pub fn with_previous(mut self, previous: MasterSecret) -> Result<Self, SecretError> {
        if self.find(previous.key_id()).is_some() {
            return Err(SecretError::DuplicateKeyId(previous.key_id()));
        }
        self.previous.push(previous);
        Ok(self)
    }

    /// The secret new material is written under.
    pub fn current(&self) -> &MasterSecret {
        &self.current
    }

    /// The previous secrets, newest first.
    pub fn previous(&self) -> &[MasterSecret] {
        &self.previous
    }

    /// The secret with this id, if the keyring holds it.
    pub fn find(&self, id: KeyId) -> Option<&MasterSecret> {
        std::iter::once(&self.current).chain(&self.previous).find(|s| s.key_id() == id)
    }

    /// Every secret, current first.
    pub fn iter(&self) -> impl Iterator<Item = &MasterSecret> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        xems_testkit::logs::capture();
        let raw = MasterSecret::parse("abcdefghijklmnopqrstuvwxyz012345").unwrap();
        let hex = MasterSecret::parse("hex:6162636465666768696a6b6c6d6e6f707172737475767778797a303132333435").unwrap();
        assert_eq!(raw, hex);
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(MasterSecret::parse(&format!("base64:{b64}")).unwrap(), raw);
        assert_eq!(raw.key_id(), hex.key_id());
        assert_ne!(raw.key_id(), MasterSecret::generate().key_id());
    }

    #[test]
    fn wrong_lengths_name_the_length() {
        xems_testkit::logs::capture();
        for (input, found) in [
            ("", 0),
            ("abcdefghijklmnopqrstuvwxyz01234", 31),
            ("abcdefghijklmnopqrstuvwxyz0123456", 33),
            ("hex:00ff", 2),
            ("hex:0", 0),
            ("base64:AAAA", 3),
        ] {
            let err = MasterSecret::parse(input).unwrap_err();
            assert!(matches!(err, SecretError::WrongLength { found: f, .. } if f == found), "{input:?}: {err}");
            assert!(err.to_string().contains(&format!("got {found}")), "{err}");
        }
        assert!(matches!(MasterSecret::parse("hex:zz"), Err(SecretError::BadHex)));
        assert!(matches!(MasterSecret::parse("base64:!!!"), Err(SecretError::BadBase64)));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        xems_testkit::logs::capture();
        let s = MasterSecret::parse("abcdefghijklmnopqrstuvwxyz012345").unwrap();
        let shown = format!("{s:?} {:?}", Keyring::new(s.clone()));
        assert!(!shown.contains("abcdef"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn keyring_refuses_duplicates() {
        xems_testkit::logs::capture();
        let s = MasterSecret::generate();
        assert!(Keyring::new(s.clone()).with_previous(s).is_err());
    }
}
