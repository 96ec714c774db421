//! What the client reports besides replies: watch notifications and session state.
//!
//! Owns the public shapes `WatchedEvent` and `SessionState`. Never synthesises watch
//! events: the event stream carries only what the server sent with xid -1, so tests can
//! count notifications exactly. Session state changes (which the Java client also pushes
//! through the watcher as `EventType.None` events) live on a separate `watch` channel.

use zkd_proto::records::keeper_state;

/// One notification the server sent (xid -1, a WatcherEvent), with the zxid from its
/// reply header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// `zkd_proto::records::event_type::*`.
    pub event_type: i32,
    /// `zkd_proto::records::keeper_state::*` (SyncConnected for ordinary notifications).
    pub state: i32,
    pub path: String,
    /// The notification's ReplyHeader zxid. Informational only: like the Java client, this
    /// client does not advance `last_zxid` from notifications.
    pub zxid: i64,
}

/// Where the session stands, as seen by this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Handshake done, socket up.
    Connected,
    /// Handshake done against a read-only server.
    ConnectedReadOnly,
    /// The socket went away. A `ZooKeeper` is reconnecting; a `Client` never does (the
    /// session may still be alive and can be resumed with `ConnectOptions::session`).
    Disconnected,
    /// The server refused to reopen the session; for a `ZooKeeper` also: no server could
    /// be reached for a whole session timeout. Terminal.
    Expired,
    /// The server answered an auth packet with AUTHFAILED (it closes the socket too).
    AuthFailed,
    /// `close` completed (or was attempted), or `ZooKeeper::abandon` was called. Terminal.
    Closed,
}

impl SessionState {
    /// The Watcher.Event.KeeperState number closest to this state.
    pub fn keeper_state(self) -> i32 {
        match self {
            SessionState::Connected => keeper_state::SYNC_CONNECTED,
            SessionState::ConnectedReadOnly => keeper_state::CONNECTED_READ_ONLY,
            SessionState::Disconnected => keeper_state::DISCONNECTED,
            SessionState::Expired => keeper_state::EXPIRED,
            SessionState::AuthFailed => keeper_state::AUTH_FAILED,
            SessionState::Closed => keeper_state::CLOSED,
        }
    }

    pub fn is_connected(self) -> bool {
        matches!(
            self,
            SessionState::Connected | SessionState::ConnectedReadOnly
        )
    }
}
