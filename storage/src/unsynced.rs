//! [`LoseUnsyncedBackend`]: the real file system, except that nothing reaches it before
//! it is fsynced. **Test only**: it exists so that `kill -9` of a real zkd process loses
//! exactly what a power cut could lose, which a plain `kill -9` does not (the kernel's page
//! cache keeps every written byte of a killed process).
//!
//! Owns the deferral of writes and directory changes until the fsync that makes them
//! durable. Never used unless a test asks for it (zkd: `ZKD_TEST_LOSE_UNSYNCED=1`).
//!
//! # What is modelled
//!
//! The same crash model as [`crate::FaultyBackend`], with the durable state kept on disk
//! and the volatile difference kept in this process's memory:
//!
//! - `write_at`, `append`, `set_len` and a `create` that truncates an existing file are
//!   recorded in memory against the file's inode; the real file is untouched. `sync(path)`
//!   applies them to the real file and fdatasyncs it, in that order, before returning.
//! - `create` of a new name, `rename` and `remove` change only the in-memory namespace.
//!   `sync_dir(dir)` applies that directory's pending changes to the real directory in
//!   the order they were made (a created file is written with the contents its inode had
//!   at its last `sync`, and fsynced), then fsyncs the directory. A file created (or
//!   renamed) but whose directory was never synced is not there after a kill, even if its
//!   contents were synced: POSIX does not promise it, so we assume the worst.
//! - Every read (`read`, `read_range`, `read_whole`, `file_len`, `list`, `exists`) sees the
//!   process's own unsynced writes and directory changes: the real bytes with the pending
//!   changes replayed over them. `read_whole` maps the real file only when the file has no
//!   pending change (a recovered segment or a finished snapshot); otherwise it copies.
//! - So the real directories always hold exactly the durable state, and a `kill -9` (or
//!   dropping the backend, in unit tests) is a power cut that persisted nothing unsynced:
//!   the worst case a disk may give.
//!
//! # What is not modelled
//!
//! - Torn writes and partial persistence of unsynced bytes (a real disk may keep some of
//!   them; [`crate::FaultyBackend::crash_tearing`] tests that). A kill during `sync` or
//!   `sync_dir` leaves the real file or directory with part of the changes applied, which
//!   is a real torn write, but nobody was told those were durable.
//! - Directories themselves: `create_dir_all` is real and immediate (the storage layer
//!   fsyncs a new directory's parent anyway).
//! - Renames across directories: refused (`Unsupported`); zkd only renames `x.tmp` to `x`.
//! - Failed fsyncs, bit rot, a full disk: the real errors pass through, none are injected.
//! - Memory: unsynced bytes live in memory until fsynced. With `forceSync=no` the txn log
//!   is never fsynced, so the whole log stays in memory (and is lost by a kill) — which is
//!   what a test of that setting wants, on test-sized data. A snapshot is held in memory
//!   until its directory is fsynced, and `sync_dir` writes it out holding this backend's
//!   locks (appends wait meanwhile).
//!
//! Concurrency: one lock over the in-memory state, never held across real IO except by
//! `sync_dir`. `sync` of one file is serialised per file and runs its real IO without the
//! state lock, so the group-commit syncer does not stop the appender; while it runs, the
//! changes it is applying stay visible to readers (replaying them again over bytes that
//! already hold them gives the same result). A reader/writer lock keeps `sync_dir`'s
//! renames and removes away from files being synced or read.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::backend::{
    not_found, parent_of, read_slice, write_into, Backend, FileBackend, FileBytes,
};

/// A change to a file's contents that has not been fsynced.
#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// Where an inode's durable contents are.
#[derive(Debug)]
enum Base {
    /// In the real file at this path.
    Disk(PathBuf),
    /// In memory: the inode's name is not durable yet, so a kill loses the inode. Bytes in
    /// `data.len()..len` are zeros.
    Mem { data: Vec<u8>, len: u64 },
}

#[derive(Debug)]
struct Inode {
    base: Base,
    /// Changes a running `sync` is applying to the real file.
    syncing: Arc<Vec<Op>>,
    /// Changes made since (not yet handed to a `sync`).
    pending: Vec<Op>,
    /// Length as reads see it (base with `syncing` and `pending` applied).
    len: u64,
    /// Serialises syncs of this inode.
    sync_lock: Arc<Mutex<()>>,
}

impl Inode {
    fn new(base: Base, len: u64) -> Inode {
        Inode {
            base,
            syncing: Arc::new(Vec::new()),
            pending: Vec::new(),
            len,
            sync_lock: Arc::new(Mutex::new(())),
        }
    }

    fn push(&mut self, op: Op) {
        match &op {
            Op::Write { offset, data } => self.len = self.len.max(offset + data.len() as u64),
            Op::SetLen(len) => self.len = *len,
        }
        // Appends are contiguous writes: keep them as one op so reads replay little.
        if let (Some(Op::Write { offset: o, data: d }), Op::Write { offset, data }) =
            (self.pending.last_mut(), &op)
        {
            if *o + d.len() as u64 == *offset {
                d.extend_from_slice(data);
                return;
            }
        }
        self.pending.push(op);
    }
}

/// A directory change that has not been made durable.
#[derive(Debug)]
enum DirOp {
    Create { path: PathBuf, inode: u64 },
    Rename { from: PathBuf, to: PathBuf },
    Remove { path: PathBuf },
}

impl DirOp {
    fn dir(&self) -> PathBuf {
        match self {
            DirOp::Create { path, .. } | DirOp::Remove { path } => parent_of(path),
            DirOp::Rename { to, .. } => parent_of(to),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Names whose visible meaning differs from (or was looked up in) the real directory:
    /// `Some(inode)` names a file, `None` hides a real file that was removed or renamed
    /// away. A path not in the map is whatever the real directory holds.
    names: HashMap<PathBuf, Option<u64>>,
    dir_ops: Vec<DirOp>,
}

/// The real file system with unsynced writes held in memory; see the module header.
#[derive(Debug, Default)]
pub struct LoseUnsyncedBackend {
    inner: FileBackend,
    state: Mutex<State>,
    /// Read by file IO, written by `sync_dir` (which renames and removes real files).
    io: RwLock<()>,
}

/// Replays `ops` over `window`, the bytes `start..start + window.len()` of a file of
/// length `len` (bytes past `len` zero); returns the resulting length.
fn replay(window: &mut [u8], start: u64, mut len: u64, ops: &[Op]) -> u64 {
    let end = start + window.len() as u64;
    for op in ops {
        match op {
            Op::Write { offset, data } => {
                let from = (*offset).max(start);
                let to = (offset + data.len() as u64).min(end);
                if from < to {
                    window[(from - start) as usize..(to - start) as usize]
                        .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
                }
                len = len.max(offset + data.len() as u64);
            }
            Op::SetLen(l) => {
                if *l < end {
                    let from = (*l).max(start);
                    window[(from - start) as usize..].fill(0);
                }
                len = *l;
            }
        }
    }
    len
}

/// The changes that matter to the bytes `start..end`, oldest first: every `SetLen` and
/// the part of every write inside the range (so a read copies no more than it returns).
fn window_ops(syncing: &[Op], pending: &[Op], start: u64, end: u64) -> Vec<Op> {
    syncing
        .iter()
        .chain(pending)
        .filter_map(|op| match op {
            Op::SetLen(l) => Some(Op::SetLen(*l)),
            Op::Write { offset, data } => {
                let from = (*offset).max(start);
                let to = (offset + data.len() as u64).min(end);
                (from < to).then(|| Op::Write {
                    offset: from,
                    data: data[(from - offset) as usize..(to - offset) as usize].to_vec(),
                })
            }
        })
        .collect()
}

fn apply_mem(data: &mut Vec<u8>, len: &mut u64, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Write { offset, data: d } => {
                write_into(data, *offset, d);
                *len = (*len).max(offset + d.len() as u64);
            }
            Op::SetLen(l) => {
                data.truncate(*l as usize);
                *len = *l;
            }
        }
    }
}

fn real_is_file(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl State {
    /// The inode `path` names now, registering an untouched real file on first use.
    fn resolve(&mut self, path: &Path) -> io::Result<u64> {
        match self.names.get(path) {
            Some(Some(id)) => Ok(*id),
            Some(None) => Err(not_found(path)),
            None => {
                if !real_is_file(path)? {
                    return Err(not_found(path));
                }
                let len = std::fs::metadata(path)?.len();
                let id = self.new_inode(Base::Disk(path.to_path_buf()), len);
                self.names.insert(path.to_path_buf(), Some(id));
                Ok(id)
            }
        }
    }

    fn new_inode(&mut self, base: Base, len: u64) -> u64 {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, Inode::new(base, len));
        id
    }

    fn inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let id = self.resolve(path)?;
        Ok(self.inodes.get_mut(&id).expect("named inode exists"))
    }

    fn visible(&self, path: &Path) -> Option<bool> {
        self.names.get(path).map(Option::is_some)
    }

    /// Drops inodes no name and no pending directory change refers to.
    fn collect(&mut self) {
        let mut live: std::collections::HashSet<u64> =
            self.names.values().flatten().copied().collect();
        for op in &self.dir_ops {
            if let DirOp::Create { inode, .. } = op {
                live.insert(*inode);
            }
        }
        self.inodes.retain(|id, _| live.contains(id));
    }
}

/// What a read needs from the state, taken under the lock and used after it.
enum Snapshot {
    Disk {
        path: PathBuf,
        ops: Vec<Op>,
        len: u64,
    },
    Mem(Vec<u8>),
}

impl LoseUnsyncedBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn snapshot(&self, path: &Path, offset: u64, want: usize) -> io::Result<Snapshot> {
        let mut s = self.state.lock();
        let inode = s.inode(path)?;
        let len = inode.len;
        match &inode.base {
            Base::Disk(real) => {
                let end = offset.saturating_add(want as u64).min(len);
                let ops = window_ops(&inode.syncing, &inode.pending, offset, end);
                Ok(Snapshot::Disk {
                    path: real.clone(),
                    ops,
                    len,
                })
            }
            Base::Mem { data, len: mem_len } => {
                // Materialise the requested window of the in-memory file.
                let end = offset.saturating_add(want as u64).min(len);
                let n = end.saturating_sub(offset) as usize;
                let mut window = read_slice(data, offset, n);
                window.resize(n, 0);
                let ops = window_ops(&inode.syncing, &inode.pending, offset, end);
                replay(&mut window, offset, *mem_len, &ops);
                Ok(Snapshot::Mem(window))
            }
        }
    }

    fn read_window(&self, path: &Path, offset: u64, want: usize) -> io::Result<Vec<u8>> {
        let _io = self.io.read();
        match self.snapshot(path, offset, want)? {
            Snapshot::Mem(data) => Ok(data),
            Snapshot::Disk { path, ops, len } => {
                let end = offset.saturating_add(want as u64).min(len);
                let n = end.saturating_sub(offset) as usize;
                let base_len = std::fs::metadata(&path)?.len();
                let mut window = if offset < base_len {
                    self.inner.read_range(&path, offset, n)?
                } else {
                    Vec::new()
                };
                window.resize(n, 0);
                replay(&mut window, offset, base_len, &ops);
                Ok(window)
            }
        }
    }

    fn record(&self, path: &Path, op: Op) -> io::Result<()> {
        self.state.lock().inode(path)?.push(op);
        Ok(())
    }

    /// Applies one directory change to the real directory.
    fn materialise(&self, s: &mut State, op: DirOp) -> io::Result<()> {
        match op {
            DirOp::Create { path, inode } => {
                let node = s.inodes.get_mut(&inode).expect("pending create's inode");
                let Base::Mem { data, len } = &node.base else {
                    unreachable!("a pending create names an in-memory inode")
                };
                self.inner.create(&path)?;
                self.inner.write_at(&path, 0, data)?;
                if *len > data.len() as u64 {
                    self.inner.set_len(&path, *len)?;
                }
                self.inner.sync(&path)?;
                node.base = Base::Disk(path);
            }
            DirOp::Rename { from, to } => {
                if from == to {
                    return Ok(());
                }
                self.inner.rename(&from, &to)?;
                // The inode the real `to` held is gone; the one at `from` moved.
                s.inodes
                    .retain(|_, i| !matches!(&i.base, Base::Disk(p) if *p == to));
                for i in s.inodes.values_mut() {
                    if matches!(&i.base, Base::Disk(p) if *p == from) {
                        i.base = Base::Disk(to.clone());
                    }
                }
            }
            DirOp::Remove { path } => {
                self.inner.remove(&path)?;
                s.inodes
                    .retain(|_, i| !matches!(&i.base, Base::Disk(p) if *p == path));
            }
        }
        Ok(())
    }
}

impl Backend for LoseUnsyncedBackend {
    fn create(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if !real_is_dir(&parent_of(path)) {
            return Err(not_found(&parent_of(path)));
        }
        match s.resolve(path) {
            Ok(id) => {
                s.inodes
                    .get_mut(&id)
                    .expect("named inode")
                    .push(Op::SetLen(0));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = s.new_inode(
                    Base::Mem {
                        data: Vec::new(),
                        len: 0,
                    },
                    0,
                );
                s.names.insert(path.to_path_buf(), Some(id));
                s.dir_ops.push(DirOp::Create {
                    path: path.to_path_buf(),
                    inode: id,
                });
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.record(
            path,
            Op::Write {
                offset,
                data: data.to_vec(),
            },
        )
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<u64> {
        let mut s = self.state.lock();
        let inode = s.inode(path)?;
        let offset = inode.len;
        inode.push(Op::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(offset)
    }

    fn read_whole(&self, path: &Path) -> io::Result<FileBytes> {
        let real = {
            let _io = self.io.read();
            let mut s = self.state.lock();
            let inode = s.inode(path)?;
            match &inode.base {
                Base::Disk(p) if inode.pending.is_empty() && inode.syncing.is_empty() => {
                    Some(p.clone())
                }
                _ => None,
            }
        };
        match real {
            // Nothing pending: the real file is the file (and stays so while mapped,
            // unless this process writes it, as with `FileBackend`).
            Some(p) => self.inner.read_whole(&p),
            None => self.read(path).map(FileBytes::Owned),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read_window(path, 0, usize::MAX)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.read_window(path, offset, len)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.state.lock().inode(path)?.len)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.record(path, Op::SetLen(len))
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let _io = self.io.read();
        let lock = self.state.lock().inode(path)?.sync_lock.clone();
        let _one_at_a_time = lock.lock();
        let (id, real, ops) = {
            let mut s = self.state.lock();
            let id = s.resolve(path)?;
            let inode = s.inodes.get_mut(&id).expect("named inode");
            match &mut inode.base {
                Base::Mem { data, len } => {
                    // The name is not durable yet: "durable" contents live in memory until
                    // `sync_dir` writes the file.
                    apply_mem(data, len, &inode.pending);
                    inode.pending.clear();
                    return Ok(());
                }
                Base::Disk(real) => {
                    let real = real.clone();
                    inode.syncing = Arc::new(std::mem::take(&mut inode.pending));
                    (id, real, inode.syncing.clone())
                }
            }
        };
        let result = (|| {
            for op in ops.iter() {
                match op {
                    Op::Write { offset, data } => self.inner.write_at(&real, *offset, data)?,
                    Op::SetLen(len) => self.inner.set_len(&real, *len)?,
                }
            }
            self.inner.sync(&real)
        })();
        let mut s = self.state.lock();
        if let Some(inode) = s.inodes.get_mut(&id) {
            let syncing = std::mem::take(&mut inode.syncing);
            if result.is_err() {
                // Not durable: keep the changes pending (and visible); a later sync retries.
                let mut ops = syncing.as_ref().clone();
                ops.append(&mut inode.pending);
                inode.pending = ops;
            }
        }
        result
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let _io = self.io.write();
        let mut s = self.state.lock();
        let ops = std::mem::take(&mut s.dir_ops);
        let (mine, others): (Vec<DirOp>, Vec<DirOp>) =
            ops.into_iter().partition(|op| op.dir() == dir);
        s.dir_ops = others;
        for op in mine {
            self.materialise(&mut s, op)?;
        }
        // Inodes removed or replaced and no longer named are gone.
        s.collect();
        drop(s);
        self.inner.sync_dir(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if parent_of(from) != parent_of(to) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "LoseUnsyncedBackend: rename across directories ({} to {}) is not modelled",
                    from.display(),
                    to.display()
                ),
            ));
        }
        let mut s = self.state.lock();
        let id = s.resolve(from)?;
        s.names.insert(from.to_path_buf(), None);
        s.names.insert(to.to_path_buf(), Some(id));
        s.dir_ops.push(DirOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.resolve(path)?;
        s.names.insert(path.to_path_buf(), None);
        s.dir_ops.push(DirOp::Remove {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let _io = self.io.read();
        let s = self.state.lock();
        let mut names: Vec<String> = self
            .inner
            .list(dir)?
            .into_iter()
            .filter(|n| s.visible(&dir.join(n)).is_none())
            .collect();
        names.extend(
            s.names
                .iter()
                .filter(|(p, id)| id.is_some() && p.parent() == Some(dir))
                .filter_map(|(p, _)| p.file_name()?.to_str().map(str::to_string)),
        );
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.state.lock();
        match s.visible(path) {
            Some(visible) => Ok(visible),
            None => self.inner.exists(path),
        }
    }
}

fn real_is_dir(path: &Path) -> bool {
    path.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FaultyBackend;
    use proptest::prelude::*;

    /// A "power cut": the process's memory is gone, the real directory stays.
    fn crash(b: LoseUnsyncedBackend) -> LoseUnsyncedBackend {
        drop(b);
        LoseUnsyncedBackend::new()
    }

    fn setup() -> (tempfile::TempDir, PathBuf, LoseUnsyncedBackend) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        let b = LoseUnsyncedBackend::new();
        b.create_dir_all(&d).unwrap();
        (tmp, d, b)
    }

    #[test]
    fn write_without_sync_is_lost_and_synced_bytes_survive() {
        let (_tmp, d, b) = setup();
        let f = d.join("f");
        b.create(&f).unwrap();
        b.append(&f, b"abc").unwrap();
        b.sync(&f).unwrap();
        b.sync_dir(&d).unwrap();
        b.append(&f, b"def").unwrap();
        b.write_at(&f, 1, b"X").unwrap();
        // Read-your-writes inside the process; nothing reached the real file yet.
        assert_eq!(b.read(&f).unwrap(), b"aXcdef");
        assert_eq!(b.read_range(&f, 2, 3).unwrap(), b"cde");
        assert_eq!(&*b.read_whole(&f).unwrap(), b"aXcdef");
        assert_eq!(b.file_len(&f).unwrap(), 6);
        assert_eq!(std::fs::read(&f).unwrap(), b"abc");
        let b = crash(b);
        assert_eq!(b.read(&f).unwrap(), b"abc");
        b.append(&f, b"def").unwrap();
        b.sync(&f).unwrap();
        let b = crash(b);
        assert_eq!(b.read(&f).unwrap(), b"abcdef");
        assert_eq!(&*b.read_whole(&f).unwrap(), b"abcdef");
    }

    #[test]
    fn a_new_file_needs_its_directory_synced() {
        let (_tmp, d, b) = setup();
        let f = d.join("f");
        b.create(&f).unwrap();
        b.append(&f, b"abc").unwrap();
        b.sync(&f).unwrap();
        assert_eq!(b.list(&d).unwrap(), vec!["f".to_string()]);
        assert!(!f.exists());
        let b = crash(b);
        assert!(!b.exists(&f).unwrap());
        assert!(b.list(&d).unwrap().is_empty());

        // Directory synced but contents not: the name survives, empty.
        b.create(&f).unwrap();
        b.append(&f, b"abc").unwrap();
        b.sync_dir(&d).unwrap();
        let b = crash(b);
        assert_eq!(b.read(&f).unwrap(), b"");
    }

    #[test]
    fn rename_over_and_remove_wait_for_the_directory_sync() {
        let (_tmp, d, b) = setup();
        let f = d.join("f");
        let t = d.join("f.tmp");
        b.create(&f).unwrap();
        b.append(&f, b"old").unwrap();
        b.sync(&f).unwrap();
        b.sync_dir(&d).unwrap();
        b.create(&t).unwrap();
        b.append(&t, b"new").unwrap();
        b.sync(&t).unwrap();
        b.rename(&t, &f).unwrap();
        assert_eq!(b.read(&f).unwrap(), b"new");
        assert!(!b.exists(&t).unwrap());
        let b = crash(b);
        assert_eq!(b.read(&f).unwrap(), b"old");

        b.create(&t).unwrap();
        b.append(&t, b"new").unwrap();
        b.sync(&t).unwrap();
        b.rename(&t, &f).unwrap();
        b.sync_dir(&d).unwrap();
        let b = crash(b);
        assert_eq!(b.read(&f).unwrap(), b"new");
        assert!(!b.exists(&t).unwrap());

        b.remove(&f).unwrap();
        assert!(!b.exists(&f).unwrap());
        let b = crash(b);
        assert_eq!(b.read(&f).unwrap(), b"new");
        b.remove(&f).unwrap();
        b.sync_dir(&d).unwrap();
        let b = crash(b);
        assert!(!b.exists(&f).unwrap());
    }

    #[test]
    fn txn_log_keeps_exactly_the_synced_records() {
        use crate::{LogOptions, TxnLog};
        let tmp = tempfile::tempdir().unwrap();
        let opts = LogOptions {
            pre_alloc_bytes: 4096,
            segment_max_bytes: 2048,
            write_buffer_bytes: 512,
            ..LogOptions::default()
        };
        let backend: Arc<dyn Backend> = Arc::new(LoseUnsyncedBackend::new());
        let (log, _) = TxnLog::open(backend.clone(), tmp.path(), opts.clone()).unwrap();
        for z in 1..=100 {
            log.append(z, format!("txn {z}").as_bytes()).unwrap();
        }
        log.sync().unwrap();
        for z in 101..=150 {
            log.append(z, format!("txn {z}").as_bytes()).unwrap();
        }
        // The running process reads its unsynced records (as a leader serving a DIFF).
        let seen: Vec<i64> = log.read_from(1).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(seen, (1..=150).collect::<Vec<_>>());
        drop(log);
        drop(backend);
        let backend: Arc<dyn Backend> = Arc::new(LoseUnsyncedBackend::new());
        let (log, recovered) = TxnLog::open(backend, tmp.path(), opts).unwrap();
        assert_eq!(recovered.last_zxid, Some(100));
        let zxids: Vec<i64> = log.read_from(1).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(zxids, (1..=100).collect::<Vec<_>>());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Create(usize),
        Append(usize, Vec<u8>),
        WriteAt(usize, u64, Vec<u8>),
        SetLen(usize, u64),
        Sync(usize),
        SyncDir,
        Rename(usize, usize),
        Remove(usize),
        ReadRange(usize, u64, usize),
        Crash,
    }

    const NAMES: [&str; 3] = ["a", "b", "c"];

    fn step() -> impl Strategy<Value = Step> {
        let n = 0..NAMES.len();
        let bytes = prop::collection::vec(any::<u8>(), 1..12);
        prop_oneof![
            2 => n.clone().prop_map(Step::Create),
            4 => (n.clone(), bytes.clone()).prop_map(|(f, d)| Step::Append(f, d)),
            2 => (n.clone(), 0u64..40, bytes).prop_map(|(f, o, d)| Step::WriteAt(f, o, d)),
            1 => (n.clone(), 0u64..50).prop_map(|(f, l)| Step::SetLen(f, l)),
            3 => n.clone().prop_map(Step::Sync),
            2 => Just(Step::SyncDir),
            1 => (n.clone(), n.clone()).prop_map(|(f, t)| Step::Rename(f, t)),
            1 => n.clone().prop_map(Step::Remove),
            2 => (n, 0u64..50, 0usize..30).prop_map(|(f, o, l)| Step::ReadRange(f, o, l)),
            1 => Just(Step::Crash),
        ]
    }

    /// Everything a reader can see: the listing and each file's bytes.
    fn visible(b: &dyn Backend, d: &Path) -> Vec<(String, Vec<u8>, u64)> {
        let mut names = b.list(d).unwrap();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let p = d.join(&n);
                (n, b.read(&p).unwrap(), b.file_len(&p).unwrap())
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Differential: the real-file backend with held-back writes sees, and keeps
        /// across a crash, exactly what `FaultyBackend`'s crash model says.
        #[test]
        fn agrees_with_the_faulty_backend_crash_model(
            steps in prop::collection::vec(step(), 1..60)
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let d = tmp.path().join("d");
            let model = FaultyBackend::new();
            model.create_dir_all(&d).unwrap();
            let mut real = LoseUnsyncedBackend::new();
            real.create_dir_all(&d).unwrap();
            let p = |i: usize| d.join(NAMES[i]);
            for s in &steps {
                let (want, got): (io::Result<Vec<u8>>, io::Result<Vec<u8>>) = match s {
                    Step::Create(f) => (model.create(&p(*f)).map(|_| vec![]), real.create(&p(*f)).map(|_| vec![])),
                    Step::Append(f, data) => (
                        model.append(&p(*f), data).map(|o| o.to_be_bytes().to_vec()),
                        real.append(&p(*f), data).map(|o| o.to_be_bytes().to_vec()),
                    ),
                    Step::WriteAt(f, o, data) => (
                        model.write_at(&p(*f), *o, data).map(|_| vec![]),
                        real.write_at(&p(*f), *o, data).map(|_| vec![]),
                    ),
                    Step::SetLen(f, l) => (
                        model.set_len(&p(*f), *l).map(|_| vec![]),
                        real.set_len(&p(*f), *l).map(|_| vec![]),
                    ),
                    Step::Sync(f) => (model.sync(&p(*f)).map(|_| vec![]), real.sync(&p(*f)).map(|_| vec![])),
                    Step::SyncDir => (model.sync_dir(&d).map(|_| vec![]), real.sync_dir(&d).map(|_| vec![])),
                    Step::Rename(f, t) => (
                        model.rename(&p(*f), &p(*t)).map(|_| vec![]),
                        real.rename(&p(*f), &p(*t)).map(|_| vec![]),
                    ),
                    Step::Remove(f) => (model.remove(&p(*f)).map(|_| vec![]), real.remove(&p(*f)).map(|_| vec![])),
                    Step::ReadRange(f, o, l) => (
                        model.read_range(&p(*f), *o, *l),
                        real.read_range(&p(*f), *o, *l),
                    ),
                    Step::Crash => {
                        model.crash();
                        drop(std::mem::take(&mut real));
                        (Ok(vec![]), Ok(vec![]))
                    }
                };
                match (&want, &got) {
                    (Ok(w), Ok(g)) => prop_assert_eq!(w, g, "{:?}", s),
                    (Err(w), Err(g)) => prop_assert_eq!(w.kind(), g.kind(), "{:?}", s),
                    _ => prop_assert!(false, "{:?}: model {:?}, real {:?}", s, want, got),
                }
                prop_assert_eq!(visible(&model, &d), visible(&real, &d), "after {:?}", s);
            }
        }
    }
}
