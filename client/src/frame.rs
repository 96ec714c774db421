//! Length-prefixed framing on the client socket.
//!
//! Owns reading one frame (4-byte big-endian length, then the body) from an async byte
//! stream, with a cap on the length, and building request frames. Never interprets a
//! frame's contents and never allocates more than the cap: the length is checked before
//! the body buffer is sized, so a hostile or corrupt prefix cannot make us reserve 2 GiB.

use tokio::io::{AsyncRead, AsyncReadExt};
use zkd_proto::frame::check_frame_len;
use zkd_proto::{Record, RequestHeader, Writer};

use crate::error::Error;

/// The default cap on an incoming frame: ZooKeeper's default `jute.maxbuffer` plus slack.
/// Replies can exceed `jute.maxbuffer` a little (a getChildren2 of a node whose names sum
/// to just under the limit, plus header and Stat), and the Java client reads those, so we
/// allow 64 KiB on top rather than refusing a legitimate reply.
pub const DEFAULT_MAX_FRAME_LEN: usize = zkd_proto::frame::DEFAULT_MAX_BUFFER + 64 * 1024;

/// Reads whole frames from `R`.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max_len: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_len: usize) -> Self {
        FrameReader { inner, max_len }
    }

    /// Reads the next frame body. A clean EOF before any prefix byte, a torn frame and a
    /// socket error all come back as `Error::Io`; an out-of-range length as
    /// `Error::Protocol`. Not cancel-safe: a cancelled read loses its partial frame, so the
    /// caller must drop the connection when it abandons a read.
    pub async fn read_frame(&mut self) -> Result<Vec<u8>, Error> {
        let mut prefix = [0u8; 4];
        self.inner.read_exact(&mut prefix).await?;
        let len = check_frame_len(prefix, self.max_len)?;
        let mut body = vec![0u8; len];
        self.inner.read_exact(&mut body).await?;
        Ok(body)
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Builds a request frame: length prefix, RequestHeader{xid, op_type}, then `body` as is.
/// Raw bodies (not typed `Request`s) let tests send any op code, including unknown ones.
pub fn request_frame(xid: i32, op_type: i32, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(12 + body.len());
    w.write_i32(0);
    RequestHeader { xid, op_type }.write(&mut w);
    w.buf.extend_from_slice(body);
    let len = (w.buf.len() - 4) as i32;
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    w.into_inner()
}

/// Frames a record without a request header (only the handshake is sent this way).
pub fn record_frame<T: Record>(rec: &T) -> Vec<u8> {
    zkd_proto::frame::frame(&rec.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        zkd_proto::frame::frame(body)
    }

    #[tokio::test]
    async fn reads_consecutive_frames() {
        let mut bytes = framed(b"hello");
        bytes.extend(framed(b""));
        bytes.extend(framed(b"xyz"));
        let mut r = FrameReader::new(&bytes[..], 16);
        assert_eq!(r.read_frame().await.unwrap(), b"hello");
        assert_eq!(r.read_frame().await.unwrap(), b"");
        assert_eq!(r.read_frame().await.unwrap(), b"xyz");
        assert!(matches!(r.read_frame().await, Err(Error::Io(_))));
    }

    #[tokio::test]
    async fn frames_split_across_reads() {
        // A frame trickling in one byte per read must still come out whole.
        let bytes = framed(b"abcdef");
        let (mut tx, rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for b in bytes {
                tx.write_all(&[b]).await.unwrap();
            }
        });
        let mut r = FrameReader::new(rx, 16);
        assert_eq!(r.read_frame().await.unwrap(), b"abcdef");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn cap_and_negative_lengths_are_refused() {
        let bytes = framed(&[0u8; 17]);
        let mut r = FrameReader::new(&bytes[..], 16);
        assert!(matches!(r.read_frame().await, Err(Error::Protocol(_))));
        let bytes = (-1i32).to_be_bytes();
        let mut r = FrameReader::new(&bytes[..], 16);
        assert!(matches!(r.read_frame().await, Err(Error::Protocol(_))));
        // Exactly at the cap is fine.
        let bytes = framed(&[7u8; 16]);
        let mut r = FrameReader::new(&bytes[..], 16);
        assert_eq!(r.read_frame().await.unwrap(), vec![7u8; 16]);
    }

    #[tokio::test]
    async fn torn_frame_is_an_error() {
        let mut bytes = framed(b"abcdef");
        bytes.truncate(7);
        let mut r = FrameReader::new(&bytes[..], 16);
        assert!(matches!(r.read_frame().await, Err(Error::Io(_))));
    }

    #[test]
    fn request_frame_layout() {
        let f = request_frame(7, 4, &[1, 2]);
        assert_eq!(
            f,
            vec![0, 0, 0, 10, 0, 0, 0, 7, 0, 0, 0, 4, 1, 2],
            "len, xid, op, body"
        );
    }
}
