//! Opening, recovering, compacting and closing a vault.
//!
//! Files and their order (see `docs/VAULT-FORMAT.md`):
//!
//! - journal segments `journal.<g>` chain: each header links to the
//!   previous segment's file id, and each segment's frame 0 (a link frame)
//!   records how many frames the previous segment has, so a segment cut
//!   short at a frame boundary is detected when another follows it;
//! - a snapshot `snapshot.<g>` is the state at some moment after journal
//!   `<g>` began (its header links to that journal's file id). Recovery
//!   loads the newest snapshot, then replays every journal from `<g>` on.
//!   Changes are state-setting, so replaying changes older than the
//!   snapshot on top of it is harmless;
//! - compaction: create journal `<g+1>`, switch the writer to it, take the
//!   engine's images, write `snapshot.<g+1>.tmp`, fsync, rename, then delete
//!   every file of a generation below `<g+1>`. A crash at any point leaves a
//!   set of files that recovers to the same state;
//! - every open starts a new journal segment with a fresh file key: a
//!   segment is never appended to by two processes, so a frame sequence
//!   number (the nonce) is never reused under a key, even after a torn tail
//!   was cut off.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use xems_core::{Clock, KeyId, Keyring, SealKey, SystemClock};
use xems_engine::{Engine, Image, Journal};
use zeroize::Zeroizing;

use crate::codec::{self, JournalRec, Op, OwnedChange};
use crate::error::{Result, VaultError};
use crate::format::{
    FRAME_HEADER_LEN, FileKind, HEADER_LEN, TAG_LEN, file_name, frame_header, parse_file_name, record_aad, record_nonce,
};
use crate::journal::{Core, FsyncPolicy, Handle, Sealer, Segment};
use crate::keys::{self, FileKeys, MachineId, NewFile};
use crate::lock::{self, LOCK_NAME, VaultLock};
use crate::reader::{Found, FrameReader, Next, read_header};

/// Plaintext bytes per snapshot block (one AES-GCM tag each).
const BLOCK_TARGET: usize = 64 * 1024;

/// How a vault is opened.
#[derive(Clone)]
#[must_use]
pub struct VaultOptions {
    keyring: Keyring,
    fsync: FsyncPolicy,
    hardware_bind: bool,
    machine: Option<MachineId>,
    shards: usize,
    clock: Arc<dyn Clock>,
    compact_min_bytes: u64,
    compact_ratio: f64,
    create: bool,
}

impl fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultOptions")
            .field("key_ids", &self.keyring.iter().map(|s| s.key_id()).collect::<Vec<_>>())
            .field("fsync", &self.fsync)
            .field("hardware_bind", &self.hardware_bind)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl VaultOptions {
    /// Options with the secrets of `keyring` (new files are wrapped under its
    /// current secret; previous ones only read older files), fsync
    /// `everysec`, no hardware binding, 64 shards for a new vault.
    pub fn new(keyring: Keyring) -> Self {
        VaultOptions {
            keyring,
            fsync: FsyncPolicy::default(),
            hardware_bind: false,
            machine: None,
            shards: 64,
            clock: Arc::new(SystemClock),
            compact_min_bytes: 64 << 20,
            compact_ratio: 1.0,
            create: true,
        }
    }

    /// The fsync policy.
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    /// Binds a new vault to this machine (its keys then mix in the machine
    /// identity). An existing vault keeps its binding; asking to bind an
    /// unbound one is an error (use [`rewrite`] to change it).
    pub fn hardware_bind(mut self, on: bool) -> Self {
        self.hardware_bind = on;
        self
    }

    /// The machine identity to use instead of this machine's (tests).
    pub fn machine_id(mut self, id: MachineId) -> Self {
        self.machine = Some(id);
        self
    }

    /// The engine's shard count, recorded in a new vault (an existing vault
    /// keeps its own: see [`Opened::shards`]).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// The clock the offline tools use to drop expired records (the live
    /// vault uses the engine's clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Automatic compaction starts when the journal has grown by more than
    /// `max(min_bytes, ratio × snapshot size)` since the last snapshot
    /// (default 64 MiB and 1.0).
    pub fn compact_after(mut self, min_bytes: u64, ratio: f64) -> Self {
        self.compact_min_bytes = min_bytes;
        self.compact_ratio = ratio;
        self
    }

    /// Whether opening a path without a vault creates one (default true).
    pub fn create(mut self, on: bool) -> Self {
        self.create = on;
        self
    }

    fn machine(&self) -> Result<MachineId> {
        match &self.machine {
            Some(m) => Ok(m.clone()),
            None => MachineId::of_this_machine(),
        }
    }
}

/// A journal's changes folded by record, in order.
#[derive(Default)]
struct Fold {
    /// Sandbox names, interned: records are keyed by (name id, family).
    names: HashMap<String, u32>,
    map: HashMap<(u32, u64), Folded>,
    changes: u64,
}

enum Folded {
    /// Created in the journal: its state at the end of the journal.
    Present(Image),
    /// Removed in the journal.
    Removed,
    /// Changes to a record that was created before the journal began (its
    /// image is in the snapshot).
    Pending(Vec<OwnedChange>),
}

impl Fold {
    fn apply(&mut self, ch: OwnedChange) {
        self.changes += 1;
        let next = self.names.len() as u32;
        let id = match self.names.get(ch.sandbox.as_str()) {
            Some(id) => *id,
            None => *self.names.entry(ch.sandbox.clone()).or_insert(next),
        };
        let key = (id, ch.family);
        match ch.op {
            Op::Put { .. } => {
                let OwnedChange { sandbox, family, op } = ch;
                let Op::Put {
                    route,
                    slot,
                    key: k,
                    caller_key,
                    version,
                    created_at,
                    idle_deadline,
                    abs_deadline,
                    idle_ttl_ms,
                    subject,
                    value,
                } = op
                else {
                    unreachable!("a put")
                };
                let mut img = Image::from_put(&xems_engine::Put {
                    sandbox: &sandbox,
                    family,
                    route,
                    slot,
                    key: k,
                    caller_key,
                    version,
                    value: &[],
                    created_at,
                    idle_deadline,
                    abs_deadline,
                    idle_ttl_ms,
                    subject,
                });
                img.value = value;
                self.map.insert(key, Folded::Present(img));
            }
            Op::Remove => {
                self.map.insert(key, Folded::Removed);
            }
            _ => match self.map.entry(key) {
                Entry::Occupied(mut e) => match e.get_mut() {
                    Folded::Present(img) => img.apply(&ch.as_change()),
                    Folded::Removed => {}
                    Folded::Pending(v) => v.push(ch),
                },
                Entry::Vacant(e) => {
                    e.insert(Folded::Pending(vec![ch]));
                }
            },
        }
    }

    /// A snapshot image brought up to date by the journal, or `None` if the
    /// journal removed it.
    fn merge_snapshot(&mut self, mut img: Image) -> Option<Image> {
        if self.map.is_empty() {
            return Some(img);
        }
        let Some(id) = self.names.get(img.sandbox.as_str()) else { return Some(img) };
        match self.map.remove(&(*id, img.family)) {
            None => Some(img),
            Some(Folded::Present(p)) => Some(p),
            Some(Folded::Removed) => None,
            Some(Folded::Pending(changes)) => {
                for c in &changes {
                    img.apply(&c.as_change());
                }
                Some(img)
            }
        }
    }
}

/// Why a vault is scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// To serve: may create the vault, prepares a new journal segment.
    Live,
    /// To look at: changes nothing.
    ReadOnly,
    /// To rewrite (compact, rekey): changes files, creates no vault.
    Rewrite,
}

/// A cut-off incomplete last frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornTail {
    /// The journal file.
    pub file: String,
    /// Where the incomplete frame starts (the file is cut there).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
}

/// What a scan of a vault found.
#[derive(Debug)]
struct JournalFile {
    found: Found,
    frames: u64,
    /// Bytes of complete frames (the file is cut here on a torn tail).
    valid_len: u64,
}

/// A vault opened and verified up to its snapshot, ready to restore an
/// engine ([`Opened::recover`]) or to be read by the tools.
pub struct Opened {
    dir: PathBuf,
    lock: VaultLock,
    opts: VaultOptions,
    machine: Option<MachineId>,
    vault_id: [u8; 16],
    data_root: Zeroizing<[u8; 32]>,
    shards: u16,
    bound: bool,
    snapshot: Option<(Found, FileKeys)>,
    journals: Vec<JournalFile>,
    fold: Fold,
    torn: Option<TornTail>,
    obsolete: Vec<PathBuf>,
    files: Vec<FileInfo>,
    prepared: Option<Prepared>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("dir", &self.dir)
            .field("shards", &self.shards)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// One file of a vault, as the tools show it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileInfo {
    /// The file name.
    pub name: String,
    /// Journal or snapshot.
    pub kind: FileKind,
    /// Its generation.
    pub generation: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The key id of the secret its keys are wrapped under.
    pub key_id: KeyId,
    /// Whether its keys mix in a machine identity.
    pub hardware_bound: bool,
    /// Records (frames) in it, when read.
    pub records: u64,
}

/// The new journal segment an open will write to, prepared before recovery.
struct Prepared {
    tmp: PathBuf,
    path: PathBuf,
    segment: Arc<Segment>,
    core: Arc<Core>,
    /// Renamed into place: no longer removed on drop.
    placed: bool,
}

impl Prepared {
    fn place(&mut self, dir: &Path) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path)
            .map_err(VaultError::io(format!("cannot rename {}", self.tmp.display())))?;
        self.placed = true;
        fsync_dir(dir)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.placed {
            // A failed open leaves nothing behind.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What recovery did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// Records restored into the engine.
    pub restored: u64,
    /// Records whose deadline had passed (dropped).
    pub expired: u64,
    /// Records read from the snapshot.
    pub snapshot_records: u64,
    /// Journal changes replayed.
    pub journal_changes: u64,
    /// A torn tail that was cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// How long recovery took.
    pub elapsed: Duration,
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(VaultError::io(format!("cannot sync the directory {}", dir.display())))
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    xems_core::random_bytes(&mut b);
    b
}

fn now_ms(clock: &dyn Clock) -> u64 {
    clock.now().as_millis()
}

impl Opened {
    /// Locks the vault at `dir` (creating it if allowed and missing), reads
    /// and authenticates every file header and every journal record, and
    /// prepares the journal segment this process will write.
    ///
    /// Nothing is changed on disk until [`recover`](Self::recover) succeeds
    /// (apart from the lock file and a `.tmp` segment).
    ///
    /// # Errors
    ///
    /// The vault is in use, a secret is wrong, a file is damaged, the vault
    /// is bound to another machine, or I/O failed.
    pub fn open(dir: &Path, opts: VaultOptions) -> Result<Self> {
        Self::scan(dir, opts, Mode::Live)
    }

    /// Like [`open`](Self::open), but changes nothing on disk (the tools).
    ///
    /// # Errors
    ///
    /// See [`open`](Self::open); also a path without a vault.
    pub fn open_read_only(dir: &Path, opts: VaultOptions) -> Result<Self> {
        Self::scan(dir, opts.create(false), Mode::ReadOnly)
    }

    fn scan(dir: &Path, opts: VaultOptions, mode: Mode) -> Result<Self> {
        if opts.keyring.iter().count() == 0 {
            return Err(VaultError::Config("a vault needs a secret".into()));
        }
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(VaultError::Config(format!(
                    "{} is a file: --persist takes a directory (the vault's files are created in it)",
                    dir.display()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.create => {
                std::fs::create_dir_all(dir)
                    .map_err(VaultError::io(format!("cannot create the vault directory {}", dir.display())))?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fsync_dir(parent)?;
                }
            }
            Err(e) => return Err(VaultError::io(format!("cannot open the vault {}", dir.display()))(e)),
        }
        let lock = lock::lock(dir)?;
        let mut found = Vec::new();
        let mut others = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(VaultError::io(format!("cannot list the vault {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(VaultError::io(format!("cannot list the vault {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == LOCK_NAME {
                continue;
            }
            if let Some(base) = name.strip_suffix(".tmp")
                && parse_file_name(base).is_some()
            {
                if mode != Mode::ReadOnly {
                    tracing::warn!(file = %name, "vault: removing an unfinished file left by an interrupted write");
                    std::fs::remove_file(entry.path())
                        .map_err(VaultError::io(format!("cannot remove {}", entry.path().display())))?;
                }
                continue;
            }
            match parse_file_name(&name) {
                Some((kind, generation)) => found.push((kind, generation, name, entry.path())),
                None => others.push(name),
            }
        }
        if found.is_empty() {
            if !others.is_empty() {
                return Err(VaultError::NotAVaultDir(dir.to_path_buf()));
            }
            if mode != Mode::Live {
                return Err(VaultError::Config(format!("{} holds no xems vault", dir.display())));
            }
            return Self::fresh(dir, lock, opts);
        }
        for name in &others {
            tracing::warn!(file = %name, "vault: ignoring a file that is not part of the vault");
        }
        found.sort_by_key(|(kind, generation, ..)| (*generation, *kind == FileKind::Journal));

        // Headers: authenticate every file, check they belong together.
        let mut machine = None;
        let mut headers = Vec::new();
        for (kind, generation, name, path) in found {
            let (header, size) = read_header(&path, &name)?;
            if header.kind != kind || header.generation != generation {
                return Err(VaultError::corrupt(&name, 10, "the header does not match the file name"));
            }
            if header.hardware_bound() && machine.is_none() {
                machine = Some(opts.machine()?);
            }
            let keys = keys::open_file(&header, &opts.keyring, machine.as_ref(), &name)?;
            headers.push((Found { path, name, header, size }, keys));
        }
        let (first, first_keys) = &headers[0];
        let vault_id = first.header.vault_id;
        let shards = first.header.shards;
        let bound = first.header.hardware_bound();
        let data_root = Zeroizing::new(*first_keys.data_root);
        for (f, k) in &headers {
            if f.header.vault_id != vault_id || !bool::from(subtle_eq(&k.data_root, &data_root)) {
                return Err(VaultError::corrupt(&f.name, 24, "this file belongs to another vault"));
            }
            if f.header.shards != shards {
                return Err(VaultError::corrupt(&f.name, 12, "the shard count differs from the other files"));
            }
            if f.header.hardware_bound() != bound {
                return Err(VaultError::corrupt(&f.name, 11, "the hardware binding differs from the other files"));
            }
        }
        if mode == Mode::Live && opts.hardware_bind && !bound {
            return Err(VaultError::Config(format!(
                "the vault at {} is not hardware-bound; bind it with `xems vault rekey --hardware-bind`",
                dir.display()
            )));
        }

        // The newest snapshot, and the journals from its generation on.
        let mut files = Vec::new();
        let snap_gen =
            headers.iter().filter(|(f, _)| f.header.kind == FileKind::Snapshot).map(|(f, _)| f.header.generation).max();
        let mut obsolete = Vec::new();
        let mut snapshot = None;
        let mut journals = Vec::new();
        for (f, k) in headers {
            let generation = f.header.generation;
            if snap_gen.is_some_and(|s| generation < s) {
                obsolete.push(f.path.clone());
                continue;
            }
            match f.header.kind {
                FileKind::Snapshot => snapshot = Some((f, k)),
                FileKind::Journal => journals.push((f, k)),
            }
        }
        if journals.is_empty() {
            return Err(VaultError::corrupt(
                &file_name(FileKind::Journal, snap_gen.unwrap_or(1)),
                0,
                "the journal segment is missing",
            ));
        }
        if let Some((s, _)) = &snapshot {
            let j = &journals[0].0;
            if j.header.generation != s.header.generation || j.header.file_id != s.header.link {
                return Err(VaultError::corrupt(
                    &s.name,
                    64,
                    "the journal segment this snapshot pairs with is missing",
                ));
            }
        } else if journals[0].0.header.link != [0; 16] {
            return Err(VaultError::corrupt(
                &journals[0].0.name,
                64,
                "an earlier journal segment or the snapshot is missing",
            ));
        }
        for w in journals.windows(2) {
            let (a, b) = (&w[0].0, &w[1].0);
            if b.header.generation != a.header.generation + 1 || b.header.link != a.header.file_id {
                return Err(VaultError::corrupt(
                    &b.name,
                    64,
                    format!("the journal segment before it ({}) is missing", a.name),
                ));
            }
        }

        // Read every journal record, in order.
        let mut fold = Fold::default();
        let mut torn = None;
        let mut read = Vec::new();
        let last = journals.len() - 1;
        let mut prev_frames: Option<u64> = None;
        for (i, (f, k)) in journals.into_iter().enumerate() {
            let mut r = FrameReader::new(&f.path, &f.name, &f.header, &k)?;
            loop {
                let seq = r.frames();
                let at = r.pos();
                match r.next()? {
                    Next::End => break,
                    Next::Torn(offset) => {
                        if i != last {
                            return Err(VaultError::corrupt(
                                &f.name,
                                offset,
                                "the last record is cut short, and a later journal segment follows",
                            ));
                        }
                        torn = Some(TornTail { file: f.name.clone(), offset, bytes: f.size - offset });
                        break;
                    }
                    Next::Frame(plain) => {
                        let rec = codec::decode_journal(plain)
                            .ok_or_else(|| VaultError::corrupt(&f.name, at, format!("record {seq} is malformed")))?;
                        match (seq, rec) {
                            (0, JournalRec::Link { prev_frames: p }) => {
                                if let Some(expected) = prev_frames
                                    && p != expected
                                {
                                    return Err(VaultError::corrupt(
                                        &f.name,
                                        at,
                                        format!(
                                            "the previous journal segment should hold {p} records but holds {expected}: it was cut short"
                                        ),
                                    ));
                                }
                            }
                            (0, _) => return Err(VaultError::corrupt(&f.name, at, "the first record is not a link")),
                            (_, JournalRec::Link { .. }) => {
                                return Err(VaultError::corrupt(
                                    &f.name,
                                    at,
                                    format!("record {seq} is a misplaced link"),
                                ));
                            }
                            (_, JournalRec::Change(ch)) => fold.apply(ch),
                        }
                    }
                }
            }
            prev_frames = Some(r.frames());
            let (frames, valid_len) = (r.frames(), r.pos());
            files.push(FileInfo {
                name: f.name.clone(),
                kind: FileKind::Journal,
                generation: f.header.generation,
                bytes: f.size,
                key_id: KeyId::from_u32(f.header.key_id),
                hardware_bound: f.header.hardware_bound(),
                records: frames,
            });
            read.push(JournalFile { found: f, frames, valid_len });
        }
        if let Some((s, _)) = &snapshot {
            files.insert(
                0,
                FileInfo {
                    name: s.name.clone(),
                    kind: FileKind::Snapshot,
                    generation: s.header.generation,
                    bytes: s.size,
                    key_id: KeyId::from_u32(s.header.key_id),
                    hardware_bound: s.header.hardware_bound(),
                    records: 0,
                },
            );
        }
        if let Some(t) = &torn {
            tracing::warn!(
                file = %t.file,
                offset = t.offset,
                bytes = t.bytes,
                "vault: the journal ends with an incomplete record (a crash in the middle of a write); it will be cut off"
            );
        }
        let mut opened = Opened {
            dir: dir.to_path_buf(),
            lock,
            opts,
            machine,
            vault_id,
            data_root,
            shards,
            bound,
            snapshot,
            journals: read,
            fold,
            torn,
            obsolete,
            files,
            prepared: None,
        };
        if mode == Mode::Live {
            let last = opened.journals.last().expect("at least one journal");
            let (generation, link, prev_frames) =
                (last.found.header.generation + 1, last.found.header.file_id, last.frames);
            let size: u64 = opened.journals.iter().map(|j| j.valid_len).sum();
            opened.prepared = Some(opened.prepare_segment(generation, link, prev_frames, size)?);
        }
        Ok(opened)
    }

    /// A new, empty vault.
    fn fresh(dir: &Path, lock: VaultLock, opts: VaultOptions) -> Result<Self> {
        let shards = u16::try_from(opts.shards).ok().filter(|s| s.is_power_of_two() && *s <= 256).ok_or_else(|| {
            VaultError::Config(format!("shards must be a power of two from 1 to 256, got {}", opts.shards))
        })?;
        let machine = if opts.hardware_bind { Some(opts.machine()?) } else { None };
        let mut data_root = Zeroizing::new([0u8; 32]);
        xems_core::random_bytes(&mut data_root[..]);
        tracing::info!(path = %dir.display(), key_id = %opts.keyring.current().key_id(), "vault: creating a new vault");
        let mut opened = Opened {
            dir: dir.to_path_buf(),
            lock,
            bound: machine.is_some(),
            machine,
            opts,
            vault_id: random16(),
            data_root,
            shards,
            snapshot: None,
            journals: Vec::new(),
            fold: Fold::default(),
            torn: None,
            obsolete: Vec::new(),
            files: Vec::new(),
            prepared: None,
        };
        opened.prepared = Some(opened.prepare_segment(1, [0; 16], 0, 0)?);
        Ok(opened)
    }

    fn new_file_keys(
        &self,
        kind: FileKind,
        generation: u64,
        link: [u8; 16],
        time: u64,
    ) -> (crate::format::Header, FileKeys) {
        keys::new_file(
            self.opts.keyring.current(),
            &NewFile {
                kind,
                shards: self.shards,
                vault_id: self.vault_id,
                generation,
                link,
                time,
                data_root: &self.data_root,
                machine: if self.bound { self.machine.as_ref() } else { None },
            },
        )
    }

    /// Writes `journal.<generation>.tmp` (header and link frame, synced)
    /// and builds the journal that appends to it.
    fn prepare_segment(
        &self,
        generation: u64,
        link: [u8; 16],
        prev_frames: u64,
        journal_bytes: u64,
    ) -> Result<Prepared> {
        let (header, keys) = self.new_file_keys(FileKind::Journal, generation, link, now_ms(&*self.opts.clock));
        let path = self.dir.join(file_name(FileKind::Journal, generation));
        let tmp = self.dir.join(format!("{}.tmp", file_name(FileKind::Journal, generation)));
        let mut sealer = Sealer { key: keys.record_key, vault_id: self.vault_id, file_id: header.file_id, seq: 0 };
        let mut bytes = header.encode().to_vec();
        sealer.link(&mut bytes, prev_frames);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&tmp)
            .map_err(VaultError::io(format!("cannot create {}", tmp.display())))?;
        (&file)
            .write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(VaultError::io(format!("cannot write {}", tmp.display())))?;
        let segment = Arc::new(Segment { file, path: path.clone(), generation, file_id: header.file_id });
        let core = Core::new(self.opts.fsync, segment.clone(), sealer, journal_bytes + bytes.len() as u64);
        Ok(Prepared { tmp, path, segment, core, placed: false })
    }

    /// The root of the engine's stable keys (pass it to
    /// `EngineBuilder::key_root`): derived from the vault's data root, so it
    /// stays the same across secret rotations.
    pub fn key_root(&self) -> Zeroizing<[u8; 32]> {
        keys::engine_root(&self.data_root)
    }

    /// The engine's shard count recorded in the vault (pass it to
    /// `EngineBuilder::shards`: snapshot records are stored by shard).
    pub fn shards(&self) -> usize {
        usize::from(self.shards)
    }

    /// The journal to give the engine (`EngineBuilder::journal`).
    ///
    /// # Panics
    ///
    /// On a vault opened read-only.
    pub fn journal(&self) -> Arc<dyn Journal> {
        Arc::new(Handle(self.prepared.as_ref().expect("a vault opened for writing").core.clone()))
    }

    /// The vault's files.
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// Whether the vault's keys mix in a machine identity.
    pub fn hardware_bound(&self) -> bool {
        self.bound
    }

    /// Streams the final state of every record (snapshot, then journal
    /// replay) to `sink`, dropping records expired at `now` (ms), unless
    /// `now` is `None`.
    fn replay(&mut self, now: Option<u64>, sink: &mut dyn FnMut(Image) -> Result<()>) -> Result<ReplayCounts> {
        let mut counts = ReplayCounts { journal_changes: self.fold.changes, ..ReplayCounts::default() };
        let live = |img: &Image| now.is_none_or(|n| n < img.idle_deadline.min(img.abs_deadline));
        if let Some((f, k)) = &self.snapshot {
            // One thread reads, authenticates and decodes blocks while this
            // one restores the previous ones.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Image>>(4);
            let fold = &mut self.fold;
            let (read, frames) = std::thread::scope(|scope| -> Result<(u64, u64)> {
                let reader = scope.spawn(move || read_snapshot(f, k, &tx));
                let mut sunk: Result<()> = Ok(());
                for images in rx.iter() {
                    if sunk.is_err() {
                        continue; // drain, so the reader finishes
                    }
                    for img in images {
                        counts.snapshot_records += 1;
                        if let Some(img) = fold.merge_snapshot(img) {
                            if live(&img) {
                                counts.live += 1;
                                if let Err(e) = sink(img) {
                                    sunk = Err(e);
                                    break;
                                }
                            } else {
                                counts.expired += 1;
                            }
                        }
                    }
                }
                let read = reader.join().map_err(|_| VaultError::Config("the snapshot reader panicked".into()))??;
                sunk?;
                Ok(read)
            })?;
            debug_assert_eq!(read, counts.snapshot_records);
            if let Some(info) = self.files.iter_mut().find(|i| i.name == f.name) {
                info.records = frames;
            }
        }
        let mut rest: Vec<Image> = std::mem::take(&mut self.fold.map)
            .into_values()
            .filter_map(|f| match f {
                Folded::Present(img) => Some(img),
                _ => None,
            })
            .collect();
        rest.sort_by(|a, b| (&a.sandbox, a.family).cmp(&(&b.sandbox, b.family)));
        for img in rest {
            if live(&img) {
                counts.live += 1;
                sink(img)?;
            } else {
                counts.expired += 1;
            }
        }
        Ok(counts)
    }

    /// Restores `engine` (built with this vault's [`key_root`](Self::key_root),
    /// [`shards`](Self::shards) and [`journal`](Self::journal)), then cuts
    /// off a torn tail, puts the new journal segment in place, removes
    /// superseded files and starts the writer.
    ///
    /// # Errors
    ///
    /// A damaged snapshot, an image the engine refuses, or I/O.
    pub fn recover(mut self, engine: &Engine) -> Result<(Vault, Recovery)> {
        let started = Instant::now();
        let now = engine.clock().now().as_millis();
        let mut restored = 0u64;
        let counts = self.replay(Some(now), &mut |img| {
            let n = engine
                .restore(std::iter::once(img))
                .map_err(|e| VaultError::Config(format!("the engine refused a record of the vault: {e}")))?;
            restored += n as u64;
            Ok(())
        })?;
        let mut prepared = self.prepared.take().expect("a vault opened for writing");
        if let Some(t) = &self.torn {
            let j = self.journals.last().expect("a torn tail is in a journal");
            let f = OpenOptions::new()
                .write(true)
                .open(&j.found.path)
                .map_err(VaultError::io(format!("cannot open {}", j.found.path.display())))?;
            f.set_len(j.valid_len)
                .and_then(|()| f.sync_all())
                .map_err(VaultError::io(format!("cannot cut the torn tail of {}", j.found.path.display())))?;
            tracing::warn!(file = %t.file, bytes = t.bytes, "vault: cut off the torn tail");
        }
        prepared.place(&self.dir)?;
        for p in &self.obsolete {
            remove(p)?;
        }
        if !self.obsolete.is_empty() {
            fsync_dir(&self.dir)?;
        }
        let snapshot_bytes = self.snapshot.as_ref().map_or(0, |(f, _)| f.size);
        let threads = prepared.core.start().map_err(VaultError::io("cannot start the vault writer"))?;
        let (core, segment) = (prepared.core.clone(), prepared.segment.clone());
        let recovery = Recovery {
            restored,
            expired: counts.expired + (counts.live - restored),
            snapshot_records: counts.snapshot_records,
            journal_changes: counts.journal_changes,
            torn_tail: self.torn.clone(),
            elapsed: started.elapsed(),
        };
        tracing::info!(
            restored = recovery.restored,
            expired = recovery.expired,
            journal_changes = recovery.journal_changes,
            elapsed_ms = recovery.elapsed.as_millis() as u64,
            "vault: recovered"
        );
        let inner = Arc::new(Inner {
            dir: self.dir.clone(),
            core,
            identity: Identity {
                keyring: self.opts.keyring.clone(),
                vault_id: self.vault_id,
                data_root: self.data_root.clone(),
                shards: self.shards,
                machine: if self.bound { self.machine.clone() } else { None },
            },
            compaction: Mutex::new(CompactionState { snapshot_bytes, current: segment }),
            compact_min_bytes: self.opts.compact_min_bytes,
            compact_ratio: self.opts.compact_ratio,
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        Ok((Vault { inner, threads: Mutex::new(threads), _lock: self.lock }, recovery))
    }
}

/// Reads, authenticates and decodes a snapshot's blocks, sending each
/// block's images to `tx`; checks the end record. Returns (images, frames).
fn read_snapshot(f: &Found, k: &FileKeys, tx: &std::sync::mpsc::SyncSender<Vec<Image>>) -> Result<(u64, u64)> {
    let mut r = FrameReader::new(&f.path, &f.name, &f.header, k)?;
    let base = f.header.time;
    let (mut blocks, mut images) = (0u64, 0u64);
    loop {
        let at = r.pos();
        let seq = r.frames();
        match r.next()? {
            Next::End => return Err(VaultError::corrupt(&f.name, at, "the snapshot ends before its end record")),
            Next::Torn(offset) => return Err(VaultError::corrupt(&f.name, offset, "the snapshot is cut short")),
            Next::Frame(plain) if plain.first() == Some(&codec::END) => {
                let (n_images, n_blocks) = codec::decode_end(plain)
                    .ok_or_else(|| VaultError::corrupt(&f.name, at, format!("record {seq} is malformed")))?;
                if n_images != images || n_blocks != blocks {
                    return Err(VaultError::corrupt(
                        &f.name,
                        at,
                        format!(
                            "the snapshot should hold {n_images} records in {n_blocks} blocks, but holds {images} in {blocks}"
                        ),
                    ));
                }
                break;
            }
            Next::Frame(plain) => {
                let decoded = codec::decode_block(plain, base)
                    .ok_or_else(|| VaultError::corrupt(&f.name, at, format!("record {seq} is malformed")))?;
                blocks += 1;
                images += decoded.len() as u64;
                if tx.send(decoded).is_err() {
                    // The restoring side stopped (it failed): its error wins.
                    return Ok((images, r.frames()));
                }
            }
        }
    }
    let at = r.pos();
    if !matches!(r.next()?, Next::End) {
        return Err(VaultError::corrupt(&f.name, at, "data after the snapshot's end record"));
    }
    Ok((images, r.frames()))
}

fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

fn remove(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(VaultError::io(format!("cannot remove {}", p.display()))(e)),
    }
}

#[derive(Debug, Default)]
struct ReplayCounts {
    snapshot_records: u64,
    journal_changes: u64,
    live: u64,
    expired: u64,
}

/// The keys and ids new files are made with.
struct Identity {
    keyring: Keyring,
    vault_id: [u8; 16],
    data_root: Zeroizing<[u8; 32]>,
    shards: u16,
    machine: Option<MachineId>,
}

impl Identity {
    fn new_file(
        &self,
        kind: FileKind,
        generation: u64,
        link: [u8; 16],
        time: u64,
    ) -> (crate::format::Header, FileKeys) {
        keys::new_file(
            self.keyring.current(),
            &NewFile {
                kind,
                shards: self.shards,
                vault_id: self.vault_id,
                generation,
                link,
                time,
                data_root: &self.data_root,
                machine: self.machine.as_ref(),
            },
        )
    }
}

struct CompactionState {
    snapshot_bytes: u64,
    current: Arc<Segment>,
}

struct Inner {
    dir: PathBuf,
    core: Arc<Core>,
    identity: Identity,
    compaction: Mutex<CompactionState>,
    compact_min_bytes: u64,
    compact_ratio: f64,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

/// An open vault: the owner of its directory while it lives.
///
/// Dropping it (or [`close`](Self::close)) writes and syncs everything the
/// engine appended, stops its threads and releases the lock.
pub struct Vault {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock: VaultLock,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("dir", &self.inner.dir).field("journal", &self.inner.core).finish_non_exhaustive()
    }
}

/// What a compaction did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Compaction {
    /// Records in the new snapshot.
    pub records: u64,
    /// The snapshot's size in bytes.
    pub snapshot_bytes: u64,
    /// Bytes of values in it.
    pub value_bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Writes a snapshot: blocks of images, then the end record.
struct SnapshotWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    key: SealKey,
    vault_id: [u8; 16],
    file_id: [u8; 16],
    seq: u64,
    /// Zeroized on drop: after an error it may hold a block's plaintext.
    buf: Zeroizing<Vec<u8>>,
    base: u64,
    route_mask: u8,
    sandbox: Option<String>,
    count_at: usize,
    in_block: u32,
    images: u64,
    blocks: u64,
    value_bytes: u64,
}

impl SnapshotWriter {
    fn create(dir: &Path, header: &crate::format::Header, keys: FileKeys, shards: u16) -> Result<Self> {
        let tmp = dir.join(format!("{}.tmp", file_name(FileKind::Snapshot, header.generation)));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(VaultError::io(format!("cannot create {}", tmp.display())))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header.encode()).map_err(VaultError::io(format!("cannot write {}", tmp.display())))?;
        Ok(SnapshotWriter {
            out,
            tmp,
            key: keys.record_key,
            vault_id: header.vault_id,
            file_id: header.file_id,
            seq: 0,
            buf: Zeroizing::new(Vec::with_capacity(BLOCK_TARGET * 2)),
            base: header.time,
            route_mask: (shards - 1) as u8,
            sandbox: None,
            count_at: 0,
            in_block: 0,
            images: 0,
            blocks: 0,
            value_bytes: 0,
        })
    }

    /// Seals what `buf` holds from `FRAME_HEADER_LEN` on and writes it.
    fn seal_frame(&mut self) -> Result<()> {
        let aad = record_aad(&self.vault_id, &self.file_id, FileKind::Snapshot, self.seq);
        self.key.seal_in_place(record_nonce(self.seq), &aad, &mut self.buf, FRAME_HEADER_LEN);
        let n = u32::try_from(self.buf.len() - FRAME_HEADER_LEN).expect("a block is smaller than 4 GiB");
        self.buf[..FRAME_HEADER_LEN].copy_from_slice(&frame_header(n));
        self.out.write_all(&self.buf).map_err(VaultError::io(format!("cannot write {}", self.tmp.display())))?;
        self.buf.clear();
        self.seq += 1;
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.sandbox.is_none() {
            return Ok(());
        }
        codec::finish_block(&mut self.buf, self.count_at, self.in_block);
        self.seal_frame()?;
        self.blocks += 1;
        self.sandbox = None;
        self.in_block = 0;
        Ok(())
    }

    fn add(&mut self, img: &Image) -> Result<()> {
        let upper = 128
            + img.value.len()
            + img.retired.len() * 26
            + img.current.as_ref().map_or(0, |c| c.0.expose().len() + 12);
        let same = self.sandbox.as_deref() == Some(img.sandbox.as_str());
        if !same || self.buf.len() + upper > self.buf.capacity() || self.buf.len() >= BLOCK_TARGET {
            self.flush_block()?;
            // The buffer holds no plaintext now: growing it copies nothing secret.
            self.buf.reserve(upper + 80 + FRAME_HEADER_LEN + TAG_LEN + BLOCK_TARGET);
            self.buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
            self.count_at = codec::start_block(&mut self.buf, &img.sandbox);
            self.sandbox = Some(img.sandbox.clone());
        }
        codec::encode_image(&mut self.buf, img, self.route_mask, self.base);
        self.in_block += 1;
        self.images += 1;
        self.value_bytes += img.value.len() as u64;
        Ok(())
    }

    /// Writes the end record, syncs, and renames the file into place.
    fn finish(mut self, dir: &Path, generation: u64) -> Result<u64> {
        self.flush_block()?;
        self.buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        codec::encode_end(&mut self.buf, self.images, self.blocks);
        self.seal_frame()?;
        let tmp = self.tmp.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| VaultError::io(format!("cannot write {}", tmp.display()))(e.into_error()))?;
        file.sync_all().map_err(VaultError::io(format!("cannot sync {}", self.tmp.display())))?;
        let size = file.metadata().map_err(VaultError::io(format!("cannot stat {}", self.tmp.display())))?.len();
        let path = dir.join(file_name(FileKind::Snapshot, generation));
        std::fs::rename(&self.tmp, &path).map_err(VaultError::io(format!("cannot rename {}", self.tmp.display())))?;
        fsync_dir(dir)?;
        Ok(size)
    }
}

impl Inner {
    fn compact(&self, engine: &Engine) -> Result<Compaction> {
        let started = Instant::now();
        let inner = self;
        let mut cs = inner.compaction.lock();
        if inner.core.is_failed() {
            return Err(VaultError::Failed("the journal failed; compaction is off".into()));
        }
        let old = cs.current.clone();
        let generation = old.generation + 1;
        let now = engine.clock().now().as_millis();
        // 1. The next journal segment, header only, in place.
        let (header, keys) = inner.identity.new_file(FileKind::Journal, generation, old.file_id, now);
        let path = inner.dir.join(file_name(FileKind::Journal, generation));
        let tmp = inner.dir.join(format!("{}.tmp", file_name(FileKind::Journal, generation)));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&tmp)
            .map_err(VaultError::io(format!("cannot create {}", tmp.display())))?;
        (&file)
            .write_all(&header.encode())
            .and_then(|()| file.sync_all())
            .map_err(VaultError::io(format!("cannot write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(VaultError::io(format!("cannot rename {}", tmp.display())))?;
        fsync_dir(&inner.dir)?;
        let segment = Arc::new(Segment { file, path, generation, file_id: header.file_id });
        // 2. Switch: from here on, changes go to the new segment.
        let sealer =
            Sealer { key: keys.record_key, vault_id: inner.identity.vault_id, file_id: header.file_id, seq: 0 };
        let ticket = inner.core.switch(segment.clone(), sealer);
        inner.core.sync_through(ticket).map_err(|e| VaultError::Failed(e.0))?;
        cs.current = segment.clone();
        // 3. The snapshot: the state at a moment after the switch.
        let base = engine.clock().now().as_millis();
        let (sh, sk) = inner.identity.new_file(FileKind::Snapshot, generation, segment.file_id, base);
        let mut w = SnapshotWriter::create(&inner.dir, &sh, sk, inner.identity.shards)?;
        for img in engine.images() {
            w.add(&img)?;
        }
        let (records, value_bytes) = (w.images, w.value_bytes);
        let size = w.finish(&inner.dir, generation)?;
        // 4. Everything older is superseded.
        remove_below(&inner.dir, generation)?;
        cs.snapshot_bytes = size;
        inner
            .core
            .journal_bytes
            .store(std::fs::metadata(&segment.path).map(|m| m.len()).unwrap_or(0), Ordering::Relaxed);
        let c = Compaction { records, snapshot_bytes: size, value_bytes, elapsed: started.elapsed() };
        tracing::info!(records, bytes = size, elapsed_ms = c.elapsed.as_millis() as u64, "vault: compacted");
        Ok(c)
    }

    fn wants_compaction(&self) -> bool {
        let snapshot = self.compaction.lock().snapshot_bytes;
        let journal = self.core.journal_bytes.load(Ordering::Relaxed);
        journal > self.compact_min_bytes.max((snapshot as f64 * self.compact_ratio) as u64)
    }
}

impl Vault {
    /// Compacts the vault while `engine` keeps serving: starts a new journal
    /// segment, writes a snapshot of the engine's records, and removes the
    /// files it supersedes.
    ///
    /// # Errors
    ///
    /// I/O, or the journal failed earlier.
    pub fn compact(&self, engine: &Engine) -> Result<Compaction> {
        self.inner.compact(engine)
    }

    /// Whether the journal has grown enough since the last snapshot to be
    /// worth compacting.
    pub fn wants_compaction(&self) -> bool {
        self.inner.wants_compaction()
    }

    /// Compacts in the background whenever [`wants_compaction`](Self::wants_compaction)
    /// (checked every second), until the vault closes.
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    pub fn spawn_auto_compaction(&self, engine: &Engine) -> Result<()> {
        let inner = Arc::downgrade(&self.inner);
        let this_engine = engine.clone();
        let handle = std::thread::Builder::new()
            .name("xems-vault-compact".into())
            .spawn(move || {
                loop {
                    let Some(inner) = inner.upgrade() else { return };
                    {
                        let mut stop = inner.stop.lock();
                        if *stop {
                            return;
                        }
                        inner.stop_cv.wait_for(&mut stop, Duration::from_secs(1));
                        if *stop {
                            return;
                        }
                    }
                    if inner.wants_compaction()
                        && let Err(e) = inner.compact(&this_engine)
                    {
                        tracing::error!("vault: compaction failed: {e}");
                    }
                }
            })
            .map_err(VaultError::io("cannot start the compaction thread"))?;
        self.threads.lock().push(handle);
        Ok(())
    }

    /// Writes and syncs everything appended so far, stops the threads and
    /// releases the vault.
    ///
    /// # Errors
    ///
    /// The journal failed (something acknowledged may be missing).
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        *self.inner.stop.lock() = true;
        self.inner.stop_cv.notify_all();
        self.inner.core.close();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        if self.inner.core.is_failed() {
            return Err(VaultError::Failed("the journal failed before closing".into()));
        }
        Ok(())
    }

    /// The vault's directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Bytes written to the journal since the last snapshot.
    pub fn journal_bytes(&self) -> u64 {
        self.inner.core.journal_bytes.load(Ordering::Relaxed)
    }

    /// The current journal segment's generation.
    pub fn generation(&self) -> u64 {
        self.inner.core.current_generation()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("vault: {e}");
        }
    }
}

/// Removes every vault file of a generation below `generation`.
fn remove_below(dir: &Path, generation: u64) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(VaultError::io(format!("cannot list {}", dir.display())))?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(VaultError::io(format!("cannot list {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((_, g)) = parse_file_name(&name)
            && g < generation
        {
            remove(&entry.path())?;
            removed = true;
        }
    }
    if removed {
        fsync_dir(dir)?;
    }
    Ok(())
}

const _: () = assert!(HEADER_LEN == 220);

/// One sandbox of a vault, as `xems vault inspect` shows it (never values or
/// tokens).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxReport {
    /// The sandbox's name.
    pub name: String,
    /// Live records.
    pub records: u64,
    /// Bytes of their values.
    pub value_bytes: u64,
    /// Rotated-away tokens remembered (by their keyed digest only).
    pub retired_tokens: u64,
    /// Records with a subject.
    pub with_subject: u64,
}

/// What a vault holds, from [`inspect`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// Its files.
    pub files: Vec<FileInfo>,
    /// Live records per sandbox, by name.
    pub sandboxes: Vec<SandboxReport>,
    /// Live records.
    pub records: u64,
    /// Records past their deadline (dropped at the next open).
    pub expired: u64,
    /// Journal changes replayed.
    pub journal_changes: u64,
    /// An incomplete last record (it would be cut off at the next open).
    pub torn_tail: Option<TornTail>,
    /// Whether the keys mix in a machine identity.
    pub hardware_bound: bool,
    /// The engine shard count recorded in the vault.
    pub shards: usize,
}

/// Reads and authenticates every record of the vault at `dir` without
/// changing anything, and says what it holds.
///
/// # Errors
///
/// The vault is in use, a secret is wrong, or a file is damaged: the same
/// errors an open reports.
pub fn inspect(dir: &Path, opts: VaultOptions) -> Result<Report> {
    let now = now_ms(&*opts.clock);
    let mut opened = Opened::open_read_only(dir, opts)?;
    let mut by: std::collections::BTreeMap<String, SandboxReport> = std::collections::BTreeMap::new();
    let counts = opened.replay(Some(now), &mut |img| {
        let s = by
            .entry(img.sandbox.clone())
            .or_insert_with(|| SandboxReport { name: img.sandbox.clone(), ..Default::default() });
        s.records += 1;
        s.value_bytes += img.value.len() as u64;
        s.retired_tokens += img.retired.len() as u64;
        s.with_subject += u64::from(img.subject.is_some());
        Ok(())
    })?;
    Ok(Report {
        files: opened.files.clone(),
        sandboxes: by.into_values().collect(),
        records: counts.live,
        expired: counts.expired,
        journal_changes: counts.journal_changes,
        torn_tail: opened.torn.clone(),
        hardware_bound: opened.bound,
        shards: opened.shards(),
    })
}

/// What [`rewrite`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Rewritten {
    /// Records written to the new snapshot.
    pub records: u64,
    /// Expired records dropped.
    pub expired: u64,
    /// Key ids the vault's files were wrapped under before.
    pub key_ids_before: Vec<KeyId>,
    /// The key id every file is wrapped under now.
    pub key_id: KeyId,
    /// The files now.
    pub files: Vec<FileInfo>,
    /// A torn tail that was cut off first.
    pub torn_tail: Option<TornTail>,
}

/// Rewrites the whole vault at `dir` (not in use by another process): one
/// snapshot of its live records and an empty journal segment, with fresh
/// file keys wrapped only under the keyring's current secret, and with the
/// hardware binding `opts` asks for. Superseded files are removed, so
/// previous secrets are no longer needed (`xems vault compact` and `xems
/// vault rekey`).
///
/// `progress(done, total)` is called as records are written.
///
/// # Errors
///
/// As [`inspect`], plus I/O.
pub fn rewrite(dir: &Path, opts: VaultOptions, progress: &mut dyn FnMut(u64, u64)) -> Result<Rewritten> {
    let now = now_ms(&*opts.clock);
    let bind = opts.hardware_bind;
    let mut opened = Opened::scan(dir, opts, Mode::Rewrite)?;
    let key_ids_before = {
        let mut ids: Vec<KeyId> = opened.files.iter().map(|f| f.key_id).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut images = Vec::new();
    let counts = opened.replay(Some(now), &mut |img| {
        images.push(img);
        Ok(())
    })?;
    // The new files' binding.
    if bind {
        if opened.machine.is_none() {
            opened.machine = Some(opened.opts.machine()?);
        }
        opened.bound = true;
    } else {
        opened.bound = false;
    }
    // Cut a torn tail first: the new segment links to the old one's length.
    let last = opened.journals.last().expect("at least one journal");
    if opened.torn.is_some() {
        let f = OpenOptions::new()
            .write(true)
            .open(&last.found.path)
            .map_err(VaultError::io(format!("cannot open {}", last.found.path.display())))?;
        f.set_len(last.valid_len)
            .and_then(|()| f.sync_all())
            .map_err(VaultError::io(format!("cannot cut the torn tail of {}", last.found.path.display())))?;
    }
    let generation = last.found.header.generation + 1;
    let (link, prev_frames) = (last.found.header.file_id, last.frames);
    // 1. The new journal segment.
    let mut prepared = opened.prepare_segment(generation, link, prev_frames, 0)?;
    prepared.place(dir)?;
    // 2. The snapshot.
    let (sh, sk) = opened.new_file_keys(FileKind::Snapshot, generation, prepared.segment.file_id, now);
    let mut w = SnapshotWriter::create(dir, &sh, sk, opened.shards)?;
    images.sort_by(|a, b| a.sandbox.cmp(&b.sandbox));
    let total = images.len() as u64;
    for (i, img) in images.iter().enumerate() {
        w.add(img)?;
        if i % 1024 == 0 {
            progress(i as u64, total);
        }
    }
    drop(images);
    w.finish(dir, generation)?;
    progress(total, total);
    // 3. Everything older goes.
    remove_below(dir, generation)?;
    let key_id = opened.opts.keyring.current().key_id();
    drop(prepared);
    let after = Opened::open_read_only_locked(opened)?;
    Ok(Rewritten { records: total, expired: counts.expired, key_ids_before, key_id, files: after, torn_tail: None })
}

impl Opened {
    /// The files of the vault after a rewrite (re-listed while still locked).
    fn open_read_only_locked(self) -> Result<Vec<FileInfo>> {
        let mut files = Vec::new();
        let entries =
            std::fs::read_dir(&self.dir).map_err(VaultError::io(format!("cannot list {}", self.dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(VaultError::io(format!("cannot list {}", self.dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_file_name(&name).is_some() {
                let (h, size) = read_header(&entry.path(), &name)?;
                files.push(FileInfo {
                    name,
                    kind: h.kind,
                    generation: h.generation,
                    bytes: size,
                    key_id: KeyId::from_u32(h.key_id),
                    hardware_bound: h.hardware_bound(),
                    records: 0,
                });
            }
        }
        files.sort_by_key(|f| (f.generation, f.kind == FileKind::Journal));
        Ok(files)
    }
}
