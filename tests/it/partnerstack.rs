//! `channel-sync once` with HubSpot (fake) as CRM and PartnerStack (fake) as
//! PRM: the real binary, both fakes and Slack on port 0.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::helpers::{backdate_cursor, mirrored, slack_texts};
use crate::hubspot::{Account, quick, seed};
use channel_sync_fakes::partnerstack::{FakeConfig, FakePartnerStack};

fn ms(date: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&format!("{date}T00:00:00Z"))
        .unwrap()
        .timestamp_millis()
}

struct Program {
    acct: Account,
    ps: FakePartnerStack,
}

/// The HubSpot program of the HubSpot tests, with the PRM in PartnerStack:
/// Northwind and Contoso are partnerships whose `m_data` names their
/// HubSpot company; their registrations are deals, dated an hour ago.
async fn program() -> Program {
    let mut acct = Account::start(quick()).await;
    seed(&acct.fake);
    // HubSpot names partners by company id here (PartnerStack partner keys
    // are not P-1/P-2).
    acct.fake
        .update_deal("302", json!({"channel_partner": "202"}));
    let ps = FakePartnerStack::start(FakeConfig::default()).await;
    let hour_ago = (Utc::now() - Duration::hours(1)).timestamp_millis();
    ps.set_now(hour_ago);
    for (key, team, group, company) in [
        ("northwind", "Northwind Partners", "Gold", "201"),
        ("contoso", "Contoso Resellers", "Registered", "202"),
    ] {
        ps.insert_partnership(json!({
            "key": format!("pship_{key}"), "partner_key": key, "email": format!("owner@{key}.example"),
            "first_name": "Owner", "last_name": key, "group": {"key": group.to_lowercase(), "name": group, "slug": group.to_lowercase()},
            "team": {"key": format!("team_{key}"), "name": team}, "m_data": {"crm_account_id": company},
            "created_at": hour_ago, "updated_at": hour_ago, "archived": false,
        }));
    }
    for (key, partner, customer, stage, created, approved, member) in [
        (
            "deal_acme",
            "northwind",
            "Acme Corp",
            "approved",
            "2026-10-01",
            "2026-10-02",
            "r1",
        ),
        (
            "deal_globex",
            "contoso",
            "Globex",
            "approved",
            "2026-08-20",
            "2026-08-30",
            "r3",
        ),
        (
            "deal_initech",
            "northwind",
            "Initech",
            "closed-won",
            "2026-07-01",
            "2026-07-02",
            "r2",
        ),
    ] {
        let domain = if partner == "northwind" {
            "northwind"
        } else {
            "contoso"
        };
        ps.insert_deal(json!({
            "key": key, "partner_key": partner, "account_name": customer, "amount": 1_250_000,
            "stage": stage, "created_at": ms(created), "updated_at": hour_ago,
            "team_member": {"key": format!("tm_{member}"), "email": format!("{member}@{domain}.example"), "first_name": member, "last_name": "Rep"},
            "fields": [{"key": "approved_at", "value": ms(approved)}],
        }));
    }
    ps.set_now(Utc::now().timestamp_millis());
    acct.prm = format!(
        "[prm]\nkind = \"partnerstack\"\n\n[prm.partnerstack]\nbase_url = \"{}\"\nmax_requests_per_second = 1000\n",
        ps.url()
    );
    acct.env.push((
        "CHANNEL_SYNC__PRM__PARTNERSTACK__PUBLIC_KEY".into(),
        "pk_test_fake".into(),
    ));
    acct.env.push((
        "CHANNEL_SYNC__PRM__PARTNERSTACK__SECRET_KEY".into(),
        "sk_test_fake".into(),
    ));
    Program { acct, ps }
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot_and_partnerstack_end_to_end() {
    let Program { acct, ps } = program().await;
    let run = acct.once(&[]).await;
    run.assert_ok();
    assert!(run.stdout.contains("partners 2"), "{}", run.stdout);
    assert!(
        run.stdout.contains("partner_reps 3"),
        "reps are the team members on deals: {}",
        run.stdout
    );
    assert!(run.stdout.contains("registrations 3"), "{}", run.stdout);
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
    // Northwind: r1 sold in Q3 (the Acme pilot), r2 did not: 1 of 2.
    let rate = acct.company_value("201", "partner_active_seller_rate");
    assert_eq!(
        rate.as_str().map(|r| r.parse::<f64>().unwrap()),
        Some(0.5),
        "{rate}"
    );
    assert_eq!(acct.company_value("201", "partner_reps"), json!("2"));
    assert_eq!(acct.company_value("202", "partner_reps"), json!("1"));
    assert_eq!(ps.calls().deals, 1);
    assert_eq!(ps.calls().partnerships, 1);

    // Unchanged: one call each, nothing read, nothing written or sent.
    ps.reset_counts();
    let again = acct.once(&[]).await;
    again.assert_ok();
    again.assert_synced("deals", "Incremental: 0 read");
    assert!(
        again.stdout.contains("0 records written"),
        "{}",
        again.stdout
    );
    assert_eq!(slack_texts(&acct.slack).await.len(), 2);
    let deals = ps
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/deals"))
        .unwrap();
    assert!(
        deals.query.unwrap_or_default().contains("min_updated="),
        "incremental by min_updated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_incremental_reads_and_stage_mapping() {
    let Program { acct, ps } = program().await;
    let hour_ago = (Utc::now() - Duration::hours(1)).timestamp_millis();
    ps.set_now(hour_ago);
    for i in 0..597 {
        ps.insert_deal(json!({
            "key": format!("bulk_{i:04}"), "partner_key": "contoso", "account_name": format!("Bulk {i}"),
            "amount": 10_000, "stage": "new", "created_at": ms("2026-11-01"), "updated_at": hour_ago,
        }));
    }
    ps.set_now(Utc::now().timestamp_millis());
    let first = acct.once(&[]).await;
    first.assert_ok();
    assert!(
        first.stdout.contains("registrations 600"),
        "{}",
        first.stdout
    );
    assert_eq!(ps.calls().deals, 3, "ceil(600 / 250)");

    // Two deals change, one into a stage no map knows.
    ps.update_deal("bulk_0001", json!({"stage": "closed-lost"}));
    ps.update_deal("bulk_0002", json!({"stage": "escalated"}));
    ps.reset_counts();
    let second = acct.once(&[]).await;
    assert_eq!(second.code, Some(1), "{}\n{}", second.stdout, second.stderr);
    second.assert_synced("deals", "Incremental: 2 read");
    assert_eq!(ps.calls().deals, 1);
    assert!(
        second.stderr.contains("bulk_0002")
            && second
                .stderr
                .contains("'escalated' is not in prm.partnerstack.stage_map"),
        "{}",
        second.stderr
    );
    assert!(
        second.stdout.contains("registrations 599"),
        "{}",
        second.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_server_errors_and_malformed_json() {
    let Program { acct, ps } = program().await;
    ps.fail_next(1, 429, r#"{"message":"Too many requests","status":429}"#);
    ps.fail_next(2, 503, r#"{"message":"Service unavailable","status":503}"#);
    let run = acct.once(&[]).await;
    run.assert_ok();
    let statuses: Vec<u16> = ps.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&429) && statuses.contains(&503),
        "{statuses:?}"
    );

    ps.fail_next(1, 200, r#"{"data": {"items": [{"key": "#);
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("unexpected response from PartnerStack"),
        "{}",
        run.stderr
    );
    let run = acct.once(&[]).await;
    run.assert_ok();

    let mut acct = acct;
    acct.env.retain(|(k, _)| !k.ends_with("SECRET_KEY"));
    acct.env.push((
        "CHANNEL_SYNC__PRM__PARTNERSTACK__SECRET_KEY".into(),
        "sk_wrong".into(),
    ));
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("PartnerStack refused the API keys"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("sk_wrong"));

    // A 403 (keys without access) is refused the same way.
    acct.env.retain(|(k, _)| !k.ends_with("SECRET_KEY"));
    acct.env.push((
        "CHANNEL_SYNC__PRM__PARTNERSTACK__SECRET_KEY".into(),
        "sk_test_fake".into(),
    ));
    ps.fail_next(1, 403, r#"{"message":"Forbidden","status":403}"#);
    let run = acct.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("PartnerStack refused the API keys"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leads_can_count_as_registrations() {
    let Program { mut acct, ps } = program().await;
    ps.insert_lead(json!({
        "key": "lead_hooli", "partner_key": "northwind", "name": "Hooli", "approved": true,
        "status": "approved", "amount": 500_000, "created_at": ms("2026-11-20"), "updated_at": ms("2026-11-20"),
    }));
    ps.insert_lead(json!({
        "key": "lead_pending", "partner_key": "contoso", "name": "Pied Piper", "approved": false,
        "status": "new", "created_at": ms("2026-11-21"), "updated_at": ms("2026-11-21"),
    }));
    let run = acct.once(&[]).await;
    run.assert_ok();
    assert!(
        run.stdout.contains("registrations 3"),
        "off by default: {}",
        run.stdout
    );
    assert_eq!(ps.calls().leads, 0);

    acct.prm.push_str("leads_as_registrations = true\n");
    let run = acct.once(&[]).await;
    run.assert_ok();
    assert!(run.stdout.contains("registrations 5"), "{}", run.stdout);
    run.assert_synced("leads", "Full (first sync): 2 read");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_cut_on_page_two_starts_again_from_the_old_cursor_and_loses_nothing() {
    let Program { acct, ps } = program().await;
    // PartnerStack's clock (its Date header) is the cursor's.
    ps.send_clock_as_date(true);
    let t0 = Utc::now().timestamp_millis();
    ps.set_now(t0);
    for i in 0..597 {
        ps.insert_deal(json!({
            "key": format!("bulk_{i:04}"), "partner_key": "contoso", "account_name": format!("Bulk {i}"),
            "amount": 100, "stage": "new", "created_at": ms("2026-11-01"), "updated_at": t0,
        }));
    }
    let first = acct.once(&[]).await;
    first.assert_ok();

    // Every bulk deal changes; the next read begins 20 minutes later and
    // its second page (of three) is malformed.
    ps.set_now(t0 + 60_000);
    for i in 0..597 {
        ps.update_deal(&format!("bulk_{i:04}"), json!({"amount": 200}));
    }
    ps.set_now(t0 + 20 * 60_000);
    ps.fail_matching("starting_after=", 0, 1, 200, r#"{"data": {"items": [{"#);
    ps.reset_counts();
    let cut = acct.once(&[]).await;
    assert_eq!(cut.code, Some(1), "{}\n{}", cut.stdout, cut.stderr);
    let deal_queries = |ps: &FakePartnerStack| -> Vec<String> {
        ps.requests()
            .iter()
            .filter(|r| r.path.ends_with("/deals"))
            .map(|r| r.query.clone().unwrap_or_default())
            .collect()
    };
    let cut_queries = deal_queries(&ps);
    assert_eq!(cut_queries.len(), 2, "{cut_queries:?}");
    let fresh = || {
        mirrored(&acct.state(), "partnerstack", "deals")
            .values()
            .filter(|r| r["amount"] == json!(200))
            .count()
    };
    assert_eq!(fresh(), 250, "the first page was stored, no more");

    // The next cycle asks again from the old cursor and reads it all.
    ps.reset_counts();
    let next = acct.once(&[]).await;
    next.assert_ok();
    assert_eq!(deal_queries(&ps)[0], cut_queries[0], "the same first page");
    next.assert_synced("deals", "Incremental: 597 read");
    assert_eq!(fresh(), 597);
    assert_eq!(mirrored(&acct.state(), "partnerstack", "deals").len(), 600);

    // A full read cut on page 2 sweeps nothing away.
    ps.fail_matching("starting_after=", 0, 1, 200, r#"{"data": {"items": [{"#);
    let cut = acct.once(&["--full"]).await;
    assert_eq!(cut.code, Some(1), "{}\n{}", cut.stdout, cut.stderr);
    assert_eq!(mirrored(&acct.state(), "partnerstack", "deals").len(), 600);
    let next = acct.once(&[]).await;
    next.assert_ok();
    assert!(next.stdout.contains("registrations 600"), "{}", next.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_read_runs_after_7_days() {
    let Program { acct, ps: _ps } = program().await;
    let first = acct.once(&[]).await;
    first.assert_ok();
    backdate_cursor(&acct.state(), "partnerstack/deals", 6);
    let run = acct.once(&[]).await;
    run.assert_synced("deals", "Incremental");
    backdate_cursor(&acct.state(), "partnerstack/deals", 8);
    let run = acct.once(&[]).await;
    run.assert_ok();
    run.assert_synced("deals", "Full (the weekly full read): 3 read");
    run.assert_synced("partnerships", "Incremental");
}

/// PartnerStack's deal `fields` items carry `api_name`, `field_key`,
/// `internal_name`, `name` (the editable label), `type` and `value`, and no
/// `key`: the configured `approved_at_field` finds the item by `api_name`,
/// even when another item's display label reads the same, so protection
/// counts from approval (2026-10-20 + 90 days = 2027-01-18), not from
/// submission (2026-10-01 + 90 = 2026-12-30). `once` runs at the pinned NOW.
#[tokio::test(flavor = "multi_thread")]
async fn documented_custom_field_items_date_the_protection_from_approval() {
    let Program { acct, ps } = program().await;
    assert!(ps.update_deal(
        "deal_acme",
        json!({"fields": [
            {"api_name": "legacy_approval", "field_key": "fk_legacy", "internal_name": "legacy_approval",
             "name": "approved_at", "type": "date", "value": ms("2026-11-15")},
            {"api_name": "approved_at", "field_key": "fk_approved", "internal_name": "approved_at",
             "name": "Approval date", "type": "date", "value": ms("2026-10-20")},
        ]}),
    ));
    let run = acct.once(&[]).await;
    run.assert_ok();
    let texts = slack_texts(&acct.slack).await;
    let acme = texts
        .iter()
        .find(|t| t.contains("deal_acme"))
        .unwrap_or_else(|| panic!("no alert about deal_acme: {texts:?}"));
    assert!(acme.contains("2027-01-18"), "from approval: {acme}");
    assert!(!acme.contains("2026-12-30"), "not from submission: {acme}");
    // `findings` lists what the cycle saw for an API source too.
    let listed = acct.run("findings", &["--format", "json"]).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .contains("\"direct_vs_partner:deal_acme:301\""),
        "{}",
        listed.stdout
    );
}
