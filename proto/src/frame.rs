//! Frame length rules. Every client frame is a 4-byte big-endian length then that many bytes.
//! ZooKeeper refuses (closes the connection on) a length below 0 or above `jute.maxbuffer`.

/// ZooKeeper's default `jute.maxbuffer` (0xfffff bytes).
pub const DEFAULT_MAX_BUFFER: usize = 0xfffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameLenError {
    Negative(i32),
    TooLarge { len: usize, max: usize },
}

impl std::fmt::Display for FrameLenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameLenError::Negative(l) => write!(f, "Len error {l}"),
            FrameLenError::TooLarge { len, max } => {
                write!(f, "Len error {len}: exceeds jute.maxbuffer {max}")
            }
        }
    }
}

impl std::error::Error for FrameLenError {}

/// Checks a frame length prefix against the cap.
pub fn check_frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameLenError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(FrameLenError::Negative(len));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameLenError::TooLarge { len, max });
    }
    Ok(len)
}

/// Prepends the length prefix to an encoded message.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        assert_eq!(check_frame_len(5i32.to_be_bytes(), 10), Ok(5));
        assert_eq!(check_frame_len(10i32.to_be_bytes(), 10), Ok(10));
        assert!(check_frame_len(11i32.to_be_bytes(), 10).is_err());
        assert!(check_frame_len((-1i32).to_be_bytes(), 10).is_err());
    }
}
