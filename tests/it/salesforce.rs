//! `channel-sync once` against the in-process fake Salesforce: the real
//! binary, Salesforce as CRM (and as PRM, or with the PRM in files), a fake
//! Slack webhook, everything on port 0.

use std::path::PathBuf;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use wiremock::MockServer;

use crate::helpers::{
    Run, TestConfig, backdate_cursor, fake_slack, mirrored, repo, run_command, slack_texts,
};
use channel_sync_fakes::salesforce::{FakeConfig, FakeSalesforce};

const P1: &str = "001000000000P01AAA";
const P2: &str = "001000000000P02AAA";
const ACME: &str = "001000000000A01AAA";
const GLOBEX: &str = "001000000000A02AAA";

pub(crate) struct Org {
    pub(crate) fake: FakeSalesforce,
    pub(crate) slack: MockServer,
    pub(crate) dir: tempfile::TempDir,
    /// Extra TOML appended to the configuration.
    pub(crate) extra: String,
    pub(crate) env: Vec<(String, String)>,
}

impl Org {
    pub(crate) async fn start(config: FakeConfig) -> Org {
        let fake = FakeSalesforce::start(config).await;
        let slack = fake_slack().await;
        Org {
            fake,
            slack,
            dir: tempfile::tempdir().unwrap(),
            extra: "[prm]\nkind = \"salesforce\"\n".into(),
            env: vec![(
                "CHANNEL_SYNC__CRM__SALESFORCE__CLIENT_SECRET".into(),
                "fake-client-secret".into(),
            )],
        }
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state/channel-sync.db")
    }

    fn config(&self) -> PathBuf {
        TestConfig::empty()
            .state(&self.state())
            .set("crm.kind", "salesforce")
            .set("crm.salesforce.login_url", self.fake.url())
            .set("crm.salesforce.client_id", "fake-client-id")
            .set("crm.salesforce.max_requests_per_second", 1000)
            .set("alerts.slack.per_second", 1000)
            .set(
                "writeback.fields.active_seller_rate",
                "Active_Seller_Rate__c",
            )
            .set("writeback.fields.reps", "Partner_Reps__c")
            .merge(&format!("[writeback.fields]\n{}", self.extra))
            .write(&self.dir.path().join("config.toml"))
    }

    async fn run(&self, command: &str, extra: &[&str]) -> Run {
        run_command(command, &self.config(), extra, &self.env, &self.slack).await
    }

    pub(crate) async fn once(&self, extra: &[&str]) -> Run {
        self.run("once", extra).await
    }

    async fn slack_texts(&self) -> Vec<String> {
        slack_texts(&self.slack).await
    }
}

/// A small channel program, in the org, dated an hour ago (outside the
/// incremental overlap):
/// - Northwind (Gold partner, 2 partner users) registered Acme by Lead,
///   approved by conversion on 2026-10-02; a direct rep then opened an
///   opportunity on Acme: direct_vs_partner.
/// - Contoso registered Globex, converted 2026-08-30: its 90 days end on
///   2026-11-28, two days after NOW: registration_expiring.
/// - Last quarter (Q3 2026) Riley (Northwind, owner of the won deal) and
///   Sam C. (Contoso, credited in Partner_Rep__c) each won one.
pub(crate) fn seed(fake: &FakeSalesforce) {
    fake.set_now(Utc::now() - Duration::hours(1));
    for (id, name, website, partner, tier) in [
        (ACME, "Acme Corp", Some("https://www.acme.com"), false, None),
        (GLOBEX, "Globex", Some("globex.com"), false, None),
        (P1, "Northwind Partners", None, true, Some("Gold")),
        (P2, "Contoso Resellers", None, true, None),
    ] {
        fake.insert(
            "Account",
            json!({"Id": id, "Name": name, "Website": website, "IsPartner": partner, "Partner_Tier__c": tier, "OwnerId": "005000000000D01AAA"}),
        );
    }
    for (id, name, kind, account) in [
        ("005000000000D01AAA", "Dana Direct", "Standard", None),
        (
            "005000000000R01AAA",
            "Riley Reseller",
            "PowerPartner",
            Some(P1),
        ),
        ("005000000000R02AAA", "Sam Seller", "PowerPartner", Some(P1)),
        ("005000000000R03AAA", "Sam C", "PowerPartner", Some(P2)),
    ] {
        fake.insert(
            "User",
            json!({"Id": id, "Name": name, "Email": format!("{}@example.com", id), "UserType": kind, "AccountId": account, "IsActive": true, "CreatedDate": "2026-01-01T00:00:00.000+0000"}),
        );
    }
    fake.insert(
        "Lead",
        json!({"Id": "00Q000000000L01AAA", "Company": "Acme Corp", "Website": "acme.com", "Status": "Closed - Converted", "PartnerAccountId": P1, "CreatedById": "005000000000R01AAA", "CreatedDate": "2026-10-01T00:00:00.000+0000", "ConvertedDate": "2026-10-02"}),
    );
    fake.insert(
        "Lead",
        json!({"Id": "00Q000000000L02AAA", "Company": "Globex", "Status": "Closed - Converted", "PartnerAccountId": P2, "CreatedById": "005000000000R03AAA", "CreatedDate": "2026-08-20T00:00:00.000+0000", "ConvertedDate": "2026-08-30"}),
    );
    fake.insert(
        "Lead",
        json!({"Id": "00Q000000000L03AAA", "Company": "No partner", "Status": "Open - Not Contacted", "CreatedDate": "2026-08-20T00:00:00.000+0000"}),
    );
    for opp in [
        json!({"Id": "006000000000D01AAA", "Name": "Acme direct", "AccountId": ACME, "OwnerId": "005000000000D01AAA", "StageName": "Prospecting", "IsClosed": false, "IsWon": false, "CreatedDate": "2026-11-01T00:00:00.000+0000", "CloseDate": "2026-12-20", "Amount": 40000}),
        json!({"Id": "006000000000W01AAA", "Name": "Globex renewal", "AccountId": GLOBEX, "OwnerId": "005000000000D01AAA", "StageName": "Closed Won", "IsClosed": true, "IsWon": true, "CreatedDate": "2026-07-01T00:00:00.000+0000", "CloseDate": "2026-09-15", "Amount": 50000, "PartnerAccountId": P2, "Partner_Rep__c": "005000000000R03AAA"}),
        json!({"Id": "006000000000W02AAA", "Name": "Acme pilot", "AccountId": ACME, "OwnerId": "005000000000R01AAA", "StageName": "Closed Won", "IsClosed": true, "IsWon": true, "CreatedDate": "2026-07-01T00:00:00.000+0000", "CloseDate": "2026-08-10", "Amount": 10000, "PartnerAccountId": P1}),
    ] {
        fake.insert("Opportunity", opp);
    }
    fake.set_now(Utc::now());
}

fn written(fake: &FakeSalesforce, id: &str) -> (Value, Value) {
    let r = fake.record("Account", id).unwrap();
    (
        r["Active_Seller_Rate__c"].clone(),
        r["Partner_Reps__c"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn salesforce_as_crm_and_prm_end_to_end() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    let run = org.once(&[]).await;
    run.assert_ok();
    assert!(
        run.stdout.contains("accounts 4") && run.stdout.contains("opportunities 3"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("partners 2"), "{}", run.stdout);
    assert!(run.stdout.contains("partner_reps 3"), "{}", run.stdout);
    assert!(run.stdout.contains("registrations 2"), "{}", run.stdout);
    assert!(run.stdout.contains("2 open: 2 new"), "{}", run.stdout);

    let texts = org.slack_texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Acme") && t.contains("Northwind")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("Globex")), "{texts:?}");
    // Each record opens in the org.
    let url = org.fake.url();
    assert!(
        texts.iter().any(
            |t| t.contains(&format!("<{url}/lightning/r/Account/{ACME}/view|"))
                && t.contains(&format!(
                    "<{url}/lightning/r/Opportunity/006000000000D01AAA/view|Acme direct>"
                ))
        ),
        "{texts:?}"
    );

    // Scorecards on the partner Accounts: the rate into a percent field.
    assert_eq!(written(&org.fake, P1), (json!(50.0), json!(2.0)));
    assert_eq!(written(&org.fake, P2), (json!(100.0), json!(1.0)));
    let composite = org.fake.calls().composite;
    assert_eq!(composite, 1, "two accounts, one call");

    // Nothing changed: nothing is written or sent again, and only the
    // changed records are asked for.
    org.fake.reset_counts();
    let again = org.once(&[]).await;
    again.assert_ok();
    assert_eq!(org.fake.calls().composite, 0);
    assert_eq!(org.slack_texts().await.len(), 2);
    again.assert_synced("Opportunity", "Incremental: 0 read");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incremental_cycle_reads_only_changes_and_a_deletion_resolves_its_finding() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    let first = org.once(&[]).await;
    first.assert_ok();

    // One opportunity changes (a new amount), the conflicting one is deleted.
    org.fake.update(
        "Opportunity",
        "006000000000W01AAA",
        json!({"Amount": 55000}),
    );
    org.fake.delete("Opportunity", "006000000000D01AAA");
    org.fake.reset_counts();
    let second = org.once(&[]).await;
    second.assert_ok();
    let synced = second.line("synced      Opportunity");
    assert!(
        synced.contains("Incremental: 2 read, 1 removed, 1 calls"),
        "{}",
        second.stdout
    );
    // The two partner accounts come back: the first cycle's write-back
    // changed them.
    second.assert_synced("Account", "Incremental: 2 read");
    assert!(
        second.stdout.contains("opportunities 2"),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains("1 resolved"), "{}", second.stdout);
    // The incremental reads went through queryAll, bounded by SystemModstamp.
    let soql: Vec<String> = org
        .fake
        .requests()
        .iter()
        .filter_map(|r| r.soql.clone())
        .collect();
    assert!(
        soql.iter()
            .any(|q| q.contains("FROM Opportunity WHERE SystemModstamp >=")),
        "{soql:?}"
    );

    // --full reads everything again and sweeps what is gone.
    org.fake.purge("Opportunity", "006000000000W02AAA");
    let full = org.once(&["--full"]).await;
    full.assert_ok();
    full.assert_synced("Opportunity", "Full (requested): 1 read, 1 removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn salesforce_crm_with_the_prm_in_files() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    let prm = org.dir.path().join("prm");
    std::fs::create_dir(&prm).unwrap();
    // The partner's account by its 15-character id, as spreadsheets hold it.
    std::fs::write(
        prm.join("partners.csv"),
        format!(
            "id,name,tier,crm_account_id\nP-1,Northwind,gold,{}\n",
            &P1[..15]
        ),
    )
    .unwrap();
    std::fs::write(
        prm.join("partner_reps.csv"),
        "id,partner_id,email\nR-1,P-1,005000000000R01AAA@example.com\nR-2,P-1,r2@northwind.example\nR-3,P-1,r3@northwind.example\nR-4,P-1,r4@northwind.example\n",
    )
    .unwrap();
    std::fs::write(
        prm.join("registrations.csv"),
        "id,partner_id,customer_name,customer_domain,status,submitted_at,approved_at\nG-1,P-1,Acme Corp,acme.com,approved,2026-10-01,2026-10-02\n",
    )
    .unwrap();
    org.extra = format!(
        "[prm]\nkind = \"files\"\n\n[prm.files]\ndir = \"{}\"\n",
        prm.display()
    );
    // Contoso is no partner in the files: its won deal is rejected, loudly.
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("006000000000W01AAA") && run.stderr.contains("is not a known partner"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("1 open: 1 new"), "{}", run.stdout);
    let texts = org.slack_texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("Acme"), "{texts:?}");
    // Riley owns the won pilot; the files know Riley by email: 1 seller of
    // 4 reps, written as 25 into the percent field.
    assert_eq!(written(&org.fake, P1), (json!(25.0), json!(4.0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn many_pages_cost_one_call_each_and_expiry_mid_paging_loses_nothing() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    for i in 0..4500 {
        org.fake.insert(
            "Opportunity",
            json!({"Id": format!("006000000{i:06}AAA"), "AccountId": GLOBEX, "IsClosed": false, "IsWon": false, "CreatedDate": "2026-10-01T00:00:00.000+0000"}),
        );
    }
    // 3 describes, Account, User, then the first Opportunity page: the
    // session dies before the second.
    org.fake.expire_sessions_after(6);
    let run = org.once(&[]).await;
    run.assert_ok();
    assert!(run.stdout.contains("opportunities 4503"), "{}", run.stdout);
    let calls = org.fake.calls();
    // ceil(4503 / 2000) = 3 pages of opportunities, 1 each for the others;
    // the second page was refused once (401) and asked again.
    assert_eq!(calls.query, 4, "{calls:?}");
    let more: Vec<u16> = org
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/query/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(more, [401, 200, 200]);
    assert_eq!(org.fake.token_grants().len(), 2, "one re-authentication");
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_m_changed_partners_costs_ceil_m_over_200_calls() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    for i in 0..248 {
        org.fake.insert(
            "Account",
            json!({"Id": format!("001000000{i:06}PPP"), "Name": format!("Partner {i}"), "IsPartner": true}),
        );
    }
    let run = org.once(&[]).await;
    run.assert_ok();
    assert!(run.stdout.contains("250 records written"), "{}", run.stdout);
    assert_eq!(org.fake.calls().composite, 2, "ceil(250 / 200)");
    let sizes: Vec<usize> = org
        .fake
        .composite_bodies()
        .iter()
        .map(|b| b["records"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [200, 50]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_write_failure_is_retried_next_cycle() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    org.fake.fail_writes_for(&[P1]);
    let first = org.once(&[]).await;
    assert_eq!(first.code, Some(1), "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("1 records written, 1 failed"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        "{}",
        first.stdout
    );
    assert_eq!(written(&org.fake, P2), (json!(100.0), json!(1.0)));

    org.fake.clear_write_failures();
    org.fake.reset_counts();
    let second = org.once(&[]).await;
    second.assert_ok();
    assert!(
        second.stdout.contains("1 records written, 0 failed"),
        "{}",
        second.stdout
    );
    let bodies = org.fake.composite_bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0]["records"][0]["id"],
        json!(P1),
        "only the failed one"
    );
    assert_eq!(written(&org.fake, P1), (json!(50.0), json!(2.0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_share_stops_the_cycle_before_it_is_spent() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    // 0.5 of 100,000: the second call brings usage to 50,000, the limit.
    org.fake.set_api_usage(49_998, 100_000);
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("max_daily_share"), "{}", run.stderr);
    assert_eq!(org.fake.calls().total_data, 2, "no call past the share");
    assert!(org.slack_texts().await.is_empty());

    // The org's own limit: REQUEST_LIMIT_EXCEEDED ends the cycle too.
    let mut org = org;
    org.fake.set_api_usage(100_000, 100_000);
    org.env.push((
        "CHANNEL_SYNC__CRM__SALESFORCE__MAX_DAILY_SHARE".into(),
        "1".into(),
    ));
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("request limit"), "{}", run.stderr);

    // Usage falls: the next cycle runs.
    org.fake.set_api_usage(10, 100_000);
    let run = org.once(&[]).await;
    run.assert_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_503s_is_waited_out_and_malformed_json_ends_the_cycle() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    org.fake.fail_next(
        3,
        503,
        r#"[{"message":"Service unavailable","errorCode":"SERVER_UNAVAILABLE"}]"#,
    );
    let run = org.once(&[]).await;
    run.assert_ok();
    let statuses: Vec<u16> = org.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 3);

    org.fake
        .update("Opportunity", "006000000000D01AAA", json!({"Amount": 1}));
    org.fake
        .fail_next(1, 200, r#"{"totalSize": 3, "done": tru"#);
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("unexpected response from Salesforce"),
        "{}",
        run.stderr
    );
    // Nothing was lost: the next cycle reads the change.
    let run = org.once(&[]).await;
    run.assert_ok();
    run.assert_synced("Opportunity", "1 read");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_bearer_signs_in() {
    let key = repo().join("tests/fixtures/salesforce/test_jwt_key.pem");
    let public =
        std::fs::read_to_string(repo().join("tests/fixtures/salesforce/test_jwt_key.pub.pem"))
            .unwrap();
    let mut org = Org::start(FakeConfig {
        jwt_public_key_pem: Some(public),
        ..FakeConfig::default()
    })
    .await;
    seed(&org.fake);
    // (crm.salesforce is written by config(); the JWT keys come by env.)
    org.env = vec![
        (
            "CHANNEL_SYNC__CRM__SALESFORCE__AUTH".into(),
            "jwt_bearer".into(),
        ),
        (
            "CHANNEL_SYNC__CRM__SALESFORCE__USERNAME".into(),
            "integration@example.com".into(),
        ),
        (
            "CHANNEL_SYNC__CRM__SALESFORCE__PRIVATE_KEY_PATH".into(),
            key.display().to_string(),
        ),
    ];
    let run = org.once(&[]).await;
    run.assert_ok();
    assert_eq!(
        org.fake.token_grants(),
        ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    );

    // Another user: the fake refuses the assertion, the cycle says why.
    org.env[1].1 = "someone@else.example".into();
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("Salesforce authentication failed: invalid_grant"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_refresh_token_survives_a_restart() {
    let mut org = Org::start(FakeConfig {
        rotate_refresh_tokens: true,
        ..FakeConfig::default()
    })
    .await;
    seed(&org.fake);
    org.env.push((
        "CHANNEL_SYNC__CRM__SALESFORCE__AUTH".into(),
        "refresh_token".into(),
    ));
    org.env.push((
        "CHANNEL_SYNC__CRM__SALESFORCE__REFRESH_TOKEN".into(),
        "fake-refresh-1".into(),
    ));
    let run = org.once(&[]).await;
    run.assert_ok();
    // fake-refresh-1 is dead now; a new process must use what it rotated to.
    let run = org.once(&[]).await;
    run.assert_ok();
    assert_eq!(org.fake.token_grants(), ["refresh_token", "refresh_token"]);
    assert!(
        !run.stdout.contains("fake-refresh") && !run.stderr.contains("fake-refresh"),
        "never printed"
    );

    // A wrong client secret: invalid_client, named, no secret printed.
    org.env[0].1 = "wrong-secret".into();
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("Salesforce authentication failed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-secret"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_asks_the_org_for_every_configured_field() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    let run = org.run("check-config", &[]).await;
    run.assert_ok();
    assert!(
        run.stderr.contains("every configured field exists"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("fake-client-secret"), "{}", run.stdout);

    org.env.push((
        "CHANNEL_SYNC__CRM__SALESFORCE__FIELDS__PARTNER_REP".into(),
        "Credited_Rep__c".into(),
    ));
    let run = org.run("check-config", &[]).await;
    assert_eq!(run.code, Some(78), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("crm.salesforce.fields.partner_rep")
            && run.stderr.contains("Credited_Rep__c"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_syncs_into_a_copy_and_changes_nothing() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    let first = org.once(&[]).await;
    first.assert_ok();
    let before = std::fs::read(org.state()).unwrap();
    org.fake.update(
        "Opportunity",
        "006000000000W02AAA",
        json!({"CloseDate": "2026-07-05"}),
    );
    org.fake.insert(
        "User",
        json!({"Id": "005000000000R04AAA", "Name": "New Rep", "UserType": "PowerPartner", "AccountId": P1, "IsActive": true, "CreatedDate": "2026-01-01T00:00:00.000+0000"}),
    );
    org.fake.reset_counts();
    let dry = org.once(&["--dry-run"]).await;
    dry.assert_ok();
    assert!(
        dry.stdout.contains("Would write 1 record(s) to salesforce"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("Partner_Reps__c=3"), "{}", dry.stdout);
    assert_eq!(org.fake.calls().composite, 0);
    assert_eq!(std::fs::read(org.state()).unwrap(), before);
    assert_eq!(org.slack_texts().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_ends_the_cycle_with_invalid_client() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    org.env[0].1 = "not-the-secret".into();
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("Salesforce authentication failed: invalid_client"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-secret"), "{}", run.stderr);
    assert_eq!(org.fake.calls().total_data, 0);
    assert!(org.slack_texts().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_from_a_custom_object_through_the_field_and_status_maps() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    for (field, kind) in [
        ("Partner__c", "reference"),
        ("Customer__c", "string"),
        ("Stage__c", "picklist"),
        ("Submitted__c", "datetime"),
        ("Approved__c", "datetime"),
        ("Expires__c", "datetime"),
    ] {
        org.fake.add_field("Deal_Registration__c", field, kind);
    }
    for (id, customer, stage, expires) in [
        (
            "a0X000000000001AAA",
            "Globex",
            "Approved",
            "2026-12-05T00:00:00.000+0000",
        ),
        (
            "a0X000000000002AAA",
            "Initech",
            "Pending Review",
            "2027-01-01T00:00:00.000+0000",
        ),
        (
            "a0X000000000003AAA",
            "Umbrella",
            "Escalated",
            "2027-01-01T00:00:00.000+0000",
        ),
    ] {
        org.fake.insert(
            "Deal_Registration__c",
            json!({"Id": id, "Partner__c": P1, "Customer__c": customer, "Stage__c": stage,
                   "Submitted__c": "2026-10-01T00:00:00.000+0000", "Approved__c": "2026-10-02T00:00:00.000+0000",
                   "Expires__c": expires}),
        );
    }
    org.extra = "[prm]\nkind = \"salesforce\"\n\n[prm.salesforce.registrations]\nobject = \"Deal_Registration__c\"\n\n[prm.salesforce.registrations.fields]\npartner = \"Partner__c\"\ncustomer_name = \"Customer__c\"\nstatus = \"Stage__c\"\nsubmitted_at = \"Submitted__c\"\napproved_at = \"Approved__c\"\nexpires_at = \"Expires__c\"\nrep = \"\"\ncustomer_domain = \"\"\naccount_id = \"\"\nopportunity_id = \"\"\n\n[prm.salesforce.registrations.status_map]\nApproved = \"approved\"\n\"Pending Review\" = \"submitted\"\n".into();
    let run = org.once(&[]).await;
    // Escalated is in no map: rejected with the reason, never guessed.
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("a0X000000000003AAA")
            && run
                .stderr
                .contains("'Escalated' is not in prm.salesforce.registrations.status_map"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("registrations 2"), "{}", run.stdout);
    run.assert_synced("Deal_Registration__c", "Full (first sync): 3 read");
    // Globex's window (expires_at 2026-12-05) ends within 14 days of NOW.
    let texts = org.slack_texts().await;
    assert!(texts.iter().any(|t| t.contains("Globex")), "{texts:?}");
}

fn bulk_id(i: usize) -> String {
    format!("006000000{i:06}AAA")
}

fn bulk_opportunity(i: usize) -> Value {
    json!({"Id": bulk_id(i), "AccountId": GLOBEX, "IsClosed": false, "IsWon": false, "CreatedDate": "2026-10-01T00:00:00.000+0000", "Amount": 1})
}

/// The Opportunity queries the fake was sent.
fn opportunity_soql(fake: &FakeSalesforce) -> Vec<String> {
    fake.requests()
        .iter()
        .filter_map(|r| r.soql.clone())
        .filter(|q| q.contains("FROM Opportunity"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_cut_on_page_two_starts_again_from_the_old_cursor_and_loses_nothing() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    // The org's clock (its Date header) is the cursor's: 20 minutes between
    // the change and the cut read put the change out of a moved cursor's
    // reach.
    org.fake.send_clock_as_date(true);
    let t0 = Utc::now();
    org.fake.set_now(t0);
    org.fake
        .insert_many("Opportunity", (0..4500).map(bulk_opportunity));
    let first = org.once(&[]).await;
    first.assert_ok();

    // Every bulk opportunity changes and one is deleted; the next read
    // begins 20 minutes later and its second page (of three) is malformed.
    org.fake.set_now(t0 + Duration::minutes(1));
    for i in 0..4500 {
        org.fake
            .update("Opportunity", &bulk_id(i), json!({"Amount": 2}));
    }
    org.fake.delete("Opportunity", &bulk_id(7));
    org.fake.set_now(t0 + Duration::minutes(20));
    org.fake.fail_matching(
        "/query/01gFAKE",
        0,
        1,
        200,
        r#"{"totalSize": 4500, "done": fal"#,
    );
    org.fake.reset_counts();
    let cut = org.once(&[]).await;
    assert_eq!(cut.code, Some(1), "{}\n{}", cut.stdout, cut.stderr);
    assert!(
        cut.stderr.contains("unexpected response from Salesforce"),
        "{}",
        cut.stderr
    );
    let cut_soql = opportunity_soql(&org.fake);
    assert_eq!(cut_soql.len(), 1, "{cut_soql:?}");
    // The first page was stored, the rest not: the fault hit page 2.
    let mirror = mirrored(&org.state(), "salesforce", "Opportunity");
    let fresh = mirror
        .values()
        .filter(|r| r["Amount"] == json!(2.0))
        .count();
    assert!(
        (1999..=2000).contains(&fresh),
        "{fresh} stored: {:?}",
        mirror.values().next()
    );

    // The next cycle asks again from the old cursor and reads it all.
    org.fake.reset_counts();
    let next = org.once(&[]).await;
    next.assert_ok();
    assert_eq!(opportunity_soql(&org.fake), cut_soql, "the same query");
    next.assert_synced("Opportunity", "Incremental: 4500 read, 1 removed, 3 calls");
    assert!(
        next.stdout.contains("opportunities 4502"),
        "{}",
        next.stdout
    );
    let mirror = mirrored(&org.state(), "salesforce", "Opportunity");
    assert_eq!(mirror.len(), 4502);
    assert!(!mirror.contains_key(&bulk_id(7)));
    for i in (0..4500).filter(|i| *i != 7) {
        assert_eq!(mirror[&bulk_id(i)]["Amount"], json!(2.0), "{}", bulk_id(i));
    }

    // A full read cut on page 2 sweeps nothing away, and the next
    // incremental cycle still has every record.
    org.fake.fail_matching(
        "/query/01gFAKE",
        0,
        1,
        200,
        r#"{"totalSize": 4502, "done": fal"#,
    );
    let cut = org.once(&["--full"]).await;
    assert_eq!(cut.code, Some(1), "{}\n{}", cut.stdout, cut.stderr);
    assert_eq!(
        mirrored(&org.state(), "salesforce", "Opportunity").len(),
        4502
    );
    let next = org.once(&[]).await;
    next.assert_ok();
    next.assert_synced("Opportunity", "Incremental");
    assert!(
        next.stdout.contains("opportunities 4502"),
        "{}",
        next.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_read_runs_after_15_days_and_when_the_fields_read_change() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    let first = org.once(&[]).await;
    first.assert_ok();
    let quiet = org.once(&[]).await;
    quiet.assert_synced("Opportunity", "Incremental");

    // 14 days is not enough; past 15 days the object is read whole.
    backdate_cursor(&org.state(), "salesforce/Opportunity", 14);
    let run = org.once(&[]).await;
    run.assert_synced("Opportunity", "Incremental");
    backdate_cursor(&org.state(), "salesforce/Opportunity", 16);
    let run = org.once(&[]).await;
    run.assert_ok();
    run.assert_synced(
        "Opportunity",
        "Full (the last sync is older than 15 days): 3 read",
    );
    run.assert_synced("Account", "Incremental");

    // Another partner rep field: the opportunities are read whole again.
    org.fake
        .add_field("Opportunity", "Credited_Rep__c", "string");
    org.extra
        .push_str("\n[crm.salesforce.fields]\npartner_rep = \"Credited_Rep__c\"\n");
    let run = org.once(&[]).await;
    run.assert_ok();
    run.assert_synced("Opportunity", "Full (the fields read changed): 3 read");
    run.assert_synced("Account", "Incremental");
}

/// The direct-vs-partner finding's key, from the state.
fn conflict_key(org: &Org) -> String {
    let conn = rusqlite::Connection::open(org.state()).unwrap();
    conn.query_row(
        "SELECT key FROM findings WHERE kind = 'direct_vs_partner'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// The Opportunity records each composite call wrote, as (id, decision).
fn decision_writes(fake: &FakeSalesforce) -> Vec<Vec<(String, Value)>> {
    fake.composite_bodies()
        .iter()
        .map(|b| {
            b["records"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["attributes"]["type"] == "Opportunity")
                .map(|r| {
                    (
                        r["id"].as_str().unwrap().to_string(),
                        r["Channel_Decision__c"].clone(),
                    )
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decision_is_written_onto_its_opportunities_once_retried_and_rewritten_when_it_changes() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    org.fake
        .add_field("Opportunity", "Channel_Decision__c", "string");
    org.extra
        .push_str("[writeback]\ndecision_field = \"Channel_Decision__c\"\n");
    let first = org.once(&[]).await;
    first.assert_ok();
    assert_eq!(
        org.fake.calls().composite,
        1,
        "scorecards only: no decision yet"
    );
    let key = conflict_key(&org);
    let decide = |outcome: &'static str, by: &'static str| {
        let key = key.clone();
        let org = &org;
        async move {
            let r = org
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
    decide("partner_keeps", "ana@example.com").await;

    // The whole batch fails: nothing is remembered, the cycle says so.
    org.fake.reset_counts();
    org.fake.fail_matching(
        "composite/sobjects",
        0,
        1,
        400,
        r#"[{"message":"Session busy","errorCode":"UNABLE_TO_LOCK_ROW"}]"#,
    );
    let failed = org.once(&[]).await;
    assert_eq!(failed.code, Some(1), "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed
            .stdout
            .contains("decision write-back 006000000000D01AAA"),
        "{}",
        failed.stdout
    );
    assert!(
        org.fake
            .record("Opportunity", "006000000000D01AAA")
            .unwrap()["Channel_Decision__c"]
            .is_null()
    );

    // Retried next cycle, in one call, onto the decided opportunities only.
    org.fake.reset_counts();
    let retried = org.once(&[]).await;
    retried.assert_ok();
    let writes = decision_writes(&org.fake);
    assert_eq!(writes.len(), 1, "{writes:?}");
    let value = json!("partner_keeps by ana@example.com on 2026-11-26");
    assert!(
        writes[0].contains(&("006000000000D01AAA".to_string(), value.clone())),
        "{writes:?}"
    );
    assert!(writes[0].iter().all(|(_, v)| *v == value), "{writes:?}");
    assert_eq!(
        org.fake
            .record("Opportunity", "006000000000D01AAA")
            .unwrap()["Channel_Decision__c"],
        value
    );
    // Scorecards did not move: the decision's writes are remembered apart.
    assert!(
        org.fake
            .composite_bodies()
            .iter()
            .all(|b| b["records"][0]["attributes"]["type"] == "Opportunity")
    );

    // Unchanged: nothing is written.
    org.fake.reset_counts();
    let quiet = org.once(&[]).await;
    quiet.assert_ok();
    assert_eq!(org.fake.calls().composite, 0);

    // A new decision: written again, once.
    decide("split", "bo@example.com").await;
    org.fake.reset_counts();
    let changed = org.once(&[]).await;
    changed.assert_ok();
    let writes = decision_writes(&org.fake);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].contains(&(
            "006000000000D01AAA".to_string(),
            json!("split by bo@example.com on 2026-11-26")
        )),
        "{writes:?}"
    );

    // Decided again, then the opportunity is deleted in the CRM: nothing is
    // sent for it (it would fail every cycle).
    decide("direct_keeps", "cy@example.com").await;
    org.fake.delete("Opportunity", "006000000000D01AAA");
    org.fake.reset_counts();
    let gone = org.once(&[]).await;
    gone.assert_ok();
    assert!(
        decision_writes(&org.fake)
            .iter()
            .flatten()
            .all(|(id, _)| id != "006000000000D01AAA"),
        "{:?}",
        decision_writes(&org.fake)
    );
}

/// With Campaigns enabled (`Opportunity.CampaignId` in describe) the field
/// is read; the review's values mapped in `writeback.fields` go onto the
/// partner Accounts beside the scorecard's: `dormant` into a checkbox as a
/// boolean, the pipeline created as a number, and ROI, with no cost source
/// for a Salesforce PRM, cleared (null), never 0.
#[tokio::test(flavor = "multi_thread")]
async fn review_values_go_onto_partner_accounts() {
    let mut org = Org::start(FakeConfig::default()).await;
    org.fake.add_field("Opportunity", "CampaignId", "reference");
    for (field, kind) in [
        ("Dormant__c", "boolean"),
        ("Pipeline_Created__c", "double"),
        ("Partner_Roi__c", "double"),
    ] {
        org.fake.add_field("Account", field, kind);
    }
    org.extra = "dormant = \"Dormant__c\"\nsourced_pipeline_created = \"Pipeline_Created__c\"\nroi = \"Partner_Roi__c\"\n\n[prm]\nkind = \"salesforce\"\n".into();
    seed(&org.fake);
    let run = org.once(&[]).await;
    run.assert_ok();
    let p1 = org.fake.record("Account", P1).unwrap();
    assert_eq!(p1["Dormant__c"], json!(false), "{p1}");
    assert_eq!(p1["Pipeline_Created__c"], json!(10000.0), "{p1}");
    assert!(p1["Partner_Roi__c"].is_null(), "no cost data: {p1}");
    let p2 = org.fake.record("Account", P2).unwrap();
    assert_eq!(p2["Pipeline_Created__c"], json!(50000.0), "{p2}");
    assert_eq!(org.fake.calls().composite, 1, "one call for both accounts");

    org.fake.reset_counts();
    let again = org.once(&[]).await;
    again.assert_ok();
    assert_eq!(org.fake.calls().composite, 0, "nothing changed");
}

/// The console of a daemon whose CRM is Salesforce shows the program's
/// partners, reps and registrations after a cycle: its snapshot comes from
/// the data the cycle evaluated, not from files (which an API source has
/// none of).
#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_a_salesforce_program_after_a_cycle() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    org.extra
        .push_str("[console]\nlisten = \"127.0.0.1:0\"\nsecure_cookie = false\n");
    let path = org.config();
    let mut env = org.env.clone();
    env.push((
        "CHANNEL_SYNC__CONSOLE__TOKEN".into(),
        "console-test-token-0123456789".into(),
    ));
    let settings = channel_sync::config::Settings::load_with_env(Some(&path), env).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(crate::helpers::NOW)
        .unwrap()
        .to_utc();
    let daemon =
        channel_sync::daemon::Daemon::new(settings, channel_sync::clock::Clock::starting_at(now))
            .unwrap();
    let console = daemon.console().expect("the console is on");
    assert!(
        console.snapshot().partners.is_empty(),
        "nothing before a cycle"
    );
    daemon.tick().await;
    // The snapshot is rebuilt off the async workers after the cycle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while console.snapshot().partners.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let snap = console.snapshot();
    let names: Vec<&str> = snap.partners.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"Northwind Partners"), "{names:?}");
    assert!(names.contains(&"Contoso Resellers"), "{names:?}");
    let northwind = snap
        .partners
        .iter()
        .find(|p| p.name == "Northwind Partners")
        .unwrap();
    assert!(
        northwind.rep_list.len() >= 2,
        "its reps: {:?}",
        northwind.rep_list.len()
    );
    assert!(snap.review.is_some(), "the review page has data");
    assert!(snap.note.is_none(), "{:?}", snap.note);

    // A finding's page links its records into the org's Lightning, at the
    // instance URL the token response gave (the fake's own address).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(channel_sync::console::serve(
        listener,
        console.clone(),
        std::future::pending::<()>(),
    ));
    let cookie = crate::console::sign_in(&base, "revops").await;
    let (status, list) = crate::console::get(&base, "/findings", &cookie).await;
    assert_eq!(status, 200, "{list}");
    let lightning = format!("{}/lightning/r/", org.fake.url());
    let mut opportunity_links = 0;
    let keys: Vec<&str> = list
        .split("href=\"/finding?key=")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(!keys.is_empty(), "findings listed: {list}");
    for key in keys {
        let (status, page) =
            crate::console::get(&base, &format!("/finding?key={key}"), &cookie).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains(&format!("href=\"{lightning}Account/001")),
            "the account links to {lightning}: {page}"
        );
        opportunity_links += page
            .matches(&format!("href=\"{lightning}Opportunity/006"))
            .count();
    }
    assert!(opportunity_links > 0, "opportunities link to {lightning}");
}

/// The scheduled review digest of a Salesforce program: the review command
/// reads files, so the daemon makes the digest's review from the last
/// successful cycle's data. Before any cycle the digest waits (and is
/// retried at the next tick, after its cycle).
#[tokio::test(flavor = "multi_thread")]
async fn the_review_digest_of_a_salesforce_program_is_made_from_the_cycles_data() {
    let mut org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    org.extra.push_str("[review]\ncron = \"0 0 9 1 * *\"\n");
    let path = org.config();
    let digest = fake_slack().await;
    let mut env = org.env.clone();
    env.push((
        "CHANNEL_SYNC__REVIEW__WEBHOOK_URL".into(),
        format!("{}/digest", digest.uri()),
    ));
    let settings = channel_sync::config::Settings::load_with_env(Some(&path), env).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(crate::helpers::NOW)
        .unwrap()
        .to_utc();
    let daemon =
        channel_sync::daemon::Daemon::new(settings, channel_sync::clock::Clock::starting_at(now))
            .unwrap();
    assert!(
        !daemon.post_digest().await,
        "no cycle yet: nothing to review"
    );
    assert!(slack_texts(&digest).await.is_empty());
    // The tick's cycle makes the review; the pending digest goes out after it.
    daemon.tick().await;
    let posted = slack_texts(&digest).await;
    assert_eq!(posted.len(), 1, "{posted:?}");
    let body = &posted[0];
    assert!(
        body.contains("active-seller rate") || body.contains("Active-seller rate"),
        "{body}"
    );
    assert!(
        body.contains("Northwind Partners") || body.contains("Contoso Resellers"),
        "the program's partners: {body}"
    );
}

/// `review` on a Salesforce program reads it as a dry run does (the mirror
/// in a scratch copy of the state) and reviews it; the stored state stays
/// as it was, and a second run after a cycle gives the same review.
#[tokio::test(flavor = "multi_thread")]
async fn review_reads_a_salesforce_program_and_stores_nothing() {
    let org = Org::start(FakeConfig::default()).await;
    seed(&org.fake);
    let review = || async {
        org.run(
            "review",
            &["--now", crate::helpers::NOW, "--format", "json"],
        )
        .await
    };
    let first = review().await;
    first.assert_ok();
    assert!(!org.state().exists(), "a review stores nothing");
    let json: Value = serde_json::from_str(&first.stdout).unwrap();
    let partners = json["partners"].to_string();
    assert!(partners.contains("Northwind Partners"), "{partners}");
    assert!(partners.contains("Contoso Resellers"), "{partners}");
    // After a cycle (the mirror stored), the same review.
    let cycle = org.once(&[]).await;
    cycle.assert_ok();
    let before = std::fs::read(org.state()).unwrap();
    let second = review().await;
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let again: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(again["partners"], json["partners"]);
    assert_eq!(again["program"], json["program"]);
    assert_eq!(
        std::fs::read(org.state()).unwrap(),
        before,
        "the state is untouched"
    );
}

/// The org's MDF for Q3 2026 (created 2026-07-15, in the quarter):
/// - Northwind: an approved request of 8,000 (10,000 asked) on campaign C01
///   with claims Approved 3,000 + Paid 2,000 (a Draft and a Rejected claim
///   do not count): 5,000 spent; an approved 4,000 without campaign or
///   claims: 4,000 spent.
/// - Contoso: one rejected request and one draft: nothing spent.
///
/// An opportunity of campaign C01 created 2026-08-01 makes C01's money
/// effective: Northwind's effectiveness is 5,000 / 9,000.
const CAMPAIGN: &str = "701000000000C01AAA";
fn seed_mdf(fake: &FakeSalesforce) {
    fake.set_now(Utc::now() - Duration::hours(1));
    let created = "2026-07-15T10:00:00.000+0000";
    for r in [
        json!({"Id": "0HJ000000000F01AAA", "ChannelPartnerId": P1, "Status": "Approved", "Amount": 8000, "RequestedAmount": 10000, "CampaignId": CAMPAIGN, "CreatedDate": created}),
        json!({"Id": "0HJ000000000F02AAA", "ChannelPartnerId": P1, "Status": "Approved", "Amount": 4000, "RequestedAmount": 4000, "CreatedDate": created}),
        json!({"Id": "0HJ000000000F03AAA", "ChannelPartnerId": P2, "Status": "Rejected", "RequestedAmount": 6000, "CreatedDate": created}),
        json!({"Id": "0HJ000000000F04AAA", "ChannelPartnerId": P2, "Status": "Draft", "RequestedAmount": 7000, "CreatedDate": created}),
    ] {
        fake.insert("PartnerFundRequest", r);
    }
    for (id, status, amount) in [
        ("0HH000000000C01AAA", "Approved", 3000),
        ("0HH000000000C02AAA", "Paid", 2000),
        ("0HH000000000C03AAA", "Draft", 9999),
        ("0HH000000000C04AAA", "Rejected", 500),
    ] {
        fake.insert(
            "PartnerFundClaim",
            json!({"Id": id, "RequestId": "0HJ000000000F01AAA", "Status": status, "Amount": amount}),
        );
    }
    fake.insert(
        "Opportunity",
        json!({"Id": "006000000000M01AAA", "Name": "Acme expansion", "AccountId": ACME, "OwnerId": "005000000000D01AAA", "StageName": "Prospecting", "IsClosed": false, "IsWon": false, "CreatedDate": "2026-08-01T00:00:00.000+0000", "CloseDate": "2027-01-20", "Amount": 30000, "CampaignId": CAMPAIGN}),
    );
    fake.set_now(Utc::now());
}

/// The same MDF as `seed_mdf`, as the files source's `mdf.csv`.
const MDF_CSV: &str = "id,partner_id,status,amount,claimed_amount,campaign_id,start_date\n\
F1,P-1,claimed,8000,5000,701000000000C01AAA,2026-07-15\n\
F2,P-1,approved,4000,,,2026-07-15\n\
F3,P-2,rejected,0,,,2026-07-15\n\
F4,P-2,requested,0,,,2026-07-15\n";

/// An org with the review's MDF values mapped, with Campaigns, and the
/// PRM in files (so the same partners can carry an `mdf.csv` instead).
async fn mdf_org(with_mdf_objects: bool, mdf_csv: bool) -> Org {
    let mut org = Org::start(FakeConfig::default()).await;
    org.fake.add_field("Opportunity", "CampaignId", "reference");
    for field in ["Mdf_Spend__c", "Mdf_Effectiveness__c"] {
        org.fake.add_field("Account", field, "double");
    }
    if with_mdf_objects {
        org.fake.enable_mdf(true);
    }
    seed(&org.fake);
    if with_mdf_objects {
        seed_mdf(&org.fake);
    } else {
        // The campaign's opportunity only.
        org.fake.insert(
            "Opportunity",
            json!({"Id": "006000000000M01AAA", "Name": "Acme expansion", "AccountId": ACME, "OwnerId": "005000000000D01AAA", "StageName": "Prospecting", "IsClosed": false, "IsWon": false, "CreatedDate": "2026-08-01T00:00:00.000+0000", "CloseDate": "2027-01-20", "Amount": 30000, "CampaignId": CAMPAIGN}),
        );
    }
    let prm = org.dir.path().join("prm");
    std::fs::create_dir(&prm).unwrap();
    std::fs::write(
        prm.join("partners.csv"),
        format!("id,name,tier,crm_account_id\nP-1,Northwind,gold,{P1}\nP-2,Contoso,,{P2}\n"),
    )
    .unwrap();
    std::fs::write(
        prm.join("partner_reps.csv"),
        "id,partner_id,email\nR-1,P-1,005000000000R01AAA@example.com\nR-3,P-2,005000000000R03AAA@example.com\n",
    )
    .unwrap();
    std::fs::write(
        prm.join("registrations.csv"),
        "id,partner_id,customer_name,customer_domain,status,submitted_at,approved_at\nG-1,P-1,Acme Corp,acme.com,approved,2026-10-01,2026-10-02\n",
    )
    .unwrap();
    if mdf_csv {
        std::fs::write(prm.join("mdf.csv"), MDF_CSV).unwrap();
    }
    org.extra = format!(
        "mdf_spend = \"Mdf_Spend__c\"\nmdf_effectiveness = \"Mdf_Effectiveness__c\"\n\n[prm]\nkind = \"files\"\n\n[prm.files]\ndir = \"{}\"\n",
        prm.display()
    );
    org
}

fn mdf_written(fake: &FakeSalesforce, id: &str) -> (Value, Value) {
    let r = fake.record("Account", id).unwrap();
    (r["Mdf_Spend__c"].clone(), r["Mdf_Effectiveness__c"].clone())
}

/// PartnerFundRequest and PartnerFundClaim give the review's MDF values
/// exactly what the equivalent `mdf.csv` gives.
#[tokio::test(flavor = "multi_thread")]
async fn mdf_objects_give_the_review_what_mdf_csv_would() {
    let org = mdf_org(true, false).await;
    let run = org.once(&[]).await;
    run.assert_ok();
    let from_org = (mdf_written(&org.fake, P1), mdf_written(&org.fake, P2));
    assert_eq!(from_org.0.0, json!(9000.0), "{from_org:?}");
    let rate = from_org.0.1.as_f64().unwrap();
    // Written rounded to six places.
    assert!((rate - 5000.0 / 9000.0).abs() < 1e-6, "{from_org:?}");
    assert_eq!(from_org.1.0, json!(0.0), "{from_org:?}");

    let files = mdf_org(false, true).await;
    let run = files.once(&[]).await;
    run.assert_ok();
    let from_csv = (mdf_written(&files.fake, P1), mdf_written(&files.fake, P2));
    assert_eq!(from_org, from_csv);

    // check-config finds them, and counts the requests.
    let check = org.run("check-config", &[]).await;
    check.assert_ok();
    assert!(
        check
            .stderr
            .contains("MDF: PartnerFundRequest and PartnerFundClaim found (4 requests)"),
        "{}",
        check.stderr
    );
}

/// An org without the MDF objects (describe answers 404 NOT_FOUND) and no
/// `mdf.csv`: the MDF values are null ("no MDF data"), never 0, the cycle
/// runs, and check-config says so.
#[tokio::test(flavor = "multi_thread")]
async fn an_org_without_mdf_leaves_the_mdf_values_null() {
    let org = mdf_org(false, false).await;
    let run = org.once(&[]).await;
    run.assert_ok();
    for p in [P1, P2] {
        let (spend, rate) = mdf_written(&org.fake, p);
        assert!(spend.is_null() && rate.is_null(), "{spend} {rate}");
    }
    let check = org.run("check-config", &[]).await;
    check.assert_ok();
    assert!(
        check
            .stderr
            .contains("MDF: not in this org (the review's MDF metrics stay 'no MDF data')"),
        "{}",
        check.stderr
    );
}
