//! Key derivation, the keyed-hash index and AEAD sealing.
//!
//! Primitives come from `ring` (HKDF-SHA256, AES-256-GCM) and RustCrypto
//! (`hmac` + `sha2` for the index: with SHA-NI it is faster than ring's HMAC
//! for the 40-byte inputs of the index, see `xems-bench -- crypto`). Nothing
//! here implements a primitive; it only fixes how they are combined.

use std::fmt;

use hmac::{Hmac, Mac};
use ring::aead;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::{Len, MasterSecret};

/// Derives per-sandbox, per-purpose keys from a root secret with
/// HKDF-SHA256. The `info` of every derivation is
/// `"xems/v1/" || purpose || "/" || sandbox`; purposes are fixed strings
/// without `/` and sandbox names cannot contain `/`, so no two derivations
/// share an `info`.
pub struct KeyDeriver {
    prk: ring::hkdf::Prk,
}

impl KeyDeriver {
    /// A deriver rooted at `secret`, with a `salt` that separates uses of the
    /// same secret (for example a random per-process salt for keys that must
    /// never be reused across restarts).
    pub fn new(secret: &MasterSecret, salt: &[u8]) -> Self {
        Self::from_root(secret.expose_secret(), salt)
    }

    /// A deriver rooted at raw key material (a data key unwrapped from a vault).
    pub fn from_root(root: &[u8; 32], salt: &[u8]) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt);
        KeyDeriver { prk: salt.extract(root) }
    }

    /// 32 bytes of key material for `purpose` in `sandbox`.
    pub fn derive(&self, purpose: &str, sandbox: &str) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        let info: [&[u8]; 5] = [b"xems/v1/", purpose.as_bytes(), b"/", sandbox.as_bytes(), b""];
        self.prk
            .expand(&info, Len(32))
            .and_then(|okm| okm.fill(&mut out[..]))
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    }

    /// The index key of `sandbox` for `purpose`.
    pub fn index_key(&self, purpose: &str, sandbox: &str) -> IndexKey {
        IndexKey::new(&self.derive(purpose, sandbox))
    }

    /// The sealing key of `sandbox` for `purpose`.
    pub fn seal_key(&self, purpose: &str, sandbox: &str) -> SealKey {
        SealKey::new(&self.derive(purpose, sandbox))
    }
}

impl fmt::Debug for KeyDeriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDeriver(<redacted>)")
    }
}

/// An HMAC-SHA256 key for the keyed-hash index: raw tokens and caller keys
/// are never stored, only their digests under this key.
#[derive(Clone)]
pub struct IndexKey {
    mac: Hmac<Sha256>,
}

impl IndexKey {
    /// An index key from 32 bytes of key material.
    pub fn new(key: &[u8; 32]) -> Self {
        IndexKey { mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length") }
    }

    /// The digest of an address (a token or a caller key).
    pub fn digest(&self, address: &[u8]) -> IndexDigest {
        let mut mac = self.mac.clone();
        mac.update(address);
        IndexDigest(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(<redacted>)")
    }
}

/// The 32-byte keyed digest of an address.
///
/// The first 16 bytes are the index entry; bytes 16..24 are the fingerprint
/// used in events and logs. The two never overlap, so a log line reveals
/// nothing of what the index stores.
#[derive(Clone, Copy)]
pub struct IndexDigest([u8; 32]);

impl IndexDigest {
    /// The 128-bit index entry.
    pub fn index(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out.copy_from_slice(&self.0[..16]);
        out
    }

    /// The short fingerprint for logs and events.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.0[16..24]);
        Fingerprint(out)
    }

    /// All 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for IndexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexDigest({})", self.fingerprint())
    }
}

/// A short keyed fingerprint of a token or key, safe to log: it cannot be
/// turned back into the token, nor matched against the stored index.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    /// The fingerprint's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// A fingerprint from its bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A sealed value failed to open: wrong key, wrong record, or tampering. One
/// opaque error on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct OpenError;

/// An AES-256-GCM key, built once and reused.
pub struct SealKey {
    key: aead::LessSafeKey,
}

impl SealKey {
    /// Bytes the tag adds to every sealed message.
    pub const TAG_LEN: usize = 16;

    /// Bytes of a nonce.
    pub const NONCE_LEN: usize = 12;

    /// A key from 32 bytes of key material.
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, key).expect("32 bytes is an AES-256 key");
        SealKey { key: aead::LessSafeKey::new(unbound) }
    }

    /// Encrypts `buf[start..]` in place and appends the tag.
    ///
    /// The caller guarantees that `nonce` is never used twice with this key.
    pub fn seal_in_place(&self, nonce: [u8; 12], aad: &[u8], buf: &mut Vec<u8>, start: usize) {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut buf[start..],
            )
            .expect("AES-GCM sealing only fails past 64 GiB");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Encrypts `buf` in place and returns the tag (for fixed-size buffers
    /// that need no allocation).
    ///
    /// The caller guarantees that `nonce` is never used twice with this key.
    pub fn seal_detached(&self, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        let tag = self
            .key
            .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), buf)
            .expect("AES-GCM sealing only fails past 64 GiB");
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Seals `plaintext` into a new buffer of exactly `prefix.len() +
    /// plaintext.len() + TAG_LEN` bytes, starting with `prefix` (which is not
    /// encrypted).
    pub fn seal(&self, nonce: [u8; 12], aad: &[u8], prefix: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(prefix.len() + plaintext.len() + Self::TAG_LEN);
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(nonce, aad, &mut buf, prefix.len());
        buf
    }

    /// Seals with a random nonce, returned as the first 12 bytes of the
    /// result (`nonce || ciphertext || tag`). Safe for up to 2^32 messages per
    /// key; use a fresh key per epoch beyond that.
    pub fn seal_random_nonce(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        crate::rng::fill(&mut nonce);
        self.seal(nonce, aad, &nonce, plaintext)
    }

    /// Opens what [`seal_random_nonce`](Self::seal_random_nonce) made.
    ///
    /// # Errors
    ///
    /// [`OpenError`] if the input is too short, the key or `aad` is wrong, or
    /// the bytes were changed.
    pub fn open_random_nonce(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < Self::NONCE_LEN + Self::TAG_LEN {
            return Err(OpenError);
        }
        let nonce: [u8; 12] = sealed[..12].try_into().map_err(|_| OpenError)?;
        let mut buf = Zeroizing::new(sealed[12..].to_vec());
        let len = self.open_in_place(nonce, aad, &mut buf)?.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Decrypts `ciphertext || tag` in place and returns the plaintext part.
    ///
    /// # Errors
    ///
    /// [`OpenError`] if the key, nonce or `aad` is wrong, or the bytes were
    /// changed.
    pub fn open_in_place<'a>(&self, nonce: [u8; 12], aad: &[u8], buf: &'a mut [u8]) -> Result<&'a mut [u8], OpenError> {
        self.key
            .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), buf)
            .map_err(|_| OpenError)
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_are_separated() {
        xems_testkit::logs::capture();
        let d = KeyDeriver::new(&MasterSecret::generate(), b"salt");
        assert_ne!(*d.derive("index", "a"), *d.derive("index", "b"));
        assert_ne!(*d.derive("index", "a"), *d.derive("value", "a"));
        assert_eq!(*d.derive("index", "a"), *d.derive("index", "a"));
        let other_salt = KeyDeriver::from_root(&[0; 32], b"other");
        let same_root = KeyDeriver::from_root(&[0; 32], b"salt");
        assert_ne!(*other_salt.derive("index", "a"), *same_root.derive("index", "a"));
    }

    #[test]
    fn seal_binds_nonce_and_aad() {
        xems_testkit::logs::capture();
        let k = SealKey::new(&[7; 32]);
        let mut sealed = k.seal([1; 12], b"aad", b"", b"hello");
        assert_eq!(sealed.len(), 5 + SealKey::TAG_LEN);
        let mut copy = sealed.clone();
        assert_eq!(k.open_in_place([1; 12], b"aad", &mut copy).unwrap(), b"hello");
        let mut copy = sealed.clone();
        assert_eq!(k.open_in_place([2; 12], b"aad", &mut copy), Err(OpenError));
        let mut copy = sealed.clone();
        assert_eq!(k.open_in_place([1; 12], b"aae", &mut copy), Err(OpenError));
        sealed[0] ^= 1;
        assert_eq!(k.open_in_place([1; 12], b"aad", &mut sealed), Err(OpenError));
        let other = SealKey::new(&[8; 32]);
        let mut fresh = k.seal([1; 12], b"aad", b"", b"hello");
        assert_eq!(other.open_in_place([1; 12], b"aad", &mut fresh), Err(OpenError));
    }

    #[test]
    fn random_nonce_round_trip() {
        xems_testkit::logs::capture();
        let k = SealKey::new(&[7; 32]);
        let a = k.seal_random_nonce(b"x", b"secret");
        let b = k.seal_random_nonce(b"x", b"secret");
        assert_ne!(a, b);
        assert_eq!(&**k.open_random_nonce(b"x", &a).unwrap(), b"secret");
        assert_eq!(k.open_random_nonce(b"y", &a), Err(OpenError));
        assert_eq!(k.open_random_nonce(b"x", &a[..10]), Err(OpenError));
    }

    #[test]
    fn index_digest_parts() {
        xems_testkit::logs::capture();
        let k = IndexKey::new(&[1; 32]);
        let d = k.digest(b"token");
        assert_eq!(d.index(), k.digest(b"token").index());
        assert_ne!(d.index(), k.digest(b"tokem").index());
        assert_ne!(d.index(), IndexKey::new(&[2; 32]).digest(b"token").index());
        assert_eq!(d.fingerprint().to_string().len(), 16);
    }
}
