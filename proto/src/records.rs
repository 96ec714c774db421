//! Every client-facing record of ZooKeeper's `zookeeper.jute` (modules
//! `org.apache.zookeeper.data` and `org.apache.zookeeper.proto`), field for field in the
//! jute order. Owns the shapes only; what a field means is the server's business.
//!
//! Null-ness: znode data is `Option<Vec<u8>>` because a Java client can create a node with
//! null data and reads null back; paths and schemes read null as "".

use crate::jute::{DecodeError, Reader, Record, Writer};
use crate::jute_record;

jute_record! {
    /// An identity: `scheme` (world, auth, digest, ip, ...) and its `id`.
    pub struct Id { pub scheme: String = ustring, pub id: String = ustring }
}

jute_record! {
    pub struct Acl { pub perms: i32 = int, pub id: Id = record }
}

jute_record! {
    /// The Stat a client sees (dataLength and numChildren are derived by the server).
    pub struct Stat {
        pub czxid: i64 = long,
        pub mzxid: i64 = long,
        pub ctime: i64 = long,
        pub mtime: i64 = long,
        pub version: i32 = int,
        pub cversion: i32 = int,
        pub aversion: i32 = int,
        pub ephemeral_owner: i64 = long,
        pub data_length: i32 = int,
        pub num_children: i32 = int,
        pub pzxid: i64 = long,
    }
}

jute_record! {
    /// The Stat ZooKeeper persists in snapshots (no dataLength/numChildren).
    pub struct StatPersisted {
        pub czxid: i64 = long,
        pub mzxid: i64 = long,
        pub ctime: i64 = long,
        pub mtime: i64 = long,
        pub version: i32 = int,
        pub cversion: i32 = int,
        pub aversion: i32 = int,
        pub ephemeral_owner: i64 = long,
        pub pzxid: i64 = long,
    }
}

jute_record! {
    pub struct ClientInfo { pub auth_scheme: String = ustring, pub user: String = ustring }
}

/// The handshake. `read_only` is absent from clients older than 3.4 (44 bytes instead of
/// 45); `has_read_only` remembers which form arrived so the reply can match it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub time_out: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
    pub has_read_only: bool,
}

impl Record for ConnectRequest {
    fn write(&self, w: &mut Writer) {
        w.write_i32(self.protocol_version);
        w.write_i64(self.last_zxid_seen);
        w.write_i32(self.time_out);
        w.write_i64(self.session_id);
        w.write_buffer(&self.passwd);
        if self.has_read_only {
            w.write_bool(self.read_only);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.read_i32()?;
        let last_zxid_seen = r.read_i64()?;
        let time_out = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = r.read_buffer_opt()?.unwrap_or_default();
        let (read_only, has_read_only) = if r.remaining() >= 1 {
            (r.read_bool()?, true)
        } else {
            (false, false)
        };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            time_out,
            session_id,
            passwd,
            read_only,
            has_read_only,
        })
    }
}

/// The handshake reply; `read_only` is written only for clients that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub time_out: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
    pub has_read_only: bool,
}

impl Record for ConnectResponse {
    fn write(&self, w: &mut Writer) {
        w.write_i32(self.protocol_version);
        w.write_i32(self.time_out);
        w.write_i64(self.session_id);
        w.write_buffer(&self.passwd);
        if self.has_read_only {
            w.write_bool(self.read_only);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.read_i32()?;
        let time_out = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = r.read_buffer_opt()?.unwrap_or_default();
        let (read_only, has_read_only) = if r.remaining() >= 1 {
            (r.read_bool()?, true)
        } else {
            (false, false)
        };
        Ok(ConnectResponse {
            protocol_version,
            time_out,
            session_id,
            passwd,
            read_only,
            has_read_only,
        })
    }
}

jute_record! {
    pub struct SetWatches {
        pub relative_zxid: i64 = long,
        pub data_watches: Vec<String> = vec_ustring,
        pub exist_watches: Vec<String> = vec_ustring,
        pub child_watches: Vec<String> = vec_ustring,
    }
}

jute_record! {
    pub struct SetWatches2 {
        pub relative_zxid: i64 = long,
        pub data_watches: Vec<String> = vec_ustring,
        pub exist_watches: Vec<String> = vec_ustring,
        pub child_watches: Vec<String> = vec_ustring,
        pub persistent_watches: Vec<String> = vec_ustring,
        pub persistent_recursive_watches: Vec<String> = vec_ustring,
    }
}

jute_record! {
    pub struct RequestHeader { pub xid: i32 = int, pub op_type: i32 = int }
}

jute_record! {
    pub struct MultiHeader { pub op_type: i32 = int, pub done: bool = boolean, pub err: i32 = int }
}

jute_record! {
    pub struct AuthPacket { pub auth_type: i32 = int, pub scheme: String = ustring, pub auth: Vec<u8> = buffer }
}

jute_record! {
    pub struct ReplyHeader { pub xid: i32 = int, pub zxid: i64 = long, pub err: i32 = int }
}

jute_record! {
    pub struct GetDataRequest { pub path: String = ustring, pub watch: bool = boolean }
}

jute_record! {
    pub struct SetDataRequest { pub path: String = ustring, pub data: Option<Vec<u8>> = buffer_opt, pub version: i32 = int }
}

jute_record! {
    pub struct ReconfigRequest {
        pub joining_servers: Option<String> = ustring_opt,
        pub leaving_servers: Option<String> = ustring_opt,
        pub new_members: Option<String> = ustring_opt,
        pub cur_config_id: i64 = long,
    }
}

jute_record! {
    pub struct SetDataResponse { pub stat: Stat = record }
}

jute_record! {
    pub struct GetSaslRequest { pub token: Vec<u8> = buffer }
}

jute_record! {
    pub struct SetSaslRequest { pub token: Vec<u8> = buffer }
}

jute_record! {
    pub struct SetSaslResponse { pub token: Vec<u8> = buffer }
}

jute_record! {
    pub struct CreateRequest {
        pub path: String = ustring,
        pub data: Option<Vec<u8>> = buffer_opt,
        pub acl: Vec<Acl> = vec_record,
        pub flags: i32 = int,
    }
}

jute_record! {
    /// createTTL's body: CreateRequest plus the trailing ttl a parser must consume.
    pub struct CreateTtlRequest {
        pub path: String = ustring,
        pub data: Option<Vec<u8>> = buffer_opt,
        pub acl: Vec<Acl> = vec_record,
        pub flags: i32 = int,
        pub ttl: i64 = long,
    }
}

jute_record! {
    pub struct DeleteRequest { pub path: String = ustring, pub version: i32 = int }
}

jute_record! {
    pub struct GetChildrenRequest { pub path: String = ustring, pub watch: bool = boolean }
}

jute_record! {
    pub struct GetAllChildrenNumberRequest { pub path: String = ustring }
}

jute_record! {
    pub struct GetChildren2Request { pub path: String = ustring, pub watch: bool = boolean }
}

jute_record! {
    pub struct CheckVersionRequest { pub path: String = ustring, pub version: i32 = int }
}

jute_record! {
    pub struct GetMaxChildrenRequest { pub path: String = ustring }
}

jute_record! {
    pub struct GetMaxChildrenResponse { pub max: i32 = int }
}

jute_record! {
    pub struct SetMaxChildrenRequest { pub path: String = ustring, pub max: i32 = int }
}

jute_record! {
    pub struct SyncRequest { pub path: String = ustring }
}

jute_record! {
    pub struct SyncResponse { pub path: String = ustring }
}

jute_record! {
    pub struct GetAclRequest { pub path: String = ustring }
}

jute_record! {
    pub struct SetAclRequest { pub path: String = ustring, pub acl: Vec<Acl> = vec_record, pub version: i32 = int }
}

jute_record! {
    pub struct SetAclResponse { pub stat: Stat = record }
}

jute_record! {
    pub struct AddWatchRequest { pub path: String = ustring, pub mode: i32 = int }
}

jute_record! {
    /// A notification (sent with xid -1). `path` is relative to nothing: the server sends
    /// the full path and the client strips its chroot.
    pub struct WatcherEvent { pub event_type: i32 = int, pub state: i32 = int, pub path: String = ustring }
}

jute_record! {
    pub struct ErrorResponse { pub err: i32 = int }
}

jute_record! {
    pub struct CreateResponse { pub path: String = ustring }
}

jute_record! {
    pub struct Create2Response { pub path: String = ustring, pub stat: Stat = record }
}

jute_record! {
    pub struct ExistsRequest { pub path: String = ustring, pub watch: bool = boolean }
}

jute_record! {
    pub struct ExistsResponse { pub stat: Stat = record }
}

jute_record! {
    pub struct GetDataResponse { pub data: Option<Vec<u8>> = buffer_opt, pub stat: Stat = record }
}

jute_record! {
    pub struct GetChildrenResponse { pub children: Vec<String> = vec_ustring }
}

jute_record! {
    pub struct GetAllChildrenNumberResponse { pub total_number: i32 = int }
}

jute_record! {
    pub struct GetChildren2Response { pub children: Vec<String> = vec_ustring, pub stat: Stat = record }
}

jute_record! {
    pub struct GetAclResponse { pub acl: Vec<Acl> = vec_record, pub stat: Stat = record }
}

jute_record! {
    pub struct CheckWatchesRequest { pub path: String = ustring, pub watcher_type: i32 = int }
}

jute_record! {
    pub struct RemoveWatchesRequest { pub path: String = ustring, pub watcher_type: i32 = int }
}

jute_record! {
    pub struct GetEphemeralsRequest { pub prefix_path: String = ustring }
}

jute_record! {
    pub struct GetEphemeralsResponse { pub ephemerals: Vec<String> = vec_ustring }
}

jute_record! {
    pub struct WhoAmIResponse { pub client_info: Vec<ClientInfo> = vec_record }
}

/// ACL permission bits (ZooDefs.Perms).
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 1 << 1;
    pub const CREATE: i32 = 1 << 2;
    pub const DELETE: i32 = 1 << 3;
    pub const ADMIN: i32 = 1 << 4;
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

impl Acl {
    pub fn new(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id {
                scheme: scheme.to_string(),
                id: id.to_string(),
            },
        }
    }
    /// ZooDefs.Ids.OPEN_ACL_UNSAFE.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, "world", "anyone")]
    }
    /// ZooDefs.Ids.READ_ACL_UNSAFE.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::READ, "world", "anyone")]
    }
    /// ZooDefs.Ids.CREATOR_ALL_ACL.
    pub fn creator_all() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, "auth", "")]
    }
}

/// Event types of a WatcherEvent (Watcher.Event.EventType).
pub mod event_type {
    pub const NONE: i32 = -1;
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const DATA_WATCH_REMOVED: i32 = 5;
    pub const CHILD_WATCH_REMOVED: i32 = 6;
    pub const PERSISTENT_WATCH_REMOVED: i32 = 7;
}

/// Keeper states of a WatcherEvent (Watcher.Event.KeeperState).
pub mod keeper_state {
    pub const DISCONNECTED: i32 = 0;
    pub const SYNC_CONNECTED: i32 = 3;
    pub const AUTH_FAILED: i32 = 4;
    pub const CONNECTED_READ_ONLY: i32 = 5;
    pub const SASL_AUTHENTICATED: i32 = 6;
    pub const EXPIRED: i32 = -112;
    pub const CLOSED: i32 = 7;
}

/// Watcher types for checkWatches/removeWatches (Watcher.WatcherType).
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
    pub const ANY: i32 = 3;
}

/// addWatch modes (AddWatchMode).
pub mod add_watch_mode {
    pub const PERSISTENT: i32 = 0;
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

/// Special xids (ClientCnxn).
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}
