//! The benchmark's tenant naming scheme and the single policy renderer.
//!
//! Both the fixture writer (which bakes the body into nginx.conf) and the loader's
//! response verifier call [`bench_policy_body`], so the two can never disagree about
//! what "the right bytes" are. The format follows SPEC.md §3 / RFC 8461 §3.2: one
//! `key: value` per line, CRLF line endings, `mx` lines in file order.

/// The only path a tenant serves a policy on.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// Every fixture tenant uses the same mode and max_age; only the names differ.
pub const BENCH_MODE: &str = "testing";
pub const BENCH_MAX_AGE: u32 = 604_800;

/// `t000001.bench.example`: zero-padded so file names sort in tenant order.
pub fn tenant_domain(index: u32) -> String {
    format!("t{index:06}.bench.example")
}

/// The HTTPS host name (SNI and Host header) that serves `domain`'s policy.
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{domain}")
}

/// The mx patterns of a fixture tenant, in the order they appear in its file.
pub fn bench_mx(domain: &str) -> [String; 2] {
    [format!("mail.{domain}"), format!("*.mx.{domain}")]
}

/// Renders an RFC 8461 policy exactly as SPEC.md says the server must serve it.
pub fn render_policy<S: AsRef<str>>(mode: &str, mx: &[S], max_age: u32) -> String {
    let mut body =
        String::with_capacity(64 + mx.iter().map(|m| m.as_ref().len() + 6).sum::<usize>());
    body.push_str("version: STSv1\r\n");
    body.push_str("mode: ");
    body.push_str(mode);
    body.push_str("\r\n");
    for pattern in mx {
        body.push_str("mx: ");
        body.push_str(pattern.as_ref());
        body.push_str("\r\n");
    }
    body.push_str("max_age: ");
    body.push_str(&max_age.to_string());
    body.push_str("\r\n");
    body
}

/// The exact body a fixture tenant's policy URL must return.
pub fn bench_policy_body(domain: &str) -> String {
    render_policy(BENCH_MODE, &bench_mx(domain), BENCH_MAX_AGE)
}

/// Lower-case hex, used for the manifest's certificate hashes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Inverse of [`hex`] for a 32-byte SHA-256 digest.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_byte_exact() {
        assert_eq!(
            bench_policy_body("t000001.bench.example"),
            "version: STSv1\r\nmode: testing\r\nmx: mail.t000001.bench.example\r\n\
             mx: *.mx.t000001.bench.example\r\nmax_age: 604800\r\n"
        );
    }

    #[test]
    fn names_are_zero_padded() {
        assert_eq!(tenant_domain(1), "t000001.bench.example");
        assert_eq!(
            policy_host(&tenant_domain(42)),
            "mta-sts.t000042.bench.example"
        );
    }

    #[test]
    fn hex_round_trips() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(parse_sha256_hex(&hex(&d)), Some(d));
        assert_eq!(parse_sha256_hex("zz"), None);
    }
}
