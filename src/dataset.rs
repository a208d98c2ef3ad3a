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
pub(crate) fn dedupe<T: Sync + Keyed>(table: &mut Table<T>, id: impl Fn(&T) -> &str) {
    let mut first_line_of_duplicate: FastMap<usize, u64> = FastMap::default();
    {
        let mut first: FastMap<&str, u64> = crate::fast::map_with_capacity(table.rows.len());
        for (i, row) in table.rows.iter().enumerate() {
            match first.entry(id(row)) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    first_line_of_duplicate.insert(i, *e.get());
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(table.lines[i]);
                }
            }
        }
    }
    if !first_line_of_duplicate.is_empty() {
        table.reject_where(|i, _| {
            first_line_of_duplicate
                .get(&i)
                .map(|first| format!("id: duplicate of line {first}"))
        });
    }
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
    rayon::join(
        || dedupe(&mut opportunities, |o| &o.id),
        || {
            dedupe(&mut accounts, |a| &a.id);
            dedupe(&mut partners, |p| &p.id);
            dedupe(&mut reps, |r| &r.id);
            dedupe(&mut registrations, |r| &r.id);
            dedupe(&mut users, |u| &u.id);
        },
    );

    let account_ids: crate::fast::FastSet<&str> =
        accounts.rows.iter().map(|a| a.id.as_str()).collect();
    let partner_ids: crate::fast::FastSet<&str> =
        partners.rows.iter().map(|p| p.id.as_str()).collect();
    let unknown_partner = |id: &str| {
        (!partner_ids.contains(id)).then(|| format!("partner_id: no partner '{id}' in partners"))
    };
    reps.reject_where(|_, r| unknown_partner(&r.partner_id));
    registrations.reject_where(|_, r| unknown_partner(&r.partner_id));
    opportunities.reject_where(|_, o| {
        if !account_ids.contains(o.account_id.as_str()) {
            return Some(format!(
                "account_id: no account '{}' in accounts",
                o.account_id
            ));
        }
        o.partner_id.as_deref().and_then(unknown_partner)
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
