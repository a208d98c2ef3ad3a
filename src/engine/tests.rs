//! Rule-by-rule tests of SPEC §3 on small hand-made programs.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::*;
use crate::config::{Settings, TierRules};
use crate::model::*;

/// The clock of every test: 2026-11-26T00:00:00Z (period 2026-Q3).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    crate::values::parse_timestamp(s).unwrap()
}

fn d(s: &str) -> NaiveDate {
    crate::values::parse_date(s).unwrap()
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.rules.tiers.insert(
        "gold".into(),
        TierRules {
            protection_days: 180,
        },
    );
    s.rules.tiers.insert(
        "registered".into(),
        TierRules {
            protection_days: 60,
        },
    );
    s
}

fn account(id: &str, name: &str) -> Account {
    Account {
        id: id.into(),
        name: name.into(),
        domain: None,
        website: None,
        owner_id: None,
    }
}

fn partner(id: &str, tier: Option<&str>) -> Partner {
    Partner {
        id: id.into(),
        name: format!("Partner {id}"),
        tier: tier.map(Into::into),
        crm_account_id: None,
        domain: None,
    }
}

fn rep(id: &str, partner: &str) -> PartnerRep {
    PartnerRep {
        id: id.into(),
        partner_id: partner.into(),
        email: Some(format!("{}@partner.example", id.to_lowercase())),
        name: None,
        active: true,
        joined_on: None,
        left_on: None,
    }
}

fn opp(id: &str, account: &str, status: OpportunityStatus, created: &str) -> Opportunity {
    Opportunity {
        id: id.into(),
        account_id: account.into(),
        status,
        created_at: t(created),
        name: None,
        owner_id: None,
        stage: None,
        amount: None,
        close_date: None,
        partner_id: None,
        partner_rep: None,
        registration_id: None,
        campaign_id: None,
    }
}

fn usd(value: f64) -> Option<Money> {
    Some(Money {
        value,
        currency: None,
        base: Some(value),
    })
}

/// An approved registration of `customer` by `partner`, approved on `approved`.
fn reg(id: &str, partner: &str, customer: &str, approved: &str) -> Registration {
    Registration {
        id: id.into(),
        partner_id: partner.into(),
        customer_name: customer.into(),
        status: RegistrationStatus::Approved,
        submitted_at: t(approved),
        rep: None,
        customer_domain: None,
        account_id: None,
        opportunity_id: None,
        approved_at: Some(t(approved)),
        expires_at: None,
        amount: None,
    }
}

/// Two partners (P-1 gold, P-2 untiered), one customer account.
fn program() -> Dataset {
    Dataset {
        accounts: vec![account("A-1", "Acme Corp")],
        partners: vec![partner("P-1", Some("gold")), partner("P-2", None)],
        ..Dataset::default()
    }
}

fn run(data: &Dataset) -> Evaluation {
    evaluate(data, &settings(), now())
}

fn keys(e: &Evaluation) -> Vec<&str> {
    e.findings.iter().map(|f| f.key.as_str()).collect()
}

fn find<'e>(e: &'e Evaluation, key: &str) -> &'e Finding {
    e.findings
        .iter()
        .find(|f| f.key == key)
        .unwrap_or_else(|| panic!("no finding {key} in {:?}", keys(e)))
}

fn card<'e>(e: &'e Evaluation, partner: &str) -> &'e Scorecard {
    e.scorecards
        .iter()
        .find(|s| s.partner_id == partner)
        .unwrap()
}

// ---- windows (SPEC §3.2) ----

#[test]
fn the_window_comes_from_the_tier_else_the_default() {
    let mut r = reg("R-1", "P-1", "Acme", "2026-06-01");
    assert_eq!(expiry_of(&r, 180), t("2026-11-28"));
    r.approved_at = None;
    r.submitted_at = t("2026-05-01");
    assert_eq!(expiry_of(&r, 90), t("2026-07-30"), "from submission");
    r.expires_at = Some(t("2027-01-01T09:30:00Z"));
    assert_eq!(expiry_of(&r, 90), t("2027-01-01T09:30:00Z"), "explicit");

    // Through the engine: gold (180), tier named in another case, unknown tier.
    let mut data = program();
    data.partners.push(partner("P-3", Some("GOLD")));
    data.partners.push(partner("P-4", Some("platinum")));
    for (i, p) in ["P-1", "P-2", "P-3", "P-4"].iter().enumerate() {
        data.registrations
            .push(reg(&format!("R-{i}"), p, "Acme Corp", "2026-06-01"));
    }
    let e = run(&data);
    let expiring: Vec<&str> = e
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::RegistrationExpiring)
        .map(|f| f.first_in.as_str())
        .collect();
    // 2026-06-01 + 180 = 2026-11-28 is within 14 days; + 90 = 2026-08-30 is past.
    assert_eq!(expiring, ["R-0", "R-2"]);
    let expired: Vec<&str> = e
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::RegistrationExpired)
        .map(|f| f.first_in.as_str())
        .collect();
    assert!(
        expired.is_empty(),
        "2026-08-30 is more than 30 days back: {expired:?}"
    );
}

// ---- direct_vs_partner ----

#[test]
fn an_open_direct_opportunity_on_a_registered_account_is_a_warning() {
    let mut data = program();
    data.registrations
        .push(reg("R-1", "P-1", "Acme Corp", "2026-10-01"));
    let mut o = opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-15");
    o.name = Some("Acme renewal".into());
    data.opportunities.push(o);
    let e = run(&data);
    let f = find(&e, "direct_vs_partner:R-1:O-1");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.account_id.as_deref(), Some("A-1"));
    assert_eq!(f.partner_ids, ["P-1"]);
    assert_eq!(f.registration_ids, ["R-1"]);
    assert_eq!(f.opportunity_ids, ["O-1"]);
    assert_eq!(f.first_in, "R-1");
    assert_eq!(f.how.map(|m| m.method), Some(Method::Name));
    assert_eq!(f.expires_at, Some(t("2027-03-30")), "gold: 180 days");
    assert!(f.summary.contains("O-1 (Acme renewal)"), "{}", f.summary);
}

#[test]
fn a_direct_win_after_the_approval_is_critical_and_before_it_is_nothing() {
    let mut data = program();
    data.registrations
        .push(reg("R-1", "P-1", "Acme Corp", "2026-10-01"));
    let mut after = opp("O-1", "A-1", OpportunityStatus::Won, "2026-08-01");
    after.close_date = Some(d("2026-10-01"));
    let mut before = opp("O-2", "A-1", OpportunityStatus::Won, "2026-08-01");
    before.close_date = Some(d("2026-09-30"));
    let lost = opp("O-3", "A-1", OpportunityStatus::Lost, "2026-10-05");
    data.opportunities = vec![after, before, lost];
    let e = run(&data);
    let f = find(&e, "direct_vs_partner:R-1:O-1");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.first_in, "O-1", "the opportunity was created first");
    assert_eq!(
        keys(&e).iter().filter(|k| k.starts_with("direct")).count(),
        1
    );
}

#[test]
fn a_won_direct_opportunity_without_close_date_is_dated_by_its_creation() {
    let mut data = program();
    data.registrations
        .push(reg("R-1", "P-1", "Acme Corp", "2026-10-01"));
    data.opportunities = vec![
        opp("O-1", "A-1", OpportunityStatus::Won, "2026-10-02"),
        opp("O-2", "A-1", OpportunityStatus::Won, "2026-09-02"),
    ];
    let e = run(&data);
    assert!(keys(&e).contains(&"direct_vs_partner:R-1:O-1"));
    assert!(!keys(&e).contains(&"direct_vs_partner:R-1:O-2"));
}

#[test]
fn partner_linked_or_unprotected_opportunities_are_not_direct_conflicts() {
    let mut data = program();
    let mut r = reg("R-1", "P-1", "Acme Corp", "2026-10-01");
    r.opportunity_id = Some("O-2".into());
    data.registrations.push(r);
    let mut partnered = opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-15");
    partnered.partner_id = Some("P-1".into());
    let linked = opp("O-2", "A-1", OpportunityStatus::Open, "2026-10-15");
    let mut linked_back = opp("O-3", "A-1", OpportunityStatus::Open, "2026-10-15");
    linked_back.registration_id = Some("R-1".into());
    data.opportunities = vec![partnered, linked, linked_back];
    let e = run(&data);
    assert!(
        !keys(&e).iter().any(|k| k.starts_with("direct_vs_partner")),
        "{:?}",
        keys(&e)
    );
}

#[test]
fn only_active_registrations_protect() {
    let mut data = program();
    let mut pending = reg("R-1", "P-1", "Acme Corp", "2026-11-01");
    pending.status = RegistrationStatus::Submitted;
    pending.approved_at = None;
    let lapsed = reg("R-2", "P-2", "Acme Corp", "2026-01-01"); // 90 days: long over
    let mut rejected = reg("R-3", "P-2", "Acme Corp", "2026-11-01");
    rejected.status = RegistrationStatus::Rejected;
    data.registrations = vec![pending, lapsed, rejected];
    data.opportunities
        .push(opp("O-1", "A-1", OpportunityStatus::Open, "2026-11-10"));
    let e = run(&data);
    assert!(
        !keys(&e).iter().any(|k| k.starts_with("direct")),
        "{:?}",
        keys(&e)
    );
}

// ---- partner_vs_partner ----

#[test]
fn two_partners_claiming_one_account_conflict_once() {
    let mut data = program();
    data.registrations
        .push(reg("R-2", "P-2", "ACME Corporation", "2026-10-03"));
    let mut pending = reg("R-1", "P-1", "Acme Corp", "2026-10-01");
    pending.status = RegistrationStatus::Submitted;
    pending.approved_at = None;
    data.registrations.push(pending);
    let mut o = opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-02");
    o.partner_id = Some("P-2".into());
    data.opportunities.push(o);
    let e = run(&data);
    let f = find(&e, "partner_vs_partner:A-1");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.partner_ids, ["P-1", "P-2"]);
    assert_eq!(f.registration_ids, ["R-1", "R-2"]);
    assert_eq!(f.opportunity_ids, ["O-1"]);
    assert_eq!(f.first_in, "R-1");
    assert_eq!(f.how.map(|m| m.method), Some(Method::Name));
    assert_eq!(f.expires_at, None);
}

#[test]
fn one_partner_twice_is_no_conflict_and_closed_claims_do_not_count() {
    let mut data = program();
    data.registrations
        .push(reg("R-1", "P-1", "Acme Corp", "2026-10-01"));
    data.registrations
        .push(reg("R-2", "P-1", "Acme", "2026-10-02"));
    let mut lost = reg("R-3", "P-2", "Acme", "2026-10-02");
    lost.status = RegistrationStatus::Lost;
    data.registrations.push(lost);
    let mut won = opp("O-1", "A-1", OpportunityStatus::Won, "2026-10-02");
    won.partner_id = Some("P-2".into());
    won.close_date = Some(d("2026-10-20"));
    data.opportunities.push(won);
    let e = run(&data);
    assert!(
        !keys(&e).iter().any(|k| k.starts_with("partner_vs")),
        "{:?}",
        keys(&e)
    );
}

#[test]
fn a_tie_in_time_goes_to_the_registration() {
    let mut data = program();
    data.registrations
        .push(reg("R-9", "P-1", "Acme Corp", "2026-10-01T10:00:00Z"));
    let mut o = opp(
        "O-1",
        "A-1",
        OpportunityStatus::Open,
        "2026-10-01T10:00:00Z",
    );
    o.partner_id = Some("P-2".into());
    data.opportunities.push(o);
    assert_eq!(find(&run(&data), "partner_vs_partner:A-1").first_in, "R-9");
}

#[test]
fn a_tie_in_time_between_registrations_goes_to_the_smaller_id() {
    let mut data = program();
    // Same moment; the later id first in the input.
    data.registrations
        .push(reg("R-7", "P-1", "Acme Corp", "2026-10-01T10:00:00Z"));
    data.registrations
        .push(reg("R-3", "P-2", "Acme Corp", "2026-10-01T10:00:00Z"));
    let f = find(&run(&data), "partner_vs_partner:A-1").clone();
    assert_eq!(f.first_in, "R-3");
    data.registrations.reverse();
    assert_eq!(find(&run(&data), "partner_vs_partner:A-1").first_in, "R-3");
}

#[test]
fn at_and_t_and_atandt_unmatched_by_two_partners_are_one_conflict() {
    let mut data = program();
    data.registrations = vec![
        reg("R-1", "P-1", "AT&T", "2026-10-01"),
        reg("R-2", "P-2", "ATandT", "2026-10-02"),
    ];
    let e = run(&data);
    let conflicts: Vec<&str> = keys(&e)
        .into_iter()
        .filter(|k| k.starts_with("partner_vs_partner"))
        .collect();
    assert_eq!(conflicts, ["partner_vs_partner:name:atandt"]);
    let f = find(&e, "partner_vs_partner:name:atandt");
    assert_eq!(f.registration_ids, ["R-1", "R-2"]);
    assert_eq!(f.partner_ids, ["P-1", "P-2"]);
    assert_eq!(f.account_id, None);
}

#[test]
fn unmatched_registrations_group_by_domain_then_name() {
    let mut data = program();
    let mut a = reg("R-1", "P-1", "Globex", "2026-10-01");
    a.customer_domain = Some("https://www.globex.io".into());
    let mut b = reg("R-2", "P-2", "Globex Corporation", "2026-10-02");
    b.customer_domain = Some("eu.globex.io".into());
    // Same name, other domain: a group of its own, no conflict.
    let mut c = reg("R-3", "P-2", "Globex", "2026-10-03");
    c.customer_domain = Some("globex-other.com".into());
    // No domain (free-mail counts as none): grouped by name.
    let mut e1 = reg("R-4", "P-1", "Initech LLC", "2026-10-04");
    e1.customer_domain = Some("peter@gmail.com".into());
    let e2 = reg("R-5", "P-2", "INITECH", "2026-10-05");
    data.registrations = vec![a, b, c, e1, e2];
    let e = run(&data);
    let f = find(&e, "partner_vs_partner:domain:globex.io");
    assert_eq!(f.account_id, None);
    assert_eq!(f.how, None);
    assert_eq!(f.registration_ids, ["R-1", "R-2"]);
    assert_eq!(f.first_in, "R-1");
    let f = find(&e, "partner_vs_partner:name:initech");
    assert_eq!(f.registration_ids, ["R-4", "R-5"]);
    assert!(!keys(&e).contains(&"partner_vs_partner:domain:globex-other.com"));
}

// ---- partner_bypassed ----

#[test]
fn a_registered_deal_that_loses_its_partner_is_critical() {
    let mut data = program();
    let mut r1 = reg("R-1", "P-1", "Acme Corp", "2026-10-01");
    r1.opportunity_id = Some("O-1".into());
    data.registrations.push(r1);
    data.registrations
        .push(reg("R-2", "P-1", "Acme Corp", "2026-10-01"));
    let no_partner = opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-05");
    let mut other = opp("O-2", "A-1", OpportunityStatus::Won, "2026-10-05");
    other.partner_id = Some("P-2".into());
    other.close_date = Some(d("2026-11-01"));
    other.registration_id = Some("R-2".into());
    let mut kept = opp("O-3", "A-1", OpportunityStatus::Open, "2026-10-05");
    kept.partner_id = Some("P-1".into());
    kept.registration_id = Some("R-2".into());
    data.opportunities = vec![no_partner, other, kept];
    let e = run(&data);
    let f = find(&e, "partner_bypassed:R-1:O-1");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.partner_ids, ["P-1"]);
    assert_eq!(f.first_in, "R-1");
    // The opportunity's account is the finding's.
    assert_eq!(f.account_id.as_deref(), Some("A-1"));
    assert_eq!(f.account_name.as_deref(), Some("Acme Corp"));
    let f = find(&e, "partner_bypassed:R-2:O-2");
    assert_eq!(f.partner_ids, ["P-1", "P-2"]);
    assert!(
        f.summary.contains("attributed to Partner P-2"),
        "{}",
        f.summary
    );
    assert!(!keys(&e).contains(&"partner_bypassed:R-2:O-3"));
}

#[test]
fn bypass_needs_an_active_registration_and_a_live_or_later_win() {
    let mut data = program();
    let mut lapsed = reg("R-1", "P-2", "Acme Corp", "2026-01-01");
    lapsed.opportunity_id = Some("O-1".into());
    let mut r2 = reg("R-2", "P-1", "Acme Corp", "2026-10-01");
    r2.opportunity_id = Some("O-2".into());
    data.registrations = vec![lapsed, r2];
    let mut early_win = opp("O-2", "A-1", OpportunityStatus::Won, "2026-09-01");
    early_win.close_date = Some(d("2026-09-15"));
    data.opportunities = vec![
        opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-05"),
        early_win,
    ];
    let e = run(&data);
    assert!(
        !keys(&e).iter().any(|k| k.starts_with("partner_bypassed")),
        "{:?}",
        keys(&e)
    );
}

// ---- registration_expiring / registration_expired ----

#[test]
fn expiring_is_within_the_next_days_inclusive_and_not_when_won() {
    let mut data = program();
    let r = |id: &str, expires: &str| {
        let mut x = reg(id, "P-2", "Acme Corp", "2026-10-01");
        x.expires_at = Some(t(expires));
        x
    };
    let edge = r("R-1", "2026-12-10T00:00:00Z"); // exactly T + 14 days
    let beyond = r("R-2", "2026-12-10T00:00:01Z");
    let now_exactly = r("R-3", "2026-11-26T00:00:00Z"); // expiry <= T: no longer active
    let won_through_opp = r("R-4", "2026-12-01");
    let mut won_status = r("R-5", "2026-12-01");
    won_status.status = RegistrationStatus::Won;
    data.registrations = vec![edge, beyond, now_exactly, won_through_opp, won_status];
    let mut o = opp("O-1", "A-1", OpportunityStatus::Won, "2026-10-05");
    o.partner_id = Some("P-2".into());
    o.registration_id = Some("R-4".into());
    o.close_date = Some(d("2026-11-20"));
    data.opportunities.push(o);
    let e = run(&data);
    let f = find(&e, "registration_expiring:R-1");
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.first_in, "R-1");
    assert_eq!(f.expires_at, Some(t("2026-12-10")));
    let expiring: Vec<&str> = keys(&e)
        .into_iter()
        .filter(|k| k.starts_with("registration_expiring"))
        .collect();
    assert_eq!(expiring, ["registration_expiring:R-1"]);
    assert!(keys(&e).contains(&"registration_expired:R-3"));
}

#[test]
fn expired_looks_back_a_month_and_skips_won_registrations() {
    let mut data = program();
    let mk = |id: &str, status, expires: &str| {
        let mut x = reg(id, "P-1", "Acme Corp", "2026-01-01");
        x.status = status;
        x.expires_at = Some(t(expires));
        x
    };
    use RegistrationStatus::*;
    data.registrations = vec![
        mk("R-1", Expired, "2026-11-01"),
        mk("R-2", Approved, "2026-11-20"),
        mk("R-3", Expired, "2026-10-27T00:00:00Z"), // exactly 30 days back: in
        mk("R-4", Expired, "2026-10-26T23:59:59Z"), // just outside
        mk("R-5", Won, "2026-11-20"),
        mk("R-6", Cancelled, "2026-11-20"),
    ];
    let e = run(&data);
    let expired: Vec<&str> = keys(&e)
        .into_iter()
        .filter(|k| k.starts_with("registration_expired"))
        .collect();
    assert_eq!(
        expired,
        [
            "registration_expired:R-1",
            "registration_expired:R-2",
            "registration_expired:R-3"
        ]
    );
    let f = find(&e, "registration_expired:R-2");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.first_in, "R-2");
    assert_eq!(f.account_id.as_deref(), Some("A-1"));
}

#[test]
fn an_expired_registration_whose_expiry_is_still_ahead_raises_nothing() {
    let mut data = program();
    let mut x = reg("R-1", "P-1", "Acme Corp", "2026-10-01");
    x.status = RegistrationStatus::Expired;
    // Inside the expiring window too: neither kind, and it protects nothing.
    x.expires_at = Some(t("2026-11-30"));
    data.registrations.push(x);
    data.opportunities
        .push(opp("O-1", "A-1", OpportunityStatus::Open, "2026-11-01"));
    let e = run(&data);
    assert!(e.findings.is_empty(), "{:?}", keys(&e));
}

// ---- ordering ----

#[test]
fn findings_are_sorted_by_kind_then_key() {
    let mut data = program();
    for i in 0..3 {
        let mut r = reg(&format!("R-{i}"), "P-2", "Acme Corp", "2026-10-01");
        r.expires_at = Some(t("2026-12-01"));
        data.registrations.push(r);
    }
    data.opportunities
        .push(opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-15"));
    let e = run(&data);
    let order: Vec<(&str, &str)> = e
        .findings
        .iter()
        .map(|f| (f.kind.as_str(), f.key.as_str()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert!(order.len() >= 6);
}

#[test]
fn findings_are_sorted_by_kind_then_key_whatever_the_order_of_the_rows() {
    // Registrations and opportunities listed backwards: each kind's
    // findings come out of the passes out of key order, and are sorted.
    let mut data = program();
    data.accounts.push(account("A-2", "Globex Ltd"));
    for i in (0..4).rev() {
        let customer = if i % 2 == 0 {
            "Acme Corp"
        } else {
            "Globex Ltd"
        };
        let partner = if i < 2 { "P-1" } else { "P-2" };
        let mut r = reg(&format!("R-{i}"), partner, customer, "2026-10-01");
        r.expires_at = Some(t(if i == 3 { "2026-11-20" } else { "2026-12-01" }));
        data.registrations.push(r);
    }
    for (id, account) in [("O-3", "A-2"), ("O-2", "A-1"), ("O-1", "A-2")] {
        data.opportunities
            .push(opp(id, account, OpportunityStatus::Open, "2026-10-15"));
    }
    let e = run(&data);
    let order: Vec<(&str, &str)> = e
        .findings
        .iter()
        .map(|f| (f.kind.as_str(), f.key.as_str()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    let kinds: std::collections::BTreeSet<&str> = order.iter().map(|&(k, _)| k).collect();
    assert_eq!(kinds.len(), 4, "{order:?}");
    assert_eq!(order.len(), 9, "{order:?}");
}

// ---- scorecards (SPEC §3.4) ----

#[test]
fn reps_are_those_with_the_partner_during_the_period() {
    let mut data = program();
    let mut left_mid = rep("PR-1", "P-1");
    left_mid.active = false;
    left_mid.left_on = Some(d("2026-08-15"));
    let mut inactive_no_date = rep("PR-2", "P-1");
    inactive_no_date.active = false;
    let mut joined_after = rep("PR-3", "P-1");
    joined_after.joined_on = Some(d("2026-10-01"));
    let mut left_before = rep("PR-4", "P-1");
    left_before.active = false;
    left_before.left_on = Some(d("2026-06-30"));
    let mut joined_on_last_day = rep("PR-5", "P-1");
    joined_on_last_day.joined_on = Some(d("2026-09-30"));
    let plain = rep("PR-6", "P-1");
    data.reps = vec![
        left_mid,
        inactive_no_date,
        joined_after,
        left_before,
        joined_on_last_day,
        plain,
    ];
    let e = run(&data);
    assert_eq!(card(&e, "P-1").reps, 3, "PR-1, PR-5 and PR-6");
    assert_eq!(card(&e, "P-2").reps, 0);
    assert_eq!(card(&e, "P-2").active_seller_rate, None);
}

#[test]
fn active_sellers_are_credited_by_rep_id_email_or_linked_registration() {
    let mut data = program();
    data.reps = (1..=5).map(|i| rep(&format!("PR-{i}"), "P-1")).collect();
    let mut left_mid = rep("PR-6", "P-1");
    left_mid.active = false;
    left_mid.left_on = Some(d("2026-08-15"));
    data.reps.push(left_mid);
    let won = |id: &str, close: &str| {
        let mut o = opp(id, "A-1", OpportunityStatus::Won, "2026-06-01");
        o.partner_id = Some("P-1".into());
        o.close_date = Some(d(close));
        o
    };
    let mut by_id = won("O-1", "2026-07-01");
    by_id.partner_rep = Some("PR-1".into());
    let mut by_email = won("O-2", "2026-09-30");
    by_email.partner_rep = Some("PR-2@PARTNER.example".into());
    let mut via_reg_link = won("O-3", "2026-08-01");
    via_reg_link.registration_id = Some("R-1".into());
    let via_reg_naming = won("O-4", "2026-08-01");
    let mut outside_period = won("O-5", "2026-10-01");
    outside_period.partner_rep = Some("PR-5".into());
    let mut lost = won("O-6", "2026-08-01");
    lost.status = OpportunityStatus::Lost;
    lost.partner_rep = Some("PR-5".into());
    let mut by_leaver = won("O-7", "2026-07-20");
    by_leaver.partner_rep = Some("PR-6".into());
    data.opportunities = vec![
        by_id,
        by_email,
        via_reg_link,
        via_reg_naming,
        outside_period,
        lost,
        by_leaver,
    ];
    let mut r1 = reg("R-1", "P-1", "Acme Corp", "2026-05-01");
    r1.status = RegistrationStatus::Won;
    r1.rep = Some("pr-3@partner.example".into());
    let mut r2 = reg("R-2", "P-1", "Acme Corp", "2026-05-01");
    r2.status = RegistrationStatus::Won;
    r2.rep = Some("PR-4".into());
    r2.opportunity_id = Some("O-4".into());
    data.registrations = vec![r1, r2];
    let e = run(&data);
    let c = card(&e, "P-1");
    assert_eq!((c.reps, c.active_sellers), (6, 5), "PR-1..PR-4 and PR-6");
    assert_eq!(c.active_seller_rate, Some(5.0 / 6.0));
}

/// Two reps with one e-mail (any case): a sale by that e-mail goes to the
/// smaller id. Two registrations naming one opportunity: the earliest
/// submission's rep is credited, and a tie in time goes to the smaller id.
/// The reps belong to different partners, so the credit shows in whose
/// active sellers count; each pair lists the one that must lose first.
#[test]
fn ties_in_crediting_a_sale_go_to_the_smaller_id() {
    let mut data = program();
    data.partners.push(partner("P-3", None));
    let mut shared_b = rep("R-B", "P-1");
    shared_b.email = Some("Sam@Shared.example".into());
    let mut shared_a = rep("R-A", "P-2");
    shared_a.email = Some("sam@shared.example".into());
    // By registration naming: RZ (P-1) and RY (P-2) submitted at the same
    // moment, RX (P-3) later.
    let (rz, ry, rx) = (rep("RZ", "P-1"), rep("RY", "P-2"), rep("RX", "P-3"));
    data.reps = vec![shared_b, shared_a, rz, ry, rx];
    let won = |id: &str| {
        let mut o = opp(id, "A-1", OpportunityStatus::Won, "2026-06-01");
        o.partner_id = Some("P-1".into());
        o.close_date = Some(d("2026-08-01"));
        o
    };
    let mut by_email = won("O-1");
    by_email.partner_rep = Some("SAM@shared.example".into());
    let by_naming = won("O-2");
    data.opportunities = vec![by_email, by_naming];
    let naming = |id: &str, rep: &str, at: &str| {
        let mut r = reg(id, "P-1", "Acme Corp", at);
        r.status = RegistrationStatus::Won;
        r.rep = Some(rep.into());
        r.opportunity_id = Some("O-2".into());
        r
    };
    data.registrations = vec![
        naming("G-3", "RX", "2026-05-02T00:00:00Z"),
        naming("G-2", "RZ", "2026-05-01T00:00:00Z"),
        naming("G-1", "RY", "2026-05-01T00:00:00Z"),
    ];
    let e = run(&data);
    // R-A (P-2) for the e-mail, RY (P-2) for the naming: two sellers at
    // P-2, none at P-1 or P-3.
    assert_eq!(card(&e, "P-2").active_sellers, 2);
    assert_eq!(card(&e, "P-1").active_sellers, 0);
    assert_eq!(card(&e, "P-3").active_sellers, 0);
}

#[test]
fn pipeline_and_revenue_sum_the_partners_deals_in_the_base_currency() {
    let mut data = program();
    let partnered = |id: &str, status, amount: Option<Money>, close: Option<&str>| {
        let mut o = opp(id, "A-1", status, "2026-06-01");
        o.partner_id = Some("P-1".into());
        o.amount = amount;
        o.close_date = close.map(d);
        o
    };
    use OpportunityStatus::*;
    let eur = Some(Money {
        value: 1000.0,
        currency: Some("EUR".into()),
        base: Some(1080.0),
    });
    data.opportunities = vec![
        partnered("O-1", Open, usd(100_000.0), None),
        partnered("O-2", Open, eur.clone(), None),
        partnered("O-3", Open, None, None),
        partnered("O-4", Won, usd(50_000.0), Some("2026-08-01")),
        partnered("O-5", Won, eur, Some("2026-09-30")),
        partnered("O-6", Won, usd(7.0), Some("2026-06-30")),
        partnered("O-7", Lost, usd(9.0), Some("2026-08-01")),
        opp("O-8", "A-1", Open, "2026-06-01"),
    ];
    let e = run(&data);
    let c = card(&e, "P-1");
    assert_eq!(c.sourced_pipeline, 101_080.0);
    assert_eq!(c.sourced_revenue, 51_080.0);
    assert_eq!(card(&e, "P-2").sourced_pipeline, 0.0);
}

#[test]
fn sums_and_sellers_add_up_across_the_chunks_they_are_computed_in() {
    // Three chunks and a bit: every chunk holds open deals of both partners
    // and one win in the period crediting its own rep, so a chunk lost or
    // counted twice in the adding up changes every number below.
    let chunks = 3;
    let n = super::scorecard::SUM_CHUNK * chunks + 9;
    let mut data = program();
    data.reps = (0..=chunks)
        .map(|c| rep(&format!("PR-{c}"), "P-1"))
        .collect();
    data.opportunities = (0..n)
        .map(|i| {
            let mut o = opp(
                &format!("O-{i}"),
                "A-1",
                OpportunityStatus::Open,
                "2026-06-01",
            );
            o.partner_id = Some(if i % 2 == 0 { "P-1" } else { "P-2" }.into());
            o.amount = usd(1.0);
            if i % super::scorecard::SUM_CHUNK == 7 {
                o.status = OpportunityStatus::Won;
                o.close_date = Some(d("2026-08-01"));
                o.amount = usd(1000.0);
                o.partner_id = Some("P-1".into());
                o.partner_rep = Some(format!("PR-{}", i / super::scorecard::SUM_CHUNK).into());
            }
            o
        })
        .collect();
    let e = run(&data);
    let wins = chunks + 1;
    let p1 = card(&e, "P-1");
    let open_p1 = (0..n)
        .filter(|i| i % 2 == 0 && i % super::scorecard::SUM_CHUNK != 7)
        .count();
    assert_eq!(p1.sourced_pipeline, open_p1 as f64);
    assert_eq!(p1.sourced_revenue, 1000.0 * wins as f64);
    assert_eq!((p1.reps, p1.active_sellers), (wins as u64, wins as u64));
    let open_p2 = (0..n)
        .filter(|i| i % 2 == 1 && i % super::scorecard::SUM_CHUNK != 7)
        .count();
    assert_eq!(card(&e, "P-2").sourced_pipeline, open_p2 as f64);
}

#[test]
fn open_and_expiring_registrations_and_conflicts_are_counted() {
    let mut data = program();
    let mut soon = reg("R-1", "P-2", "Acme Corp", "2026-10-01");
    soon.expires_at = Some(t("2026-12-01"));
    let later = reg("R-2", "P-2", "Acme Corp", "2026-11-01");
    let mut pending = reg("R-3", "P-1", "Acme Corp", "2026-11-01");
    pending.status = RegistrationStatus::Submitted;
    // Active, far from expiring, matching no account: one more open one, so
    // the expiring count cannot be the open ones that are not expiring.
    let elsewhere = reg("R-4", "P-2", "Globex Industries", "2026-11-15");
    data.registrations = vec![soon, later, pending, elsewhere];
    data.opportunities
        .push(opp("O-1", "A-1", OpportunityStatus::Open, "2026-11-10"));
    let e = run(&data);
    let c = card(&e, "P-2");
    assert_eq!((c.open_registrations, c.expiring_registrations), (3, 1));
    // Two direct_vs_partner and one partner_vs_partner name P-2.
    assert_eq!(c.open_conflicts, 3, "{:?}", keys(&e));
    assert_eq!(card(&e, "P-1").open_conflicts, 1);
    assert_eq!(
        card(&e, "P-1").open_registrations,
        0,
        "pending is not active"
    );
}

#[test]
fn an_amount_without_an_exchange_rate_still_counts_in_findings_and_is_reported_once() {
    let mut data = program();
    let jpy = |value| {
        Some(Money {
            value,
            currency: Some("JPY".into()),
            base: None,
        })
    };
    // Two partners claim A-1 through open opportunities, both in yen.
    let mut o1 = opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-01");
    o1.partner_id = Some("P-1".into());
    o1.amount = jpy(1_000_000.0);
    let mut o2 = opp("O-2", "A-1", OpportunityStatus::Open, "2026-10-02");
    o2.partner_id = Some("P-2".into());
    o2.amount = jpy(2_000_000.0);
    let mut o3 = opp("O-3", "A-1", OpportunityStatus::Open, "2026-10-03");
    o3.partner_id = Some("P-2".into());
    o3.amount = usd(500.0);
    data.opportunities = vec![o1, o2, o3];
    let e = run(&data);
    let f = find(&e, "partner_vs_partner:A-1");
    assert_eq!(f.opportunity_ids, ["O-1", "O-2", "O-3"]);
    assert_eq!(
        card(&e, "P-1").sourced_pipeline,
        0.0,
        "unknown amount left out"
    );
    assert_eq!(card(&e, "P-2").sourced_pipeline, 500.0);
    assert_eq!(
        e.missing_rates,
        [MissingRate {
            currency: "JPY".into(),
            opportunities: 2
        }],
        "once per currency"
    );
    assert!(e.missing_rates[0].message().contains("scorecard.fx.JPY"));
}

#[test]
fn window_findings_carry_the_registrations_linked_opportunities() {
    let mut data = program();
    // R-1 (P-2, 90 days) expires 2026-12-05: expiring. R-2 expired 2026-11-20.
    let mut expiring = reg("R-1", "P-2", "Acme Corp", "2026-09-06");
    expiring.opportunity_id = Some("O-1".into());
    let mut expired = reg("R-2", "P-2", "Unknown Co", "2026-08-22");
    expired.expires_at = Some(t("2026-11-20"));
    let mut o1 = opp("O-1", "A-1", OpportunityStatus::Open, "2026-09-10");
    o1.partner_id = Some("P-2".into());
    // O-2 names R-2 from its side and is attributed to another partner.
    let mut o2 = opp("O-2", "A-1", OpportunityStatus::Lost, "2026-08-01");
    o2.partner_id = Some("P-1".into());
    o2.registration_id = Some("R-2".into());
    let o3 = opp("O-3", "A-1", OpportunityStatus::Lost, "2026-08-01");
    data.registrations = vec![expiring, expired];
    data.opportunities = vec![o1, o2, o3];
    let e = run(&data);
    let f = find(&e, "registration_expiring:R-1");
    assert_eq!(f.opportunity_ids, ["O-1"]);
    assert_eq!(f.first_in, "R-1");
    assert_eq!(f.partner_ids, ["P-2"]);
    let f = find(&e, "registration_expired:R-2");
    assert_eq!(
        f.opportunity_ids,
        ["O-2"],
        "linked from the opportunity's side"
    );
    assert_eq!(f.first_in, "R-2", "the registration, though O-2 is older");
    assert_eq!(f.partner_ids, ["P-2"], "the registering partner only");
    assert_eq!(f.evidence.len(), 2);
}

#[test]
fn a_partner_vs_partner_summary_groups_each_partners_claims() {
    let mut data = program();
    data.registrations = vec![
        reg("R-1", "P-1", "Acme Corp", "2026-10-01"),
        reg("R-2", "P-2", "Acme Corp", "2026-10-05"),
    ];
    let mut o = opp("O-1", "A-1", OpportunityStatus::Open, "2026-10-03");
    o.partner_id = Some("P-1".into());
    data.opportunities = vec![o];
    let f = find(&run(&data), "partner_vs_partner:A-1").clone();
    assert!(
        f.summary.contains(
            "Partner P-1 (R-1, 2026-10-01; O-1, 2026-10-03) and Partner P-2 (R-2, 2026-10-05)"
        ),
        "{}",
        f.summary
    );
}
