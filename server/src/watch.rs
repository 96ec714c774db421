//! Watch registrations (ZooKeeper's WatchManager and WatcherModeManager).
//!
//! Owns which connection watches which path, in which mode, for one kind of watch (the
//! tree keeps two managers: data/exist watches and child watches). A watcher is a
//! connection, not a session, exactly as in ZooKeeper: a reconnecting client re-registers
//! its watches with setWatches. Never sends anything: triggering returns the watchers to
//! notify and the caller turns them into notifications in order.
//!
//! ZooKeeper keeps one mode per (watcher, path): registering a standard watch where a
//! persistent one exists replaces it (ZOOKEEPER-4466). We mirror that on purpose, because
//! clients observe it.

use std::collections::{HashMap, HashSet};

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

#[derive(Debug, Default)]
pub struct WatchManager {
    watch_table: HashMap<String, HashSet<ConnId>>,
    watch_to_paths: HashMap<ConnId, HashSet<String>>,
    modes: HashMap<(ConnId, String), WatchMode>,
    recursive_count: usize,
}

impl WatchManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_watch(&mut self, path: &str, watcher: ConnId, mode: WatchMode) -> bool {
        self.watch_table
            .entry(path.to_string())
            .or_default()
            .insert(watcher);
        let old = self.modes.insert((watcher, path.to_string()), mode);
        if old == Some(WatchMode::PersistentRecursive) {
            self.recursive_count -= 1;
        }
        if mode == WatchMode::PersistentRecursive {
            self.recursive_count += 1;
        }
        self.watch_to_paths
            .entry(watcher)
            .or_default()
            .insert(path.to_string())
    }

    fn mode_of(&self, watcher: ConnId, path: &str) -> WatchMode {
        self.modes
            .get(&(watcher, path.to_string()))
            .copied()
            .unwrap_or(WatchMode::Standard)
    }

    fn forget_mode(&mut self, watcher: ConnId, path: &str) {
        if self.modes.remove(&(watcher, path.to_string())) == Some(WatchMode::PersistentRecursive) {
            self.recursive_count -= 1;
        }
    }

    /// Fires the watches an event on `path` triggers: watchers of the path itself (one-shot
    /// ones are removed) and recursive watchers of any ancestor (never for
    /// NodeChildrenChanged). Watchers in `suppress` are removed as usual but not returned.
    pub fn trigger(
        &mut self,
        path: &str,
        is_children_changed: bool,
        suppress: Option<&HashSet<ConnId>>,
    ) -> HashSet<ConnId> {
        let mut fired = HashSet::new();
        let mut candidates: Vec<(String, bool)> = vec![(path.to_string(), false)];
        if self.recursive_count > 0 {
            let mut p = path;
            while p != "/" {
                p = zkd_proto::path::parent(p);
                candidates.push((p.to_string(), true));
            }
        }
        for (local, at_parent) in candidates {
            let Some(set) = self.watch_table.get(&local) else {
                continue;
            };
            let mut remove = Vec::new();
            for &w in set {
                let mode = self.mode_of(w, &local);
                if mode.is_recursive() {
                    if !is_children_changed {
                        fired.insert(w);
                    }
                } else if !at_parent {
                    fired.insert(w);
                    if !mode.is_persistent() {
                        remove.push(w);
                    }
                }
            }
            for w in remove {
                self.remove_one(&local, w);
            }
        }
        if let Some(s) = suppress {
            fired.retain(|w| !s.contains(w));
        }
        fired
    }

    fn remove_one(&mut self, path: &str, watcher: ConnId) {
        if let Some(set) = self.watch_table.get_mut(path) {
            set.remove(&watcher);
            if set.is_empty() {
                self.watch_table.remove(path);
            }
        }
        if let Some(paths) = self.watch_to_paths.get_mut(&watcher) {
            paths.remove(path);
            if paths.is_empty() {
                self.watch_to_paths.remove(&watcher);
            }
        }
        self.forget_mode(watcher, path);
    }

    /// Removes every watch of a closed connection.
    pub fn remove_watcher(&mut self, watcher: ConnId) {
        if let Some(paths) = self.watch_to_paths.remove(&watcher) {
            for p in paths {
                if let Some(set) = self.watch_table.get_mut(&p) {
                    set.remove(&watcher);
                    if set.is_empty() {
                        self.watch_table.remove(&p);
                    }
                }
                self.forget_mode(watcher, &p);
            }
        }
    }

    /// Whether `watcher` watches `path` in `mode` (`None` = any mode).
    pub fn contains(&self, path: &str, watcher: ConnId, mode: Option<WatchMode>) -> bool {
        let present = self
            .watch_table
            .get(path)
            .is_some_and(|s| s.contains(&watcher));
        present && mode.is_none_or(|m| self.mode_of(watcher, path) == m)
    }

    /// Removes one watch of `watcher` on `path` if it is in `mode` (`None` = any).
    pub fn remove(&mut self, path: &str, watcher: ConnId, mode: Option<WatchMode>) -> bool {
        if !self.contains(path, watcher, mode) {
            return false;
        }
        self.remove_one(path, watcher);
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
                let mut p: Vec<_> = s.iter().cloned().collect();
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
        assert_eq!(m.trigger("/a", false, None).len(), 1);
        assert!(m.trigger("/a", false, None).is_empty());
        assert_eq!(m.watch_count(), 0);
    }

    #[test]
    fn persistent_watch_stays() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::Persistent);
        assert_eq!(m.trigger("/a", false, None).len(), 1);
        assert_eq!(m.trigger("/a", false, None).len(), 1);
        assert!(m.trigger("/a/b", false, None).is_empty());
    }

    #[test]
    fn recursive_watch_sees_descendants_but_not_child_events() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::PersistentRecursive);
        assert_eq!(m.trigger("/a/b/c", false, None).len(), 1);
        assert!(m.trigger("/a/b", true, None).is_empty());
        assert_eq!(m.trigger("/a", false, None).len(), 1);
    }

    #[test]
    fn standard_registration_replaces_persistent_mode() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::Persistent);
        m.add_watch("/a", 1, WatchMode::Standard);
        assert_eq!(m.trigger("/a", false, None).len(), 1);
        assert!(m.trigger("/a", false, None).is_empty());
    }

    #[test]
    fn closing_a_connection_drops_its_watches() {
        let mut m = WatchManager::new();
        m.add_watch("/a", 1, WatchMode::Standard);
        m.add_watch("/b", 1, WatchMode::PersistentRecursive);
        m.add_watch("/a", 2, WatchMode::Standard);
        m.remove_watcher(1);
        assert_eq!(m.trigger("/a", false, None), HashSet::from([2]));
        assert!(m.trigger("/b/c", false, None).is_empty());
    }
}
