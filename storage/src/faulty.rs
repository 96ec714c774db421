//! [`FaultyBackend`]: an in-memory [`Backend`] that remembers what is durable, so tests can
//! crash it and see exactly what a power cut would leave.
//!
//! Owns the crash model the storage tests are written against. Never used in production.
//!
//! # Crash model
//!
//! Files are inodes with two contents: `volatile` (what reads see now) and `durable`
//! (what survives a crash). The directory namespace is kept twice too: `names` (what
//! `list`/`exists` see now) and `durable_names`.
//!
//! - `create`, `write_at`, `append`, `set_len` change only `volatile` (create of a new name
//!   makes a new inode whose durable content is empty; create of an existing name truncates
//!   that inode).
//! - `sync(path)` copies the inode's `volatile` to `durable` (contents and size together:
//!   fdatasync persists the size when it is needed to read the data back).
//! - `create`, `rename`, `remove` change only `names`; `sync_dir(dir)` copies the entries
//!   of that directory from `names` to `durable_names`. A renamed or created file whose
//!   directory was not synced is not there after a crash, even if its contents were synced
//!   (POSIX makes no promise; ext4 usually keeps it, we assume the worst).
//! - Directories themselves are always durable (we never rely on a fresh directory
//!   surviving without its parent being synced; `create_dir_all` callers sync the parent).
//! - `crash()` sets `names = durable_names` and every inode's `volatile = durable`;
//!   inodes no name refers to are gone.
//! - `crash_tearing(seed)` first applies a *torn write* to the inode written last: of the
//!   byte range where its volatile content differs from (or extends past) its durable
//!   content, a seeded random prefix is made durable, as if the disk had persisted the
//!   first part of an in-flight write. Then it crashes as above.
//! - `flip_bit(path, offset, bit)` flips one bit in both contents (bit rot on the medium).
//! - `fail_next_sync()` (or `fail_sync_after(n)`) makes the next (or n+1-th) `sync` or
//!   `sync_dir` return EIO without making
//!   anything durable (after a failed fsync Linux may drop the dirty pages, so the data is
//!   in limbo; we keep it readable but not durable, which is the worst of both).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::backend::{not_found, parent_of, read_slice, write_into, Backend};

#[derive(Debug, Default, Clone)]
struct Inode {
    volatile: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    last_written: Option<u64>,
    /// Some(n): the sync after n more successful ones fails.
    fail_sync_in: Option<u32>,
    file_syncs: u64,
    dir_syncs: u64,
}

/// In-memory backend with a crash model; see the module header.
#[derive(Default)]
pub struct FaultyBackend {
    state: Mutex<State>,
}

impl std::fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("FaultyBackend")
            .field("files", &s.names.keys().collect::<Vec<_>>())
            .field("durable_files", &s.durable_names.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Counts of successful fsyncs, for asserting that group commit batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncCounts {
    pub file_syncs: u64,
    pub dir_syncs: u64,
}

impl State {
    fn inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let id = *self.names.get(path).ok_or_else(|| not_found(path))?;
        self.last_written = Some(id);
        Ok(self.inodes.get_mut(&id).expect("named inode exists"))
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        if self.dirs.contains(&parent_of(path)) {
            Ok(())
        } else {
            Err(not_found(&parent_of(path)))
        }
    }

    fn take_sync_failure(&mut self) -> io::Result<()> {
        match self.fail_sync_in {
            Some(0) => {
                self.fail_sync_in = None;
                Err(io::Error::other("injected fsync failure (EIO)"))
            }
            Some(n) => {
                self.fail_sync_in = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// splitmix64: a tiny deterministic generator so a torn write is reproducible from its
/// seed without a dependency.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FaultyBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses everything not made durable; see the module header.
    pub fn crash(&self) {
        let mut s = self.state.lock();
        s.names = s.durable_names.clone();
        let live: BTreeSet<u64> = s.names.values().copied().collect();
        s.inodes.retain(|id, _| live.contains(id));
        for inode in s.inodes.values_mut() {
            inode.volatile = inode.durable.clone();
        }
        s.last_written = None;
        s.fail_sync_in = None;
    }

    /// Tears the last write (a seeded prefix of the unsynced bytes of the last-written
    /// file becomes durable), then crashes. Returns how many unsynced bytes were kept.
    pub fn crash_tearing(&self, seed: u64) -> usize {
        let kept = {
            let mut s = self.state.lock();
            match s.last_written.and_then(|id| s.inodes.get_mut(&id)) {
                None => 0,
                Some(inode) => {
                    let v = &inode.volatile;
                    let d = &mut inode.durable;
                    let common = v.iter().zip(d.iter()).take_while(|(a, b)| a == b).count();
                    let unsynced = v.len().saturating_sub(common);
                    let keep = (splitmix64(seed) % (unsynced as u64 + 1)) as usize;
                    let end = common + keep;
                    if d.len() < end {
                        d.resize(end, 0);
                    }
                    d[common..end].copy_from_slice(&v[common..end]);
                    keep
                }
            }
        };
        self.crash();
        kept
    }

    /// Flips bit `bit` (0..8) of the byte at `offset`, in both volatile and durable content.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) {
        assert!(bit < 8);
        let mut s = self.state.lock();
        let inode = s.inode(path).expect("flip_bit on a missing file");
        for content in [&mut inode.volatile, &mut inode.durable] {
            if let Some(b) = content.get_mut(offset as usize) {
                *b ^= 1 << bit;
            }
        }
    }

    /// Makes the next `sync` or `sync_dir` fail with EIO.
    pub fn fail_next_sync(&self) {
        self.fail_sync_after(0);
    }

    /// Lets `n` more `sync`/`sync_dir` calls succeed, then makes the next one fail.
    pub fn fail_sync_after(&self, n: u32) {
        self.state.lock().fail_sync_in = Some(n);
    }

    /// Successful fsyncs so far.
    pub fn sync_counts(&self) -> SyncCounts {
        let s = self.state.lock();
        SyncCounts {
            file_syncs: s.file_syncs,
            dir_syncs: s.dir_syncs,
        }
    }

    /// The durable content of the file named `path` in the durable namespace (what a crash
    /// now would leave), or `None`.
    pub fn durable_content(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let id = s.durable_names.get(path)?;
        Some(s.inodes.get(id)?.durable.clone())
    }
}

impl Backend for FaultyBackend {
    fn create(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check_parent(path)?;
        if let Some(&id) = s.names.get(path) {
            s.inodes.get_mut(&id).expect("named inode").volatile.clear();
            s.last_written = Some(id);
        } else {
            let id = s.next_inode;
            s.next_inode += 1;
            s.inodes.insert(id, Inode::default());
            s.names.insert(path.to_path_buf(), id);
            s.last_written = Some(id);
        }
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        write_into(&mut self.state.lock().inode(path)?.volatile, offset, data);
        Ok(())
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<u64> {
        let mut s = self.state.lock();
        let v = &mut s.inode(path)?.volatile;
        let offset = v.len() as u64;
        v.extend_from_slice(data);
        Ok(offset)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.state.lock();
        let id = s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(s.inodes[id].volatile.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.state.lock();
        let id = s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(read_slice(&s.inodes[id].volatile, offset, len))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let s = self.state.lock();
        let id = s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(s.inodes[id].volatile.len() as u64)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.state
            .lock()
            .inode(path)?
            .volatile
            .resize(len as usize, 0);
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        s.take_sync_failure()?;
        let inode = s.inodes.get_mut(&id).expect("named inode");
        inode.durable = inode.volatile.clone();
        s.file_syncs += 1;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        s.take_sync_failure()?;
        s.durable_names.retain(|p, _| p.parent() != Some(dir));
        let entries: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        s.durable_names.extend(entries);
        s.dir_syncs += 1;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check_parent(to)?;
        let id = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.state
            .lock()
            .names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        for ancestor in dir.ancestors() {
            s.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.state.lock();
        Ok(s.names.contains_key(path) || s.dirs.contains(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_contents_are_lost() {
        let b = FaultyBackend::new();
        let d = Path::new("/d");
        b.create_dir_all(d).unwrap();
        let f = d.join("f");
        b.create(&f).unwrap();
        b.append(&f, b"abc").unwrap();
        b.sync(&f).unwrap();
        b.sync_dir(d).unwrap();
        b.append(&f, b"def").unwrap();
        b.crash();
        assert_eq!(b.read(&f).unwrap(), b"abc");
    }

    #[test]
    fn unsynced_directory_entries_are_lost() {
        let b = FaultyBackend::new();
        let d = Path::new("/d");
        b.create_dir_all(d).unwrap();
        let f = d.join("f");
        b.create(&f).unwrap();
        b.append(&f, b"abc").unwrap();
        b.sync(&f).unwrap();
        b.crash();
        assert!(!b.exists(&f).unwrap());

        b.create(&f).unwrap();
        b.append(&f, b"abc").unwrap();
        b.sync(&f).unwrap();
        b.sync_dir(d).unwrap();
        let g = d.join("g");
        b.rename(&f, &g).unwrap();
        b.crash();
        assert!(b.exists(&f).unwrap());
        assert!(!b.exists(&g).unwrap());

        b.remove(&f).unwrap();
        b.crash();
        assert_eq!(b.read(&f).unwrap(), b"abc");
    }

    #[test]
    fn rename_over_keeps_old_inode_until_dir_sync() {
        let b = FaultyBackend::new();
        let d = Path::new("/d");
        b.create_dir_all(d).unwrap();
        let f = d.join("f");
        let t = d.join("f.tmp");
        b.create(&f).unwrap();
        b.append(&f, b"old").unwrap();
        b.sync(&f).unwrap();
        b.sync_dir(d).unwrap();
        b.create(&t).unwrap();
        b.append(&t, b"new").unwrap();
        b.sync(&t).unwrap();
        b.rename(&t, &f).unwrap();
        assert_eq!(b.read(&f).unwrap(), b"new");
        b.crash();
        assert_eq!(b.read(&f).unwrap(), b"old");
    }

    #[test]
    fn torn_write_keeps_a_prefix() {
        for seed in 0..50 {
            let b = FaultyBackend::new();
            let d = Path::new("/d");
            b.create_dir_all(d).unwrap();
            let f = d.join("f");
            b.create(&f).unwrap();
            b.append(&f, b"abc").unwrap();
            b.sync(&f).unwrap();
            b.sync_dir(d).unwrap();
            b.append(&f, b"defgh").unwrap();
            let kept = b.crash_tearing(seed);
            let content = b.read(&f).unwrap();
            assert_eq!(content, &b"abcdefgh"[..3 + kept]);
        }
    }

    #[test]
    fn failed_sync_makes_nothing_durable() {
        let b = FaultyBackend::new();
        let d = Path::new("/d");
        b.create_dir_all(d).unwrap();
        let f = d.join("f");
        b.create(&f).unwrap();
        b.sync_dir(d).unwrap();
        b.append(&f, b"abc").unwrap();
        b.fail_next_sync();
        assert!(b.sync(&f).is_err());
        b.crash();
        assert_eq!(b.read(&f).unwrap(), b"");
    }

    #[test]
    fn flip_bit_changes_both() {
        let b = FaultyBackend::new();
        let d = Path::new("/d");
        b.create_dir_all(d).unwrap();
        let f = d.join("f");
        b.create(&f).unwrap();
        b.append(&f, &[0u8; 4]).unwrap();
        b.sync(&f).unwrap();
        b.sync_dir(d).unwrap();
        b.flip_bit(&f, 2, 3);
        assert_eq!(b.read(&f).unwrap(), vec![0, 0, 8, 0]);
        b.crash();
        assert_eq!(b.read(&f).unwrap(), vec![0, 0, 8, 0]);
    }
}
