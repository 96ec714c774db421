//! The byte-level IO seam: every read, write, fsync, rename and directory listing of the
//! storage layer goes through [`Backend`].
//!
//! Owns the mapping from "path + bytes" operations to a medium: [`FileBackend`] (std::fs),
//! [`MemBackend`] (a map in memory, no crash semantics) and, in `faulty.rs`,
//! [`crate::FaultyBackend`] (in memory, tracks synced vs volatile state, simulates
//! crashes, torn writes, bit flips and failed fsyncs) and, in `unsynced.rs`,
//! [`crate::LoseUnsyncedBackend`] (real files, but unsynced writes held in memory so that
//! killing the process loses them: power loss for real-process tests).
//!
//! The trait is path-based rather than handle-based so that a fault-injecting
//! implementation sees every operation with its file name and can model directory entries
//! separately from file contents. It is object safe (`Arc<dyn Backend>`) and `Send + Sync`
//! because the group-commit fsync runs on another thread than the appends.
//!
//! Never interprets bytes, never retries, never swallows an error: policy (what is fatal)
//! belongs to the callers.
//!
//! Durability contract every caller relies on, matching POSIX:
//! - file contents and size become durable only after `sync(path)` returns Ok;
//! - a created, renamed or removed directory entry becomes durable only after
//!   `sync_dir(parent)` returns Ok;
//! - `write_at` past the end extends the file, zero-filling any hole.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// A whole file's bytes: owned, or mapped read-only from the page cache (recovery reads
/// snapshots of hundreds of MiB: mapping them costs neither a copy nor fresh memory).
#[derive(Clone)]
pub enum FileBytes {
    Owned(Vec<u8>),
    Mapped(Arc<memmap2::Mmap>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(v) => v,
            FileBytes::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

/// Byte-level file system operations. See the module header for the durability contract.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Creates an empty file, truncating an existing one with the same name.
    fn create(&self, path: &Path) -> io::Result<()>;
    /// Writes `data` at `offset`, extending (and zero-filling) as needed.
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes `data` at the current end of the file; returns the offset it was written at.
    fn append(&self, path: &Path, data: &[u8]) -> io::Result<u64>;
    /// Reads the whole file, mapped where the medium allows it.
    fn read_whole(&self, path: &Path) -> io::Result<FileBytes> {
        self.read(path).map(FileBytes::Owned)
    }
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Current length of the file in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Extends (with zeros) or truncates the file to `len` bytes.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the file's contents and size durable (fdatasync).
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// True when a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// The real file system through `std::fs`.
///
/// Keeps one open handle per file so that appends and fdatasync do not pay an `open` each
/// time; positional IO (`pwrite`/`pread`) lets several threads share a handle.
#[derive(Debug, Default)]
pub struct FileBackend {
    handles: Mutex<HashMap<PathBuf, Arc<File>>>,
}

impl FileBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn handle(&self, path: &Path) -> io::Result<Arc<File>> {
        let mut handles = self.handles.lock();
        if let Some(file) = handles.get(path) {
            return Ok(file.clone());
        }
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(path)?);
        handles.insert(path.to_path_buf(), file.clone());
        Ok(file)
    }

    fn forget(&self, path: &Path) {
        self.handles.lock().remove(path);
    }
}

impl Backend for FileBackend {
    fn create(&self, path: &Path) -> io::Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        self.handles
            .lock()
            .insert(path.to_path_buf(), Arc::new(file));
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.handle(path)?.write_all_at(data, offset)
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<u64> {
        let file = self.handle(path)?;
        let offset = file.metadata()?.len();
        file.write_all_at(data, offset)?;
        Ok(offset)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_whole(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and only ever made of files zkd wrote, synced and
        // renamed into place (snapshots are never modified after the rename). A process
        // outside zkd truncating the file meanwhile could fault the read; that is the
        // one hazard of mapping, accepted for snapshots, which nobody else writes.
        // `populate` fills the page tables in one call instead of a fault per page.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
        Ok(FileBytes::Mapped(Arc::new(map)))
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let file = self.handle(path)?;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = file.read_at(&mut buf[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.handle(path)?.set_len(len)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.handle(path)?.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

/// Files in memory; every write is immediately "durable" (no crash model). For unit tests
/// and tools that need a scratch medium; use [`crate::FaultyBackend`] to test crashes.
#[derive(Debug, Default)]
pub struct MemBackend {
    state: Mutex<MemState>,
}

#[derive(Debug, Default)]
struct MemState {
    files: BTreeMap<PathBuf, Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
}

impl MemBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

pub(crate) fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

pub(crate) fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Writes `data` into `buf` at `offset`, zero-filling a hole. Shared by the in-memory
/// backends.
pub(crate) fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let offset = offset as usize;
    let end = offset + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[offset..end].copy_from_slice(data);
}

pub(crate) fn read_slice(buf: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let start = (offset as usize).min(buf.len());
    let end = start.saturating_add(len).min(buf.len());
    buf[start..end].to_vec()
}

impl MemState {
    fn file(&mut self, path: &Path) -> io::Result<&mut Vec<u8>> {
        self.files.get_mut(path).ok_or_else(|| not_found(path))
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        if self.dirs.contains(&parent_of(path)) {
            Ok(())
        } else {
            Err(not_found(&parent_of(path)))
        }
    }
}

impl Backend for MemBackend {
    fn create(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check_parent(path)?;
        s.files.insert(path.to_path_buf(), Vec::new());
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        write_into(self.state.lock().file(path)?, offset, data);
        Ok(())
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<u64> {
        let mut s = self.state.lock();
        let file = s.file(path)?;
        let offset = file.len() as u64;
        file.extend_from_slice(data);
        Ok(offset)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        Ok(self.state.lock().file(path)?.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        Ok(read_slice(self.state.lock().file(path)?, offset, len))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.state.lock().file(path)?.len() as u64)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.state.lock().file(path)?.resize(len as usize, 0);
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.state.lock().file(path).map(|_| ())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.state.lock().dirs.contains(dir) {
            Ok(())
        } else {
            Err(not_found(dir))
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check_parent(to)?;
        let data = s.files.remove(from).ok_or_else(|| not_found(from))?;
        s.files.insert(to.to_path_buf(), data);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.state
            .lock()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(s.files
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
        Ok(s.files.contains_key(path) || s.dirs.contains(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(b: &dyn Backend, root: &Path) {
        let dir = root.join("a/b");
        b.create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        b.create(&f).unwrap();
        assert_eq!(b.append(&f, b"hello").unwrap(), 0);
        b.write_at(&f, 8, b"xy").unwrap();
        assert_eq!(b.read(&f).unwrap(), b"hello\0\0\0xy");
        assert_eq!(b.read_range(&f, 3, 4).unwrap(), b"lo\0\0");
        assert_eq!(b.read_range(&f, 8, 10).unwrap(), b"xy");
        b.set_len(&f, 12).unwrap();
        assert_eq!(b.file_len(&f).unwrap(), 12);
        b.set_len(&f, 2).unwrap();
        assert_eq!(b.read(&f).unwrap(), b"he");
        b.sync(&f).unwrap();
        b.sync_dir(&dir).unwrap();
        let g = dir.join("g");
        b.rename(&f, &g).unwrap();
        assert!(!b.exists(&f).unwrap());
        assert!(b.exists(&g).unwrap());
        assert_eq!(b.list(&dir).unwrap(), vec!["g".to_string()]);
        assert_eq!(b.append(&g, b"!").unwrap(), 2);
        b.remove(&g).unwrap();
        assert!(b.list(&dir).unwrap().is_empty());
        assert!(b.read(&g).is_err());
    }

    #[test]
    fn mem_backend_basics() {
        exercise(&MemBackend::new(), Path::new("/x"));
    }

    #[test]
    fn file_backend_basics() {
        let tmp = tempfile::tempdir().unwrap();
        exercise(&FileBackend::new(), tmp.path());
    }

    #[test]
    fn lose_unsynced_backend_basics() {
        let tmp = tempfile::tempdir().unwrap();
        exercise(&crate::LoseUnsyncedBackend::new(), tmp.path());
    }

    #[test]
    fn faulty_backend_basics() {
        exercise(&crate::FaultyBackend::new(), Path::new("/x"));
    }
}
