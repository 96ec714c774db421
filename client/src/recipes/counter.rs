//! A shared counter (Curator's SharedCount / DistributedAtomicLong, optimistic form).
//!
//! Owns one node holding an i64 (8 bytes, big-endian). Updates are compare-and-set: read
//! the value and its version, write with that version, and on BadVersion (someone else
//! wrote first) read again and retry. Never loses an update and never takes a lock.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zkd_client::Error> {
//! # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
//! use std::time::Duration;
//! use zkd_client::{recipes::SharedCounter, ZooKeeper};
//!
//! let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
//! let path = format!("/doc-counter-{}", std::process::id());
//! let c = SharedCounter::new(&zk, &path, 10).await?;
//! assert_eq!(c.add(5).await?, 15);
//! assert_eq!(c.get().await?.0, 15);
//! # zk.delete(&path, -1).await?;
//! # zk.close().await?;
//! # Ok(())
//! # }
//! ```

use zkd_proto::ErrorCode;

use crate::error::Error;
use crate::session::{CreateOptions, ZooKeeper};

#[derive(Debug, Clone)]
pub struct SharedCounter {
    zk: ZooKeeper,
    path: String,
}

fn decode(d: &[u8]) -> Result<i64, Error> {
    let b: [u8; 8] = d
        .try_into()
        .map_err(|_| Error::Protocol(format!("counter node holds {} bytes, not 8", d.len())))?;
    Ok(i64::from_be_bytes(b))
}

impl SharedCounter {
    /// Opens the counter at `path`, creating it (and its parents) with `initial` if absent.
    pub async fn new(zk: &ZooKeeper, path: &str, initial: i64) -> Result<SharedCounter, Error> {
        if let Some(i) = path.rfind('/') {
            if i > 0 {
                zk.create_all(&path[..i]).await?;
            }
        }
        match zk
            .create(path, &initial.to_be_bytes(), &CreateOptions::default())
            .await
        {
            Ok(_) | Err(Error::Keeper(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(e),
        }
        Ok(SharedCounter {
            zk: zk.clone(),
            path: path.to_string(),
        })
    }

    /// The value and the node's data version.
    pub async fn get(&self) -> Result<(i64, i32), Error> {
        let (d, st) = self.zk.get_data(&self.path).await?;
        Ok((decode(&d)?, st.version))
    }

    /// Sets `value` if the node is still at `version`; false if someone wrote first.
    pub async fn try_set(&self, value: i64, version: i32) -> Result<bool, Error> {
        match self
            .zk
            .set_data(&self.path, &value.to_be_bytes(), version)
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Keeper(ErrorCode::BadVersion)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `delta` (compare-and-set, retried until it wins); returns the new value.
    pub async fn add(&self, delta: i64) -> Result<i64, Error> {
        loop {
            let (v, ver) = self.get().await?;
            let new = v.wrapping_add(delta);
            if self.try_set(new, ver).await? {
                return Ok(new);
            }
        }
    }
}
