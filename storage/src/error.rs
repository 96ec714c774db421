//! The storage layer's error type.
//!
//! Owns the split between fatal and retryable failures. Fatal means "the process must not
//! carry on with this log": a failed fsync (after which Linux may have dropped the dirty
//! pages, so a retry would report success for data that is gone: the PostgreSQL
//! "fsyncgate" lesson), a failed log write (a half-written record in the middle of the log
//! would turn later appends into corruption), and detected corruption (an operator must
//! decide). Retryable means nothing durable was affected: a snapshot that failed to write
//! leaves the previous state intact, a purge that failed to delete can run again.
//!
//! Display strings name the file and, for corruption, the byte offset, because the
//! operator reading a start-up failure needs exactly those two facts.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Every failure the storage layer reports.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A record or header in a log segment is damaged in a place where it cannot be a torn
    /// final write. Fatal.
    #[error("corrupt txn log {path} at offset {offset}: {reason}")]
    CorruptLog {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Two consecutive segments do not join up: zxids are missing between them (for
    /// example a deleted middle segment). Fatal.
    #[error(
        "txn log gap: {prev} ends at zxid {prev_last:#x} but {next} starts at zxid {next_first:#x}"
    )]
    LogGap {
        prev: PathBuf,
        prev_last: i64,
        next: PathBuf,
        next_first: i64,
    },
    /// A snapshot failed verification. Recovery skips such files; this is returned when a
    /// specific snapshot was asked for.
    #[error("corrupt snapshot {path}: {reason}")]
    CorruptSnapshot { path: PathBuf, reason: String },
    /// No usable snapshot + log combination reproduces the newest state. Fatal.
    #[error(
        "newest snapshot {newest} is corrupt and no older valid snapshot plus logs covers zxid {zxid:#x}{detail}"
    )]
    Unrecoverable {
        newest: PathBuf,
        zxid: i64,
        /// Extra context (which older snapshot was tried and why it fell short).
        detail: String,
    },
    /// An fsync (file or directory) failed. The log is unusable from now on. Fatal.
    #[error("fsync failed on {path}: {source}; the txn log is unusable and must not be retried")]
    SyncFailed { path: PathBuf, source: io::Error },
    /// A write to the log failed; the file may hold a partial record. Fatal.
    #[error("write failed on {path}: {source}; the txn log is unusable")]
    WriteFailed { path: PathBuf, source: io::Error },
    /// An earlier fatal error made this log unusable; the message is that error's.
    #[error("txn log is unusable after an earlier fatal error: {0}")]
    Poisoned(String),
    /// Any other IO failure where nothing durable was changed (reading, listing, snapshot
    /// writing, purging). Retryable.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The request cannot be carried out on this data (e.g. truncating into a corrupt
    /// region). Not fatal for the process; the caller asked for something impossible.
    #[error("{0}")]
    Invalid(String),
}

impl StorageError {
    /// True when the process must stop using this storage (and, for the server, exit and
    /// recover from disk) rather than retry.
    pub fn is_fatal(&self) -> bool {
        match self {
            StorageError::CorruptLog { .. }
            | StorageError::LogGap { .. }
            | StorageError::Unrecoverable { .. }
            | StorageError::SyncFailed { .. }
            | StorageError::WriteFailed { .. }
            | StorageError::Poisoned(_) => true,
            StorageError::CorruptSnapshot { .. }
            | StorageError::Io { .. }
            | StorageError::Invalid(_) => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
