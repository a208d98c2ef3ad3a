//! `channel-sync once` against the in-process fake HubSpot: the real binary,
//! HubSpot as CRM, the PRM in files, a fake Slack; everything on port 0.

use std::path::PathBuf;

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{
    Run, TestConfig, backdate_cursor, fake_slack, mirrored, run_command, slack_texts,
};
use channel_sync_fakes::hubspot::{FakeHubSpot, HubSpotConfig, Pipeline, RatePolicy, Stage};

pub struct Account {
    pub fake: FakeHubSpot,
    pub slack: wiremock::MockServer,
    pub dir: tempfile::TempDir,
    pub extra: String,
    /// The `[prm]` section (files by default).
    pub prm: String,
    pub env: Vec<(String, String)>,
}

/// Fast limits for tests: the real defaults (100 per 10 s, 4 searches a
/// second) would make paging tests slow.
pub fn quick() -> HubSpotConfig {
    HubSpotConfig {
        ten_secondly_max: 100_000,
        search_per_second: 1_000,
        ..HubSpotConfig::default()
    }
}

impl Account {
    pub async fn start(config: HubSpotConfig) -> Account {
        let fake = FakeHubSpot::start(config).await;
        let dir = tempfile::tempdir().unwrap();
        let prm = dir.path().join("prm");
        std::fs::create_dir(&prm).unwrap();
        std::fs::write(
            prm.join("partners.csv"),
            "id,name,tier,crm_account_id\nP-1,Northwind Partners,gold,201\nP-2,Contoso Resellers,,202\n",
        )
        .unwrap();
        std::fs::write(
            prm.join("partner_reps.csv"),
            "id,partner_id,email\nR-1,P-1,r1@northwind.example\nR-2,P-1,r2@northwind.example\nR-3,P-2,r3@contoso.example\n",
        )
        .unwrap();
        std::fs::write(
            prm.join("registrations.csv"),
            "id,partner_id,customer_name,customer_domain,status,submitted_at,approved_at\nG-1,P-1,Acme Corp,acme.com,approved,2026-10-01,2026-10-02\nG-2,P-2,Globex,globex.com,approved,2026-08-20,2026-08-30\n",
        )
        .unwrap();
        let token = fake.private_token();
        let prm_section = format!(
            "[prm]\nkind = \"files\"\n\n[prm.files]\ndir = \"{}\"\n",
            prm.display()
        );
        Account {
            fake,
            slack: fake_slack().await,
            extra: String::new(),
            prm: prm_section,
            env: vec![("CHANNEL_SYNC__CRM__HUBSPOT__TOKEN".into(), token)],
            dir,
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state/channel-sync.db")
    }

    pub fn config(&self) -> PathBuf {
        TestConfig::empty()
            .state(&self.state())
            .set("crm.kind", "hubspot")
            .set("crm.hubspot.base_url", self.fake.url())
            .set("crm.hubspot.max_requests_per_10s", 10000)
            .set("crm.hubspot.search_requests_per_second", 1000)
            .set("crm.hubspot.create_properties", true)
            .set("crm.hubspot.portal_id", 4242424)
            .merge(&format!("[crm.hubspot]\n{}", self.prm))
            .set("alerts.slack.per_second", 1000)
            .set(
                "writeback.fields.active_seller_rate",
                "partner_active_seller_rate",
            )
            .set("writeback.fields.reps", "partner_reps")
            .merge(&format!("[writeback.fields]\n{}", self.extra))
            .write(&self.dir.path().join("config.toml"))
    }

    pub async fn run(&self, command: &str, extra: &[&str]) -> Run {
        run_command(command, &self.config(), extra, &self.env, &self.slack).await
    }

    pub async fn once(&self, extra: &[&str]) -> Run {
        self.run("once", extra).await
    }

    pub fn company_value(&self, id: &str, property: &str) -> Value {
        self.fake.company(id).unwrap()["properties"][property].clone()
    }
}

/// The program of the Salesforce tests, in HubSpot, dated an hour ago:
/// - Northwind (P-1, company 201) registered Acme (G-1, approved
///   2026-10-02); a direct rep opened a deal on Acme: direct_vs_partner.
/// - Contoso (P-2, company 202) registered Globex, approved 2026-08-30: its
///   90 days end two days after NOW: registration_expiring.
/// - In Q3 2026 r1 (Northwind, by the partner's company id) and r3 (Contoso,
///   by the partner's id) each won a deal.
pub fn seed(fake: &FakeHubSpot) {
    fake.set_now(Utc::now() - Duration::hours(1));
    for (id, name, domain) in [
        ("101", "Acme Corp", "acme.com"),
        ("102", "Globex", "globex.com"),
        ("201", "Northwind Partners", "northwind.example"),
        ("202", "Contoso Resellers", "contoso.example"),
    ] {
        fake.insert_company(id, json!({"name": name, "domain": domain}));
    }
    fake.insert_owner(json!({"id": "1", "email": "dana@vendor.example", "firstName": "Dana", "lastName": "Direct", "userId": 11}));
    fake.insert_owner(json!({"id": "2", "email": "gone@vendor.example", "firstName": "Former", "lastName": "Rep", "userId": 12, "archived": true}));
    fake.insert_deal(
        "301",
        json!({"dealname": "Acme direct", "amount": "40000", "dealstage": "appointmentscheduled", "pipeline": "default", "hubspot_owner_id": "1", "createdate": "2026-11-01T00:00:00.000Z", "closedate": "2026-12-20T00:00:00.000Z"}),
        &["101"],
    );
    fake.insert_deal(
        "302",
        json!({"dealname": "Globex renewal", "amount": "50000", "dealstage": "closedwon", "pipeline": "default", "hubspot_owner_id": "1", "createdate": "2026-07-01T00:00:00.000Z", "closedate": "2026-09-15T00:00:00.000Z", "channel_partner": "P-2", "channel_partner_rep": "r3@contoso.example"}),
        &["102"],
    );
    fake.insert_deal(
        "303",
        json!({"dealname": "Acme pilot", "amount": "10000", "dealstage": "closedwon", "pipeline": "default", "createdate": "2026-07-01T00:00:00.000Z", "closedate": "2026-08-10T00:00:00.000Z", "channel_partner": "201", "channel_partner_rep": "r1@northwind.example"}),
        &["101"],
    );
    fake.set_now(Utc::now());
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot_as_crm_end_to_end() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    let run = acct.once(&[]).await;
    run.assert_ok();
    assert!(
        run.stdout.contains("accounts 4") && run.stdout.contains("opportunities 3"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("users 2"),
        "archived owners too: {}",
        run.stdout
    );
    assert!(run.stdout.contains("2 open: 2 new"), "{}", run.stdout);
    let texts = slack_texts(&acct.slack).await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Acme") && t.contains("Northwind")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("Globex")), "{texts:?}");
    // Records open in HubSpot (crm.hubspot.portal_id is set).
    assert!(
        texts.iter().any(|t| t
            .contains("<https://app.hubspot.com/contacts/4242424/record/0-2/101|")
            && t.contains("<https://app.hubspot.com/contacts/4242424/record/0-3/301|Acme direct>")),
        "{texts:?}"
    );

    // The properties were created on first use; values as strings.
    assert!(
        acct.fake
            .property_names("companies")
            .contains(&"partner_active_seller_rate".to_string())
    );
    let rate = acct.company_value("201", "partner_active_seller_rate");
    assert_eq!(
        rate.as_str().map(|r| r.parse::<f64>().unwrap()),
        Some(0.5),
        "{rate}"
    );
    assert_eq!(acct.company_value("201", "partner_reps"), json!("2"));
    assert_eq!(acct.company_value("202", "partner_reps"), json!("1"));
    let calls = acct.fake.calls();
    assert_eq!(calls.batch_update, 1, "{calls:?}");
    assert_eq!(calls.list_deals, 1, "{calls:?}");
    assert_eq!(calls.search, 0, "a first cycle lists: {calls:?}");

    // Unchanged: nothing written, nothing sent; only searches.
    acct.fake.reset_counts();
    let again = acct.once(&[]).await;
    again.assert_ok();
    let calls = acct.fake.calls();
    assert_eq!(calls.batch_update, 0, "{calls:?}");
    assert_eq!(calls.list_deals, 1, "only the archived list: {calls:?}");
    assert_eq!(calls.search, 2, "companies and deals: {calls:?}");
    assert_eq!(slack_texts(&acct.slack).await.len(), 2);
    again.assert_synced("deals", "Incremental: 0 read");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_is_searched_and_an_archived_deal_resolves_its_finding() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    let first = acct.once(&[]).await;
    first.assert_ok();
    acct.fake.update_deal("302", json!({"amount": "55000"}));
    acct.fake.archive_deal("301");
    acct.fake.reset_counts();
    let second = acct.once(&[]).await;
    second.assert_ok();
    second.assert_synced("deals", "Incremental: 1 read, 1 removed");
    assert!(
        second.stdout.contains("opportunities 2"),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains("1 resolved"), "{}", second.stdout);
    // The changed deal's company came from one v4 association read.
    assert_eq!(acct.fake.calls().assoc_read, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_read_of_n_deals_costs_ceil_n_over_100_calls() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    for i in 0..247 {
        acct.fake.insert_deal(
            &format!("9{i:04}"),
            json!({"dealname": format!("D{i}"), "dealstage": "appointmentscheduled", "pipeline": "default", "createdate": "2026-10-01T00:00:00.000Z"}),
            &["102"],
        );
    }
    let run = acct.once(&[]).await;
    run.assert_ok();
    assert!(run.stdout.contains("opportunities 250"), "{}", run.stdout);
    let calls = acct.fake.calls();
    assert_eq!(calls.list_deals, 3, "ceil(250 / 100): {calls:?}");
    assert_eq!(calls.list_companies, 1, "{calls:?}");
    assert_eq!(calls.assoc_read, 0, "lists carry associations: {calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_m_companies_costs_ceil_m_over_100_and_a_207_is_retried() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    let mut partners = String::from(
        "id,name,crm_account_id\nP-1,Northwind Partners,201\nP-2,Contoso Resellers,202\n",
    );
    for i in 0..148 {
        let id = format!("7{i:04}");
        acct.fake
            .insert_company(&id, json!({"name": format!("Partner {i}")}));
        partners.push_str(&format!("Q-{i},Partner {i},{id}\n"));
    }
    std::fs::write(acct.dir.path().join("prm/partners.csv"), partners).unwrap();
    acct.fake.fail_updates_for(&["201"]);
    acct.fake.omit_results_in_207(true);
    let first = acct.once(&[]).await;
    // 150 companies: 2 calls. The 207 omits results: only 201 is named as
    // failed, and the others in its batch are not confirmed either.
    assert_eq!(first.code, Some(1), "{}\n{}", first.stdout, first.stderr);
    assert_eq!(acct.fake.calls().batch_update, 2);
    let sizes: Vec<usize> = acct
        .fake
        .batch_bodies()
        .iter()
        .map(|b| b["inputs"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 150);
    assert!(sizes.iter().all(|s| *s <= 100), "{sizes:?}");
    let unconfirmed = acct
        .fake
        .batch_bodies()
        .iter()
        .find(|b| b.to_string().contains("\"201\""))
        .map(|b| b["inputs"].as_array().unwrap().len())
        .unwrap();

    acct.fake.clear_update_failures();
    acct.fake.omit_results_in_207(false);
    acct.fake.reset_counts();
    let second = acct.once(&[]).await;
    second.assert_ok();
    // Everything the 207 did not confirm is written again, nothing else.
    assert!(
        second
            .stdout
            .contains(&format!("{unconfirmed} records written, 0 failed")),
        "{unconfirmed}: {}",
        second.stdout
    );
    assert_eq!(acct.company_value("201", "partner_reps"), json!("2"));
    let third = acct.once(&[]).await;
    assert_eq!(third.code, Some(0));
    assert!(
        third.stdout.contains("0 records written"),
        "{}",
        third.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_search_cap_is_crossed_by_starting_a_new_window() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    let first = acct.once(&[]).await;
    first.assert_ok();
    // 10,050 deals change after the first cycle, each a millisecond apart.
    let base = Utc::now();
    acct.fake.insert_many(
        "deals",
        (0..10_050).map(|i| {
            json!({"id": format!("8{i:05}"), "properties": {"dealname": format!("Bulk {i}"), "dealstage": "appointmentscheduled", "pipeline": "default", "createdate": "2026-10-01T00:00:00.000Z", "hs_lastmodifieddate": (base + Duration::milliseconds(i)).to_rfc3339()}, "associations": {"companies": ["102"]}})
        }),
    );
    acct.fake.reset_counts();
    let second = acct.once(&[]).await;
    second.assert_ok();
    assert!(
        second.stdout.contains("opportunities 10053"),
        "{}",
        second.stdout
    );
    let searches = acct.fake.search_bodies();
    let windows: std::collections::BTreeSet<String> = searches
        .iter()
        .filter(|b| b.to_string().contains("dealname"))
        .map(|b| b["filterGroups"][0]["filters"][0]["value"].to_string())
        .collect();
    assert!(windows.len() >= 2, "a second window started: {windows:?}");
    assert!(
        acct.fake.requests().iter().all(|r| r.status != 400),
        "never paged past the cap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_decide_won_and_lost_not_stage_names() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    let mut pipelines = vec![Pipeline::default_sales()];
    pipelines.push(Pipeline {
        id: "channel".into(),
        label: "Channel".into(),
        stages: vec![
            Stage {
                id: "signed".into(),
                label: "Signed".into(),
                is_closed: true,
                probability: 1.0,
            },
            Stage {
                id: "closedwon".into(),
                label: "Looks won, is not".into(),
                is_closed: false,
                probability: 0.5,
            },
        ],
    });
    acct.fake.set_pipelines(pipelines);
    acct.fake.insert_deal(
        "401",
        json!({"dealname": "Signed", "dealstage": "signed", "pipeline": "channel", "createdate": "2026-07-01T00:00:00.000Z", "closedate": "2026-09-01T00:00:00.000Z", "channel_partner": "P-1", "channel_partner_rep": "r2@northwind.example"}),
        &["102"],
    );
    acct.fake.insert_deal(
        "402",
        json!({"dealname": "Open in channel", "dealstage": "closedwon", "pipeline": "channel", "createdate": "2026-11-01T00:00:00.000Z", "hubspot_owner_id": "1"}),
        &["101"],
    );
    acct.fake.insert_deal(
        "403",
        json!({"dealname": "Nowhere", "dealstage": "imaginary", "pipeline": "channel", "createdate": "2026-11-01T00:00:00.000Z"}),
        &["101"],
    );
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("403") && run.stderr.contains("'imaginary' is not a stage"),
        "{}",
        run.stderr
    );
    // Both Northwind reps sold in Q3 now (401 won through 'signed'); 402 is
    // open, a second direct deal on Acme.
    assert_eq!(
        acct.company_value("201", "partner_active_seller_rate")
            .as_str()
            .map(|r| r.parse::<f64>().unwrap()),
        Some(1.0)
    );
    assert!(run.stdout.contains("3 open"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_wait_or_end_the_cycle_by_policy() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    acct.fake.set_retry_after(Some(1));
    acct.fake.force_429(RatePolicy::TenSecondlyRolling, 2);
    let run = acct.once(&[]).await;
    assert_eq!(
        run.code,
        Some(0),
        "waited out: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        acct.fake
            .requests()
            .iter()
            .filter(|r| r.status == 429)
            .count(),
        2
    );

    acct.fake.force_429(RatePolicy::Daily, 1);
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("daily API limit"), "{}", run.stderr);
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(0), "the next cycle runs: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_burst_is_waited_out_and_malformed_json_ends_the_cycle() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    acct.fake.fail_next(
        3,
        503,
        r#"{"status":"error","message":"Service Unavailable","category":"SERVICE_UNAVAILABLE"}"#,
    );
    let run = acct.once(&[]).await;
    run.assert_ok();
    acct.fake.fail_next(1, 200, r#"{"results": [{"id": "#);
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("unexpected response from HubSpot"),
        "{}",
        run.stderr
    );
    let run = acct.once(&[]).await;
    run.assert_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_refresh_signs_in_and_bad_credentials_are_named() {
    let mut acct = Account::start(quick()).await;
    seed(&acct.fake);
    let cfg = acct.fake.config().clone();
    acct.env = vec![
        (
            "CHANNEL_SYNC__CRM__HUBSPOT__CLIENT_ID".into(),
            cfg.client_id.clone(),
        ),
        (
            "CHANNEL_SYNC__CRM__HUBSPOT__CLIENT_SECRET".into(),
            cfg.client_secret.clone(),
        ),
        (
            "CHANNEL_SYNC__CRM__HUBSPOT__REFRESH_TOKEN".into(),
            cfg.refresh_token.clone(),
        ),
    ];
    let run = acct.once(&[]).await;
    run.assert_ok();
    assert_eq!(
        acct.fake.calls().token,
        1,
        "one refresh for the whole cycle"
    );

    acct.env[2].1 = "not-a-refresh-token".into();
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("HubSpot refused the credentials (BAD_REFRESH_TOKEN)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-a-refresh-token"));

    acct.env = vec![(
        "CHANNEL_SYNC__CRM__HUBSPOT__TOKEN".into(),
        "pat-na1-wrong".into(),
    )];
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("INVALID_AUTHENTICATION"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("pat-na1-wrong"));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_names_a_missing_property() {
    let mut acct = Account::start(quick()).await;
    seed(&acct.fake);
    acct.extra = "".into();
    acct.env.push((
        "CHANNEL_SYNC__CRM__HUBSPOT__CREATE_PROPERTIES".into(),
        "false".into(),
    ));
    let run = acct.run("check-config", &[]).await;
    assert_eq!(run.code, Some(78), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("writeback.fields.active_seller_rate")
            && run.stderr.contains("partner_active_seller_rate"),
        "{}",
        run.stderr
    );
    acct.env.push((
        "CHANNEL_SYNC__CRM__HUBSPOT__PROPERTIES__PARTNER".into(),
        "channel_partner_typo".into(),
    ));
    let run = acct.run("check-config", &[]).await;
    assert_eq!(run.code, Some(78), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("crm.hubspot.properties.partner"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_and_check_config_create_nothing() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    let run = acct.run("check-config", &[]).await;
    run.assert_ok();
    let dry = acct.once(&["--dry-run"]).await;
    dry.assert_ok();
    assert!(
        dry.stdout.contains("Would write 2 record(s) to hubspot"),
        "{}",
        dry.stdout
    );
    assert!(
        !acct
            .fake
            .property_names("companies")
            .contains(&"partner_active_seller_rate".to_string()),
        "no property created"
    );
    assert_eq!(acct.fake.calls().batch_update, 0);
    assert!(slack_texts(&acct.slack).await.is_empty());
    assert!(!acct.state().exists(), "no state file");
}

fn bulk_deal(i: usize) -> String {
    format!("9{i:04}")
}

/// The starting points of the deal searches the fake was sent.
fn deal_windows(fake: &FakeHubSpot) -> Vec<String> {
    fake.search_bodies()
        .iter()
        .filter(|b| b.to_string().contains("dealname"))
        .map(|b| b["filterGroups"][0]["filters"][0]["value"].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_cut_on_page_two_starts_again_from_the_old_cursor_and_loses_nothing() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    // HubSpot's clock (its Date header) is the cursor's: 20 minutes between
    // the change and the cut read put the change out of a moved cursor's
    // reach.
    acct.fake.send_clock_as_date(true);
    let t0 = Utc::now();
    acct.fake.set_now(t0);
    for i in 0..450 {
        acct.fake.insert_deal(
            &bulk_deal(i),
            json!({"dealname": format!("D{i}"), "amount": "1", "dealstage": "appointmentscheduled", "pipeline": "default", "createdate": "2026-10-01T00:00:00.000Z"}),
            &["102"],
        );
    }
    let first = acct.once(&[]).await;
    first.assert_ok();

    // Every bulk deal changes and one is archived; the next read begins 20
    // minutes later and its second search page (of three) is malformed.
    acct.fake.set_now(t0 + Duration::minutes(1));
    for i in 0..450 {
        acct.fake.update_deal(&bulk_deal(i), json!({"amount": "2"}));
    }
    acct.fake.archive_deal(&bulk_deal(7));
    acct.fake.set_now(t0 + Duration::minutes(20));
    acct.fake.fail_matching(
        "/crm/v3/objects/deals/search",
        1,
        1,
        200,
        r#"{"results": [{"id": "#,
    );
    acct.fake.reset_counts();
    let cut = acct.once(&[]).await;
    assert_eq!(cut.code, Some(1), "{}\n{}", cut.stdout, cut.stderr);
    assert!(
        cut.stderr.contains("unexpected response from HubSpot"),
        "{}",
        cut.stderr
    );
    let cut_windows = deal_windows(&acct.fake);
    // (The fake logs the bodies of the searches it answered: page 1.)
    assert_eq!(cut_windows.len(), 1, "{cut_windows:?}");
    let fresh = |acct: &Account| {
        mirrored(&acct.state(), "hubspot", "deals")
            .values()
            .filter(|r| r["amount"] == json!("2"))
            .count()
    };
    assert_eq!(fresh(&acct), 200, "the first page was stored, no more");

    // The next cycle asks again from the old cursor and reads it all.
    acct.fake.reset_counts();
    let next = acct.once(&[]).await;
    next.assert_ok();
    assert_eq!(
        deal_windows(&acct.fake)[0],
        cut_windows[0],
        "the same start"
    );
    next.assert_synced("deals", "1 removed");
    assert!(next.stdout.contains("opportunities 452"), "{}", next.stdout);
    let mirror = mirrored(&acct.state(), "hubspot", "deals");
    assert_eq!(mirror.len(), 452);
    assert!(!mirror.contains_key(&bulk_deal(7)));
    assert_eq!(fresh(&acct), 449);

    // A full read cut on page 2 (of 5) sweeps nothing away, and the next
    // incremental cycle still has every deal.
    acct.fake.fail_matching(
        "/crm/v3/objects/deals?",
        1,
        1,
        200,
        r#"{"results": [{"id": "#,
    );
    let cut = acct.once(&["--full"]).await;
    assert_eq!(cut.code, Some(1), "{}\n{}", cut.stdout, cut.stderr);
    assert_eq!(mirrored(&acct.state(), "hubspot", "deals").len(), 452);
    let next = acct.once(&[]).await;
    next.assert_ok();
    next.assert_synced("deals", "Incremental");
    assert!(next.stdout.contains("opportunities 452"), "{}", next.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_read_runs_after_7_days_and_when_the_properties_read_change() {
    let mut acct = Account::start(quick()).await;
    seed(&acct.fake);
    let first = acct.once(&[]).await;
    first.assert_ok();

    backdate_cursor(&acct.state(), "hubspot/deals", 6);
    let run = acct.once(&[]).await;
    run.assert_synced("deals", "Incremental");
    backdate_cursor(&acct.state(), "hubspot/deals", 8);
    let run = acct.once(&[]).await;
    run.assert_ok();
    run.assert_synced("deals", "Full (the weekly full read): 3 read");
    run.assert_synced("companies", "Incremental");

    acct.fake.add_property("deals", "credited_rep", "string");
    acct.extra
        .push_str("\n[crm.hubspot.properties]\npartner_rep = \"credited_rep\"\n");
    let run = acct.once(&[]).await;
    run.assert_ok();
    run.assert_synced("deals", "Full (the fields read changed): 3 read");
    run.assert_synced("companies", "Incremental");
}

#[tokio::test(flavor = "multi_thread")]
async fn more_than_10000_deals_in_one_millisecond_end_the_cycle_and_a_full_read_takes_them() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    let first = acct.once(&[]).await;
    first.assert_ok();
    let stamp = Utc::now().to_rfc3339();
    acct.fake.insert_many(
        "deals",
        (0..10_050).map(|i| {
            json!({"id": format!("8{i:05}"), "properties": {"dealname": format!("Bulk {i}"), "dealstage": "appointmentscheduled", "pipeline": "default", "createdate": "2026-10-01T00:00:00.000Z", "hs_lastmodifieddate": stamp}, "associations": {"companies": ["102"]}})
        }),
    );
    let stuck = acct.once(&[]).await;
    assert_eq!(stuck.code, Some(1), "{}\n{}", stuck.stdout, stuck.stderr);
    assert!(
        stuck
            .stderr
            .contains("more than 10000 deals share one modification time; run once --full"),
        "{}",
        stuck.stderr
    );
    assert!(
        acct.fake.requests().iter().all(|r| r.status != 400),
        "never paged past the cap"
    );
    let full = acct.once(&["--full"]).await;
    full.assert_ok();
    assert!(
        full.stdout.contains("opportunities 10053"),
        "{}",
        full.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deal_with_no_company_is_rejected_with_that_reason() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    acct.fake.insert_deal(
        "399",
        json!({"dealname": "Orphan", "dealstage": "appointmentscheduled", "pipeline": "default", "createdate": "2026-10-01T00:00:00.000Z"}),
        &[],
    );
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("opportunities 3,") && run.stdout.contains("(1 rejected)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("hubspot deal 399") && run.stderr.contains("no associated company"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_under_oauth_ends_the_cycle_without_a_refresh() {
    let mut acct = Account::start(quick()).await;
    seed(&acct.fake);
    let cfg = acct.fake.config().clone();
    acct.env = vec![
        (
            "CHANNEL_SYNC__CRM__HUBSPOT__CLIENT_ID".into(),
            cfg.client_id.clone(),
        ),
        (
            "CHANNEL_SYNC__CRM__HUBSPOT__CLIENT_SECRET".into(),
            cfg.client_secret.clone(),
        ),
        (
            "CHANNEL_SYNC__CRM__HUBSPOT__REFRESH_TOKEN".into(),
            cfg.refresh_token.clone(),
        ),
    ];
    // The access token dies after three calls, long before its expiry.
    acct.fake.expire_tokens_after(3);
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("INVALID_AUTHENTICATION"),
        "{}",
        run.stderr
    );
    assert_eq!(acct.fake.calls().token, 1, "no refresh in answer to a 401");
    let refused = acct
        .fake
        .requests()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(refused, 1, "the cycle ends at the first 401");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decision_is_written_onto_the_deal_property_once_retried_and_rewritten() {
    let mut acct = Account::start(quick()).await;
    seed(&acct.fake);
    acct.extra
        .push_str("[writeback]\ndecision_field = \"channel_decision\"\n");
    let first = acct.once(&[]).await;
    first.assert_ok();
    // crm.hubspot.create_properties: the deal property is created on first use.
    assert!(
        acct.fake
            .property_names("deals")
            .contains(&"channel_decision".to_string())
    );
    let key: String = rusqlite::Connection::open(acct.state())
        .unwrap()
        .query_row(
            "SELECT key FROM findings WHERE kind = 'direct_vs_partner'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let decided = |d: &Value| d["properties"]["channel_decision"].clone();
    let decide = |outcome: &'static str, by: &'static str| {
        let (key, acct) = (key.clone(), &acct);
        async move {
            let r = acct
                .run(
                    "decide",
                    &[
                        &key,
                        "--outcome",
                        outcome,
                        "--by",
                        by,
                        "--now",
                        "2026-11-26T10:00:00Z",
                    ],
                )
                .await;
            r.assert_ok();
        }
    };
    decide("direct_keeps", "ana@example.com").await;

    // The deal refuses it: retried next cycle.
    acct.fake.fail_updates_for(&["301"]);
    let failed = acct.once(&[]).await;
    assert_eq!(failed.code, Some(1), "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed.stdout.contains("decision write-back 301"),
        "{}",
        failed.stdout
    );
    acct.fake.clear_update_failures();
    acct.fake.reset_counts();
    let retried = acct.once(&[]).await;
    retried.assert_ok();
    assert_eq!(acct.fake.calls().batch_update, 1);
    assert_eq!(
        decided(&acct.fake.deal("301").unwrap()),
        json!("direct_keeps by ana@example.com on 2026-11-26")
    );
    // Scorecards are untouched by the decision's memory: nothing else moved.
    assert_eq!(acct.company_value("201", "partner_reps"), json!("2"));

    acct.fake.reset_counts();
    let quiet = acct.once(&[]).await;
    quiet.assert_ok();
    assert_eq!(
        acct.fake.calls().batch_update,
        0,
        "unchanged: nothing written"
    );

    decide("partner_keeps", "bo@example.com").await;
    acct.fake.reset_counts();
    let changed = acct.once(&[]).await;
    changed.assert_ok();
    assert_eq!(acct.fake.calls().batch_update, 1);
    assert_eq!(
        decided(&acct.fake.deal("301").unwrap()),
        json!("partner_keeps by bo@example.com on 2026-11-26")
    );
}

/// The review's values (SPEC §6.2) mapped in `writeback.fields` go onto the
/// partner's company like the scorecard's, diffed against what was written:
/// once, not again while nothing changes, again when a program cost (read
/// from the PRM's files folder beside HubSpot) changes. A partner with no
/// cost in the quarter has no ROI: the property is cleared, never 0.
#[tokio::test(flavor = "multi_thread")]
async fn review_values_are_written_to_companies_and_diffed() {
    let mut acct = Account::start(quick()).await;
    acct.extra = "roi = \"partner_roi\"\nsourced_pipeline_created = \"partner_pipeline_created\"\ndormant = \"partner_dormant\"\n".into();
    seed(&acct.fake);
    let costs = acct.dir.path().join("prm/program_costs.csv");
    std::fs::write(
        &costs,
        "id,quarter,amount,currency,partner_id\nC-1,2026-Q3,2000,USD,P-1\n",
    )
    .unwrap();
    let first = acct.once(&[]).await;
    first.assert_ok();
    // P-1 (company 201): deal 303 won 10,000, created in Q3; cost 2,000:
    // ROI (10,000 - 2,000) / 2,000 = 4.
    assert_eq!(acct.company_value("201", "partner_roi"), json!("4.000000"));
    assert_eq!(
        acct.company_value("201", "partner_pipeline_created"),
        json!("10000.00")
    );
    assert_eq!(acct.company_value("201", "partner_dormant"), json!("false"));
    let cleared = acct.company_value("202", "partner_roi");
    assert!(
        cleared.is_null() || cleared == json!(""),
        "no cost, no ROI: {cleared}"
    );
    assert!(
        acct.fake
            .property_names("companies")
            .contains(&"partner_dormant".to_string())
    );
    assert_eq!(acct.fake.calls().batch_update, 1);

    acct.fake.reset_counts();
    let second = acct.once(&[]).await;
    second.assert_ok();
    assert!(
        second.stdout.contains("0 records written"),
        "{}",
        second.stdout
    );
    assert_eq!(acct.fake.calls().batch_update, 0);

    std::fs::write(
        &costs,
        "id,quarter,amount,currency,partner_id\nC-1,2026-Q3,5000,USD,P-1\n",
    )
    .unwrap();
    acct.fake.reset_counts();
    let third = acct.once(&[]).await;
    third.assert_ok();
    assert!(
        third.stdout.contains("1 records written, 0 failed"),
        "{}",
        third.stdout
    );
    assert_eq!(acct.company_value("201", "partner_roi"), json!("1.000000"));
    let bodies = acct.fake.batch_bodies();
    let sent = bodies.last().unwrap().to_string();
    assert!(
        sent.contains("partner_roi") && !sent.contains("partner_dormant"),
        "only the changed value is sent: {sent}"
    );
}

/// `crm.hubspot.properties.campaign` names the deal property holding the
/// deal's campaign: it becomes the opportunity's `campaign_id`, so an MDF
/// request on that campaign (in the PRM's files folder) produced pipeline
/// and its effectiveness is 1. A property the account lacks is named.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_campaign_property_attributes_mdf() {
    let mut acct = Account::start(quick()).await;
    acct.extra =
        "mdf_effectiveness = \"partner_mdf_effectiveness\"\nmdf_spend = \"partner_mdf_spend\"\n"
            .into();
    acct.prm = format!("properties.campaign = \"partner_campaign\"\n{}", acct.prm);
    seed(&acct.fake);
    std::fs::write(
        acct.dir.path().join("prm/mdf.csv"),
        "id,partner_id,status,amount,currency,campaign_id,start_date,end_date\nM-1,P-1,paid,3000,USD,CMP-1,2026-07-01,2026-09-30\nM-2,P-2,paid,1000,USD,CMP-2,2026-07-01,2026-09-30\n",
    )
    .unwrap();
    let missing = acct.once(&[]).await;
    assert_eq!(
        missing.code,
        Some(78),
        "{}\n{}",
        missing.stdout,
        missing.stderr
    );
    assert!(
        missing.stderr.contains("crm.hubspot.properties.campaign")
            && missing.stderr.contains("partner_campaign"),
        "{}",
        missing.stderr
    );

    acct.fake
        .add_property("deals", "partner_campaign", "string");
    acct.fake
        .update_deal("303", json!({"partner_campaign": "CMP-1"}));
    let run = acct.once(&[]).await;
    run.assert_ok();
    assert_eq!(
        acct.company_value("201", "partner_mdf_effectiveness"),
        json!("1.000000")
    );
    assert_eq!(
        acct.company_value("201", "partner_mdf_spend"),
        json!("3000.00")
    );
    // Contoso's campaign produced no deal.
    assert_eq!(
        acct.company_value("202", "partner_mdf_effectiveness"),
        json!("0.000000")
    );
}
