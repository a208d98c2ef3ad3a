//! The PostgreSQL state against a real server (tests/it/pg.rs): migrations
//! under concurrent starters, losing the leader lock, a dry run that leaves
//! the database as it was, and `state migrate` from a SQLite file.

use channel_sync::store::State;
use channel_sync::store::leader::PgLeader;

use crate::pg::{TestDb, blocking};

#[test]
fn replicas_starting_together_migrate_once() {
    let Some(db) = TestDb::create("migrate_once") else {
        return;
    };
    let settings = db.settings();
    let opened: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| State::connect(&settings).map(|st| st.version().unwrap())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in &opened {
        assert_eq!(v.as_ref().ok(), Some(&6), "{opened:?}");
    }
    let versions: Vec<i64> = db.query(|c| {
        c.query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    });
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6], "each step applied once");
}

#[test]
fn a_leader_whose_session_ends_stops_and_another_takes_over() {
    let Some(db) = TestDb::create("leader_lost") else {
        return;
    };
    let target = channel_sync::store::select_target(&db.settings())
        .unwrap()
        .unwrap();
    let first = PgLeader::new(target.clone());
    let second = PgLeader::new(target);
    assert!(first.check(), "the first takes the lead");
    assert!(!second.check(), "the second stands by");
    assert!(first.confirm());
    assert!(
        second.holder().contains("channel-sync pid"),
        "{}",
        second.holder()
    );
    // The leader's session is cut (a network partition, a failover of the
    // database): it notices at its next check and steps down...
    let ended: i64 = db.query(|c| {
        c.query(
            "SELECT pg_terminate_backend(pid)::int::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .len() as i64
    });
    assert_eq!(ended, 1);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!first.confirm(), "a lost lock is noticed");
    assert!(!first.leading());
    // ...and the other replica takes over.
    assert!(second.check());
    assert!(!first.check(), "and the first stays a standby");
}

/// Every row of the tables a dry run could touch, as text.
pub(crate) fn db_snapshot(db: &TestDb) -> Vec<String> {
    db.query(|c| {
        let mut out = Vec::new();
        for table in [
            "findings",
            "outbox",
            "written",
            "runs",
            "mirror",
            "cursors",
            "credentials",
            "schema_migrations",
        ] {
            let exists: bool = c
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .unwrap()
                .get(0);
            if !exists {
                out.push(format!("{table}: none"));
                continue;
            }
            for row in c
                .query(
                    format!("SELECT t::text FROM {table} t ORDER BY t::text").as_str(),
                    &[],
                )
                .unwrap()
            {
                out.push(format!("{table}: {}", row.get::<_, String>(0)));
            }
        }
        out
    })
}

#[test]
fn state_migrate_copies_a_sqlite_state_and_checks_the_counts() {
    let Some(db) = TestDb::create("state_migrate") else {
        return;
    };
    // A state file with a bit of everything.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T00:00:00Z")
        .unwrap()
        .to_utc();
    {
        let s = State::open(&file).unwrap();
        s.commit_cycle(
            now,
            &[channel_sync::store::FindingUpdate {
                key: "k1".into(),
                kind: "direct_vs_partner".into(),
                severity: "warning".into(),
                payload: "{}".into(),
                notified: Some("{\"a\":1}".into()),
            }],
            &[],
            &[],
            &[channel_sync::store::NewMessage {
                route: "default".into(),
                finding_key: Some("k1".into()),
                reason: "new".into(),
                body: "{}".into(),
                channel: "slack".into(),
            }],
        )
        .unwrap();
        s.record_written("files", &[("r1".into(), "f".into(), "v".into())], now)
            .unwrap();
        s.mirror_apply(
            "salesforce",
            "Account",
            1,
            &[channel_sync::store::MirrorRow {
                id: "001".into(),
                modstamp: None,
                data: "{}".into(),
            }],
            &[],
        )
        .unwrap();
        s.set_cursor("salesforce:Account", "c", now).unwrap();
        s.record_run(now, now, "ok", "{}").unwrap();
        channel_sync::decisions::record(
            &s,
            &channel_sync::decisions::Decision {
                key: "k1".into(),
                outcome: channel_sync::decisions::Outcome::parse("split", None, None).unwrap(),
                by: "ana@example.com".into(),
                note: Some("half each".into()),
            },
            now,
        )
        .unwrap();
    }
    let migrate = |to: &str| {
        let (k, v) = db.env();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"));
        cmd.args(["state", "migrate", "--from"])
            .arg(format!("sqlite:{}", file.display()))
            .args(["--to", to])
            .env(k, v);
        if let Some((k, v)) = db.ca_env() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = migrate(&db.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "findings: 1 rows copied",
        "outbox: 1 rows copied",
        "written: 1 rows copied",
        "mirror: 1 rows copied",
        "cursors: 1 rows copied",
        "runs: 1 rows copied",
        "decisions: 1 rows copied",
        "credentials: 0 rows copied",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    assert!(!stdout.contains(&db.password), "no password in the output");
    // The copy reads back as the file did, through the store.
    let settings = db.settings();
    let (pg_findings, pending) = blocking(|| {
        let s = State::connect(&settings).unwrap();
        (s.findings().unwrap(), s.pending().unwrap())
    });
    let file_findings = State::open(&file).unwrap().findings().unwrap();
    assert_eq!(pg_findings, file_findings);
    let (pg_trail, file_trail) = (
        blocking(|| State::connect(&settings).unwrap().all_decisions().unwrap()),
        State::open(&file).unwrap().all_decisions().unwrap(),
    );
    assert_eq!(pg_trail, file_trail, "the decisions trail, time included");
    assert_eq!(pending.len(), 1);
    // A second copy into the same database is refused, and keeps nothing.
    let out = migrate(&db.url);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a state"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.count("findings"), 1);
    // A password in the URL is refused (it belongs in the environment).
    let out = migrate(&db.url.replacen("@", ":secret@", 1));
    assert_eq!(out.status.code(), Some(65));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret@"));
}

#[test]
fn decisions_on_postgresql_are_append_only_and_fold_like_sqlite() {
    let Some(db) = TestDb::create("decisions") else {
        return;
    };
    let settings = db.settings();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
        .unwrap()
        .to_utc();
    let later = now + chrono::Duration::hours(2);
    let decide = |outcome: &str, until: Option<chrono::NaiveDate>, at| {
        let settings = settings.clone();
        let outcome = outcome.to_string();
        blocking(move || {
            let s = State::connect(&settings).unwrap();
            channel_sync::decisions::record(
                &s,
                &channel_sync::decisions::Decision {
                    key: "k1".into(),
                    outcome: channel_sync::decisions::Outcome::parse(&outcome, until, None)
                        .unwrap(),
                    by: "ana@example.com".into(),
                    note: None,
                },
                at,
            )
        })
    };
    // Unknown finding: refused, nothing stored.
    assert!(decide("split", None, now).is_err());
    assert_eq!(db.count("decisions"), 0);
    blocking(|| {
        State::connect(&settings)
            .unwrap()
            .commit_cycle(
                now,
                &[channel_sync::store::FindingUpdate {
                    key: "k1".into(),
                    kind: "direct_vs_partner".into(),
                    severity: "warning".into(),
                    payload: r#"{"partner_ids":["P1"],"opportunity_ids":["O1"]}"#.into(),
                    notified: None,
                }],
                &[],
                &[],
                &[],
            )
            .unwrap()
    });
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1);
    let snoozed = decide("snooze", day, now).unwrap();
    assert_eq!(snoozed.status.as_str(), "snoozed");
    let decided = decide("partner_keeps", None, later).unwrap();
    assert_eq!(decided.status.as_str(), "decided");
    assert!(decided.id > snoozed.id);
    let trail = blocking(|| {
        State::connect(&settings)
            .unwrap()
            .decisions_of("k1")
            .unwrap()
    });
    let outcomes: Vec<(&str, &str)> = trail
        .iter()
        .map(|r| (r.outcome.as_str(), r.at.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("snooze", "2026-11-26T10:00:00Z"),
            ("partner_keeps", "2026-11-26T12:00:00Z")
        ]
    );
    assert_eq!(
        trail[1].basis,
        r#"{"opportunities":["O1"],"partners":["P1"]}"#
    );
    // The trail cannot be rewritten, even by hand.
    for sql in [
        "UPDATE decisions SET outcome = 'direct_keeps'",
        "DELETE FROM decisions",
        "TRUNCATE decisions",
    ] {
        let refused = db.query(|c| c.batch_execute(sql).map_err(|e| format!("{e:?}")));
        let err = refused.expect_err(sql);
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(db.count("decisions"), 2);
}

/// Whether the program's connection (named `channel-sync pid …`) to the
/// test database uses TLS, as the server sees it.
fn program_uses_tls(db: &TestDb) -> bool {
    let name = db.name.clone();
    db.query(move |c| {
        c.query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = $1 AND a.application_name LIKE 'channel-sync%'",
            &[&name],
        )
        .unwrap()
        .get::<_, Option<bool>>(0)
        .unwrap_or(false)
    })
}

#[test]
fn the_state_database_is_reached_over_verified_tls() {
    let Some(db) = TestDb::create("tls") else {
        return;
    };
    if db.ca.is_none() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: store_pg::the_state_database_is_reached_over_verified_tls skipped: the server has no TLS (set CHANNEL_SYNC_TEST_PG_CA, as .ci/run does)"
        );
        return;
    }
    // sslmode=require with the server's CA: TLS, verified.
    let settings = db.settings();
    let state = blocking(|| State::connect(&settings).unwrap());
    assert!(program_uses_tls(&db), "the connection is encrypted");
    drop(state);
    // Without the CA the server's certificate is not trusted: refused, and
    // the message says why without the password.
    let untrusted = channel_sync::config::StateSettings {
        ca_file: None,
        ..db.settings()
    };
    let err = blocking(|| {
        State::connect(&untrusted)
            .err()
            .expect("an untrusted server is refused")
    });
    let text = format!("{err:#}");
    assert!(
        text.contains("TLS") && text.contains("certificate"),
        "{text}"
    );
    assert!(!text.contains(&db.password), "{text}");
    // sslmode=disable: plain TCP, as asked.
    let plain = channel_sync::config::StateSettings {
        url: Some(db.url.replace("sslmode=require", "sslmode=disable")),
        ca_file: None,
        ..db.settings()
    };
    let state = blocking(|| State::connect(&plain).unwrap());
    assert!(!program_uses_tls(&db), "sslmode=disable is plain");
    drop(state);
    // A CA file that holds no certificate is a configuration error naming it.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let bad = channel_sync::config::StateSettings {
        ca_file: Some(junk),
        ..db.settings()
    };
    let err = blocking(|| {
        State::connect(&bad)
            .err()
            .expect("a CA file without certificates")
    });
    assert!(format!("{err}").contains("state.ca_file"), "{err}");
}
