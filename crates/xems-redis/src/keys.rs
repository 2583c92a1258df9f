//! Keys and sealing: what leaves the process is only keyed digests and
//! AES-256-GCM ciphertext.
//!
//! Every key is derived with HKDF-SHA256 from a master secret of the
//! keyring with the **fixed** salt `xems/v1/redis`: every application node
//! holding the same secret derives the same index, selector and sealing
//! keys.
//!
//! Minted token layout (66 URL-safe base64 characters):
//!
//! ```text
//! routing byte (1) || AES-256(session id (8, BE) || 0^8) (16) || verifier (32, random)
//! ```
//!
//! The encrypted *selector* names the session's record, so a token finds its
//! record without an index entry (the selector/verifier pattern, as the
//! embedded engine's tokens): a rotation writes no pointer key and a retired
//! token needs none. The selector key is per sandbox and per secret; eight
//! zero bytes and the routing byte inside the block reject anything that is
//! not a token this store minted (a caller key, a forgery) before Redis is
//! asked. The record stores only the keyed digest of the whole token, so the
//! 256-bit verifier is what authenticates. Every token of a session carries
//! the same selector, as the engine's do; the selector reveals nothing about
//! the session without the key.
//!
//! Sealed blob layout (values and tokens alike):
//!
//! ```text
//! key id (4, BE) || epoch (4, BE) || nonce (12) || AES-256-GCM ciphertext || tag (16)
//! ```
//!
//! The key id names the master secret (so records written before a secret
//! rotation stay readable with the previous secret); the epoch (hours since
//! the UNIX epoch) picks a per-hour sealing key, so no key ever sees close to
//! 2^32 random nonces. Associated data: a purpose label, the sandbox, the
//! record identity (the session id for values, the token's own index digest
//! for a sealed current token), the version for values, and the 8-byte
//! header.

use std::collections::HashMap;
use std::sync::Arc;

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine as _;
use parking_lot::Mutex;
use xems_core::{Error, IndexDigest, IndexKey, KeyDeriver, KeyId, Keyring, Result, SealKey, Token};
use zeroize::Zeroizing;

/// The salt of every derivation in this crate.
const SALT: &[u8] = b"xems/v1/redis";

/// How long one sealing key is used.
const EPOCH_MS: u64 = 3_600_000;

/// Bytes of the sealed-blob header.
const HEADER: usize = 8;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of a minted token: routing byte, selector, 256-bit verifier.
const TOKEN_BYTES: usize = 1 + 16 + 32;
/// Characters of a minted token.
pub(crate) const MINTED_LEN: usize = 66;

/// What a sealing key is for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Purpose {
    Value,
    Token,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Value => "redis-value",
            Purpose::Token => "redis-token",
        }
    }
}

/// The derivers of every secret of the keyring, current first.
pub(crate) struct Secrets {
    derivers: Vec<(KeyId, KeyDeriver)>,
    /// Subjects hash under one store-wide key (of the current secret), so a
    /// subject survives migration between sandboxes.
    subject: Vec<IndexKey>,
}

impl Secrets {
    pub(crate) fn new(keyring: &Keyring) -> Self {
        let derivers: Vec<_> = keyring.iter().map(|s| (s.key_id(), KeyDeriver::new(s, SALT))).collect();
        let subject = derivers.iter().map(|(_, d)| d.index_key("subject", "*")).collect();
        Secrets { derivers, subject }
    }

    /// The digest of a subject under each secret, current first, as key-name
    /// text.
    pub(crate) fn subject_digests(&self, subject: &str) -> Vec<String> {
        self.subject.iter().map(|k| b64(&k.digest(subject.as_bytes()).index())).collect()
    }

    pub(crate) fn sandbox(&self, name: &str) -> SandboxKeys {
        SandboxKeys {
            name: name.into(),
            index: self.derivers.iter().map(|(_, d)| d.index_key("index", name)).collect(),
            selectors: self
                .derivers
                .iter()
                .map(|(_, d)| Aes256::new(GenericArray::from_slice(&d.derive("redis-selector", name)[..])))
                .collect(),
            ids: self.derivers.iter().map(|(id, _)| *id).collect(),
            derivers: self.derivers.iter().map(|(id, d)| (*id, d.derive("redis-root", name))).collect(),
            seal: Mutex::new(HashMap::new()),
        }
    }
}

/// The keys of one sandbox.
pub(crate) struct SandboxKeys {
    name: Box<str>,
    /// Index keys, one per secret, current first.
    index: Vec<IndexKey>,
    /// Selector keys of minted tokens, one per secret, current first.
    selectors: Vec<Aes256>,
    ids: Vec<KeyId>,
    /// Per-secret roots of the epoch sealing keys.
    derivers: Vec<(KeyId, Zeroizing<[u8; 32]>)>,
    /// Sealing keys already built, by (purpose, key id, epoch).
    seal: Mutex<HashMap<(Purpose, u32, u32), Arc<SealKey>>>,
}

/// Keys built and cached at most; beyond that the cache starts over (a few
/// epochs of two purposes and a handful of secrets fit easily).
const SEAL_CACHE: usize = 64;

impl SandboxKeys {
    /// The digest of an address under each secret, current first.
    pub(crate) fn digests(&self, address: &[u8]) -> Vec<IndexDigest> {
        self.index.iter().map(|k| k.digest(address)).collect()
    }

    /// The digest of an address under the current secret.
    pub(crate) fn current_digest(&self, address: &[u8]) -> IndexDigest {
        self.index[0].digest(address)
    }

    /// The digest of an address under the `i`th secret (current first).
    pub(crate) fn digest_under(&self, i: usize, address: &[u8]) -> IndexDigest {
        self.index[i].digest(address)
    }

    /// Mints a token naming the session whose id is `sid` (8 bytes, the
    /// first its routing byte), under the current secret.
    pub(crate) fn mint(&self, sid: [u8; 8]) -> Token {
        let mut block = GenericArray::from([0u8; 16]);
        block[..8].copy_from_slice(&sid);
        self.selectors[0].encrypt_block(&mut block);
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        raw[0] = sid[0];
        raw[1..17].copy_from_slice(&block);
        xems_core::random_bytes(&mut raw[17..]);
        let mut text = Zeroizing::new([0u8; MINTED_LEN]);
        B64.encode_slice(&raw[..], &mut text[..]).expect("49 bytes encode to 66 characters");
        let text = std::str::from_utf8(&text[..]).expect("base64 is ASCII");
        Token::from_string(text.to_owned())
    }

    /// The session a token minted by this store names, and which secret
    /// (index into the keyring, current first) minted it; `None` for
    /// anything else (caller keys, forgeries, other sandboxes' tokens).
    pub(crate) fn selected(&self, text: &str) -> Option<([u8; 8], usize)> {
        if text.len() != MINTED_LEN {
            return None;
        }
        // The first 24 characters decode to the routing byte, the selector
        // and one byte of the verifier.
        let mut raw = [0u8; 18];
        B64.decode_slice(&text.as_bytes()[..24], &mut raw).ok()?;
        for (i, key) in self.selectors.iter().enumerate() {
            let mut block = GenericArray::clone_from_slice(&raw[1..17]);
            key.decrypt_block(&mut block);
            if block[0] == raw[0] && block[8..].iter().all(|&b| b == 0) {
                let mut sid = [0u8; 8];
                sid.copy_from_slice(&block[..8]);
                return Some((sid, i));
            }
        }
        None
    }

    fn key(&self, purpose: Purpose, kid: u32, epoch: u32) -> Option<Arc<SealKey>> {
        let mut cache = self.seal.lock();
        if let Some(k) = cache.get(&(purpose, kid, epoch)) {
            return Some(k.clone());
        }
        let root = &self.derivers.iter().find(|(id, _)| id.get() == kid)?.1;
        let deriver = KeyDeriver::from_root(root, SALT);
        let key = Arc::new(deriver.seal_key(&format!("{}-{epoch}", purpose.label()), &self.name));
        if cache.len() >= SEAL_CACHE {
            cache.clear();
        }
        cache.insert((purpose, kid, epoch), key.clone());
        Some(key)
    }

    fn aad(&self, purpose: Purpose, id: &[u8], version: u64, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.name.len() + id.len());
        aad.extend_from_slice(purpose.label().as_bytes());
        aad.push(0);
        aad.push(self.name.len() as u8);
        aad.extend_from_slice(self.name.as_bytes());
        aad.push(id.len() as u8);
        aad.extend_from_slice(id);
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(header);
        aad
    }

    fn seal(&self, purpose: Purpose, now_ms: u64, id: &[u8], version: u64, plaintext: &[u8]) -> Vec<u8> {
        let kid = self.ids[0].get();
        let epoch = u32::try_from(now_ms / EPOCH_MS).unwrap_or(u32::MAX);
        let key = self.key(purpose, kid, epoch).expect("the current secret is in the keyring");
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&kid.to_be_bytes());
        header[4..].copy_from_slice(&epoch.to_be_bytes());
        let aad = self.aad(purpose, id, version, &header);
        let body = key.seal_random_nonce(&aad, plaintext);
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&body);
        out
    }

    fn open(&self, purpose: Purpose, id: &[u8], version: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < HEADER {
            return Err(Error::Integrity);
        }
        let (header, body) = sealed.split_at(HEADER);
        let kid = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let epoch = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        // A key id this keyring does not hold: written under a secret that
        // was retired from the keyring, or forged. Either way it cannot open.
        let key = self.key(purpose, kid, epoch).ok_or(Error::Integrity)?;
        let aad = self.aad(purpose, id, version, header);
        key.open_random_nonce(&aad, body).map_err(|_| Error::Integrity)
    }

    /// Seals a value of record `sid` at `version`.
    pub(crate) fn seal_value(&self, now_ms: u64, sid: &str, version: u64, value: &[u8]) -> Vec<u8> {
        self.seal(Purpose::Value, now_ms, sid.as_bytes(), version, value)
    }

    /// Opens a value of record `sid` at `version`.
    pub(crate) fn open_value(&self, sid: &str, version: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.open(Purpose::Value, sid.as_bytes(), version, sealed)
    }

    /// Seals a token whose index digest (key-name text) is `digest`.
    pub(crate) fn seal_token(&self, now_ms: u64, digest: &str, token: &Token) -> Vec<u8> {
        self.seal(Purpose::Token, now_ms, digest.as_bytes(), 0, token.expose().as_bytes())
    }

    /// Opens a sealed token and checks that it is the one whose digest is
    /// `digest` (under the secret that sealed it).
    pub(crate) fn open_token(&self, digest: &str, sealed: &[u8]) -> Result<Token> {
        let plain = self.open(Purpose::Token, digest.as_bytes(), 0, sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Integrity)?;
        let token = Token::from_string(text.to_owned());
        let matches = self.index.iter().any(|k| b64(&k.digest(text.as_bytes()).index()) == digest);
        if !matches {
            return Err(Error::Integrity);
        }
        Ok(token)
    }
}

/// Key-name text of a 16-byte digest: 22 URL-safe base64 characters.
pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use xems_core::MasterSecret;

    use super::*;

    fn keys(ring: &Keyring, sandbox: &str) -> SandboxKeys {
        Secrets::new(ring).sandbox(sandbox)
    }

    #[test]
    fn values_open_only_for_their_record_version_and_sandbox() {
        xems_testkit::logs::capture();
        let ring = Keyring::new(MasterSecret::generate());
        let a = keys(&ring, "a");
        let sealed = a.seal_value(1_000, "sid-1", 3, b"marker-plaintext");
        assert!(!sealed.windows(6).any(|w| w == b"marker"));
        assert_eq!(&**a.open_value("sid-1", 3, &sealed).unwrap(), b"marker-plaintext");
        assert!(a.open_value("sid-2", 3, &sealed).is_err(), "moved to another record");
        assert!(a.open_value("sid-1", 2, &sealed).is_err(), "rolled back");
        assert!(keys(&ring, "b").open_value("sid-1", 3, &sealed).is_err(), "moved to another sandbox");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(a.open_value("sid-1", 3, &t).is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn nodes_sharing_a_secret_share_keys_and_rotation_keeps_old_records() {
        xems_testkit::logs::capture();
        let old = MasterSecret::generate();
        let node_a = keys(&Keyring::new(old.clone()), "s");
        let node_b = keys(&Keyring::new(old.clone()), "s");
        let sealed = node_a.seal_value(5, "id", 1, b"v");
        assert_eq!(&**node_b.open_value("id", 1, &sealed).unwrap(), b"v");
        assert_eq!(node_a.current_digest(b"t").index(), node_b.current_digest(b"t").index());
        // After a secret rotation, old records still open; new ones use the new secret.
        let rotated = keys(&Keyring::new(MasterSecret::generate()).with_previous(old).unwrap(), "s");
        assert_eq!(&**rotated.open_value("id", 1, &sealed).unwrap(), b"v");
        let fresh = rotated.seal_value(5, "id", 1, b"w");
        assert!(node_a.open_value("id", 1, &fresh).is_err());
        assert_eq!(rotated.digests(b"t")[1].index(), node_a.current_digest(b"t").index());
    }

    #[test]
    fn epochs_use_different_keys_and_old_epochs_still_open() {
        xems_testkit::logs::capture();
        let ring = Keyring::new(MasterSecret::generate());
        let a = keys(&ring, "a");
        let s1 = a.seal_value(0, "id", 1, b"v");
        let s2 = a.seal_value(EPOCH_MS * 7, "id", 1, b"v");
        assert_ne!(s1[4..8], s2[4..8]);
        assert_eq!(&**a.open_value("id", 1, &s1).unwrap(), b"v");
        assert_eq!(&**a.open_value("id", 1, &s2).unwrap(), b"v");
    }

    #[test]
    fn minted_tokens_name_their_session_under_their_secret_only() {
        xems_testkit::logs::capture();
        let old = MasterSecret::generate();
        let ring = Keyring::new(old.clone());
        let a = keys(&ring, "a");
        let sid = [0x3f, 1, 2, 3, 4, 5, 6, 7];
        let t = a.mint(sid);
        assert_eq!(t.expose().len(), MINTED_LEN);
        assert_eq!(xems_core::route_of(t.expose()), 0x3f, "the routing byte is the session's");
        assert_eq!(a.selected(t.expose()), Some((sid, 0)));
        // Two tokens of one session share the selector, never the verifier.
        let u = a.mint(sid);
        // (17 bytes are 22 characters and 4 bits of the 23rd.)
        assert_eq!(t.expose()[..22], u.expose()[..22]);
        assert_ne!(t.expose()[23..], u.expose()[23..]);
        // Another sandbox, another secret, a changed routing byte, a caller
        // key of the same length: none names a session.
        assert_eq!(keys(&ring, "b").selected(t.expose()), None);
        assert_eq!(keys(&Keyring::new(MasterSecret::generate()), "a").selected(t.expose()), None);
        let mut moved = t.expose().as_bytes().to_vec();
        moved[0] = if moved[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.selected(std::str::from_utf8(&moved).unwrap()), None);
        assert_eq!(a.selected(&"A".repeat(MINTED_LEN)), None);
        assert_eq!(a.selected(&"!".repeat(MINTED_LEN)), None);
        assert_eq!(a.selected(Token::mint(3).expose()), None);
        // After a secret rotation the old token is still recognized, as the
        // previous secret's.
        let rotated = keys(&Keyring::new(MasterSecret::generate()).with_previous(old).unwrap(), "a");
        assert_eq!(rotated.selected(t.expose()), Some((sid, 1)));
        assert_eq!(
            rotated.digest_under(1, t.expose().as_bytes()).index(),
            a.current_digest(t.expose().as_bytes()).index()
        );
    }

    #[test]
    fn sealed_tokens_are_bound_to_their_digest() {
        xems_testkit::logs::capture();
        let ring = Keyring::new(MasterSecret::generate());
        let a = keys(&ring, "a");
        let t = Token::mint(3);
        let d = b64(&a.current_digest(t.expose().as_bytes()).index());
        let sealed = a.seal_token(9, &d, &t);
        assert_eq!(a.open_token(&d, &sealed).unwrap(), t);
        let other = b64(&a.current_digest(b"other").index());
        assert!(a.open_token(&other, &sealed).is_err());
        let text = t.expose().as_bytes();
        assert!(!sealed.windows(8).any(|w| text.windows(8).any(|x| x == w)));
    }
}
