//! Domain names as stsedge uses them everywhere: validated, IDNA A-labels, lowercase,
//! no trailing dot.
//!
//! This module owns name syntax and nothing else. It never resolves names and never
//! allocates on the lookup side: comparing or hashing a name that came off the wire
//! (SNI, a DNS question with randomised case) works on borrowed bytes.

use std::fmt;
use std::sync::Arc;

/// Longest name in presentation form without the trailing dot (RFC 1035 §2.3.4: 255
/// octets on the wire, which is 253 characters of text).
pub const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A validated domain name: A-labels only, lowercase ASCII, no trailing dot, at least
/// two labels. Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(Arc<str>);

/// Why a string is not a usable domain name. The message completes the sentence
/// "`x` is not a valid domain name: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("it has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("the label `{0}` is longer than 63 characters")]
    LabelTooLong(String),
    #[error("the label `{0}` may only contain letters, digits and inner hyphens")]
    BadLabel(String),
    #[error("it needs at least two labels (like example.com)")]
    SingleLabel,
    #[error("its last label is numeric, so it looks like an IP address")]
    NumericTld,
    #[error("it is not valid IDNA ({0})")]
    Idna(String),
}

impl DomainName {
    /// Validates and normalises `input`: one trailing dot is dropped, U-labels become
    /// A-labels (`bücher.de` → `xn--bcher-kva.de`), ASCII is lowercased.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(DomainError::Empty);
        }
        let ascii = if trimmed.is_ascii() && !has_punycode_label(trimmed) {
            trimmed.to_ascii_lowercase()
        } else {
            // UTS 46 with STD3 rules and DNS length checks: also validates `xn--` labels.
            idna::domain_to_ascii_strict(trimmed).map_err(|e| DomainError::Idna(e.to_string()))?
        };
        check_ldh(&ascii)?;
        Ok(DomainName(ascii.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` names this domain, ignoring ASCII case and one trailing dot.
    pub fn matches(&self, other: &str) -> bool {
        let other = other.strip_suffix('.').unwrap_or(other);
        self.0.eq_ignore_ascii_case(other)
    }
}

fn has_punycode_label(name: &str) -> bool {
    name.split('.')
        .any(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case("xn--"))
}

/// Host-name syntax (RFC 1123 §2.1 letters, digits, hyphens) on an already lowercased
/// ASCII name.
fn check_ldh(name: &str) -> Result<(), DomainError> {
    if name.len() > MAX_NAME_LEN {
        return Err(DomainError::TooLong);
    }
    let mut labels = 0;
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong(label.to_owned()));
        }
        let bytes = label.as_bytes();
        let ldh = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !ldh || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(DomainError::BadLabel(label.to_owned()));
        }
        labels += 1;
        last = label;
    }
    if labels < 2 {
        return Err(DomainError::SingleLabel);
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::NumericTld);
    }
    Ok(())
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({})", &*self.0)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for DomainName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Strips `prefix` (given in lowercase) from `name` ignoring ASCII case, without
/// allocating. Used to go from `mta-sts.example.com` or `_mta-sts.example.com` to the
/// tenant part.
pub fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Strips `.suffix` from `name` ignoring ASCII case, without allocating.
pub fn strip_suffix_ignore_case<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = name.len().checked_sub(suffix.len() + 1)?;
    let (head, tail) = name.split_at(cut);
    (tail.as_bytes()[0] == b'.' && tail[1..].eq_ignore_ascii_case(suffix)).then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_dot_and_idna() {
        assert_eq!(
            DomainName::parse("Example.COM.").unwrap().as_str(),
            "example.com"
        );
        assert_eq!(
            DomainName::parse("Bücher.de").unwrap().as_str(),
            "xn--bcher-kva.de"
        );
        assert_eq!(
            DomainName::parse("XN--BCHER-KVA.de").unwrap().as_str(),
            "xn--bcher-kva.de"
        );
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            ".",
            "com",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "*.example.com",
            "1.2.3.4",
            "xn--zz.com",
            "exa mple.com",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            DomainName::parse(&long_label),
            Err(DomainError::LabelTooLong(_))
        ));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(DomainName::parse(&long_name).is_err());
    }

    #[test]
    fn affix_stripping_ignores_case() {
        assert_eq!(
            strip_prefix_ignore_case("MTA-STS.Example.com", "mta-sts."),
            Some("Example.com")
        );
        assert_eq!(strip_prefix_ignore_case("mta-st", "mta-sts."), None);
        assert_eq!(
            strip_suffix_ignore_case("_mta-sts.a.com.STS.example.NET", "sts.example.net"),
            Some("_mta-sts.a.com")
        );
        assert_eq!(
            strip_suffix_ignore_case("xsts.example.net", "sts.example.net"),
            None
        );
        assert_eq!(
            strip_suffix_ignore_case("sts.example.net", "sts.example.net"),
            None
        );
    }
}
