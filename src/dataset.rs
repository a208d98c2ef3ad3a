//! The dataset layer every source builds on: a [`Table`] of rows with their
//! rejections, the named [`PrmTables`], [`link`] (ids and references checked,
//! the dataset's promise kept), what a load yields ([`Loaded`]) and the
//! input's fatal errors ([`InputError`]). Taken out of the CSV reader so API
//! connectors and the mirror do not depend on the files connector.

use rayon::prelude::*;

use crate::fast::FastMap;
use crate::model::{
    Account, Dataset, MdfRequest, Opportunity, Partner, PartnerRep, ProgramCost, Registration,
    Rejected, User,
};

/// The input cannot be used at all: exit code 65.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{dir}: required file {name}.csv (or {name}.jsonl) is missing")]
    MissingFile { dir: String, name: &'static str },
    #[error("{file}: line 1: required column '{column}' is missing from the header")]
    MissingColumn { file: String, column: &'static str },
    #[error(
        "{file}: line 1: column '{column}' appears more than once in the header (columns {first} and {second}); keep one"
    )]
    DuplicateColumn {
        file: String,
        column: &'static str,
        first: usize,
        second: usize,
    },
    #[error("{dir}: both {name}.csv and {name}.jsonl exist; keep one")]
    Ambiguous { dir: String, name: &'static str },
    #[error("{file}: line {line}: {reason}")]
    Unreadable {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a folder yields: the validated dataset and every rejected row.
#[derive(Debug, Default)]
pub struct Loaded {
    pub dataset: Dataset,
    pub rejected: Vec<Rejected>,
}

/// A record's id, for rejections of records that have no line (API sources).
pub(crate) trait Keyed {
    fn key(&self) -> &str;
}

macro_rules! keyed {
    ($($t:ty),*) => {$(
        impl Keyed for $t {
            fn key(&self) -> &str {
                &self.id
            }
        }
    )*};
}
keyed!(
    ProgramCost,
    MdfRequest,
    Account,
    Partner,
    PartnerRep,
    Opportunity,
    Registration,
    User
);

/// Rows of one table and, beside them, each row's line number (kept apart so
/// the rows move into the dataset without a copy), plus the rejected ones.
pub struct Table<T> {
    pub(crate) file: String,
    pub(crate) rows: Vec<T>,
    pub(crate) lines: Vec<u64>,
    pub(crate) rejected: Vec<Rejected>,
    /// Records from an API: a rejection names the record (`file` is then
    /// "<label> <id>") and line 0.
    pub(crate) by_key: bool,
}

impl<T> Table<T> {
    pub(crate) fn new(file: String, capacity: usize) -> Self {
        Table {
            file,
            rows: Vec::with_capacity(capacity),
            lines: Vec::with_capacity(capacity),
            rejected: Vec::new(),
            by_key: false,
        }
    }

    /// Records from an API, labelled e.g. `salesforce Opportunity`, with
    /// those already rejected while mapping them.
    pub(crate) fn from_records(label: &str, rows: Vec<T>, rejected: Vec<Rejected>) -> Self {
        Table {
            file: label.to_string(),
            lines: vec![0; rows.len()],
            rows,
            rejected,
            by_key: true,
        }
    }

    /// Makes room for `additional` more rows at once, if the memory can be
    /// had; if not, the table grows as rows come.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.rows.try_reserve_exact(additional).is_ok() {
            let _ = self.lines.try_reserve_exact(additional);
        }
    }

    pub(crate) fn push(&mut self, row: T, line: u64) {
        self.rows.push(row);
        self.lines.push(line);
    }

    pub(crate) fn reject(&mut self, line: u64, reason: String) {
        self.rejected.push(Rejected {
            file: self.file.clone(),
            line,
            reason,
        });
    }

    /// Rejects every row for which `verdict` gives a reason; keeps the rest.
    pub(crate) fn reject_where(&mut self, verdict: impl Fn(usize, &T) -> Option<String> + Sync)
    where
        T: Sync + Keyed,
    {
        let reasons: Vec<(usize, String)> = self
            .rows
            .par_iter()
            .enumerate()
            .filter_map(|(i, row)| verdict(i, row).map(|r| (i, r)))
            .collect();
        self.reject_rows(reasons);
    }

    /// Rejects the rows `judge` names, given the rows a chunk at a time on
    /// every core (for a verdict that works on many rows at once): it calls
    /// `reject(k, reason)` for the chunk's `k`-th row.
    pub(crate) fn reject_in_chunks(
        &mut self,
        judge: impl Fn(&[T], &mut dyn FnMut(usize, String)) + Sync,
    ) where
        T: Sync + Keyed,
    {
        const CHUNK: usize = 8192;
        let reasons: Vec<(usize, String)> = self
            .rows
            .par_chunks(CHUNK)
            .enumerate()
            .flat_map_iter(|(c, rows)| {
                let mut found = Vec::new();
                judge(rows, &mut |k, reason| found.push((c * CHUNK + k, reason)));
                found
            })
            .collect();
        self.reject_rows(reasons);
    }

    /// Rejects the rows of `reasons` (row, reason), in row order.
    fn reject_rows(&mut self, reasons: Vec<(usize, String)>)
    where
        T: Keyed,
    {
        if reasons.is_empty() {
            return;
        }
        let mut keep = vec![true; self.rows.len()];
        for (i, reason) in reasons {
            keep[i] = false;
            if self.by_key {
                self.rejected.push(Rejected {
                    file: format!("{} {}", self.file, self.rows[i].key()),
                    line: 0,
                    reason,
                });
            } else {
                self.reject(self.lines[i], reason);
            }
        }
        let mut i = 0;
        self.rows.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        self.lines.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
}

/// The PRM tables (read, not yet linked), from files or a PRM connector.
pub struct PrmTables {
    pub partners: Table<Partner>,
    pub reps: Table<PartnerRep>,
    pub registrations: Table<Registration>,
}

/// Rejects rows whose id repeats an earlier row's, keeping the first.
///
/// A million-row table does not fit a hash map in cache, and one map fills
/// on one core. So each id is hashed (on both cores), the rows are grouped
/// by the top byte of their hash into 256 shards of a few thousand, and
/// each shard is sorted by hash on whichever core is free: equal ids are
/// then neighbours (rows whose hashes are equal and ids are not stay apart,
/// checked by their ids).
pub(crate) fn dedupe<T: Sync + Keyed>(table: &mut Table<T>, id: impl Fn(&T) -> &str + Sync) {
    use std::hash::BuildHasher;
    let state = foldhash::fast::RandomState::default();
    dedupe_by(table, id, |key| state.hash_one(key));
}

/// [`dedupe`] with the hash of an id given (tests make ids collide).
fn dedupe_by<T: Sync + Keyed>(
    table: &mut Table<T>,
    id: impl Fn(&T) -> &str + Sync,
    hash: impl Fn(&str) -> u64 + Sync,
) {
    // A row is one u64 in the shards: a table of more rows than 32 bits
    // number (4 billion) goes through a map instead.
    let duplicates = if u32::try_from(table.rows.len()).is_ok() {
        duplicates_sharded(&table.rows, &table.lines, id, hash)
    } else {
        duplicates_by_map(&table.rows, &table.lines, id)
    };
    if !duplicates.is_empty() {
        let first_line_of_duplicate: FastMap<usize, u64> = duplicates.into_iter().collect();
        table.reject_where(|i, _| {
            first_line_of_duplicate
                .get(&i)
                .map(|first| format!("id: duplicate of line {first}"))
        });
    }
}

/// (row, line of the first row with its id) for every row whose id repeats
/// an earlier row's, through 256 shards (see [`dedupe`]). Each row is one
/// u64 there: 32 bits of its hash (those under the shard's 8), then its row
/// number, half the memory of a (hash, row) pair to write and sort. Rows
/// whose 40 bits of hash are equal and ids are not stay apart, checked by
/// their ids.
fn duplicates_sharded<T: Sync>(
    rows: &[T],
    lines: &[u64],
    id: impl Fn(&T) -> &str + Sync,
    hash: impl Fn(&str) -> u64 + Sync,
) -> Vec<(usize, u64)> {
    const SHARD_BITS: u32 = 8;
    let hashes: Vec<u64> = rows.par_iter().map(|r| hash(id(r))).collect();
    let shard = |h: u64| (h >> (64 - SHARD_BITS)) as usize;
    let mut start = vec![0usize; (1 << SHARD_BITS) + 1];
    for &h in &hashes {
        start[shard(h) + 1] += 1;
    }
    for k in 1..start.len() {
        start[k] += start[k - 1];
    }
    let mut fill = start.clone();
    let mut order = vec![0u64; rows.len()];
    for (i, &h) in hashes.iter().enumerate() {
        let slot = &mut fill[shard(h)];
        order[*slot] = ((h << SHARD_BITS) & !0xFFFF_FFFF) | i as u64;
        *slot += 1;
    }
    drop(hashes);
    let mut shards = Vec::with_capacity(1 << SHARD_BITS);
    let mut rest = order.as_mut_slice();
    for k in 0..1 << SHARD_BITS {
        let (head, tail) = rest.split_at_mut(start[k + 1] - start[k]);
        shards.push(head);
        rest = tail;
    }
    let row = |packed: u64| (packed & 0xFFFF_FFFF) as usize;
    shards
        .into_par_iter()
        .flat_map_iter(|shard| {
            // By hash, then row: a run of equal hashes is in row order.
            shard.sort_unstable();
            let mut found = Vec::new();
            let mut firsts: Vec<usize> = Vec::new();
            for run in shard
                .chunk_by(|a, b| a >> 32 == b >> 32)
                .filter(|run| run.len() > 1)
            {
                // Each row is a duplicate of the first earlier row with the
                // same id, or the first of its own.
                firsts.clear();
                for &packed in run {
                    let i = row(packed);
                    match firsts.iter().find(|&&f| id(&rows[f]) == id(&rows[i])) {
                        Some(&f) => found.push((i, lines[f])),
                        None => firsts.push(i),
                    }
                }
            }
            found
        })
        .collect()
}

/// What [`duplicates_sharded`] finds, through a map of each id's first row.
fn duplicates_by_map<T>(rows: &[T], lines: &[u64], id: impl Fn(&T) -> &str) -> Vec<(usize, u64)> {
    let mut first: FastMap<&str, usize> = FastMap::default();
    let mut found = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match first.get(id(r)) {
            Some(&f) => found.push((i, lines[f])),
            None => {
                first.insert(id(r), i);
            }
        }
    }
    found
}

/// Checks ids and the references between tables; rows that break them are
/// rejected. The dataset's promise (unique ids, every reference resolves)
/// holds for whatever comes out.
pub(crate) fn link(
    mut accounts: Table<Account>,
    mut partners: Table<Partner>,
    mut reps: Table<PartnerRep>,
    mut opportunities: Table<Opportunity>,
    mut registrations: Table<Registration>,
    mut users: Table<User>,
) -> Loaded {
    // The account ids' index is built beside the opportunities' dedupe, then
    // each opportunity's account is looked up in it, a few ahead at a time
    // (see `crate::id_index::IdIndex`): at 200k accounts it is larger than the
    // cache.
    let ((), account_ids) = rayon::join(
        || dedupe(&mut opportunities, |o| &o.id),
        || {
            dedupe(&mut accounts, |a| &a.id);
            dedupe(&mut partners, |p| &p.id);
            dedupe(&mut reps, |r| &r.id);
            dedupe(&mut registrations, |r| &r.id);
            dedupe(&mut users, |u| &u.id);
            crate::id_index::IdIndex::build(accounts.rows.iter().map(|a| a.id.as_str()))
        },
    );

    let partner_ids: crate::fast::FastSet<&str> =
        partners.rows.iter().map(|p| p.id.as_str()).collect();
    let unknown_partner = |id: &str| {
        (!partner_ids.contains(id)).then(|| format!("partner_id: no partner '{id}' in partners"))
    };
    reps.reject_where(|_, r| unknown_partner(&r.partner_id));
    registrations.reject_where(|_, r| unknown_partner(&r.partner_id));
    // Each opportunity's account is looked up in the same pass that checks
    // its partner: a pass over a million rows costs as much as the lookups.
    opportunities.reject_in_chunks(|rows, reject| {
        account_ids.rows_of(
            rows.iter().enumerate(),
            |(_, o)| &o.account_id,
            |(k, o), account| {
                let reason = if account == crate::id_index::NO_ROW {
                    Some(format!(
                        "account_id: no account '{}' in accounts",
                        o.account_id
                    ))
                } else {
                    o.partner_id.as_deref().and_then(unknown_partner)
                };
                if let Some(reason) = reason {
                    reject(k, reason);
                }
            },
        )
    });

    let mut rejected = Vec::new();
    let dataset = Dataset {
        accounts: take_rows(&mut rejected, accounts),
        partners: take_rows(&mut rejected, partners),
        reps: take_rows(&mut rejected, reps),
        opportunities: take_rows(&mut rejected, opportunities),
        registrations: take_rows(&mut rejected, registrations),
        users: take_rows(&mut rejected, users),
    };
    rejected.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Loaded { dataset, rejected }
}

pub(crate) fn take_rows<T>(rejected: &mut Vec<Rejected>, t: Table<T>) -> Vec<T> {
    rejected.extend(t.rejected);
    t.rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(ids: &[&str]) -> Table<User> {
        let mut t = Table::new("users.csv".into(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            let user = User {
                id: id.to_string(),
                name: None,
                email: None,
            };
            t.push(user, i as u64 + 2);
        }
        t
    }

    /// What dedupe must do, the plain way: the first row of each id kept,
    /// every later one rejected with the first one's line.
    fn expected(ids: &[&str]) -> (Vec<String>, Vec<(u64, String)>) {
        let mut first: std::collections::HashMap<&str, u64> = Default::default();
        let mut kept = Vec::new();
        let mut rejected = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let line = i as u64 + 2;
            match first.get(id) {
                Some(f) => rejected.push((line, format!("id: duplicate of line {f}"))),
                None => {
                    first.insert(id, line);
                    kept.push(id.to_string());
                }
            }
        }
        (kept, rejected)
    }

    fn outcome(t: &Table<User>) -> (Vec<String>, Vec<(u64, String)>) {
        let mut rejected: Vec<(u64, String)> = t
            .rejected
            .iter()
            .map(|r| (r.line, r.reason.clone()))
            .collect();
        rejected.sort();
        (t.rows.iter().map(|u| u.id.clone()).collect(), rejected)
    }

    #[test]
    fn ids_whose_hashes_collide_are_told_apart_by_their_ids() {
        let ids = ["a", "b", "a", "c", "b", "a", "d"];
        for hash in [
            |_: &str| 7u64,
            |k: &str| k.len() as u64,
            |k: &str| u64::MAX - k.len() as u64,
        ] {
            let mut t = users(&ids);
            dedupe_by(&mut t, |u| &u.id, hash);
            assert_eq!(outcome(&t), expected(&ids));
            assert_eq!(t.lines, vec![2, 3, 5, 8]);
        }
    }

    #[test]
    fn rejecting_by_chunks_rejects_what_rejecting_row_by_row_does() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("U-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let bad = |id: &str| id.ends_with('7').then(|| format!("id: {id} ends in 7"));
        let mut by_row = users(&ids);
        by_row.reject_where(|_, u| bad(&u.id));
        let mut by_chunk = users(&ids);
        by_chunk.reject_in_chunks(|rows, reject| {
            for (k, u) in rows.iter().enumerate() {
                if let Some(reason) = bad(&u.id) {
                    reject(k, reason);
                }
            }
        });
        assert_eq!(by_chunk.rejected.len(), 2_000);
        assert_eq!(outcome(&by_chunk), outcome(&by_row));
        assert_eq!(by_chunk.lines, by_row.lines);
        // In row order, the last chunk's rows last.
        let lines: Vec<u64> = by_chunk.rejected.iter().map(|r| r.line).collect();
        assert!(lines.is_sorted() && lines.last() == Some(&19_999));
    }

    proptest::proptest! {
        #[test]
        fn dedupe_keeps_each_ids_first_row_and_names_it_for_the_rest(
            ids in proptest::collection::vec("[a-e]{1,2}", 0..300)
        ) {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut t = users(&ids);
            dedupe(&mut t, |u| &u.id);
            proptest::prop_assert_eq!(outcome(&t), expected(&ids));
            // A hash that puts every id in one shard, most of them equal.
            let mut t = users(&ids);
            dedupe_by(&mut t, |u| &u.id, |k| k.len() as u64);
            proptest::prop_assert_eq!(outcome(&t), expected(&ids));
            // The two ways find the same rows, with the same first lines.
            let t = users(&ids);
            let mut sharded = duplicates_sharded(&t.rows, &t.lines, |u| &u.id, |k| k.len() as u64);
            sharded.sort_unstable();
            proptest::prop_assert_eq!(sharded, duplicates_by_map(&t.rows, &t.lines, |u| &u.id));
        }
    }
}
