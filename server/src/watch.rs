//! Watch registrations (ZooKeeper's WatchManager and WatcherModeManager).
//!
//! Owns which connection watches which path, in which mode, for one kind of watch (the
//! tree keeps two managers: data/exist watches and child watches). A watcher is a
//! connection, not a session, exactly as in ZooKeeper: a reconnecting client re-registers
//! its watches with setWatches. Never sends anything: triggering returns the watchers to
//! notify and the caller turns them into notifications in order.
//!
//! As in ZooKeeper 3.9 (ZOOKEEPER-4466, WatchStats), a connection may hold several modes
//! on one path at once: a one-shot watch set on a path that also has a persistent watch
//! fires once and leaves the persistent watch in place.

use std::collections::HashSet;

use crate::tree::FastMap;

/// A watcher: the id of the client connection that registered the watch.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchMode {
    Standard,
    Persistent,
    PersistentRecursive,
}

impl WatchMode {
    pub fn is_persistent(self) -> bool {
        self != WatchMode::Standard
    }
    pub fn is_recursive(self) -> bool {
        self == WatchMode::PersistentRecursive
    }
}

impl WatchMode {
    fn bit(self) -> u8 {
        match self {
            WatchMode::Standard => 1,
            WatchMode::Persistent => 2,
            WatchMode::PersistentRecursive => 4,
        }
    }
}

const RECURSIVE: u8 = 4;

#[derive(Debug, Default)]
pub struct WatchManager {
    /// foldhash: every write looks its paths up here (SipHash showed in the profiles).
    watch_table: FastMap<String, HashSet<ConnId>>,
    /// watcher -> path -> its modes there (WatchStats), as mode bits.
    watch_to_paths: FastMap<ConnId, FastMap<String, u8>>,
    recursive_count: usize,
}

impl WatchManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `mode` to the watcher's modes on `path`; true if that changed anything.
    pub fn add_watch(&mut self, path: &str, watcher: ConnId, mode: WatchMode) -> bool {
        self.watch_table
            .entry(path.to_string())
            .or_default()
            .insert(watcher);
        let modes = self
            .watch_to_paths
            .entry(watcher)
            .or_default()
            .entry(path.to_string())
            .or_insert(0);
        let old = *modes;
        *modes |= mode.bit();
        let changed = *modes != old;
        if changed && mode.is_recursive() {
            self.recursive_count += 1;
        }
        changed
    }

    fn modes(&self, watcher: ConnId, path: &str) -> u8 {
        self.watch_to_paths
            .get(&watcher)
            .and_then(|m| m.get(path))
            .copied()
            .unwrap_or(0)
    }

    /// Fires the watches an event on `path` triggers (WatchManager.triggerWatch): every
    /// watcher of the path itself (its one-shot mode is consumed) and the recursive
    /// watchers of its ancestors. Watchers in `suppress` are consumed but not returned.
    pub fn trigger(&mut self, path: &str, suppress: Option<&HashSet<ConnId>>) -> HashSet<ConnId> {
        let mut fired = HashSet::new();
        if let Some(set) = self.watch_table.get(path) {
            let watchers: Vec<ConnId> = set.iter().copied().collect();
            for w in watchers {
                fired.insert(w);
                let modes = self.modes(w, path);
                let left = modes & !WatchMode::Standard.bit();
                if left == 0 {
                    self.unwatch(path, w);
                } else if left != modes {
                    self.set_modes(w, path, left);
                }
            }
        }
        if self.recursive_count > 0 {
            let mut p = path;
            while p != "/" && !p.is_empty() {
                p = zkd_proto::path::parent(p);
                if let Some(set) = self.watch_table.get(p) {
                    for &w in set {
                        if self.modes(w, p) & RECURSIVE != 0 {
                            fired.insert(w);
                        }
                    }
                }
            }
        }
        if let Some(s) = suppress {
            fired.retain(|w| !s.contains(w));
        }
        fired
    }

    fn set_modes(&mut self, watcher: ConnId, path: &str, modes: u8) {
        if let Some(m) = self.watch_to_paths.get_mut(&watcher) {
            m.insert(path.to_string(), modes);
        }
    }

    /// Drops every mode of `watcher` on `path`.
    fn unwatch(&mut self, path: &str, watcher: ConnId) {
        if let Some(set) = self.watch_table.get_mut(path) {
            set.remove(&watcher);
            if set.is_empty() {
                self.watch_table.remove(path);
            }
        }
        let mut old = 0;
        if let Some(paths) = self.watch_to_paths.get_mut(&watcher) {
            old = paths.remove(path).unwrap_or(0);
            if paths.is_empty() {
                self.watch_to_paths.remove(&watcher);
            }
        }
        if old & RECURSIVE != 0 {
            self.recursive_count -= 1;
        }
    }

    /// Removes every watch of a closed connection.
    pub fn remove_watcher(&mut self, watcher: ConnId) {
        if let Some(paths) = self.watch_to_paths.remove(&watcher) {
            for (p, modes) in paths {
                if let Some(set) = self.watch_table.get_mut(&p) {
                    set.remove(&watcher);
                    if set.is_empty() {
                        self.watch_table.remove(&p);
                    }
                }
                if modes & RECURSIVE != 0 {
                    self.recursive_count -= 1;
                }
            }
        }
    }

    /// Whether `watcher` watches `path` in `mode` (`None` = any mode).
    pub fn contains(&self, path: &str, watcher: ConnId, mode: Option<WatchMode>) -> bool {
        let modes = self.modes(watcher, path);
        match mode {
            None => modes != 0,
            Some(m) => modes & m.bit() != 0,
        }
    }

    /// Removes `mode` (`None` = every mode) of `watcher` on `path`; true if it had it.
    pub fn remove(&mut self, path: &str, watcher: ConnId, mode: Option<WatchMode>) -> bool {
        let old = self.modes(watcher, path);
        if old == 0 {
            return false;
        }
        let Some(m) = mode else {
            self.unwatch(path, watcher);
            return true;
        };
        let left = old & !m.bit();
        if left == old {
            return false;
        }
        if left == 0 {
            self.unwatch(path, watcher);
        } else {
            self.set_modes(watcher, path, left);
            if m.is_recursive() {
                self.recursive_count -= 1;
            }
        }
        true
    }

    pub fn watch_count(&self) -> usize {
        self.watch_table.values().map(|s| s.len()).sum()
    }

    pub fn path_count(&self) -> usize {
        self.watch_table.len()
    }

    pub fn connection_count(&self) -> usize {
        self.watch_to_paths.len()
    }

    /// path -> watchers, for 4lw wchp.
    pub fn by_path(&self) -> Vec<(String, Vec<ConnId>)> {
        let mut v: Vec<_> = self
            .watch_table
            .iter()
            .map(|(p, s)| {
                let mut w: Vec<_> = s.iter().copied().collect();
                w.sort();
                (p.clone(), w)
            })
            .collect();
        v.sort();
        v
    }

    /// watcher -> paths, for 4lw wchc.
    pub fn by_watcher(&self) -> Vec<(ConnId, Vec<String>)> {
        let mut v: Vec<_> = self
            .watch_to_paths
            .iter()
            .map(|(w, s)| {
                let mut p: Vec<_> = s.keys().cloned().collect();
                p.sort();
                (*w, p)
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_watch_fires_once() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::Standard);
        assert_eq!(m.trigger("/a", None).len(), 1);
        assert!(m.trigger("/a", None).is_empty());
        assert_eq!(m.watch_count(), 0);
    }

    #[test]
    fn persistent_watch_stays() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::Persistent);
        assert_eq!(m.trigger("/a", None).len(), 1);
        assert_eq!(m.trigger("/a", None).len(), 1);
        assert!(m.trigger("/a/b", None).is_empty());
    }

    #[test]
    fn recursive_watch_sees_descendants() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::PersistentRecursive);
        assert_eq!(m.trigger("/a/b/c", None).len(), 1);
        assert_eq!(m.trigger("/a", None).len(), 1);
        assert!(m.trigger("/b", None).is_empty());
    }

    #[test]
    fn a_one_shot_watch_beside_a_persistent_one_leaves_it_in_place() {
        // ZooKeeper 3.9 (ZOOKEEPER-4466): modes accumulate per (watcher, path).
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::PersistentRecursive);
        m.add_watch("/a", 1, WatchMode::Standard);
        assert_eq!(m.trigger("/a", None).len(), 1);
        assert!(!m.contains("/a", 1, Some(WatchMode::Standard)));
        assert_eq!(m.trigger("/a/c", None).len(), 1);
        assert!(m.remove("/a", 1, Some(WatchMode::PersistentRecursive)));
        assert!(m.trigger("/a/c", None).is_empty());
        assert_eq!(m.watch_count(), 0);
    }

    #[test]
    fn closing_a_connection_drops_its_watches() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::Standard);
        m.add_watch("/b", 1, WatchMode::PersistentRecursive);
        m.add_watch("/a", 2, WatchMode::Standard);
        m.remove_watcher(1);
        assert_eq!(m.trigger("/a", None), HashSet::from([2]));
        assert!(m.trigger("/b/c", None).is_empty());
    }
}
