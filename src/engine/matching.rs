//! Matching a registration to a CRM account (SPEC §3.1).
//!
//! The index is built once per run. Exact steps are hash lookups. The fuzzy
//! step works on the vocabulary of distinct words: per position of the name,
//! the vocabulary words at that position (for the first word: starting with
//! the same letter, the SPEC's blocking) similar enough to the query's word,
//! each pair compared once; then the accounts holding one of them at the
//! most selective position, checked word by word. The words of a position
//! are split by length and sorted by their first chars, so that for each
//! length and common prefix the fewest letters a similar word must share is
//! known: the candidates come from postings of letters and letter pairs, and
//! most are dropped on an upper bound of their similarity before it is
//! computed. It never compares all pairs, and its cost does not grow with
//! how many accounts share a word. A large first-word set is also split by
//! the names' other words: once another position's similar words are known
//! (`Systems`, `Insurance`, a branch number), the first word is searched
//! only among the names holding one of them there.

use crate::fast::FastMap;
use crate::id_index::IdIndex;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::names::{name_key, normalize_name, registrable_domain};
use crate::model::{Account, Registration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    AccountId,
    Domain,
    Name,
    Fuzzy,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::AccountId => "account_id",
            Method::Domain => "domain",
            Method::Name => "name",
            Method::Fuzzy => "fuzzy",
        }
    }
}

/// How a registration was matched, and how sure the match is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub method: Method,
    pub score: f64,
}

/// A registration's match: the account (by index into the accounts) and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AccountMatch {
    pub account: usize,
    pub how: Match,
}

/// A distinct word of the accounts' normalised names.
struct Word {
    text: Box<str>,
    sig: Signature,
    /// Its first four chars ([`head`]), kept so that sorting words by them
    /// does not chase each word's text.
    head: [char; 4],
    /// Holds a digit, or is too long to compare by similarity
    /// ([`compared_exactly`]): compared exactly, never searched.
    exact: bool,
}

impl Word {
    fn new(text: &str) -> Self {
        Word {
            text: text.into(),
            sig: Signature::of(text),
            head: head(text),
            exact: compared_exactly(text),
        }
    }
}

/// A head's four chars packed in order, 21 bits each (every char fits): the
/// packed keys sort as the heads do.
fn head_bits(head: &[char; 4]) -> u128 {
    head.iter()
        .fold(0, |bits, &c| (bits << 21) | u128::from(u32::from(c)))
}

/// The words compared by similarity found at one place (word count, position and,
/// for the first word, its first character), searched by similarity, split
/// by length: the letters a candidate must share depend on its length.
#[derive(Default)]
struct WordSet {
    /// `lengths[l]`: the words of `l` chars.
    lengths: Vec<LengthSet>,
    /// How many words in all.
    size: usize,
}

/// The words of one length of a [`WordSet`], sorted by their first chars.
#[derive(Default)]
struct LengthSet {
    words: Vec<u32>,
    /// `sigs[i]` is the signature of `words[i]`, kept beside it for the scan.
    sigs: Vec<Signature>,
    /// `heads[i]`: the first four chars of `words[i]`.
    heads: Vec<[char; 4]>,
    /// For each letter bucket of [`Signature`], the indices into `words` of
    /// the words that contain it, ascending (none for a length scanned
    /// whole: see [`Tuning::scan_below`]).
    postings: Postings,
    /// For lengths of at least [`Tuning::pairs_from`] words: for each pair of letter
    /// buckets, the indices into `words` of the words holding both.
    pairs: Option<Pairs>,
}

/// A first word of one of [`AccountIndex`]'s split sets (`by_other`), with
/// everything its scan reads, in one cache line: a split set is small, and
/// one of thousands, so it is read as one contiguous run rather than through
/// a [`WordSet`]'s separate arrays.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Entry {
    sig: Signature,
    head: [char; 4],
    id: u32,
}

impl WordSet {
    /// The set of `ids` (distinct words compared by similarity), indexed.
    fn build(ids: Vec<u32>, words: &[Word], tuning: Tuning) -> Self {
        let size = ids.len();
        let longest = ids
            .iter()
            .map(|&id| words[id as usize].sig.chars)
            .max()
            .unwrap_or(0);
        // Each length's words by their first chars, then id: one u128 key a
        // word (head, then id in the low 32 bits), sorted as integers.
        let mut keys: Vec<Vec<u128>> = vec![Vec::new(); longest + 1];
        for id in ids {
            let word = &words[id as usize];
            keys[word.sig.chars].push((head_bits(&word.head) << 32) | u128::from(id));
        }
        let mut lengths: Vec<LengthSet> = keys
            .into_iter()
            .map(|mut keys| {
                keys.sort_unstable();
                let mut set = LengthSet {
                    words: Vec::with_capacity(keys.len()),
                    sigs: Vec::with_capacity(keys.len()),
                    heads: Vec::with_capacity(keys.len()),
                    ..LengthSet::default()
                };
                for key in keys {
                    let id = key as u32;
                    let word = &words[id as usize];
                    set.words.push(id);
                    set.sigs.push(word.sig);
                    set.heads.push(word.head);
                }
                set
            })
            .collect();
        for set in &mut lengths {
            // A length of fewer words is scanned whole: no postings needed.
            if set.words.len() < tuning.scan_below {
                continue;
            }
            let masks: Vec<u32> = set.sigs.iter().map(bucket_mask).collect();
            set.postings = Postings::build(&masks);
            if set.words.len() >= tuning.pairs_from {
                set.pairs = Some(Pairs::build(&masks));
            }
        }
        WordSet { lengths, size }
    }
}

/// Where the fuzzy search changes method. Neither changes a result (the
/// tests run with both at zero, every path taken); they only move cost.
#[derive(Clone, Copy)]
struct Tuning {
    /// A length's words are scanned whole below this many: sorting out
    /// candidates would cost more than it saves.
    scan_below: usize,
    /// Pairs of letters are indexed for lengths of at least this many words:
    /// smaller ones cost more to index than they save.
    pairs_from: usize,
    /// A first-word set of at least this many words is also split by each
    /// of the name's other words ([`AccountIndex`]'s `by_other`).
    split_from: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            scan_below: 32,
            pairs_from: 256,
            split_from: 512,
        }
    }
}

impl Tuning {
    /// Whether the first-word set of names of `count` words, holding `size`
    /// distinct words, is split by the names' other words. Names of
    /// [`OTHER_COUNT_LIMIT`] words or more never are: their count would not
    /// fit [`other_key`].
    fn splits(&self, count: u32, size: usize) -> bool {
        count > 1 && count < OTHER_COUNT_LIMIT && size >= self.split_from
    }
}

/// The letter buckets of [`Signature`] a word holds, one bit each.
fn bucket_mask(sig: &Signature) -> u32 {
    sig.counts
        .iter()
        .enumerate()
        .fold(0, |mask, (b, &n)| mask | (u32::from(n > 0) << b))
}

/// The buckets set in `mask`, ascending.
fn buckets_of(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let b = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            b
        })
    })
}

/// Every pair `(a, b)` of `letters`, `a` before `b`.
fn pairs_among(letters: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    letters
        .iter()
        .enumerate()
        .flat_map(move |(i, &a)| letters[i + 1..].iter().map(move |&b| (a, b)))
}

/// Postings by letter bucket, stored flat: bucket `b`'s words are
/// `at[start[b]..start[b + 1]]`.
#[derive(Default)]
struct Postings {
    start: Vec<u32>,
    at: Vec<u32>,
}

impl Postings {
    /// `masks[w]`: word `w`'s [`bucket_mask`].
    fn build(masks: &[u32]) -> Self {
        let mut start = vec![0u32; 33];
        for &mask in masks {
            for b in buckets_of(mask) {
                start[b + 1] += 1;
            }
        }
        for b in 1..start.len() {
            start[b] += start[b - 1];
        }
        let mut next = start.clone();
        let mut at = vec![0u32; start[32] as usize];
        for (w, &mask) in masks.iter().enumerate() {
            for b in buckets_of(mask) {
                at[next[b] as usize] = to_u32(w);
                next[b] += 1;
            }
        }
        Postings { start, at }
    }

    /// The words holding bucket `b` (none when not built).
    fn of(&self, b: usize) -> &[u32] {
        match (self.start.get(b), self.start.get(b + 1)) {
            (Some(&from), Some(&to)) => &self.at[from as usize..to as usize],
            _ => &[],
        }
    }
}

/// Postings by pair of letter buckets `(a, b)`, `a < b`, stored flat:
/// the pair's words are `at[start[a * 32 + b]..start[a * 32 + b + 1]]`.
struct Pairs {
    start: Vec<u32>,
    at: Vec<u32>,
}

impl Pairs {
    /// `masks[w]`: word `w`'s [`bucket_mask`].
    fn build(masks: &[u32]) -> Self {
        let mut start = vec![0u32; 32 * 32 + 1];
        for &mask in masks {
            for a in buckets_of(mask) {
                for b in buckets_of(mask >> a >> 1) {
                    start[a * 32 + (a + 1 + b) + 1] += 1;
                }
            }
        }
        for k in 1..start.len() {
            start[k] += start[k - 1];
        }
        let mut next = start.clone();
        let mut at = vec![0u32; start[32 * 32] as usize];
        for (w, &mask) in masks.iter().enumerate() {
            for a in buckets_of(mask) {
                for b in buckets_of(mask >> a >> 1) {
                    let slot = &mut next[a * 32 + (a + 1 + b)];
                    at[*slot as usize] = to_u32(w);
                    *slot += 1;
                }
            }
        }
        Pairs { start, at }
    }

    /// The words holding both buckets `a` and `b` (in either order).
    fn of(&self, a: usize, b: usize) -> &[u32] {
        let k = a.min(b) * 32 + a.max(b);
        &self.at[self.start[k] as usize..self.start[k + 1] as usize]
    }
}

/// Where a word stands: the number of words of the name, and its position.
type Place = (u32, u32);

/// A word of the name being matched.
struct QueryWord<'q> {
    text: &'q str,
    sig: Signature,
    /// Compared exactly ([`compared_exactly`]).
    exact: bool,
    /// Its first four chars (`'\0'` past the end).
    head: [char; 4],
    /// For each vocabulary word length, the fewest letters a word of that
    /// length must share with this one to possibly reach the threshold,
    /// by the length of their common prefix (see [`Need`]).
    need: std::borrow::Cow<'q, [Need]>,
}

/// The fewest letters two words must share for their similarity to possibly
/// reach the threshold, by the length of their common prefix (0 to 4: the
/// Winkler boost); `usize::MAX` where no number is enough. Index 4 holds for
/// any prefix.
type Need = [usize; 5];

/// A word's first four chars, `'\0'` past its end.
fn head(word: &str) -> [char; 4] {
    let mut head = ['\0'; 4];
    for (slot, c) in head.iter_mut().zip(word.chars()) {
        *slot = c;
    }
    head
}

/// The length of the common prefix of two words of at least `shortest`
/// chars, up to four: what Jaro-Winkler's boost counts.
fn common_prefix(a: &[char; 4], b: &[char; 4], shortest: usize) -> usize {
    (0..shortest.min(4)).take_while(|&i| a[i] == b[i]).count()
}

/// Checking one candidate account word by word costs about this many times
/// scanning one vocabulary word's letter counts (random access into the
/// names against a sequential scan): a position's similar words are searched
/// while its vocabulary is smaller than this many times the candidates in hand.
const CHECK_COST: usize = 16;

/// The vocabulary words similar enough to one query word at one position,
/// sorted by word id, with their similarity.
type Similar = Vec<(u32, f64)>;

/// The key in `sets` of the words at any position but the first, of names
/// of any word count (no name has 0 words).
const ANY_LATER: (u32, u32, char) = (0, 1, '\0');

/// The similar words found for (word count, position, word), under
/// [`ANY_LATER`]'s place for a word after the first; shared by the
/// fuzzy step's tasks on every core: a word searched by one task is not
/// searched again by another. On names made of real companies' words at 1M
/// (`generate --names real`), a cache for each task made 14,388 searches,
/// and one shared makes 11,161. In shards, each behind its own lock, so that
/// two cores seldom wait on one another; a search runs outside the lock.
/// Each task keeps its own [`PlaceWords`] in front of it, so that a word it
/// found before costs no lock (without it, the shared cache alone cost the
/// 100k programs a tenth of their fuzzy step).
#[derive(Default)]
struct SimilarCache {
    shards: [std::sync::Mutex<PlaceWords>; CACHE_SHARDS],
}

/// One shard of [`SimilarCache`]: by place, then by word.
type PlaceWords = FastMap<Place, FastMap<Box<str>, Similar>>;

const CACHE_SHARDS: usize = 16;

impl SimilarCache {
    fn shard(&self, place: Place, word: &str) -> &std::sync::Mutex<PlaceWords> {
        use std::hash::BuildHasher;
        let h = foldhash::fast::FixedState::default().hash_one((place, word));
        &self.shards[(h >> 60) as usize % CACHE_SHARDS]
    }

    /// How many (place, word) searches it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.values().map(FastMap::len).sum()))
            .sum()
    }
}

/// The letter bucket of [`Signature`] that `c` counts in.
fn bucket(c: char) -> usize {
    match c {
        'a'..='z' => c as usize - 'a' as usize,
        '0'..='9' => 26 + (c as usize - '0' as usize) % 5,
        _ => 31,
    }
}

/// A word's length and letter counts: enough to bound its Jaro-Winkler
/// similarity to another word without computing it.
#[derive(Clone, Copy)]
struct Signature {
    chars: usize,
    /// Counts of a-z, then digits folded into 5 buckets, then one bucket for
    /// everything else: 32 lanes, one SIMD register. Folding letters together
    /// only loosens the bound, never breaks it.
    counts: [u8; 32],
}

impl Signature {
    fn of(word: &str) -> Self {
        let mut counts = [0u8; 32];
        let mut chars = 0;
        for c in word.chars() {
            chars += 1;
            let bucket = bucket(c);
            counts[bucket] = counts[bucket].saturating_add(1);
        }
        Signature { chars, counts }
    }

    /// The letter buckets present, one bit each (bits 0-31), and those
    /// present twice or more (bits 32-63). A word lacking a bucket `q` holds
    /// has one letter fewer in common with `q` for each bit `q` has and it
    /// lacks.
    fn mask(&self) -> u64 {
        (0..32).fold(0, |mask, b| {
            mask | (u64::from(self.counts[b] > 0) << b)
                | (u64::from(self.counts[b] > 1) << (32 + b))
        })
    }

    /// An upper bound of the characters two words can have in common.
    fn common(&self, other: &Signature) -> usize {
        if self.chars > 255 || other.chars > 255 {
            // Counts may have saturated: fall back to the length bound.
            return self.chars.min(other.chars);
        }
        // At most the shorter length, so at most 255: a byte holds the sum,
        // and the 32 lanes are summed in one SIMD register.
        let mut sum = 0u8;
        for i in 0..32 {
            sum = sum.wrapping_add(self.counts[i].min(other.counts[i]));
        }
        usize::from(sum)
    }
}

/// A word of a split set in sixteen bytes, enough to pass over most of them
/// without reading their [`Entry`] (see `similar_by_other`): its
/// [`Signature::mask`] (bits 0-63), its length (bits 64-79, [`KEY_LONG`] for
/// that length or more), and the buckets of its 2nd to 4th chars (5 bits
/// each from bit 80; `'\0'` past the end).
fn scan_key(sig: &Signature, head: &[char; 4]) -> u128 {
    let chars = u64::try_from(sig.chars).map_or(KEY_LONG, |n| n.min(KEY_LONG));
    let heads = head[1..]
        .iter()
        .enumerate()
        .fold(0u128, |key, (i, &c)| key | ((bucket(c) as u128) << (5 * i)));
    u128::from(sig.mask()) | (u128::from(chars) << 64) | (heads << 80)
}

/// Whether the word of [`scan_key`] `key` and `lb` chars can reach the
/// threshold against query word `q` (key `q_key`, `la` chars, the same first
/// char), `need` being `q`'s [`Need`] row for length `lb`. Their common
/// prefix is at most the chars up to the first whose buckets differ, so the
/// word needs at least that prefix's count of letters in common with `q`;
/// each bit of `q`'s [`Signature::mask`] the word lacks is one letter fewer
/// in common.
fn key_may_reach(q_key: u128, key: u128, la: usize, lb: usize, need: &Need) -> bool {
    let differ = (q_key ^ key) >> 80;
    let prefix = (1..4)
        .find(|i| (differ >> (5 * (i - 1))) & 0x1F != 0)
        .unwrap_or(4)
        .min(la.min(lb));
    let lacking = (q_key as u64 & !(key as u64)).count_ones() as usize;
    need[prefix] != usize::MAX && lacking <= la.saturating_sub(need[prefix])
}

/// The length [`scan_key`] holds for words this long or longer, whose
/// entry is then always read.
const KEY_LONG: u64 = 0xFFFF;

/// Lookup structures over the accounts that can be matched (partners' own
/// accounts are left out of every one of them).
///
/// The fuzzy step works on the vocabulary of distinct words rather than on
/// accounts: for each position of the name being matched it finds the
/// vocabulary words similar enough to that position's word (each distinct
/// pair compared once), then walks the accounts holding one of them at the
/// position with the fewest such accounts, and keeps those whose other words
/// are similar enough too, dropping each at its first failing word. Thousands
/// of accounts sharing a first word (`First ...`, `United ...`) therefore cost
/// nothing unless every other word of the name is just as common.
pub(crate) struct AccountIndex<'a> {
    accounts: &'a [Account],
    /// Steps 1-3: account ids, registrable domains and name keys.
    exact: ExactKeys,
    /// Distinct words of the normalised names, and their ids.
    words: Vec<Word>,
    word_ids: FastMap<Box<str>, u32>,
    /// Per account, its name's word ids: `name_words[name_start[i]..name_start[i + 1]]`
    /// (empty for excluded and unnamed accounts).
    name_start: Vec<u32>,
    name_words: Vec<u32>,
    /// (word count, position, word) -> the accounts holding the word there,
    /// ascending: `postings[start..start + len]`.
    places: FastMap<(u32, u32, u32), (u32, u32)>,
    postings: Vec<u32>,
    /// Whole names: the hash of a name's word ids -> the account with the
    /// smallest id holding exactly those words ([`COLLIDED`] when two
    /// different names share a hash). Used when every position's similar
    /// words are known and their combinations are fewer than the accounts
    /// a position's words are held by.
    names: FastMap<u64, u32>,
    /// Words compared by similarity, by place; the first position is further split
    /// by first character (the SPEC's blocking), the others use `'\0'`.
    sets: FastMap<(u32, u32, char), WordSet>,
    /// The first words of a large first-word set (see [`Tuning::split_from`])
    /// split again by each other word of the name: (word count, first char,
    /// position, word) -> the first words of the names holding that word
    /// there. A name's other words are often common ones (`Systems`,
    /// `Bank`, a branch number), so once a position's similar words are
    /// known, the first word is searched among the names holding one of
    /// them there: a small share of the set. Each set is a run of
    /// `other_entries` (start, length), sorted by length then first chars,
    /// with `other_keys` beside it: thousands of small sets, each read as
    /// one contiguous run.
    by_other: FastMap<Other, (u32, u32)>,
    other_entries: Vec<Entry>,
    /// `other_keys[i]`: `other_entries[i]`'s [`scan_key`], read first
    /// (four to a cache line) to pass over most entries without reading
    /// them.
    other_keys: Vec<u128>,
    /// The longest vocabulary word, in chars.
    longest: usize,
    /// `need[la][lb]`: [`min_common`] for every pair of lengths up to the
    /// longest word and every prefix length, computed once (a query word's
    /// row is its length's).
    need: Vec<Vec<Need>>,
    threshold: f64,
    tuning: Tuning,
}

/// Keys of one exact step (account id, registrable domain or name key) to
/// the account holding them: the smallest account id, for a key several
/// hold. A million registrations look up keys of 200k accounts, larger than
/// the cache: an [`IdIndex`] overlaps their trips to memory.
struct KeyIndex {
    index: IdIndex,
    /// The account of each of the index's rows.
    accounts: Vec<u32>,
}

impl KeyIndex {
    /// `keys` in order of account id: an index keeps a key's first row.
    fn build(keys: Vec<(&str, u32)>) -> Self {
        KeyIndex {
            index: IdIndex::build(keys.iter().map(|&(key, _)| key)),
            accounts: keys.into_iter().map(|(_, account)| account).collect(),
        }
    }

    /// Each item's account (by the key `key` gives it), handed to `put`
    /// with the item.
    fn accounts_of<I>(
        &self,
        items: impl Iterator<Item = I>,
        key: impl Fn(&I) -> &str,
        mut put: impl FnMut(I, Option<usize>),
    ) {
        self.index.rows_of(items, key, |item, row| {
            // A key not indexed is `NO_ROW`, past the end of `accounts`.
            let account = self.accounts.get(row as usize).map(|&a| a as usize);
            put(item, account)
        });
    }
}

/// The indexes of matching's steps 1-3.
struct ExactKeys {
    by_id: KeyIndex,
    by_domain: KeyIndex,
    by_name: KeyIndex,
}

impl ExactKeys {
    /// `exact[i]`: account `i`'s name key and registrable domains (`None`:
    /// not matchable). Taken by value so that its strings (400k at 1M) are
    /// dropped here, beside the vocabulary's build, rather than after it.
    fn build(accounts: &[Account], exact: Vec<Option<(String, Vec<String>)>>) -> Self {
        // The matchable accounts in order of id (the usual order of an
        // export, so most often only checked).
        let mut order: Vec<u32> = (0..exact.len())
            .filter(|&i| exact[i].is_some())
            .map(to_u32)
            .collect();
        let id = |i: &u32| accounts[*i as usize].id.as_str();
        if !order.is_sorted_by_key(id) {
            order.par_sort_by_key(id);
        }
        let domains: Vec<(&str, u32)> = order
            .iter()
            .filter_map(|&i| Some((&exact[i as usize].as_ref()?.1, i)))
            .flat_map(|(domains, i)| domains.iter().map(move |d| (d.as_str(), i)))
            .collect();
        let names: Vec<(&str, u32)> = order
            .iter()
            .filter_map(|&i| Some((exact[i as usize].as_ref()?.0.as_str(), i)))
            .filter(|(key, _)| !key.is_empty())
            .collect();
        // One after the other: the vocabulary is built on the other core.
        let by_id = KeyIndex::build(order.iter().map(|i| (id(i), *i)).collect());
        let by_domain = KeyIndex::build(domains);
        let by_name = KeyIndex::build(names);
        ExactKeys {
            by_id,
            by_domain,
            by_name,
        }
    }
}

/// What steps 1-3 make of a registration: its match (or none at all), or
/// `Err` with its normalised name for step 4.
type Exact = Result<Option<AccountMatch>, String>;

/// Saturating conversion for counts that fit u32 by construction.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A key of [`AccountIndex`]'s `by_other`: (word count, first char,
/// position, word).
type Other = (u32, char, u32, u32);

/// How many words a name of a split set has at most, plus one: its word count
/// and positions take 21 bits each in [`other_key`].
const OTHER_COUNT_LIMIT: u32 = 1 << 21;

/// An [`Other`] and the rank of its name's first word as one sortable key:
/// word count, first char and position (21 bits each, from bit 106, 85 and
/// 64), the word (bits 32-63) and the rank (bits 0-31). Sorting these sorts
/// the tuples, at a fraction of the cost.
fn other_key((count, block, pos, word): Other, rank: u32) -> u128 {
    debug_assert!(count < OTHER_COUNT_LIMIT && pos < count);
    (u128::from(count) << 106)
        | (u128::from(u32::from(block)) << 85)
        | (u128::from(pos) << 64)
        | (u128::from(word) << 32)
        | u128::from(rank)
}

/// The [`Other`] of an [`other_key`].
fn other_of(key: u128) -> Other {
    let field = |shift: u32| (key >> shift) as u32 & (OTHER_COUNT_LIMIT - 1);
    (
        field(106),
        char::from_u32(field(85)).unwrap_or('\0'),
        field(64),
        (key >> 32) as u32,
    )
}

/// The order of a split set's words, (length, first four chars, id), as one
/// sortable key: the length in the top 12 bits, then [`head_bits`] (84
/// bits), then the id. A set holds words compared by similarity only, so
/// the length fits.
fn rank_key(word: &Word, id: u32) -> u128 {
    const _: () = assert!(FUZZY_CHARS_MAX < 1 << 12);
    debug_assert!(word.sig.chars <= FUZZY_CHARS_MAX);
    ((word.sig.chars as u128) << 116) | (head_bits(&word.head) << 32) | u128::from(id)
}

/// The fuzzy step's structures over the normalised names (see
/// [`AccountIndex`]'s fields of the same names).
struct Vocabulary {
    by_other: FastMap<Other, (u32, u32)>,
    other_entries: Vec<Entry>,
    other_keys: Vec<u128>,
    words: Vec<Word>,
    word_ids: FastMap<Box<str>, u32>,
    name_start: Vec<u32>,
    name_words: Vec<u32>,
    places: FastMap<(u32, u32, u32), (u32, u32)>,
    postings: Vec<u32>,
    names: FastMap<u64, u32>,
    sets: FastMap<(u32, u32, char), WordSet>,
}

/// In [`AccountIndex`]'s `names`: two different names share this hash, so
/// the lookup by whole name is not used for it.
const COLLIDED: u32 = u32::MAX;

/// The hasher of whole names (word ids): fixed, so that a build is the same
/// from run to run.
fn name_hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x6368_616e_6e65_6c73)
}

/// Account `i`'s name as word ids, out of the flat `name_start`/`name_words`.
fn name_of<'v>(name_start: &[u32], name_words: &'v [u32], i: usize) -> &'v [u32] {
    &name_words[name_start[i] as usize..name_start[i + 1] as usize]
}

impl Vocabulary {
    /// `norms[i]` is account `i`'s normalised name (`None`: excluded).
    fn build(norms: &[Option<String>], accounts: &[Account], tuning: Tuning) -> Self {
        let mut words: Vec<Word> = Vec::new();
        let mut word_ids: FastMap<Box<str>, u32> = FastMap::default();
        let mut name_start = Vec::with_capacity(norms.len() + 1);
        let mut name_words = Vec::with_capacity(norms.len() * 3);
        // (word count, position, word, account), sorted below into postings.
        let mut entries: Vec<(u32, u32, u32, u32)> = Vec::with_capacity(norms.len() * 3);
        name_start.push(0);
        for (i, norm) in norms.iter().enumerate() {
            if let Some(norm) = norm.as_deref().filter(|n| !n.is_empty()) {
                let count = to_u32(norm.split(' ').count());
                for (pos, w) in norm.split(' ').enumerate() {
                    let id = match word_ids.get(w) {
                        Some(&id) => id,
                        None => {
                            let id = to_u32(words.len());
                            words.push(Word::new(w));
                            word_ids.insert(w.into(), id);
                            id
                        }
                    };
                    name_words.push(id);
                    entries.push((count, to_u32(pos), id, to_u32(i)));
                }
            }
            name_start.push(to_u32(name_words.len()));
        }
        let names = Self::names(&name_start, &name_words, accounts);
        entries.par_sort_unstable();
        let mut places: FastMap<(u32, u32, u32), (u32, u32)> =
            crate::fast::map_with_capacity(words.len());
        let mut postings = Vec::with_capacity(entries.len());
        let mut set_ids: FastMap<(u32, u32, char), Vec<u32>> = FastMap::default();
        for run in entries.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
            let (count, pos, id, _) = run[0];
            places.insert(
                (count, pos, id),
                (to_u32(postings.len()), to_u32(run.len())),
            );
            postings.extend(run.iter().map(|e| e.3));
            let word = &words[id as usize];
            if word.exact {
                continue;
            }
            let block = if pos == 0 {
                word.text.chars().next().unwrap_or('\0')
            } else {
                '\0'
            };
            set_ids.entry((count, pos, block)).or_default().push(id);
            if pos > 0 {
                set_ids.entry(ANY_LATER).or_default().push(id);
            }
        }
        if let Some(ids) = set_ids.get_mut(&ANY_LATER) {
            ids.sort_unstable();
            ids.dedup();
        }
        // The large first-word sets, split again by each other word.
        let split: crate::fast::FastSet<(u32, char)> = set_ids
            .iter()
            .filter(|&(&(count, pos, _), ids)| pos == 0 && tuning.splits(count, ids.len()))
            .map(|(&(count, _, block), _)| (count, block))
            .collect();
        // The first words of the split sets, in the order a split set's
        // words are kept in (length, first chars, id): `ranked[r]` is the
        // entry of rank `r`, `rank` maps a word id to its rank.
        // They are sorted as `u128` keys (see `rank_key`), and each 64-byte
        // entry is built once, in order: sorting the entries themselves moved
        // twice the memory (25 ms of the index's 300 at 1M).
        let mut order: Vec<u128> = set_ids
            .iter()
            .filter(|&(&(count, pos, block), _)| pos == 0 && split.contains(&(count, block)))
            .flat_map(|(_, ids)| ids.iter())
            .map(|&id| rank_key(&words[id as usize], id))
            .collect();
        order.par_sort_unstable();
        // A word heads names of several word counts: once is enough.
        order.dedup();
        let ranked: Vec<Entry> = order
            .into_iter()
            .map(|k| {
                let word = &words[k as u32 as usize];
                Entry {
                    sig: word.sig,
                    head: word.head,
                    id: k as u32,
                }
            })
            .collect();
        let mut rank = vec![u32::MAX; words.len()];
        for (r, e) in ranked.iter().enumerate() {
            rank[e.id as usize] = to_u32(r);
        }
        // Each word's key, once: a word is in as many sets as its names have
        // other words.
        let ranked_keys: Vec<u128> = ranked.iter().map(|e| scan_key(&e.sig, &e.head)).collect();
        // (word count, first char, position, word, first word's rank) for
        // every other word of every name in a split set, once each.
        let mut others: Vec<u128> = if split.is_empty() {
            Vec::new()
        } else {
            (0..name_start.len().saturating_sub(1))
                .into_par_iter()
                .flat_map_iter(|i| {
                    let name = name_of(&name_start, &name_words, i);
                    let count = to_u32(name.len());
                    // The name's first word's rank and char, when its set is
                    // split.
                    let split_first = name.first().and_then(|&first| {
                        let word = &words[first as usize];
                        let block = word.text.chars().next()?;
                        if word.exact || !split.contains(&(count, block)) {
                            return None;
                        }
                        Some((rank[first as usize], block))
                    });
                    split_first.into_iter().flat_map(move |(first, block)| {
                        name.iter().enumerate().skip(1).map(move |(pos, &id)| {
                            other_key((count, block, to_u32(pos), id), first)
                        })
                    })
                })
                .collect()
        };
        let (sets, (by_other, other_entries, other_keys)) = rayon::join(
            || {
                set_ids
                    .into_par_iter()
                    .map(|(key, ids)| (key, WordSet::build(ids, &words, tuning)))
                    .collect::<FastMap<_, _>>()
            },
            || {
                others.par_sort_unstable();
                others.dedup();
                let mut by_other: FastMap<Other, (u32, u32)> = FastMap::default();
                let mut entries = Vec::with_capacity(others.len());
                let mut keys = Vec::with_capacity(others.len());
                for run in others.chunk_by(|a, b| a >> 32 == b >> 32) {
                    by_other.insert(other_of(run[0]), (to_u32(entries.len()), to_u32(run.len())));
                    // The low 32 bits: the first word's rank.
                    entries.extend(run.iter().map(|&k| ranked[k as u32 as usize]));
                    keys.extend(run.iter().map(|&k| ranked_keys[k as u32 as usize]));
                }
                (by_other, entries, keys)
            },
        );
        Vocabulary {
            by_other,
            other_entries,
            other_keys,
            words,
            word_ids,
            name_start,
            name_words,
            places,
            postings,
            names,
            sets,
        }
    }

    /// The whole-name map (see [`AccountIndex`]'s `names`).
    fn names(name_start: &[u32], name_words: &[u32], accounts: &[Account]) -> FastMap<u64, u32> {
        use std::hash::BuildHasher;
        let hasher = name_hasher();
        let name = |i: usize| name_of(name_start, name_words, i);
        let mut names: FastMap<u64, u32> = crate::fast::map_with_capacity(accounts.len());
        for i in 0..name_start.len().saturating_sub(1) {
            if name(i).is_empty() {
                continue;
            }
            names
                .entry(hasher.hash_one(name(i)))
                .and_modify(|held| {
                    if *held == COLLIDED {
                        return;
                    }
                    let h = *held as usize;
                    if name(h) != name(i) {
                        *held = COLLIDED;
                    } else if accounts[i].id < accounts[h].id {
                        *held = to_u32(i);
                    }
                })
                .or_insert(to_u32(i));
        }
        names
    }
}

impl<'a> AccountIndex<'a> {
    /// `excluded` holds the ids of partners' own accounts.
    pub(crate) fn build(
        accounts: &'a [Account],
        excluded: &crate::fast::FastSet<&str>,
        threshold: f64,
    ) -> Self {
        Self::build_tuned(accounts, excluded, threshold, Tuning::default())
    }

    fn build_tuned(
        accounts: &'a [Account],
        excluded: &crate::fast::FastSet<&str>,
        threshold: f64,
        tuning: Tuning,
    ) -> Self {
        // The per-account work (normalising, public-suffix lookups, name
        // keys) is the expensive part: do it in parallel. Then the exact steps'
        // indexes and the fuzzy step's vocabulary are filled on both cores at
        // once, the first in order of account id, the second of account.
        type Keys = Option<(String, Vec<String>)>;
        let (norms, keys): (Vec<Option<String>>, Vec<Keys>) = accounts
            .par_iter()
            .map(|a| -> (Option<String>, Keys) {
                if excluded.contains(a.id.as_str()) {
                    return (None, None);
                }
                let mut domains: Vec<String> = [&a.domain, &a.website]
                    .into_iter()
                    .flatten()
                    .filter_map(|d| registrable_domain(d))
                    .collect();
                domains.dedup();
                let norm = normalize_name(&a.name);
                let key = name_key(&norm);
                (Some(norm), Some((key, domains)))
            })
            .unzip();
        let (exact, vocabulary) = rayon::join(
            || ExactKeys::build(accounts, keys),
            || Vocabulary::build(&norms, accounts, tuning),
        );
        let Vocabulary {
            words,
            word_ids,
            name_start,
            name_words,
            places,
            postings,
            names,
            sets,
            by_other,
            other_entries,
            other_keys,
        } = vocabulary;
        // Only words compared by similarity need bounds.
        let longest = words
            .iter()
            .filter(|w| !w.exact)
            .map(|w| w.sig.chars)
            .max()
            .unwrap_or(0);
        let need = (0..=longest)
            .map(|la| need_row(la, longest, threshold))
            .collect();
        AccountIndex {
            need,
            accounts,
            exact,
            longest,
            words,
            word_ids,
            name_start,
            name_words,
            places,
            postings,
            names,
            sets,
            by_other,
            other_entries,
            other_keys,
            threshold,
            tuning,
        }
    }

    /// Matches one registration by the first rule that applies (the
    /// engine matches in bulk; the unit tests one at a time).
    #[cfg(test)]
    pub(crate) fn match_registration(&self, r: &Registration) -> Option<AccountMatch> {
        match self.match_exact(std::slice::from_ref(r)).pop() {
            Some(Ok(m)) => m,
            Some(Err(norm)) => self.fuzzy(&norm),
            None => None,
        }
    }

    /// Steps 1-3 for each of `registrations`, in order; `Err` holds the
    /// normalised name when step 4 is next. Step by step over all of them,
    /// so that each step's lookups overlap (see [`KeyIndex`]).
    fn match_exact(&self, registrations: &[Registration]) -> Vec<Exact> {
        let exact = |account, method| {
            Some(AccountMatch {
                account,
                how: Match { method, score: 1.0 },
            })
        };
        let mut out: Vec<Option<Exact>> = vec![None; registrations.len()];
        self.exact.by_id.accounts_of(
            registrations
                .iter()
                .enumerate()
                .filter_map(|(k, r)| Some((k, r.account_id.as_deref()?))),
            |&(_, id)| id,
            |(k, _), account| {
                if let Some(a) = account {
                    out[k] = Some(Ok(exact(a, Method::AccountId)));
                }
            },
        );
        let domains: Vec<(usize, String)> = registrations
            .iter()
            .enumerate()
            .filter(|&(k, _)| out[k].is_none())
            .filter_map(|(k, r)| Some((k, registrable_domain(r.customer_domain.as_deref()?)?)))
            .collect();
        self.exact.by_domain.accounts_of(
            domains.iter(),
            |(_, d)| d,
            |&(k, _), account| {
                if let Some(a) = account {
                    out[k] = Some(Ok(exact(a, Method::Domain)));
                }
            },
        );
        let names: Vec<(usize, String, String)> = registrations
            .iter()
            .enumerate()
            .filter(|&(k, _)| out[k].is_none())
            .map(|(k, r)| {
                let norm = normalize_name(&r.customer_name);
                let key = name_key(&norm);
                (k, norm, key)
            })
            .collect();
        self.exact.by_name.accounts_of(
            names.into_iter(),
            |(_, _, key)| key,
            |(k, norm, _), account| {
                out[k] = Some(match account {
                    Some(a) => Ok(exact(a, Method::Name)),
                    None if norm.is_empty() => Ok(None),
                    None => Err(norm),
                });
            },
        );
        out.into_iter().map(|e| e.unwrap_or(Ok(None))).collect()
    }

    /// The accounts holding word `id` at `place`, ascending.
    fn holders(&self, place: Place, id: u32) -> &[u32] {
        match self.places.get(&(place.0, place.1, id)) {
            Some(&(start, len)) => &self.postings[start as usize..(start + len) as usize],
            None => &[],
        }
    }

    /// The words at `place` similar enough to `q`, each compared once.
    fn similar(&self, place: Place, q: &QueryWord) -> Similar {
        if q.exact {
            // Compared exactly: only the same word.
            return match self.word_ids.get(q.text) {
                Some(&id) if !self.holders(place, id).is_empty() => vec![(id, 1.0)],
                _ => Vec::new(),
            };
        }
        let block = if place.1 == 0 {
            q.text.chars().next().unwrap_or('\0')
        } else {
            '\0'
        };
        match self.sets.get(&(place.0, place.1, block)) {
            Some(set) => self.similar_in(set, place, q),
            None => Vec::new(),
        }
    }

    /// The first words similar enough to `q` (the first word of a name of
    /// `count` words) among the names holding, at one other position, one
    /// of that position's similar words (`known`): each of `by_other`'s sets
    /// for them scanned, at the position where they hold the fewest words.
    /// A matching name holds one of them there. `None` when the first-word
    /// set is not split, or when no position's sets are clearly smaller
    /// than the whole set.
    fn similar_by_other(
        &self,
        count: u32,
        q: &QueryWord,
        known: &[Option<Similar>],
    ) -> Option<Similar> {
        if q.exact || count < 2 {
            return None;
        }
        let block = q.text.chars().next()?;
        let whole = self.sets.get(&(count, 0, block))?;
        if !self.tuning.splits(count, whole.size) {
            return None;
        }
        let runs_at = |pos: usize, similar: &Similar| -> Vec<(u32, u32)> {
            similar
                .iter()
                .filter_map(|&(id, _)| self.by_other.get(&(count, block, to_u32(pos), id)))
                .copied()
                .collect()
        };
        let size = |runs: &[(u32, u32)]| runs.iter().map(|&(_, len)| len as usize).sum::<usize>();
        let runs = known
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(pos, k)| Some(runs_at(pos, k.as_ref()?)))
            .min_by_key(|runs| size(runs))?;
        if size(&runs) * 2 > whole.size {
            return None;
        }
        // The lengths a similar word can have: a range around `q`'s.
        let fits = |lb: usize| q.need.get(lb).is_some_and(|n| n[4] != usize::MAX);
        let shortest = (0..q.need.len()).find(|&lb| fits(lb))?;
        let longest = (shortest..q.need.len()).rev().find(|&lb| fits(lb))?;
        let la = q.sig.chars;
        let q_key = scan_key(&q.sig, &q.head);
        let mut found: Similar = Vec::new();
        for (start, len) in runs {
            let range = start as usize..(start + len) as usize;
            // The keys are read in order (a binary search for the lengths
            // would jump between cache lines of a run only a few lines
            // long), and most words are passed over on their key alone.
            for (at, &key) in range.clone().zip(&self.other_keys[range]) {
                let lb = match (key >> 64) as u64 & KEY_LONG {
                    KEY_LONG => self.other_entries[at].sig.chars,
                    lb => usize::try_from(lb).unwrap_or(usize::MAX),
                };
                if lb < shortest {
                    continue;
                }
                if lb > longest {
                    break;
                }
                if !key_may_reach(q_key, key, la, lb, &q.need[lb]) {
                    continue;
                }
                let e = &self.other_entries[at];
                let need = q.need[lb][common_prefix(&q.head, &e.head, la.min(lb))];
                if need == usize::MAX || q.sig.common(&e.sig) < need {
                    continue;
                }
                let s = super::jaro::jaro_winkler(q.text, &self.words[e.id as usize].text);
                if passes(s, self.threshold) {
                    found.push((e.id, s));
                }
            }
        }
        // A first word held by names with two of the words is in both sets,
        // with the same similarity.
        found.sort_unstable_by_key(|&(id, _)| id);
        found.dedup_by_key(|&mut (id, _)| id);
        Some(found)
    }

    /// The words of `set` (a set of words at `place`) similar enough to `q`,
    /// each compared once.
    fn similar_in(&self, set: &WordSet, place: Place, q: &QueryWord) -> Similar {
        let one_word = place.0 == 1;
        let la = q.sig.chars;
        // Every word of the set shares this many leading chars with `q`: the
        // first word's set is blocked by its first char.
        let shared = usize::from(place.1 == 0);
        // This word's letter buckets, sorted by rarity in each length below.
        let present: Vec<usize> = (0..32).filter(|&b| q.sig.counts[b] > 0).collect();
        let mut letters: Vec<usize> = Vec::with_capacity(present.len());
        let mut candidates: Vec<u32> = Vec::new();
        let mut found = Vec::new();
        for (lb, set) in set.lengths.iter().enumerate() {
            let Some(need_by_prefix) = q.need.get(lb) else {
                continue;
            };
            if set.words.is_empty()
                || need_by_prefix[4] == usize::MAX
                || (one_word && lb.abs_diff(la) > 1)
            {
                continue;
            }
            let shortest = la.min(lb);
            // The fewest letters word `at` must share with `q`, by their
            // common prefix.
            let need_of =
                |at: usize| need_by_prefix[common_prefix(&q.head, &set.heads[at], shortest)];
            let mut take = |at: usize, need: usize| {
                // The letters in common against the fewest needed:
                // [`similarity_bound`]'s test, without reading the word.
                if q.sig.common(&set.sigs[at]) < need {
                    return;
                }
                let id = set.words[at];
                let s = super::jaro::jaro_winkler(q.text, &self.words[id as usize].text);
                if passes(s, self.threshold) {
                    found.push((id, s));
                }
            };
            let size = set.words.len();
            if size < self.tuning.scan_below {
                (0..size).for_each(|at| take(at, need_of(at)));
                continue;
            }
            // The words sharing one more leading char with `q` than all do
            // (a range: the words are sorted by their first chars) can have
            // the longer prefixes, and the Winkler boost with them: they are
            // all checked, tier by tier. Those sharing each longer head are
            // nested ranges inside, so each tier between two of them shares
            // exactly as many leading chars with `q`, needs one number of
            // letters in common, and is checked in a tight loop. Every other
            // word shares exactly `shared` leading chars, and needs at least
            // `need` letters in common.
            let key = &q.head[..=shared];
            let near = set.heads.partition_point(|h| &h[..=shared] < key)
                ..set.heads.partition_point(|h| &h[..=shared] <= key);
            let mut outer = near.clone();
            for sharing in shared + 1..=4 {
                let inner = if sharing < 4 {
                    let key = &q.head[..=sharing];
                    let heads = &set.heads[outer.clone()];
                    outer.start + heads.partition_point(|h| &h[..=sharing] < key)
                        ..outer.start + heads.partition_point(|h| &h[..=sharing] <= key)
                } else {
                    outer.end..outer.end
                };
                let need = need_by_prefix[sharing.min(shortest)];
                if need != usize::MAX {
                    for at in (outer.start..inner.start).chain(inner.end..outer.end) {
                        take(at, need);
                    }
                }
                outer = inner;
            }
            let need = need_by_prefix[shared];
            if need == usize::MAX {
                continue;
            }
            // Such a word lacks at most `missable` of `q`'s letters, so at
            // most `missable` of its distinct letters: it holds one of any
            // `missable + 1` of them, and both letters of a pair among any
            // `missable + 2`. The words holding one of the rarest few
            // letters, or a pair among the rarest few, are all that can
            // match: the shorter of the two lists is walked when it is
            // clearly shorter than the length's words.
            let missable = la.saturating_sub(need);
            letters.clear();
            letters.extend_from_slice(&present);
            letters.sort_by_key(|&b| (set.postings.of(b).len(), b));
            let single = letters.get(..=missable).unwrap_or(&[]);
            let by_letter = if single.is_empty() {
                usize::MAX
            } else {
                single.iter().map(|&b| set.postings.of(b).len()).sum()
            };
            let paired = letters.get(..missable + 2).unwrap_or(&[]);
            let by_pair = match &set.pairs {
                Some(pairs) if !paired.is_empty() => {
                    pairs_among(paired).map(|(a, b)| pairs.of(a, b).len()).sum()
                }
                _ => usize::MAX,
            };
            // Every word outside `near` shares exactly `shared` leading
            // chars with `q`, so `need` holds for all of them.
            let far = |at: &usize| !near.contains(at);
            if by_letter.min(by_pair) >= size / 2 {
                (0..near.start)
                    .chain(near.end..size)
                    .for_each(|at| take(at, need));
                continue;
            }
            candidates.clear();
            match &set.pairs {
                Some(pairs) if by_pair < by_letter => {
                    for (a, b) in pairs_among(paired) {
                        candidates.extend_from_slice(pairs.of(a, b));
                    }
                }
                _ => {
                    for &b in single {
                        candidates.extend_from_slice(set.postings.of(b));
                    }
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            candidates
                .iter()
                .map(|&at| at as usize)
                .filter(far)
                .for_each(|at| take(at, need));
        }
        found.sort_unstable_by_key(|&(id, _)| id);
        found
    }

    /// The similarity of query word `q` at `place` to vocabulary word `id`,
    /// when it passes (the same value [`similar`](Self::similar) gives).
    fn check(&self, place: Place, q: &QueryWord, id: u32) -> Option<f64> {
        let w = &self.words[id as usize];
        if q.exact || w.exact {
            return (q.text == &*w.text).then_some(1.0);
        }
        if place.1 == 0 && q.text.chars().next() != w.text.chars().next() {
            return None;
        }
        if place.0 == 1 && q.sig.chars.abs_diff(w.sig.chars) > 1 {
            return None;
        }
        if q.sig.common(&w.sig) < q.need[w.sig.chars][4]
            || !passes(
                similarity_bound(q.text, &q.sig, &w.text, &w.sig),
                self.threshold,
            )
        {
            return None;
        }
        let s = super::jaro::jaro_winkler(q.text, &w.text);
        passes(s, self.threshold).then_some(s)
    }

    /// [`Self::fuzzy_with`] for one name, on a cache of its own.
    #[cfg(test)]
    fn fuzzy(&self, norm: &str) -> Option<AccountMatch> {
        self.fuzzy_with(norm, &mut PlaceWords::default(), &SimilarCache::default())
    }

    /// A word of the name being matched, with what its searches need.
    fn query_word<'q>(&'q self, text: &'q str) -> QueryWord<'q> {
        let sig = Signature::of(text);
        QueryWord {
            text,
            head: head(text),
            exact: compared_exactly(text),
            need: match self.need.get(sig.chars) {
                Some(row) => std::borrow::Cow::Borrowed(row.as_slice()),
                None => std::borrow::Cow::Owned(need_row(sig.chars, self.longest, self.threshold)),
            },
            sig,
        }
    }

    /// [`Self::similar`], from `local` or `cache` when this place's word was
    /// searched before: a word such as `bakery` or `bank` at the same place of
    /// the same word count recurs across thousands of names. A word after
    /// the first is searched once for every later place.
    fn similar_cached(
        &self,
        place: Place,
        q: &QueryWord,
        local: &mut PlaceWords,
        cache: &SimilarCache,
    ) -> Similar {
        let words = local.entry(place).or_default();
        if let Some(found) = words.get(q.text) {
            return found.clone();
        }
        // A word after the first is searched once among the words at any
        // later position, whatever the place; the place keeps those it holds.
        let later = place.1 > 0 && !q.exact;
        let key = if later {
            (ANY_LATER.0, ANY_LATER.1)
        } else {
            place
        };
        let shard = cache.shard(key, q.text);
        // A poisoned lock only means another task panicked: search anew.
        let shared = shard
            .lock()
            .ok()
            .and_then(|held| held.get(&key)?.get(q.text).cloned());
        let mut found = match shared {
            Some(found) => found,
            None => {
                // Searched outside the lock: two tasks may search one word
                // at once, and both find the same.
                let found = match self.sets.get(&ANY_LATER) {
                    Some(set) if later => self.similar_in(set, place, q),
                    _ => self.similar(place, q),
                };
                if let Ok(mut held) = shard.lock() {
                    held.entry(key)
                        .or_default()
                        .insert(q.text.into(), found.clone());
                }
                found
            }
        };
        if later {
            found.retain(|&(id, _)| !self.holders(place, id).is_empty());
        }
        words.insert(q.text.into(), found.clone());
        found
    }

    /// Step 4: word-by-word similarity among names of as many words, each
    /// place's words searched at most once per `cache`.
    fn fuzzy_with(
        &self,
        norm: &str,
        local: &mut PlaceWords,
        cache: &SimilarCache,
    ) -> Option<AccountMatch> {
        let query: Vec<QueryWord> = norm.split(' ').map(|w| self.query_word(w)).collect();
        let count = to_u32(query.len());
        let place = |pos: usize| (count, to_u32(pos));
        // Positions whose similar words are known, with how many accounts
        // hold one of them. Exact words first (a lookup), then the others by
        // the size of the vocabulary to search, while searching is cheaper
        // than checking the candidates already in hand (see `CHECK_COST`).
        let mut known: Vec<Option<Similar>> = vec![None; query.len()];
        let mut best_pos = usize::MAX;
        let mut best_cost = usize::MAX;
        let mut order: Vec<(usize, usize)> = query
            .iter()
            .enumerate()
            .map(|(pos, q)| {
                let size = if q.exact {
                    0
                } else {
                    let block = if pos == 0 {
                        q.text.chars().next().unwrap_or('\0')
                    } else {
                        '\0'
                    };
                    self.sets
                        .get(&(count, to_u32(pos), block))
                        .map_or(0, |s| s.size)
                };
                (size, pos)
            })
            .collect();
        order.sort_unstable();
        for (size, pos) in order {
            if size >= best_cost.saturating_mul(CHECK_COST) {
                break;
            }
            // The first word among the names holding one of another
            // position's similar words, when those are known and few.
            let by_other = match pos {
                0 => self.similar_by_other(count, &query[0], &known),
                _ => None,
            };
            let similar = match by_other {
                Some(similar) => similar,
                None => self.similar_cached(place(pos), &query[pos], local, cache),
            };
            let cost: usize = similar
                .iter()
                .map(|&(id, _)| self.holders(place(pos), id).len())
                .sum();
            if cost == 0 {
                return None;
            }
            if cost < best_cost {
                best_cost = cost;
                best_pos = pos;
            }
            known[pos] = Some(similar);
        }
        // Every position searched, and fewer combinations of their similar
        // words than accounts to walk: look the combinations up as whole
        // names instead (thousands of accounts sharing every word of a name
        // then cost nothing either).
        if let Some(all) = known
            .iter()
            .map(Option::as_ref)
            .collect::<Option<Vec<&Similar>>>()
            && all
                .iter()
                .try_fold(1usize, |n, s| n.checked_mul(s.len()))
                .is_some_and(|n| n < best_cost)
            && let Some(found) = self.fuzzy_by_names(&all)
        {
            return found;
        }
        let driver = known.get(best_pos)?.as_ref()?;
        let mut best: Option<AccountMatch> = None;
        let mut sims = vec![0.0; query.len()];
        for &(id, s) in driver {
            'account: for &i in self.holders(place(best_pos), id) {
                let i = i as usize;
                let name = name_of(&self.name_start, &self.name_words, i);
                for (pos, q) in query.iter().enumerate() {
                    let sim = if pos == best_pos {
                        Some(s)
                    } else if let Some(similar) = &known[pos] {
                        similar
                            .binary_search_by_key(&name[pos], |&(w, _)| w)
                            .ok()
                            .map(|at| similar[at].1)
                    } else {
                        self.check(place(pos), q, name[pos])
                    };
                    match sim {
                        Some(x) => sims[pos] = x,
                        None => continue 'account,
                    }
                }
                self.keep_better(&mut best, i, &sims);
            }
        }
        best
    }

    /// Keeps account `i`, whose words' similarities are `sims`, in `best`
    /// when its score is higher, or equal with a smaller id.
    fn keep_better(&self, best: &mut Option<AccountMatch>, i: usize, sims: &[f64]) {
        // Summed in word order, as the SPEC's mean is written.
        let score = sims.iter().sum::<f64>() / sims.len() as f64;
        let better = match best {
            None => true,
            Some(b) => {
                score > b.how.score
                    || (score == b.how.score && self.accounts[i].id < self.accounts[b.account].id)
            }
        };
        if better {
            *best = Some(AccountMatch {
                account: i,
                how: Match {
                    method: Method::Fuzzy,
                    score,
                },
            });
        }
    }

    /// The best account among the names made of one similar word per
    /// position (`similar[pos]`, every combination looked up whole); `None`
    /// when a combination's hash is shared by two names, and the accounts
    /// must be walked instead.
    fn fuzzy_by_names(&self, similar: &[&Similar]) -> Option<Option<AccountMatch>> {
        use std::hash::BuildHasher;
        let hasher = name_hasher();
        let mut at = vec![0usize; similar.len()];
        let mut ids = vec![0u32; similar.len()];
        let mut sims = vec![0.0; similar.len()];
        let mut best = None;
        loop {
            for (pos, s) in similar.iter().enumerate() {
                (ids[pos], sims[pos]) = s[at[pos]];
            }
            match self.names.get(&hasher.hash_one(ids.as_slice())) {
                Some(&COLLIDED) => return None,
                Some(&i) => {
                    let i = i as usize;
                    if name_of(&self.name_start, &self.name_words, i) == ids.as_slice() {
                        self.keep_better(&mut best, i, &sims);
                    }
                }
                None => {}
            }
            // The next combination, the last position turning fastest.
            let mut pos = similar.len();
            loop {
                if pos == 0 {
                    return Some(best);
                }
                pos -= 1;
                at[pos] += 1;
                if at[pos] < similar[pos].len() {
                    break;
                }
                at[pos] = 0;
            }
        }
    }

    /// Matches every registration, in parallel, in input order: the exact
    /// steps first, then the fuzzy step for those left (timed apart).
    pub(crate) fn match_all(&self, registrations: &[Registration]) -> Vec<Option<AccountMatch>> {
        const CHUNK: usize = 1024;
        let started = std::time::Instant::now();
        let mut left: Vec<(usize, String)> = Vec::new();
        let mut matches: Vec<Option<AccountMatch>> = registrations
            .par_chunks(CHUNK)
            .flat_map_iter(|chunk| self.match_exact(chunk))
            .collect::<Vec<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, e)| match e {
                Ok(m) => m,
                Err(norm) => {
                    left.push((i, norm));
                    None
                }
            })
            .collect();
        let exact = started.elapsed();
        // Names in order, so that those sharing first words (and so the same
        // word sets) are matched one after another while those sets are still
        // in the cache. Each match is written back at its own index.
        left.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        let cache = SimilarCache::default();
        let found: Vec<(usize, Option<AccountMatch>)> = left
            .par_iter()
            .map_init(PlaceWords::default, |local, (i, norm)| {
                (*i, self.fuzzy_with(norm, local, &cache))
            })
            .collect();
        let fuzzy_matched = found.iter().filter(|(_, m)| m.is_some()).count();
        for (i, m) in found {
            matches[i] = m;
        }
        let fuzzy = started.elapsed() - exact;
        tracing::debug!(
            exact_us = exact.as_micros() as u64,
            fuzzy_us = fuzzy.as_micros() as u64,
            fuzzy_tried = left.len(),
            fuzzy_matched,
            "Matching steps timed."
        );
        matches
    }
}

/// Whether a word holds a digit: such words (store, branch and building
/// numbers, `3m`, `7eleven`) compare exactly (SPEC §3.1 step 4).
fn has_digit(word: &str) -> bool {
    word.chars().any(char::is_numeric)
}

/// The longest word compared by similarity. No company's name holds a
/// longer word (Salesforce caps a whole account name at 255 chars); what
/// does is pasted text, and the fuzzy step's bounds cost the square of the
/// longest word (`need`): one word of 5,000 chars took a gigabyte.
const FUZZY_CHARS_MAX: usize = 64;

/// Whether a word is compared exactly rather than by similarity: it holds
/// a digit, or is longer than [`FUZZY_CHARS_MAX`] chars.
fn compared_exactly(word: &str) -> bool {
    has_digit(word) || word.chars().nth(FUZZY_CHARS_MAX).is_some()
}

/// Similarities are compared with a small tolerance so that a word pair whose
/// true similarity equals the threshold is not lost to rounding. A similarity
/// of 0 (nothing in common, or different numbers) never passes, whatever the
/// threshold.
fn passes(similarity: f64, threshold: f64) -> bool {
    similarity > 0.0 && similarity >= threshold - 1e-9
}

/// An upper bound of the Jaro-Winkler similarity of two words, from their
/// lengths, their letters in common and their common prefix: Jaro's matching
/// characters cannot outnumber the letters the words share, and transpositions
/// only lower it. Used to skip pairs that cannot reach the threshold; it never
/// changes a result.
fn similarity_bound(a: &str, a_sig: &Signature, b: &str, b_sig: &Signature) -> f64 {
    let m = a_sig.common(b_sig).min(a_sig.chars.min(b_sig.chars));
    let prefix = a
        .chars()
        .zip(b.chars())
        .take(4)
        .take_while(|(x, y)| x == y)
        .count();
    bound_from(m, a_sig.chars, b_sig.chars, prefix)
}

/// The Jaro-Winkler similarity of words of lengths `la` and `lb` with at most
/// `m` matching characters, no transpositions and a common prefix of `prefix`.
fn bound_from(m: usize, la: usize, lb: usize, prefix: usize) -> f64 {
    if m == 0 || la == 0 || lb == 0 {
        return 0.0;
    }
    let m = m as f64;
    let jaro = (m / la as f64 + m / lb as f64 + 1.0) / 3.0;
    if jaro <= 0.7 {
        jaro
    } else {
        jaro + 0.1 * prefix.min(4) as f64 * (1.0 - jaro)
    }
}

/// [`min_common`] of a word of `la` chars against every length up to
/// `longest` (`usize::MAX`: no number of letters in common is enough).
fn need_row(la: usize, longest: usize, threshold: f64) -> Vec<Need> {
    (0..=longest)
        .map(|lb| std::array::from_fn(|p| min_common(la, lb, threshold, p).unwrap_or(usize::MAX)))
        .collect()
}

/// The fewest characters a word of `la` chars must share with one of `lb`
/// chars, with a common prefix of `prefix` chars, for their similarity to
/// possibly reach `threshold`; `None` when no number can. The bound grows
/// with the prefix, so the count for a prefix of 4 holds for any.
fn min_common(la: usize, lb: usize, threshold: f64, prefix: usize) -> Option<usize> {
    (1..=la.min(lb)).find(|&m| passes(bound_from(m, la, lb, prefix), threshold))
}

#[cfg(test)]
#[path = "matching_real_names.rs"]
mod real_names;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn account(id: &str, name: &str, domain: Option<&str>) -> Account {
        Account {
            id: id.into(),
            name: name.into(),
            domain: domain.map(Into::into),
            website: None,
            owner_id: None,
        }
    }

    pub(super) fn registration(name: &str) -> Registration {
        Registration {
            id: "R-1".into(),
            partner_id: "P-1".into(),
            customer_name: name.into(),
            status: crate::model::RegistrationStatus::Approved,
            submitted_at: Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap(),
            rep: None,
            customer_domain: None,
            account_id: None,
            opportunity_id: None,
            approved_at: None,
            expires_at: None,
            amount: None,
        }
    }

    fn matched(
        accounts: &[Account],
        excluded: &[&str],
        r: &Registration,
    ) -> Option<(String, Match)> {
        let excluded = excluded.iter().copied().collect();
        let index = AccountIndex::build(accounts, &excluded, 0.92);
        index
            .match_registration(r)
            .map(|m| (accounts[m.account].id.clone(), m.how))
    }

    fn exact(method: Method) -> Match {
        Match { method, score: 1.0 }
    }

    #[test]
    fn account_id_comes_first() {
        let accounts = [
            account("A-1", "Acme", Some("acme.com")),
            account("A-2", "Other", None),
        ];
        let mut r = registration("Acme");
        r.account_id = Some("A-2".into());
        r.customer_domain = Some("acme.com".into());
        assert_eq!(
            matched(&accounts, &[], &r),
            Some(("A-2".into(), exact(Method::AccountId)))
        );
    }

    #[test]
    fn an_unknown_account_id_falls_through_to_the_domain() {
        let accounts = [account("A-1", "Acme", Some("acme.com"))];
        let mut r = registration("Something else");
        r.account_id = Some("A-404".into());
        r.customer_domain = Some("https://eu.shop.acme.com/x".into());
        assert_eq!(
            matched(&accounts, &[], &r),
            Some(("A-1".into(), exact(Method::Domain)))
        );
    }

    #[test]
    fn domain_beats_name_and_matches_the_website_too() {
        let mut web = account("A-2", "Zeta Industries", None);
        web.website = Some("https://www.zeta.co.uk/home".into());
        let accounts = [account("A-1", "Zeta", None), web];
        let mut r = registration("Zeta");
        r.customer_domain = Some("shop.zeta.co.uk".into());
        assert_eq!(
            matched(&accounts, &[], &r),
            Some(("A-2".into(), exact(Method::Domain)))
        );
    }

    #[test]
    fn free_mail_domains_never_match_and_fall_through_to_the_name() {
        let accounts = [
            account("A-1", "Gmail Fan Club", Some("gmail.com")),
            account("A-2", "Bob's Bikes", None),
        ];
        let mut r = registration("Bobs Bikes LLC");
        r.customer_domain = Some("bob@gmail.com".into());
        assert_eq!(
            matched(&accounts, &[], &r),
            Some(("A-2".into(), exact(Method::Name)))
        );
    }

    #[test]
    fn names_match_after_normalising_and_without_spaces() {
        let accounts = [account("A-1", "AT&T Inc.", None)];
        assert_eq!(
            matched(&accounts, &[], &registration("ATandT")),
            Some(("A-1".into(), exact(Method::Name)))
        );
        let accounts = [account("A-1", "Nokia GmbH & Co. KG", None)];
        assert_eq!(
            matched(&accounts, &[], &registration("NOKIA")),
            Some(("A-1".into(), exact(Method::Name)))
        );
    }

    #[test]
    fn ties_go_to_the_smallest_account_id() {
        let accounts = [
            account("A-9", "Acme", Some("acme.com")),
            account("A-3", "Acme Inc", Some("acme.com")),
        ];
        let mut r = registration("Acme");
        assert_eq!(matched(&accounts, &[], &r).unwrap().0, "A-3");
        r.customer_domain = Some("acme.com".into());
        assert_eq!(matched(&accounts, &[], &r).unwrap().0, "A-3");
        // Whichever comes first in the input: the smallest id, not the last.
        let accounts = [
            account("A-3", "Acme", Some("acme.com")),
            account("A-9", "Acme Inc", Some("acme.com")),
        ];
        let mut r = registration("Acme");
        assert_eq!(matched(&accounts, &[], &r).unwrap().0, "A-3");
        r.customer_domain = Some("acme.com".into());
        assert_eq!(matched(&accounts, &[], &r).unwrap().0, "A-3");
    }

    #[test]
    fn fuzzy_matches_word_by_word_and_scores_the_mean() {
        let accounts = [account("A-1", "Contoso Bakery", None)];
        let (id, how) = matched(&accounts, &[], &registration("Contosso Bakery")).unwrap();
        assert_eq!(id, "A-1");
        assert_eq!(how.method, Method::Fuzzy);
        let want = (strsim::jaro_winkler("contosso", "contoso") + 1.0) / 2.0;
        assert!((how.score - want).abs() < 1e-12, "{} vs {want}", how.score);
    }

    #[test]
    fn fuzzy_keeps_near_miss_names_apart() {
        let accounts = [
            account("A-1", "Contoso Bank", None),
            account("A-2", "Generali", None),
        ];
        assert_eq!(
            matched(&accounts, &[], &registration("Contoso Bakery")),
            None
        );
        assert_eq!(
            matched(&accounts, &[], &registration("General Mills")),
            None
        );
    }

    #[test]
    fn the_signature_counts_the_letters_two_words_share() {
        let c = |a: &str, b: &str| Signature::of(a).common(&Signature::of(b));
        assert_eq!(c("abc", "abd"), 2);
        assert_eq!(c("abc", "xyz"), 0);
        assert_eq!(c("aab", "abb"), 2);
        // Digits fold into five buckets (1 and 6 share one): folding only
        // loosens the bound. Digits never share a bucket with a letter.
        assert_eq!(c("a1", "a6"), 2);
        assert_eq!(c("a1", "a2"), 1);
        assert_eq!(c("1", "z"), 0);
        // Every other char falls in one last bucket.
        assert_eq!(c("é", "e"), 0);
        assert_eq!(c("éa", "üa"), 2);
        // Past 255 of a char the counts would saturate: the length bounds it.
        let long = "a".repeat(300);
        assert_eq!(c(&long, &long), 300);
    }

    #[test]
    fn nothing_in_common_never_passes_whatever_the_threshold() {
        // The configuration takes any threshold above 0; the tolerance for
        // rounding must not let a similarity of 0 through a tiny one.
        assert!(!passes(0.0, 1e-12));
        assert!(passes(1e-12, 1e-12));
        assert!(passes(0.92 - 1e-12, 0.92));
        assert!(!passes(0.919, 0.92));
    }

    #[test]
    fn a_word_of_two_letters_is_found_by_its_letters_not_by_pairs() {
        // `abbbbbbbbbbb` holds two distinct letters and may lack one of its
        // twelve (jaro 0.944 with `bbbbbbbbbbbb`, no common prefix): too few
        // letters for a pair among any three, so the pair lists cannot
        // answer, and the search must take the letter lists (or scan). Taking
        // the pairs anyway would find no candidate at all.
        let accounts = vec![
            account("A-1", "Acme Bbbbbbbbbbbb", None),
            account("A-2", "Acme Cdefghijklmn", None),
            account("A-3", "Acme Opqrstuvwxyz", None),
            account("A-4", "Acme Aqqqqqqqqqqq", None),
        ];
        for tuning in [Tuning::default(), EVERY_PATH, LETTERS_ONLY] {
            let index = AccountIndex::build_tuned(&accounts, &Default::default(), 0.92, tuning);
            let m = index
                .fuzzy(&normalize_name("Acme Abbbbbbbbbbb"))
                .map(|m| accounts[m.account].id.as_str());
            assert_eq!(m, Some("A-1"));
        }
        assert_eq!(
            brute_force(&accounts, "Acme Abbbbbbbbbbb", 0.92).map(|(id, _)| id),
            Some("A-1".to_string())
        );
    }

    #[test]
    fn a_word_checked_rather_than_searched_follows_the_same_rules() {
        // `zanzibar` is held by one account and the second words of two-word
        // names are many: the second word is not searched but checked on
        // that one account, and the check must apply the rules the search
        // does. A word with a digit matches only itself (`storea` is not
        // `store1`, though Jaro-Winkler gives 0.93), and the one-word length
        // rule is for one-word names only (`technology` is `technologies`,
        // 0.93, two letters shorter).
        let filler = |i: u8| {
            let (a, b) = ((b'a' + i / 26) as char, (b'a' + i % 26) as char);
            format!("Bx{a}{b} Wq{a}{b}")
        };
        for (held, query, want) in [
            ("Zanzibar Store1", "Zanzibar Storea", None),
            ("Zanzibar Technologies", "Zanzibar Technology", Some("A-1")),
        ] {
            let mut accounts = vec![account("A-1", held, None)];
            for i in 0..60 {
                accounts.push(account(&format!("A-{}", i + 2), &filler(i), None));
            }
            for tuning in [Tuning::default(), EVERY_PATH, LETTERS_ONLY] {
                let index = AccountIndex::build_tuned(&accounts, &Default::default(), 0.92, tuning);
                let m = index
                    .fuzzy(&normalize_name(query))
                    .map(|m| accounts[m.account].id.as_str());
                assert_eq!(m, want, "{query} against {held}");
            }
            assert_eq!(
                brute_force(&accounts, query, 0.92)
                    .map(|(id, _)| id)
                    .as_deref(),
                want
            );
        }
    }

    #[test]
    fn a_word_lacking_the_rarest_letter_is_still_found() {
        // `cmartinezco` lacks only the `b` of `bmartinezco` (jaro 0.939, no
        // common prefix), and `bnartinez` only the `m` of `bmartinez` (0.933
        // with one leading char in common): in each, the missing letter is
        // the rarest of its length, the first the letter filter looks at. A
        // filter that allows one missing letter too few misses both. The
        // words beside them keep the filter from falling back to a scan
        // (it does when its lists add up to half the words):
        let beside = [
            // unlike either, holding none of their letters: the rarest letter
            // is held by no other word, so the filter's list is short;
            [
                "Acme Qqqqqqqqqqq",
                "Acme Wwwwwwwwwww",
                "Bqqqqqqqq Group",
                "Bwwwwwwww Group",
            ],
            // the same letters in another order, far from similar: every
            // word holds the letters the filter looks at, so only a filter
            // that really lists the words holding a letter finds the two (one
            // listing the words lacking it, say, lists nothing).
            [
                "Acme Ozcenitramb",
                "Acme Zocenitramb",
                "Bzenitram Group",
                "Bzentiram Group",
            ],
        ];
        // and forty words of each length each holding one of their letters
        // (and the first word's `b`), the rest unlike: every letter is held
        // by several words, but no two of them by any word but the match, so
        // the filter's lists (not a scan) find the two, through letter pairs
        // when pairs are indexed.
        let other = "dfghjklpqsuvwxy";
        let word = |i: usize, len: usize, theirs: &str| -> String {
            let one = theirs.as_bytes()[i % theirs.len()] as char;
            (0..len)
                .map(|k| match k {
                    1 => one,
                    _ => other.as_bytes()[(i * 7 + k * 3 + i / 5) % other.len()] as char,
                })
                .collect()
        };
        let many: Vec<String> = (0..40)
            .flat_map(|i| {
                [
                    format!("Acme {}", word(i, 11, "mrtinezco")),
                    format!("B{} Group", word(i, 8, "artinez")),
                ]
            })
            .collect();
        let sets = beside
            .iter()
            .map(|names| names.map(String::from).to_vec())
            .chain([many]);
        for names in sets {
            let mut accounts = vec![
                account("A-1", "Acme Cmartinezco", None),
                account("A-2", "Bnartinez Group", None),
            ];
            for (i, name) in names.iter().enumerate() {
                accounts.push(account(&format!("A-{}", i + 3), name, None));
            }
            for tuning in [Tuning::default(), EVERY_PATH, LETTERS_ONLY] {
                let index = AccountIndex::build_tuned(&accounts, &Default::default(), 0.92, tuning);
                for (name, id) in [("Acme Bmartinezco", "A-1"), ("Bmartinez Group", "A-2")] {
                    let m = index
                        .fuzzy(&normalize_name(name))
                        .map(|m| accounts[m.account].id.as_str());
                    assert_eq!(m, Some(id), "{name} beside {:?}", names[0]);
                    assert_eq!(
                        brute_force(&accounts, name, 0.92)
                            .map(|(id, _)| id)
                            .as_deref(),
                        Some(id)
                    );
                }
            }
        }
    }

    /// The filter's lists: each letter's and each pair's words, exactly,
    /// ascending (a word with a letter twice is listed once).
    #[test]
    fn the_letter_and_pair_lists_hold_exactly_the_words_with_them() {
        let texts = ["abc", "bcd", "acd", "aab", "xyz", "dcba", "zz"];
        let words: Vec<Word> = texts.iter().map(|&t| Word::new(t)).collect();
        let ids: Vec<u32> = (0..to_u32(texts.len())).collect();
        let set = WordSet::build(ids, &words, EVERY_PATH);
        let bucket = |c: char| c as usize - 'a' as usize;
        for (len, set) in set.lengths.iter().enumerate() {
            let text = |at: u32| texts[set.words[at as usize] as usize];
            let holding = |test: &dyn Fn(&str) -> bool| -> Vec<u32> {
                (0..to_u32(set.words.len()))
                    .filter(|&at| test(text(at)))
                    .collect()
            };
            for x in 'a'..='z' {
                assert_eq!(
                    set.postings.of(bucket(x)),
                    holding(&|w| w.contains(x)),
                    "{len} {x}"
                );
                for y in 'a'..='z' {
                    let Some(pairs) = set.pairs.as_ref().filter(|_| x != y) else {
                        continue;
                    };
                    assert_eq!(
                        pairs.of(bucket(x), bucket(y)),
                        holding(&|w| w.contains(x) && w.contains(y)),
                        "{len} {x}{y}"
                    );
                }
            }
        }
        assert_eq!(set.size, texts.len());
    }

    #[test]
    fn fuzzy_picks_the_highest_score_then_the_smallest_id() {
        let accounts = [
            account("A-2", "Fabrikam Holdings", None),
            account("A-1", "Fabrikan Holdings", None),
            account("A-3", "Fabrikamm Holdings", None),
        ];
        let (id, how) = matched(&accounts, &[], &registration("Fabrikan Holding")).unwrap();
        assert_eq!((id.as_str(), how.method), ("A-1", Method::Fuzzy));
        // "acmee" and "acmea" are equally close to "acme": the smaller id wins.
        let accounts = [
            account("A-2", "Acmee Widgets", None),
            account("A-1", "Acmea Widgets", None),
        ];
        assert_eq!(
            strsim::jaro_winkler("acme", "acmee"),
            strsim::jaro_winkler("acme", "acmea")
        );
        let (id, _) = matched(&accounts, &[], &registration("Acme Widgets")).unwrap();
        assert_eq!(id, "A-1");
    }

    #[test]
    fn words_with_digits_compare_exactly() {
        let accounts = [
            account("A-1", "Acme Store 102345", None),
            account("A-2", "Acme Store 102346b", None),
        ];
        assert!(strsim::jaro_winkler("102346", "102345") > 0.92);
        assert_eq!(
            matched(&accounts, &[], &registration("Acme Store 102346")),
            None
        );
        // The same number, with a typo elsewhere, still matches fuzzily.
        let (id, how) = matched(&accounts, &[], &registration("Acme Stor 102345")).unwrap();
        assert_eq!((id.as_str(), how.method), ("A-1", Method::Fuzzy));
        let want = (1.0 + strsim::jaro_winkler("stor", "store") + 1.0) / 3.0;
        assert!((how.score - want).abs() < 1e-12);
        // A first word with a digit too (`3M`, `7-Eleven`).
        let accounts = [account("A-1", "7eleven Stores", None)];
        assert_eq!(
            matched(&accounts, &[], &registration("7elevem Stores")),
            None
        );
        assert_eq!(
            matched(&accounts, &[], &registration("7eleven Stores")).map(|m| m.1.method),
            Some(Method::Name)
        );
    }

    #[test]
    fn the_first_letter_still_blocks_when_another_word_leads_the_search() {
        // The number is the rarest word, so the accounts holding it are
        // checked word by word: the first word must still start alike.
        let mut accounts = vec![account("A-1", "Bbc 12", None)];
        // A first-letter block big enough not to be searched.
        for (i, c) in ('a'..='z').enumerate() {
            accounts.push(account(
                &format!("A-{}", i + 2),
                &format!("Ax{c} {}", i + 13),
                None,
            ));
        }
        let index = AccountIndex::build(&accounts, &Default::default(), 0.6);
        assert!(strsim::jaro_winkler("abc", "bbc") > 0.6);
        assert_eq!(index.fuzzy("abc 12").map(|m| m.account), None);
        assert_eq!(index.fuzzy("bbd 12").map(|m| m.account), Some(0));
    }

    #[test]
    fn shared_words_do_not_hide_the_best_match() {
        // Thousands of accounts share the first two words; the number decides.
        let mut accounts: Vec<Account> = (0..3000)
            .map(|i| {
                account(
                    &format!("A-{i:04}"),
                    &format!("First National Bank {i}"),
                    None,
                )
            })
            .collect();
        accounts.push(account("A-9999", "First Natonal Bank 77b", None));
        let index = AccountIndex::build(&accounts, &Default::default(), 0.92);
        let m = index.fuzzy("first nationall bank 1234").unwrap();
        assert_eq!(accounts[m.account].id, "A-1234");
        assert_eq!(index.fuzzy("first national bank 3001"), None);
        let m = index.fuzzy("first national bnk 77b").unwrap();
        assert_eq!(accounts[m.account].id, "A-9999");
    }

    #[test]
    fn names_every_word_of_which_is_common_are_looked_up_whole() {
        // Thousands of accounts, every word of their names shared by
        // thousands: the similar words' combinations are looked up as whole
        // names. Ids run against the input order, so the smallest id of a
        // name is not its first account.
        let names = [
            "United Acme Logistics",
            "United Acme Logistcs",
            "Unitd Acme Logistics",
            "United Acme Holdings",
            "Global Acme Logistics",
        ];
        let accounts: Vec<Account> = (0..2500)
            .map(|i| account(&format!("A-{:04}", 9999 - i), names[i % names.len()], None))
            .collect();
        let mut index = AccountIndex::build(&accounts, &Default::default(), 0.92);
        let queries = [
            "united acme logistic",
            "unitd acme logistics",
            "united acm holdings",
            "global acme logistcs",
            "united acme warehousing",
        ];
        let expected: Vec<_> = queries
            .iter()
            .map(|q| brute_force(&accounts, q, 0.92))
            .collect();
        assert_eq!(
            expected[0].as_ref().map(|(id, _)| id.as_str()),
            Some("A-7504"),
            "the exact name's smallest id"
        );
        assert_eq!(expected[4], None);
        for (q, want) in queries.iter().zip(&expected) {
            assert_eq!(&fuzzy_id(&index, &accounts, q), want, "{q}");
        }
        // With every whole name's hash shared, the accounts are walked
        // instead, to the same answers.
        for held in index.names.values_mut() {
            *held = COLLIDED;
        }
        for (q, want) in queries.iter().zip(&expected) {
            assert_eq!(&fuzzy_id(&index, &accounts, q), want, "{q}, walked");
        }
        // And with the whole names gone, nothing is found by them.
        index.names.clear();
        assert_eq!(fuzzy_id(&index, &accounts, queries[0]), None);
    }

    #[test]
    fn a_whole_name_held_by_several_accounts_maps_to_the_smallest_id() {
        // The same name twice is not a hash collision: it keeps the smaller
        // id, whichever comes first; another name has its own entry.
        let accounts = [
            account("A-3", "Acme Logistics", None),
            account("A-1", "Acme Logistics", None),
            account("A-2", "Acme Holdings", None),
        ];
        let index = AccountIndex::build(&accounts, &Default::default(), 0.92);
        let mut held: Vec<&str> = index
            .names
            .values()
            .map(|&i| {
                assert_ne!(i, COLLIDED);
                accounts[i as usize].id.as_str()
            })
            .collect();
        held.sort_unstable();
        assert_eq!(held, ["A-1", "A-2"]);
    }

    #[test]
    fn one_word_names_match_fuzzily_only_within_one_letter_of_length() {
        let accounts = [
            account("A-1", "Biomira Inc.", None),
            account("A-2", "Bosch GmbH", None),
            account("A-3", "Siemens AG", None),
        ];
        assert!(strsim::jaro_winkler("biora", "biomira") > 0.92);
        assert_eq!(matched(&accounts, &[], &registration("Biora AB")), None);
        for (typo, want) in [("Bsoch", "A-2"), ("Siemsn", "A-3"), ("Siemen", "A-3")] {
            let (id, how) = matched(&accounts, &[], &registration(typo)).unwrap();
            assert_eq!((id.as_str(), how.method), (want, Method::Fuzzy), "{typo}");
        }
        // Two-word names keep the plain rule: a shorter word can match.
        let accounts = [account("A-1", "Biomira Labs", None)];
        assert!(matched(&accounts, &[], &registration("Biomra Labs")).is_some());
    }

    #[test]
    fn mexican_legal_forms_match_by_name() {
        let accounts = [account("A-1", "Desc, S.A. de C.V.", None)];
        assert_eq!(
            matched(&accounts, &[], &registration("Desc")),
            Some(("A-1".into(), exact(Method::Name)))
        );
    }

    #[test]
    fn partner_accounts_are_never_matched_at_any_step() {
        let accounts = [account("A-1", "Northwind Partners", Some("northwind.com"))];
        let mut r = registration("Northwind Partners");
        r.account_id = Some("A-1".into());
        r.customer_domain = Some("northwind.com".into());
        assert_eq!(matched(&accounts, &["A-1"], &r), None);
        assert_eq!(
            matched(&accounts, &["A-1"], &registration("Northwind Partner")),
            None
        );
    }

    proptest::proptest! {
        /// Word sets are sorted by packed heads: they must sort as the
        /// heads themselves, whatever the chars (the highest need 21 bits).
        #[test]
        fn packed_heads_sort_as_heads(
            a in proptest::array::uniform4(proptest::prop_oneof![
                proptest::char::any(),
                proptest::char::range('\u{100000}', '\u{10FFFF}'),
            ]),
            at in 0usize..4,
            c in proptest::prop_oneof![
                proptest::char::any(),
                proptest::char::range('\u{100000}', '\u{10FFFF}'),
            ],
            next in proptest::bool::ANY,
        ) {
            // Heads that differ at one char, or in the next char up from it.
            let mut b = a;
            b[at] = c;
            if next && at < 3 {
                b[at] = a[at];
                b[at + 1] = c;
            }
            proptest::prop_assert_eq!(head_bits(&a).cmp(&head_bits(&b)), a.cmp(&b));
        }

        /// The split sets' entries are sorted, grouped and read back as
        /// packed keys: a key must give back its tuple and rank, and keys
        /// must sort as the tuples do, whatever the fields.
        #[test]
        fn other_keys_round_trip_and_sort_as_their_tuples(
            a in (2u32..OTHER_COUNT_LIMIT, proptest::char::any(), proptest::num::u32::ANY, proptest::num::u32::ANY),
            b in (2u32..OTHER_COUNT_LIMIT, proptest::char::any(), proptest::num::u32::ANY, proptest::num::u32::ANY),
            pos in (proptest::num::u32::ANY, proptest::num::u32::ANY),
            same in 0usize..4,
        ) {
            let (ca, ka, wa, ra) = a;
            let (mut cb, mut kb, wb, rb) = b;
            // Tuples that share their leading fields, so that every field
            // gets to decide an order.
            if same >= 1 { cb = ca; }
            if same >= 2 { kb = ka; }
            let pa = pos.0 % ca;
            let pb = if same >= 3 { pa.min(cb - 1) } else { pos.1 % cb };
            let (oa, ob) = ((ca, ka, pa, wa), (cb, kb, pb, wb));
            let (xa, xb) = (other_key(oa, ra), other_key(ob, rb));
            proptest::prop_assert_eq!((other_of(xa), xa as u32), (oa, ra));
            proptest::prop_assert_eq!((other_of(xb), xb as u32), (ob, rb));
            proptest::prop_assert_eq!(xa.cmp(&xb), (oa, ra).cmp(&(ob, rb)));
        }

        /// A split set's words are ranked by packed keys: (length, head, id).
        #[test]
        fn rank_keys_sort_by_length_head_and_id(
            a in "[a\u{e9}\u{10FFFF}]{1,6}",
            b in "[a\u{e9}\u{10FFFF}]{1,6}",
            ids in (proptest::num::u32::ANY, proptest::num::u32::ANY),
        ) {
            let (wa, wb) = (Word::new(&a), Word::new(&b));
            proptest::prop_assert_eq!(
                rank_key(&wa, ids.0).cmp(&rank_key(&wb, ids.1)),
                (wa.sig.chars, wa.head, ids.0).cmp(&(wb.sig.chars, wb.head, ids.1))
            );
        }

        #[test]
        fn the_bound_is_never_below_the_real_similarity(
            a in "[abcde\u{e9}\u{fc}1]{1,12}",
            b in "[abcde\u{e9}\u{fc}1]{1,12}",
        ) {
            let real = strsim::jaro_winkler(&a, &b);
            let bound = similarity_bound(&a, &Signature::of(&a), &b, &Signature::of(&b));
            proptest::prop_assert!(bound + 1e-12 >= real, "{} {}: {} < {}", a, b, bound, real);
        }

        /// The scan of a split set passes over a word on its key alone only
        /// when the word cannot reach the threshold: repeated letters, a
        /// letter outside a-z (`é`, `ü` share one bucket) and prefixes
        /// shorter than four chars included.
        #[test]
        fn a_word_passed_over_on_its_key_cannot_reach_the_threshold(
            a in "a[abcde\u{e9}\u{fc}]{0,11}",
            // `b` is `a`'s first `shared` chars and a tail: long common
            // prefixes are frequent.
            shared in 1usize..6,
            tail in "[abcde\u{e9}\u{fc}]{0,9}",
            threshold in proptest::sample::select(vec![0.6, 0.8, 0.85, 0.92, 0.97, 1.0]),
        ) {
            let b: String = a.chars().take(shared).chain(tail.chars()).collect();
            let (sa, sb) = (Signature::of(&a), Signature::of(&b));
            let need = need_row(sa.chars, sb.chars, threshold);
            let may = key_may_reach(
                scan_key(&sa, &head(&a)),
                scan_key(&sb, &head(&b)),
                sa.chars,
                sb.chars,
                &need[sb.chars],
            );
            let s = super::super::jaro::jaro_winkler(&a, &b);
            proptest::prop_assert!(may || !passes(s, threshold), "{} {}: {}", a, b, s);
        }
    }

    #[test]
    fn a_word_too_long_for_its_key_keeps_its_length_apart() {
        let long = "a".repeat(70_000);
        let key = scan_key(&Signature::of(&long), &head(&long));
        assert_eq!((key >> 64) as u64 & KEY_LONG, KEY_LONG);
        let short = scan_key(&Signature::of("ab"), &head("ab"));
        assert_eq!((short >> 64) as u64 & KEY_LONG, 2);
    }

    /// Words too long to be a company's are compared exactly, and cost no
    /// more than any: the bounds grow with the longest word compared by
    /// similarity, not with the longest word held.
    #[test]
    fn words_longer_than_any_company_name_compare_exactly_and_cheaply() {
        let word = |n: usize| format!("p{}", "q".repeat(n - 1));
        let accounts = [
            account("A-1", &format!("{} Freight", word(64)), None),
            account("A-2", &format!("{} Freight", word(65)), None),
            account("A-3", &format!("{} Freight", word(200_000)), None),
        ];
        let index = AccountIndex::build(&accounts, &Default::default(), 0.92);
        assert_eq!(index.longest, 64);
        assert_eq!(index.need.len(), 65);
        // A typo in a word of 64 chars still matches; at 65 only the word
        // itself does.
        let typo = |n: usize| format!("{}x freight", word(n - 1));
        let found = |q: &str| fuzzy_id(&index, &accounts, q).map(|(id, _)| id);
        assert_eq!(found(&typo(64)).as_deref(), Some("A-1"));
        assert_eq!(found(&typo(65)), None);
        assert_eq!(
            found(&format!("{} freight", word(65))).as_deref(),
            Some("A-2")
        );
        assert_eq!(
            found(&format!("{} freight", word(200_000))).as_deref(),
            Some("A-3")
        );
    }

    /// A first-word set split by the names' other words: the first word is
    /// searched among the names holding one of another position's similar
    /// words (`Insurance`, `Insurence`, the branch number), and finds what
    /// comparing every account finds, through each of those words' sets.
    #[test]
    fn a_split_first_word_set_finds_what_comparing_every_account_finds() {
        let names = [
            "Podin Insurance",
            "Podim Insurence",
            "Padin Insurance",
            "Podin Systems",
            "Podine Systems",
            "Pidon Insurance",
            "Podin Mutual Insurance",
            "Podim Mutual Insurance",
            "Podin Mutual Bank",
            "Podin Store 104",
            "Podim Store 105",
            "Pedin Store 104",
            "Podin Health Clinic",
            "Poden Health Clinik",
        ];
        // Names of other first words starting with `p`: enough of them end
        // in `Insurance` that the first word is searched rather than their
        // accounts walked, and most end in other words, so that the sets
        // searched are a small share of the whole.
        let fillers: Vec<String> = (0u8..240)
            .map(|i| {
                let (a, b) = ((b'a' + i % 26) as char, (b'a' + i / 26) as char);
                let last = if i < 30 { "Insurance" } else { "Freight" };
                format!("Pq{a}{b}xz {last}")
            })
            .collect();
        let accounts: Vec<Account> = names
            .iter()
            .copied()
            .chain(fillers.iter().map(String::as_str))
            .enumerate()
            .map(|(i, n)| account(&format!("A-{i:02}"), n, None))
            .collect();
        let tuning = Tuning {
            split_from: 2,
            ..Tuning::default()
        };
        let index = AccountIndex::build_tuned(&accounts, &Default::default(), 0.92, tuning);
        assert!(!index.by_other.is_empty());
        let queries = [
            "Podinn Insurance",
            "Podim Insurance",
            "Podin Insurence",
            "Podimm Insurence",
            "Podinn Mutual Insurence",
            "Podinn Store 104",
            "Podinn Store 105",
            "Podinn Health Clinic",
            "Podinn Systemz",
            "Pxxxx Insurance",
        ];
        let mut matched = 0;
        for query in queries {
            let expected = brute_force(&accounts, query, 0.92);
            matched += usize::from(expected.is_some());
            assert_eq!(
                fuzzy_id(&index, &accounts, &normalize_name(query)),
                expected,
                "{query}"
            );
        }
        assert!(matched >= 7, "only {matched} of the queries match");
    }

    #[test]
    fn a_word_searched_again_is_found_as_at_its_own_place() {
        // `waverianus` is within the threshold of `caverianus` (0.93) but
        // starts with another letter: similar at a later position, not at
        // the first, where words are blocked by their first letter.
        let accounts = [
            account("A-1", "Waverianus Holding", None),
            account("A-2", "Holding Waverianus", None),
            account("A-3", "Holding Trust Waverianus", None),
        ];
        let index = AccountIndex::build(&accounts, &Default::default(), 0.92);
        let q = index.query_word("caverianus");
        // (3, 1) holds `trust` only: found among the later words, and not
        // kept there.
        let places = [(2, 1), (2, 0), (3, 2), (3, 0), (2, 1), (3, 1)];
        let cache = SimilarCache::default();
        let found: Vec<Similar> = places
            .iter()
            .map(|&place| index.similar_cached(place, &q, &mut PlaceWords::default(), &cache))
            .collect();
        for (&place, found) in places.iter().zip(&found) {
            assert_eq!(found, &index.similar(place, &q), "{place:?}");
        }
        assert_eq!(found[0].len(), 1);
        assert!(found[1].is_empty());
        assert_eq!(found[2].len(), 1);
        assert!(found[5].is_empty());
        // Every later place was one search (of the words at any later
        // position), and each first place one.
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_similarity_equal_to_the_threshold_survives_the_pruning() {
        // jaro_winkler("eaa", "e") is 0.7999999999999999: equal to 0.8 but
        // for rounding. Found by the property test below.
        let accounts = [account("A-1", "é x", None)];
        let index = AccountIndex::build(&accounts, &Default::default(), 0.8);
        assert_eq!(index.fuzzy("eaa x").map(|m| m.account), Some(0));
    }

    /// SPEC §3.1 step 4 done the slow way: every account with the same word
    /// count and first letter, every word pair compared.
    /// The fuzzy step's match as (account id, score), as `brute_force` gives it.
    fn fuzzy_id(index: &AccountIndex, accounts: &[Account], norm: &str) -> Option<(String, f64)> {
        index
            .fuzzy(norm)
            .map(|m| (accounts[m.account].id.clone(), m.how.score))
    }

    /// Candidates sorted out and pairs indexed for every length, however
    /// few its words: the paths a small test would otherwise not take.
    const EVERY_PATH: Tuning = Tuning {
        scan_below: 0,
        pairs_from: 0,
        split_from: 0,
    };

    /// Candidates sorted out for every length through single letters only
    /// (no pairs indexed): with [`EVERY_PATH`], pairs are shorter and taken.
    const LETTERS_ONLY: Tuning = Tuning {
        scan_below: 0,
        pairs_from: usize::MAX,
        split_from: usize::MAX,
    };

    fn brute_force(accounts: &[Account], name: &str, threshold: f64) -> Option<(String, f64)> {
        let norm = normalize_name(name);
        let words: Vec<&str> = norm.split(' ').collect();
        let mut best: Option<(String, f64)> = None;
        for a in accounts {
            let other = normalize_name(&a.name);
            let theirs: Vec<&str> = other.split(' ').collect();
            if norm.is_empty()
                || theirs.len() != words.len()
                || theirs[0].chars().next() != words[0].chars().next()
            {
                continue;
            }
            if words.len() == 1 && words[0].chars().count().abs_diff(theirs[0].chars().count()) > 1
            {
                continue;
            }
            let sims: Vec<f64> = words
                .iter()
                .zip(&theirs)
                .map(|(x, y)| {
                    let exactly =
                        |w: &str| w.chars().any(|c| c.is_numeric()) || w.chars().count() > 64;
                    if exactly(x) || exactly(y) {
                        if x == y { 1.0 } else { 0.0 }
                    } else {
                        strsim::jaro_winkler(x, y)
                    }
                })
                .collect();
            if sims.iter().any(|&s| !passes(s, threshold)) {
                continue;
            }
            let score = sims.iter().sum::<f64>() / sims.len() as f64;
            let better = match &best {
                None => true,
                Some((id, s)) => score > *s || (score == *s && a.id < *id),
            };
            if better {
                best = Some((a.id.clone(), score));
            }
        }
        best
    }

    /// Every registration of a generated program, on each name profile
    /// (the real-words one is where the shared and later-place searches
    /// save most): the index finds what comparing every account finds.
    #[test]
    fn the_fuzzy_index_agrees_with_brute_force_on_generated_programs() {
        use channel_sync_synth::{NameProfile, SynthParams, write_program};
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        for names in [NameProfile::Default, NameProfile::Skewed, NameProfile::Real] {
            let dir = tempfile::tempdir().unwrap();
            let p = SynthParams {
                names,
                ..SynthParams::scaled(11, 10_000, now)
            };
            write_program(dir.path(), &p).unwrap();
            let column = |file: &str, col: usize| -> Vec<String> {
                let mut r = csv::Reader::from_path(dir.path().join(file)).unwrap();
                r.records().map(|x| x.unwrap()[col].to_string()).collect()
            };
            let accounts: Vec<Account> = column("accounts.csv", 1)
                .iter()
                .enumerate()
                .map(|(i, n)| account(&format!("A-{i:05}"), n, None))
                .collect();
            let index = AccountIndex::build(&accounts, &Default::default(), 0.92);
            let forced = [EVERY_PATH, LETTERS_ONLY]
                .map(|t| AccountIndex::build_tuned(&accounts, &Default::default(), 0.92, t));
            let keys: crate::fast::FastSet<String> = accounts
                .iter()
                .map(|a| name_key(&normalize_name(&a.name)))
                .collect();
            let mut fuzzy = 0;
            // One cache for every name, as `match_all` keeps one: a place's
            // word found again must give what searching it gives.
            let cache = SimilarCache::default();
            for name in column("registrations.csv", 2) {
                let norm = normalize_name(&name);
                if norm.is_empty() || keys.contains(&name_key(&norm)) {
                    continue;
                }
                let fast = index
                    .fuzzy_with(&norm, &mut PlaceWords::default(), &cache)
                    .map(|m| (accounts[m.account].id.clone(), m.how.score));
                assert_eq!(
                    fast,
                    brute_force(&accounts, &name, 0.92),
                    "{names:?} {name}"
                );
                for (slow, path) in forced.iter().zip(["every path", "letters only"]) {
                    let slow = fuzzy_id(slow, &accounts, &norm);
                    assert_eq!(fast, slow, "{names:?} {name}, {path}");
                }
                fuzzy += usize::from(fast.is_some());
            }
            assert!(fuzzy > 10, "{names:?}: only {fuzzy} fuzzy matches");
            let cached = cache.len();
            assert!(cached > 100, "{names:?}: only {cached} words cached");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        #[test]
        fn the_fuzzy_index_finds_exactly_what_comparing_every_account_finds(
            names in proptest::collection::vec("(ab|abc|[abcdeé1]{1,9})( (ba|[abcd12]{1,6})){0,3}", 1..60),
            query in "(ab|abc|[abcdeé1]{1,9})( (ba|[abcd12]{1,6})){0,3}",
            threshold in proptest::sample::select(vec![0.6, 0.8, 0.85, 0.92, 0.97, 1.0]),
        ) {
            let accounts: Vec<Account> = names
                .iter()
                .enumerate()
                .map(|(i, n)| account(&format!("A-{i:02}"), n, None))
                .collect();
            let index = AccountIndex::build(&accounts, &Default::default(), threshold);
            let every_path = AccountIndex::build_tuned(&accounts, &Default::default(), threshold, EVERY_PATH);
            let letters_only = AccountIndex::build_tuned(&accounts, &Default::default(), threshold, LETTERS_ONLY);
            let norm = normalize_name(&query);
            // Exact name matches are step 3's: only fuzzy-only cases compare.
            proptest::prop_assume!(!accounts.iter().any(|a| name_key(&normalize_name(&a.name)) == name_key(&norm)));
            let fast = fuzzy_id(&index, &accounts, &norm);
            let slow = fuzzy_id(&every_path, &accounts, &norm);
            let letters = fuzzy_id(&letters_only, &accounts, &norm);
            let expected = brute_force(&accounts, &query, threshold);
            proptest::prop_assert_eq!(&fast, &expected);
            proptest::prop_assert_eq!(&slow, &expected);
            proptest::prop_assert_eq!(&letters, &expected);
        }
    }
}
