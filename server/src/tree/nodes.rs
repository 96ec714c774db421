//! Compact znode storage for the data tree: a slab of nodes addressed by `NodeId`, a
//! hash index from (parent, name) to child, and intrusive sibling lists for children.
//!
//! Owns the memory layout only. Never decides ZooKeeper semantics (versions, cversion,
//! watches, ephemerals): `DataTree` does, through `insert_child`, `remove_leaf` and
//! `get_mut`.
//!
//! Why this shape rather than a map from full path to node (ZooKeeper's
//! `NodeHashMap<String, DataNode>`, and zkd's first tree): a million znodes then cost a
//! million path strings as map keys, a million child-name strings in the parents' hash
//! sets and a hash set per node, about 550 bytes per 100-byte znode, and a restart spends
//! most of its time allocating and hashing them. Here a znode is one slab slot (stat,
//! ACL pointer, links) plus one heap block holding its name followed by its data; the
//! index stores 4-byte ids. A path lookup walks its components, one probe each.
//!
//! Invariants: slot 0 is the root and is never removed; a live node's parent is live and
//! lists it among its children exactly once; `num_children` equals the length of the
//! sibling list; the index holds exactly the live non-root nodes.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use zkd_proto::records::{Acl, Stat};

use super::{ephemeral_type, EphemeralType, NodeStat};

pub type NodeId = u32;
pub const ROOT_ID: NodeId = 0;
const NIL: NodeId = NodeId::MAX;

/// One znode (ZooKeeper's DataNode without its children set).
#[derive(Debug, Clone)]
pub struct Node {
    pub stat: NodeStat,
    pub acl: Arc<Vec<Acl>>,
    /// The node's name (UTF-8, copied from a `&str`) followed by its data.
    blob: Box<[u8]>,
    name_len: u32,
    /// ZooKeeper keeps null data apart from empty data (a snapshot writes -1 for it).
    has_data: bool,
    parent: NodeId,
    first_child: NodeId,
    next_sibling: NodeId,
    prev_sibling: NodeId,
    num_children: u32,
}

impl Node {
    fn new(name: &str, data: Option<&[u8]>, acl: Arc<Vec<Acl>>, stat: NodeStat) -> Node {
        let name_len = u32::try_from(name.len()).expect("a znode name fits jute.maxbuffer");
        Node {
            stat,
            acl,
            blob: make_blob(name, data),
            name_len,
            has_data: data.is_some(),
            parent: NIL,
            first_child: NIL,
            next_sibling: NIL,
            prev_sibling: NIL,
            num_children: 0,
        }
    }

    /// The last component of the node's path ("" for the root).
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.blob[..self.name_len as usize])
            .expect("names are stored from &str")
    }

    /// The node's data; None for ZooKeeper's null data.
    pub fn data(&self) -> Option<&[u8]> {
        self.has_data.then(|| &self.blob[self.name_len as usize..])
    }

    pub fn data_len(&self) -> usize {
        self.blob.len() - self.name_len as usize
    }

    pub fn num_children(&self) -> usize {
        self.num_children as usize
    }

    /// Replaces the data, keeping the name.
    pub fn set_data(&mut self, data: Option<&[u8]>) {
        let name = &self.blob[..self.name_len as usize];
        let mut blob = Vec::with_capacity(name.len() + data.map_or(0, <[u8]>::len));
        blob.extend_from_slice(name);
        if let Some(d) = data {
            blob.extend_from_slice(d);
        }
        self.blob = blob.into_boxed_slice();
        self.has_data = data.is_some();
    }

    /// The Stat a client sees (DataNode.copyStat).
    pub fn client_stat(&self) -> Stat {
        let num_children = self.num_children as i32;
        let owner = self.stat.ephemeral_owner;
        Stat {
            czxid: self.stat.czxid,
            mzxid: self.stat.mzxid,
            ctime: self.stat.ctime,
            mtime: self.stat.mtime,
            version: self.stat.version,
            cversion: self
                .stat
                .cversion
                .wrapping_mul(2)
                .wrapping_sub(num_children),
            aversion: self.stat.aversion,
            ephemeral_owner: if ephemeral_type(owner) == EphemeralType::Normal {
                owner
            } else {
                0
            },
            data_length: self.data_len() as i32,
            num_children,
            pzxid: self.stat.pzxid,
        }
    }
}

fn make_blob(name: &str, data: Option<&[u8]>) -> Box<[u8]> {
    let mut blob = Vec::with_capacity(name.len() + data.map_or(0, <[u8]>::len));
    blob.extend_from_slice(name.as_bytes());
    if let Some(d) = data {
        blob.extend_from_slice(d);
    }
    blob.into_boxed_slice()
}

/// The slab, the (parent, name) index and the free list.
pub struct NodeTable {
    slots: Vec<Option<Node>>,
    free: Vec<NodeId>,
    index: HashTable<NodeId>,
    hasher: foldhash::fast::RandomState,
    live: usize,
}

impl std::fmt::Debug for NodeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTable")
            .field("live", &self.live)
            .finish()
    }
}

impl NodeTable {
    /// A table holding only a root with `root_data`, `acl` and `stat`.
    pub fn new(root_data: Option<&[u8]>, acl: Arc<Vec<Acl>>, stat: NodeStat) -> NodeTable {
        NodeTable {
            slots: vec![Some(Node::new("", root_data, acl, stat))],
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            live: 1,
        }
    }

    /// Makes room for `additional` more nodes without regrowing (snapshot load).
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.index
            .reserve(additional, |id| hash_of(hasher, slots, *id));
    }

    /// Live nodes, the root included.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn get(&self, id: NodeId) -> &Node {
        self.slots[id as usize].as_ref().expect("a live node id")
    }

    /// The node in slot `id`, if that slot holds one (ids of deleted nodes are reused).
    pub fn try_get(&self, id: NodeId) -> Option<&Node> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: NodeId) -> &mut Node {
        self.slots[id as usize].as_mut().expect("a live node id")
    }

    pub fn parent_of(&self, id: NodeId) -> Option<NodeId> {
        let p = self.get(id).parent;
        (p != NIL).then_some(p)
    }

    /// The child of `parent` called `name`.
    pub fn child(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        let hash = self.hasher.hash_one((parent, name));
        self.index
            .find(hash, |id| {
                let n = self.get(*id);
                n.parent == parent && n.name() == name
            })
            .copied()
    }

    /// The node at `path` ("" and "/" are the root). Paths that are not absolute, or have
    /// empty components, name no node.
    pub fn lookup(&self, path: &str) -> Option<NodeId> {
        if path.is_empty() || path == "/" {
            return Some(ROOT_ID);
        }
        let rest = path.strip_prefix('/')?;
        let mut id = ROOT_ID;
        for name in rest.split('/') {
            if name.is_empty() {
                return None;
            }
            id = self.child(id, name)?;
        }
        Some(id)
    }

    /// Adds `name` under `parent`; Err(existing id) if the parent already has it.
    pub fn insert_child(
        &mut self,
        parent: NodeId,
        name: &str,
        data: Option<&[u8]>,
        acl: Arc<Vec<Acl>>,
        stat: NodeStat,
    ) -> Result<NodeId, NodeId> {
        assert!(!name.is_empty(), "only the root has an empty name");
        let hash = self.hasher.hash_one((parent, name));
        // One probe finds the duplicate or the free bucket; the id is filled in below.
        let slots = &self.slots;
        let hasher = &self.hasher;
        let entry = self.index.entry(
            hash,
            |id| {
                let n = slots[*id as usize].as_ref().expect("indexed ids are live");
                n.parent == parent && n.name() == name
            },
            |id| hash_of(hasher, slots, *id),
        );
        let vacant = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => return Err(*o.get()),
            hashbrown::hash_table::Entry::Vacant(v) => v,
        };
        let id = match self.free.last() {
            Some(&id) => id,
            None => {
                let id = NodeId::try_from(slots.len()).expect("fewer than 2^32 znodes");
                assert!(id != NIL, "fewer than 2^32-1 znodes");
                id
            }
        };
        vacant.insert(id);
        let mut node = Node::new(name, data, acl, stat);
        node.parent = parent;
        let first = self.get(parent).first_child;
        node.next_sibling = first;
        if self.free.last() == Some(&id) {
            self.free.pop();
            self.slots[id as usize] = Some(node);
        } else {
            self.slots.push(Some(node));
        }
        if first != NIL {
            self.get_mut(first).prev_sibling = id;
        }
        let p = self.get_mut(parent);
        p.first_child = id;
        p.num_children += 1;
        self.live += 1;
        Ok(id)
    }

    /// Removes a node without children and returns it.
    pub fn remove_leaf(&mut self, id: NodeId) -> Node {
        assert!(id != ROOT_ID, "the root is never removed");
        let (parent, prev, next, num_children) = {
            let n = self.get(id);
            (n.parent, n.prev_sibling, n.next_sibling, n.num_children)
        };
        assert!(num_children == 0, "remove_leaf of a node with children");
        let hash = hash_of(&self.hasher, &self.slots, id);
        match self.index.find_entry(hash, |x| *x == id) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => panic!("a live node is indexed"),
        }
        if prev != NIL {
            self.get_mut(prev).next_sibling = next;
        } else {
            self.get_mut(parent).first_child = next;
        }
        if next != NIL {
            self.get_mut(next).prev_sibling = prev;
        }
        self.get_mut(parent).num_children -= 1;
        let node = self.slots[id as usize].take().expect("a live node id");
        self.free.push(id);
        self.live -= 1;
        node
    }

    /// The ids of a node's children (most recently created first; ZooKeeper promises no
    /// order either).
    pub fn children(&self, id: NodeId) -> Children<'_> {
        Children {
            table: self,
            next: self.get(id).first_child,
        }
    }

    /// Children of `node`, given the node itself.
    pub fn children_of<'a>(&'a self, node: &Node) -> Children<'a> {
        Children {
            table: self,
            next: node.first_child,
        }
    }

    /// The full path of a node, rebuilt from its ancestors.
    pub fn path_of(&self, id: NodeId) -> String {
        if id == ROOT_ID {
            return "/".to_string();
        }
        let mut names = Vec::new();
        let mut at = id;
        while at != ROOT_ID {
            let n = self.get(at);
            names.push(n.name());
            at = n.parent;
        }
        let mut path = String::with_capacity(names.iter().map(|s| s.len() + 1).sum());
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// Every live node with its path, depth first from the root (parents before
    /// children). The path buffer is reused, so visiting a million nodes allocates little.
    pub fn for_each(&self, mut f: impl FnMut(&str, NodeId, &Node)) {
        let mut path = String::from("/");
        f(&path, ROOT_ID, self.get(ROOT_ID));
        // (child iterator position, path length before this level's name)
        let mut stack: Vec<(NodeId, usize)> = vec![(self.get(ROOT_ID).first_child, 1)];
        while let Some((next, base)) = stack.last_mut() {
            if *next == NIL {
                stack.pop();
                continue;
            }
            let id = *next;
            let base = *base;
            let n = self.get(id);
            *next = n.next_sibling;
            path.truncate(base);
            if base > 1 {
                path.push('/');
            }
            path.push_str(n.name());
            f(&path, id, n);
            if n.first_child != NIL {
                let len = path.len();
                stack.push((n.first_child, len));
            }
        }
    }
}

fn hash_of(hasher: &foldhash::fast::RandomState, slots: &[Option<Node>], id: NodeId) -> u64 {
    let n = slots[id as usize].as_ref().expect("indexed ids are live");
    hasher.hash_one((n.parent, n.name()))
}

/// Iterator over a node's children ids.
pub struct Children<'a> {
    table: &'a NodeTable,
    next: NodeId,
}

impl<'a> Iterator for Children<'a> {
    type Item = (NodeId, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NIL {
            return None;
        }
        let id = self.next;
        let n = self.table.get(id);
        self.next = n.next_sibling;
        Some((id, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn table() -> NodeTable {
        NodeTable::new(Some(b""), Arc::new(Acl::open_unsafe()), NodeStat::default())
    }

    fn acl() -> Arc<Vec<Acl>> {
        Arc::new(Acl::open_unsafe())
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = table();
        let a = t
            .insert_child(ROOT_ID, "a", Some(b"1"), acl(), NodeStat::default())
            .unwrap();
        let b = t
            .insert_child(a, "b", None, acl(), NodeStat::default())
            .unwrap();
        assert_eq!(t.lookup("/a/b"), Some(b));
        assert_eq!(t.lookup("/a"), Some(a));
        assert_eq!(t.lookup(""), Some(ROOT_ID));
        assert_eq!(t.lookup("/"), Some(ROOT_ID));
        for bad in ["a", "/a/", "//a", "/a//b", "/c", "/a/b/c"] {
            assert_eq!(t.lookup(bad), None, "{bad:?}");
        }
        assert_eq!(t.get(b).data(), None);
        assert_eq!(t.get(a).data(), Some(&b"1"[..]));
        assert_eq!(t.path_of(b), "/a/b");
        assert_eq!(
            t.insert_child(a, "b", None, acl(), NodeStat::default()),
            Err(b)
        );
        assert_eq!(t.get(a).num_children(), 1);
        let gone = t.remove_leaf(b);
        assert_eq!(gone.name(), "b");
        assert_eq!(t.lookup("/a/b"), None);
        assert_eq!(t.get(a).num_children(), 0);
        assert_eq!(t.len(), 2);
        // The freed slot is reused.
        let c = t
            .insert_child(a, "c", Some(b"xyz"), acl(), NodeStat::default())
            .unwrap();
        assert_eq!(c, b);
        t.get_mut(c).set_data(Some(b"q"));
        assert_eq!(t.get(c).data(), Some(&b"q"[..]));
        assert_eq!(t.get(c).name(), "c");
        t.get_mut(c).set_data(None);
        assert_eq!(t.get(c).data(), None);
        assert_eq!(t.get(c).data_len(), 0);
    }

    #[test]
    #[should_panic(expected = "remove_leaf of a node with children")]
    fn removing_a_parent_is_a_bug() {
        let mut t = table();
        let a = t
            .insert_child(ROOT_ID, "a", None, acl(), NodeStat::default())
            .unwrap();
        t.insert_child(a, "b", None, acl(), NodeStat::default())
            .unwrap();
        t.remove_leaf(a);
    }

    proptest! {
        /// The table against a naive map of paths: random creates and leaf deletes over
        /// a small name space (so collisions, reuse of freed slots and deep paths occur).
        #[test]
        fn behaves_like_a_path_map(ops in proptest::collection::vec((0u8..3, 0u8..4, 0u8..4, 0u8..4), 1..300)) {
            let mut t = table();
            let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            model.insert("/".into(), vec![]);
            for (kind, x, y, z) in ops {
                let depth = (x % 3) as usize + 1;
                let comps = [x, y, z];
                let path: String = comps[..depth].iter().map(|c| format!("/n{c}")).collect();
                let parent = zkd_proto::path::parent(&path).to_string();
                let name = zkd_proto::path::basename(&path);
                match kind {
                    0 | 1 => {
                        let Some(pid) = t.lookup(&parent) else {
                            prop_assert!(!model.contains_key(&parent));
                            continue;
                        };
                        let r = t.insert_child(pid, name, Some(path.as_bytes()), acl(), NodeStat::default());
                        prop_assert_eq!(r.is_ok(), !model.contains_key(&path));
                        model.entry(path.clone()).or_insert_with(|| path.as_bytes().to_vec());
                    }
                    _ => {
                        let has_children = model.keys().any(|k| k.starts_with(&format!("{path}/")));
                        if let Some(id) = t.lookup(&path) {
                            if !has_children {
                                t.remove_leaf(id);
                                model.remove(&path);
                            }
                        } else {
                            prop_assert!(!model.contains_key(&path));
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            let mut seen = BTreeMap::new();
            t.for_each(|p, id, n| {
                assert_eq!(t.path_of(id), p);
                seen.insert(p.to_string(), n.data().unwrap().to_vec());
            });
            let mut expect = model.clone();
            expect.insert("/".into(), vec![]);
            prop_assert_eq!(seen, expect);
            for (p, _) in model.iter() {
                let id = t.lookup(p).unwrap();
                let names: Vec<String> = t.children(id).map(|(_, n)| n.name().to_string()).collect();
                let expect_n = model.keys().filter(|k| k.as_str() != "/" && zkd_proto::path::parent(k) == p.as_str()).count();
                prop_assert_eq!(names.len(), expect_n);
                prop_assert_eq!(t.get(id).num_children(), expect_n);
            }
        }
    }
}
