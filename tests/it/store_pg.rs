//! The PostgreSQL state against a real server (tests/it/pg.rs): migrations
//! under concurrent starters, losing the leader lock, a dry run that leaves
//! the database as it was, `state migrate` from a SQLite file, and the
//! console's queries giving the same answers on both backends.

use channel_sync::store::console::FindingFilter;
use channel_sync::store::leader::PgLeader;
use channel_sync::store::{FindingUpdate, State};

use crate::pg::{TestDb, blocking};

/// The schema version both backends reach: their migrations' count (step
/// 13 is SQLite's account-search writer; a no-op here, kept so the numbers
/// stay equal).
const SCHEMA: i64 = 13;

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
        assert_eq!(v.as_ref().ok(), Some(&SCHEMA), "{opened:?}");
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
    assert_eq!(
        versions,
        (1..=SCHEMA).collect::<Vec<i64>>(),
        "each step applied once"
    );
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
            "finding_partners",
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
            &[
                channel_sync::store::FindingUpdate {
                    key: "k1".into(),
                    kind: "direct_vs_partner".into(),
                    severity: "warning".into(),
                    payload: "{}".into(),
                    notified: Some("{\"a\":1}".into()),
                },
                seen(
                    "k2",
                    "partner_vs_partner",
                    "warning",
                    console_payload(
                        &["P1", "P2"],
                        ("A-1", "Acme"),
                        &[("opportunity", "open", Some(250.0))],
                    ),
                ),
            ],
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
        let layout = s
            .mirror_layout("salesforce", "Account", r#"["Name"]"#)
            .unwrap();
        s.mirror_apply(
            "salesforce",
            "Account",
            1,
            layout,
            &[channel_sync::store::MirrorRow {
                id: "001".into(),
                data: r#"["Acme"]"#.into(),
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
        "findings: 2 rows copied",
        "outbox: 1 rows copied",
        "written: 1 rows copied",
        "mirror: 1 rows copied",
        "mirror_layouts: 1 rows copied",
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
    // The mirror reads back with its layout.
    let mirror = |s: &State| {
        let mut rows = Vec::new();
        s.mirror_scan("salesforce", "Account", |id, layout, data| {
            rows.push((id.to_string(), layout, data.to_string()))
        })
        .unwrap();
        (s.mirror_layouts("salesforce", "Account").unwrap(), rows)
    };
    let on_file = mirror(&State::open(&file).unwrap());
    assert_eq!(
        on_file,
        (
            vec![(1, r#"["Name"]"#.to_string())],
            vec![("001".to_string(), Some(1), r#"["Acme"]"#.to_string())]
        )
    );
    assert_eq!(
        blocking(|| mirror(&State::connect(&settings).unwrap())),
        on_file
    );
    // Layouts on PostgreSQL: a known field list keeps its number, a new one
    // takes the next, and a sweep keeps only the layout it names.
    let layouts = blocking(|| {
        let s = State::connect(&settings).unwrap();
        let known = s
            .mirror_layout("salesforce", "Account", r#"["Name"]"#)
            .unwrap();
        let new = s
            .mirror_layout("salesforce", "Account", r#"["Name","Website"]"#)
            .unwrap();
        let swept = s.mirror_sweep("salesforce", "Account", 2, new).unwrap();
        (
            known,
            new,
            swept,
            s.mirror_layouts("salesforce", "Account").unwrap(),
        )
    });
    assert_eq!(
        layouts,
        (1, 2, 1, vec![(2, r#"["Name","Website"]"#.to_string())])
    );
    // The console reads the copy as it reads the file: the derived columns
    // and the partners were filled as the rows went in.
    let console = |s: &State| {
        let p2 = FindingFilter {
            partner_id: Some("P2".into()),
            ..Default::default()
        };
        (
            s.console_open_findings(&FindingFilter::default(), 0, 50)
                .unwrap(),
            s.console_open_findings(&p2, 0, 50).unwrap(),
            s.console_open_by_kind(&[]).unwrap(),
            s.console_timeline("k1").unwrap(),
            s.console_last_run().unwrap(),
        )
    };
    let on_file = console(&State::open(&file).unwrap());
    assert_eq!(on_file.0.rows[0].1, Some(250.0));
    assert_eq!(on_file.1.total, 1);
    let on_pg = blocking(|| console(&State::connect(&settings).unwrap()));
    assert_eq!(on_pg, on_file);
    // A second copy into the same database is refused, and keeps nothing.
    let out = migrate(&db.url);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a state"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.count("findings"), 2);
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

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn console_payload(
    partners: &[&str],
    account: (&str, &str),
    evidence: &[(&str, &str, Option<f64>)],
) -> String {
    serde_json::json!({
        "partner_ids": partners,
        "account_id": account.0,
        "account_name": account.1,
        "evidence": evidence.iter().map(|(t, s, a)| serde_json::json!({"type": t, "status": s, "amount": a})).collect::<Vec<_>>(),
    })
    .to_string()
}

fn seen(key: &str, kind: &str, severity: &str, payload: String) -> FindingUpdate {
    FindingUpdate {
        key: key.into(),
        kind: kind.into(),
        severity: severity.into(),
        payload,
        notified: None,
    }
}

/// The console's queries on a state, checked as they go (the same checks
/// as the SQLite unit test in store/console.rs, and more), with every
/// answer written down so that two backends can be compared whole.
fn console_scenario(s: &State) -> Vec<String> {
    let mut log = Vec::new();
    let now = at("2026-11-26T00:00:00Z");
    let acme = ("A-1", "Acme 100% Corp");
    s.commit_cycle(
        now,
        &[
            // opportunities count (a lost one does not), registrations do not
            seen(
                "a",
                "direct_vs_partner",
                "warning",
                console_payload(
                    &["P1"],
                    acme,
                    &[
                        ("opportunity", "open", Some(100.0)),
                        ("opportunity", "lost", Some(1000.0)),
                        ("registration", "approved", Some(5000.0)),
                    ],
                ),
            ),
            // registrations only: their amounts count
            seen(
                "b",
                "partner_vs_partner",
                "warning",
                console_payload(
                    &["P1", "P2"],
                    acme,
                    &[("registration", "approved", Some(300.0))],
                ),
            ),
            seen("c", "partner_vs_partner", "warning", "not json".into()),
            seen(
                "d",
                "direct_vs_partner",
                "warning",
                console_payload(&["P2"], acme, &[]),
            ),
            // Equal values sort by key, bytewise ('B' before 'a'); the
            // account filter is case-blind and takes '_' literally.
            seen(
                "B",
                "direct_vs_partner",
                "critical",
                console_payload(
                    &["P3", "P4"],
                    ("A-2", "globex_eu"),
                    &[("opportunity", "won", Some(100.0))],
                ),
            ),
            seen(
                "e",
                "stale_registration",
                "info",
                console_payload(
                    &[],
                    ("A-3", "globexXeu"),
                    &[("registration", "lost", Some(50.0))],
                ),
            ),
        ],
        &[],
        &[],
        &[],
    )
    .unwrap();
    let keys = |page: &channel_sync::store::console::FindingPage| -> Vec<(String, Option<f64>)> {
        page.rows.iter().map(|(f, v)| (f.key.clone(), *v)).collect()
    };
    let k = |pairs: &[(&str, Option<f64>)]| -> Vec<(String, Option<f64>)> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let all = s
        .console_open_findings(&FindingFilter::default(), 0, 10)
        .unwrap();
    assert_eq!(
        keys(&all),
        k(&[
            ("b", Some(300.0)),
            ("B", Some(100.0)),
            ("a", Some(100.0)),
            ("c", None),
            ("d", None),
            ("e", None),
        ])
    );
    assert_eq!(all.total, 6);
    log.push(format!("{all:?}"));
    let filter = |f: FindingFilter, offset, limit| {
        let page = s.console_open_findings(&f, offset, limit).unwrap();
        (page.total, keys(&page))
    };
    let p2 = FindingFilter {
        partner_id: Some("P2".into()),
        ..Default::default()
    };
    assert_eq!(
        filter(p2.clone(), 0, 10),
        (2, k(&[("b", Some(300.0)), ("d", None)]))
    );
    let p3 = FindingFilter {
        partner_id: Some("P3".into()),
        ..Default::default()
    };
    assert_eq!(filter(p3.clone(), 0, 10), (1, k(&[("B", Some(100.0))])));
    let acme_direct = FindingFilter {
        kind: Some("direct_vs_partner".into()),
        account: Some("100%".into()),
        ..Default::default()
    };
    assert_eq!(
        filter(acme_direct, 0, 10),
        (2, k(&[("a", Some(100.0)), ("d", None)])),
        "a and d are direct_vs_partner at Acme 100%"
    );
    let globex = FindingFilter {
        account: Some("GLOBEX_".into()),
        ..Default::default()
    };
    assert_eq!(
        filter(globex, 0, 10),
        (1, k(&[("B", Some(100.0))])),
        "case-blind, '_' literal"
    );
    let by_id = FindingFilter {
        account: Some("A-3".into()),
        ..Default::default()
    };
    assert_eq!(filter(by_id, 0, 10), (1, k(&[("e", None)])));
    let critical = FindingFilter {
        severity: Some("critical".into()),
        ..Default::default()
    };
    assert_eq!(filter(critical, 0, 10).0, 1);
    assert_eq!(
        filter(FindingFilter::default(), 1, 2),
        (6, k(&[("B", Some(100.0)), ("a", Some(100.0))]))
    );
    assert_eq!(filter(FindingFilter::default(), 6, 10), (6, vec![]));
    let by_kind = s.console_open_by_kind(&[]).unwrap();
    let counts: Vec<(&str, u64, f64)> = by_kind
        .iter()
        .map(|c| (c.kind.as_str(), c.open, c.value_at_risk))
        .collect();
    assert_eq!(
        counts,
        [
            ("direct_vs_partner", 3, 200.0),
            ("partner_vs_partner", 2, 300.0),
            ("stale_registration", 1, 0.0)
        ]
    );
    log.push(format!("{by_kind:?}"));
    let by_kind = s.console_open_by_kind(&["a".into(), "B".into()]).unwrap();
    assert_eq!((by_kind[0].open, by_kind[0].value_at_risk), (1, 0.0));
    log.push(format!("{by_kind:?}"));
    let without = FindingFilter {
        without: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    assert_eq!(filter(without, 0, 10).0, 4);
    let only = FindingFilter {
        within: Some(vec!["a".into(), "nope".into()]),
        ..Default::default()
    };
    assert_eq!(filter(only, 0, 10), (1, k(&[("a", Some(100.0))])));
    let none = FindingFilter {
        within: Some(vec![]),
        ..Default::default()
    };
    assert_eq!(filter(none, 0, 10), (0, vec![]));

    // Alerts for b: one delivered, one parked, one pending.
    let later = at("2026-11-26T00:05:00Z");
    s.commit_cycle(
        later,
        &[],
        &[],
        &[],
        &["default", "sales", "ops"]
            .iter()
            .map(|route| channel_sync::store::NewMessage {
                route: route.to_string(),
                finding_key: Some("b".into()),
                reason: "new".into(),
                body: "{}".into(),
                channel: "slack".into(),
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let pending = s.pending().unwrap();
    assert_eq!(pending.len(), 3);
    s.mark_sent(pending[0].id, at("2026-11-26T00:06:00Z"))
        .unwrap();
    s.mark_failed(pending[1].id, "410 gone", true).unwrap();

    // A new payload moves the value and the partners; closing drops it.
    let next = at("2026-11-27T00:00:00Z");
    s.commit_cycle(
        next,
        &[
            seen(
                "a",
                "direct_vs_partner",
                "warning",
                console_payload(&["P3"], acme, &[("opportunity", "won", Some(7.5))]),
            ),
            // The same payload again: nothing moves.
            seen(
                "B",
                "direct_vs_partner",
                "critical",
                console_payload(
                    &["P3", "P4"],
                    ("A-2", "globex_eu"),
                    &[("opportunity", "won", Some(100.0))],
                ),
            ),
            // Not JSON any more: no value, no partners.
            seen("d", "direct_vs_partner", "warning", "{".into()),
        ],
        &["b".into()],
        &["e".into()],
        &[],
    )
    .unwrap();
    assert_eq!(
        filter(p3, 0, 10),
        (2, k(&[("B", Some(100.0)), ("a", Some(7.5))]))
    );
    assert_eq!(
        filter(p2, 0, 10),
        (0, vec![]),
        "b closed, d lost its partners"
    );
    let all = s
        .console_open_findings(&FindingFilter::default(), 0, 10)
        .unwrap();
    assert_eq!(
        keys(&all),
        k(&[
            ("B", Some(100.0)),
            ("a", Some(7.5)),
            ("c", None),
            ("d", None)
        ])
    );
    log.push(format!("{all:?}"));
    let (b, risk) = s.console_finding("b").unwrap().unwrap();
    assert_eq!(
        (b.resolved_at.as_deref(), risk),
        (Some("2026-11-27T00:00:00Z"), Some(300.0)),
        "a closed finding keeps its value"
    );
    log.push(format!("{b:?} {risk:?}"));
    assert_eq!(s.console_finding("nope").unwrap(), None);
    let timeline: Vec<(String, String)> = s
        .console_timeline("b")
        .unwrap()
        .into_iter()
        .map(|e| (e.at, e.what))
        .collect();
    let t = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, w)| (a.to_string(), w.to_string()))
            .collect()
    };
    assert_eq!(
        timeline,
        t(&[
            ("", "alert to route sales: parked"),
            ("2026-11-26T00:00:00Z", "first seen"),
            ("2026-11-26T00:00:00Z", "last seen by a cycle"),
            (
                "2026-11-26T00:05:00Z",
                "alert queued to route default (new)"
            ),
            ("2026-11-26T00:05:00Z", "alert queued to route sales (new)"),
            ("2026-11-26T00:05:00Z", "alert queued to route ops (new)"),
            ("2026-11-26T00:06:00Z", "alert delivered to route default"),
            ("2026-11-27T00:00:00Z", "closed: resolved in the data"),
        ])
    );
    log.push(format!("{timeline:?}"));
    let aged: Vec<String> = s
        .console_timeline("e")
        .unwrap()
        .into_iter()
        .map(|e| e.what)
        .collect();
    assert_eq!(aged.last().unwrap(), "closed: aged out of its window");
    assert_eq!(s.console_timeline("nope").unwrap(), vec![]);

    assert_eq!(s.console_last_run().unwrap(), None);
    s.record_run(now, at("2026-11-26T00:00:09Z"), "ok", "{}")
        .unwrap();
    s.record_run(next, at("2026-11-27T00:00:03Z"), "partial", "{}")
        .unwrap();
    let last = s.console_last_run().unwrap().unwrap();
    assert_eq!(
        (
            last.started_at.as_str(),
            last.finished_at.as_str(),
            last.outcome.as_str()
        ),
        ("2026-11-27T00:00:00Z", "2026-11-27T00:00:03Z", "partial")
    );
    log.push(format!("{last:?}"));
    log
}

#[test]
fn the_console_reads_the_same_on_sqlite_and_postgresql() {
    let Some(db) = TestDb::create("console_same") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = console_scenario(&State::open(&dir.path().join("s.db")).unwrap());
    let settings = db.settings();
    let pg = blocking(|| console_scenario(&State::connect(&settings).unwrap()));
    assert_eq!(file, pg);
}

#[test]
fn step_7_fills_the_console_columns_of_findings_already_stored() {
    let Some(db) = TestDb::create("console_backfill") else {
        return;
    };
    let settings = db.settings();
    // A state at version 6: steps 7 to 12 undone by hand (the account
    // search index of step 9 goes with the column it indexes).
    blocking(|| drop(State::connect(&settings).unwrap()));
    db.query(|c| {
        c.batch_execute(
            "DROP FUNCTION findings_console_columns() CASCADE;
             DROP FUNCTION findings_console_partners() CASCADE;
             DROP FUNCTION finding_console(text);
             DROP TABLE finding_partners;
             ALTER TABLE findings DROP COLUMN value_at_risk, DROP COLUMN account_id, DROP COLUMN account_name;
             DROP INDEX outbox_finding;
             DROP INDEX runs_finished;
             ALTER TABLE mirror DROP COLUMN layout;
             DROP TABLE mirror_layouts;
             DELETE FROM schema_migrations WHERE version >= 7;",
        )
        .unwrap()
    });
    let now = at("2026-11-26T00:00:00Z");
    let rows = [
        seen(
            "a",
            "direct_vs_partner",
            "warning",
            console_payload(
                &["P1", "P2"],
                ("A-1", "Acme"),
                &[("registration", "approved", Some(40.0))],
            ),
        ),
        seen("b", "direct_vs_partner", "warning", "not json".into()),
    ];
    db.query(|c| {
        for f in &rows {
            c.execute(
                "INSERT INTO findings (key, kind, severity, notified, payload, first_seen, last_seen)
                 VALUES ($1, $2, $3, '{}', $4, $5, $5)",
                &[&f.key, &f.kind, &f.severity, &f.payload, &now],
            )
            .unwrap();
        }
    });
    let (page, p2, version) = blocking(|| {
        let s = State::connect(&settings).unwrap();
        let p2 = FindingFilter {
            partner_id: Some("P2".into()),
            ..Default::default()
        };
        (
            s.console_open_findings(&FindingFilter::default(), 0, 10)
                .unwrap(),
            s.console_open_findings(&p2, 0, 10).unwrap(),
            s.version().unwrap(),
        )
    });
    assert_eq!(version, SCHEMA);
    let keys: Vec<(&str, Option<f64>)> = page
        .rows
        .iter()
        .map(|(f, v)| (f.key.as_str(), *v))
        .collect();
    assert_eq!(keys, [("a", Some(40.0)), ("b", None)]);
    assert_eq!(p2.total, 1);
    let account: Option<String> = db.query(|c| {
        c.query_one("SELECT account_name FROM findings WHERE key = 'a'", &[])
            .unwrap()
            .get(0)
    });
    assert_eq!(account.as_deref(), Some("Acme"));
}

/// Account names that a search must treat as plain text: accents and other
/// non-ASCII case pairs, the LIKE wildcards and escape, quotes (FTS5 query
/// syntax), ligatures, emoji, CJK, and a few ordinary ones.
const HOSTILE_NAMES: &[&str] = &[
    "Café Müller GmbH",
    "CAFÉ MÜLLER",
    "Ærø Shipping ApS",
    "İstanbul Ticaret A.Ş.",
    "Straße & Co. KG",
    "100% Juice Co",
    "under_score Ltd",
    "O'Brien \"Quoted\" Ltd",
    "back\\slash AG",
    "日本株式会社",
    "Emoji 🚀 Labs",
    "ﬁne Ligatures Inc",
    "Zoë's Bakery",
    "Acme Corp",
    "ACME Holdings",
    "acme",
    "  spaced  out  ",
    "AND OR NOT NEAR",
    "*star* ^caret^ (paren) {brace} :colon:",
];

/// The searches: whole names, pieces of them in other cases, wildcards,
/// quotes, query syntax, one and two characters, and account ids.
const SEARCHES: &[&str] = &[
    "café",
    "CAFÉ",
    "Café",
    "müll",
    "MÜLL",
    "üll",
    "ærø",
    "ÆRØ",
    "ist",
    "İst",
    "straße",
    "STRASSE",
    "%",
    "100%",
    "0% j",
    "%%",
    "_",
    "r_s",
    "der_",
    "%_%",
    "'",
    "o'b",
    "\"quoted\"",
    "\"",
    "\\",
    "k\\s",
    "\\%",
    "株式",
    "日本株",
    "🚀",
    "🚀 l",
    "fine",
    "ﬁne",
    "zoë",
    "ZOË",
    "acme",
    "ACM",
    "cm",
    "a",
    "x",
    "  s",
    "and or",
    "NEAR",
    "*star*",
    "^caret",
    "(paren)",
    "{brace}",
    ":colon:",
    "A-3",
    "A-30",
    "Ltd",
    "ltd",
    "nothing like it",
];

/// Stores one open finding per hostile name (account `A-<i>`), plus a
/// closed one, a reopened one and a renamed one, on `s`.
fn hostile_accounts(s: &State) {
    let now = at("2026-11-26T00:00:00Z");
    let rows: Vec<FindingUpdate> = HOSTILE_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            seen(
                &format!("k{i:02}"),
                "direct_vs_partner",
                "warning",
                console_payload(
                    &["P1"],
                    (&format!("A-{i}"), name),
                    &[("opportunity", "open", Some(i as f64))],
                ),
            )
        })
        .collect();
    s.commit_cycle(now, &rows, &[], &[], &[]).unwrap();
    // Closed: out of the search. Renamed: found by its new name only.
    let renamed = seen(
        "k05",
        "direct_vs_partner",
        "warning",
        console_payload(
            &["P1"],
            ("A-5", "Renamed 50% Juice"),
            &[("opportunity", "open", Some(5.0))],
        ),
    );
    s.commit_cycle(
        at("2026-11-27T00:00:00Z"),
        &[renamed],
        &["k13".into(), "k14".into()],
        &[],
        &[],
    )
    .unwrap();
    // Reopened: found again.
    s.commit_cycle(
        at("2026-11-28T00:00:00Z"),
        &[rows[14].clone()],
        &[],
        &[],
        &[],
    )
    .unwrap();
}

/// The open findings' keys that `search` finds through the console's query.
fn searched(s: &State, search: &str) -> Vec<String> {
    let filter = FindingFilter {
        account: Some(search.into()),
        ..Default::default()
    };
    let page = s.console_open_findings(&filter, 0, 1000).unwrap();
    let mut keys: Vec<String> = page.rows.into_iter().map(|(f, _)| f.key).collect();
    assert_eq!(page.total as usize, keys.len(), "{search:?}");
    keys.sort();
    keys
}

/// On SQLite the trigram index (FTS5) finds exactly what the plain scan
/// finds: the account id, or the name holding the search as a substring
/// with ASCII letters case-blind (SQLite's LIKE), every character of the
/// search taken literally. The reference here is that rule in Rust.
#[test]
fn the_indexed_account_search_finds_what_a_scan_finds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(&dir.path().join("s.db")).unwrap();
    hostile_accounts(&s);
    let mut names: Vec<(String, String, String)> = HOSTILE_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 13)
        .map(|(i, n)| (format!("k{i:02}"), format!("A-{i}"), n.to_string()))
        .collect();
    names.iter_mut().find(|(k, _, _)| k == "k05").unwrap().2 = "Renamed 50% Juice".into();
    let mut found_some = 0;
    for search in SEARCHES
        .iter()
        .copied()
        .chain(HOSTILE_NAMES.iter().copied())
    {
        let mut expected: Vec<String> = names
            .iter()
            .filter(|(_, id, name)| {
                id == search
                    || name
                        .to_ascii_lowercase()
                        .contains(&search.to_ascii_lowercase())
            })
            .map(|(k, _, _)| k.clone())
            .collect();
        expected.sort();
        found_some += usize::from(!expected.is_empty());
        assert_eq!(searched(&s, search), expected, "search {search:?}");
    }
    assert!(found_some > 40, "the searches find things: {found_some}");
    assert_eq!(searched(&s, "Acme Corp"), Vec::<String>::new(), "closed");
    assert_eq!(searched(&s, "ACME HOLD"), ["k14"], "reopened");
    assert_eq!(searched(&s, "100% J"), Vec::<String>::new(), "renamed");
}

/// The PostgreSQL scan: the console's predicate with the planner kept off
/// every index.
fn pg_scan(db: &TestDb, search: &str) -> Vec<String> {
    let search = search.to_string();
    db.query(move |c| {
        c.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
            .unwrap();
        let like = format!(
            "%{}%",
            search
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        c.query(
            "SELECT key FROM findings WHERE resolved_at IS NULL
               AND (account_id = $1 OR account_name ILIKE $2 ESCAPE '\\') ORDER BY key COLLATE \"C\"",
            &[&search, &like],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    })
}

/// The plan of an account search after 3,000 more findings, with the
/// planner kept off plain scans and whole-index scans.
fn pg_search_plan(db: &TestDb) -> String {
    db.query(|c| {
        c.batch_execute(
            "INSERT INTO findings (key, kind, severity, notified, payload, first_seen, last_seen)
             SELECT 'filler' || i, 'direct_vs_partner', 'warning', '{}',
                    json_build_object('account_id', 'F-' || i, 'account_name', 'Filler ' || i)::text,
                    now(), now()
               FROM generate_series(1, 3000) AS i",
        )
        .unwrap();
        // VACUUM moves the GIN index's pending entries into it, as
        // autovacuum does.
        c.batch_execute("VACUUM ANALYZE findings").unwrap();
        c.batch_execute("SET enable_seqscan = off; SET enable_indexscan = off")
            .unwrap();
        let plan: Vec<String> = c
            .query(
                "EXPLAIN SELECT key FROM findings WHERE resolved_at IS NULL
                   AND (account_id = 'acme' OR account_name ILIKE '%acme%' ESCAPE '\\')",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        plan.join("\n")
    })
}

/// On PostgreSQL with `pg_trgm`, step 9 makes the trigram index, the
/// planner can use it, and the search finds what a plain scan finds.
#[test]
fn the_indexed_account_search_finds_what_a_scan_finds_on_postgresql() {
    let Some(db) = TestDb::create("account_search") else {
        return;
    };
    let settings = db.settings();
    blocking(|| hostile_accounts(&State::connect(&settings).unwrap()));
    let s = blocking(|| State::connect(&settings).unwrap());
    for search in SEARCHES
        .iter()
        .copied()
        .chain(HOSTILE_NAMES.iter().copied())
    {
        let found = blocking(|| searched(&s, search));
        assert_eq!(found, pg_scan(&db, search), "search {search:?}");
    }
    assert_eq!(blocking(|| searched(&s, "ACME HOLD")), ["k14"], "reopened");
    blocking(|| drop(s));
    // With a few thousand more findings the planner reads the index.
    let plan = pg_search_plan(&db);
    assert!(
        plan.contains("findings_open_account_name"),
        "the index is used: {plan}"
    );
}

/// A role that may not install `pg_trgm` (no CREATE right on the
/// database) still migrates to step 9: the search scans, finds the same,
/// and the start says why. Once the extension is installed, the next start
/// adds the index.
#[test]
fn without_pg_trgm_the_account_search_scans_and_a_later_start_adds_the_index() {
    let Some(db) = TestDb::create("no_trgm") else {
        return;
    };
    let role = format!("{}_user", db.name);
    let (name, role_sql) = (db.name.clone(), role.clone());
    db.query(move |c| {
        c.batch_execute(&format!(
            "CREATE ROLE {role_sql} LOGIN PASSWORD 'no-trgm-pw';
             REVOKE CREATE ON DATABASE {name} FROM PUBLIC;
             GRANT CONNECT ON DATABASE {name} TO {role_sql};
             GRANT CREATE, USAGE ON SCHEMA public TO {role_sql};"
        ))
        .unwrap()
    });
    let mut settings = db.settings();
    let url = settings.url.clone().unwrap();
    let at = url.find('@').unwrap();
    settings.url = Some(format!("postgres://{role}{}", &url[at..]));
    settings.password = Some(channel_sync::config::Secret::new("no-trgm-pw"));
    let (version, results) = blocking(|| {
        let s = State::connect(&settings).unwrap();
        hostile_accounts(&s);
        let results: Vec<Vec<String>> = SEARCHES.iter().map(|q| searched(&s, q)).collect();
        (s.version().unwrap(), results)
    });
    assert_eq!(version, SCHEMA);
    let has_index = |db: &TestDb| {
        db.query(|c| {
            c.query_one(
                "SELECT to_regclass('findings_open_account_name') IS NOT NULL",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
        })
    };
    assert!(!has_index(&db), "no pg_trgm, no index");
    for (search, found) in SEARCHES.iter().zip(&results) {
        assert_eq!(found, &pg_scan(&db, search), "search {search:?}");
    }
    // An administrator installs the extension: the next start indexes.
    db.query(|c| c.batch_execute("CREATE EXTENSION pg_trgm").unwrap());
    blocking(|| drop(State::connect(&settings).unwrap()));
    assert!(has_index(&db), "the start made the index");
    let again: Vec<Vec<String>> = blocking(|| {
        let s = State::connect(&settings).unwrap();
        SEARCHES.iter().map(|q| searched(&s, q)).collect()
    });
    assert_eq!(again, results);
    let role_sql = role.clone();
    db.query(move |c| {
        let _ = c.batch_execute(&format!(
            "REASSIGN OWNED BY {role_sql} TO CURRENT_USER; DROP OWNED BY {role_sql};"
        ));
    });
    drop(db);
    let admin = std::env::var("CHANNEL_SYNC_TEST_PG_URL").unwrap();
    blocking(move || {
        let mut c = admin
            .parse::<postgres::Config>()
            .unwrap()
            .connect(postgres::NoTls)
            .unwrap();
        let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
    });
}
