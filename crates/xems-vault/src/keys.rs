//! The vault's key hierarchy.
//!
//! ```text
//! master secret --HKDF(salt = header salt, info = "xems/v1/vault-kek/" || binding)--> KEK (per file)
//! KEK --AES-256-GCM wrap--> data root (32, one per vault) || file key (32, one per file)
//! data root --HKDF(salt = "xems/v1/vault", info = "xems/v1/engine-root/*")--> the engine's key root
//! file key = the AES-256-GCM key of the file's records
//! ```
//!
//! `binding` is `"unbound"`, or for a hardware-bound vault the hex of
//! SHA-256("xems/v1/vault/machine-key" || machine id). Rotating the master
//! secret re-wraps the same data root, so the engine indexes tokens the same
//! way; file keys are fresh in every new file.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use xems_core::{KeyDeriver, Keyring, MasterSecret, SealKey};
use zeroize::Zeroizing;

use crate::error::{Result, VaultError};
use crate::format::{FLAG_HARDWARE_BOUND, FileKind, Header, WRAP_AAD_LEN};

/// A machine identity for hardware binding.
#[derive(Clone)]
pub struct MachineId(Zeroizing<Vec<u8>>);

impl MachineId {
    /// The identity of this machine: `/etc/machine-id` (or
    /// `/var/lib/dbus/machine-id`).
    ///
    /// # Errors
    ///
    /// Neither file is readable or both are empty.
    pub fn of_this_machine() -> Result<Self> {
        for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
            if let Ok(text) = std::fs::read_to_string(Path::new(path)) {
                let id = text.trim();
                if !id.is_empty() {
                    return Ok(MachineId(Zeroizing::new(id.as_bytes().to_vec())));
                }
            }
        }
        Err(VaultError::Config(
            "hardware binding needs a machine identity, but /etc/machine-id and /var/lib/dbus/machine-id are \
             missing or empty (run systemd-machine-id-setup or dbus-uuidgen --ensure)"
                .into(),
        ))
    }

    /// An explicit identity (tests simulate another machine with it).
    pub fn from_bytes(id: &[u8]) -> Self {
        MachineId(Zeroizing::new(id.to_vec()))
    }

    /// The public tag written in headers: tells "another machine" from
    /// "wrong secret" without revealing the identity.
    pub(crate) fn tag(&self, vault_id: &[u8; 16]) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(b"xems/v1/vault/machine");
        h.update(vault_id);
        h.update(&*self.0);
        let d = h.finalize();
        d[..8].try_into().expect("8 bytes")
    }

    fn binding(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"xems/v1/vault/machine-key");
        h.update(&*self.0);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MachineId(<redacted>)")
    }
}

/// The keys of one file: the vault's data root and the file's record key.
pub(crate) struct FileKeys {
    pub(crate) data_root: Zeroizing<[u8; 32]>,
    pub(crate) record_key: SealKey,
}

impl fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKeys(<redacted>)")
    }
}

fn kek(secret: &MasterSecret, header_salt: &[u8; 32], machine: Option<&MachineId>) -> SealKey {
    let binding = machine.map_or_else(|| "unbound".to_owned(), MachineId::binding);
    KeyDeriver::new(secret, header_salt).seal_key("vault-kek", &binding)
}

/// Fields of a new file's header.
pub(crate) struct NewFile<'a> {
    pub(crate) kind: FileKind,
    pub(crate) shards: u16,
    pub(crate) vault_id: [u8; 16],
    pub(crate) generation: u64,
    pub(crate) link: [u8; 16],
    pub(crate) time: u64,
    pub(crate) data_root: &'a [u8; 32],
    pub(crate) machine: Option<&'a MachineId>,
}

/// Builds a new file's header with fresh random ids, salt and file key,
/// wrapped under `secret`. Returns the header and the file's keys.
pub(crate) fn new_file(secret: &MasterSecret, f: &NewFile<'_>) -> (Header, FileKeys) {
    let mut file_id = [0u8; 16];
    xems_core::random_bytes(&mut file_id);
    let mut salt = [0u8; 32];
    xems_core::random_bytes(&mut salt);
    let mut wrap_nonce = [0u8; 12];
    xems_core::random_bytes(&mut wrap_nonce);
    let mut file_key = Zeroizing::new([0u8; 32]);
    xems_core::random_bytes(&mut file_key[..]);
    let mut header = Header {
        kind: f.kind,
        flags: if f.machine.is_some() { FLAG_HARDWARE_BOUND } else { 0 },
        shards: f.shards,
        key_id: secret.key_id().get(),
        vault_id: f.vault_id,
        file_id,
        generation: f.generation,
        link: f.link,
        time: f.time,
        machine_tag: f.machine.map_or([0; 8], |m| m.tag(&f.vault_id)),
        salt,
        wrap_nonce,
        wrapped: [0; 80],
    };
    let aad: [u8; WRAP_AAD_LEN] = header.aad();
    let mut plain = Zeroizing::new([0u8; 64]);
    plain[..32].copy_from_slice(f.data_root);
    plain[32..].copy_from_slice(&file_key[..]);
    let tag = kek(secret, &header.salt, f.machine).seal_detached(wrap_nonce, &aad, &mut plain[..]);
    header.wrapped[..64].copy_from_slice(&plain[..]);
    header.wrapped[64..].copy_from_slice(&tag);
    let keys = FileKeys { data_root: Zeroizing::new(*f.data_root), record_key: SealKey::new(&file_key) };
    (header, keys)
}

/// Unwraps a file's keys with the keyring's secret of the header's key id.
///
/// # Errors
///
/// No secret has that key id, or the wrap does not authenticate (a wrong
/// secret with a colliding id, another machine, or a damaged header).
pub(crate) fn open_file(
    header: &Header,
    keyring: &Keyring,
    machine: Option<&MachineId>,
    file: &str,
) -> Result<FileKeys> {
    let wrong_secret = || VaultError::WrongSecret {
        file: file.to_owned(),
        found: header.key_id,
        given: keyring.iter().map(|s| s.key_id().to_string()).collect::<Vec<_>>().join(", "),
    };
    let secret = keyring.find(xems_core::KeyId::from_u32(header.key_id)).ok_or_else(wrong_secret)?;
    let bound = header.hardware_bound();
    if bound {
        let Some(m) = machine else {
            return Err(VaultError::Config(format!("{file} is hardware-bound but no machine identity is available")));
        };
        if m.tag(&header.vault_id) != header.machine_tag {
            return Err(VaultError::OtherMachine { file: file.to_owned() });
        }
    } else if header.machine_tag != [0; 8] {
        return Err(VaultError::corrupt(file, 88, "a machine tag on a vault that is not hardware-bound"));
    }
    let mut plain = Zeroizing::new([0u8; 80]);
    plain.copy_from_slice(&header.wrapped);
    let aad = header.aad();
    let key = kek(secret, &header.salt, if bound { machine } else { None });
    let opened = key.open_in_place(header.wrap_nonce, &aad, &mut plain[..]).map_err(|_| {
        // The key id matched: a different secret with the same 32-bit id is
        // possible but unlikely; damage to the header is the other cause.
        VaultError::corrupt(
            file,
            0,
            "the header failed authentication (it was changed, or the secret is wrong: \
             wrong secret or not a xems vault)",
        )
    })?;
    let mut data_root = Zeroizing::new([0u8; 32]);
    data_root.copy_from_slice(&opened[..32]);
    let mut file_key = Zeroizing::new([0u8; 32]);
    file_key.copy_from_slice(&opened[32..64]);
    Ok(FileKeys { data_root, record_key: SealKey::new(&file_key) })
}

/// The engine's key root, derived from the vault's data root.
pub(crate) fn engine_root(data_root: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    KeyDeriver::from_root(data_root, b"xems/v1/vault").derive("engine-root", "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nf<'a>(root: &'a [u8; 32], machine: Option<&'a MachineId>) -> NewFile<'a> {
        NewFile {
            kind: FileKind::Journal,
            shards: 64,
            vault_id: [1; 16],
            generation: 1,
            link: [0; 16],
            time: 5,
            data_root: root,
            machine,
        }
    }

    #[test]
    fn wrap_round_trip_and_failures() {
        xems_testkit::logs::capture();
        let s = MasterSecret::generate();
        let root = [9u8; 32];
        let (h, k) = new_file(&s, &nf(&root, None));
        let ring = Keyring::new(s.clone());
        let opened = open_file(&h, &ring, None, "f").unwrap();
        assert_eq!(*opened.data_root, *k.data_root);
        let other = Keyring::new(MasterSecret::generate());
        let err = open_file(&h, &other, None, "f").unwrap_err();
        assert!(err.to_string().starts_with("wrong secret or not a xems vault"), "{err}");
        let mut bad = h.clone();
        bad.generation = 2;
        assert!(open_file(&bad, &ring, None, "f").unwrap_err().is_corruption());
    }

    #[test]
    fn hardware_binding() {
        xems_testkit::logs::capture();
        let s = MasterSecret::generate();
        let root = [9u8; 32];
        let here = MachineId::from_bytes(b"machine-a");
        let there = MachineId::from_bytes(b"machine-b");
        let (h, _) = new_file(&s, &nf(&root, Some(&here)));
        let ring = Keyring::new(s);
        assert!(open_file(&h, &ring, Some(&here), "f").is_ok());
        assert!(matches!(open_file(&h, &ring, Some(&there), "f"), Err(VaultError::OtherMachine { .. })));
    }
}
