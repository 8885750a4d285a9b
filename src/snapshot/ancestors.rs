//! `Ancestors`: the names that exist only because tenant names lie below them (`com`
//! for `example.com`, `example.com` for `shop.example.com`), kept so the DNS answers can
//! tell an empty non-terminal (NODATA, RFC 8020) from a name that does not exist
//! (NXDOMAIN) with one hash lookup.
//!
//! This module owns that index and nothing else: it never sees tenants, only their
//! names, and it is updated by the snapshot builder on every tenant added or removed.
//! A lookup takes a lowercase name and never allocates. Cloning is a reference-count
//! increment; the first change after a clone copies the table (one entry per distinct
//! parent name, which is far fewer than tenants: most share `com`, `net`, …).

use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::DomainName;

#[derive(Clone, Default)]
pub struct Ancestors {
    /// Lowercase proper suffix → how many tenant names lie below it.
    counts: Arc<HashMap<Arc<str>, u32, RandomState>>,
}

impl Ancestors {
    /// Records the parents of a newly added tenant name.
    pub fn add(&mut self, domain: &DomainName) {
        let counts = Arc::make_mut(&mut self.counts);
        for parent in parents(domain.as_str()) {
            match counts.get_mut(parent) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(Arc::from(parent), 1);
                }
            }
        }
    }

    /// Forgets the parents of a removed tenant name.
    pub fn remove(&mut self, domain: &DomainName) {
        let counts = Arc::make_mut(&mut self.counts);
        for parent in parents(domain.as_str()) {
            if let Some(n) = counts.get_mut(parent) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(parent);
                }
            }
        }
    }

    /// Whether some tenant name lies strictly below `lower` (a lowercase name without
    /// the trailing dot). Never allocates.
    #[inline]
    pub fn contains(&self, lower: &str) -> bool {
        debug_assert!(!lower.bytes().any(|b| b.is_ascii_uppercase()));
        self.counts.contains_key(lower)
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// The proper suffixes of `name`: `a.b.c` → `b.c`, `c`.
fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    #[test]
    fn parents_are_counted_and_forgotten() {
        let mut a = Ancestors::default();
        a.add(&name("shop.example.com"));
        a.add(&name("example.org"));
        for n in ["example.com", "com", "org"] {
            assert!(a.contains(n), "{n}");
        }
        assert!(
            !a.contains("shop.example.com"),
            "a tenant is not its own ancestor"
        );
        assert!(!a.contains("example.org"));
        let before = a.clone();
        a.add(&name("other.com"));
        a.remove(&name("shop.example.com"));
        assert!(a.contains("com"), "other.com still lies below com");
        assert!(!a.contains("example.com"));
        assert!(before.contains("example.com"), "a clone is unaffected");
        a.remove(&name("other.com"));
        a.remove(&name("example.org"));
        assert!(a.is_empty());
    }
}
