//! Hash maps for the hot paths. std's default SipHash is built to resist
//! hash flooding from untrusted network peers and is slow on the short ids
//! this program hashes millions of times; foldhash (hashbrown's own default)
//! is several times faster and still seeded per process.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// An empty map with room for `n` entries.
pub fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    FastMap::with_capacity_and_hasher(n, Default::default())
}
