//! Matching a registration to a CRM account (SPEC §3.1).
//!
//! The index is built once per run. Exact steps are hash lookups; the fuzzy
//! step looks only at accounts with the same number of words whose first word
//! starts with the same letter, grouped by distinct first word, and skips a
//! pair early when an upper bound of its similarity is already too low. It
//! never compares all pairs.

use crate::fast::FastMap;

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
pub struct AccountMatch {
    pub account: usize,
    pub how: Match,
}

/// The accounts of one block (same word count, same first character),
/// grouped by distinct first word.
struct Block {
    words: Vec<FirstWord>,
    /// For each letter bucket of [`Signature`], the words that contain it.
    postings: [Vec<u32>; 32],
    /// The longest first word, in chars.
    longest: usize,
}

/// Accounts that share a normalised first word, within one block.
struct FirstWord {
    word: String,
    sig: Signature,
    accounts: Vec<usize>,
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
            let bucket = match c {
                'a'..='z' => c as usize - 'a' as usize,
                '0'..='9' => 26 + (c as usize - '0' as usize) % 5,
                _ => 31,
            };
            counts[bucket] = counts[bucket].saturating_add(1);
        }
        Signature { chars, counts }
    }

    /// An upper bound of the characters two words can have in common.
    fn common(&self, other: &Signature) -> usize {
        if self.chars > 255 || other.chars > 255 {
            // Counts may have saturated: fall back to the length bound.
            return self.chars.min(other.chars);
        }
        let mut sum = 0u16;
        for i in 0..32 {
            sum += u16::from(self.counts[i].min(other.counts[i]));
        }
        usize::from(sum)
    }
}

/// Lookup structures over the accounts that can be matched (partners' own
/// accounts are left out of every one of them).
pub struct AccountIndex<'a> {
    accounts: &'a [Account],
    by_id: FastMap<&'a str, usize>,
    by_domain: FastMap<String, usize>,
    by_name: FastMap<String, usize>,
    /// Normalised names, by account index (empty for excluded accounts).
    normalized: Vec<String>,
    /// (word count, first character) -> distinct first words.
    blocks: FastMap<(usize, char), Block>,
    threshold: f64,
}

/// Keeps the account with the smaller id under `key`.
fn insert_smallest<K: std::hash::Hash + Eq>(
    map: &mut FastMap<K, usize>,
    key: K,
    i: usize,
    accounts: &[Account],
) {
    map.entry(key)
        .and_modify(|held| {
            if accounts[i].id < accounts[*held].id {
                *held = i;
            }
        })
        .or_insert(i);
}

impl<'a> AccountIndex<'a> {
    /// `excluded` holds the ids of partners' own accounts.
    pub fn build(
        accounts: &'a [Account],
        excluded: &crate::fast::FastSet<&str>,
        threshold: f64,
    ) -> Self {
        // The per-account work (normalising, public-suffix lookups) is the
        // expensive part: do it in parallel, then fill the maps in order.
        let prepared: Vec<Option<(String, Vec<String>)>> = accounts
            .par_iter()
            .map(|a| {
                if excluded.contains(a.id.as_str()) {
                    return None;
                }
                let mut domains: Vec<String> = [&a.domain, &a.website]
                    .into_iter()
                    .flatten()
                    .filter_map(|d| registrable_domain(d))
                    .collect();
                domains.dedup();
                Some((normalize_name(&a.name), domains))
            })
            .collect();

        let mut by_id = crate::fast::map_with_capacity(accounts.len());
        let mut by_domain = crate::fast::map_with_capacity(accounts.len());
        let mut by_name = crate::fast::map_with_capacity(accounts.len());
        let mut normalized = Vec::with_capacity(accounts.len());
        let mut blocks: FastMap<(usize, char), FastMap<String, Vec<usize>>> = FastMap::default();
        for (i, p) in prepared.into_iter().enumerate() {
            let Some((norm, domains)) = p else {
                normalized.push(String::new());
                continue;
            };
            by_id.insert(accounts[i].id.as_str(), i);
            for d in domains {
                insert_smallest(&mut by_domain, d, i, accounts);
            }
            if !norm.is_empty() {
                insert_smallest(&mut by_name, name_key(&norm), i, accounts);
                let first = norm.split(' ').next().unwrap_or_default();
                if let Some(c) = first.chars().next() {
                    let words = norm.split(' ').count();
                    blocks
                        .entry((words, c))
                        .or_default()
                        .entry(first.to_string())
                        .or_default()
                        .push(i);
                }
            }
            normalized.push(norm);
        }
        let blocks = blocks
            .into_iter()
            .map(|(k, firsts)| {
                let mut v: Vec<FirstWord> = firsts
                    .into_iter()
                    .map(|(word, accounts)| FirstWord {
                        sig: Signature::of(&word),
                        word,
                        accounts,
                    })
                    .collect();
                v.sort_by(|a, b| a.word.cmp(&b.word));
                let mut postings: [Vec<u32>; 32] = Default::default();
                for (w, fw) in v.iter().enumerate() {
                    for (bucket, &count) in fw.sig.counts.iter().enumerate() {
                        if count > 0 {
                            postings[bucket].push(w as u32);
                        }
                    }
                }
                let longest = v.iter().map(|fw| fw.sig.chars).max().unwrap_or(0);
                (
                    k,
                    Block {
                        words: v,
                        postings,
                        longest,
                    },
                )
            })
            .collect();
        AccountIndex {
            accounts,
            by_id,
            by_domain,
            by_name,
            normalized,
            blocks,
            threshold,
        }
    }

    /// The account index of a matchable account id.
    pub fn by_id(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Matches one registration by the first rule that applies.
    pub fn match_registration(&self, r: &Registration) -> Option<AccountMatch> {
        let exact = |account, method| {
            Some(AccountMatch {
                account,
                how: Match { method, score: 1.0 },
            })
        };
        if let Some(i) = r.account_id.as_deref().and_then(|id| self.by_id(id)) {
            return exact(i, Method::AccountId);
        }
        if let Some(d) = r.customer_domain.as_deref().and_then(registrable_domain)
            && let Some(&i) = self.by_domain.get(&d)
        {
            return exact(i, Method::Domain);
        }
        let norm = normalize_name(&r.customer_name);
        if norm.is_empty() {
            return None;
        }
        if let Some(&i) = self.by_name.get(&name_key(&norm)) {
            return exact(i, Method::Name);
        }
        self.fuzzy(&norm)
    }

    /// Step 4: word-by-word Jaro-Winkler among same-length names.
    fn fuzzy(&self, norm: &str) -> Option<AccountMatch> {
        let words: Vec<&str> = norm.split(' ').collect();
        let first_char = words[0].chars().next()?;
        let block = self.blocks.get(&(words.len(), first_char))?;
        let first = Signature::of(words[0]);
        // For each candidate length, the fewest letters it must share with
        // this word to possibly reach the threshold (usize::MAX: impossible).
        let need: Vec<usize> = (0..=block.longest)
            .map(|lb| min_common(first.chars, lb, self.threshold).unwrap_or(usize::MAX))
            .collect();
        let fewest = need.iter().copied().min().unwrap_or(usize::MAX);
        if fewest == usize::MAX {
            return None;
        }
        // A candidate can lack at most `missable` of this word's letters, so
        // it holds at least one of any `missable + 1` distinct letters of it:
        // the words holding one of the rarest few are all that can match.
        // Used when those words are clearly fewer than the whole block.
        let missable = first.chars - fewest;
        let mut present: Vec<usize> = (0..32).filter(|&b| first.counts[b] > 0).collect();
        present.sort_by_key(|&b| (block.postings[b].len(), b));
        let by_letter: usize = present
            .iter()
            .take(missable + 1)
            .map(|&b| block.postings[b].len())
            .sum();
        let candidates: Vec<u32> = if missable < present.len() && by_letter < block.words.len() / 2
        {
            let mut c: Vec<u32> = present[..=missable]
                .iter()
                .flat_map(|&b| block.postings[b].iter().copied())
                .collect();
            c.sort_unstable();
            c.dedup();
            c
        } else {
            (0..block.words.len() as u32).collect()
        };
        let mut best: Option<AccountMatch> = None;
        for fw in candidates.iter().map(|&w| &block.words[w as usize]) {
            if first.common(&fw.sig) < need[fw.sig.chars]
                || !passes(
                    similarity_bound(words[0], &first, &fw.word, &fw.sig),
                    self.threshold,
                )
            {
                continue;
            }
            let s0 = strsim::jaro_winkler(words[0], &fw.word);
            if !passes(s0, self.threshold) {
                continue;
            }
            for &i in &fw.accounts {
                let Some(score) = self.rest_score(&words, s0, &self.normalized[i]) else {
                    continue;
                };
                let better = match best {
                    None => true,
                    Some(b) => {
                        score > b.how.score
                            || (score == b.how.score
                                && self.accounts[i].id < self.accounts[b.account].id)
                    }
                };
                if better {
                    best = Some(AccountMatch {
                        account: i,
                        how: Match {
                            method: Method::Fuzzy,
                            score,
                        },
                    });
                }
            }
        }
        best
    }

    /// The mean word similarity when every remaining word passes, else `None`.
    fn rest_score(&self, words: &[&str], first: f64, candidate: &str) -> Option<f64> {
        let mut sum = first;
        for (w, c) in words.iter().zip(candidate.split(' ')).skip(1) {
            let s = strsim::jaro_winkler(w, c);
            if !passes(s, self.threshold) {
                return None;
            }
            sum += s;
        }
        Some(sum / words.len() as f64)
    }

    /// Matches every registration, in parallel, in input order.
    pub fn match_all(&self, registrations: &[Registration]) -> Vec<Option<AccountMatch>> {
        registrations
            .par_iter()
            .map(|r| self.match_registration(r))
            .collect()
    }
}

/// Similarities are compared with a small tolerance so that a word pair whose
/// true similarity equals the threshold is not lost to rounding.
fn passes(similarity: f64, threshold: f64) -> bool {
    similarity >= threshold - 1e-9
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

/// The fewest characters a word of `la` chars must share with one of `lb`
/// chars for their similarity to possibly reach `threshold`; `None` when no
/// number can.
fn min_common(la: usize, lb: usize, threshold: f64) -> Option<usize> {
    (1..=la.min(lb)).find(|&m| passes(bound_from(m, la, lb, 4), threshold))
}

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

    fn registration(name: &str) -> Registration {
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
        #[test]
        fn the_bound_is_never_below_the_real_similarity(
            a in "[abcde\u{e9}\u{fc}1]{1,12}",
            b in "[abcde\u{e9}\u{fc}1]{1,12}",
        ) {
            let real = strsim::jaro_winkler(&a, &b);
            let bound = similarity_bound(&a, &Signature::of(&a), &b, &Signature::of(&b));
            proptest::prop_assert!(bound + 1e-12 >= real, "{} {}: {} < {}", a, b, bound, real);
        }
    }

    #[test]
    fn a_similarity_equal_to_the_threshold_survives_the_pruning() {
        // jaro_winkler("eaa", "e") is 0.7999999999999999: equal to 0.8 but
        // for rounding. Found by the property test below.
        let accounts = [account("A-1", "é", None)];
        let index = AccountIndex::build(&accounts, &Default::default(), 0.8);
        assert_eq!(index.fuzzy("eaa").map(|m| m.account), Some(0));
    }

    /// SPEC §3.1 step 4 done the slow way: every account with the same word
    /// count and first letter, every word pair compared.
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
            let sims: Vec<f64> = words
                .iter()
                .zip(&theirs)
                .map(|(x, y)| strsim::jaro_winkler(x, y))
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

    proptest::proptest! {
        #[test]
        fn the_fuzzy_index_finds_exactly_what_comparing_every_account_finds(
            names in proptest::collection::vec("[abcdeé]{1,9}( [abcd]{1,6})?", 1..40),
            query in "[abcdeé]{1,9}( [abcd]{1,6})?",
            threshold in proptest::sample::select(vec![0.6, 0.8, 0.85, 0.92, 0.97, 1.0]),
        ) {
            let accounts: Vec<Account> = names
                .iter()
                .enumerate()
                .map(|(i, n)| account(&format!("A-{i:02}"), n, None))
                .collect();
            let index = AccountIndex::build(&accounts, &Default::default(), threshold);
            let norm = normalize_name(&query);
            // Exact name matches are step 3's: only fuzzy-only cases compare.
            proptest::prop_assume!(!accounts.iter().any(|a| name_key(&normalize_name(&a.name)) == name_key(&norm)));
            let fast = index
                .fuzzy(&norm)
                .map(|m| (accounts[m.account].id.clone(), m.how.score));
            proptest::prop_assert_eq!(fast, brute_force(&accounts, &query, threshold));
        }
    }
}
