//! Ids to their rows' positions, built once and then probed by the million
//! (each opportunity's account). Its own module so that
//! `examples/probe_floor.rs` measures this very code beside the host's floor.

/// An open-addressing table of 32-byte slots, two to a cache line, each
/// holding its id inline (up to 23 bytes; a longer one is kept aside), so
/// that a probe reads one line and compares three words.
///
/// A table of 200k accounts is larger than this host's caches, so a probe
/// that waits for its line costs a trip to memory; one after the other, such
/// probes grow 13-35x from 100k to 1M rows (`examples/probe_floor.rs`).
/// [`IdIndex::rows_of`] therefore hashes [`AHEAD`] ids ahead of the one it
/// reads and asks for their lines first: the trips overlap instead of adding
/// up. The build does the same.
pub(crate) struct IdIndex<S = foldhash::fast::RandomState> {
    /// Each slot: the id's 23 bytes and its length (or [`LONG`]) in three
    /// words, then the hash's high half and the row plus one (0: empty).
    slots: Vec<[u64; 4]>,
    mask: usize,
    /// Ids longer than [`INLINE`] bytes; their slot's first word holds the
    /// position here.
    long: Vec<Box<str>>,
    state: S,
}

/// The bytes of an id a slot holds itself.
const INLINE: usize = 23;
/// A slot's length byte when its id is in [`IdIndex`]'s `long`.
const LONG: u8 = u8::MAX;
/// [`IdIndex::rows_of`]'s answer for an id that is not there.
pub(crate) const NO_ROW: u32 = u32::MAX;
/// How many ids the table is asked ahead of the one read.
const AHEAD: usize = 16;

/// An id as a slot holds it: its bytes, then its length in the last byte;
/// `None` for an id too long to hold.
fn packed(id: &str) -> Option<[u64; 3]> {
    let bytes = id.as_bytes();
    if bytes.len() > INLINE {
        return None;
    }
    let mut raw = [0u8; 24];
    raw[..bytes.len()].copy_from_slice(bytes);
    raw[INLINE] = bytes.len() as u8;
    let word = |k: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&raw[k * 8..k * 8 + 8]);
        u64::from_le_bytes(w)
    };
    Some([word(0), word(1), word(2)])
}

/// The key words of a slot for the `at`-th long id.
fn long_key(at: usize) -> [u64; 3] {
    [at as u64, 0, u64::from(LONG) << 56]
}

/// Asks for the cache line holding `slot` without waiting for it.
#[inline(always)]
fn prefetch(slot: &[u64; 4]) {
    // SAFETY: a prefetch is a hint to the cache: it reads nothing into the
    // program, cannot fault, and needs only SSE, which every x86_64 has.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (slot as *const [u64; 4]).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Runs `take` on each item of `items` in order, [`AHEAD`] items after
/// `ask` ran on it: `ask` hashes an item and asks for its slot, `take` then
/// finds it in the cache.
fn pipelined<S, I, H>(
    state: &mut S,
    items: impl Iterator<Item = I>,
    mut ask: impl FnMut(&mut S, &I) -> H,
    mut take: impl FnMut(&mut S, I, H),
) {
    let mut ring: [Option<(I, H)>; AHEAD] = std::array::from_fn(|_| None);
    let mut n = 0;
    for item in items {
        let h = ask(state, &item);
        if let Some((old, oh)) = ring[n % AHEAD].replace((item, h)) {
            take(state, old, oh);
        }
        n += 1;
    }
    // The rest, oldest first: from slot n % AHEAD round the ring.
    for k in 0..AHEAD {
        if let Some((item, h)) = ring[(n + k) % AHEAD].take() {
            take(state, item, h);
        }
    }
}

impl IdIndex {
    /// The index of `ids` in order (a repeated id keeps its first row).
    /// Only the first `u32::MAX - 1` rows are indexed: no table held in
    /// memory comes near it.
    pub(crate) fn build<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Self {
        Self::build_with(ids, Default::default())
    }
}

impl<S: std::hash::BuildHasher + Sync> IdIndex<S> {
    /// [`IdIndex::build`] with the ids hashed by `state` (tests make them
    /// collide).
    fn build_with<'a>(ids: impl ExactSizeIterator<Item = &'a str>, state: S) -> Self {
        let n = ids.len();
        // At most four slots in five full: linear probing stays short.
        let size = (n + n / 4 + 1).next_power_of_two().max(16);
        // All zeros: empty slots. Written in order rather than taken zeroed
        // from the allocator: fresh pages then fault in one sweep, not one by
        // one under the inserts' random writes (a prefetch does not fault a
        // page in), which made the build at 200k ids four times as long
        // (31-37 ms against 8-9).
        let mut slots = Vec::with_capacity(size);
        slots.resize(size, [0u64; 4]);
        let mut index = IdIndex {
            slots,
            mask: size - 1,
            long: Vec::new(),
            state,
        };
        let mut row = 0u32;
        pipelined(
            &mut index,
            ids.take(NO_ROW as usize - 1),
            |index, id| {
                let h = index.hash(id);
                prefetch(&index.slots[h as usize & index.mask]);
                h
            },
            |index, id, h| {
                row += 1;
                index.insert(id, h, row);
            },
        );
        index
    }

    fn hash(&self, id: &str) -> u64 {
        self.state.hash_one(id)
    }

    /// Puts `id` (of hash `h`) in as row `stored - 1`, unless it is there
    /// already.
    fn insert(&mut self, id: &str, h: u64, stored: u32) {
        let key = packed(id);
        let mut i = h as usize & self.mask;
        while self.slots[i][3] != 0 {
            if self.holds(&self.slots[i], key, id, h) {
                return;
            }
            i = (i + 1) & self.mask;
        }
        let key = key.unwrap_or_else(|| {
            self.long.push(id.into());
            long_key(self.long.len() - 1)
        });
        self.slots[i] = [
            key[0],
            key[1],
            key[2],
            (h & !0xFFFF_FFFF) | u64::from(stored),
        ];
    }

    /// Whether `slot` holds `id`, whose packed form is `key` and hash `h`.
    #[inline(always)]
    fn holds(&self, slot: &[u64; 4], key: Option<[u64; 3]>, id: &str, h: u64) -> bool {
        if slot[3] >> 32 != h >> 32 {
            return false;
        }
        match key {
            Some(key) => slot[..3] == key,
            None => {
                slot[2] >> 56 == u64::from(LONG)
                    && self.long.get(slot[0] as usize).is_some_and(|k| **k == *id)
            }
        }
    }

    fn find(&self, id: &str, h: u64) -> u32 {
        let key = packed(id);
        let mut i = h as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            if slot[3] == 0 {
                return NO_ROW;
            }
            if self.holds(slot, key, id, h) {
                return (slot[3] as u32).wrapping_sub(1);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The row of `id`, if indexed.
    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<usize> {
        let row = self.find(id, self.hash(id));
        (row != NO_ROW).then_some(row as usize)
    }

    /// The row of each item's id in turn, given to `put` with the item
    /// ([`NO_ROW`] for an id not indexed).
    pub(crate) fn rows_of<I>(
        &self,
        items: impl Iterator<Item = I>,
        id: impl Fn(&I) -> &str,
        mut put: impl FnMut(I, u32),
    ) {
        pipelined(
            &mut (),
            items,
            |_, item| {
                let h = self.hash(id(item));
                prefetch(&self.slots[h as usize & self.mask]);
                h
            },
            |_, item, h| {
                let row = self.find(id(&item), h);
                put(item, row)
            },
        );
    }

    /// [`Self::rows_of`] for every row of `rows` (its id given by `id`), on
    /// every core, in order.
    pub(crate) fn par_rows_of<T: Sync>(
        &self,
        rows: &[T],
        id: impl Fn(&T) -> &str + Sync,
    ) -> Vec<u32> {
        use rayon::prelude::*;
        const CHUNK: usize = 8192;
        let mut out = vec![NO_ROW; rows.len()];
        out.par_chunks_mut(CHUNK)
            .zip(rows.par_chunks(CHUNK))
            .for_each(|(out, chunk)| {
                self.rows_of(
                    out.iter_mut().zip(chunk),
                    |(_, row)| id(row),
                    |(slot, _), row| *slot = row,
                );
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain answer: each id's first row.
    fn first_rows<'a>(ids: &[&'a str]) -> std::collections::HashMap<&'a str, u32> {
        let mut first = std::collections::HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            first.entry(*id).or_insert(i as u32);
        }
        first
    }

    /// A hash of an id's length only: ids of one length share their slot's
    /// home and tag, so only their keys tell them apart.
    #[derive(Default)]
    struct ByLength(u64);

    impl std::hash::Hasher for ByLength {
        fn write(&mut self, bytes: &[u8]) {
            self.0 = self.0.wrapping_add(bytes.len() as u64).rotate_left(29);
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }

    /// One hash for every id.
    #[derive(Default)]
    struct Constant;

    impl std::hash::Hasher for Constant {
        fn write(&mut self, _: &[u8]) {}
        fn finish(&self) -> u64 {
            0x1234_5678_9abc_def0
        }
    }

    /// Every way of asking, with the real hash and with ones that collide.
    fn check(ids: &[&str], probes: &[&str]) {
        check_with(IdIndex::build(ids.iter().copied()), ids, probes);
        let colliding = std::hash::BuildHasherDefault::<ByLength>::default();
        check_with(
            IdIndex::build_with(ids.iter().copied(), colliding),
            ids,
            probes,
        );
        let constant = std::hash::BuildHasherDefault::<Constant>::default();
        check_with(
            IdIndex::build_with(ids.iter().copied(), constant),
            ids,
            probes,
        );
    }

    /// One at a time, in a pipelined run, on every core.
    fn check_with<S: std::hash::BuildHasher + Sync>(
        index: IdIndex<S>,
        ids: &[&str],
        probes: &[&str],
    ) {
        let first = first_rows(ids);
        let expected: Vec<u32> = probes
            .iter()
            .map(|p| first.get(p).copied().unwrap_or(NO_ROW))
            .collect();
        let one_by_one: Vec<u32> = probes
            .iter()
            .map(|p| index.get(p).map_or(NO_ROW, |r| r as u32))
            .collect();
        assert_eq!(one_by_one, expected);
        let mut run = Vec::new();
        index.rows_of(
            probes.iter().enumerate(),
            |(_, p)| p,
            |(i, _), row| run.push((i, row)),
        );
        assert_eq!(
            run,
            expected.iter().copied().enumerate().collect::<Vec<_>>()
        );
        assert_eq!(index.par_rows_of(probes, |p| p), expected);
    }

    #[test]
    fn ids_at_the_inline_limit_long_ids_and_trailing_nuls_are_told_apart() {
        let a23 = "a".repeat(23);
        let a24 = "a".repeat(24);
        let a25 = "a".repeat(25);
        let b24 = format!("{}b", "a".repeat(23));
        let ids = [
            "",
            "ab",
            "ab\0",
            a23.as_str(),
            a24.as_str(),
            a25.as_str(),
            b24.as_str(),
            "ab",
        ];
        // Of one length, equal but for one byte in each of the key's words.
        let near: Vec<String> = [0, 7, 8, 15, 16, 22]
            .iter()
            .map(|&at| {
                let mut id = a23.clone().into_bytes();
                id[at] = b'c';
                String::from_utf8(id).unwrap_or_default()
            })
            .collect();
        let mut ids = ids.to_vec();
        ids.extend(near[..3].iter().map(String::as_str));
        let probes = [
            near[0].as_str(),
            near[3].as_str(),
            near[4].as_str(),
            near[5].as_str(),
            "",
            "ab",
            "ab\0",
            "ab\0\0",
            "a",
            a23.as_str(),
            a24.as_str(),
            a25.as_str(),
            b24.as_str(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "\0",
        ];
        check(&ids, &probes);
        // "ab" repeats: its first row answers.
        assert_eq!(IdIndex::build(ids.iter().copied()).get("ab"), Some(1));
    }

    #[test]
    fn an_id_is_packed_as_its_bytes_then_its_length_at_every_length() {
        let text = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for n in 0..=INLINE {
            let mut raw = [0u8; 24];
            raw[..n].copy_from_slice(&text.as_bytes()[..n]);
            raw[INLINE] = n as u8;
            let word = |k: usize| u64::from_le_bytes(std::array::from_fn(|i| raw[k * 8 + i]));
            assert_eq!(
                packed(&text[..n]),
                Some([word(0), word(1), word(2)]),
                "{n} bytes"
            );
        }
        assert_eq!(packed(&text[..24]), None);
    }

    #[test]
    fn an_empty_index_holds_nothing() {
        check(&[], &["", "A-1"]);
    }

    #[test]
    fn runs_shorter_and_longer_than_the_pipeline_keep_their_order() {
        let ids: Vec<String> = (0..40).map(|i| format!("A-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        for n in [0, 1, AHEAD - 1, AHEAD, AHEAD + 1, 2 * AHEAD + 3] {
            let probes: Vec<&str> = (0..n).map(|i| ids[(i * 7) % 40]).collect();
            check(&ids[..20], &probes);
        }
    }

    #[test]
    fn many_rows_across_chunks_on_both_cores() {
        let ids: Vec<String> = (0..30_000).map(|i| format!("001{i:015}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let probes: Vec<&str> = (0..50_000).map(|i| ids[(i * 7919) % 30_000]).collect();
        // Half the accounts indexed: half the probes find nothing. (Not with
        // the colliding hash: 15,000 ids of one length in one chain.)
        check_with(
            IdIndex::build(ids[..15_000].iter().copied()),
            &ids[..15_000],
            &probes,
        );
    }

    proptest::proptest! {
        #[test]
        fn the_index_answers_as_a_map_of_first_rows_does(
            ids in proptest::collection::vec("[ab\\x00]{0,3}|[a-c\\x00]{4,27}", 0..200),
            others in proptest::collection::vec("[ab\\x00]{0,4}|[a-c\\x00]{4,27}", 0..50),
        ) {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let probes: Vec<&str> = ids.iter().copied().chain(others.iter().map(String::as_str)).collect();
            check(&ids, &probes);
        }
    }
}
