//! `channel-sync detect` end to end: the bundled sample, a messy copy of it,
//! and the exit codes of SPEC §1.

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::{NOW, channel_sync, detect_json, sample};

fn keys(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect()
}

/// The findings computed by hand in sample/EXPECTED.md.
const SAMPLE_KEYS: [&str; 14] = [
    "direct_vs_partner:R-01:O-002",
    "direct_vs_partner:R-02:O-005",
    "direct_vs_partner:R-02:O-006",
    "partner_bypassed:R-12:O-015",
    "partner_bypassed:R-13:O-017",
    "partner_vs_partner:A-05",
    "partner_vs_partner:A-16",
    "partner_vs_partner:domain:quantumfjord.no",
    "partner_vs_partner:name:blueharborlogistics",
    "registration_expired:R-03",
    "registration_expired:R-19",
    "registration_expired:R-21",
    "registration_expiring:R-09",
    "registration_expiring:R-11",
];

#[test]
fn the_sample_program_gives_the_expected_report() {
    let (code, report, stderr) = detect_json(&sample());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["as_of"], NOW);
    assert_eq!(
        report["period"],
        json!({"start": "2026-07-01", "end": "2026-09-30", "label": "2026-Q3"})
    );
    assert_eq!(keys(&report), SAMPLE_KEYS);
    assert_eq!(report["rejected"], json!([]));

    let finding = |key: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .unwrap()
            .clone()
    };
    let f = finding("direct_vs_partner:R-02:O-005");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["account_id"], "A-10");
    assert_eq!(f["partner_ids"], json!(["P-1"]));
    assert_eq!(f["first_in"], "R-02");
    assert_eq!(f["match"], json!({"method": "account_id", "score": 1.0}));
    assert_eq!(f["expires_at"], "2027-02-28T00:00:00Z");
    let f = finding("partner_vs_partner:A-16");
    assert_eq!(
        f["first_in"], "R-10",
        "a tie in time goes to the registration"
    );
    assert_eq!(f["match"]["method"], "fuzzy");
    assert_eq!(f["opportunity_ids"], json!(["O-024", "O-025"]));
    let f = finding("partner_vs_partner:domain:quantumfjord.no");
    assert_eq!(f["account_id"], Value::Null);
    assert_eq!(f["match"], Value::Null);
    let f = finding("registration_expired:R-03");
    assert_eq!(
        f["expires_at"], "2026-11-25T16:00:00Z",
        "Silver = silver: 120 days"
    );

    let cards: Vec<Value> = report["scorecards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!([
                c["partner_id"],
                c["reps"],
                c["active_sellers"],
                c["sourced_pipeline"],
                c["sourced_revenue"],
                c["open_registrations"],
                c["expiring_registrations"],
                c["open_conflicts"]
            ])
        })
        .collect();
    assert_eq!(
        cards,
        [
            json!(["P-1", 7, 3, 252000.0, 127840.0, 4, 0, 5]),
            json!(["P-2", 3, 2, 48940.0, 143730.0, 3, 0, 2]),
            json!(["P-3", 2, 0, 71300.0, 0.0, 3, 1, 2]),
            json!(["P-4", 2, 1, 111800.0, 27500.0, 4, 1, 3]),
            json!(["P-5", 2, 1, 209080.0, 32400.0, 3, 1, 2]),
        ]
    );
    let rate = report["scorecards"][0]["active_seller_rate"]
        .as_f64()
        .unwrap();
    assert!((rate - 3.0 / 7.0).abs() < 1e-12);
}

#[test]
fn the_text_report_reads_like_a_review() {
    let out = channel_sync(&[
        "detect", "--input", "sample", "--now", NOW, "--format", "text",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Scorecard period 2026-Q3 (2026-07-01 to 2026-09-30)",
        "FINDINGS (14): 4 critical, 8 warning, 2 info",
        "Direct sales on partner-registered accounts (3)",
        "[CRITICAL] direct_vs_partner:R-02:O-005",
        "matched by fuzzy (score 0.99)",
        "<- first in",
        "PARTNER SCORECARDS (2026-Q3)",
        "42.9%",
        "252,000.00",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

/// Rewrites a CSV the way spreadsheets and exporters mangle them: a BOM, CRLF
/// line ends, every field quoted, columns in reverse order with an extra
/// column full of commas, and then the given bad rows appended.
fn mangle(src: &Path, dst: &Path, bad_rows: &[&[(&str, &str)]]) -> usize {
    let mut reader = csv::Reader::from_path(src).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let mut order: Vec<usize> = (0..header.len()).rev().collect();
    order.insert(1, usize::MAX); // the extra column
    let mut out = Vec::from(&b"\xEF\xBB\xBF"[..]);
    {
        let mut w = csv::WriterBuilder::new()
            .quote_style(csv::QuoteStyle::Always)
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        let cell = |row: &[String], i: usize| {
            if i == usize::MAX {
                "free text, with commas, and \"quotes\"".to_string()
            } else {
                row[i].clone()
            }
        };
        let names: Vec<String> = order
            .iter()
            .map(|&i| {
                if i == usize::MAX {
                    "Notes".into()
                } else {
                    header[i].to_uppercase()
                }
            })
            .collect();
        w.write_record(&names).unwrap();
        let mut rows = 0;
        for r in reader.records() {
            let r: Vec<String> = r.unwrap().iter().map(String::from).collect();
            w.write_record(order.iter().map(|&i| cell(&r, i))).unwrap();
            rows += 1;
        }
        for bad in bad_rows {
            let row: Vec<String> = header
                .iter()
                .map(|h| {
                    bad.iter()
                        .find(|(k, _)| k == h)
                        .map_or(String::new(), |(_, v)| v.to_string())
                })
                .collect();
            w.write_record(order.iter().map(|&i| cell(&row, i)))
                .unwrap();
        }
        w.flush().unwrap();
        drop(w);
        std::fs::write(dst, &out).unwrap();
        rows
    }
}

#[test]
fn a_messy_copy_gives_the_same_findings_plus_the_rejected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = std::collections::HashMap::new();
    for name in [
        "accounts",
        "opportunities",
        "partners",
        "partner_reps",
        "registrations",
        "users",
    ] {
        let bad: Vec<&[(&str, &str)]> = match name {
            "opportunities" => vec![
                &[
                    ("id", "O-900"),
                    ("account_id", "A-01"),
                    ("status", "open"),
                    ("created_at", "31/02/2026"),
                ],
                &[
                    ("id", "O-901"),
                    ("account_id", "A-01"),
                    ("status", "won"),
                    ("created_at", "2026-10-01"),
                    ("amount", "5.000,00"),
                    ("currency", "EUR"),
                ],
            ],
            "registrations" => vec![
                &[
                    ("id", "R-900"),
                    ("partner_id", "P-1"),
                    ("customer_name", "Acme"),
                    ("status", "pending"),
                    ("submitted_at", "2026-10-01"),
                ],
                &[
                    ("id", "R-901"),
                    ("partner_id", "P-404"),
                    ("customer_name", "Acme"),
                    ("status", "approved"),
                    ("submitted_at", "2026-10-01"),
                ],
            ],
            "accounts" => vec![&[("id", "A-900")]],
            _ => vec![],
        };
        let rows = mangle(
            &sample().join(format!("{name}.csv")),
            &dir.path().join(format!("{name}.csv")),
            &bad,
        );
        lines.insert(name, rows as u64 + 2); // header + rows, 1-based
    }

    let (clean_code, clean, _) = detect_json(&sample());
    let (code, messy, stderr) = detect_json(dir.path());
    assert_eq!(clean_code, 0);
    assert_eq!(code, 1, "rejected rows make exit code 1: {stderr}");
    assert!(stderr.contains("5 row(s) rejected"), "{stderr}");
    assert_eq!(messy["findings"], clean["findings"]);
    assert_eq!(messy["scorecards"], clean["scorecards"]);
    let first_bad = |name| lines[name];
    assert_eq!(
        messy["rejected"],
        json!([
            {"file": "accounts.csv", "line": first_bad("accounts"), "reason": "name: required value is empty"},
            {"file": "opportunities.csv", "line": first_bad("opportunities"), "reason": "created_at: not a timestamp: '31/02/2026'"},
            {"file": "opportunities.csv", "line": first_bad("opportunities") + 1, "reason": "amount: not a decimal amount: '5.000,00'"},
            {"file": "registrations.csv", "line": first_bad("registrations"), "reason": "status: not one of submitted, approved, rejected, expired, cancelled, won, lost: 'pending'"},
            {"file": "registrations.csv", "line": first_bad("registrations") + 1, "reason": "partner_id: no partner 'P-404' in partners"},
        ])
    );
}

#[test]
fn a_missing_file_or_column_is_exit_65_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["accounts", "opportunities", "partners", "partner_reps"] {
        std::fs::copy(
            sample().join(format!("{f}.csv")),
            dir.path().join(format!("{f}.csv")),
        )
        .unwrap();
    }
    let input = dir.path().to_str().unwrap();
    let out = channel_sync(&["detect", "--input", input, "--now", NOW]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registrations.csv"), "{err}");
    assert!(out.stdout.is_empty());

    std::fs::write(
        dir.path().join("registrations.csv"),
        "id,partner_id,status,submitted_at\n",
    )
    .unwrap();
    let out = channel_sync(&["detect", "--input", input, "--now", NOW]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("registrations.csv: line 1: required column 'customer_name'"),
        "{err}"
    );
}

#[test]
fn a_bad_config_is_exit_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    for (body, key) in [
        ("[rules]\nfuzzy_threshold = 2.0\n", "rules.fuzzy_threshold"),
        (
            "[rules]\nprotection_days = 90\ncolour = \"red\"\n",
            "rules.colour",
        ),
        (
            "[scorecard]\nfiscal_year_start_month = \"may\"\n",
            "scorecard.fiscal_year_start_month",
        ),
    ] {
        std::fs::write(&config, body).unwrap();
        let out = channel_sync(&[
            "detect",
            "--input",
            "sample",
            "--config",
            config.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(78), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        // Named as the key in error ("configuration: KEY: why"), not just
        // mentioned.
        assert!(
            err.contains(&format!("configuration: {key}: ")),
            "{key} not named in: {err}"
        );
    }
}

#[test]
fn the_clock_comes_from_now() {
    // A month later the expiring registrations have expired.
    let out = channel_sync(&[
        "detect",
        "--input",
        "sample",
        "--now",
        "2026-12-20",
        "--format",
        "json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = keys(&report);
    assert!(k.contains(&"registration_expired:R-09"), "{k:?}");
    assert!(!k.contains(&"registration_expiring:R-09"), "{k:?}");
    let out = channel_sync(&["detect", "--input", "sample", "--now", "31/12/2026"]);
    assert_eq!(out.status.code(), Some(2), "a bad --now is a usage error");
}

#[test]
fn a_currency_without_a_rate_keeps_its_row_in_the_findings_and_is_reported_once() {
    // Open partner opportunities (claims in partner_vs_partner) move to
    // currencies with no rate: they must still be there, amount unknown.
    let dir = tempfile::tempdir().unwrap();
    let data = crate::helpers::copy_sample(dir.path());
    let opps = std::fs::read_to_string(data.join("opportunities.csv")).unwrap();
    let header: Vec<&str> = opps.lines().next().unwrap().split(',').collect();
    let col = |name| header.iter().position(|h| *h == name).unwrap();
    let (cur, amount, partner, status) = (
        col("currency"),
        col("amount"),
        col("partner_id"),
        col("status"),
    );
    let mut changed = 0;
    let edited: Vec<String> = opps
        .lines()
        .map(|l| {
            let mut cells: Vec<String> = l.split(',').map(String::from).collect();
            if cells[partner].starts_with("P-")
                && cells[status] == "open"
                && !cells[amount].is_empty()
            {
                cells[cur] = if changed % 2 == 0 { "CHF" } else { "SEK" }.into();
                changed += 1;
            }
            cells.join(",")
        })
        .collect();
    assert!(changed >= 2);
    std::fs::write(data.join("opportunities.csv"), edited.join("\n") + "\n").unwrap();
    let (_, clean, _) = detect_json(&sample());
    let (code, report, stderr) = detect_json(&data);
    assert_eq!(code, 0, "nothing is rejected: {stderr}");
    assert_eq!(report["rejected"], json!([]));
    let keys = |r: &serde_json::Value| -> Vec<String> {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys(&report), keys(&clean), "every finding is still there");
    let rates = report["missing_rates"].as_array().unwrap();
    assert_eq!(rates.len(), 2, "{rates:?}");
    assert_eq!(rates[0]["currency"], "CHF");
    assert_eq!(
        stderr.matches("no exchange rate for CHF").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("no exchange rate for SEK").count(),
        1,
        "{stderr}"
    );
    // The unknown amounts are left out of the partners' pipeline.
    let pipeline = |r: &serde_json::Value| -> f64 {
        r["scorecards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sourced_pipeline"].as_f64().unwrap())
            .sum()
    };
    assert!(pipeline(&report) < pipeline(&clean));
}

/// `detect` with `RUST_LOG=channel_sync=info` and a log format: stderr.
fn detect_logs(format: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(["--log-format", format, "detect", "--input"])
        .arg(sample())
        .args(["--now", NOW])
        .env("RUST_LOG", "channel_sync=info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_log_format_is_text_or_json_lines() {
    let text = detect_logs("text");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the timing line");
    for line in &lines {
        assert!(
            line.contains(" INFO ") && serde_json::from_str::<Value>(line).is_err(),
            "{line}"
        );
    }
    let json = detect_logs("json");
    let lines: Vec<&str> = json.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        text.lines().filter(|l| !l.trim().is_empty()).count()
    );
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["level"], "INFO", "{line}");
    }
}

#[test]
fn generate_writes_a_program_detect_reads_cleanly_and_the_seed_fixes_the_bytes() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().to_utc();
    for dir in &dirs {
        let params = channel_sync_synth::SynthParams::scaled(4, 2000, now);
        channel_sync_synth::write_program(&dir.path().join("program"), &params).unwrap();
    }
    let files = [
        "accounts.csv",
        "opportunities.csv",
        "partners.csv",
        "partner_reps.csv",
        "registrations.csv",
        "users.csv",
    ];
    for f in files {
        let a = std::fs::read(dirs[0].path().join("program").join(f)).unwrap();
        let b = std::fs::read(dirs[1].path().join("program").join(f)).unwrap();
        assert!(a == b, "{f}: the same seed gives the same bytes");
    }
    let opportunities =
        std::fs::read_to_string(dirs[0].path().join("program/opportunities.csv")).unwrap();
    assert_eq!(
        opportunities.lines().count(),
        2001,
        "a header and 2,000 rows"
    );
    // The bundled configuration has the generator's exchange rates.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(["detect", "--config"])
        .arg(crate::helpers::repo().join("config/channel-sync.toml"))
        .arg("--input")
        .arg(dirs[0].path().join("program"))
        .args(["--now", NOW])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rejected"], json!([]));
    assert!(report["findings"].as_array().unwrap().len() > 10);
}
