//! `channel-sync review` end to end through the binary: the sample's numbers
//! worked out by hand in sample/EXPECTED.md §6, the four formats, absent
//! inputs, bad rows and bad configuration.

use serde_json::{Value, json};

use crate::helpers::{NOW, TestConfig, channel_sync, copy_sample, sample};

fn review(input: &std::path::Path, format: &str) -> (i32, String, String) {
    let out = channel_sync(&[
        "review",
        "--input",
        input.to_str().unwrap(),
        "--now",
        NOW,
        "--format",
        format,
    ]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn review_json(input: &std::path::Path) -> (i32, Value, String) {
    let (code, stdout, stderr) = review(input, "json");
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    (code, v, stderr)
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-6)
}

#[test]
fn the_sample_review_matches_expected_md() {
    let (code, r, stderr) = review_json(&sample());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(r["as_of"], NOW);
    assert_eq!(r["rejected"], json!([]));
    let labels: Vec<&str> = r["quarters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    );
    assert_eq!(r["quarters"][4]["partial"], true);
    assert_eq!(r["quarters"][4]["start"], "2026-10-01");
    assert_eq!(r["quarters"][3]["partial"], false);

    // §6.5: the program in 2026-Q3.
    let p = &r["program"]["2026-Q3"];
    assert!(close(&p["sourced_pipeline_created"], 362000.0), "{p}");
    assert!(close(&p["sourced_revenue"], 331470.0), "{p}");
    assert_eq!(
        (p["reps"].as_u64(), p["active_sellers"].as_u64()),
        (Some(16), Some(7))
    );
    assert!(close(&p["active_seller_rate"], 0.4375), "{p}");
    assert!(close(&p["cost"], 79060.0), "{p}");
    assert!(close(&p["roi"], 252410.0 / 79060.0), "{p}");
    assert!(close(&p["roi_trailing_4q"], 183410.0 / 167060.0), "{p}");
    assert!(close(&p["mdf_spend"], 28400.0), "{p}");
    assert!(close(&p["mdf_effectiveness"], 23000.0 / 28400.0), "{p}");
    assert!(close(&p["mdf_pipeline"], 266000.0), "{p}");
    assert!(
        close(&p["change"]["sourced_pipeline_created"], 17030.0),
        "{p}"
    );
    assert!(close(&p["change"]["sourced_revenue"], 312470.0), "{p}");
    // §6.3: the partial quarter's MDF, and the quarters before any spend.
    let q4 = &r["program"]["2026-Q4"];
    assert!(close(&q4["mdf_spend"], 3000.0), "{q4}");
    assert!(close(&q4["mdf_effectiveness"], 1.0), "{q4}");
    assert!(close(&q4["mdf_pipeline"], 12000.0), "{q4}");
    assert!(close(&q4["cost"], 15000.0), "{q4}");
    assert!(r["program"]["2026-Q2"]["mdf_effectiveness"].is_null());

    // §6.4: per partner.
    let want = [
        (
            "P-1",
            273500.0,
            127840.0,
            7,
            3,
            20000.0,
            Some(5.392),
            15000.0,
            Some(1.0),
            205000.0,
        ),
        (
            "P-2",
            0.0,
            143730.0,
            3,
            2,
            2160.0,
            Some(141570.0 / 2160.0),
            0.0,
            None,
            0.0,
        ),
        ("P-3", 0.0, 0.0, 2, 0, 1500.0, Some(-1.0), 0.0, None, 0.0),
        (
            "P-4",
            88500.0,
            27500.0,
            2,
            1,
            8000.0,
            Some(2.4375),
            8000.0,
            Some(1.0),
            61000.0,
        ),
        (
            "P-5",
            0.0,
            32400.0,
            2,
            1,
            5400.0,
            Some(5.0),
            5400.0,
            Some(0.0),
            0.0,
        ),
    ];
    let partners = r["partners"].as_array().unwrap();
    assert_eq!(partners.len(), 5);
    for (pr, (id, created, revenue, reps, sellers, cost, roi, spend, eff, mdf_pipe)) in
        partners.iter().zip(want)
    {
        assert_eq!(pr["partner_id"], id);
        assert_eq!(pr["dormant"], false, "{id}");
        let m = &pr["quarters"]["2026-Q3"];
        assert!(close(&m["sourced_pipeline_created"], created), "{id}: {m}");
        assert!(close(&m["sourced_revenue"], revenue), "{id}: {m}");
        assert_eq!(m["reps"], reps, "{id}");
        assert_eq!(m["active_sellers"], sellers, "{id}");
        assert!(close(&m["cost"], cost), "{id}: {m}");
        match roi {
            Some(x) => assert!(close(&m["roi"], x), "{id}: {m}"),
            None => assert!(m["roi"].is_null(), "{id}: {m}"),
        }
        assert!(close(&m["mdf_spend"], spend), "{id}: {m}");
        match eff {
            Some(x) => assert!(close(&m["mdf_effectiveness"], x), "{id}: {m}"),
            None => assert!(m["mdf_effectiveness"].is_null(), "{id}: {m}"),
        }
        assert!(close(&m["mdf_pipeline"], mdf_pipe), "{id}: {m}");
    }
    assert_eq!(partners[0]["partner_name"], "Northwind Solutions");
    assert_eq!(partners[0]["tier"], "gold");

    // §6.6.
    assert_eq!(r["dormant"], json!([]));
    assert_eq!(r["disputes"], json!({}));
    let oc = &r["open_conflicts_now"];
    assert_eq!(oc["open"], 9);
    assert_eq!(
        oc["by_kind"],
        json!({"direct_vs_partner": 3, "partner_bypassed": 2, "partner_vs_partner": 4})
    );
}

#[test]
fn text_and_markdown_lead_with_the_four_numbers_and_the_three_questions() {
    for format in ["text", "markdown"] {
        let (code, out, stderr) = review(&sample(), format);
        assert_eq!(code, 0, "{stderr}");
        let four = out.find("The four numbers, 2026-Q3").expect(&out);
        let questions = out.find("The three questions").expect(&out);
        let tables = out.find("The program by quarter").expect(&out);
        assert!(four < questions && questions < tables, "{format}:\n{out}");
        for line in [
            "Partner-sourced pipeline created: 362,000 (+17,030 vs previous quarter)",
            "Partner-sourced revenue: 331,470",
            "Active-seller rate: 43.8% (7 of 16 reps)",
            "Partner-program ROI: 319.3%",
            "Do you know your active-seller rate? 43.8%",
            "9 conflict(s) open now",
            "only the conflicts open now",
            "81.0% of the 28,400 spent in 2026-Q3",
        ] {
            assert!(out.contains(line), "{format}: missing '{line}':\n{out}");
        }
    }
    let (_, md, _) = review(&sample(), "markdown");
    assert!(md.starts_with("# Channel review"), "{md}");
    assert!(md.contains("| 2026-Q4 (to date) |"), "{md}");
}

#[test]
fn html_is_one_self_contained_file_with_escaped_values() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let partners = std::fs::read_to_string(data.join("partners.csv")).unwrap();
    std::fs::write(
        data.join("partners.csv"),
        partners.replace(
            "Northwind Solutions",
            "\"<script>alert(1)</script> Northwind & \"\"Co\"\"\"",
        ),
    )
    .unwrap();
    let (code, html, stderr) = review(&data, "html");
    assert_eq!(code, 0, "{stderr}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
    for network in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(network), "{network} in {html}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Northwind &amp; &quot;Co&quot;"));
    assert!(html.matches("<svg").count() >= 7, "{html}");
    for chart in [
        "Partner-sourced pipeline created",
        "Partner-sourced revenue",
        "Active-seller rate",
        "Partner-program ROI",
        "Active-seller rate per partner",
        "Cost against revenue per partner",
        "MDF spend against the pipeline its campaigns produced",
    ] {
        assert!(html.contains(&format!("<figcaption>{chart}")), "{chart}");
    }
    // The headline numbers come before the charts.
    assert!(html.find("The four numbers").unwrap() < html.find("<svg").unwrap());
}

#[test]
fn without_cost_or_mdf_files_those_metrics_are_null_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    std::fs::remove_file(data.join("program_costs.csv")).unwrap();
    std::fs::remove_file(data.join("mdf.csv")).unwrap();
    let (code, r, stderr) = review_json(&data);
    assert_eq!(code, 0, "{stderr}");
    for q in ["2026-Q3", "2026-Q4"] {
        let p = &r["program"][q];
        for key in [
            "cost",
            "roi",
            "roi_trailing_4q",
            "mdf_spend",
            "mdf_effectiveness",
            "mdf_pipeline",
        ] {
            assert!(p[key].is_null(), "{q} {key}: {p}");
        }
        assert!(close(
            &p["sourced_revenue"],
            if q == "2026-Q3" { 331470.0 } else { 67500.0 }
        ));
    }
    assert_eq!(r["inputs"]["program_costs"], false);
    let (_, text, _) = review(&data, "text");
    assert!(text.contains("Partner-program ROI: no cost data"), "{text}");
    assert!(text.contains("Unknown: no MDF data"), "{text}");
}

#[test]
fn bad_rows_of_the_new_tables_are_rejected_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let mut mdf = std::fs::read_to_string(data.join("mdf.csv")).unwrap();
    mdf.push_str("MDF-07,P-9,paid,100,,USD,,2026-08-01,\n");
    mdf.push_str("MDF-08,P-1,spent,100,,USD,,2026-08-01,\n");
    mdf.push_str("MDF-09,P-1,paid,100,,USD,,2026-08-01,2026-07-01\n");
    std::fs::write(data.join("mdf.csv"), mdf).unwrap();
    let mut costs = std::fs::read_to_string(data.join("program_costs.csv")).unwrap();
    costs.push_str("PC-12,2026-Q5,100,USD,,other\nPC-01,2026-Q3,1,USD,,other\n");
    std::fs::write(data.join("program_costs.csv"), costs).unwrap();
    let (code, r, stderr) = review_json(&data);
    assert_eq!(code, 1, "{stderr}");
    let got: Vec<(String, u64, String)> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["file"].as_str().unwrap().to_string(),
                x["line"].as_u64().unwrap(),
                x["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |file: &str, line: u64, reason: &str| {
        got.iter()
            .any(|(f, l, r)| f == file && *l == line && r.contains(reason))
    };
    assert!(has("mdf.csv", 8, "no partner 'P-9'"), "{got:?}");
    assert!(has("mdf.csv", 9, "status: not one of"), "{got:?}");
    assert!(has("mdf.csv", 10, "end_date: before start_date"), "{got:?}");
    assert!(
        has("program_costs.csv", 13, "quarter: not a quarter"),
        "{got:?}"
    );
    assert!(
        has("program_costs.csv", 14, "duplicate of line 2"),
        "{got:?}"
    );
    // The good rows still count.
    assert!(close(&r["program"]["2026-Q3"]["mdf_spend"], 28400.0));

    std::fs::write(data.join("mdf.csv"), "id,partner_id,status,amount\n").unwrap();
    let (code, _, stderr) = review(&data, "json");
    assert_eq!(code, 65, "{stderr}");
    assert!(
        stderr.contains("mdf.csv") && stderr.contains("start_date"),
        "{stderr}"
    );
}

#[test]
fn review_settings_are_validated_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[review]\ngross_margin = 2.0\n").unwrap();
    let out = channel_sync(&[
        "review",
        "--input",
        sample().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--now",
        NOW,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("review.gross_margin"), "{stderr}");
}

#[test]
fn with_a_state_disputes_per_quarter_come_from_the_findings_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let config = TestConfig::bundled()
        .state(&dir.path().join("state.db"))
        .files(&data, &dir.path().join("out"))
        .write(&dir.path().join("c.toml"));
    let config = config.to_str().unwrap();
    let once = |now: &str| {
        let out = channel_sync(&["once", "--config", config, "--now", now]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    };
    once(NOW);
    // The partner comes back on O-015: that bypass is resolved two days later.
    let opps = std::fs::read_to_string(data.join("opportunities.csv")).unwrap();
    let line = "O-015,A-07,Globex - Data platform,U-2,Negotiation,open,56000,USD,2026-09-25T09:00:00Z,2026-12-31,,,,";
    assert!(opps.contains(line));
    std::fs::write(
        data.join("opportunities.csv"),
        opps.replace(line, &line.replace("2026-12-31,,,,", "2026-12-31,P-2,,,")),
    )
    .unwrap();
    once("2026-11-28T00:00:00Z");
    // Verdicts on two open conflicts (and a snooze, which is no verdict),
    // taken in the quarter: the review counts them by outcome.
    let decide = |key: &str, outcome: &str, extra: &[&str]| {
        let mut args = vec![
            "decide",
            key,
            "--outcome",
            outcome,
            "--by",
            "ana@example.com",
            "--config",
            config,
            "--now",
            "2026-11-29T00:00:00Z",
        ];
        args.extend_from_slice(extra);
        let out = channel_sync(&args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    };
    decide("direct_vs_partner:R-02:O-005", "partner_keeps", &[]);
    decide("partner_bypassed:R-13:O-017", "not_a_conflict", &[]);
    decide(
        "partner_vs_partner:A-05",
        "snooze",
        &["--until", "2026-12-20"],
    );
    let out = channel_sync(&[
        "review",
        "--config",
        config,
        "--now",
        "2026-12-02T00:00:00Z",
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["disputes"]["2026-Q4"],
        json!({"opened": 9, "resolved": 1, "aged_out": 0, "median_days_to_resolve": 2.0,
               "open_at_end": 8, "oldest_open_days": 6,
               "decisions": {"partner_keeps": 1, "not_a_conflict": 1}})
    );
    assert_eq!(r["disputes"]["2026-Q3"]["opened"], 0);
    assert!(
        r["open_conflicts_now"]["note"]
            .as_str()
            .unwrap()
            .contains("state's history")
    );
    let text = channel_sync(&[
        "review",
        "--config",
        config,
        "--now",
        "2026-12-02T00:00:00Z",
        "--format",
        "text",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("What did your last registration dispute teach you?"),
        "{text}"
    );
}

/// `run` with `review.cron` every second posts the review digest to the
/// fake Slack (the cycle's own cron never fires during the test).
#[tokio::test(flavor = "multi_thread")]
async fn the_scheduled_review_digest_reaches_slack() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/digest"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let config = TestConfig::bundled()
        .schedule("0 0 0 1 1 *", false)
        .listen_on_any_port()
        .state(&dir.path().join("state.db"))
        .files(&data, &dir.path().join("out"))
        .set("review.cron", "* * * * * *")
        .set("console.public_url", "https://cs.example.com/console")
        .write(&dir.path().join("c.toml"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(["run", "--now", NOW, "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env(
            "CHANNEL_SYNC__REVIEW__WEBHOOK_URL",
            format!("{}/digest", slack.uri()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut body = None;
    while std::time::Instant::now() < deadline {
        if let Some(r) = slack.received_requests().await.unwrap_or_default().first() {
            body = Some(serde_json::from_slice::<Value>(&r.body).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let body = body.expect("a digest within 30 s");
    let text = body.to_string();
    assert_eq!(body["blocks"][0]["text"]["text"], "Channel review, 2026-Q3");
    for part in [
        "*Partner-sourced pipeline created:* 362,000 (+17,030 vs previous quarter)",
        "*Partner-sourced revenue:* 331,470",
        "*Active-seller rate:* 43.8% (7 of 16 reps)",
        "*Partner-program ROI:* 319.3%",
        "*Best by active-seller rate:* Fabrikam Partners 66.7%",
        "*Worst:* Tailspin Resellers 0.0%",
        "*Dormant partners:* none",
        "*Disputes:* 9 conflict(s) open now (no history)",
        // console.public_url is set: the digest links to the review page.
        "<https://cs.example.com/console/review|Open the review in the console>",
    ] {
        assert!(text.contains(part), "missing {part} in {text}");
    }
}

/// A digest Slack refuses stays pending, in the state too: the next cycle's
/// tick posts it again, also after a restart, and once it is posted the
/// ticks after that (and a later restart) leave it alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_digest_that_failed_is_posted_again_on_the_next_tick() {
    use channel_sync::daemon::{Clock, Daemon};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let slack = MockServer::start().await;
    // The first post is refused (not retried at once), every later one succeeds.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_string("forbidden"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let settings = TestConfig::bundled()
        .files(&data, &dir.path().join("out"))
        .state(&dir.path().join("state.db"))
        .slack(&format!("{}/hook", slack.uri()))
        .set("alerts.slack.per_second", 1000)
        .set("review.cron", "0 0 9 1 * *")
        .settings();
    let clock = Clock::starting_at(channel_sync::values::parse_timestamp(NOW).unwrap());
    let d = Daemon::new(settings.clone(), clock).unwrap();
    let digests = || async {
        slack
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("Channel review"))
            .count()
    };
    assert!(!d.post_digest().await, "Slack refused the first post");
    assert_eq!(digests().await, 1);
    // A restart: the new daemon knows the digest is owed from the state.
    drop(d);
    let d = Daemon::new(settings.clone(), clock).unwrap();
    d.tick().await;
    assert_eq!(digests().await, 2, "the tick posts the pending digest");
    d.tick().await;
    assert_eq!(digests().await, 2, "a posted digest is not posted again");
    drop(d);
    let d = Daemon::new(settings, clock).unwrap();
    d.tick().await;
    assert_eq!(digests().await, 2, "nor after another restart");
}

/// The rows of a `scorecards.csv`, by partner id, as column -> value.
fn scorecard_rows(
    file: &std::path::Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(file).unwrap();
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let row: std::collections::BTreeMap<String, String> = header
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            (row["partner_id"].clone(), row)
        })
        .collect()
}

/// The review's per-partner values (SPEC §6.2, of the scorecard's quarter)
/// go through `writeback.fields` into `scorecards.csv`: written once, not
/// again while nothing changes, and again when a program cost changes. The
/// numbers are sample/EXPECTED.md §6.4's; a `null` (no MDF spend, so no
/// effectiveness) is an empty cell, never 0.
#[test]
fn the_review_values_are_written_back_once_and_again_when_inputs_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let out = dir.path().join("out");
    let config = TestConfig::bundled()
        .files(&data, &out)
        .state(&dir.path().join("state.db"))
        .merge(
            "[writeback.fields]\nroi = \"roi\"\nsourced_pipeline_created = \"pipeline_created\"\nmdf_spend = \"mdf_spend\"\nmdf_effectiveness = \"mdf_effectiveness\"\ndormant = \"dormant\"\n",
        )
        .write(&dir.path().join("c.toml"));
    let once = || {
        let o = channel_sync(&["once", "--config", config.to_str().unwrap(), "--now", NOW]);
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout
    };
    let first = once();
    assert!(first.contains("5 records written, 0 failed"), "{first}");
    let file = out.join("scorecards.csv");
    let header = std::fs::read_to_string(&file).unwrap();
    assert!(
        header.starts_with(
            "partner_id,partner_name,tier,period,reps,active_sellers,active_seller_rate,sourced_pipeline,sourced_revenue,open_registrations,expiring_registrations,open_conflicts,roi,sourced_pipeline_created,mdf_spend,mdf_effectiveness,dormant\n"
        ),
        "{header}"
    );
    let rows = scorecard_rows(&file);
    let get =
        |rows: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
         p: &str,
         c: &str| rows[p][c].clone();
    assert_eq!(get(&rows, "P-1", "roi"), "5.392000");
    assert_eq!(get(&rows, "P-1", "sourced_pipeline_created"), "273500.00");
    assert_eq!(get(&rows, "P-1", "mdf_spend"), "15000.00");
    assert_eq!(get(&rows, "P-1", "mdf_effectiveness"), "1.000000");
    assert_eq!(get(&rows, "P-1", "dormant"), "false");
    assert_eq!(get(&rows, "P-2", "roi"), "65.541667");
    assert_eq!(get(&rows, "P-2", "mdf_spend"), "0.00");
    assert_eq!(get(&rows, "P-2", "mdf_effectiveness"), "", "null, not 0");
    assert_eq!(get(&rows, "P-3", "roi"), "-1.000000");
    assert_eq!(get(&rows, "P-5", "mdf_effectiveness"), "0.000000");

    let second = once();
    assert!(second.contains("0 records written"), "{second}");

    // P-1's own Q3 cost 5,000 -> 10,000: cost 25,000, ROI (127,840 -
    // 25,000) / 25,000 = 4.1136. Only P-1's record changes.
    let costs = std::fs::read_to_string(data.join("program_costs.csv")).unwrap();
    let changed = costs.replace("PC-08,2026-Q3,5000,USD,P-1", "PC-08,2026-Q3,10000,USD,P-1");
    assert_ne!(costs, changed);
    std::fs::write(data.join("program_costs.csv"), changed).unwrap();
    let third = once();
    assert!(third.contains("1 records written, 0 failed"), "{third}");
    let after = scorecard_rows(&file);
    assert_eq!(get(&after, "P-1", "roi"), "4.113600");
    assert_eq!(get(&after, "P-2", "roi"), "65.541667");
}

/// Without a review field in `writeback.fields` the review is not computed
/// and `scorecards.csv` keeps the scorecard's columns only.
#[test]
fn without_a_review_field_scorecards_csv_has_no_review_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let out = dir.path().join("out");
    let config = TestConfig::bundled()
        .files(&data, &out)
        .state(&dir.path().join("state.db"))
        .write(&dir.path().join("c.toml"));
    let o = channel_sync(&["once", "--config", config.to_str().unwrap(), "--now", NOW]);
    assert_eq!(o.status.code(), Some(0));
    let text = std::fs::read_to_string(out.join("scorecards.csv")).unwrap();
    assert!(
        text.starts_with("partner_id,partner_name,tier,period,reps,active_sellers,active_seller_rate,sourced_pipeline,sourced_revenue,open_registrations,expiring_registrations,open_conflicts\n"),
        "{text}"
    );
}

/// `writeback.fields` names a field that is neither the scorecard's nor the
/// review's: exit 78 naming the key.
#[test]
fn an_unknown_writeback_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let config = TestConfig::bundled()
        .files(&data, &dir.path().join("out"))
        .set("writeback.fields.roi_trailing", "x")
        .write(&dir.path().join("c.toml"));
    let o = channel_sync(&["check-config", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("writeback.fields.roi_trailing") && stderr.contains("dormant"),
        "{stderr}"
    );
}
