//! Jute primitives: the big-endian encoding Apache ZooKeeper's `BinaryInputArchive` and
//! `BinaryOutputArchive` use for every record on the wire and on disk.
//!
//! Owns: reading and writing int, long, boolean, ustring, buffer and vector fields, and the
//! `Record` trait every message implements. Never does IO and never trusts a length: every
//! length read from the wire is checked against the bytes that remain before anything is
//! allocated, so a hostile 2 GiB vector count costs nothing.
//!
//! Layout (all integers big-endian, as in ZooKeeper):
//! - int: 4 bytes; long: 8 bytes; boolean: 1 byte (0 or 1; ZooKeeper reads any non-zero as true)
//! - ustring: int length (-1 = null) then that many UTF-8 bytes
//! - buffer: int length (-1 = null) then the bytes
//! - vector<T>: int count (-1 = null) then count elements

use thiserror::Error;

/// Why a record could not be decoded. Decoding never panics on any input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    #[error("invalid length {0}")]
    BadLength(i32),
    #[error("string is not valid UTF-8")]
    BadUtf8,
    #[error("unknown op code {0}")]
    UnknownOpCode(i32),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0} bytes left after the record")]
    TrailingBytes(usize),
}

/// A cursor over one frame's bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                needed: n,
                remaining: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// Reads a length prefix; `None` is jute's null (-1).
    fn read_len(&mut self, min_elem_size: usize) -> Result<Option<usize>, DecodeError> {
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(DecodeError::BadLength(len));
        }
        let len = len as usize;
        // Each element takes at least `min_elem_size` bytes, so a count larger than the
        // remaining bytes allow is a lie: refuse before allocating.
        if len.saturating_mul(min_elem_size.max(1)) > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: len.saturating_mul(min_elem_size.max(1)),
                remaining: self.remaining(),
            });
        }
        Ok(Some(len))
    }

    pub fn read_buffer_opt(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    pub fn read_ustring_opt(&mut self) -> Result<Option<String>, DecodeError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => {
                // Java decodes with replacement characters rather than failing; U+FFFD then
                // fails path validation, which is how ZooKeeper answers bad UTF-8 in a path.
                let b = self.take(n)?;
                Ok(Some(String::from_utf8_lossy(b).into_owned()))
            }
        }
    }

    /// [`Reader::read_buffer_opt`] without the copy: the bytes borrowed from the input.
    pub fn read_buffer_opt_ref(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?)),
        }
    }

    /// [`Reader::read_ustring_opt`] that borrows from the input when it is valid UTF-8.
    pub fn read_ustring_opt_ref(
        &mut self,
    ) -> Result<Option<std::borrow::Cow<'a, str>>, DecodeError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(String::from_utf8_lossy(self.take(n)?))),
        }
    }

    /// Reads a vector count; null reads as 0 elements.
    pub fn read_vec_len(&mut self, min_elem_size: usize) -> Result<Option<usize>, DecodeError> {
        self.read_len(min_elem_size)
    }
}

/// How jute's `ToStringOutputArchive` (the `toString` of every record, which ZooKeeper's
/// tools and zkCli.sh print) writes a string field: quoted with a leading `'` and with
/// `\0 \n \r , } %` percent-escaped.
pub fn to_string_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("%00"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            ',' => out.push_str("%2C"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// An output buffer for records.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    pub fn write_i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn write_i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn write_buffer(&mut self, v: &[u8]) {
        self.write_i32(v.len() as i32);
        self.buf.extend_from_slice(v);
    }

    pub fn write_buffer_opt(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.write_i32(-1),
            Some(b) => self.write_buffer(b),
        }
    }

    pub fn write_ustring(&mut self, v: &str) {
        self.write_buffer(v.as_bytes());
    }

    pub fn write_ustring_opt(&mut self, v: Option<&str>) {
        self.write_buffer_opt(v.map(str::as_bytes));
    }
}

/// A jute record: a fixed sequence of fields.
pub trait Record: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Encodes the record alone (no frame length).
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_inner()
    }

    /// Decodes a record that must use every byte of `buf`.
    fn from_bytes(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let v = Self::read(&mut r)?;
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes(r.remaining()));
        }
        Ok(v)
    }
}

/// Field codecs used by the `jute_record!` macro; one module per jute type.
pub mod codec {
    use super::{DecodeError, Reader, Record, Writer};

    pub mod int {
        use super::*;
        pub fn write(v: &i32, w: &mut Writer) {
            w.write_i32(*v)
        }
        pub fn read(r: &mut Reader<'_>) -> Result<i32, DecodeError> {
            r.read_i32()
        }
    }
    pub mod long {
        use super::*;
        pub fn write(v: &i64, w: &mut Writer) {
            w.write_i64(*v)
        }
        pub fn read(r: &mut Reader<'_>) -> Result<i64, DecodeError> {
            r.read_i64()
        }
    }
    pub mod boolean {
        use super::*;
        pub fn write(v: &bool, w: &mut Writer) {
            w.write_bool(*v)
        }
        pub fn read(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
            r.read_bool()
        }
    }
    /// A ustring where null and "" need not be told apart (paths, schemes).
    pub mod ustring {
        use super::*;
        pub fn write(v: &str, w: &mut Writer) {
            w.write_ustring(v)
        }
        pub fn read(r: &mut Reader<'_>) -> Result<String, DecodeError> {
            Ok(r.read_ustring_opt()?.unwrap_or_default())
        }
    }
    pub mod ustring_opt {
        use super::*;
        pub fn write(v: &Option<String>, w: &mut Writer) {
            w.write_ustring_opt(v.as_deref())
        }
        pub fn read(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
            r.read_ustring_opt()
        }
    }
    /// A buffer where null and empty need not be told apart (passwords, auth tokens).
    pub mod buffer {
        use super::*;
        pub fn write(v: &[u8], w: &mut Writer) {
            w.write_buffer(v)
        }
        pub fn read(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
            Ok(r.read_buffer_opt()?.unwrap_or_default())
        }
    }
    /// A buffer whose null-ness clients observe (znode data: null stays null).
    pub mod buffer_opt {
        use super::*;
        pub fn write(v: &Option<Vec<u8>>, w: &mut Writer) {
            w.write_buffer_opt(v.as_deref())
        }
        pub fn read(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
            r.read_buffer_opt()
        }
    }
    pub mod vec_ustring {
        use super::*;
        pub fn write(v: &[String], w: &mut Writer) {
            w.write_i32(v.len() as i32);
            for s in v {
                w.write_ustring(s);
            }
        }
        pub fn read(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
            let n = r.read_vec_len(4)?.unwrap_or(0);
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(r.read_ustring_opt()?.unwrap_or_default());
            }
            Ok(out)
        }
    }
    pub mod vec_record {
        use super::*;
        pub fn write<T: Record>(v: &[T], w: &mut Writer) {
            w.write_i32(v.len() as i32);
            for x in v {
                x.write(w);
            }
        }
        pub fn read<T: Record>(r: &mut Reader<'_>) -> Result<Vec<T>, DecodeError> {
            let n = r.read_vec_len(4)?.unwrap_or(0);
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(T::read(r)?);
            }
            Ok(out)
        }
    }
    pub mod record {
        use super::*;
        pub fn write<T: Record>(v: &T, w: &mut Writer) {
            v.write(w)
        }
        pub fn read<T: Record>(r: &mut Reader<'_>) -> Result<T, DecodeError> {
            T::read(r)
        }
    }
}

/// Declares a jute record: each field names its jute codec after `=`.
#[macro_export]
macro_rules! jute_record {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident : $ty:ty = $codec:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }
        impl $crate::jute::Record for $name {
            #[allow(unused_variables)]
            fn write(&self, w: &mut $crate::jute::Writer) {
                $( $crate::jute::codec::$codec::write(&self.$field, w); )*
            }
            #[allow(unused_variables)]
            fn read(r: &mut $crate::jute::Reader<'_>) -> Result<Self, $crate::jute::DecodeError> {
                Ok(Self { $($field: $crate::jute::codec::$codec::read(r)?),* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_before_allocation() {
        // A vector claiming 2^31-1 elements in a 4-byte frame.
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            codec::vec_ustring::read(&mut r),
            Err(DecodeError::Truncated { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.read_buffer_opt(), Err(DecodeError::BadLength(-2)));
    }

    #[test]
    fn null_buffer_round_trips() {
        let mut w = Writer::new();
        w.write_buffer_opt(None);
        assert_eq!(w.buf, vec![0xff; 4]);
        assert_eq!(Reader::new(&w.buf).read_buffer_opt(), Ok(None));
    }
}
