//! `NameMap`: the case-insensitive, allocation-free name index shared by the TLS
//! resolver (SNI) and the DNS answers (questions arrive with randomised case).
//!
//! Keys are stored lowercase; a lookup lowercases the borrowed name into a stack
//! buffer to hash it and compares ignoring ASCII case, so a lookup never touches the
//! heap. Cloning the map is one table copy plus a reference-count increment per entry,
//! which is what the snapshot builder pays to derive the next generation.

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

use crate::domain::{DomainName, MAX_NAME_LEN};

/// Something indexed by a domain name.
pub trait Named {
    fn name(&self) -> &DomainName;
}

impl<T: Named> Named for std::sync::Arc<T> {
    fn name(&self) -> &DomainName {
        (**self).name()
    }
}

#[derive(Clone)]
pub struct NameMap<V> {
    table: HashTable<V>,
    hasher: RandomState,
}

impl<V: Named> Default for NameMap<V> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<V: Named> NameMap<V> {
    pub fn with_capacity(capacity: usize) -> Self {
        NameMap {
            table: HashTable::with_capacity(capacity),
            hasher: RandomState::default(),
        }
    }

    /// Looks `name` up ignoring ASCII case and one trailing dot. Never allocates.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&V> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let hash = self.hash(name)?;
        self.table
            .find(hash, |v| v.name().as_str().eq_ignore_ascii_case(name))
    }

    /// Inserts `value` under its own name, returning the entry it replaced.
    pub fn insert(&mut self, value: V) -> Option<V> {
        let hash = self
            .hash(value.name().as_str())
            .expect("DomainName is length-checked");
        let key = value.name().clone();
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |v| v.name() == &key,
            |v| hash_lowercase(hasher, v.name().as_str()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut slot) => {
                Some(std::mem::replace(slot.get_mut(), value))
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(value);
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        let hash = self.hash(name)?;
        self.table
            .find_entry(hash, |v| v.name().as_str().eq_ignore_ascii_case(name))
            .ok()
            .map(|slot| slot.remove().0)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &V> {
        self.table.iter()
    }

    fn hash(&self, name: &str) -> Option<u64> {
        (name.len() <= MAX_NAME_LEN).then(|| hash_lowercase(&self.hasher, name))
    }
}

/// Hashes the lowercase form of `name` (at most `MAX_NAME_LEN` bytes) without
/// allocating.
#[inline]
fn hash_lowercase(hasher: &RandomState, name: &str) -> u64 {
    let mut buf = [0u8; MAX_NAME_LEN];
    let lower = &mut buf[..name.len()];
    for (dst, src) in lower.iter_mut().zip(name.bytes()) {
        *dst = src.to_ascii_lowercase();
    }
    hasher.hash_one(&*lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Entry(DomainName, u32);
    impl Named for Entry {
        fn name(&self) -> &DomainName {
            &self.0
        }
    }

    fn entry(name: &str, v: u32) -> Entry {
        Entry(DomainName::parse(name).unwrap(), v)
    }

    #[test]
    fn lookups_ignore_case_and_trailing_dot() {
        let mut map = NameMap::default();
        assert!(map.insert(entry("example.com", 1)).is_none());
        assert!(map.insert(entry("example.org", 2)).is_none());
        assert_eq!(map.get("EXAMPLE.com").map(|e| e.1), Some(1));
        assert_eq!(map.get("example.org.").map(|e| e.1), Some(2));
        assert!(map.get("example.net").is_none());
        assert!(map.get(&"a".repeat(400)).is_none());
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut map = NameMap::default();
        map.insert(entry("example.com", 1));
        assert_eq!(map.insert(entry("example.com", 3)).map(|e| e.1), Some(1));
        assert_eq!(map.len(), 1);
        let clone = map.clone();
        assert_eq!(map.remove("Example.Com").map(|e| e.1), Some(3));
        assert!(map.get("example.com").is_none());
        assert_eq!(clone.get("example.com").map(|e| e.1), Some(3));
    }
}
