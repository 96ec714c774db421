//! Compact znode storage for the data tree: a slab of links addressed by `NodeId`, one
//! variable-length record per znode in an arena of large chunks, a hash index from
//! (parent, name) to child, intrusive sibling lists for children, and the interned ACL
//! lists the records refer to by number.
//!
//! Owns the memory layout only. Never decides ZooKeeper semantics (versions, cversion,
//! watches, ephemerals): `DataTree` does, through `insert_child`, `remove_leaf`,
//! `update_stat`, `set_data` and `set_acl`. Never hands out a reference into the arena
//! that outlives a `&self` borrow: records move (rewrites, compaction), so readers get a
//! decoded `Node` view and writers go through the table.
//!
//! # Why this shape
//!
//! ZooKeeper keeps `NodeHashMap<String, DataNode>`: a path string per node, a children
//! `HashSet<String>` per node, and a DataNode with a StatPersisted of fixed-width fields
//! (838 MiB RSS for a million 100-byte znodes on our machine). zkd's first tree did the
//! same in Rust (~550 B/znode); the next one (a slab of 120-byte `Node`s, each with a
//! `Box` holding name + data) took ~279 B/znode: 120 B slot, 128 B malloc block for
//! ~112 B of name and data, ~10 B of index. The target is 167 MiB per million znodes (1/5
//! of ZooKeeper): ~175 MB, less ~6 MiB of base RSS (an empty zkd), leaves ~168 B per
//! znode, of which the payload (a ~12-byte name and 100 B of data) is ~112 B: ~55 B for
//! the stat, the links, the ACL, the index and the allocator. The fixed-width stat alone
//! is 60 B, so it cannot stay fixed-width, and a malloc block per znode (16 B of header
//! and rounding) does not fit either.
//!
//! A znode is now:
//! - a 24-byte slot: the record's address and the links (parent, first child, next and
//!   previous sibling, child count), which change too often to live in the record;
//! - one record in the arena: `name_len` varint, the name, a flags byte, the data tag
//!   (varint: 0 = null data, else length + 1), czxid and ctime as zigzag varints relative
//!   to the table's base zxid/time, then only the fields the flags say differ from their
//!   usual value (mzxid and pzxid as deltas from czxid, mtime as a delta from ctime,
//!   version, cversion, aversion, the ephemeral owner, the ACL number), then the data.
//!   The name comes first so a hash probe reads one varint to compare names. A node that
//!   was created and never changed (the common case) has an 8-byte stat: flags, data tag,
//!   and 3 bytes each of czxid and ctime (within ±2^20 txns and ±17 minutes of the base);
//! - ~10 B of index (hashbrown at 2^21 buckets × 5 B for 1M entries: 4-byte id + control
//!   byte, load ≤ 7/8).
//!
//! For the benchmark's znodes (names like `c12-3-456789`, 100 B of data):
//! slot 24 + record (1 + 12 + 8 + 100 = 121, in 4-byte units: 124) + index 10.5
//! ≈ 158.5 B/znode = ~151 MiB per million, ~157 MiB with the base RSS (measured: 158).
//! The price is decoding: a read decodes ~6 varints. Criterion's `tree/get` (a 3-component
//! lookup, the decode and the client Stat, 100k znodes) went from 134–153 ns to
//! 148–178 ns on our shared VM, next to ~3 µs of server CPU per getData request.
//!
//! # The arena
//!
//! Records of at most `MAX_SMALL` bytes live in 1 MiB chunks, addressed by a u32 count of
//! 4-byte units (so 8 GiB of small records; beyond that, and for records larger than
//! `MAX_SMALL`, a record is its own heap block, addressed by the same u32 with the top bit
//! set). A record never straddles chunks. A rewrite that keeps the header length and the
//! data (a parent's cversion/pzxid on a child create, most stat-only changes) overwrites
//! the header in place; any other rewrite frees the old record and allocates a new one.
//!
//! Freed records become holes on size-class free lists (one list per unit count, linked
//! through the holes' first 4 bytes, so the lists cost no memory). Allocation takes an
//! exact fit first, else splits the smallest larger hole, else bumps in the last chunk.
//! So a setData-heavy workload with steady sizes reuses its own holes. Whatever the
//! workload, once the holes exceed a quarter of the live record bytes plus one chunk the
//! arena is compacted: live records slide down in address order (a sort of the live
//! slots, then memmoves), emptied chunks are freed. That bounds the arena at
//! ~1.25 × live + 1 MiB, at an amortized cost of O(1) per byte freed. The price is a
//! stall: compacting 750k records (~90 MiB) took 30 ms (the `compaction_stall` test, in
//! release), and one only follows ~25 % of the tree's record bytes freed. A first
//! setData on each node of a big tree moves most records (the header grows by the new
//! mzxid and version), so such a pass compacts a few times.
//!
//! ACL lists are interned in the table (`AclId` = index; id 0 is OPEN_ACL_UNSAFE, so the
//! common case costs no record byte). Like ZooKeeper's cache without reference counts,
//! lists are never dropped: there are few distinct lists.
//!
//! Invariants: slot 0 is the root and is never removed; a live node's parent is live and
//! lists it among its children exactly once; `num_children` equals the length of the
//! sibling list; the index holds exactly the live non-root nodes; every unit below the
//! arena's bump pointer is in exactly one live record or one hole.

use std::collections::HashMap;
use std::sync::Arc;

use hashbrown::HashTable;
use zkd_proto::records::{Acl, Stat};

use super::{ephemeral_type, EphemeralType, NodeStat};

pub type NodeId = u32;
pub const ROOT_ID: NodeId = 0;
const NIL: NodeId = NodeId::MAX;

/// An interned ACL list: its index in the table's list of distinct lists.
pub type AclId = u32;
/// OPEN_ACL_UNSAFE, interned first by every table.
pub const OPEN_ACL_ID: AclId = 0;

/// Bytes per arena unit: record addresses count units.
const UNIT: usize = 4;
const CHUNK_BYTES: usize = 1 << 20;
const CHUNK_UNITS: u32 = (CHUNK_BYTES / UNIT) as u32;
/// Records longer than this are heap blocks of their own.
const MAX_SMALL: usize = 4096;
const MAX_SMALL_UNITS: usize = MAX_SMALL / UNIT;
/// A record address with this bit set indexes `Arena::large`.
const LARGE_BIT: u32 = 1 << 31;
/// Small addresses are below LARGE_BIT: at most this many chunks.
const MAX_CHUNKS: usize = (LARGE_BIT / CHUNK_UNITS) as usize;
/// The `rec` of a free slot; also the end of a hole list.
const NONE: u32 = u32::MAX;

// Record flags: which stat fields differ from their usual value and are present.
const F_MZXID: u8 = 1;
const F_PZXID: u8 = 2;
const F_MTIME: u8 = 4;
const F_VERSION: u8 = 8;
const F_CVERSION: u8 = 16;
const F_AVERSION: u8 = 32;
const F_OWNER: u8 = 64;
const F_ACL: u8 = 128;

/// A decoded znode (ZooKeeper's DataNode without its children set), borrowed from the
/// table: valid until the table changes.
#[derive(Debug)]
pub struct Node<'a> {
    pub stat: NodeStat,
    pub acl: AclRef<'a>,
    pub acl_id: AclId,
    /// UTF-8 (stored from a `&str`), checked when asked for: reads never need it.
    name: &'a [u8],
    data: Option<&'a [u8]>,
    num_children: u32,
    first_child: NodeId,
}

/// A node's ACL list, borrowed from the table's interned lists. It derefs to the shared
/// `Arc`, so `acl.clone()` is an owned `Arc` and `&acl` passes as `&[Acl]`.
#[derive(Debug)]
pub struct AclRef<'a>(&'a Arc<Vec<Acl>>);

impl std::ops::Deref for AclRef<'_> {
    type Target = Arc<Vec<Acl>>;

    fn deref(&self) -> &Arc<Vec<Acl>> {
        self.0
    }
}

impl<'a> Node<'a> {
    /// The last component of the node's path ("" for the root).
    pub fn name(&self) -> &'a str {
        std::str::from_utf8(self.name).expect("names are stored from &str")
    }

    /// The node's data; None for ZooKeeper's null data.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.data
    }

    pub fn data_len(&self) -> usize {
        self.data.map_or(0, <[u8]>::len)
    }

    pub fn num_children(&self) -> usize {
        self.num_children as usize
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

/// What `remove_leaf` hands back of the node it removed.
#[derive(Debug, Clone)]
pub struct RemovedNode {
    pub stat: NodeStat,
    pub acl: Arc<Vec<Acl>>,
    pub data_len: usize,
}

/// One slab entry: where the record is, and the links.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Record address (`NONE` for a free slot).
    rec: u32,
    parent: NodeId,
    first_child: NodeId,
    next_sibling: NodeId,
    prev_sibling: NodeId,
    num_children: u32,
}

impl Slot {
    const FREE: Slot = Slot {
        rec: NONE,
        parent: NIL,
        first_child: NIL,
        next_sibling: NIL,
        prev_sibling: NIL,
        num_children: 0,
    };
}

/// czxid and ctime are stored relative to these (fixed once the first real node arrives).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Base {
    zxid: i64,
    time: i64,
}

// ---------------------------------------------------------------------------------------
// Record codec

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn get_varint(b: &[u8], pos: &mut usize) -> u64 {
    let first = b[*pos];
    *pos += 1;
    if first < 0x80 {
        return u64::from(first);
    }
    let mut x = u64::from(first & 0x7f);
    let mut shift = 7;
    loop {
        let byte = b[*pos];
        *pos += 1;
        x |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return x;
        }
        shift += 7;
    }
}

/// Appends a record's header (everything but the data) to `out`.
fn encode_header(
    out: &mut Vec<u8>,
    name: &[u8],
    data_len: Option<usize>,
    s: &NodeStat,
    acl: AclId,
    base: Base,
) {
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name);
    let mut flags = 0u8;
    let optional = [
        (F_MZXID, s.mzxid != s.czxid),
        (F_PZXID, s.pzxid != s.czxid),
        (F_MTIME, s.mtime != s.ctime),
        (F_VERSION, s.version != 0),
        (F_CVERSION, s.cversion != 0),
        (F_AVERSION, s.aversion != 0),
        (F_OWNER, s.ephemeral_owner != 0),
        (F_ACL, acl != OPEN_ACL_ID),
    ];
    for (f, present) in optional {
        if present {
            flags |= f;
        }
    }
    out.push(flags);
    put_varint(out, data_len.map_or(0, |l| l as u64 + 1));
    put_varint(out, zigzag(s.czxid.wrapping_sub(base.zxid)));
    put_varint(out, zigzag(s.ctime.wrapping_sub(base.time)));
    if flags & F_MZXID != 0 {
        put_varint(out, zigzag(s.mzxid.wrapping_sub(s.czxid)));
    }
    if flags & F_PZXID != 0 {
        put_varint(out, zigzag(s.pzxid.wrapping_sub(s.czxid)));
    }
    if flags & F_MTIME != 0 {
        put_varint(out, zigzag(s.mtime.wrapping_sub(s.ctime)));
    }
    for (f, v) in [
        (F_VERSION, s.version),
        (F_CVERSION, s.cversion),
        (F_AVERSION, s.aversion),
    ] {
        if flags & f != 0 {
            put_varint(out, zigzag(i64::from(v)));
        }
    }
    if flags & F_OWNER != 0 {
        put_varint(out, s.ephemeral_owner as u64);
    }
    if flags & F_ACL != 0 {
        put_varint(out, u64::from(acl));
    }
}

/// A record taken apart.
struct Decoded<'a> {
    name: &'a [u8],
    stat: NodeStat,
    acl: AclId,
    data: Option<&'a [u8]>,
    header_len: usize,
}

impl Decoded<'_> {
    fn len(&self) -> usize {
        self.header_len + self.data.map_or(0, <[u8]>::len)
    }
}

/// The name of the record starting at `b[0]`.
#[inline]
fn record_name(b: &[u8]) -> &[u8] {
    let mut pos = 0;
    let len = get_varint(b, &mut pos) as usize;
    &b[pos..pos + len]
}

/// Decodes the record starting at `b[0]` (`b` may run past its end).
#[inline]
fn decode(b: &[u8], base: Base) -> Decoded<'_> {
    let mut pos = 0;
    let name_len = get_varint(b, &mut pos) as usize;
    let name = &b[pos..pos + name_len];
    pos += name_len;
    let flags = b[pos];
    pos += 1;
    let data_tag = get_varint(b, &mut pos);
    let czxid = base.zxid.wrapping_add(unzigzag(get_varint(b, &mut pos)));
    let ctime = base.time.wrapping_add(unzigzag(get_varint(b, &mut pos)));
    let mut stat = NodeStat {
        czxid,
        mzxid: czxid,
        ctime,
        mtime: ctime,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        pzxid: czxid,
    };
    let mut acl = OPEN_ACL_ID;
    if flags != 0 {
        if flags & F_MZXID != 0 {
            stat.mzxid = czxid.wrapping_add(unzigzag(get_varint(b, &mut pos)));
        }
        if flags & F_PZXID != 0 {
            stat.pzxid = czxid.wrapping_add(unzigzag(get_varint(b, &mut pos)));
        }
        if flags & F_MTIME != 0 {
            stat.mtime = ctime.wrapping_add(unzigzag(get_varint(b, &mut pos)));
        }
        if flags & F_VERSION != 0 {
            stat.version = unzigzag(get_varint(b, &mut pos)) as i32;
        }
        if flags & F_CVERSION != 0 {
            stat.cversion = unzigzag(get_varint(b, &mut pos)) as i32;
        }
        if flags & F_AVERSION != 0 {
            stat.aversion = unzigzag(get_varint(b, &mut pos)) as i32;
        }
        if flags & F_OWNER != 0 {
            stat.ephemeral_owner = get_varint(b, &mut pos) as i64;
        }
        if flags & F_ACL != 0 {
            acl = get_varint(b, &mut pos) as AclId;
        }
    }
    let header_len = pos;
    let data = match data_tag {
        0 => None,
        n => Some(&b[pos..pos + (n - 1) as usize]),
    };
    Decoded {
        name,
        stat,
        acl,
        data,
        header_len,
    }
}

fn units_of(len: usize) -> usize {
    len.div_ceil(UNIT)
}

// ---------------------------------------------------------------------------------------
// Arena

/// Record storage: chunks of small records with size-class hole lists, and large records
/// as heap blocks of their own.
struct Arena {
    chunks: Vec<Box<[u8]>>,
    /// Next unit to bump-allocate; always inside or at the end of the last chunk.
    top: u32,
    /// First hole of each size (in units), linked through the holes' first 4 bytes.
    heads: Vec<u32>,
    /// Bit k set iff `heads[k]` is not empty.
    nonempty: Vec<u64>,
    hole_units: u64,
    live_units: u64,
    large: Vec<Box<[u8]>>,
    large_free: Vec<u32>,
    large_bytes: u64,
}

impl Arena {
    fn new() -> Arena {
        Arena {
            chunks: Vec::new(),
            top: 0,
            heads: vec![NONE; MAX_SMALL_UNITS + 1],
            nonempty: vec![0; (MAX_SMALL_UNITS + 1).div_ceil(64)],
            hole_units: 0,
            live_units: 0,
            large: Vec::new(),
            large_free: Vec::new(),
            large_bytes: 0,
        }
    }

    /// The bytes from the record at `rec` to the end of its chunk or block.
    #[inline]
    fn bytes(&self, rec: u32) -> &[u8] {
        if rec & LARGE_BIT == 0 {
            let chunk = (rec / CHUNK_UNITS) as usize;
            let off = (rec % CHUNK_UNITS) as usize * UNIT;
            &self.chunks[chunk][off..]
        } else {
            &self.large[(rec & !LARGE_BIT) as usize]
        }
    }

    fn small_mut(&mut self, addr: u32, len: usize) -> &mut [u8] {
        let chunk = (addr / CHUNK_UNITS) as usize;
        let off = (addr % CHUNK_UNITS) as usize * UNIT;
        &mut self.chunks[chunk][off..off + len]
    }

    fn bytes_mut(&mut self, rec: u32, len: usize) -> &mut [u8] {
        if rec & LARGE_BIT == 0 {
            self.small_mut(rec, len)
        } else {
            &mut self.large[(rec & !LARGE_BIT) as usize][..len]
        }
    }

    fn push_hole(&mut self, addr: u32, units: usize) {
        debug_assert!(units > 0 && units <= MAX_SMALL_UNITS);
        let next = self.heads[units];
        self.small_mut(addr, UNIT)
            .copy_from_slice(&next.to_le_bytes());
        self.heads[units] = addr;
        self.nonempty[units / 64] |= 1 << (units % 64);
        self.hole_units += units as u64;
    }

    fn pop_hole(&mut self, units: usize) -> Option<u32> {
        let addr = self.heads[units];
        if addr == NONE {
            return None;
        }
        let next = u32::from_le_bytes(
            self.small_mut(addr, UNIT)
                .try_into()
                .expect("a unit is 4 bytes"),
        );
        self.heads[units] = next;
        if next == NONE {
            self.nonempty[units / 64] &= !(1 << (units % 64));
        }
        self.hole_units -= units as u64;
        Some(addr)
    }

    /// The smallest size class above `units` that has a hole.
    fn larger_hole_class(&self, units: usize) -> Option<usize> {
        let from = units + 1;
        let mut word = from / 64;
        if word >= self.nonempty.len() {
            return None;
        }
        let mut bits = self.nonempty[word] & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            if word == self.nonempty.len() {
                return None;
            }
            bits = self.nonempty[word];
        }
    }

    /// Room for a small record of `units` units; None when the small arena is full.
    fn alloc_small(&mut self, units: usize) -> Option<u32> {
        debug_assert!(units > 0 && units <= MAX_SMALL_UNITS);
        let addr = if let Some(a) = self.pop_hole(units) {
            a
        } else if let Some(class) = self.larger_hole_class(units) {
            let a = self.pop_hole(class).expect("a nonempty class");
            self.push_hole(a + units as u32, class - units);
            a
        } else {
            let end = self.chunks.len() as u32 * CHUNK_UNITS;
            if self.top as usize + units > end as usize {
                if self.chunks.len() == MAX_CHUNKS {
                    return None;
                }
                if self.top < end {
                    self.push_hole(self.top, (end - self.top) as usize);
                }
                self.chunks.push(vec![0u8; CHUNK_BYTES].into_boxed_slice());
                self.top = end;
            }
            let a = self.top;
            self.top += units as u32;
            a
        };
        self.live_units += units as u64;
        Some(addr)
    }

    /// Stores a record made of `header` followed by `data`; returns its address.
    fn store(&mut self, header: &[u8], data: &[u8]) -> u32 {
        let len = header.len() + data.len();
        if len <= MAX_SMALL {
            if let Some(addr) = self.alloc_small(units_of(len)) {
                let dst = self.small_mut(addr, len);
                dst[..header.len()].copy_from_slice(header);
                dst[header.len()..].copy_from_slice(data);
                return addr;
            }
        }
        let mut block = Vec::with_capacity(len);
        block.extend_from_slice(header);
        block.extend_from_slice(data);
        self.large_bytes += len as u64;
        let block = block.into_boxed_slice();
        match self.large_free.pop() {
            Some(i) => {
                self.large[i as usize] = block;
                LARGE_BIT | i
            }
            None => {
                let i = u32::try_from(self.large.len())
                    .ok()
                    .filter(|i| *i < LARGE_BIT - 1)
                    .expect("fewer than 2^31-1 large znodes");
                self.large.push(block);
                LARGE_BIT | i
            }
        }
    }

    /// Frees the record at `rec`, `len` bytes long.
    fn free(&mut self, rec: u32, len: usize) {
        if rec & LARGE_BIT == 0 {
            let units = units_of(len);
            self.live_units -= units as u64;
            self.push_hole(rec, units);
        } else {
            let i = rec & !LARGE_BIT;
            self.large_bytes -= self.large[i as usize].len() as u64;
            self.large[i as usize] = Box::default();
            self.large_free.push(i);
        }
    }

    /// Whether the holes are worth a compaction (see the module doc).
    fn wants_compaction(&self) -> bool {
        self.hole_units > self.live_units / 4 + u64::from(CHUNK_UNITS)
    }

    /// Bytes held for records: chunks plus large blocks.
    fn footprint(&self) -> u64 {
        (self.chunks.len() * CHUNK_BYTES) as u64 + self.large_bytes
    }
}

// ---------------------------------------------------------------------------------------
// The table

/// The slab, the records, the (parent, name) index, the free slots and the ACL lists.
pub struct NodeTable {
    slots: Vec<Slot>,
    free: Vec<NodeId>,
    index: Index,
    hasher: foldhash::fast::RandomState,
    live: usize,
    arena: Arena,
    base: Base,
    /// Whether `base` is fixed (set by the first node with a nonzero czxid).
    based: bool,
    acls: Vec<Arc<Vec<Acl>>>,
    acl_ids: HashMap<Vec<Acl>, AclId, foldhash::fast::RandomState>,
    /// Reused buffer for encoding headers.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for NodeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTable")
            .field("live", &self.live)
            .finish()
    }
}

/// The hash of a (parent, name) key.
#[inline]
fn key_hash(hasher: &foldhash::fast::RandomState, parent: NodeId, name: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one((parent, name))
}

fn hash_of(hasher: &foldhash::fast::RandomState, slots: &[Slot], arena: &Arena, id: NodeId) -> u64 {
    let s = &slots[id as usize];
    key_hash(hasher, s.parent, record_name(arena.bytes(s.rec)))
}

/// The (parent, name) → id index, grown a few entries at a time.
///
/// A hashbrown table doubles by rehashing every entry at once, and an entry's hash needs
/// its slot and its record's name: at ~1M znodes that was ~2M cache misses, a 50-125 ms
/// stall of the core (the longest gaps in a perf trace of 10 s of creates; every
/// request waited behind it). Here a full table is replaced by an empty one of twice the
/// capacity, and the old one's entries move over as `MIGRATE_PER_INSERT` slot ids per
/// insert are visited in id order (slots and records of nearby ids are mostly adjacent,
/// so the walk is nearly sequential). Until the old table is empty, lookups and removals
/// look in both. Every live non-root node is in exactly one of the two: the old table
/// only ever loses entries, and a slot freed and reused meanwhile left the old table when
/// it was freed, so the walk finds no entry for its new node there.
#[derive(Default)]
struct Index {
    table: HashTable<NodeId>,
    /// Being emptied into `table`; empty when no growth is under way.
    old: HashTable<NodeId>,
    /// The next slot id the walk visits.
    cursor: NodeId,
}

/// Slot ids the migration walk visits per insert. The new table has room for as many
/// inserts as the old one held entries before it fills, so the walk must cover the
/// slab (at most the old table's entries plus the free slots) by then; 16 leaves room
/// for a slab 16 times the live count. Should it not, the next growth finishes the walk
/// first (a stall, never a wrong answer).
const MIGRATE_PER_INSERT: u32 = 16;

impl Index {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len() + self.old.len()
    }

    fn find(&self, hash: u64, eq: impl Fn(&NodeId) -> bool) -> Option<NodeId> {
        self.table
            .find(hash, &eq)
            .or_else(|| self.old.find(hash, &eq))
            .copied()
    }

    /// Removes `id` (which is indexed) under `hash`.
    fn remove(&mut self, hash: u64, id: NodeId) {
        if let Ok(e) = self.table.find_entry(hash, |x| *x == id) {
            e.remove();
        } else if let Ok(e) = self.old.find_entry(hash, |x| *x == id) {
            e.remove();
        } else {
            panic!("a live node is indexed");
        }
    }

    /// Makes room for one more entry without a rehash of the table, and moves a few old
    /// entries over.
    fn prepare_insert(
        &mut self,
        hasher: &foldhash::fast::RandomState,
        slots: &[Slot],
        arena: &Arena,
    ) {
        if self.table.len() == self.table.capacity() {
            // Finishes a walk that fell behind, then starts the next growth.
            self.migrate(hasher, slots, arena, u32::MAX);
            let capacity = (self.table.capacity() * 2).max(16);
            self.old = std::mem::replace(&mut self.table, HashTable::with_capacity(capacity));
            self.cursor = 0;
        }
        if !self.old.is_empty() {
            self.migrate(hasher, slots, arena, MIGRATE_PER_INSERT);
        }
    }

    /// Visits up to `budget` slot ids, moving their entries still in the old table.
    fn migrate(
        &mut self,
        hasher: &foldhash::fast::RandomState,
        slots: &[Slot],
        arena: &Arena,
        budget: u32,
    ) {
        let mut visited = 0;
        while !self.old.is_empty() && visited < budget {
            let id = self.cursor;
            assert!(
                (id as usize) < slots.len(),
                "every old entry names a live slot"
            );
            self.cursor += 1;
            visited += 1;
            let s = &slots[id as usize];
            if s.rec == NONE || s.parent == NIL {
                continue; // free, or the root (never indexed)
            }
            let hash = key_hash(hasher, s.parent, record_name(arena.bytes(s.rec)));
            if let Ok(e) = self.old.find_entry(hash, |x| *x == id) {
                e.remove();
                self.table
                    .insert_unique(hash, id, |x| hash_of(hasher, slots, arena, *x));
            }
        }
        if self.old.is_empty() && self.old.capacity() > 0 {
            self.old = HashTable::new();
        }
    }

    /// Room for `additional` more entries (snapshot load): any walk is finished first.
    fn reserve(
        &mut self,
        additional: usize,
        hasher: &foldhash::fast::RandomState,
        slots: &[Slot],
        arena: &Arena,
    ) {
        self.migrate(hasher, slots, arena, u32::MAX);
        self.table
            .reserve(additional, |id| hash_of(hasher, slots, arena, *id));
    }
}

/// How `rewrite` changes the data.
enum DataChange<'d> {
    Keep,
    Set(Option<&'d [u8]>),
}

impl NodeTable {
    /// A table holding only a root with `root_data`, `acl` and `stat`.
    pub fn new(root_data: Option<&[u8]>, acl: Vec<Acl>, stat: NodeStat) -> NodeTable {
        let mut t = NodeTable {
            slots: Vec::new(),
            free: Vec::new(),
            index: Index::default(),
            hasher: foldhash::fast::RandomState::default(),
            live: 1,
            arena: Arena::new(),
            base: Base::default(),
            based: false,
            acls: Vec::new(),
            acl_ids: HashMap::default(),
            scratch: Vec::new(),
        };
        let open = t.intern_acl(Acl::open_unsafe());
        debug_assert_eq!(open, OPEN_ACL_ID);
        let acl = t.intern_acl(acl);
        if stat.czxid != 0 {
            t.base = Base {
                zxid: stat.czxid,
                time: stat.ctime,
            };
            t.based = true;
        }
        let rec = t.store_new(b"", root_data, &stat, acl);
        t.slots.push(Slot { rec, ..Slot::FREE });
        t
    }

    /// The number of an ACL list, interning it when new.
    pub fn intern_acl(&mut self, acl: Vec<Acl>) -> AclId {
        if let Some(&id) = self.acl_ids.get(&acl) {
            return id;
        }
        let id = AclId::try_from(self.acls.len()).expect("fewer than 2^32 ACL lists");
        self.acls.push(Arc::new(acl.clone()));
        self.acl_ids.insert(acl, id);
        id
    }

    /// The ACL list numbered `id`.
    pub fn acl(&self, id: AclId) -> &Arc<Vec<Acl>> {
        &self.acls[id as usize]
    }

    /// Makes room for `additional` more nodes without regrowing (snapshot load).
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.index
            .reserve(additional, &self.hasher, &self.slots, &self.arena);
    }

    /// Live nodes, the root included.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn slot(&self, id: NodeId) -> &Slot {
        let s = &self.slots[id as usize];
        assert!(s.rec != NONE, "a live node id");
        s
    }

    fn decode_slot(&self, s: &Slot) -> Decoded<'_> {
        decode(self.arena.bytes(s.rec), self.base)
    }

    fn view(&self, s: &Slot) -> Node<'_> {
        let d = self.decode_slot(s);
        Node {
            stat: d.stat,
            acl: AclRef(&self.acls[d.acl as usize]),
            acl_id: d.acl,
            name: d.name,
            data: d.data,
            num_children: s.num_children,
            first_child: s.first_child,
        }
    }

    pub fn get(&self, id: NodeId) -> Node<'_> {
        self.view(self.slot(id))
    }

    /// The node in slot `id`, if that slot holds one (ids of deleted nodes are reused).
    pub fn try_get(&self, id: NodeId) -> Option<Node<'_>> {
        let s = self.slots.get(id as usize)?;
        (s.rec != NONE).then(|| self.view(s))
    }

    /// A node's name, without decoding the rest of its record.
    pub fn name(&self, id: NodeId) -> &str {
        std::str::from_utf8(self.name_bytes(id)).expect("names are stored from &str")
    }

    fn name_bytes(&self, id: NodeId) -> &[u8] {
        record_name(self.arena.bytes(self.slot(id).rec))
    }

    pub fn parent_of(&self, id: NodeId) -> Option<NodeId> {
        let p = self.slot(id).parent;
        (p != NIL).then_some(p)
    }

    /// The child of `parent` called `name`.
    pub fn child(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        let name = name.as_bytes();
        let hash = key_hash(&self.hasher, parent, name);
        self.index.find(hash, |id| {
            let s = &self.slots[*id as usize];
            s.parent == parent && record_name(self.arena.bytes(s.rec)) == name
        })
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

    /// Encodes and stores a record; returns its address.
    fn store_new(&mut self, name: &[u8], data: Option<&[u8]>, stat: &NodeStat, acl: AclId) -> u32 {
        let mut header = std::mem::take(&mut self.scratch);
        header.clear();
        encode_header(
            &mut header,
            name,
            data.map(<[u8]>::len),
            stat,
            acl,
            self.base,
        );
        let rec = self.arena.store(&header, data.unwrap_or_default());
        self.scratch = header;
        rec
    }

    /// Adds `name` under `parent`; Err(existing id) if the parent already has it.
    pub fn insert_child(
        &mut self,
        parent: NodeId,
        name: &str,
        data: Option<&[u8]>,
        acl: AclId,
        stat: NodeStat,
    ) -> Result<NodeId, NodeId> {
        assert!(!name.is_empty(), "only the root has an empty name");
        assert!((acl as usize) < self.acls.len(), "an interned ACL");
        if !self.based && stat.czxid != 0 {
            self.rebase(Base {
                zxid: stat.czxid,
                time: stat.ctime,
            });
        }
        let name = name.as_bytes();
        let hash = key_hash(&self.hasher, parent, name);
        // First, as it may start a growth (the full table becomes the old one).
        self.index
            .prepare_insert(&self.hasher, &self.slots, &self.arena);
        let same = |id: &NodeId| {
            let s = &self.slots[*id as usize];
            s.parent == parent && record_name(self.arena.bytes(s.rec)) == name
        };
        if let Some(existing) = self.index.old.find(hash, same) {
            return Err(*existing);
        }
        // One probe finds the duplicate or the free bucket; the id is filled in below.
        // (prepare_insert left room: the table does not grow here.)
        let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
        let entry = self.index.table.entry(
            hash,
            |id| {
                let s = &slots[*id as usize];
                s.parent == parent && record_name(arena.bytes(s.rec)) == name
            },
            |id| hash_of(hasher, slots, arena, *id),
        );
        let vacant = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => return Err(*o.get()),
            hashbrown::hash_table::Entry::Vacant(v) => v,
        };
        let id = match self.free.last() {
            Some(&id) => id,
            None => {
                let id = NodeId::try_from(self.slots.len()).expect("fewer than 2^32 znodes");
                assert!(id != NIL, "fewer than 2^32-1 znodes");
                id
            }
        };
        vacant.insert(id);
        let rec = self.store_new(name, data, &stat, acl);
        let first = self.slot(parent).first_child;
        let node = Slot {
            rec,
            parent,
            first_child: NIL,
            next_sibling: first,
            prev_sibling: NIL,
            num_children: 0,
        };
        if self.free.last() == Some(&id) {
            self.free.pop();
            self.slots[id as usize] = node;
        } else {
            self.slots.push(node);
        }
        if first != NIL {
            self.slots[first as usize].prev_sibling = id;
        }
        let p = &mut self.slots[parent as usize];
        p.first_child = id;
        p.num_children += 1;
        self.live += 1;
        // A new chunk leaves the last one's tail as a hole.
        self.maybe_compact();
        Ok(id)
    }

    /// Removes a node without children and returns what the caller still needs of it.
    pub fn remove_leaf(&mut self, id: NodeId) -> RemovedNode {
        assert!(id != ROOT_ID, "the root is never removed");
        let s = *self.slot(id);
        assert!(s.num_children == 0, "remove_leaf of a node with children");
        let hash = hash_of(&self.hasher, &self.slots, &self.arena, id);
        self.index.remove(hash, id);
        if s.prev_sibling != NIL {
            self.slots[s.prev_sibling as usize].next_sibling = s.next_sibling;
        } else {
            self.slots[s.parent as usize].first_child = s.next_sibling;
        }
        if s.next_sibling != NIL {
            self.slots[s.next_sibling as usize].prev_sibling = s.prev_sibling;
        }
        self.slots[s.parent as usize].num_children -= 1;
        let (removed, len) = {
            let d = self.decode_slot(&s);
            let removed = RemovedNode {
                stat: d.stat,
                acl: self.acls[d.acl as usize].clone(),
                data_len: d.data.map_or(0, <[u8]>::len),
            };
            (removed, d.len())
        };
        self.arena.free(s.rec, len);
        self.slots[id as usize] = Slot::FREE;
        self.free.push(id);
        self.live -= 1;
        self.maybe_compact();
        removed
    }

    /// Changes a node's persisted Stat.
    pub fn update_stat(&mut self, id: NodeId, f: impl FnOnce(&mut NodeStat)) {
        let d = self.decode_slot(self.slot(id));
        let (mut stat, acl) = (d.stat, d.acl);
        f(&mut stat);
        self.rewrite(id, stat, acl, DataChange::Keep);
    }

    /// Replaces a node's data (None: null data), keeping its name, and changes its Stat.
    pub fn set_data(&mut self, id: NodeId, data: Option<&[u8]>, f: impl FnOnce(&mut NodeStat)) {
        let d = self.decode_slot(self.slot(id));
        let (mut stat, acl) = (d.stat, d.acl);
        f(&mut stat);
        self.rewrite(id, stat, acl, DataChange::Set(data));
    }

    /// Replaces a node's ACL and changes its Stat.
    pub fn set_acl(&mut self, id: NodeId, acl: AclId, f: impl FnOnce(&mut NodeStat)) {
        assert!((acl as usize) < self.acls.len(), "an interned ACL");
        let mut stat = self.decode_slot(self.slot(id)).stat;
        f(&mut stat);
        self.rewrite(id, stat, acl, DataChange::Keep);
    }

    /// Re-encodes node `id` with `stat`, `acl` and the data `change` says; the name (and
    /// the data, for `Keep`) come from the current record.
    fn rewrite(&mut self, id: NodeId, stat: NodeStat, acl: AclId, change: DataChange<'_>) {
        let rec = self.slot(id).rec;
        let mut header = std::mem::take(&mut self.scratch);
        header.clear();
        let (old_header_len, old_len, old_data_len) = {
            let d = decode(self.arena.bytes(rec), self.base);
            let data_len = match change {
                DataChange::Keep => d.data.map(<[u8]>::len),
                DataChange::Set(data) => data.map(<[u8]>::len),
            };
            encode_header(&mut header, d.name, data_len, &stat, acl, self.base);
            (d.header_len, d.len(), d.data.map_or(0, <[u8]>::len))
        };
        let keep = matches!(change, DataChange::Keep);
        if keep && header.len() == old_header_len {
            // Same length and data: overwrite the header where it is.
            self.arena
                .bytes_mut(rec, old_header_len)
                .copy_from_slice(&header);
            self.scratch = header;
            return;
        }
        let new_rec = match change {
            DataChange::Set(data) => {
                self.arena.free(rec, old_len);
                self.arena.store(&header, data.unwrap_or_default())
            }
            DataChange::Keep => {
                // The data moves with the new header: copy it out before freeing.
                let hl = header.len();
                let data_start = old_header_len;
                header.extend_from_slice(
                    &self.arena.bytes(rec)[data_start..data_start + old_data_len],
                );
                self.arena.free(rec, old_len);
                self.arena.store(&header[..hl], &header[hl..])
            }
        };
        self.slots[id as usize].rec = new_rec;
        self.scratch = header;
        self.maybe_compact();
    }

    /// Fixes the base of czxid/ctime, re-encoding the records stored so far.
    fn rebase(&mut self, base: Base) {
        let live: Vec<(NodeId, NodeStat, AclId)> = (0..self.slots.len() as NodeId)
            .filter(|id| self.slots[*id as usize].rec != NONE)
            .map(|id| {
                let d = self.decode_slot(&self.slots[id as usize]);
                (id, d.stat, d.acl)
            })
            .collect();
        self.base = base;
        self.based = true;
        // The names and data decode the same under any base; the stats are re-encoded.
        for (id, stat, acl) in live {
            self.rewrite(id, stat, acl, DataChange::Keep);
        }
    }

    fn maybe_compact(&mut self) {
        if self.arena.wants_compaction() {
            self.compact();
        }
    }

    /// Slides every small record down in address order, freeing the emptied chunks and
    /// leaving no holes but the ends of chunks a record did not fit in.
    fn compact(&mut self) {
        let mut live: Vec<(u32, NodeId)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.rec != NONE && s.rec & LARGE_BIT == 0)
            .map(|(id, s)| (s.rec, id as NodeId))
            .collect();
        live.sort_unstable();
        let arena = &mut self.arena;
        arena.heads.fill(NONE);
        arena.nonempty.fill(0);
        arena.hole_units = 0;
        let mut gaps: Vec<(u32, usize)> = Vec::new();
        let mut dst: u32 = 0;
        for (src, id) in live {
            let len = decode(arena.bytes(src), self.base).len();
            let units = units_of(len) as u32;
            if dst % CHUNK_UNITS + units > CHUNK_UNITS {
                let next = (dst / CHUNK_UNITS + 1) * CHUNK_UNITS;
                gaps.push((dst, (next - dst) as usize));
                dst = next;
            }
            debug_assert!(dst <= src);
            if dst != src {
                let bytes = units as usize * UNIT;
                let (sc, so) = (
                    (src / CHUNK_UNITS) as usize,
                    (src % CHUNK_UNITS) as usize * UNIT,
                );
                let (dc, d_off) = (
                    (dst / CHUNK_UNITS) as usize,
                    (dst % CHUNK_UNITS) as usize * UNIT,
                );
                if sc == dc {
                    arena.chunks[sc].copy_within(so..so + bytes, d_off);
                } else {
                    let (lo, hi) = arena.chunks.split_at_mut(sc);
                    lo[dc][d_off..d_off + bytes].copy_from_slice(&hi[0][so..so + bytes]);
                }
            }
            self.slots[id as usize].rec = dst;
            dst += units;
        }
        arena.chunks.truncate(dst.div_ceil(CHUNK_UNITS) as usize);
        arena.top = dst;
        for (addr, units) in gaps {
            arena.push_hole(addr, units);
        }
    }

    /// The ids of a node's children (most recently created first; ZooKeeper promises no
    /// order either).
    pub fn children(&self, id: NodeId) -> Children<'_> {
        Children {
            table: self,
            next: self.slot(id).first_child,
        }
    }

    /// Slots in the slab, live or free: the end of a scan by id.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Calls `found` with each child of `parent` held by slots `from..to` (clamped to
    /// the slab), in id order: a bounded piece of a scan for the children of a node with
    /// too many to collect in one go.
    pub fn children_in_slots(
        &self,
        parent: NodeId,
        from: usize,
        to: usize,
        mut found: impl FnMut(NodeId),
    ) {
        let to = to.min(self.slots.len());
        if from >= to {
            return;
        }
        for (i, s) in self.slots[from..to].iter().enumerate() {
            if s.parent == parent && s.rec != NONE {
                found((from + i) as NodeId);
            }
        }
    }

    /// Children of `node`, given the node itself.
    pub fn children_of<'a>(&'a self, node: &Node<'_>) -> Children<'a> {
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
            names.push(self.name(at));
            at = self.slot(at).parent;
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
    pub fn for_each(&self, mut f: impl FnMut(&str, NodeId, &Node<'_>)) {
        let mut path = String::from("/");
        f(&path, ROOT_ID, &self.get(ROOT_ID));
        // (child iterator position, path length before this level's name)
        let mut stack: Vec<(NodeId, usize)> = vec![(self.slot(ROOT_ID).first_child, 1)];
        while let Some((next, base)) = stack.last_mut() {
            if *next == NIL {
                stack.pop();
                continue;
            }
            let id = *next;
            let base = *base;
            let s = self.slot(id);
            *next = s.next_sibling;
            let n = self.view(s);
            path.truncate(base);
            if base > 1 {
                path.push('/');
            }
            path.push_str(n.name());
            f(&path, id, &n);
            if s.first_child != NIL {
                let len = path.len();
                stack.push((s.first_child, len));
            }
        }
    }

    /// Bytes held for records (arena chunks and large blocks), for tests and metrics.
    pub fn record_bytes(&self) -> u64 {
        self.arena.footprint()
    }
}

/// Iterator over a node's children ids.
pub struct Children<'a> {
    table: &'a NodeTable,
    next: NodeId,
}

impl Iterator for Children<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        if self.next == NIL {
            return None;
        }
        let id = self.next;
        self.next = self.table.slot(id).next_sibling;
        Some(id)
    }
}

#[cfg(test)]
impl NodeTable {
    /// Checks every invariant of the module doc, and the arena's accounting.
    fn check(&self) {
        const LIVE: u8 = 1;
        const HOLE: u8 = 2;
        let a = &self.arena;
        assert!(a.top as usize <= a.chunks.len() * CHUNK_UNITS as usize);
        assert!(
            a.chunks.is_empty() || a.top as usize > (a.chunks.len() - 1) * CHUNK_UNITS as usize
        );
        let mut owner = vec![0u8; a.top as usize];
        let mut mark = |addr: u32, units: usize, what: u8| {
            assert!(units > 0);
            assert_eq!(
                addr / CHUNK_UNITS,
                (addr + units as u32 - 1) / CHUNK_UNITS,
                "a record or hole never straddles chunks"
            );
            for u in &mut owner[addr as usize..addr as usize + units] {
                assert_eq!(*u, 0, "unit {addr} used twice");
                *u = what;
            }
        };
        let (mut live_units, mut large_bytes, mut live) = (0u64, 0u64, 0usize);
        for (id, s) in self.slots.iter().enumerate() {
            if s.rec == NONE {
                assert!(self.free.contains(&(id as NodeId)));
                continue;
            }
            live += 1;
            let d = self.decode_slot(s);
            if s.rec & LARGE_BIT == 0 {
                assert!(d.len() <= MAX_SMALL);
                mark(s.rec, units_of(d.len()), LIVE);
                live_units += units_of(d.len()) as u64;
            } else {
                let block = &a.large[(s.rec & !LARGE_BIT) as usize];
                assert_eq!(block.len(), d.len());
                large_bytes += d.len() as u64;
            }
            assert!((d.acl as usize) < self.acls.len());
            // Links: the parent lists the node; the sibling list is doubly linked.
            let id = id as NodeId;
            if id == ROOT_ID {
                assert_eq!(s.parent, NIL);
            } else {
                assert_eq!(self.child(s.parent, self.name(id)), Some(id));
                assert!(self.children(s.parent).any(|c| c == id));
            }
            let kids: Vec<NodeId> = self.children(id).collect();
            assert_eq!(kids.len(), s.num_children as usize);
            let mut prev = NIL;
            for k in kids {
                assert_eq!(self.slots[k as usize].prev_sibling, prev);
                assert_eq!(self.slots[k as usize].parent, id);
                prev = k;
            }
        }
        assert_eq!(live, self.live);
        assert_eq!(self.index.len(), live - 1);
        assert_eq!(live_units, a.live_units);
        assert_eq!(large_bytes, a.large_bytes);
        let mut hole_units = 0u64;
        for k in 1..=MAX_SMALL_UNITS {
            let mut addr = a.heads[k];
            assert_eq!(addr != NONE, a.nonempty[k / 64] & (1 << (k % 64)) != 0);
            while addr != NONE {
                mark(addr, k, HOLE);
                hole_units += k as u64;
                let chunk = (addr / CHUNK_UNITS) as usize;
                let off = (addr % CHUNK_UNITS) as usize * UNIT;
                addr = u32::from_le_bytes(a.chunks[chunk][off..off + 4].try_into().unwrap());
            }
        }
        assert_eq!(hole_units, a.hole_units);
        assert!(
            owner.iter().all(|u| *u != 0),
            "every unit below top is live or a hole"
        );
        assert!(
            !a.wants_compaction(),
            "compaction runs as soon as it is due"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn table() -> NodeTable {
        NodeTable::new(Some(b""), Acl::open_unsafe(), NodeStat::default())
    }

    fn st(zxid: i64) -> NodeStat {
        NodeStat::new(zxid, 1_700_000_000_000 + zxid, 0)
    }

    /// The index grows without a whole-table rehash: while an old table drains, creates,
    /// duplicate creates, lookups, deletes and slot reuse all see every node exactly once.
    #[test]
    fn index_grows_a_few_entries_at_a_time() {
        let mut t = table();
        let parents: Vec<NodeId> = (0..8)
            .map(|i| {
                t.insert_child(ROOT_ID, &format!("p{i}"), None, OPEN_ACL_ID, st(1))
                    .unwrap()
            })
            .collect();
        let mut live: Vec<(NodeId, NodeId, String)> = Vec::new();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut growths, mut removed_while_draining, mut reused_while_draining) = (0, 0, 0);
        let mut was_draining = false;
        for i in 0..30_000u64 {
            let draining = !t.index.old.is_empty();
            if draining && !was_draining {
                growths += 1;
            }
            was_draining = draining;
            let r = next();
            if r % 4 == 0 && !live.is_empty() {
                let (id, parent, name) = live.swap_remove((r as usize / 4) % live.len());
                t.remove_leaf(id);
                assert_eq!(t.child(parent, &name), None);
                removed_while_draining += usize::from(draining);
            } else {
                let parent = parents[(r % 8) as usize];
                let name = format!("c{i}");
                let reuses = !t.free.is_empty();
                let id = t
                    .insert_child(parent, &name, Some(b"x"), OPEN_ACL_ID, st(i as i64 + 2))
                    .unwrap();
                reused_while_draining += usize::from(draining && reuses);
                live.push((id, parent, name));
            }
            if i % 7 == 0 && !live.is_empty() {
                // A duplicate create finds the node in whichever table holds it.
                let (id, parent, name) = &live[(r as usize >> 8) % live.len()];
                assert_eq!(
                    t.insert_child(*parent, name, None, OPEN_ACL_ID, st(1)),
                    Err(*id)
                );
                assert_eq!(t.child(*parent, name), Some(*id));
            }
        }
        assert!(growths >= 8, "{growths} growths");
        assert!(removed_while_draining > 100 && reused_while_draining > 100,
            "{removed_while_draining} removals and {reused_while_draining} slot reuses while draining");
        assert_eq!(t.index.len(), live.len() + parents.len());
        for (id, parent, name) in &live {
            assert_eq!(t.child(*parent, name), Some(*id));
        }
        t.check();
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = table();
        let open = OPEN_ACL_ID;
        let a = t
            .insert_child(ROOT_ID, "a", Some(b"1"), open, NodeStat::default())
            .unwrap();
        let b = t
            .insert_child(a, "b", None, open, NodeStat::default())
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
            t.insert_child(a, "b", None, open, NodeStat::default()),
            Err(b)
        );
        assert_eq!(t.get(a).num_children(), 1);
        let gone = t.remove_leaf(b);
        assert_eq!((gone.data_len, gone.acl.as_ref()), (0, &Acl::open_unsafe()));
        assert_eq!(t.lookup("/a/b"), None);
        assert_eq!(t.get(a).num_children(), 0);
        assert_eq!(t.len(), 2);
        // The freed slot is reused.
        let c = t
            .insert_child(a, "c", Some(b"xyz"), open, NodeStat::default())
            .unwrap();
        assert_eq!(c, b);
        t.set_data(c, Some(b"q"), |_| {});
        assert_eq!(t.get(c).data(), Some(&b"q"[..]));
        assert_eq!(t.get(c).name(), "c");
        t.set_data(c, None, |_| {});
        assert_eq!(t.get(c).data(), None);
        assert_eq!(t.get(c).data_len(), 0);
        t.set_data(c, Some(b""), |_| {});
        assert_eq!(t.get(c).data(), Some(&b""[..]));
        assert_eq!(t.get(c).client_stat().data_length, 0);
        t.check();
    }

    #[test]
    #[should_panic(expected = "remove_leaf of a node with children")]
    fn removing_a_parent_is_a_bug() {
        let mut t = table();
        let a = t
            .insert_child(ROOT_ID, "a", None, OPEN_ACL_ID, NodeStat::default())
            .unwrap();
        t.insert_child(a, "b", None, OPEN_ACL_ID, NodeStat::default())
            .unwrap();
        t.remove_leaf(a);
    }

    #[test]
    fn a_typical_znode_record_is_small() {
        // The benchmark's znodes: a 12-byte name, 100 B of data, created and never changed.
        let mut t = table();
        let first = NodeStat::new(0x1_0000_0001, 1_764_000_000_000, 0);
        let p = t
            .insert_child(ROOT_ID, "p", None, OPEN_ACL_ID, first)
            .unwrap();
        // Created 900 000 txns and 90 s after the first node.
        let s = NodeStat::new(0x1_000d_bba1, 1_764_000_000_000 + 90_000, 0);
        let id = t
            .insert_child(p, "c12-3-456789", Some(&[b'x'; 100]), OPEN_ACL_ID, s)
            .unwrap();
        let d = t.decode_slot(t.slot(id));
        assert!(d.len() <= 12 + 100 + 1 + 10, "record of {} bytes", d.len());
        assert_eq!(d.stat, s);
        t.check();
    }

    #[test]
    fn large_data_up_to_a_mebibyte() {
        let mut t = table();
        let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 + 3) as u8).collect();
        let a = t
            .insert_child(ROOT_ID, "a", Some(&big), OPEN_ACL_ID, st(5))
            .unwrap();
        assert_eq!(t.get(a).data(), Some(&big[..]));
        let before = t.record_bytes();
        // A parent's stat changes with each child: the header is rewritten in place.
        for i in 0..300 {
            let c = t
                .insert_child(a, &format!("c{i}"), None, OPEN_ACL_ID, st(6 + i))
                .unwrap();
            t.update_stat(a, |s| {
                s.cversion += 1;
                s.pzxid = 6 + i;
            });
            assert_eq!(t.get(c).stat.czxid, 6 + i);
        }
        let n = t.get(a);
        assert_eq!(
            (n.stat.cversion, n.stat.pzxid, n.num_children()),
            (300, 305, 300)
        );
        assert_eq!(n.data(), Some(&big[..]));
        assert!(t.record_bytes() < before + 2 * CHUNK_BYTES as u64);
        t.set_data(a, Some(b"small"), |s| s.version = 1);
        assert_eq!(t.get(a).data(), Some(&b"small"[..]));
        assert_eq!(t.get(a).stat.version, 1);
        assert!(t.record_bytes() < 2 * CHUNK_BYTES as u64);
        t.check();
    }

    #[test]
    fn long_names() {
        let mut t = table();
        let long = "n".repeat(MAX_SMALL + 10);
        let mid = "m".repeat(MAX_SMALL - 30);
        let a = t
            .insert_child(ROOT_ID, &long, Some(b"d"), OPEN_ACL_ID, st(1))
            .unwrap();
        let b = t
            .insert_child(a, &mid, Some(&[1; 40]), OPEN_ACL_ID, st(2))
            .unwrap();
        assert_eq!(t.lookup(&format!("/{long}/{mid}")), Some(b));
        assert_eq!(t.get(a).name(), long);
        assert_eq!(t.get(b).name(), mid);
        // Moves between the arena and a block of its own as the data changes.
        t.set_data(b, Some(b""), |_| {});
        assert_eq!(t.get(b).data(), Some(&b""[..]));
        t.set_data(b, Some(&[2; 100]), |_| {});
        assert_eq!(t.lookup(&format!("/{long}/{mid}")), Some(b));
        t.check();
        t.remove_leaf(b);
        t.remove_leaf(a);
        t.check();
    }

    #[test]
    fn the_base_is_fixed_by_the_first_real_node() {
        // Nodes stored before the base is known are re-encoded when it is fixed.
        let mut t = table();
        let z = t
            .insert_child(
                ROOT_ID,
                "zero",
                Some(b"0"),
                OPEN_ACL_ID,
                NodeStat::default(),
            )
            .unwrap();
        let s = NodeStat {
            aversion: -1,
            ..NodeStat::default()
        };
        t.update_stat(z, |x| *x = s);
        let r = t
            .insert_child(ROOT_ID, "real", None, OPEN_ACL_ID, st(0x5_0000_0001))
            .unwrap();
        let old = t
            .insert_child(ROOT_ID, "old", None, OPEN_ACL_ID, st(3))
            .unwrap();
        assert_eq!(t.get(z).stat, s);
        assert_eq!(t.get(z).data(), Some(&b"0"[..]));
        assert_eq!(t.get(r).stat, st(0x5_0000_0001));
        assert_eq!(t.get(old).stat, st(3));
        assert_eq!(t.get(ROOT_ID).stat, NodeStat::default());
        t.check();
    }

    #[test]
    fn steady_set_data_reuses_its_holes() {
        let mut t = table();
        let ids: Vec<NodeId> = (0..2000)
            .map(|i| {
                t.insert_child(
                    ROOT_ID,
                    &format!("k{i}"),
                    Some(&[0; 100]),
                    OPEN_ACL_ID,
                    st(i + 1),
                )
                .unwrap()
            })
            .collect();
        let after_create = t.arena.top;
        let mut zxid = 10_000;
        let mut after_10 = 0;
        for round in 0..50u8 {
            if round == 10 {
                // The headers have grown to their steady size (mzxid - czxid > 8191): each
                // record moved at most twice (once a unit longer, once more if the next
                // varint step crossed a unit), leaving holes of the old sizes for new
                // records of those sizes (or the compaction).
                after_10 = t.arena.top;
                assert!(after_10 <= 3 * after_create, "{after_10} vs {after_create}");
            }
            for &id in &ids {
                zxid += 1;
                t.set_data(id, Some(&[round; 100]), |s| {
                    s.mzxid = zxid;
                    s.version += 1;
                });
            }
        }
        assert_eq!(t.arena.top, after_10, "no growth once sizes are steady");
        assert!(t.arena.hole_units <= t.arena.live_units);
        assert_eq!(t.get(ids[7]).data(), Some(&[49; 100][..]));
        assert_eq!(t.get(ids[7]).stat.version, 50);
        t.check();
    }

    #[test]
    fn churn_of_random_sizes_stays_bounded() {
        // Sizes that change every time leave holes of every size; splitting and compaction
        // keep the arena within ~1.25 × the live bytes plus a chunk or two.
        let mut t = table();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let ids: Vec<NodeId> = (0..20_000)
            .map(|i| {
                t.insert_child(
                    ROOT_ID,
                    &format!("k{i}"),
                    Some(&[1; 50]),
                    OPEN_ACL_ID,
                    st(i + 1),
                )
                .unwrap()
            })
            .collect();
        let mut zxid = 100_000;
        for round in 0..40 {
            for _ in 0..20_000 {
                let id = ids[(next() % ids.len() as u64) as usize];
                let len = (next() % 2000) as usize;
                zxid += 1;
                t.set_data(id, Some(&vec![7; len]), |s| s.mzxid = zxid);
            }
            let live = t.arena.live_units * UNIT as u64;
            assert!(
                t.record_bytes() <= live + live / 4 + 3 * CHUNK_BYTES as u64,
                "round {round}: {} bytes held for {live} live",
                t.record_bytes()
            );
        }
        t.check();
        // Deleting most nodes gives the memory back.
        for &id in &ids[1000..] {
            t.remove_leaf(id);
        }
        t.check();
        assert!(
            t.record_bytes() <= 3 * CHUNK_BYTES as u64,
            "{}",
            t.record_bytes()
        );
        for &id in &ids[..1000] {
            assert_eq!(t.get(id).stat.czxid, i64::from(id));
        }
    }

    /// How long the compaction of a million-znode arena stalls the tree (the slowest
    /// delete of a loop that deletes every third node triggers it).
    #[test]
    #[ignore = "timing: cargo test --release -p zkd-server --lib compaction_stall -- --ignored --nocapture"]
    fn compaction_stall() {
        let mut t = table();
        let parents: Vec<NodeId> = (0..1000)
            .map(|p| {
                t.insert_child(ROOT_ID, &format!("p{p:03}"), None, OPEN_ACL_ID, st(p + 1))
                    .unwrap()
            })
            .collect();
        let mut ids = Vec::new();
        for i in 0..1_000_000i64 {
            let p = parents[(i % 1000) as usize];
            let name = format!("c{}-{}-{i}", i % 16, i % 8);
            ids.push(
                t.insert_child(p, &name, Some(&[b'x'; 100]), OPEN_ACL_ID, st(2000 + i))
                    .unwrap(),
            );
        }
        let before = t.record_bytes();
        let (mut slowest, start) = (std::time::Duration::ZERO, std::time::Instant::now());
        for id in ids.iter().step_by(3) {
            let t0 = std::time::Instant::now();
            t.remove_leaf(*id);
            slowest = slowest.max(t0.elapsed());
        }
        println!(
            "records {} -> {} MiB; {} deletes in {:?}, slowest {:?}",
            before >> 20,
            t.record_bytes() >> 20,
            ids.len().div_ceil(3),
            start.elapsed(),
            slowest
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create {
            parent: usize,
            name: u8,
            data: Option<Vec<u8>>,
            acl: u8,
        },
        SetData {
            node: usize,
            data: Option<Vec<u8>>,
        },
        SetAcl {
            node: usize,
            acl: u8,
        },
        Stat {
            node: usize,
            stat: NodeStat,
        },
        Remove {
            node: usize,
        },
    }

    fn data() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..160).prop_map(Some),
            1 => (MAX_SMALL - 40..MAX_SMALL + 40).prop_map(|n| Some(vec![0xab; n])),
            1 => Just(None),
            1 => Just(Some(Vec::new())),
        ]
    }

    fn stat() -> impl Strategy<Value = NodeStat> {
        let wide = prop_oneof![any::<i64>(), -3i64..300, Just(i64::MIN), Just(i64::MAX)];
        let narrow = prop_oneof![any::<i32>(), -2i32..5];
        (
            (wide.clone(), wide.clone(), wide.clone(), wide.clone()),
            (narrow.clone(), narrow.clone(), narrow),
            (wide.clone(), wide),
        )
            .prop_map(
                |((czxid, mzxid, ctime, mtime), (version, cversion, aversion), (owner, pzxid))| {
                    NodeStat {
                        czxid,
                        mzxid,
                        ctime,
                        mtime,
                        version,
                        cversion,
                        aversion,
                        ephemeral_owner: owner,
                        pzxid,
                    }
                },
            )
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<usize>(), 0u8..6, data(), 0u8..3).prop_map(|(parent, name, data, acl)| Op::Create { parent, name, data, acl }),
            3 => (any::<usize>(), data()).prop_map(|(node, data)| Op::SetData { node, data }),
            1 => (any::<usize>(), 0u8..3).prop_map(|(node, acl)| Op::SetAcl { node, acl }),
            2 => (any::<usize>(), stat()).prop_map(|(node, stat)| Op::Stat { node, stat }),
            3 => any::<usize>().prop_map(|node| Op::Remove { node }),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Model {
        path: String,
        data: Option<Vec<u8>>,
        stat: NodeStat,
        acl: AclId,
    }

    proptest! {
        #[test]
        fn records_round_trip(
            name in "[a-z0-9.-]{0,40}",
            data in data(),
            s in stat(),
            acl in prop_oneof![Just(0u32), any::<u32>()],
            base in (any::<i64>(), any::<i64>()),
        ) {
            let base = Base { zxid: base.0, time: base.1 };
            let mut buf = Vec::new();
            encode_header(&mut buf, name.as_bytes(), data.as_ref().map(Vec::len), &s, acl, base);
            let header_len = buf.len();
            buf.extend_from_slice(data.as_deref().unwrap_or_default());
            buf.extend_from_slice(b"trailing bytes of the chunk");
            let d = decode(&buf, base);
            prop_assert_eq!(d.name, name.as_bytes());
            prop_assert_eq!(record_name(&buf), name.as_bytes());
            prop_assert_eq!(d.stat, s);
            prop_assert_eq!(d.acl, acl);
            prop_assert_eq!(d.data, data.as_deref());
            prop_assert_eq!(d.header_len, header_len);
        }

        /// Random creates, setData, setACL, stat changes and deletes against a model of
        /// every node's content, checking all invariants (links, index, arena accounting).
        #[test]
        fn behaves_like_a_model(ops in proptest::collection::vec(op(), 1..250)) {
            let mut t = table();
            let acls = [
                OPEN_ACL_ID,
                t.intern_acl(Acl::read_unsafe()),
                t.intern_acl(vec![Acl { perms: 31, id: zkd_proto::records::Id { scheme: "ip".into(), id: "10.0.0.1".into() } }]),
            ];
            prop_assert_eq!(t.intern_acl(Acl::read_unsafe()), acls[1]);
            let mut model: BTreeMap<NodeId, Model> = BTreeMap::new();
            model.insert(ROOT_ID, Model { path: "/".into(), data: Some(vec![]), stat: NodeStat::default(), acl: OPEN_ACL_ID });
            let mut zxid = 0x1_0000_0000i64;
            for op in ops {
                let ids: Vec<NodeId> = model.keys().copied().collect();
                let pick = |i: usize| ids[i % ids.len()];
                zxid += 1;
                match op {
                    Op::Create { parent, name, data, acl } => {
                        let p = pick(parent);
                        let name = format!("n{name}");
                        let ppath = &model[&p].path;
                        let path = if ppath == "/" { format!("/{name}") } else { format!("{ppath}/{name}") };
                        let s = st(zxid);
                        let r = t.insert_child(p, &name, data.as_deref(), acls[acl as usize], s);
                        let existing = model.iter().find(|(_, m)| m.path == path).map(|(id, _)| *id);
                        match (r, existing) {
                            (Err(got), Some(want)) => prop_assert_eq!(got, want),
                            (Ok(id), None) => {
                                model.insert(id, Model { path, data, stat: s, acl: acls[acl as usize] });
                            }
                            (r, e) => prop_assert!(false, "insert {:?} vs model {:?}", r, e),
                        }
                    }
                    Op::SetData { node, data } => {
                        let id = pick(node);
                        t.set_data(id, data.as_deref(), |s| { s.mzxid = zxid; s.version += 1; });
                        let m = model.get_mut(&id).unwrap();
                        m.data = data;
                        m.stat.mzxid = zxid;
                        m.stat.version += 1;
                    }
                    Op::SetAcl { node, acl } => {
                        let id = pick(node);
                        t.set_acl(id, acls[acl as usize], |s| s.aversion = s.aversion.wrapping_add(1));
                        let m = model.get_mut(&id).unwrap();
                        m.acl = acls[acl as usize];
                        m.stat.aversion = m.stat.aversion.wrapping_add(1);
                    }
                    Op::Stat { node, stat } => {
                        let id = pick(node);
                        t.update_stat(id, |s| *s = stat);
                        model.get_mut(&id).unwrap().stat = stat;
                    }
                    Op::Remove { node } => {
                        let id = pick(node);
                        let path = model[&id].path.clone();
                        let has_children = model.values().any(|m| m.path.starts_with(&format!("{path}/")));
                        if id != ROOT_ID && !has_children {
                            let gone = t.remove_leaf(id);
                            let m = model.remove(&id).unwrap();
                            prop_assert_eq!(gone.stat, m.stat);
                            prop_assert_eq!(gone.data_len, m.data.as_ref().map_or(0, Vec::len));
                            prop_assert_eq!(&gone.acl, t.acl(m.acl));
                        }
                    }
                }
                t.check();
                prop_assert_eq!(t.len(), model.len());
            }
            for (id, m) in &model {
                let n = t.get(*id);
                prop_assert_eq!(t.lookup(&m.path), Some(*id));
                prop_assert_eq!(t.path_of(*id), m.path.clone());
                prop_assert_eq!(n.stat, m.stat);
                prop_assert_eq!(n.data(), m.data.as_deref());
                prop_assert_eq!(n.acl_id, m.acl);
                prop_assert_eq!(&*n.acl, t.acl(m.acl));
            }
            let mut seen = BTreeMap::new();
            t.for_each(|p, id, n| {
                assert_eq!(t.path_of(id), p);
                seen.insert(p.to_string(), n.data().map(<[u8]>::to_vec));
            });
            let expect: BTreeMap<String, Option<Vec<u8>>> = model.values().map(|m| (m.path.clone(), m.data.clone())).collect();
            prop_assert_eq!(seen, expect);
        }

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
                        let r = t.insert_child(pid, name, Some(path.as_bytes()), OPEN_ACL_ID, NodeStat::default());
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
            t.check();
            let mut seen = BTreeMap::new();
            t.for_each(|p, id, n| {
                assert_eq!(t.path_of(id), p);
                seen.insert(p.to_string(), n.data().unwrap().to_vec());
            });
            prop_assert_eq!(seen, model.clone());
            for (p, _) in model.iter() {
                let id = t.lookup(p).unwrap();
                let names: Vec<&str> = t.children(id).map(|c| t.name(c)).collect();
                let expect_n = model.keys().filter(|k| k.as_str() != "/" && zkd_proto::path::parent(k) == p.as_str()).count();
                prop_assert_eq!(names.len(), expect_n);
                prop_assert_eq!(t.get(id).num_children(), expect_n);
            }
        }
    }
}
