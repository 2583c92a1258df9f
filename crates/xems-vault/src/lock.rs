//! One owner per vault: an exclusive `flock(2)` on `LOCK`, which holds the
//! owner's PID so that a second process can say who has it. The kernel
//! releases the lock when the owner exits, however it exits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};

use crate::error::{Result, VaultError};

/// The name of the lock file in a vault directory.
pub(crate) const LOCK_NAME: &str = "LOCK";

/// A held vault lock (released on drop).
#[derive(Debug)]
pub(crate) struct VaultLock {
    _file: File,
}

/// Takes the lock of the vault in `dir`.
///
/// # Errors
///
/// [`VaultError::InUse`] when another process (or another open of this
/// process) holds it.
pub(crate) fn lock(dir: &Path) -> Result<VaultLock> {
    let path = dir.join(LOCK_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(VaultError::io(format!("cannot open the lock file {}", path.display())))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Err(VaultError::InUse { pid: read_pid(&mut file), path }),
        Err(e) => {
            return Err(VaultError::Io {
                context: format!("cannot lock {}", path.display()),
                source: std::io::Error::from(e),
            });
        }
    }
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        writeln!(f, "{}", std::process::id())?;
        f.sync_data()
    };
    write(&mut file).map_err(VaultError::io(format!("cannot write {}", path.display())))?;
    Ok(VaultLock { _file: file })
}

/// The PID in a lock file; the owner writes it right after locking, so an
/// empty file is read again for a moment.
fn read_pid(file: &mut File) -> u32 {
    for _ in 0..20 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut text).is_ok()
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_owner() {
        xems_testkit::logs::capture();
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        match lock(dir.path()) {
            Err(VaultError::InUse { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        drop(held);
        assert!(lock(dir.path()).is_ok());
    }
}
