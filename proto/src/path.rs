//! Znode path rules (ZooKeeper's PathUtils.validatePath), applied to the path as Java sees
//! it: a sequence of UTF-16 code units. Any character outside the BMP is therefore a
//! surrogate pair, which ZooKeeper rejects; so do we.

/// Why a path is invalid, in ZooKeeper's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPath(pub String);

impl std::fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidPath {}

/// Validates a sequential create's path as if the counter were already appended.
pub fn validate_path_sequential(path: &str, sequential: bool) -> Result<(), InvalidPath> {
    if sequential {
        validate_path(&format!("{path}1"))
    } else {
        validate_path(path)
    }
}

pub fn validate_path(path: &str) -> Result<(), InvalidPath> {
    if path.is_empty() {
        return Err(InvalidPath("Path length must be > 0".into()));
    }
    if !path.starts_with('/') {
        return Err(InvalidPath("Path must start with / character".into()));
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(InvalidPath("Path must not end with / character".into()));
    }
    // Nearly every path is printable ASCII without dots or empty names, and such a path
    // passes every check below: settle it in one pass over the bytes. Anything else (a
    // control character, a dot, "//", non-ASCII) takes the full check, which also words
    // the error.
    let mut last = b'/';
    if path.as_bytes()[1..].iter().all(|&c| {
        let plain = (0x20..0x7f).contains(&c) && c != b'.' && !(c == b'/' && last == b'/');
        last = c;
        plain
    }) {
        return Ok(());
    }
    // ASCII paths (nearly all) are their own UTF-16: check the bytes without converting.
    if path.is_ascii() {
        check_units(path, path.as_bytes())
    } else {
        let units: Vec<u16> = path.encode_utf16().collect();
        check_units(path, &units)
    }
}

fn check_units<T: Copy + Into<u16>>(path: &str, units: &[T]) -> Result<(), InvalidPath> {
    let unit = |i: usize| -> u16 { units[i].into() };
    let mut reason = None;
    let mut last = b'/' as u16;
    for i in 1..units.len() {
        let c = unit(i);
        let next_is_end_or_slash = i + 1 == units.len() || unit(i + 1) == b'/' as u16;
        if c == 0 {
            reason = Some(format!("null character not allowed @{i}"));
        } else if c == b'/' as u16 && last == b'/' as u16 {
            reason = Some(format!("empty node name specified @{i}"));
        } else if c == b'.' as u16 && last == b'.' as u16 {
            if unit(i - 2) == b'/' as u16 && next_is_end_or_slash {
                reason = Some(format!("relative paths not allowed @{i}"));
            }
        } else if c == b'.' as u16 {
            if unit(i - 1) == b'/' as u16 && next_is_end_or_slash {
                reason = Some(format!("relative paths not allowed @{i}"));
            }
        } else if (c > 0 && c <= 0x1f)
            || (0x7f..=0x9f).contains(&c)
            || (0xd800..=0xf8ff).contains(&c)
            || c >= 0xfff0
        {
            reason = Some(format!("invalid character @{i}"));
        }
        if let Some(r) = reason {
            return Err(InvalidPath(format!(
                "Invalid path string \"{path}\" caused by {r}"
            )));
        }
        last = c;
    }
    Ok(())
}

/// The parent of a valid, non-root path ("/a/b" -> "/a", "/a" -> "/").
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of a valid path ("/a/b" -> "b", "/" -> "").
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_zookeeper_accepts() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/..a",
            "/a..",
            "/.a/b.",
            "/zookeeper",
            "/é",
            "/a b",
        ] {
            assert!(validate_path(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn the_printable_ascii_shortcut_agrees_with_the_full_check() {
        // Every path of up to 5 characters after the leading slash, over characters that
        // exercise each rule, against the per-unit check alone.
        let alphabet = ['a', '/', '.', ' ', '~', '\0', '\u{1f}', '\u{7f}', 'é'];
        let full = |path: &str| {
            path.len() == 1
                || (!path.ends_with('/')
                    && check_units(path, &path.encode_utf16().collect::<Vec<u16>>()).is_ok())
        };
        let mut paths = vec![String::from("/")];
        for _ in 0..5 {
            let longer: Vec<String> = paths
                .iter()
                .filter(|p| p.chars().count() == paths.last().unwrap().chars().count())
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(longer);
        }
        assert!(paths.len() > 60_000);
        for p in &paths {
            assert_eq!(validate_path(p).is_ok(), full(p), "{p:?}");
        }
    }

    #[test]
    fn rejects_what_zookeeper_rejects() {
        for p in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/a\0b",
            "/a\u{1}",
            "/a\u{7f}",
            "/a\u{9f}",
            "/a\u{e000}",
            "/a\u{fff0}",
            "/a\u{1F600}",
            "/a\u{fffd}",
        ] {
            assert!(validate_path(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn sequential_paths_are_checked_with_a_suffix() {
        assert!(validate_path("/a/").is_err());
        assert!(validate_path_sequential("/a/", true).is_ok());
        assert!(validate_path_sequential("/a/", false).is_err());
    }

    #[test]
    fn parent_and_basename() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(basename("/a/b"), "b");
    }
}
