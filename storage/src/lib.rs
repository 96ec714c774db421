//! zkd-storage: the durable storage layer of zkd.
//!
//! Owns the transaction log ([`txnlog`], ZooKeeper's `FileTxnLog`), snapshots
//! ([`snapshot`], `FileSnap`), start-up recovery combining the two ([`storage`],
//! `FileTxnSnapLog`), retention ([`purge`], `PurgeTxnLog`) and the offline inspection and
//! repair library ([`tools`], `TxnLogToolkit`). Every byte goes through the [`Backend`]
//! trait, so tests swap the file system for [`MemBackend`] or the crash-simulating
//! [`FaultyBackend`].
//!
//! Never knows what a znode, a session or a jute record is: payloads are opaque byte
//! strings tagged with a zxid (`i64`; epoch = `zxid >> 32`, counter = low 32 bits). Never
//! reads a clock or a random source (the snapCount randomisation lives in the server), so
//! a simulation can replay any run from its seed.
//!
//! Directory layout: `<dataLogDir>/zkd-v1/log.<first zxid, 16 hex digits>` and
//! `<dataDir>/zkd-v1/snapshot.<zxid, 16 hex digits>`. The `zkd-v1` level keeps our files
//! apart from an Apache ZooKeeper `version-2` directory in the same place, so a later
//! import tool can read both.

pub mod backend;
pub mod epoch;
pub mod error;
pub mod faulty;
pub mod purge;
pub mod snapshot;
pub mod storage;
pub mod tools;
pub mod txnlog;
pub mod unsynced;
pub mod zxid;

pub use backend::{Backend, FileBackend, FileBytes, MemBackend};
pub use epoch::{EpochFiles, ACCEPTED_EPOCH, CURRENT_EPOCH};
pub use error::{Result, StorageError};
pub use faulty::FaultyBackend;
pub use purge::{purge, PurgeReport};
pub use snapshot::{SnapStore, SnapshotInfo, SnapshotPayload};
pub use storage::{Recovered, Storage, StorageOptions};
pub use txnlog::{LogOptions, RecoveredLog, SegmentInfo, TxnLog};
pub use unsynced::LoseUnsyncedBackend;

/// Name of the versioned sub-directory holding our files inside dataDir and dataLogDir.
pub const VERSION_DIR: &str = "zkd-v1";
