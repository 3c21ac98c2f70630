//! CNI spec versions and the reference's (exact-string) acceptance rules.

use std::cmp::Ordering;

/// Every spec version nuage speaks, oldest first (libcni's `version.All`).
pub const ALL: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest version; results are built in it, then converted down.
pub const CURRENT: &str = "1.1.0";

/// The version a config without `cniVersion` means.
pub const IMPLICIT: &str = "0.1.0";

/// Parses "major.minor.patch" (as Go's semver, a leading "v" is not allowed).
pub fn parse(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.');
    let mut num = || -> Option<u64> {
        let s = it.next()?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let r = (num()?, num()?, num()?);
    it.next().is_none().then_some(r)
}

/// Parses as libcni's `ParseVersion`, which the reference's verb gates
/// use: one to three numeric parts, the missing ones 0 ("1.0" is 1.0.0).
pub fn parse_loose(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = [0u64; 3];
    for (n, s) in v.split('.').enumerate() {
        if n == 3 || s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[n] = s.parse().ok()?;
    }
    Some((parts[0], parts[1], parts[2]))
}

/// Compares two versions; `None` when either is not a valid version.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse(a)?.cmp(&parse(b)?))
}

/// `v >= min`, false when `v` is not a valid version.
pub fn at_least(v: &str, min: &str) -> bool {
    matches!(compare(v, min), Some(Ordering::Greater | Ordering::Equal))
}

/// The highest valid version of `versions` not newer than [`CURRENT`]
/// (libcni's selection among `cniVersion` and `cniVersions`).
pub fn highest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions
        .into_iter()
        .filter(|v| parse(v).is_some() && !at_least(v, "1.1.1"))
        .max_by(|a, b| compare(a, b).unwrap_or(Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        assert_eq!(parse("0.3.1"), Some((0, 3, 1)));
        assert_eq!(parse("1.0"), None);
        assert_eq!(parse_loose("1.0"), Some((1, 0, 0)));
        assert_eq!(parse_loose("1"), Some((1, 0, 0)));
        assert_eq!(parse_loose("0.4.0"), Some((0, 4, 0)));
        for bad in ["", "v1", "1..0", "1.0.0.0", "1.x"] {
            assert_eq!(parse_loose(bad), None, "{bad}");
        }
        assert_eq!(parse("v1.0.0"), None);
        assert_eq!(parse("1.0.0.0"), None);
        assert!(at_least("1.1.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("junk", "0.1.0"));
        assert_eq!(highest(["0.4.0", "1.0.0", "2.0.0", "x"]), Some("1.0.0"));
    }
}
