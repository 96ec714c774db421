//! Zxid arithmetic and the `<prefix>.<16 hex digits>` file names built from zxids.
//!
//! Owns the one definition of "the next zxid may follow this one" used by recovery, so the
//! contiguity rule is not re-invented per module. Never does IO.

/// Epoch half of a zxid.
pub fn epoch(zxid: i64) -> u32 {
    ((zxid as u64) >> 32) as u32
}

/// Counter half of a zxid.
pub fn counter(zxid: i64) -> u32 {
    (zxid as u64 & 0xffff_ffff) as u32
}

/// Builds a zxid from its halves.
pub fn make(epoch: u32, counter: u32) -> i64 {
    (((epoch as u64) << 32) | counter as u64) as i64
}

/// True when `next` may directly follow `prev` in a complete history: the same epoch with
/// the counter one higher, or any later epoch (ZAB starts a new epoch at counter 1, or 0
/// for the NEWLEADER marker, and the txns of an abandoned epoch tail never reach us).
pub fn follows(prev: i64, next: i64) -> bool {
    if epoch(next) == epoch(prev) {
        counter(next) as u64 == counter(prev) as u64 + 1
    } else {
        epoch(next) > epoch(prev)
    }
}

/// `prefix.<zxid as 16 lower-case hex digits>`. Fixed width so that lexical order equals
/// numeric order in `ls`.
pub fn file_name(prefix: &str, zxid: i64) -> String {
    format!("{prefix}.{:016x}", zxid as u64)
}

/// Parses `prefix.<16 hex digits>` exactly; anything else (including `.tmp` suffixes) is
/// not one of ours and yields `None`.
pub fn parse_file_name(prefix: &str, name: &str) -> Option<i64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    if rest.len() != 16 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(rest, 16).ok().map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_trip() {
        let z = make(7, 42);
        assert_eq!(epoch(z), 7);
        assert_eq!(counter(z), 42);
    }

    #[test]
    fn follows_rules() {
        assert!(follows(make(1, 5), make(1, 6)));
        assert!(!follows(make(1, 5), make(1, 7)));
        assert!(!follows(make(1, 5), make(1, 5)));
        assert!(follows(make(1, 5), make(2, 1)));
        assert!(follows(make(1, 5), make(3, 0)));
        assert!(!follows(make(2, 5), make(1, 6)));
        assert!(follows(0, make(0, 1)));
    }

    #[test]
    fn names() {
        let n = file_name("log", make(1, 1));
        assert_eq!(n, "log.0000000100000001");
        assert_eq!(parse_file_name("log", &n), Some(make(1, 1)));
        assert_eq!(parse_file_name("log", "log.0000000100000001.tmp"), None);
        assert_eq!(parse_file_name("log", "snapshot.0000000100000001"), None);
        assert_eq!(parse_file_name("log", "log.00000001"), None);
    }
}
