//! Snapshots (ZooKeeper's `FileSnap`): whole-state images written by the server, stored
//! as opaque payloads tagged with a zxid.
//!
//! Owns files `<dataDir>/zkd-v1/snapshot.<zxid, 16 hex digits>`, their byte format, the
//! crash-safe write protocol, verification and listing. Never knows what the payload
//! encodes (the server serialises its tree and sessions), never decides which snapshot
//! recovery uses (that is [`crate::Storage::open`]).
//!
//! # Byte layout (all integers big-endian)
//!
//! ```text
//! offset  size  field
//!      0     4  magic "ZKDS"
//!      4     4  format version u32 = 1
//!      8     8  zxid i64: the last zxid applied when the snapshot *started*
//!     16     4  flags u32: bit 0 = payload is lz4 compressed (lz4_flex block format with
//!               the uncompressed size prepended); other bits must be 0
//!     20     8  payload length u64 (bytes stored, i.e. after compression)
//!     28     n  payload
//!   28+n     4  CRC32 (crc32fast, IEEE) of bytes [0, 28+n)
//! ```
//!
//! The zxid has ZooKeeper's fuzzy-snapshot meaning: the server keeps applying txns while
//! it serialises, so the image holds every txn ≤ zxid and possibly some later ones;
//! replaying the log from zxid+1 (txns are idempotent on the tree) makes it exact.
//!
//! # Write protocol (ZK-2307 / ZK-4269)
//!
//! 1. write `snapshot.<zxid>.tmp` (header, payload, trailer),
//! 2. fsync it,
//! 3. rename it to `snapshot.<zxid>`,
//! 4. fsync the directory.
//!
//! A crash before 3 leaves a `.tmp` that [`SnapStore::open`] ignores and removes; a crash
//! between 3 and 4 leaves either the old directory state or the complete new file. The
//! newest snapshot file is therefore never half-written because of a crash; if it is
//! damaged anyway (bit rot), recovery falls back to an older one when the log allows.
//!
//! Failures here are retryable ([`StorageError::Io`]): nothing durable changed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{Backend, FileBytes};
use crate::error::{Result, StorageError};
use crate::txnlog::ensure_dir;
use crate::zxid;
use crate::VERSION_DIR;

/// File name prefix of snapshots.
pub const SNAPSHOT_PREFIX: &str = "snapshot";
/// Suffix of a snapshot being written.
pub const TMP_SUFFIX: &str = ".tmp";
/// Magic at the start of every snapshot.
pub const MAGIC: &[u8; 4] = b"ZKDS";
/// Current snapshot format version.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 28;
/// Bytes after the payload.
pub const TRAILER_LEN: usize = 4;
/// Flags bit 0: the payload is lz4 compressed.
pub const FLAG_LZ4: u32 = 1;

/// Payload bytes gathered before each backend append when streaming.
const STREAM_CHUNK: usize = 1 << 20;
/// Payload bytes appended between two fdatasyncs of the `.tmp` file while streaming. On
/// ext4 (data=ordered, delayed allocation) a large snapshot would otherwise sit in the
/// page cache until its final fsync, which then writes it all at once; a txn log fsync
/// issued meanwhile has to commit the same journal transaction, so it waits for the whole
/// snapshot to reach the disk (a create took 319 ms during a 190 MiB snapshot). Syncing
/// every few MiB bounds what any log fsync can find queued ahead of it to one chunk.
const SYNC_EVERY: u64 = 4 << 20;

/// A snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub zxid: i64,
    pub path: PathBuf,
}

/// The decoded fixed header of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub version: u32,
    pub zxid: i64,
    pub flags: u32,
    /// Stored payload bytes (after compression).
    pub payload_len: u64,
}

fn encode_header(zxid: i64, flags: u32, payload_len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[8..16].copy_from_slice(&zxid.to_be_bytes());
    h[16..20].copy_from_slice(&flags.to_be_bytes());
    h[20..28].copy_from_slice(&payload_len.to_be_bytes());
    h
}

/// Parses the fixed header (no CRC check: that needs the whole file).
pub fn parse_header(data: &[u8]) -> std::result::Result<SnapshotHeader, String> {
    if data.len() < HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the header",
            data.len()
        ));
    }
    if &data[..4] != MAGIC {
        return Err("bad magic (not a zkd snapshot)".into());
    }
    let u32_at = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().expect("4"));
    let version = u32_at(4);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    Ok(SnapshotHeader {
        version,
        zxid: i64::from_be_bytes(data[8..16].try_into().expect("8")),
        flags: u32_at(16),
        payload_len: u64::from_be_bytes(data[20..28].try_into().expect("8")),
    })
}

/// Verifies a whole snapshot file and returns its header and (decompressed) payload.
pub fn decode(data: &[u8]) -> std::result::Result<(SnapshotHeader, Vec<u8>), String> {
    let (header, body_end) = verify(data)?;
    let payload = &data[HEADER_LEN..body_end];
    if header.flags & FLAG_LZ4 != 0 {
        return decompress(payload).map(|p| (header, p));
    }
    Ok((header, payload.to_vec()))
}

/// A verified snapshot's payload. Uncompressed payloads stay where the file's bytes are
/// (mapped, for real files): recovery reads snapshots of hundreds of MiB, and a copy
/// costs both time and peak memory.
#[derive(Clone)]
pub struct SnapshotPayload {
    bytes: FileBytes,
    start: usize,
    end: usize,
}

impl SnapshotPayload {
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_ref().to_vec()
    }
}

impl From<Vec<u8>> for SnapshotPayload {
    fn from(v: Vec<u8>) -> Self {
        let end = v.len();
        SnapshotPayload {
            bytes: FileBytes::Owned(v),
            start: 0,
            end,
        }
    }
}

impl std::ops::Deref for SnapshotPayload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }
}

impl AsRef<[u8]> for SnapshotPayload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for SnapshotPayload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for SnapshotPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotPayload({} bytes)", self.len())
    }
}

/// [`decode`] over a whole file's bytes, keeping an uncompressed payload in place.
pub fn decode_in_place(
    data: FileBytes,
) -> std::result::Result<(SnapshotHeader, SnapshotPayload), String> {
    let (header, body_end) = verify(&data)?;
    if header.flags & FLAG_LZ4 != 0 {
        return decompress(&data[HEADER_LEN..body_end]).map(|p| (header, p.into()));
    }
    Ok((
        header,
        SnapshotPayload {
            bytes: data,
            start: HEADER_LEN,
            end: body_end,
        },
    ))
}

/// Checks length, CRC and flags; returns the header and where the payload ends.
fn verify(data: &[u8]) -> std::result::Result<(SnapshotHeader, usize), String> {
    let header = parse_header(data)?;
    let expected_len = (HEADER_LEN as u64)
        .checked_add(header.payload_len)
        .and_then(|n| n.checked_add(TRAILER_LEN as u64));
    if expected_len != Some(data.len() as u64) {
        return Err(format!(
            "length mismatch: header says {} payload bytes, file has {} bytes (truncated or extended)",
            header.payload_len,
            data.len()
        ));
    }
    let body_end = data.len() - TRAILER_LEN;
    let stored = u32::from_be_bytes(data[body_end..].try_into().expect("4"));
    if crc32fast::hash(&data[..body_end]) != stored {
        return Err("CRC mismatch".into());
    }
    if header.flags & !FLAG_LZ4 != 0 {
        return Err(format!("unknown flags {:#x}", header.flags));
    }
    Ok((header, body_end))
}

#[cfg(feature = "lz4")]
fn compress(payload: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(payload)
}

#[cfg(feature = "lz4")]
fn decompress(stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    lz4_flex::block::decompress_size_prepended(stored).map_err(|e| format!("lz4: {e}"))
}

#[cfg(not(feature = "lz4"))]
fn decompress(_stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    Err("payload is lz4 compressed but zkd-storage was built without the `lz4` feature".into())
}

/// The snapshot directory for a dataDir.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(VERSION_DIR)
}

/// Snapshot files of one dataDir.
#[derive(Debug, Clone)]
pub struct SnapStore {
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    compress: bool,
}

/// Streams payload bytes into the `.tmp` file while hashing them.
struct StreamWriter<'a> {
    backend: &'a dyn Backend,
    path: &'a Path,
    buf: Vec<u8>,
    hasher: crc32fast::Hasher,
    written: u64,
    /// Bytes appended since the last fdatasync (see `SYNC_EVERY`).
    unsynced: u64,
}

impl StreamWriter<'_> {
    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.backend.append(self.path, &self.buf)?;
            self.hasher.update(&self.buf);
            self.written += self.buf.len() as u64;
            self.unsynced += self.buf.len() as u64;
            self.buf.clear();
            if self.unsynced >= SYNC_EVERY {
                self.backend.sync(self.path)?;
                self.unsynced = 0;
            }
        }
        Ok(())
    }
}

impl Write for StreamWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.drain()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

impl SnapStore {
    /// Opens (creating if needed) `<data_dir>/zkd-v1` and removes leftover `.tmp` files
    /// of interrupted writes. `compress` sets flags bit 0 on snapshots written from now on
    /// (requires the `lz4` feature; ignored with a warning without it).
    pub fn open(backend: Arc<dyn Backend>, data_dir: &Path, compress: bool) -> Result<SnapStore> {
        let dir = snapshot_dir(data_dir);
        ensure_dir(&*backend, &dir)?;
        for name in backend
            .list(&dir)
            .map_err(|e| StorageError::io("list", &dir, e))?
        {
            if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(TMP_SUFFIX) {
                let path = dir.join(&name);
                tracing::warn!(file = %path.display(), "removing leftover snapshot from an interrupted write");
                backend
                    .remove(&path)
                    .map_err(|e| StorageError::io("remove", &path, e))?;
            }
        }
        // Always fsync the directory: after a process crash a rename whose directory
        // fsync never ran may still be visible in the page cache, and recovery must not
        // start from a snapshot a later power cut would take away.
        backend
            .sync_dir(&dir)
            .map_err(|e| StorageError::io("fsync directory", &dir, e))?;
        let compress = compress && cfg!(feature = "lz4");
        Ok(SnapStore {
            backend,
            dir,
            compress,
        })
    }

    /// The snapshot directory (`<dataDir>/zkd-v1`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, zxid: i64) -> PathBuf {
        self.dir.join(zxid::file_name(SNAPSHOT_PREFIX, zxid))
    }

    /// Writes a snapshot whose payload is `payload`, crash-safely (see the module header).
    pub fn write(&self, zxid: i64, payload: &[u8]) -> Result<SnapshotInfo> {
        #[cfg(feature = "lz4")]
        if self.compress {
            let stored = compress(payload);
            return self.write_stored(zxid, FLAG_LZ4, &mut |w| w.write_all(&stored));
        }
        self.write_stored(zxid, 0, &mut |w| w.write_all(payload))
    }

    /// Writes a snapshot whose payload the callback streams into the writer, so a large
    /// tree need not be serialised into memory first (except when compressing).
    pub fn write_with(
        &self,
        zxid: i64,
        produce: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<SnapshotInfo> {
        if self.compress {
            let mut payload = Vec::new();
            produce(&mut payload)
                .map_err(|e| StorageError::io("serialise snapshot", self.path_of(zxid), e))?;
            return self.write(zxid, &payload);
        }
        self.write_stored(zxid, 0, produce)
    }

    fn write_stored(
        &self,
        zxid: i64,
        flags: u32,
        produce: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<SnapshotInfo> {
        let path = self.path_of(zxid);
        let tmp = self.dir.join(format!(
            "{}{TMP_SUFFIX}",
            zxid::file_name(SNAPSHOT_PREFIX, zxid)
        ));
        let result = self.write_tmp(&tmp, zxid, flags, produce);
        let result = result.and_then(|()| {
            self.backend
                .rename(&tmp, &path)
                .map_err(|e| StorageError::io("rename", &tmp, e))?;
            self.backend
                .sync_dir(&self.dir)
                .map_err(|e| StorageError::io("fsync directory", &self.dir, e))
        });
        if let Err(e) = result {
            // Best effort: a leftover .tmp is harmless (removed at the next open).
            let _ = self.backend.remove(&tmp);
            return Err(e);
        }
        Ok(SnapshotInfo { zxid, path })
    }

    fn write_tmp(
        &self,
        tmp: &Path,
        zxid: i64,
        flags: u32,
        produce: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let backend = &*self.backend;
        let io_err = |op: &'static str| move |e| StorageError::io(op, tmp, e);
        backend.create(tmp).map_err(io_err("create"))?;
        // Placeholder header; the real one (with the length) is written once known.
        backend
            .append(tmp, &[0u8; HEADER_LEN])
            .map_err(io_err("write"))?;
        let mut writer = StreamWriter {
            backend,
            path: tmp,
            buf: Vec::with_capacity(STREAM_CHUNK),
            hasher: crc32fast::Hasher::new(),
            written: 0,
            unsynced: 0,
        };
        produce(&mut writer).map_err(io_err("serialise snapshot into"))?;
        writer.drain().map_err(io_err("write"))?;
        let header = encode_header(zxid, flags, writer.written);
        backend.write_at(tmp, 0, &header).map_err(io_err("write"))?;
        // CRC(header ++ payload) without re-reading the payload.
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header);
        crc.combine(&writer.hasher);
        backend
            .append(tmp, &crc.finalize().to_be_bytes())
            .map_err(io_err("write"))?;
        backend.sync(tmp).map_err(io_err("fsync"))?;
        Ok(())
    }

    /// Snapshot files, oldest first. `.tmp` files and foreign names are not listed.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        list_snapshots(&*self.backend, &self.dir)
    }

    /// Reads and verifies one snapshot; returns its payload.
    pub fn read(&self, info: &SnapshotInfo) -> Result<SnapshotPayload> {
        read_snapshot(&*self.backend, info)
    }

    /// The newest snapshot that verifies, skipping (with a warning) damaged ones.
    pub fn latest_valid(&self) -> Result<Option<(i64, SnapshotPayload)>> {
        for info in self.list()?.iter().rev() {
            match self.read(info) {
                Ok(payload) => return Ok(Some((info.zxid, payload))),
                Err(e) => tracing::warn!(error = %e, "skipping unreadable snapshot"),
            }
        }
        Ok(None)
    }

    /// Removes a snapshot file (durable after the next directory fsync).
    pub fn remove(&self, info: &SnapshotInfo) -> Result<()> {
        self.backend
            .remove(&info.path)
            .map_err(|e| StorageError::io("remove", &info.path, e))
    }
}

/// Snapshot files in `dir`, oldest first.
pub fn list_snapshots(backend: &dyn Backend, dir: &Path) -> Result<Vec<SnapshotInfo>> {
    let mut out: Vec<SnapshotInfo> = backend
        .list(dir)
        .map_err(|e| StorageError::io("list", dir, e))?
        .into_iter()
        .filter_map(|name| {
            Some(SnapshotInfo {
                zxid: zxid::parse_file_name(SNAPSHOT_PREFIX, &name)?,
                path: dir.join(name),
            })
        })
        .collect();
    out.sort_by_key(|i| i.zxid);
    Ok(out)
}

/// Reads and verifies a snapshot, including that the header's zxid matches the name.
pub fn read_snapshot(backend: &dyn Backend, info: &SnapshotInfo) -> Result<SnapshotPayload> {
    let data = backend
        .read_whole(&info.path)
        .map_err(|e| StorageError::io("read", &info.path, e))?;
    let corrupt = |reason: String| StorageError::CorruptSnapshot {
        path: info.path.clone(),
        reason,
    };
    let (header, payload) = decode_in_place(data).map_err(corrupt)?;
    if header.zxid != info.zxid {
        return Err(corrupt(format!(
            "file name says zxid {:#x} but the header says {:#x}",
            info.zxid, header.zxid
        )));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    fn latest(s: &SnapStore) -> Option<(i64, Vec<u8>)> {
        s.latest_valid().unwrap().map(|(z, p)| (z, p.to_vec()))
    }

    use super::*;
    use crate::{FaultyBackend, MemBackend};

    fn store(backend: Arc<dyn Backend>, compress: bool) -> SnapStore {
        SnapStore::open(backend, Path::new("/data"), compress).unwrap()
    }

    #[test]
    fn write_list_read() {
        let s = store(Arc::new(MemBackend::new()), false);
        s.write(5, b"five").unwrap();
        s.write(0x1_0000_0003, b"epoch one").unwrap();
        let list = s.list().unwrap();
        assert_eq!(
            list.iter().map(|i| i.zxid).collect::<Vec<_>>(),
            vec![5, 0x1_0000_0003]
        );
        assert_eq!(s.read(&list[0]).unwrap().to_vec(), b"five");
        assert_eq!(latest(&s), Some((0x1_0000_0003, b"epoch one".to_vec())));
    }

    #[test]
    fn streaming_large_payload() {
        let s = store(Arc::new(MemBackend::new()), false);
        let payload: Vec<u8> = (0..3 * STREAM_CHUNK + 17).map(|i| (i * 7) as u8).collect();
        let info = s
            .write_with(9, &mut |w| {
                for chunk in payload.chunks(1000) {
                    w.write_all(chunk)?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(s.read(&info).unwrap().to_vec(), payload);
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn compressed_round_trip() {
        let backend = Arc::new(MemBackend::new());
        let s = store(backend.clone(), true);
        let payload = vec![b'z'; 100_000];
        let info = s.write(3, &payload).unwrap();
        assert!(backend.file_len(&info.path).unwrap() < 10_000);
        let header = parse_header(&backend.read(&info.path).unwrap()).unwrap();
        assert_eq!(header.flags, FLAG_LZ4);
        assert_eq!(s.read(&info).unwrap().to_vec(), payload);
        // Streaming with compression buffers and compresses too.
        let info = s.write_with(4, &mut |w| w.write_all(&payload)).unwrap();
        assert_eq!(s.read(&info).unwrap().to_vec(), payload);
    }

    #[test]
    fn damaged_snapshots_are_detected() {
        let backend = Arc::new(FaultyBackend::new());
        let s = store(backend.clone(), false);
        let old = s.write(1, b"old state").unwrap();
        let new = s.write(2, b"new state").unwrap();
        backend.flip_bit(&new.path, HEADER_LEN as u64 + 2, 0);
        let err = s.read(&new).unwrap_err();
        assert!(err.to_string().contains("CRC mismatch"), "{err}");
        assert!(
            err.to_string().contains("snapshot.0000000000000002"),
            "{err}"
        );
        assert_eq!(latest(&s), Some((1, b"old state".to_vec())));

        backend.set_len(&old.path, 20).unwrap();
        assert!(s
            .read(&old)
            .unwrap_err()
            .to_string()
            .contains("shorter than the header"));
        assert_eq!(latest(&s), None);
    }

    #[test]
    fn header_zxid_must_match_name() {
        let backend = Arc::new(MemBackend::new());
        let s = store(backend.clone(), false);
        let info = s.write(7, b"x").unwrap();
        let renamed = s.dir().join(zxid::file_name(SNAPSHOT_PREFIX, 8));
        backend.rename(&info.path, &renamed).unwrap();
        let err = s
            .read(&SnapshotInfo {
                zxid: 8,
                path: renamed,
            })
            .unwrap_err();
        assert!(err.to_string().contains("file name says zxid"), "{err}");
    }

    #[test]
    fn leftover_tmp_is_ignored_and_removed() {
        let backend = Arc::new(FaultyBackend::new());
        let s = store(backend.clone(), false);
        s.write(1, b"good").unwrap();
        let tmp = s.dir().join("snapshot.0000000000000002.tmp");
        backend.create(&tmp).unwrap();
        backend.append(&tmp, b"ZKDS half written").unwrap();
        backend.sync(&tmp).unwrap();
        backend.sync_dir(s.dir()).unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
        let s = store(backend.clone(), false);
        assert!(!backend.exists(&tmp).unwrap());
        assert_eq!(latest(&s), Some((1, b"good".to_vec())));
    }

    #[test]
    fn crash_during_write_leaves_old_or_new() {
        // Crash after each step count of the protocol: the newest listed snapshot must
        // always verify.
        for fail_at in 0..3 {
            let backend = Arc::new(FaultyBackend::new());
            let s = store(backend.clone(), false);
            s.write(1, b"old").unwrap();
            if fail_at == 0 {
                backend.fail_next_sync(); // the .tmp fsync fails
                assert!(s.write(2, b"new").is_err());
            } else {
                s.write(2, b"new").unwrap();
            }
            backend.crash();
            let s = store(backend.clone(), false);
            let (zxid, payload) = s.latest_valid().unwrap().unwrap();
            assert!(zxid == 1 && *payload == b"old"[..] || zxid == 2 && *payload == b"new"[..]);
            for info in s.list().unwrap() {
                s.read(&info).unwrap();
            }
        }
    }

    #[test]
    fn failed_directory_fsync_is_an_error_and_crash_keeps_old_state() {
        let backend = Arc::new(FaultyBackend::new());
        let s = store(backend.clone(), false);
        s.write(1, b"old").unwrap();
        backend.fail_sync_after(1); // the .tmp fsync succeeds, the directory fsync fails
        let err = s.write(2, b"new").unwrap_err();
        assert!(!err.is_fatal(), "{err}");
        backend.crash();
        let s = store(backend.clone(), false);
        assert_eq!(latest(&s), Some((1, b"old".to_vec())));
    }

    #[test]
    fn large_snapshot_is_synced_while_streamed_and_reads_back() {
        // More than two SYNC_EVERY chunks: the .tmp file is fdatasynced along the way
        // (the second sync fails here, before the final one), and a crash then leaves the
        // old snapshot; without the failure the big one verifies.
        let big: Vec<u8> = (0..(2 * SYNC_EVERY as usize + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        let backend = Arc::new(FaultyBackend::new());
        let s = store(backend.clone(), false);
        s.write(1, b"old").unwrap();
        backend.fail_sync_after(1);
        assert!(s.write(2, &big).is_err());
        backend.crash();
        let s = store(backend.clone(), false);
        assert_eq!(latest(&s), Some((1, b"old".to_vec())));
        s.write(3, &big).unwrap();
        assert_eq!(latest(&s), Some((3, big)));
    }
}
