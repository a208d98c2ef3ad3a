//! Hash maps for the hot paths. std's default SipHash is built to resist
//! hash flooding from untrusted network peers and is slow on the short ids
//! this program hashes millions of times; foldhash (hashbrown's own default)
//! is several times faster and still seeded per process. Also the prefetch
//! hint for passes that read a batch of scattered rows (`src/id_index.rs`
//! keeps its own copy, so that `examples/probe_floor.rs` compiles that file
//! alone).

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// An empty map with room for `n` entries.
pub(crate) fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    FastMap::with_capacity_and_hasher(n, Default::default())
}

/// Ids to their rows' positions (a repeated id maps to its last row).
///
/// The key type is the caller's: `&str` borrows the rows' ids, while
/// `compact_str::CompactString` copies each id into the map itself. Ids of up
/// to 24 bytes then need no allocation, and a lookup compares keys inside
/// the map's own slot instead of reading the row's id wherever it lies: one
/// cache miss fewer for each of a million lookups (accounts by id).
pub(crate) fn index_by_id<'a, T, K>(
    items: &'a [T],
    id: impl Fn(&'a T) -> &'a str,
) -> FastMap<K, usize>
where
    K: From<&'a str> + std::hash::Hash + Eq,
{
    let mut map = map_with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        map.insert(K::from(id(item)), i);
    }
    map
}

/// Asks for the cache line holding `at` without waiting for it: a hint, for
/// passes that know a batch of scattered rows they are about to read.
#[inline(always)]
pub(crate) fn prefetch(at: *const u8) {
    // SAFETY: a prefetch is a hint to the cache: it reads nothing into the
    // program, cannot fault (on any address), and needs only SSE, which every
    // x86_64 has.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// 64 random bits for jitter and correlation ids (not for secrets: those
/// use `ring`). A fresh std hasher's keys are random per process and stepped
/// per hasher, so this needs no generator crate in the daemon.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::hash::RandomState::new().build_hasher().finish()
}

/// A random number in [0, 1).
pub(crate) fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_units_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..1000).map(|_| super::random_unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let low = draws.iter().filter(|x| **x < 0.5).count();
        assert!((350..=650).contains(&low), "{low} of 1000 below 0.5");
    }
}
