//! The client's error type.
//!
//! Owns the mapping from what went wrong (a server error code, a lost socket, an expired
//! session, a local timeout, a malformed reply) to one enum callers can match on. Never
//! retries and never hides a server error code: `Keeper` carries exactly what the reply
//! header said, so server tests can assert on it.

use zkd_proto::frame::FrameLenError;
use zkd_proto::{DecodeError, ErrorCode};

/// Everything an operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-zero error code in the reply header.
    #[error("server error: {0}")]
    Keeper(ErrorCode),
    /// The server answered with an error code zkd-proto does not know.
    #[error("server error with unknown code {0}")]
    UnknownCode(i32),
    /// The connection went away before the reply arrived (or the client was already
    /// disconnected). Like ZooKeeper's CONNECTIONLOSS, the operation may or may not have
    /// been applied.
    #[error("connection loss")]
    ConnectionLoss,
    /// The server refused to (re)open the session, or the client was closed.
    #[error("session expired")]
    SessionExpired,
    /// A local deadline (connect or request timeout) passed.
    #[error("timed out")]
    Timeout,
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    /// A reply body did not decode as the record its op promises.
    #[error("cannot decode reply: {0}")]
    Decode(#[from] DecodeError),
    /// The peer broke the framing or the reply order (oversized frame, reply xid that does
    /// not match the oldest pending request). The connection is dropped when this happens.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl Error {
    /// Maps a reply header's `err` field; `None` for 0.
    pub fn from_code(code: i32) -> Option<Error> {
        if code == 0 {
            return None;
        }
        Some(match ErrorCode::from_code(code) {
            Some(c) => Error::Keeper(c),
            None => Error::UnknownCode(code),
        })
    }

    /// The ZooKeeper error code this error corresponds to, as a Java client would report
    /// it (ConnectionLoss and SessionExpired included).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Keeper(c) => Some(*c),
            Error::ConnectionLoss => Some(ErrorCode::ConnectionLoss),
            Error::SessionExpired => Some(ErrorCode::SessionExpired),
            _ => None,
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(c: ErrorCode) -> Self {
        Error::Keeper(c)
    }
}

impl From<FrameLenError> for Error {
    fn from(e: FrameLenError) -> Self {
        Error::Protocol(e.to_string())
    }
}
