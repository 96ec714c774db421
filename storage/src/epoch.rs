//! The two epoch files of a ZAB server (ZooKeeper's `acceptedEpoch` and `currentEpoch`
//! in `version-2`): the epoch this server promised to follow, and the epoch whose
//! NEWLEADER it acknowledged.
//!
//! Owns `<dataDir>/zkd-v1/acceptedEpoch` and `<dataDir>/zkd-v1/currentEpoch`: decimal
//! text and a newline, as ZooKeeper writes them. Written to a `.tmp`, fsynced, renamed,
//! directory fsynced, so a crash leaves the old or the new value, never a torn one
//! (ZOOKEEPER-2307/4269: a torn or missing epoch file kept servers from restarting).
//! Never decides what an epoch means; zab does.
//!
//! A missing file reads as epoch 0 (a fresh server). A file that exists but does not
//! parse is corruption and stops start-up with the path: guessing an epoch could let a
//! server vote or follow in a way it promised not to.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::txnlog::ensure_dir;
use crate::VERSION_DIR;

pub const ACCEPTED_EPOCH: &str = "acceptedEpoch";
pub const CURRENT_EPOCH: &str = "currentEpoch";

/// The epoch files in `data_dir`.
#[derive(Debug, Clone)]
pub struct EpochFiles {
    dir: PathBuf,
}

impl EpochFiles {
    pub fn new(data_dir: &Path) -> EpochFiles {
        EpochFiles {
            dir: data_dir.join(VERSION_DIR),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads one epoch file; 0 when it does not exist.
    pub fn read(&self, backend: &dyn Backend, name: &str) -> Result<u32> {
        let path = self.path(name);
        if !backend
            .exists(&path)
            .map_err(|e| StorageError::io("stat", &path, e))?
        {
            return Ok(0);
        }
        let bytes = backend
            .read(&path)
            .map_err(|e| StorageError::io("read", &path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        text.trim().parse::<u32>().map_err(|_| StorageError::Invalid(format!(
            "epoch file {} holds {:?}, not an epoch number; restore it from another server's value or remove the server's data directory",
            path.display(),
            text.trim()
        )))
    }

    /// Writes one epoch file durably (tmp, fsync, rename, directory fsync).
    pub fn write(&self, backend: &dyn Backend, name: &str, epoch: u32) -> Result<()> {
        ensure_dir(backend, &self.dir)?;
        let path = self.path(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let fail = |op: &'static str, p: &Path, e: std::io::Error| StorageError::Io {
            op,
            path: p.to_path_buf(),
            source: e,
        };
        backend.create(&tmp).map_err(|e| fail("create", &tmp, e))?;
        backend
            .write_at(&tmp, 0, format!("{epoch}\n").as_bytes())
            .map_err(|e| fail("write", &tmp, e))?;
        backend.sync(&tmp).map_err(|e| StorageError::SyncFailed {
            path: tmp.clone(),
            source: e,
        })?;
        backend
            .rename(&tmp, &path)
            .map_err(|e| fail("rename", &tmp, e))?;
        backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::SyncFailed {
                path: self.dir.clone(),
                source: e,
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FaultyBackend, MemBackend};
    use std::sync::Arc;

    #[test]
    fn missing_reads_zero_and_values_round_trip() {
        let b: Arc<dyn Backend> = Arc::new(MemBackend::new());
        let f = EpochFiles::new(Path::new("/data"));
        assert_eq!(f.read(&*b, ACCEPTED_EPOCH).unwrap(), 0);
        f.write(&*b, ACCEPTED_EPOCH, 7).unwrap();
        f.write(&*b, CURRENT_EPOCH, 6).unwrap();
        assert_eq!(f.read(&*b, ACCEPTED_EPOCH).unwrap(), 7);
        assert_eq!(f.read(&*b, CURRENT_EPOCH).unwrap(), 6);
        f.write(&*b, ACCEPTED_EPOCH, u32::MAX).unwrap();
        assert_eq!(f.read(&*b, ACCEPTED_EPOCH).unwrap(), u32::MAX);
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let b = MemBackend::new();
        let f = EpochFiles::new(Path::new("/data"));
        f.write(&b, CURRENT_EPOCH, 3).unwrap();
        let p = f.path(CURRENT_EPOCH);
        b.create(&p).unwrap();
        b.write_at(&p, 0, b"3x\n").unwrap();
        let e = f.read(&b, CURRENT_EPOCH).unwrap_err().to_string();
        assert!(e.contains("currentEpoch") && e.contains("3x"), "{e}");
    }

    #[test]
    fn a_crash_keeps_the_old_or_the_new_value() {
        let b = FaultyBackend::new();
        let f = EpochFiles::new(Path::new("/data"));
        f.write(&b, ACCEPTED_EPOCH, 1).unwrap();
        // Crash right after a completed write: the new value is durable.
        f.write(&b, ACCEPTED_EPOCH, 2).unwrap();
        b.crash();
        assert_eq!(f.read(&b, ACCEPTED_EPOCH).unwrap(), 2);
    }
}
