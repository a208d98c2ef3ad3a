//! `channel-sync state migrate --from sqlite:PATH --to postgres://…`: copies
//! a SQLite state into an empty PostgreSQL database, in one transaction, and
//! checks that every table holds as many rows as the file.

use super::pg::{Pg, Target};
use super::{Sqlite, StateError};

/// The tables copied, with each column's PostgreSQL type (`text` unless
/// named). Cursors and layouts travel with the mirror (a cursor without its mirror
/// would skip records); runs keep the history.
const TABLES: &[(&str, &[(&str, &str)])] = &[
    (
        "findings",
        &[
            ("key", "text"),
            ("kind", "text"),
            ("severity", "text"),
            ("notified", "text"),
            ("payload", "text"),
            ("first_seen", "timestamptz"),
            ("last_seen", "timestamptz"),
            ("resolved_at", "timestamptz"),
            ("notified_at", "timestamptz"),
            ("closed_as", "text"),
        ],
    ),
    (
        "outbox",
        &[
            ("id", "bigint"),
            ("created_at", "timestamptz"),
            ("route", "text"),
            ("finding_key", "text"),
            ("reason", "text"),
            ("body", "text"),
            ("status", "text"),
            ("attempts", "bigint"),
            ("last_error", "text"),
            ("sent_at", "timestamptz"),
            ("unconfirmed", "bigint"),
            ("channel", "text"),
        ],
    ),
    (
        "written",
        &[
            ("sink", "text"),
            ("record_id", "text"),
            ("field", "text"),
            ("value", "text"),
            ("written_at", "timestamptz"),
        ],
    ),
    (
        "mirror",
        &[
            ("source", "text"),
            ("object", "text"),
            ("id", "text"),
            ("modstamp", "text"),
            ("generation", "bigint"),
            ("data", "text"),
            ("layout", "bigint"),
        ],
    ),
    (
        "mirror_layouts",
        &[
            ("source", "text"),
            ("object", "text"),
            ("layout", "bigint"),
            ("fields", "text"),
        ],
    ),
    (
        "credentials",
        &[
            ("name", "text"),
            ("configured", "text"),
            ("value", "text"),
            ("updated_at", "timestamptz"),
        ],
    ),
    (
        "cursors",
        &[
            ("source", "text"),
            ("value", "text"),
            ("updated_at", "timestamptz"),
        ],
    ),
    (
        "decisions",
        &[
            ("id", "bigint"),
            ("finding_key", "text"),
            ("outcome", "text"),
            ("decided_by", "text"),
            ("note", "text"),
            ("until", "text"),
            ("assignee", "text"),
            ("at", "timestamptz"),
            ("basis", "text"),
        ],
    ),
    (
        "runs",
        &[
            ("id", "bigint"),
            ("started_at", "timestamptz"),
            ("finished_at", "timestamptz"),
            ("outcome", "text"),
            ("summary", "text"),
        ],
    ),
];

/// Rows per statement.
const CHUNK: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no state file at {0}")]
    Missing(String),
    #[error(
        "the database {url} already holds a state ({table} has {rows} rows): nothing was copied"
    )]
    NotEmpty {
        url: String,
        table: &'static str,
        rows: i64,
    },
}

/// Copies the SQLite state at `from` into the (migrated, empty) database at
/// `to`. Returns the rows copied per table.
pub(crate) fn sqlite_to_postgres(
    from: &std::path::Path,
    to: &Target,
) -> Result<Vec<(&'static str, i64)>, CopyError> {
    let source = Sqlite::open_read_only(from)?
        .ok_or_else(|| CopyError::Missing(from.display().to_string()))?;
    let pg = Pg::open(to)?;
    for (table, _) in TABLES {
        let rows = pg.count(table)?;
        if rows > 0 {
            return Err(CopyError::NotEmpty {
                url: to.label().to_string(),
                table,
                rows,
            });
        }
    }
    let mut tables = Vec::new();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let select = format!(
            "SELECT {} FROM {table}",
            names
                .iter()
                .map(|n| format!("CAST({n} AS TEXT)"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<Vec<Option<String>>> = {
            let conn = source.conn();
            let mut stmt = conn.prepare(&select).map_err(|e| source.err(e))?;
            stmt.query_map([], |r| {
                (0..names.len())
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| source.err(e))?
        };
        tables.push((*table, *columns, rows));
    }
    // One transaction: all of it or none of it.
    let counts = pg.raw(|c| {
        let mut counts = Vec::new();
        for (table, columns, rows) in &tables {
            let arrays = (1..=columns.len())
                .map(|i| format!("${i}::text[]"))
                .collect::<Vec<_>>()
                .join(", ");
            let casts = columns
                .iter()
                .map(|(n, t)| format!("u.{n}::{t}"))
                .collect::<Vec<_>>()
                .join(", ");
            let names = columns.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
            let insert = format!(
                "INSERT INTO {table} ({names}) SELECT {casts} FROM unnest({arrays}) AS u ({names})"
            );
            for chunk in rows.chunks(CHUNK) {
                let cols: Vec<Vec<Option<&str>>> = (0..columns.len())
                    .map(|i| chunk.iter().map(|r| r[i].as_deref()).collect())
                    .collect();
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = cols
                    .iter()
                    .map(|c| c as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                c.execute(insert.as_str(), &params)?;
            }
            if columns[0].0 == "id" && columns[0].1 == "bigint" {
                c.execute(
                    format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(max(id), 0) + 1, false) FROM {table}"
                    )
                    .as_str(),
                    &[],
                )?;
            }
            let n: i64 = c
                .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])?
                .get(0);
            if n != rows.len() as i64 {
                // The database refuses, so the transaction rolls back.
                c.batch_execute(&format!(
                    "DO $$ BEGIN RAISE EXCEPTION '{table}: {n} rows in the database, {} in the file: nothing was kept'; END $$",
                    rows.len()
                ))?;
            }
            counts.push((*table, n));
        }
        Ok(counts)
    })?;
    Ok(counts)
}
