//! The PostgreSQL backend (`state.url = "postgres://…"`), for replicas that
//! share one state: the same tables, statements and guarantees as the
//! SQLite file, with typed columns (`timestamptz`, `bigint`).
//!
//! Driver: the `postgres` crate, the blocking face of `tokio-postgres` (same
//! project). The store's methods are synchronous (the SQLite backend is, and
//! every caller uses them so); a blocking client must not run on a tokio
//! worker, so each call runs on a short scoped thread (see [`off_runtime`]).
//! One connection per opened store: a cycle's statements are sequential, so a
//! pool would add nothing.
//!
//! Migrations: [`MIGRATIONS`], versioned in `schema_migrations`, each step in
//! its own transaction under a transaction-level advisory lock, so replicas
//! starting together migrate once.

use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::{FindingUpdate, MirrorRow, NewMessage, OutboxRow, StateError, StoredFinding};
use crate::values::format_timestamp;

/// Schema steps, applied in order; `schema_migrations` lists those applied.
/// Append only: never edit a step that has shipped. Step N here is the same
/// change as SQLite's step N (`store/mod.rs`), so the lists stay in step:
/// a new SQLite migration gets its PostgreSQL twin appended here.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE findings (
        key          text PRIMARY KEY,
        kind         text NOT NULL,
        severity     text NOT NULL,
        notified     text NOT NULL,
        payload      text NOT NULL,
        first_seen   timestamptz NOT NULL,
        last_seen    timestamptz NOT NULL,
        resolved_at  timestamptz,
        notified_at  timestamptz
    );
    CREATE TABLE outbox (
        id           bigserial PRIMARY KEY,
        created_at   timestamptz NOT NULL,
        route        text NOT NULL,
        finding_key  text,
        reason       text NOT NULL,
        body         text NOT NULL,
        status       text NOT NULL DEFAULT 'pending',
        attempts     bigint NOT NULL DEFAULT 0,
        last_error   text,
        sent_at      timestamptz
    );
    CREATE INDEX outbox_pending ON outbox (status, id);
    CREATE TABLE written (
        sink         text NOT NULL,
        record_id    text NOT NULL,
        field        text NOT NULL,
        value        text NOT NULL,
        written_at   timestamptz NOT NULL,
        PRIMARY KEY (sink, record_id, field)
    );
    CREATE TABLE cursors (
        source       text PRIMARY KEY,
        value        text NOT NULL,
        updated_at   timestamptz NOT NULL
    );
    CREATE TABLE runs (
        id           bigserial PRIMARY KEY,
        started_at   timestamptz NOT NULL,
        finished_at  timestamptz NOT NULL,
        outcome      text NOT NULL,
        summary      text NOT NULL
    );",
    // 2: the mirror of pulled records, and rotated credentials.
    "CREATE TABLE mirror (
        source       text NOT NULL,
        object       text NOT NULL,
        id           text NOT NULL,
        modstamp     text,
        generation   bigint NOT NULL,
        data         text NOT NULL,
        PRIMARY KEY (source, object, id)
    );
    CREATE TABLE credentials (
        name         text PRIMARY KEY,
        configured   text NOT NULL,
        value        text NOT NULL,
        updated_at   timestamptz NOT NULL
    );",
    // 3: how a finding closed.
    "ALTER TABLE findings ADD COLUMN closed_as text;
    UPDATE findings SET closed_as = 'resolved' WHERE resolved_at IS NOT NULL;",
    // 4: deliveries that may have arrived without confirmation.
    "ALTER TABLE outbox ADD COLUMN unconfirmed bigint NOT NULL DEFAULT 0;",
    // 5: the notification channel a message goes to ('slack' or 'teams').
    "ALTER TABLE outbox ADD COLUMN channel text NOT NULL DEFAULT 'slack';",
    // 6: decisions on findings (issue 15), append-only: a trigger refuses
    // UPDATE and DELETE (TRUNCATE too), as SQLite's triggers do.
    "CREATE TABLE decisions (
        id           bigserial PRIMARY KEY,
        finding_key  text NOT NULL,
        outcome      text NOT NULL,
        decided_by   text NOT NULL,
        note         text,
        until        text,
        assignee     text,
        at           timestamptz NOT NULL,
        basis        text NOT NULL DEFAULT '{}'
    );
    CREATE INDEX decisions_by_key ON decisions (finding_key, id);
    CREATE FUNCTION decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'decisions are append-only'; END $$;
    CREATE TRIGGER decisions_no_change BEFORE UPDATE OR DELETE ON decisions
        FOR EACH ROW EXECUTE FUNCTION decisions_append_only();
    CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
        FOR EACH STATEMENT EXECUTE FUNCTION decisions_append_only();",
    // 7: the console's columns and indexes (store/console.rs), as SQLite's
    // step 7: the value at risk, the account and the partners of each
    // finding, read from its payload by triggers (a payload that is not
    // JSON gives NULLs and no partners, as on SQLite), so the cycle's
    // writes are unchanged and the open list sorts on an index. The
    // triggers fire only when the payload changes. Keys sort bytewise
    // (COLLATE "C"), as SQLite's do, whatever the database's collation.
    "ALTER TABLE findings ADD COLUMN value_at_risk double precision;
    ALTER TABLE findings ADD COLUMN account_id text;
    ALTER TABLE findings ADD COLUMN account_name text;
    CREATE TABLE finding_partners (
        partner_id  text NOT NULL,
        key         text NOT NULL,
        PRIMARY KEY (partner_id, key)
    );
    CREATE INDEX finding_partners_key ON finding_partners (key);
    CREATE FUNCTION finding_console(payload text, OUT risk double precision,
            OUT acct_id text, OUT acct_name text, OUT partners text[])
        LANGUAGE plpgsql IMMUTABLE AS $$
        DECLARE doc jsonb;
        BEGIN
            partners := '{}';
            BEGIN
                doc := payload::jsonb;
            EXCEPTION WHEN data_exception THEN
                RETURN;
            END;
            acct_id := doc ->> 'account_id';
            acct_name := doc ->> 'account_name';
            SELECT COALESCE(array_agg(DISTINCT p #>> '{}') FILTER (WHERE jsonb_typeof(p) = 'string'), '{}')
              INTO partners
              FROM jsonb_array_elements(CASE WHEN jsonb_typeof(doc -> 'partner_ids') = 'array'
                                             THEN doc -> 'partner_ids' ELSE '[]' END) AS t (p);
            BEGIN
                SELECT COALESCE(
                    sum((e ->> 'amount')::double precision)
                        FILTER (WHERE e ->> 'type' = 'opportunity'
                                  AND (e ->> 'status') IS DISTINCT FROM 'lost'
                                  AND jsonb_typeof(e -> 'amount') = 'number'),
                    CASE WHEN bool_and((e ->> 'type') IS NOT DISTINCT FROM 'registration') THEN
                        sum((e ->> 'amount')::double precision)
                            FILTER (WHERE (e ->> 'status') IS DISTINCT FROM 'lost'
                                      AND jsonb_typeof(e -> 'amount') = 'number')
                    END)
                  INTO risk
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(doc -> 'evidence') = 'array'
                                                 THEN doc -> 'evidence' ELSE '[]' END) AS t (e);
            EXCEPTION WHEN data_exception THEN
                risk := NULL;
            END;
        END $$;
    CREATE FUNCTION findings_console_columns() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- Most of a cycle's upserts bring a stored finding's payload
            -- again (the row then takes the conflict path): its columns are
            -- known, so no parsing.
            IF TG_OP = 'INSERT' THEN
                SELECT f.value_at_risk, f.account_id, f.account_name
                  INTO NEW.value_at_risk, NEW.account_id, NEW.account_name
                  FROM findings f WHERE f.key = NEW.key AND f.payload = NEW.payload;
                IF FOUND THEN
                    RETURN NEW;
                END IF;
            END IF;
            SELECT c.risk, c.acct_id, c.acct_name
              INTO NEW.value_at_risk, NEW.account_id, NEW.account_name
              FROM finding_console(NEW.payload) c;
            RETURN NEW;
        END $$;
    CREATE FUNCTION findings_console_partners() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                DELETE FROM finding_partners WHERE key = NEW.key;
            END IF;
            INSERT INTO finding_partners (partner_id, key)
                SELECT p, NEW.key FROM unnest((finding_console(NEW.payload)).partners) AS p
                ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$;
    UPDATE findings SET (value_at_risk, account_id, account_name) =
        (SELECT c.risk, c.acct_id, c.acct_name FROM finding_console(payload) c);
    INSERT INTO finding_partners (partner_id, key)
        SELECT p, f.key FROM findings f, unnest((finding_console(f.payload)).partners) AS p
        ON CONFLICT DO NOTHING;
    CREATE TRIGGER findings_console_insert BEFORE INSERT ON findings
        FOR EACH ROW EXECUTE FUNCTION findings_console_columns();
    CREATE TRIGGER findings_console_update BEFORE UPDATE OF payload ON findings
        FOR EACH ROW WHEN (OLD.payload IS DISTINCT FROM NEW.payload)
        EXECUTE FUNCTION findings_console_columns();
    CREATE TRIGGER findings_partners_insert AFTER INSERT ON findings
        FOR EACH ROW EXECUTE FUNCTION findings_console_partners();
    CREATE TRIGGER findings_partners_update AFTER UPDATE OF payload ON findings
        FOR EACH ROW WHEN (OLD.payload IS DISTINCT FROM NEW.payload)
        EXECUTE FUNCTION findings_console_partners();
    -- The list's order, with the filtered columns along so that counting
    -- and filtering read the index, not the rows and their payloads.
    CREATE INDEX findings_open_risk ON findings (value_at_risk DESC NULLS LAST, key COLLATE \"C\")
        INCLUDE (severity, kind, account_id, account_name) WHERE resolved_at IS NULL;
    CREATE INDEX findings_open_kind ON findings (kind, value_at_risk DESC NULLS LAST, key COLLATE \"C\")
        WHERE resolved_at IS NULL;
    CREATE INDEX findings_open_account ON findings (account_id) WHERE resolved_at IS NULL;
    CREATE INDEX outbox_finding ON outbox (finding_key, id);
    CREATE INDEX runs_finished ON runs (finished_at);",
    // 8: SQLite's step 8 rebuilds its partner triggers to insert each
    // partner once; the function of step 7 here already does. Kept so the
    // step numbers stay the same on both backends.
    "SELECT 1;",
    // 9: the console's account search through a trigram index, as SQLite's
    // step 9 (there FTS5): `pg_trgm`'s GIN index on the open findings'
    // account names, which the search's ILIKE uses from 3 characters on.
    // Creating the extension needs the CREATE right on the database (it is
    // a trusted extension); without it the step still succeeds, the search
    // scans as before, and each start tries again and says so
    // ([`Pg::ensure_account_search`]).
    ACCOUNT_SEARCH_INDEX,
    // 10: the mirror's layouts (SQLite's step 10): each object's field list
    // once, each record's values only.
    "ALTER TABLE mirror ADD COLUMN layout bigint;
    CREATE TABLE mirror_layouts (
        source       text NOT NULL,
        object       text NOT NULL,
        layout       bigint NOT NULL,
        fields       text NOT NULL,
        PRIMARY KEY (source, object, layout)
    );",
    // 11: SQLite's step 11 runs its payload trigger only when the payload
    // changed; the triggers of step 7 here already have that `WHEN`. Kept so
    // the step numbers stay the same on both backends.
    "SELECT 1;",
    // 12: SQLite's step 12 computes a new finding's console columns before
    // its insert instead of in a trigger that rewrites the row; the BEFORE
    // INSERT trigger of step 7 here fills them in the row as it is written.
    "SELECT 1;",
    // 13: SQLite's step 13 indexes new findings' account names in one
    // statement a cycle (FTS5 flushes at every statement); the `pg_trgm`
    // index here is kept by PostgreSQL itself.
    "SELECT 1;",
];

/// The trigram index of step 9, made when `pg_trgm` is or can be
/// installed; else nothing (a NOTICE). The operator class is named in the
/// extension's own schema, wherever it was installed.
const ACCOUNT_SEARCH_INDEX: &str = "DO $$
    DECLARE trgm_schema text;
    BEGIN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'pg_trgm cannot be installed: %', SQLERRM;
        END;
        SELECT n.nspname INTO trgm_schema
          FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_trgm';
        IF trgm_schema IS NOT NULL THEN
            BEGIN
                EXECUTE format('CREATE INDEX IF NOT EXISTS findings_open_account_name ON findings
                                USING gin (account_name %I.gin_trgm_ops) WHERE resolved_at IS NULL',
                               trgm_schema);
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'the trigram index cannot be made: %', SQLERRM;
            END;
        END IF;
    END $$;";

/// The index's name, to tell whether it is there.
const ACCOUNT_SEARCH_INDEX_NAME: &str = "findings_open_account_name";

/// Advisory lock key (bigint) that serialises migrations.
const MIGRATE_KEY: i64 = 7_213_590_001;

/// Runs blocking database work off the async runtime: on a scoped thread
/// when called from a tokio worker (a blocking client there would panic or
/// stall the worker), directly otherwise.
pub(super) fn off_runtime<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    std::thread::scope(|s| match s.spawn(work).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Where to connect: the URL (without password) plus the password from the
/// environment, and TLS unless the URL says `sslmode=disable`. The label,
/// used in every message, never holds the password.
#[derive(Clone)]
pub struct Target {
    pub(super) config: postgres::Config,
    pub(super) label: String,
    /// The TLS connector (certificates verified against the system's roots
    /// plus `state.ca_file`); `None` with `sslmode=disable`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// The TLS connector for the state database: the system's root
/// certificates plus those of `ca_file` (PEM). Built once per `ca_file` and
/// kept (targets are made before every cycle).
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    type Cache = std::collections::HashMap<
        Option<std::path::PathBuf>,
        tokio_postgres_rustls::MakeRustlsConnect,
    >;
    static CACHE: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = ca_file.map(std::path::Path::to_path_buf);
    if let Some(tls) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(tls.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("state.ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "state.ca_file {}: no PEM certificate in it",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("state.ca_file {}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted certificate authority for TLS (the system has none): set state.ca_file, or sslmode=disable on a trusted network".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, tls.clone());
    Ok(tls)
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

impl Target {
    /// Parses `url` and adds `password`. A password inside the URL is
    /// refused (it would end up in config files and messages). TLS follows
    /// the URL's `sslmode`: `prefer` (the default: TLS when the server offers
    /// it) and `require` verify the server's certificate against the
    /// system's roots plus `ca_file`; `disable` is plain TCP.
    pub fn new(
        url: &str,
        password: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Target, StateError> {
        let label = redact(url);
        let mut config: postgres::Config = url.parse().map_err(|e| StateError::Postgres {
            url: label.clone(),
            source: e,
        })?;
        if config.get_password().is_some() {
            return Err(StateError::Config {
                url: label,
                message: "the URL carries a password: remove it and set CHANNEL_SYNC__STATE__PASSWORD instead".into(),
            });
        }
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        // A peer that vanished (its node died) is noticed within ~30 s.
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(10));
        config.application_name(&holder_name());
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => None,
            _ => Some(
                tls_connector(ca_file).map_err(|message| StateError::Config {
                    url: label.clone(),
                    message,
                })?,
            ),
        };
        Ok(Target { config, label, tls })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub(super) fn connect(&self) -> Result<Client, StateError> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        off_runtime(move || match tls {
            Some(tls) => config.connect(tls),
            None => config.connect(NoTls),
        })
        .map_err(|e| self.err(e))
    }

    pub(super) fn err(&self, source: postgres::Error) -> StateError {
        StateError::Postgres {
            url: self.label.clone(),
            source,
        }
    }
}

/// `pid N on host H`: the name a connection carries (`application_name`),
/// so a waiting run can say who holds the leader lock.
pub(super) fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let name = format!("channel-sync pid {} on {}", std::process::id(), host);
    // application_name is cut at 63 bytes by the server.
    name.chars().take(60).collect()
}

/// The URL without any password (`postgres://user:secret@h/db` ->
/// `postgres://user@h/db`); query parameters are dropped too.
pub(crate) fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, host) = match rest.rsplit_once('@') {
                Some((auth, host)) => (Some(auth), host),
                None => (None, rest),
            };
            let user = auth.map(|a| a.split(':').next().unwrap_or_default());
            match user {
                Some(u) => format!("{scheme}://{u}@{host}"),
                None => format!("{scheme}://{host}"),
            }
        }
        None => "(a postgres URL)".into(),
    }
}

/// A PostgreSQL store: one connection.
pub(super) struct Pg {
    /// Always `Some` until dropped (taken out to close it off the runtime).
    client: Mutex<Option<Client>>,
    target: Target,
    /// A dry run: the connection sits in one transaction that is rolled
    /// back when the store drops; each unit of work is a savepoint in it.
    scratch: bool,
}

impl Drop for Pg {
    /// Closes the connection off the runtime (the blocking client's close
    /// would panic on a tokio worker); a dry run's transaction is rolled
    /// back first.
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let scratch = self.scratch;
        if let Some(mut client) = client {
            off_runtime(move || {
                if scratch {
                    let _ = client.batch_execute("ROLLBACK");
                }
                drop(client);
            });
        }
    }
}

pub(super) type PgResult<T> = Result<T, postgres::Error>;

impl Pg {
    /// Connects and migrates.
    pub(super) fn open(target: &Target) -> Result<Pg, StateError> {
        let pg = Pg {
            client: Mutex::new(Some(target.connect()?)),
            target: target.clone(),
            scratch: false,
        };
        pg.migrate()?;
        Ok(pg)
    }

    /// For a dry run: everything happens in one transaction that is never
    /// committed (migrations of a new database included), so the database
    /// is left as it was.
    pub(super) fn scratch(target: &Target) -> Result<Pg, StateError> {
        let mut client = target.connect()?;
        off_runtime(|| client.batch_execute("BEGIN")).map_err(|e| target.err(e))?;
        let pg = Pg {
            client: Mutex::new(Some(client)),
            target: target.clone(),
            scratch: true,
        };
        pg.migrate()?;
        Ok(pg)
    }

    pub(super) fn label(&self) -> &str {
        &self.target.label
    }

    fn lock(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the connection is gone (known after a statement failed on it).
    pub(super) fn is_closed(&self) -> bool {
        self.lock().as_ref().is_none_or(Client::is_closed)
    }

    fn closed(&self) -> StateError {
        StateError::Config {
            url: self.target.label.clone(),
            message: "the connection is closed".into(),
        }
    }

    /// Runs `work` with the connection, off the runtime.
    pub(super) fn with<R: Send>(
        &self,
        work: impl FnOnce(&mut Client) -> PgResult<R> + Send,
    ) -> Result<R, StateError> {
        let mut guard = self.lock();
        let client: &mut Client = guard.as_mut().ok_or_else(|| self.closed())?;
        off_runtime(move || work(client)).map_err(|e| self.target.err(e))
    }

    /// Runs `work` in one transaction (a savepoint in a dry run): all of it
    /// is stored, or none of it.
    pub(super) fn in_transaction<R: Send>(
        &self,
        work: impl FnOnce(&mut Client) -> PgResult<R> + Send,
    ) -> Result<R, StateError> {
        let (begin, commit, rollback) = match self.scratch {
            false => ("BEGIN", "COMMIT", "ROLLBACK"),
            true => (
                "SAVEPOINT work",
                "RELEASE SAVEPOINT work",
                "ROLLBACK TO SAVEPOINT work",
            ),
        };
        self.with(move |c| {
            c.batch_execute(begin)?;
            match work(c) {
                Ok(r) => {
                    c.batch_execute(commit)?;
                    Ok(r)
                }
                Err(e) => {
                    let _ = c.batch_execute(rollback);
                    Err(e)
                }
            }
        })
    }

    pub(super) fn version(&self) -> Result<i64, StateError> {
        self.with(|c| {
            let exists: bool = c
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
                .get(0);
            if !exists {
                return Ok(0);
            }
            Ok(c.query_one(
                "SELECT COALESCE(max(version), 0)::bigint FROM schema_migrations",
                &[],
            )?
            .get(0))
        })
    }

    /// Brings the schema up to date: each missing step in its own
    /// transaction, which first takes the migration advisory lock (released
    /// at commit) and reads the version again, so of several starters one
    /// applies a step and the others find it done.
    fn migrate(&self) -> Result<(), StateError> {
        let known = MIGRATIONS.len() as i64;
        let mut from = None;
        loop {
            let step = self.in_transaction(|c| {
                c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_KEY])?;
                c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                        version     bigint PRIMARY KEY,
                        applied_at  timestamptz NOT NULL DEFAULT now()
                    )",
                )?;
                let version: i64 = c
                    .query_one(
                        "SELECT COALESCE(max(version), 0)::bigint FROM schema_migrations",
                        &[],
                    )?
                    .get(0);
                if version >= known {
                    return Ok(Err(version));
                }
                c.batch_execute(MIGRATIONS[version as usize])?;
                c.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[&(version + 1)],
                )?;
                Ok(Ok(version))
            })?;
            match step {
                Ok(version) => {
                    from.get_or_insert(version);
                }
                Err(version) if version > known => {
                    return Err(StateError::TooNew {
                        path: self.target.label.clone(),
                        found: version,
                        known,
                    });
                }
                Err(_) => break,
            }
        }
        if let Some(from) = from {
            tracing::info!(from, to = known, "State schema migrated (PostgreSQL).");
        }
        if !self.scratch {
            self.ensure_account_search()?;
        }
        Ok(())
    }

    /// Whether the console's account search has its trigram index (schema
    /// step 9 with `pg_trgm`).
    pub(super) fn account_search_indexed(&self) -> Result<bool, StateError> {
        self.with(|c| {
            Ok(c.query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&ACCOUNT_SEARCH_INDEX_NAME],
            )?
            .get(0))
        })
    }

    /// Without the trigram index (`pg_trgm` could not be installed when
    /// step 9 ran), tries again (an administrator may have installed the
    /// extension since), under the migration lock; when it is still
    /// missing, says once per process that the account search scans.
    fn ensure_account_search(&self) -> Result<(), StateError> {
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if self.account_search_indexed()? {
            return Ok(());
        }
        self.in_transaction(|c| {
            c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_KEY])?;
            c.batch_execute(ACCOUNT_SEARCH_INDEX)
        })?;
        if !self.account_search_indexed()? && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                state = %self.target.label,
                "The PostgreSQL extension pg_trgm is not installed and this role may not install it: the console's account search scans the open findings instead of using a trigram index (slower on a big program). To index it, have an administrator run `CREATE EXTENSION pg_trgm;` in this database; the next start adds the index."
            );
        }
        Ok(())
    }

    pub(super) fn findings(&self) -> Result<Vec<StoredFinding>, StateError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT key, kind, severity, notified, payload, first_seen, resolved_at, notified_at, closed_as
                 FROM findings",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| StoredFinding {
                    key: r.get(0),
                    kind: r.get(1),
                    severity: r.get(2),
                    notified: r.get(3),
                    payload: r.get(4),
                    first_seen: format_timestamp(&r.get::<_, DateTime<Utc>>(5)),
                    resolved_at: r.get::<_, Option<DateTime<Utc>>>(6).map(|t| format_timestamp(&t)),
                    notified_at: r.get::<_, Option<DateTime<Utc>>>(7).map(|t| format_timestamp(&t)),
                    closed_as: r.get(8),
                })
                .collect())
        })
    }

    pub(super) fn commit_cycle(
        &self,
        now: DateTime<Utc>,
        seen: &[FindingUpdate],
        resolved: &[String],
        aged_out: &[String],
        messages: &[NewMessage],
    ) -> Result<(), StateError> {
        // One statement per table (arrays), not one round trip per row.
        let seen = last_per_key(seen, |f| f.key.clone());
        let keys: Vec<&str> = seen.iter().map(|f| f.key.as_str()).collect();
        let kinds: Vec<&str> = seen.iter().map(|f| f.kind.as_str()).collect();
        let severities: Vec<&str> = seen.iter().map(|f| f.severity.as_str()).collect();
        let payloads: Vec<&str> = seen.iter().map(|f| f.payload.as_str()).collect();
        let notified: Vec<Option<&str>> = seen.iter().map(|f| f.notified.as_deref()).collect();
        let routes: Vec<&str> = messages.iter().map(|m| m.route.as_str()).collect();
        let finding_keys: Vec<Option<&str>> =
            messages.iter().map(|m| m.finding_key.as_deref()).collect();
        let reasons: Vec<&str> = messages.iter().map(|m| m.reason.as_str()).collect();
        let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        let channels: Vec<&str> = messages.iter().map(|m| m.channel.as_str()).collect();
        self.in_transaction(|c| {
            if !keys.is_empty() {
                c.execute(
                    "INSERT INTO findings AS f (key, kind, severity, notified, payload, first_seen, last_seen, resolved_at, notified_at)
                     SELECT u.key, u.kind, u.severity, COALESCE(u.notified, '{}'), u.payload, $6, $6, NULL,
                            CASE WHEN u.notified IS NULL THEN NULL ELSE $6::timestamptz END
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                          AS u (key, kind, severity, notified, payload)
                     ON CONFLICT (key) DO UPDATE SET
                        severity = excluded.severity,
                        payload = excluded.payload,
                        last_seen = excluded.last_seen,
                        resolved_at = NULL,
                        closed_as = NULL,
                        notified = CASE WHEN excluded.notified_at IS NULL THEN f.notified ELSE excluded.notified END,
                        notified_at = CASE WHEN excluded.notified_at IS NULL THEN f.notified_at ELSE excluded.last_seen END",
                    &[&keys, &kinds, &severities, &notified, &payloads, &now],
                )?;
            }
            let close = "UPDATE findings SET resolved_at = $2, closed_as = $3
                         WHERE key = ANY($1::text[]) AND resolved_at IS NULL";
            if !resolved.is_empty() {
                c.execute(close, &[&resolved, &now, &"resolved"])?;
            }
            if !aged_out.is_empty() {
                c.execute(close, &[&aged_out, &now, &"aged_out"])?;
            }
            if !routes.is_empty() {
                c.execute(
                    "INSERT INTO outbox (created_at, route, finding_key, reason, body, channel)
                     SELECT $1, u.route, u.finding_key, u.reason, u.body, u.channel
                     FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                          WITH ORDINALITY AS u (route, finding_key, reason, body, channel, n)
                     ORDER BY u.n",
                    &[&now, &routes, &finding_keys, &reasons, &bodies, &channels],
                )?;
            }
            Ok(())
        })
    }

    pub(super) fn pending(&self) -> Result<Vec<OutboxRow>, StateError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, route, finding_key, reason, body, attempts, unconfirmed, channel FROM outbox
                 WHERE status = 'pending' ORDER BY id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| OutboxRow {
                    id: r.get(0),
                    route: r.get(1),
                    finding_key: r.get(2),
                    reason: r.get(3),
                    body: r.get(4),
                    attempts: r.get(5),
                    unconfirmed: r.get(6),
                    channel: r.get(7),
                })
                .collect())
        })
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StateError> {
        self.with(|c| c.execute(sql, params))
    }

    pub(super) fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StateError> {
        self.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = $2, last_error = NULL WHERE id = $1",
            &[&id, &now],
        )
        .map(drop)
    }

    pub(super) fn mark_failed(&self, id: i64, error: &str, park: bool) -> Result<(), StateError> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                status = CASE WHEN $3 THEN 'parked' ELSE status END
             WHERE id = $1",
            &[&id, &error, &park],
        )
        .map(drop)
    }

    pub(super) fn mark_unconfirmed(
        &self,
        id: i64,
        error: &str,
        park: bool,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, unconfirmed = unconfirmed + 1,
                last_error = $2, status = CASE WHEN $3 THEN 'parked' ELSE status END
             WHERE id = $1",
            &[&id, &error, &park],
        )
        .map(drop)
    }

    pub(super) fn written(
        &self,
        sink: &str,
    ) -> Result<crate::fast::FastMap<(String, String), String>, StateError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT record_id, field, value FROM written WHERE sink = $1",
                &[&sink],
            )?;
            Ok(rows
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect())
        })
    }

    pub(super) fn record_written(
        &self,
        sink: &str,
        values: &[(String, String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let values = last_per_key(values, |(r, f, _)| (r.clone(), f.clone()));
        let records: Vec<&str> = values.iter().map(|v| v.0.as_str()).collect();
        let fields: Vec<&str> = values.iter().map(|v| v.1.as_str()).collect();
        let vals: Vec<&str> = values.iter().map(|v| v.2.as_str()).collect();
        self.in_transaction(|c| {
            if !records.is_empty() {
                c.execute(
                    "INSERT INTO written (sink, record_id, field, value, written_at)
                     SELECT $1, u.r, u.f, u.v, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS u (r, f, v)
                     ON CONFLICT (sink, record_id, field) DO UPDATE SET value = excluded.value, written_at = excluded.written_at",
                    &[&sink, &records, &fields, &vals, &now],
                )?;
            }
            Ok(())
        })
    }

    pub(super) fn forget_written(&self, sink: &str) -> Result<(), StateError> {
        self.execute("DELETE FROM written WHERE sink = $1", &[&sink])
            .map(drop)
    }

    pub(super) fn mirror_apply(
        &self,
        source: &str,
        object: &str,
        generation: i64,
        layout: i64,
        upserts: &[MirrorRow],
        deletes: &[String],
    ) -> Result<(), StateError> {
        let upserts = last_per_key(upserts, |r| r.id.clone());
        let ids: Vec<&str> = upserts.iter().map(|r| r.id.as_str()).collect();
        let data: Vec<&str> = upserts.iter().map(|r| r.data.as_str()).collect();
        self.in_transaction(|c| {
            if !ids.is_empty() {
                c.execute(
                    "INSERT INTO mirror (source, object, id, generation, layout, data)
                     SELECT $1, $2, u.id, $3, $6, u.data
                     FROM unnest($4::text[], $5::text[]) AS u (id, data)
                     ON CONFLICT (source, object, id) DO UPDATE SET
                       modstamp = NULL, generation = excluded.generation,
                       layout = excluded.layout, data = excluded.data",
                    &[&source, &object, &generation, &ids, &data, &layout],
                )?;
            }
            if !deletes.is_empty() {
                c.execute(
                    "DELETE FROM mirror WHERE source = $1 AND object = $2 AND id = ANY($3::text[])",
                    &[&source, &object, &deletes],
                )?;
            }
            Ok(())
        })
    }

    pub(super) fn mirror_layout(
        &self,
        source: &str,
        object: &str,
        fields: &str,
    ) -> Result<i64, StateError> {
        self.in_transaction(|c| {
            // One writer at a time per object: two new layouts never take
            // the same number.
            c.execute(
                "SELECT pg_advisory_xact_lock(hashtext('mirror_layouts/' || $1 || '/' || $2))",
                &[&source, &object],
            )?;
            if let Some(row) = c.query_opt(
                "SELECT layout FROM mirror_layouts WHERE source = $1 AND object = $2 AND fields = $3",
                &[&source, &object, &fields],
            )? {
                return Ok(row.get(0));
            }
            let next: i64 = c
                .query_one(
                    "SELECT coalesce(max(layout), 0) + 1 FROM mirror_layouts
                     WHERE source = $1 AND object = $2",
                    &[&source, &object],
                )?
                .get(0);
            c.execute(
                "INSERT INTO mirror_layouts (source, object, layout, fields) VALUES ($1, $2, $3, $4)",
                &[&source, &object, &next, &fields],
            )?;
            Ok(next)
        })
    }

    pub(super) fn mirror_layouts(
        &self,
        source: &str,
        object: &str,
    ) -> Result<Vec<(i64, String)>, StateError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT layout, fields FROM mirror_layouts WHERE source = $1 AND object = $2",
                &[&source, &object],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    pub(super) fn mirror_generation(
        &self,
        source: &str,
        object: &str,
    ) -> Result<Option<i64>, StateError> {
        self.with(|c| {
            Ok(c.query_one(
                "SELECT max(generation) FROM mirror WHERE source = $1 AND object = $2",
                &[&source, &object],
            )?
            .get(0))
        })
    }

    pub(super) fn mirror_sweep(
        &self,
        source: &str,
        object: &str,
        generation: i64,
        layout: i64,
    ) -> Result<usize, StateError> {
        self.in_transaction(|c| {
            let swept = c.execute(
                "DELETE FROM mirror WHERE source = $1 AND object = $2 AND generation < $3",
                &[&source, &object, &generation],
            )?;
            c.execute(
                "DELETE FROM mirror_layouts WHERE source = $1 AND object = $2 AND layout <> $3",
                &[&source, &object, &layout],
            )?;
            Ok(swept as usize)
        })
    }

    /// Streams the rows in batches from a scoped thread (the callback need
    /// not be `Send`, and a big mirror is never held twice in memory).
    pub(super) fn mirror_scan(
        &self,
        source: &str,
        object: &str,
        mut each: impl FnMut(&str, Option<i64>, &str),
    ) -> Result<(), StateError> {
        let mut guard = self.lock();
        let client: &mut Client = guard.as_mut().ok_or_else(|| self.closed())?;
        type Rows = Vec<(String, Option<i64>, String)>;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Rows>(4);
        let result = std::thread::scope(|s| {
            let reader = s.spawn(move || -> PgResult<()> {
                use postgres::fallible_iterator::FallibleIterator;
                let params: [&(dyn ToSql + Sync); 2] = [&source, &object];
                let mut rows = client.query_raw(
                    "SELECT id, layout, data FROM mirror WHERE source = $1 AND object = $2 ORDER BY id",
                    params,
                )?;
                let mut batch = Vec::with_capacity(1024);
                while let Some(row) = rows.next()? {
                    batch.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
                    if batch.len() == 1024 && tx.send(std::mem::take(&mut batch)).is_err() {
                        return Ok(());
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                Ok(())
            });
            for batch in rx {
                for (id, layout, data) in batch {
                    each(&id, layout, &data);
                }
            }
            match reader.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        result.map_err(|e| self.target.err(e))
    }

    pub(super) fn mirror_count(&self, source: &str, object: &str) -> Result<u64, StateError> {
        self.with(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM mirror WHERE source = $1 AND object = $2",
                    &[&source, &object],
                )?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }

    pub(super) fn credential_row(
        &self,
        name: &str,
        configured: &str,
    ) -> Result<Option<String>, StateError> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT value FROM credentials WHERE name = $1 AND configured = $2",
                &[&name, &configured],
            )?
            .map(|r| r.get(0)))
        })
    }

    pub(super) fn set_credential_row(
        &self,
        name: &str,
        configured: &str,
        sealed: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO credentials (name, configured, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET configured = excluded.configured,
               value = excluded.value, updated_at = excluded.updated_at",
            &[&name, &configured, &sealed, &now],
        )
        .map(drop)
    }

    pub(super) fn cursor(&self, source: &str) -> Result<Option<String>, StateError> {
        self.with(|c| {
            Ok(
                c.query_opt("SELECT value FROM cursors WHERE source = $1", &[&source])?
                    .map(|r| r.get(0)),
            )
        })
    }

    pub(super) fn set_cursor(
        &self,
        source: &str,
        value: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO cursors (source, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &[&source, &value, &now],
        )
        .map(drop)
    }

    pub(super) fn record_run(
        &self,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        outcome: &str,
        summary: &str,
    ) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO runs (started_at, finished_at, outcome, summary) VALUES ($1, $2, $3, $4)",
            &[&started, &finished, &outcome, &summary],
        )
        .map(drop)
    }

    pub(super) fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StateError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    /// Every row of a table as text, for `state migrate`'s checks.
    pub(super) fn count(&self, table: &str) -> Result<i64, StateError> {
        let sql = format!("SELECT count(*) FROM {table}");
        self.with(move |c| Ok(c.query_one(sql.as_str(), &[])?.get(0)))
    }

    /// Raw access for `state migrate` (copies rows as they are).
    pub(super) fn raw<R: Send>(
        &self,
        work: impl FnOnce(&mut Client) -> PgResult<R> + Send,
    ) -> Result<R, StateError> {
        self.in_transaction(work)
    }
}

/// Keeps the last entry per key, in first-seen order (one statement cannot
/// upsert one key twice; the SQLite backend's row-by-row upsert keeps the
/// last).
fn last_per_key<T, K: std::hash::Hash + Eq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut index: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut out: Vec<&T> = Vec::with_capacity(items.len());
    for item in items {
        match index.entry(key(item)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = item,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(item);
            }
        }
    }
    out
}
