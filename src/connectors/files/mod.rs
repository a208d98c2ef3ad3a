//! The files source (SPEC §2): a folder of CSV (or JSONL) exports.
//!
//! Reading is driven by the header row: columns in any order, unknown columns
//! ignored, a UTF-8 BOM and CRLF line ends tolerated, quoted fields with commas
//! handled by the `csv` crate. A bad row is rejected with file, line and reason
//! and everything else is still read; a missing required file or column is an
//! [`InputError`] (exit 65).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use csv::{ByteRecord, StringRecord};
use rayon::prelude::*;

use crate::config::ScorecardSettings;
use crate::model::{
    Account, MdfRequest, MdfStatus, Opportunity, OpportunityStatus, Partner, PartnerRep,
    ProgramCost, Registration, RegistrationStatus, Rejected, ReviewInputs, Text, User,
};
use crate::values::{parse_amount, parse_bool, parse_currency, parse_date, parse_timestamp};

pub use crate::dataset::{InputError, Loaded, PrmTables, Table};
pub(crate) use crate::dataset::{dedupe, link, take_rows};

/// A table's columns: name and whether it is required.
type Columns = &'static [(&'static str, bool)];

/// Column positions, one module per table, so each row is read by index.
mod col {
    pub(super) mod account {
        pub(crate) const ALL: super::super::Columns = &[
            ("id", true),
            ("name", true),
            ("domain", false),
            ("website", false),
            ("owner_id", false),
        ];
        pub(crate) const ID: usize = 0;
        pub(crate) const NAME: usize = 1;
        pub(crate) const DOMAIN: usize = 2;
        pub(crate) const WEBSITE: usize = 3;
        pub(crate) const OWNER_ID: usize = 4;
    }
    pub(super) mod partner {
        pub(crate) const ALL: super::super::Columns = &[
            ("id", true),
            ("name", true),
            ("tier", false),
            ("crm_account_id", false),
            ("domain", false),
        ];
        pub(crate) const ID: usize = 0;
        pub(crate) const NAME: usize = 1;
        pub(crate) const TIER: usize = 2;
        pub(crate) const CRM_ACCOUNT_ID: usize = 3;
        pub(crate) const DOMAIN: usize = 4;
    }
    pub(super) mod rep {
        pub(crate) const ALL: super::super::Columns = &[
            ("id", true),
            ("partner_id", true),
            ("email", false),
            ("name", false),
            ("active", false),
            ("joined_on", false),
            ("left_on", false),
        ];
        pub(crate) const ID: usize = 0;
        pub(crate) const PARTNER_ID: usize = 1;
        pub(crate) const EMAIL: usize = 2;
        pub(crate) const NAME: usize = 3;
        pub(crate) const ACTIVE: usize = 4;
        pub(crate) const JOINED_ON: usize = 5;
        pub(crate) const LEFT_ON: usize = 6;
    }
    pub(super) mod opportunity {
        pub(crate) const ALL: super::super::Columns = &[
            ("id", true),
            ("account_id", true),
            ("status", true),
            ("created_at", true),
            ("name", false),
            ("owner_id", false),
            ("stage", false),
            ("amount", false),
            ("currency", false),
            ("close_date", false),
            ("partner_id", false),
            ("partner_rep", false),
            ("registration_id", false),
            ("campaign_id", false),
        ];
        pub(crate) const ID: usize = 0;
        pub(crate) const ACCOUNT_ID: usize = 1;
        pub(crate) const STATUS: usize = 2;
        pub(crate) const CREATED_AT: usize = 3;
        pub(crate) const NAME: usize = 4;
        pub(crate) const OWNER_ID: usize = 5;
        pub(crate) const STAGE: usize = 6;
        pub(crate) const AMOUNT: usize = 7;
        pub(crate) const CURRENCY: usize = 8;
        pub(crate) const CLOSE_DATE: usize = 9;
        pub(crate) const PARTNER_ID: usize = 10;
        pub(crate) const PARTNER_REP: usize = 11;
        pub(crate) const REGISTRATION_ID: usize = 12;
        pub(crate) const CAMPAIGN_ID: usize = 13;
    }
    pub(super) mod program_cost {
        pub(crate) const ALL: super::super::Columns = &[
            ("id", true),
            ("quarter", true),
            ("amount", true),
            ("currency", false),
            ("partner_id", false),
            ("category", false),
        ];
        pub(crate) const ID: usize = 0;
        pub(crate) const QUARTER: usize = 1;
        pub(crate) const AMOUNT: usize = 2;
        pub(crate) const CURRENCY: usize = 3;
        pub(crate) const PARTNER_ID: usize = 4;
        pub(crate) const CATEGORY: usize = 5;
    }
    pub(super) mod mdf {
        pub(crate) const ALL: super::super::Columns = &[
            ("id", true),
            ("partner_id", true),
            ("status", true),
            ("amount", true),
            ("claimed_amount", false),
            ("currency", false),
            ("campaign_id", false),
            ("start_date", true),
            ("end_date", false),
        ];
        pub(crate) const ID: usize = 0;
        pub(crate) const PARTNER_ID: usize = 1;
        pub(crate) const STATUS: usize = 2;
        pub(crate) const AMOUNT: usize = 3;
        pub(crate) const CLAIMED_AMOUNT: usize = 4;
        pub(crate) const CURRENCY: usize = 5;
        pub(crate) const CAMPAIGN_ID: usize = 6;
        pub(crate) const START_DATE: usize = 7;
        pub(crate) const END_DATE: usize = 8;
    }
    pub(super) mod registration {
        pub(crate) const ALL: super::super::Columns = &[
            ("id", true),
            ("partner_id", true),
            ("customer_name", true),
            ("status", true),
            ("submitted_at", true),
            ("rep", false),
            ("customer_domain", false),
            ("account_id", false),
            ("opportunity_id", false),
            ("approved_at", false),
            ("expires_at", false),
            ("amount", false),
        ];
        pub(crate) const ID: usize = 0;
        pub(crate) const PARTNER_ID: usize = 1;
        pub(crate) const CUSTOMER_NAME: usize = 2;
        pub(crate) const STATUS: usize = 3;
        pub(crate) const SUBMITTED_AT: usize = 4;
        pub(crate) const REP: usize = 5;
        pub(crate) const CUSTOMER_DOMAIN: usize = 6;
        pub(crate) const ACCOUNT_ID: usize = 7;
        pub(crate) const OPPORTUNITY_ID: usize = 8;
        pub(crate) const APPROVED_AT: usize = 9;
        pub(crate) const EXPIRES_AT: usize = 10;
        pub(crate) const AMOUNT: usize = 11;
    }
    pub(super) mod user {
        pub(crate) const ALL: super::super::Columns =
            &[("id", true), ("name", false), ("email", false)];
        pub(crate) const ID: usize = 0;
        pub(crate) const NAME: usize = 1;
        pub(crate) const EMAIL: usize = 2;
    }
}

/// One row, read by column position. Empty (or all-blank) cells are absent.
struct Row<'a> {
    /// A record read as text: its bytes were checked to be UTF-8 once, as a
    /// whole, and its fields are not checked again.
    record: &'a StringRecord,
    /// For each of the table's columns, its index in the record, if present.
    index: &'a [Option<usize>],
    columns: Columns,
}

impl<'a> Row<'a> {
    fn get(&self, col: usize) -> Option<&'a str> {
        let i = self.index[col]?;
        let v = trim(self.record.get(i)?);
        (!v.is_empty()).then_some(v)
    }

    fn name(&self, col: usize) -> &'static str {
        self.columns[col].0
    }

    fn required(&self, col: usize) -> Result<&'a str, String> {
        self.get(col)
            .ok_or_else(|| format!("{}: required value is empty", self.name(col)))
    }

    fn opt_string(&self, col: usize) -> Option<String> {
        self.get(col).map(str::to_string)
    }

    fn opt_text(&self, col: usize) -> Option<Text> {
        self.get(col).map(Text::from)
    }

    fn parsed<T>(
        &self,
        col: usize,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, String> {
        match self.get(col) {
            None => Ok(None),
            Some(v) => parse(v)
                .map(Some)
                .ok_or_else(|| format!("{}: not {what}: '{v}'", self.name(col))),
        }
    }

    fn required_parsed<T>(
        &self,
        col: usize,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, String> {
        self.required(col)?;
        self.parsed(col, what, parse)?
            .ok_or_else(|| format!("{}: required value is empty", self.name(col)))
    }
}

/// `str::trim`, answering the usual value (its first and last chars printable
/// ASCII, so nothing to trim) without decoding its ends: the file reader
/// trims every field of millions of rows.
fn trim(v: &str) -> &str {
    let printable = |b: Option<&u8>| b.is_some_and(|b| (b'!'..=b'~').contains(b));
    if printable(v.as_bytes().first()) && printable(v.as_bytes().last()) {
        v
    } else {
        v.trim()
    }
}

/// Locates `name.csv` or `name.jsonl` in `dir`.
fn locate(dir: &Path, name: &'static str) -> Result<Option<PathBuf>, InputError> {
    let csv = dir.join(format!("{name}.csv"));
    let jsonl = dir.join(format!("{name}.jsonl"));
    match (csv.is_file(), jsonl.is_file()) {
        (true, true) => Err(InputError::Ambiguous {
            dir: dir.display().to_string(),
            name,
        }),
        (true, false) => Ok(Some(csv)),
        (false, true) => Ok(Some(jsonl)),
        (false, false) => Ok(None),
    }
}

fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads one table, calling `parse` on every row.
fn read_table<T: Send>(
    path: &Path,
    columns: Columns,
    parse: impl Fn(&Row) -> Result<T, String> + Sync,
) -> Result<Table<T>, InputError> {
    let label = file_label(path);
    let io = |source| InputError::Io {
        file: label.clone(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    // A UTF-8 byte-order mark is not part of the first column's name.
    if reader.fill_buf().map_err(io)?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    let mut table = Table::new(label.clone(), 0);
    if path.extension().is_some_and(|e| e == "jsonl") {
        read_jsonl(reader, columns, &parse, &mut table)?;
    } else {
        let size = reader.get_ref().metadata().map_err(io)?.len();
        read_csv(reader, size, columns, &parse, &mut table)?;
    }
    Ok(table)
}

/// Records per chunk: while both cores parse one chunk, the next is read.
const CHUNK: usize = 8192;

/// A raw record and the line it starts on.
struct Raw {
    record: ByteRecord,
    line: u64,
}

/// What became of one raw record.
enum Outcome<T> {
    Row(T),
    Rejected(String),
    Blank,
}

fn read_csv<T: Send>(
    reader: impl Read + Send,
    size: u64,
    columns: Columns,
    parse: &(impl Fn(&Row) -> Result<T, String> + Sync),
    table: &mut Table<T>,
) -> Result<(), InputError> {
    // Records end at `\n`: with CRLF as the terminator the csv crate reports
    // every record after the first one line too early. The `\r` that a CRLF
    // file leaves at the end of a record's last field is trimmed like any
    // other surrounding white space.
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(reader);
    let file = table.file.clone();
    let mut header = ByteRecord::new();
    let got_header = csv
        .read_byte_record(&mut header)
        .map_err(|e| unreadable(&file, 1, &e))?;
    let header: Vec<String> = if got_header {
        header
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_ascii_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let index = resolve_columns(&header, columns, &file)?;
    let width = header.len();

    // The record is taken out of its pool slot to be checked as UTF-8 once
    // (`StringRecord`, no copy) and put back after, so its buffers are reused.
    let judge = |raw: &mut ByteRecord| -> Outcome<T> {
        if raw.len() == 1 && raw.get(0).is_some_and(|f| f.trim_ascii().is_empty()) {
            return Outcome::Blank;
        }
        if raw.len() != width {
            return Outcome::Rejected(format!(
                "expected {width} fields as in the header, found {}",
                raw.len()
            ));
        }
        let text = match StringRecord::from_byte_record(std::mem::take(raw)) {
            Ok(text) => text,
            Err(e) => {
                *raw = e.into_byte_record();
                return Outcome::Rejected("not valid UTF-8".into());
            }
        };
        let row = Row {
            record: &text,
            index: &index,
            columns,
        };
        let outcome = match parse(&row) {
            Ok(v) => Outcome::Row(v),
            Err(reason) => Outcome::Rejected(reason),
        };
        *raw = text.into_byte_record();
        outcome
    };

    let mut current = Vec::new();
    let mut next = Vec::new();
    let mut outcomes = Vec::with_capacity(CHUNK);
    let mut n = read_chunk(&mut csv, &mut current, &file)?;
    table.reserve(rows_expected(size, csv.position().byte(), n));
    while n > 0 {
        let (next_n, ()) = rayon::join(
            || read_chunk(&mut csv, &mut next, &file),
            || {
                current[..n]
                    .par_iter_mut()
                    .map(|raw| judge(&mut raw.record))
                    .collect_into_vec(&mut outcomes);
            },
        );
        for (raw, outcome) in current[..n].iter().zip(outcomes.drain(..)) {
            match outcome {
                Outcome::Row(v) => table.push(v, raw.line),
                Outcome::Rejected(reason) => table.reject(raw.line, reason),
                Outcome::Blank => {}
            }
        }
        std::mem::swap(&mut current, &mut next);
        n = next_n?;
    }
    Ok(())
}

/// How many rows a file of `size` bytes holds, estimated from its first
/// chunk (`rows` records in its first `read` bytes), with a quarter more for
/// rows longer at the start than later. Room for them is made at once, so
/// that the table is not copied as it grows; room never used is address
/// space only (its pages are never touched). A file read whole in its first
/// chunk holds just those rows. This replaced a first pass that counted the
/// file's lines.
fn rows_expected(size: u64, read: u64, rows: usize) -> usize {
    if rows < CHUNK || read == 0 {
        return rows;
    }
    let per_row = read as f64 / rows as f64;
    let estimate = size as f64 / per_row * 1.25;
    // Saturates on absurd sizes; the reservation is then refused and the
    // table grows as it is read.
    estimate as usize
}

fn unreadable(file: &str, line: u64, e: &csv::Error) -> InputError {
    InputError::Unreadable {
        file: file.to_string(),
        line,
        reason: e.to_string(),
    }
}

/// Reads up to [`CHUNK`] raw records into `pool` (reusing its buffers);
/// returns how many.
fn read_chunk<R: Read>(
    csv: &mut csv::Reader<R>,
    pool: &mut Vec<Raw>,
    file: &str,
) -> Result<usize, InputError> {
    let mut n = 0;
    while n < CHUNK {
        if n == pool.len() {
            pool.push(Raw {
                record: ByteRecord::new(),
                line: 0,
            });
        }
        let before = csv.position().line();
        let raw = &mut pool[n];
        // The csv reader cannot resynchronise after an I/O error.
        if !csv
            .read_byte_record(&mut raw.record)
            .map_err(|e| unreadable(file, before, &e))?
        {
            break;
        }
        raw.line = raw.record.position().map_or(before, |p| p.line());
        n += 1;
    }
    Ok(n)
}

fn read_jsonl<T>(
    reader: impl BufRead,
    columns: Columns,
    parse: &impl Fn(&Row) -> Result<T, String>,
    table: &mut Table<T>,
) -> Result<(), InputError> {
    // Each object becomes a record laid out in the table's column order.
    let index: Vec<Option<usize>> = (0..columns.len()).map(Some).collect();
    for (n, text) in reader.lines().enumerate() {
        let line = n as u64 + 1;
        let text = match text {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                table.reject(line, "not valid UTF-8".into());
                continue;
            }
            Err(e) => {
                return Err(InputError::Io {
                    file: table.file.clone(),
                    source: e,
                });
            }
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<UniqueKeys>(text) {
            Ok(UniqueKeys(o)) => o,
            Err(e) => {
                table.reject(line, format!("not a JSON object: {e}"));
                continue;
            }
        };
        let mut record = StringRecord::with_capacity(text.len(), columns.len());
        let mut bad = None;
        for (name, _) in columns {
            let cell = match object.get(*name) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                Some(serde_json::Value::Number(x)) => x.to_string(),
                Some(_) => {
                    bad = Some(format!("{name}: not a single value"));
                    String::new()
                }
            };
            record.push_field(&cell);
        }
        if let Some(reason) = bad {
            table.reject(line, reason);
            continue;
        }
        let row = Row {
            record: &record,
            index: &index,
            columns,
        };
        match parse(&row) {
            Ok(v) => table.push(v, line),
            Err(reason) => table.reject(line, reason),
        }
    }
    Ok(())
}

/// A JSON object whose keys are all different: a key given twice in one
/// line is refused (which value is meant cannot be known), where
/// `serde_json` alone would keep the last one silently.
struct UniqueKeys(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format_args!(
                            "key '{k}' appears more than once"
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueKeys(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Maps each of the table's columns to its position in the header.
fn resolve_columns(
    header: &[String],
    columns: Columns,
    file: &str,
) -> Result<Vec<Option<usize>>, InputError> {
    columns
        .iter()
        .map(|(name, required)| {
            let mut found = header.iter().enumerate().filter(|(_, h)| h == name);
            let at = found.next().map(|(i, _)| i);
            // Two columns of a name the table reads: which one is meant
            // cannot be known, so none is guessed.
            if let (Some(first), Some((second, _))) = (at, found.next()) {
                return Err(InputError::DuplicateColumn {
                    file: file.to_string(),
                    column: name,
                    first: first + 1,
                    second: second + 1,
                });
            }
            match (at, required) {
                (None, true) => Err(InputError::MissingColumn {
                    file: file.to_string(),
                    column: name,
                }),
                (at, _) => Ok(at),
            }
        })
        .collect()
}

fn parse_account(r: &Row) -> Result<Account, String> {
    use col::account::*;
    Ok(Account {
        id: r.required(ID)?.to_string(),
        name: r.required(NAME)?.to_string(),
        domain: r.opt_string(DOMAIN),
        website: r.opt_string(WEBSITE),
        owner_id: r.opt_string(OWNER_ID),
    })
}

fn parse_partner(r: &Row) -> Result<Partner, String> {
    use col::partner::*;
    Ok(Partner {
        id: r.required(ID)?.to_string(),
        name: r.required(NAME)?.to_string(),
        tier: r.opt_string(TIER),
        crm_account_id: r.opt_string(CRM_ACCOUNT_ID),
        domain: r.opt_string(DOMAIN),
    })
}

fn parse_rep(r: &Row) -> Result<PartnerRep, String> {
    use col::rep::*;
    Ok(PartnerRep {
        id: r.required(ID)?.to_string(),
        partner_id: r.required(PARTNER_ID)?.to_string(),
        email: r.opt_string(EMAIL),
        name: r.opt_string(NAME),
        active: r.parsed(ACTIVE, "a boolean", parse_bool)?.unwrap_or(true),
        joined_on: r.parsed(JOINED_ON, "a date (YYYY-MM-DD)", parse_date)?,
        left_on: r.parsed(LEFT_ON, "a date (YYYY-MM-DD)", parse_date)?,
    })
}

fn parse_opportunity_status(s: &str) -> Option<OpportunityStatus> {
    s.parse().ok()
}

fn parse_registration_status(s: &str) -> Option<RegistrationStatus> {
    s.parse().ok()
}

fn parse_opportunity(r: &Row, money: &ScorecardSettings) -> Result<Opportunity, String> {
    use col::opportunity::*;
    let amount = match r.parsed(AMOUNT, "a decimal amount", parse_amount)? {
        None => None,
        Some(value) => {
            let currency = r.parsed(CURRENCY, "a currency code", parse_currency)?;
            Some(crate::values::money(value, currency, money))
        }
    };
    Ok(Opportunity {
        id: r.required(ID)?.into(),
        account_id: r.required(ACCOUNT_ID)?.into(),
        status: r.required_parsed(STATUS, "one of open, won, lost", parse_opportunity_status)?,
        created_at: r.required_parsed(CREATED_AT, "a timestamp", parse_timestamp)?,
        name: r.opt_text(NAME),
        owner_id: r.opt_text(OWNER_ID),
        stage: r.opt_text(STAGE),
        amount,
        close_date: r.parsed(CLOSE_DATE, "a date (YYYY-MM-DD)", parse_date)?,
        partner_id: r.opt_text(PARTNER_ID),
        partner_rep: r.opt_text(PARTNER_REP),
        registration_id: r.opt_text(REGISTRATION_ID),
        campaign_id: r.opt_text(CAMPAIGN_ID),
    })
}

/// A review quarter label: `2026-Q3`.
fn parse_quarter_label(s: &str) -> Option<String> {
    let (year, q) = s.split_once("-Q").or_else(|| s.split_once("-q"))?;
    let valid = year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && matches!(q, "1" | "2" | "3" | "4");
    valid.then(|| format!("{year}-Q{q}"))
}

fn parse_program_cost(r: &Row, money: &ScorecardSettings) -> Result<ProgramCost, String> {
    use col::program_cost::*;
    let value = r.required_parsed(AMOUNT, "a decimal amount", parse_amount)?;
    let currency = r.parsed(CURRENCY, "a currency code", parse_currency)?;
    Ok(ProgramCost {
        id: r.required(ID)?.to_string(),
        quarter: r.required_parsed(QUARTER, "a quarter like 2026-Q3", parse_quarter_label)?,
        amount: crate::values::money(value, currency, money),
        partner_id: r.opt_string(PARTNER_ID),
        category: r.opt_string(CATEGORY),
    })
}

fn parse_mdf_status(s: &str) -> Option<MdfStatus> {
    match s.to_ascii_lowercase().as_str() {
        "requested" => Some(MdfStatus::Requested),
        "approved" => Some(MdfStatus::Approved),
        "rejected" => Some(MdfStatus::Rejected),
        "claimed" => Some(MdfStatus::Claimed),
        "paid" => Some(MdfStatus::Paid),
        _ => None,
    }
}

fn parse_mdf(r: &Row, money: &ScorecardSettings) -> Result<MdfRequest, String> {
    use col::mdf::*;
    let currency = r.parsed(CURRENCY, "a currency code", parse_currency)?;
    let amount = r.required_parsed(AMOUNT, "a decimal amount", parse_amount)?;
    let claimed = r.parsed(CLAIMED_AMOUNT, "a decimal amount", parse_amount)?;
    let start_date = r.required_parsed(START_DATE, "a date (YYYY-MM-DD)", parse_date)?;
    let end_date = r.parsed(END_DATE, "a date (YYYY-MM-DD)", parse_date)?;
    if end_date.is_some_and(|e| e < start_date) {
        return Err("end_date: before start_date".into());
    }
    Ok(MdfRequest {
        id: r.required(ID)?.to_string(),
        partner_id: r.required(PARTNER_ID)?.to_string(),
        status: r.required_parsed(
            STATUS,
            "one of requested, approved, rejected, claimed, paid",
            parse_mdf_status,
        )?,
        amount: crate::values::money(amount, currency.clone(), money),
        claimed_amount: claimed.map(|v| crate::values::money(v, currency, money)),
        campaign_id: r.opt_string(CAMPAIGN_ID),
        start_date,
        end_date,
    })
}

/// Reads the review's optional tables (SPEC §6.1): `program_costs` from
/// `crm` and `mdf` from `prm` (the same folder for `--input`). An absent
/// table stays `None`; rows naming a partner not in `partners`, or repeating
/// an id, are rejected like any other bad row.
pub fn load_review_inputs(
    crm: &Path,
    prm: &Path,
    partners: &[Partner],
    money: &ScorecardSettings,
) -> Result<(ReviewInputs, Vec<Rejected>), InputError> {
    let partner_ids: crate::fast::FastSet<&str> = partners.iter().map(|p| p.id.as_str()).collect();
    let unknown_partner = |id: &str| {
        (!partner_ids.contains(id)).then(|| format!("partner_id: no partner '{id}' in partners"))
    };
    let mut rejected = Vec::new();
    let costs = match locate(crm, "program_costs")? {
        None => None,
        Some(path) => {
            let mut t = read_table(&path, col::program_cost::ALL, |r| {
                parse_program_cost(r, money)
            })?;
            dedupe(&mut t, |c| &c.id);
            t.reject_where(|_, c| c.partner_id.as_deref().and_then(unknown_partner));
            Some(take_rows(&mut rejected, t))
        }
    };
    let mdf = match locate(prm, "mdf")? {
        None => None,
        Some(path) => {
            let mut t = read_table(&path, col::mdf::ALL, |r| parse_mdf(r, money))?;
            dedupe(&mut t, |m| &m.id);
            t.reject_where(|_, m| unknown_partner(&m.partner_id));
            Some(take_rows(&mut rejected, t))
        }
    };
    rejected.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok((
        ReviewInputs {
            program_costs: costs,
            mdf,
        },
        rejected,
    ))
}

fn parse_registration(r: &Row) -> Result<Registration, String> {
    use col::registration::*;
    Ok(Registration {
        id: r.required(ID)?.to_string(),
        partner_id: r.required(PARTNER_ID)?.to_string(),
        customer_name: r.required(CUSTOMER_NAME)?.to_string(),
        status: r.required_parsed(
            STATUS,
            "one of submitted, approved, rejected, expired, cancelled, won, lost",
            parse_registration_status,
        )?,
        submitted_at: r.required_parsed(SUBMITTED_AT, "a timestamp", parse_timestamp)?,
        rep: r.opt_string(REP),
        customer_domain: r.opt_string(CUSTOMER_DOMAIN),
        account_id: r.opt_string(ACCOUNT_ID),
        opportunity_id: r.opt_string(OPPORTUNITY_ID),
        approved_at: r.parsed(APPROVED_AT, "a timestamp", parse_timestamp)?,
        expires_at: r.parsed(EXPIRES_AT, "a timestamp", parse_timestamp)?,
        amount: r.parsed(AMOUNT, "a decimal amount", parse_amount)?,
    })
}

fn parse_user(r: &Row) -> Result<User, String> {
    use col::user::*;
    Ok(User {
        id: r.required(ID)?.to_string(),
        name: r.opt_string(NAME),
        email: r.opt_string(EMAIL),
    })
}

/// Reads a required or optional table; an absent optional one is empty.
fn load_table<T: Send>(
    dir: &Path,
    name: &'static str,
    required: bool,
    columns: Columns,
    parse: impl Fn(&Row) -> Result<T, String> + Sync,
) -> Result<Table<T>, InputError> {
    match locate(dir, name)? {
        Some(path) => read_table(&path, columns, parse),
        None if required => Err(InputError::MissingFile {
            dir: dir.display().to_string(),
            name,
        }),
        None => Ok(Table::new(format!("{name}.csv"), 0)),
    }
}

/// Reads every table of `dir` (in parallel), then checks the references
/// between them. Rows whose references do not resolve are rejected too.
pub fn load(dir: &Path, money: &ScorecardSettings) -> Result<Loaded, InputError> {
    load_split(dir, dir, money)
}

/// As [`load`], with the CRM tables (`accounts`, `opportunities`, `users`)
/// in `crm` and the PRM tables (`partners`, `partner_reps`, `registrations`)
/// in `prm`.
pub fn load_split(crm: &Path, prm: &Path, money: &ScorecardSettings) -> Result<Loaded, InputError> {
    for dir in [crm, prm] {
        if !dir.is_dir() {
            return Err(InputError::Io {
                file: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
            });
        }
    }
    // The opportunities are by far the largest table: read them on their own
    // thread while this one reads the rest.
    let started = std::time::Instant::now();
    let (opportunities, rest) = rayon::join(
        || {
            let t = load_table(crm, "opportunities", true, col::opportunity::ALL, |r| {
                parse_opportunity(r, money)
            });
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "Opportunities read."
            );
            t
        },
        || -> Result<_, InputError> {
            Ok((
                load_table(crm, "accounts", true, col::account::ALL, parse_account)?,
                load_table(prm, "partners", true, col::partner::ALL, parse_partner)?,
                load_table(prm, "partner_reps", true, col::rep::ALL, parse_rep)?,
                load_table(
                    prm,
                    "registrations",
                    true,
                    col::registration::ALL,
                    parse_registration,
                )?,
                load_table(crm, "users", false, col::user::ALL, parse_user)?,
            ))
            .inspect(|_| {
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "Other tables read."
                );
            })
        },
    );
    let (accounts, partners, reps, registrations, users) = rest?;
    let opportunities = opportunities?;
    let read = started.elapsed();
    let loaded = link(
        accounts,
        partners,
        reps,
        opportunities,
        registrations,
        users,
    );
    tracing::debug!(
        read_ms = read.as_millis() as u64,
        link_us = (started.elapsed() - read).as_micros() as u64,
        "Files read."
    );
    Ok(loaded)
}

/// Reads the PRM tables (`partners`, `partner_reps`, `registrations`) of a
/// folder, for a PRM kept in files beside a CRM connector.
pub fn load_prm(prm: &Path) -> Result<PrmTables, InputError> {
    if !prm.is_dir() {
        return Err(InputError::Io {
            file: prm.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }
    Ok(PrmTables {
        partners: load_table(prm, "partners", true, col::partner::ALL, parse_partner)?,
        reps: load_table(prm, "partner_reps", true, col::rep::ALL, parse_rep)?,
        registrations: load_table(
            prm,
            "registrations",
            true,
            col::registration::ALL,
            parse_registration,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNTS: &str =
        "id,name,domain\nA-1,Acme Corp,acme.com\nA-2,\"Widgets, Inc.\",widgets.io\n";
    const PARTNERS: &str = "id,name,tier\nP-1,Northwind,gold\n";
    const REPS: &str = "id,partner_id,email\nPR-1,P-1,ann@northwind.example\n";
    const OPPS: &str = "id,account_id,status,created_at\nO-1,A-1,open,2026-09-01\n";
    const REGS: &str =
        "id,partner_id,customer_name,status,submitted_at\nR-1,P-1,Acme,approved,2026-09-01\n";

    #[test]
    fn room_is_made_for_the_rows_the_first_chunk_foretells() {
        // A file read whole in its first chunk: just its rows.
        assert_eq!(rows_expected(1_000, 1_000, 10), 10);
        // 8,192 rows of 100 bytes in a 100 MB file: a million, and a quarter.
        let chunk = CHUNK as u64;
        assert_eq!(rows_expected(100_000_000, chunk * 100, CHUNK), 1_250_000);
        assert_eq!(rows_expected(u64::MAX, 1, CHUNK), usize::MAX);
    }

    #[test]
    fn a_file_whose_rows_shrink_is_read_whole_and_reserved_once() {
        // Long rows first, then rows a tenth as long: the estimate from the
        // first chunk falls short, and the table grows to take them all.
        let dir = tempfile::tempdir().unwrap();
        let mut body = String::from("id,name\n");
        let long = "x".repeat(200);
        for i in 0..CHUNK {
            body.push_str(&format!("A-{i},{long}\n"));
        }
        for i in CHUNK..CHUNK * 4 {
            body.push_str(&format!("A-{i},y\n"));
        }
        std::fs::write(dir.path().join("accounts.csv"), &body).unwrap();
        let table = read_table(
            &dir.path().join("accounts.csv"),
            col::account::ALL,
            parse_account,
        )
        .unwrap();
        assert_eq!(table.rows.len(), CHUNK * 4);
        assert!(table.rejected.is_empty());
        assert_eq!(table.lines[CHUNK * 4 - 1], CHUNK as u64 * 4 + 1);
        // Uniform rows: room for all of them is made once, from the first
        // chunk (a table left to grow would double to 32,768).
        let uniform: String = std::iter::once("id,name\n".to_string())
            .chain((0..CHUNK * 3).map(|i| format!("A-{i:06},Acme {i:06}\n")))
            .collect();
        std::fs::write(dir.path().join("accounts.csv"), &uniform).unwrap();
        let table = read_table(
            &dir.path().join("accounts.csv"),
            col::account::ALL,
            parse_account,
        )
        .unwrap();
        assert_eq!(table.rows.len(), CHUNK * 3);
        assert!(table.rows.capacity() >= CHUNK * 3);
        assert!(table.rows.capacity() * 10 < CHUNK * 3 * 13);
    }

    proptest::proptest! {
        #[test]
        fn trimming_is_str_trim(v in "[ \t\r\n\u{0b}\u{0c}\u{85}\u{a0}\u{3000}\u{1}\u{7f}a-z~!é]{0,6}") {
            proptest::prop_assert_eq!(trim(&v), v.trim());
        }
    }

    /// Writes a folder with the five required files, some replaced.
    fn folder(replace: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [
            ("accounts.csv", ACCOUNTS),
            ("partners.csv", PARTNERS),
            ("partner_reps.csv", REPS),
            ("opportunities.csv", OPPS),
            ("registrations.csv", REGS),
        ] {
            let body = replace
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(body, |(_, b)| b);
            if !body.is_empty() {
                std::fs::write(dir.path().join(name), body).unwrap();
            }
        }
        dir
    }

    fn money() -> ScorecardSettings {
        let mut s = ScorecardSettings::default();
        s.fx.insert("EUR".into(), 1.08);
        s
    }

    fn load_ok(dir: &tempfile::TempDir) -> Loaded {
        load(dir.path(), &money()).unwrap()
    }

    fn reasons(l: &Loaded) -> Vec<(String, u64, String)> {
        l.rejected
            .iter()
            .map(|r| (r.file.clone(), r.line, r.reason.clone()))
            .collect()
    }

    #[test]
    fn a_clean_folder_loads_everything() {
        let l = load_ok(&folder(&[]));
        assert!(l.rejected.is_empty(), "{:?}", l.rejected);
        assert_eq!(l.dataset.accounts.len(), 2);
        assert_eq!(l.dataset.accounts[1].name, "Widgets, Inc.");
        assert!(l.dataset.reps[0].active, "active defaults to true");
        assert!(l.dataset.users.is_empty(), "users is optional");
    }

    #[test]
    fn bom_crlf_quotes_column_order_and_extra_columns_are_tolerated() {
        let accounts = "\u{feff}Name,notes,ID,website\r\n\"Acme, Corp\",\"said \"\"hi\"\"\",A-1,\"https://acme.com\"\r\n\r\nBeta,x,A-2,\r\n,,,\r\n";
        let l = load_ok(&folder(&[("accounts.csv", accounts)]));
        assert_eq!(
            reasons(&l),
            vec![(
                "accounts.csv".into(),
                5,
                "id: required value is empty".into()
            )],
            "CRLF line numbers count every line"
        );
        let a = &l.dataset.accounts;
        assert_eq!(
            (a[0].id.as_str(), a[0].name.as_str()),
            ("A-1", "Acme, Corp")
        );
        assert_eq!(a[0].website.as_deref(), Some("https://acme.com"));
        assert_eq!(a[1].website, None, "an empty cell is absent");
    }

    #[test]
    fn white_space_around_values_and_names_is_trimmed() {
        let opps = " ID , Account_ID ,status, created_at ,amount, currency \nO-1,  A-1 ,  won ,\t2026-09-01 , 1250.50 , EUR \nO-2,A-1, open ,2026-09-02,  ,   \n";
        let l = load_ok(&folder(&[("opportunities.csv", opps)]));
        assert!(l.rejected.is_empty(), "{:?}", l.rejected);
        let o = &l.dataset.opportunities;
        assert_eq!((o[0].id.as_str(), o[0].account_id.as_str()), ("O-1", "A-1"));
        assert_eq!(o[0].status, crate::model::OpportunityStatus::Won);
        let amount = o[0].amount.as_ref().unwrap();
        assert_eq!(
            (amount.value, amount.currency.as_deref()),
            (1250.5, Some("EUR"))
        );
        assert_eq!(o[1].amount, None, "white space only is an empty cell");
    }

    #[test]
    fn bad_rows_are_rejected_with_file_line_and_reason() {
        let opps = "id,account_id,status,created_at,amount,currency,partner_id\n\
            O-1,A-1,open,2026-09-01,100,EUR,\n\
            O-2,A-1,open,31/02/2026,,,\n\
            O-3,A-1,pending,2026-09-01,,,\n\
            O-4,A-1,won,2026-09-01,1000,JPY,\n\
            O-5,A-404,open,2026-09-01,,,\n\
            O-6,A-1,open,2026-09-01,,,P-404\n\
            O-1,A-1,open,2026-09-01,,,\n\
            O-7,A-1,open,2026-09-01,\"1,000\",,\n\
            O-8,A-1,open\n\
            ,A-1,open,2026-09-01,,,\n\
            \"O-9\nmultiline\",A-1,open,2026-09-01,,,\n\
            O-10,A-1,lost,2026-09-01,,,\n";
        let reps = "id,partner_id,email,active,left_on\nPR-1,P-1,a@b.c,maybe,\nPR-2,P-9,,,\nPR-3,P-1,,false,2026-13-01\n";
        let l = load_ok(&folder(&[
            ("opportunities.csv", opps),
            ("partner_reps.csv", reps),
        ]));
        let o = "opportunities.csv".to_string();
        let r = "partner_reps.csv".to_string();
        assert_eq!(
            reasons(&l),
            vec![
                (
                    o.clone(),
                    3,
                    "created_at: not a timestamp: '31/02/2026'".into()
                ),
                (
                    o.clone(),
                    4,
                    "status: not one of open, won, lost: 'pending'".into()
                ),
                (
                    o.clone(),
                    6,
                    "account_id: no account 'A-404' in accounts".into()
                ),
                (
                    o.clone(),
                    7,
                    "partner_id: no partner 'P-404' in partners".into()
                ),
                (o.clone(), 8, "id: duplicate of line 2".into()),
                (o.clone(), 9, "amount: not a decimal amount: '1,000'".into()),
                (
                    o.clone(),
                    10,
                    "expected 7 fields as in the header, found 3".into()
                ),
                (o.clone(), 11, "id: required value is empty".into()),
                (r.clone(), 2, "active: not a boolean: 'maybe'".into()),
                (
                    r.clone(),
                    3,
                    "partner_id: no partner 'P-9' in partners".into()
                ),
                (
                    r.clone(),
                    4,
                    "left_on: not a date (YYYY-MM-DD): '2026-13-01'".into()
                ),
            ]
        );
        let ids: Vec<&str> = l
            .dataset
            .opportunities
            .iter()
            .map(|o| o.id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["O-1", "O-4", "O-9\nmultiline", "O-10"],
            "everything else is kept, the JPY row without a rate too"
        );
        let eur = l.dataset.opportunities[0].amount.as_ref().unwrap();
        assert_eq!((eur.value, eur.base), (100.0, Some(108.0)));
        let jpy = l.dataset.opportunities[1].amount.as_ref().unwrap();
        assert_eq!(
            (jpy.value, jpy.base),
            (1000.0, None),
            "no rate: amount unknown"
        );
        assert_eq!(eur.currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn invalid_utf8_rejects_only_that_row() {
        let dir = folder(&[]);
        let bytes = b"id,name\nA-1,Acme\nA-2,Caf\xe9\nA-3,Beta\n";
        std::fs::write(dir.path().join("accounts.csv"), bytes).unwrap();
        let l = load_ok(&dir);
        assert_eq!(
            reasons(&l),
            vec![("accounts.csv".into(), 3, "not valid UTF-8".into())]
        );
        assert_eq!(l.dataset.accounts.len(), 2);
    }

    #[test]
    fn a_missing_required_file_or_column_is_an_input_error() {
        let dir = folder(&[("partners.csv", "")]);
        let e = load(dir.path(), &money()).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::MissingFile {
                    name: "partners",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("partners.csv"), "{e}");

        let dir = folder(&[("registrations.csv", "id,partner_id,customer_name,status\n")]);
        let e = load(dir.path(), &money()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "registrations.csv: line 1: required column 'submitted_at' is missing from the header"
        );
    }

    #[test]
    fn a_column_read_twice_is_an_input_error_naming_file_and_column() {
        let dir = folder(&[]);
        let p = dir.path().join("accounts.csv");
        let text = std::fs::read_to_string(&p).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        // A second `id` column (spelled differently), with other values.
        let rows: Vec<String> = rest.lines().map(|l| format!("{l},X-{}", l.len())).collect();
        std::fs::write(&p, format!("{head}, ID \n{}\n", rows.join("\n"))).unwrap();
        let e = load(dir.path(), &money()).unwrap_err();
        assert!(
            matches!(e, InputError::DuplicateColumn { column: "id", .. }),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("accounts.csv") && text.contains("'id'"),
            "{text}"
        );
        // An unknown column twice is ignored, like any unknown column.
        let dir = folder(&[]);
        let p = dir.path().join("accounts.csv");
        let text = std::fs::read_to_string(&p).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let rows: Vec<String> = rest.lines().map(|l| format!("{l},a,b")).collect();
        std::fs::write(&p, format!("{head},note,note\n{}\n", rows.join("\n"))).unwrap();
        load_ok(&dir);
    }

    #[test]
    fn a_jsonl_line_with_a_key_twice_is_rejected_naming_the_key() {
        let dir = folder(&[("opportunities.csv", "")]);
        let jsonl = concat!(
            r#"{"id":"O-1","account_id":"A-1","status":"open","created_at":"2026-09-01","id":"O-9"}"#,
            "\n",
            r#"{"id":"O-2","account_id":"A-1","status":"open","created_at":"2026-09-01"}"#,
            "\n"
        );
        std::fs::write(dir.path().join("opportunities.jsonl"), jsonl).unwrap();
        let l = load_ok(&dir);
        assert_eq!(l.dataset.opportunities.len(), 1);
        let r = reasons(&l);
        assert_eq!((r[0].0.as_str(), r[0].1), ("opportunities.jsonl", 1));
        assert!(r[0].2.contains("key 'id' appears more than once"), "{r:?}");
    }

    #[test]
    fn jsonl_stands_in_for_csv() {
        let dir = folder(&[("opportunities.csv", "")]);
        let jsonl = concat!(
            r#"{"id":"O-1","account_id":"A-1","status":"won","created_at":"2026-09-01T10:00:00.000+0000","amount":1250.5,"close_date":"2026-09-10","extra":{"x":1}}"#,
            "\n\n",
            "not json\n",
            r#"{"id":"O-2","account_id":"A-1","status":"open","created_at":"2026-09-01","partner_id":null,"name":["a"]}"#,
            "\n",
            r#"{"id":"O-3","account_id":"A-1","status":"open","created_at":"2026-09-02"}"#,
            "\n"
        );
        std::fs::write(dir.path().join("opportunities.jsonl"), jsonl).unwrap();
        let l = load_ok(&dir);
        let o = &l.dataset.opportunities;
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].amount.as_ref().map(|m| m.value), Some(1250.5));
        assert_eq!(o[1].id, "O-3");
        let r = reasons(&l);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].0, "opportunities.jsonl");
        assert_eq!(r[0].1, 3);
        assert!(r[0].2.starts_with("not a JSON object"), "{}", r[0].2);
        assert_eq!(
            r[1],
            (
                "opportunities.jsonl".into(),
                4,
                "name: not a single value".into()
            )
        );
    }

    #[test]
    fn csv_and_jsonl_of_the_same_table_is_ambiguous() {
        let dir = folder(&[]);
        std::fs::write(dir.path().join("accounts.jsonl"), "").unwrap();
        let e = load(dir.path(), &money()).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::Ambiguous {
                    name: "accounts",
                    ..
                }
            ),
            "{e}"
        );
    }
}
