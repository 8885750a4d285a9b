//! The RFC 8461 policy model: modes, `mx` patterns, the rendered policy file and its id.
//!
//! Rendering happens once per tenant when it is loaded; the request path only clones
//! the resulting `Bytes`. The id is a digest of exactly those bytes, so every edge that
//! renders the same policy publishes the same id, and any change gives a new one.

use bytes::Bytes;
use std::fmt;

use crate::domain::{DomainError, DomainName};

/// The host a policy is fetched from is `mta-sts.<domain>` (RFC 8461 §3.3).
pub const POLICY_HOST_PREFIX: &str = "mta-sts.";
/// The TXT record announcing a policy is at `_mta-sts.<domain>` (RFC 8461 §3.1).
pub const POLICY_TXT_PREFIX: &str = "_mta-sts.";

/// Longest `max_age` RFC 8461 §3.2 allows (about one year).
pub const MAX_AGE_LIMIT: u32 = 31_557_600;
/// `max_age` served while a tenant is being decommissioned (RFC 8461 §8.3): short, so
/// senders drop the old policy quickly once the `none` policy has been fetched.
pub const DECOMMISSION_MAX_AGE: u32 = 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Testing,
    Enforce,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Testing => "testing",
            Mode::Enforce => "enforce",
            Mode::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "testing" => Some(Mode::Testing),
            "enforce" => Some(Mode::Enforce),
            "none" => Some(Mode::None),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `mx` line: a host name, or `*.` followed by a domain, which matches exactly one
/// more leftmost label (RFC 8461 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxPattern {
    wildcard: bool,
    base: DomainName,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MxPatternError {
    #[error("`*` may only stand as the whole leftmost label, as in `*.mx.example.net`")]
    MisplacedWildcard,
    #[error("{0}")]
    Name(#[from] DomainError),
}

impl MxPattern {
    pub fn parse(input: &str) -> Result<Self, MxPatternError> {
        let (wildcard, rest) = match input.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        if rest.contains('*') {
            return Err(MxPatternError::MisplacedWildcard);
        }
        Ok(MxPattern {
            wildcard,
            base: DomainName::parse(rest)?,
        })
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether an MX host name is covered, as a sending MTA would decide it.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if !self.wildcard {
            return self.base.matches(host);
        }
        match host.split_once('.') {
            Some((label, parent)) => !label.is_empty() && self.base.matches(parent),
            None => false,
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(self.base.as_str())
    }
}

impl serde::Serialize for MxPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a tenant publishes. Invariants (checked where it is built from a file): `mx`
/// is non-empty unless `mode` is `none`, `max_age` is in `1..=MAX_AGE_LIMIT`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    pub mode: Mode,
    pub max_age: u32,
    pub mx: Vec<MxPattern>,
}

impl Policy {
    /// The policy file, byte for byte: `version` first, CRLF line endings, `mx` lines in
    /// the order the operator wrote them.
    pub fn render(&self) -> RenderedPolicy {
        let mut text = String::with_capacity(64 + 32 * self.mx.len());
        text.push_str("version: STSv1\r\nmode: ");
        text.push_str(self.mode.as_str());
        text.push_str("\r\n");
        for mx in &self.mx {
            use fmt::Write;
            let _ = write!(text, "mx: {mx}\r\n");
        }
        text.push_str("max_age: ");
        text.push_str(itoa::Buffer::new().format(self.max_age));
        text.push_str("\r\n");
        let id = PolicyId::of(text.as_bytes());
        RenderedPolicy {
            body: Bytes::from(text),
            id,
        }
    }

    /// The policy served while a tenant is decommissioned (RFC 8461 §8.3): `mode: none`
    /// keeps the `mx` lines so the text stays informative, with a short `max_age`.
    pub fn decommissioned(&self) -> Policy {
        Policy {
            mode: Mode::None,
            max_age: DECOMMISSION_MAX_AGE.min(self.max_age),
            mx: self.mx.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedPolicy {
    pub body: Bytes,
    pub id: PolicyId,
}

/// The `id=` of the `_mta-sts` TXT record: 32 hex characters of the SHA-256 of the
/// rendered policy, which satisfies RFC 8461's `1*32(ALPHA / DIGIT)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyId([u8; 32]);

impl PolicyId {
    pub fn of(rendered: &[u8]) -> PolicyId {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, rendered);
        let mut id = [0u8; 32];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in id.chunks_exact_mut(2).zip(digest.as_ref()) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        PolicyId(id)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex is ASCII")
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyId({})", self.as_str())
    }
}

impl serde::Serialize for PolicyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode, mx: &[&str]) -> Policy {
        Policy {
            mode,
            max_age: 604800,
            mx: mx.iter().map(|m| MxPattern::parse(m).unwrap()).collect(),
        }
    }

    #[test]
    fn renders_rfc8461_text_with_crlf() {
        let r = policy(Mode::Enforce, &["mail.example.com", "*.mx.example.net"]).render();
        assert_eq!(
            &r.body[..],
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.mx.example.net\r\nmax_age: 604800\r\n"
        );
    }

    #[test]
    fn id_is_stable_short_alphanumeric_and_changes_with_the_policy() {
        let a = policy(Mode::Testing, &["mail.example.com"]).render();
        let b = policy(Mode::Testing, &["mail.example.com"]).render();
        let c = policy(Mode::Enforce, &["mail.example.com"]).render();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        let id = a.id.as_str();
        assert!((1..=32).contains(&id.len()));
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn mx_patterns_follow_rfc8461() {
        assert!(MxPattern::parse("*.mx.example.net").unwrap().is_wildcard());
        assert_eq!(
            MxPattern::parse("mx*.example.net"),
            Err(MxPatternError::MisplacedWildcard)
        );
        assert_eq!(
            MxPattern::parse("*.*.example.net"),
            Err(MxPatternError::MisplacedWildcard)
        );
        assert!(MxPattern::parse("*").is_err());
        let wild = MxPattern::parse("*.Example.net").unwrap();
        assert_eq!(wild.to_string(), "*.example.net");
        assert!(wild.matches("mx1.example.net."));
        assert!(!wild.matches("a.b.example.net"));
        assert!(!wild.matches("example.net"));
        assert!(
            MxPattern::parse("mail.example.com")
                .unwrap()
                .matches("MAIL.example.com")
        );
    }
}
