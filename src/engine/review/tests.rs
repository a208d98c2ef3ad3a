//! The review's metrics and edges (SPEC §6.2) on small hand-made programs.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::config::Settings;
use crate::model::*;

/// 2026-11-26: the last full quarter is 2026-Q3, the partial one 2026-Q4.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

fn d(s: &str) -> NaiveDate {
    crate::values::parse_date(s).unwrap()
}

fn usd(value: f64) -> Money {
    Money {
        value,
        currency: None,
        base: Some(value),
    }
}

fn partner(id: &str) -> Partner {
    Partner {
        id: id.into(),
        name: format!("Partner {id}"),
        tier: None,
        crm_account_id: None,
        domain: None,
    }
}

fn rep(id: &str, partner: &str) -> PartnerRep {
    PartnerRep {
        id: id.into(),
        partner_id: partner.into(),
        email: None,
        name: None,
        active: true,
        joined_on: None,
        left_on: None,
    }
}

/// An opportunity of `partner` (empty: direct) created on `created`.
fn opp(id: &str, partner: &str, created: &str, amount: f64) -> Opportunity {
    Opportunity {
        id: id.into(),
        account_id: "A-1".into(),
        status: OpportunityStatus::Open,
        created_at: crate::values::parse_timestamp(created).unwrap(),
        name: None,
        owner_id: None,
        stage: None,
        amount: Some(usd(amount)),
        close_date: None,
        partner_id: (!partner.is_empty()).then(|| partner.into()),
        partner_rep: None,
        registration_id: None,
        campaign_id: None,
    }
}

fn won(mut o: Opportunity, closed: &str, rep: &str) -> Opportunity {
    o.status = OpportunityStatus::Won;
    o.close_date = Some(d(closed));
    o.partner_rep = Some(rep.into());
    o
}

fn cost(id: &str, quarter: &str, partner: &str, amount: f64) -> ProgramCost {
    ProgramCost {
        id: id.into(),
        quarter: quarter.into(),
        amount: usd(amount),
        partner_id: (!partner.is_empty()).then(|| partner.into()),
        category: None,
    }
}

fn mdf(id: &str, partner: &str, status: MdfStatus, amount: f64, start: &str) -> MdfRequest {
    MdfRequest {
        id: id.into(),
        partner_id: partner.into(),
        status,
        amount: usd(amount),
        claimed_amount: None,
        campaign_id: None,
        start_date: d(start),
        end_date: None,
    }
}

fn data(partners: &[&str], reps: Vec<PartnerRep>, opps: Vec<Opportunity>) -> Dataset {
    Dataset {
        accounts: vec![Account {
            id: "A-1".into(),
            name: "Acme".into(),
            domain: None,
            website: None,
            owner_id: None,
        }],
        partners: partners.iter().map(|p| partner(p)).collect(),
        reps,
        opportunities: opps,
        ..Dataset::default()
    }
}

fn run(data: &Dataset, inputs: &ReviewInputs) -> Review {
    review(data, inputs, &Settings::default(), now(), 4)
}

fn q<'a>(r: &'a Review, partner: &str, label: &str) -> &'a Metrics {
    let p = r.partners.iter().find(|p| p.partner_id == partner).unwrap();
    &p.quarters[label]
}

#[test]
fn four_full_quarters_then_the_partial_one_oldest_first() {
    let qs = quarters(now(), 1, 4);
    let labels: Vec<&str> = qs.iter().map(|q| q.label.as_str()).collect();
    assert_eq!(
        labels,
        ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    );
    assert!(qs[..4].iter().all(|q| !q.partial));
    assert!(qs[4].partial);
    assert_eq!((qs[4].start, qs[4].end), (d("2026-10-01"), d("2026-12-31")));
    assert_eq!((qs[0].start, qs[0].end), (d("2025-10-01"), d("2025-12-31")));
}

#[test]
fn a_fiscal_year_starting_in_february() {
    // FY2027 runs 2026-02-01 .. 2027-01-31; June 2026 is in its Q2.
    let t = Utc.with_ymd_and_hms(2026, 6, 10, 0, 0, 0).unwrap();
    let qs = quarters(t, 2, 2);
    let got: Vec<(&str, NaiveDate, NaiveDate, bool)> = qs
        .iter()
        .map(|q| (q.label.as_str(), q.start, q.end, q.partial))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-Q4", d("2025-11-01"), d("2026-01-31"), false),
            ("2027-Q1", d("2026-02-01"), d("2026-04-30"), false),
            ("2027-Q2", d("2026-05-01"), d("2026-07-31"), true),
        ]
    );
    // An opportunity created on the fiscal year's first day lands in its Q1.
    let mut s = Settings::default();
    s.scorecard.fiscal_year_start_month = 2;
    let ds = data(
        &["P-1"],
        vec![],
        vec![
            opp("O-1", "P-1", "2026-02-01", 100.0),
            opp("O-2", "P-1", "2026-01-31", 7.0),
        ],
    );
    let r = review(&ds, &ReviewInputs::default(), &s, t, 2);
    assert_eq!(q(&r, "P-1", "2027-Q1").sourced_pipeline_created, 100.0);
    assert_eq!(q(&r, "P-1", "2026-Q4").sourced_pipeline_created, 7.0);
}

#[test]
fn the_partial_quarter_counts_what_happened_so_far() {
    let ds = data(
        &["P-1"],
        vec![rep("PR-1", "P-1"), rep("PR-2", "P-1")],
        vec![
            won(opp("O-1", "P-1", "2026-10-05", 500.0), "2026-11-20", "PR-1"),
            opp("O-2", "P-1", "2026-11-25", 300.0),
        ],
    );
    let r = run(&ds, &ReviewInputs::default());
    let last = r.quarters.last().unwrap();
    assert!(last.partial && last.label == "2026-Q4");
    let m = q(&r, "P-1", "2026-Q4");
    assert_eq!(m.sourced_pipeline_created, 800.0);
    assert_eq!(m.sourced_revenue, 500.0);
    assert_eq!((m.reps, m.active_sellers), (2, 1));
    assert_eq!(m.active_seller_rate, Some(0.5));
    assert_eq!(r.headline_quarter().unwrap().label, "2026-Q3");
}

#[test]
fn pipeline_revenue_and_sellers_per_quarter_match_the_scorecard_rules() {
    let mut left = rep("PR-3", "P-1");
    left.active = false;
    left.left_on = Some(d("2026-07-15"));
    let mut joined_late = rep("PR-4", "P-1");
    joined_late.joined_on = Some(d("2026-10-01"));
    let ds = data(
        &["P-1", "P-2"],
        vec![rep("PR-1", "P-1"), rep("PR-2", "P-1"), left, joined_late],
        vec![
            won(
                opp("O-1", "P-1", "2026-05-01", 1000.0),
                "2026-08-01",
                "PR-1",
            ),
            won(opp("O-2", "P-1", "2026-07-01", 250.5), "2026-09-30", "PR-3"),
            opp("O-3", "P-1", "2026-09-30T23:59:59Z", 40.0),
            opp("O-4", "", "2026-08-01", 99.0),
        ],
    );
    let r = run(&ds, &ReviewInputs::default());
    let m = q(&r, "P-1", "2026-Q3");
    assert_eq!(m.sourced_pipeline_created, 290.5);
    assert_eq!(m.sourced_revenue, 1250.5);
    assert_eq!((m.reps, m.active_sellers), (3, 2));
    assert_eq!(q(&r, "P-1", "2026-Q2").sourced_pipeline_created, 1000.0);
    // The direct opportunity is nobody's pipeline.
    assert_eq!(r.program["2026-Q3"].sourced_pipeline_created, 290.5);
}

#[test]
fn pipeline_outside_the_quarters_shown_counts_nowhere() {
    // The first quarter shown is 2025-Q4 (four full ones before 2026-Q4):
    // an opportunity created before it, or after the partial quarter ends,
    // belongs to no quarter of the review.
    let ds = data(
        &["P-1"],
        vec![rep("PR-1", "P-1")],
        vec![
            opp("O-old", "P-1", "2024-01-15", 100.0),
            opp("O-edge", "P-1", "2025-09-30T23:59:59Z", 7.0),
            opp("O-first", "P-1", "2025-10-01", 1.0),
            opp("O-in", "P-1", "2026-12-31", 10.0),
            opp("O-future", "P-1", "2027-01-01", 50.0),
        ],
    );
    let r = run(&ds, &ReviewInputs::default());
    let total: f64 = r.program.values().map(|m| m.sourced_pipeline_created).sum();
    assert_eq!(total, 11.0, "{:?}", r.program.keys().collect::<Vec<_>>());
    assert_eq!(r.program["2026-Q4"].sourced_pipeline_created, 10.0);
}

#[test]
fn the_review_says_whether_opportunities_carry_campaigns() {
    let mut o = opp("O-1", "P-1", "2026-08-01", 10.0);
    let without = run(
        &data(&["P-1"], vec![], vec![o.clone()]),
        &ReviewInputs::default(),
    );
    assert!(!without.inputs.campaign_ids);
    o.campaign_id = Some("C-1".into());
    let with = run(&data(&["P-1"], vec![], vec![o]), &ReviewInputs::default());
    assert!(with.inputs.campaign_ids);
}

#[test]
fn the_oldest_open_conflict_is_the_one_whose_second_claim_came_first() {
    let conflict = |key: &str, first: &str, second: &str| {
        let mut f = crate::notify::teams::render::tests::big(2, 1);
        f.key = key.into();
        f.evidence[0].at = crate::values::parse_timestamp(first).unwrap();
        f.evidence[1].at = crate::values::parse_timestamp(second).unwrap();
        f
    };
    let found = [
        conflict("b", "2026-01-01", "2026-11-16"),
        // Claimed first long ago, but the conflict began with its second claim.
        conflict("c", "2025-01-01", "2026-11-20"),
        conflict("a", "2026-10-01", "2026-11-16"),
    ];
    let oc = open_conflicts(now(), &found);
    assert_eq!(oc.open, 3);
    assert_eq!(oc.by_kind.get("direct_vs_partner"), Some(&3));
    assert_eq!(oc.oldest_open_days, Some(10));
    // A tie in time goes to the smaller key.
    assert_eq!(oc.oldest_open_key.as_deref(), Some("a"));
}

#[test]
fn a_partner_with_no_reps_has_no_rate_and_is_never_dormant() {
    let ds = data(&["P-1"], vec![], vec![]);
    let r = run(&ds, &ReviewInputs::default());
    let m = q(&r, "P-1", "2026-Q3");
    assert_eq!(m.reps, 0);
    assert_eq!(m.active_seller_rate, None);
    assert!(!r.partners[0].dormant);
    assert!(r.dormant.is_empty());
    assert_eq!(r.program["2026-Q3"].active_seller_rate, None);
}

#[test]
fn without_cost_data_cost_and_roi_are_null_never_zero() {
    let ds = data(
        &["P-1"],
        vec![rep("PR-1", "P-1")],
        vec![won(
            opp("O-1", "P-1", "2026-07-01", 1000.0),
            "2026-08-01",
            "PR-1",
        )],
    );
    let r = run(&ds, &ReviewInputs::default());
    let m = q(&r, "P-1", "2026-Q3");
    assert_eq!(m.cost, None);
    assert_eq!(m.roi, None);
    assert_eq!(m.roi_trailing_4q, None);
    assert_eq!(m.mdf_spend, None);
    assert_eq!(m.mdf_effectiveness, None);
    assert_eq!(m.mdf_pipeline, None);
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["program"]["2026-Q3"]["cost"].is_null());
    assert!(json["program"]["2026-Q3"]["roi"].is_null());
}

#[test]
fn zero_cost_gives_no_roi_and_a_known_cost_does() {
    let ds = data(
        &["P-1", "P-2"],
        vec![rep("PR-1", "P-1")],
        vec![won(
            opp("O-1", "P-1", "2026-07-01", 1000.0),
            "2026-08-01",
            "PR-1",
        )],
    );
    let inputs = ReviewInputs {
        program_costs: Some(vec![
            cost("C-1", "2026-Q3", "P-1", 400.0),
            cost("C-2", "2026-Q3", "", 100.0),
            cost("C-3", "2019-Q1", "P-1", 5000.0),
        ]),
        mdf: None,
    };
    let mut s = Settings::default();
    s.review.gross_margin = 0.8;
    let r = review(&ds, &inputs, &s, now(), 4);
    let m = q(&r, "P-1", "2026-Q3");
    assert_eq!(m.cost, Some(400.0));
    // (1000 * 0.8 - 400) / 400
    assert_eq!(m.roi, Some(1.0));
    // P-2 spent nothing: cost 0 is known, ROI is not.
    let z = q(&r, "P-2", "2026-Q3");
    assert_eq!(z.cost, Some(0.0));
    assert_eq!(z.roi, None);
    // The program carries the program-wide cost: (800 - 500) / 500.
    let p = &r.program["2026-Q3"];
    assert_eq!(p.cost, Some(500.0));
    assert_eq!(p.roi, Some(0.6));
    assert_eq!(p.mdf_spend, None, "no mdf file: unknown, not 0");
}

#[test]
fn roi_over_the_trailing_four_quarters_lets_revenue_lag_spend() {
    let ds = data(
        &["P-1"],
        vec![rep("PR-1", "P-1")],
        vec![won(
            opp("O-1", "P-1", "2026-01-10", 3000.0),
            "2026-08-01",
            "PR-1",
        )],
    );
    let inputs = ReviewInputs {
        program_costs: Some(vec![
            cost("C-1", "2025-Q4", "P-1", 1000.0),
            cost("C-2", "2026-Q1", "P-1", 1000.0),
        ]),
        mdf: None,
    };
    let r = run(&ds, &inputs);
    let m = q(&r, "P-1", "2026-Q3");
    assert_eq!(m.roi, None, "no cost in Q3 itself");
    // 2025-Q4..2026-Q3: revenue 3000, cost 2000.
    assert_eq!(m.roi_trailing_4q, Some(0.5));
    // 2026-Q4's trailing window (2026-Q1..Q4) has cost 1000: (3000-1000)/1000.
    assert_eq!(q(&r, "P-1", "2026-Q4").roi_trailing_4q, Some(2.0));
}

#[test]
fn mdf_spend_is_the_claimed_amount_when_given_else_the_approved_one() {
    let ds = data(&["P-1"], vec![], vec![]);
    let mut claimed = mdf("M-1", "P-1", MdfStatus::Claimed, 5000.0, "2026-08-01");
    claimed.claimed_amount = Some(usd(3200.0));
    let inputs = ReviewInputs {
        program_costs: None,
        mdf: Some(vec![
            claimed,
            mdf("M-2", "P-1", MdfStatus::Approved, 1000.0, "2026-09-30"),
            mdf("M-3", "P-1", MdfStatus::Paid, 800.0, "2026-07-01"),
            mdf("M-4", "P-1", MdfStatus::Requested, 9999.0, "2026-08-01"),
            mdf("M-5", "P-1", MdfStatus::Rejected, 9999.0, "2026-08-01"),
            mdf("M-6", "P-1", MdfStatus::Approved, 70.0, "2026-10-01"),
        ]),
    };
    let r = run(&ds, &inputs);
    let m = q(&r, "P-1", "2026-Q3");
    assert_eq!(m.mdf_spend, Some(5000.0));
    // Cost is MDF alone when there are no program costs.
    assert_eq!(m.cost, Some(5000.0));
    assert_eq!(
        m.mdf_effectiveness,
        Some(0.0),
        "no campaign produced anything"
    );
    assert_eq!(m.mdf_pipeline, Some(0.0));
    assert_eq!(q(&r, "P-1", "2026-Q4").mdf_spend, Some(70.0));
    assert_eq!(q(&r, "P-1", "2026-Q2").mdf_spend, Some(0.0));
    assert_eq!(q(&r, "P-1", "2026-Q2").mdf_effectiveness, None);
}

#[test]
fn campaign_attribution_ends_exactly_at_the_window_edge() {
    // Campaign C-1 runs 2026-07-01 .. 2026-07-31; with 180 days the last
    // day an opportunity counts is 2027-01-27. The partial quarter holds
    // T, so put the campaign earlier and move the clock instead.
    let mut s = Settings::default();
    s.review.mdf_attribution_days = 30;
    let with_campaign = |id: &str, created: &str, amount: f64| {
        let mut o = opp(id, "P-1", created, amount);
        o.campaign_id = Some("C-1".into());
        o
    };
    let mut m = mdf("M-1", "P-1", MdfStatus::Paid, 1000.0, "2026-07-01");
    m.end_date = Some(d("2026-07-31"));
    m.campaign_id = Some("C-1".into());
    let mut other = mdf("M-2", "P-1", MdfStatus::Paid, 3000.0, "2026-07-15");
    other.campaign_id = Some("C-2".into());
    let inputs = ReviewInputs {
        program_costs: None,
        mdf: Some(vec![m, other]),
    };
    let edge = |created: &str| {
        let ds = data(
            &["P-1"],
            vec![],
            vec![
                with_campaign("O-1", created, 250.0),
                opp("O-2", "P-1", "2026-08-01", 5.0),
            ],
        );
        let r = review(&ds, &inputs, &s, now(), 4);
        q(&r, "P-1", "2026-Q3").clone()
    };
    // 2026-07-31 + 30 days = 2026-08-30: the last day that counts.
    let on_edge = edge("2026-08-30T23:00:00Z");
    assert_eq!(on_edge.mdf_effectiveness, Some(0.25));
    assert_eq!(on_edge.mdf_pipeline, Some(250.0));
    let past_edge = edge("2026-08-31");
    assert_eq!(past_edge.mdf_effectiveness, Some(0.0));
    assert_eq!(past_edge.mdf_pipeline, Some(0.0));
    let before_start = edge("2026-06-30T23:59:59Z");
    assert_eq!(before_start.mdf_effectiveness, Some(0.0));
    let on_start = edge("2026-07-01");
    assert_eq!(on_start.mdf_effectiveness, Some(0.25));
}

#[test]
fn dormant_over_exactly_dormant_quarters() {
    // P-1: reps, pipeline in 2026-Q1, nothing in Q2 and Q3: dormant over 2.
    // P-2: a seller in Q2: not dormant.
    // P-1's second rep joined in Q3: the dormant partner's reps are the
    // last full quarter's.
    let mut joined = rep("PR-3", "P-1");
    joined.joined_on = Some(d("2026-08-01"));
    let ds = data(
        &["P-1", "P-2"],
        vec![rep("PR-1", "P-1"), rep("PR-2", "P-2"), joined],
        vec![
            opp("O-1", "P-1", "2026-03-31", 10.0),
            won(opp("O-2", "P-2", "2026-01-05", 10.0), "2026-06-30", "PR-2"),
        ],
    );
    let inputs = ReviewInputs {
        program_costs: Some(vec![
            cost("C-1", "2026-Q2", "P-1", 300.0),
            cost("C-2", "2026-Q3", "P-1", 200.0),
            cost("C-3", "2026-Q1", "P-1", 1000.0),
        ]),
        mdf: None,
    };
    let r = run(&ds, &inputs);
    assert_eq!(r.dormant.len(), 1);
    let dm = &r.dormant[0];
    assert_eq!(dm.partner_id, "P-1");
    assert_eq!(dm.quarters, ["2026-Q2", "2026-Q3"]);
    assert_eq!(dm.cost, Some(500.0));
    assert_eq!(dm.reps, 2);
    assert!(r.partners[0].dormant && !r.partners[1].dormant);

    // Three quarters: P-1 had pipeline in the third one back.
    let mut s = Settings::default();
    s.review.dormant_quarters = 3;
    let r3 = review(&ds, &inputs, &s, now(), 4);
    assert!(r3.dormant.is_empty(), "{:?}", r3.dormant);
    // More dormant quarters than quarters shown still look far enough back.
    let mut s = Settings::default();
    s.review.dormant_quarters = 2;
    let r1 = review(&ds, &inputs, &s, now(), 1);
    assert_eq!(r1.dormant.len(), 1);
    assert_eq!(r1.quarters.len(), 2);
}

#[test]
fn without_cost_data_a_dormant_partner_costs_null() {
    let ds = data(&["P-1"], vec![rep("PR-1", "P-1")], vec![]);
    let r = run(&ds, &ReviewInputs::default());
    assert_eq!(r.dormant.len(), 1);
    assert_eq!(r.dormant[0].cost, None);
}

#[test]
fn every_metric_carries_its_change_against_the_previous_quarter() {
    let ds = data(
        &["P-1"],
        vec![rep("PR-1", "P-1")],
        vec![
            opp("O-1", "P-1", "2026-05-01", 100.0),
            opp("O-2", "P-1", "2026-08-01", 350.0),
        ],
    );
    let r = run(&ds, &ReviewInputs::default());
    let m = q(&r, "P-1", "2026-Q3");
    assert_eq!(m.change["sourced_pipeline_created"], Some(250.0));
    assert_eq!(m.change["reps"], Some(0.0));
    assert_eq!(m.change["cost"], None);
    // The oldest quarter shown has a change too: its predecessor is computed.
    assert!(
        q(&r, "P-1", "2025-Q4")
            .change
            .contains_key("sourced_revenue")
    );
}

#[test]
fn open_conflicts_now_without_a_state() {
    let r = run(&data(&["P-1"], vec![], vec![]), &ReviewInputs::default());
    assert!(r.disputes.is_empty());
    assert_eq!(r.open_conflicts_now.open, 0);
    assert!(
        r.open_conflicts_now
            .note
            .contains("only the conflicts open now")
    );
}

#[test]
fn disputes_per_quarter_from_the_history() {
    let t = |s: &str| crate::values::parse_timestamp(s).unwrap();
    let rec = |first: &str, closed: Option<&str>, resolved: bool| DisputeRecord {
        kind: "direct_vs_partner".into(),
        first_seen: t(first),
        closed_at: closed.map(t),
        resolved,
        decisions: Vec::new(),
    };
    let records = [
        // Opened in Q3, resolved in Q3 after 4 days.
        rec("2026-07-01T00:00:00Z", Some("2026-07-05T00:00:00Z"), true),
        // Opened in Q3, resolved in Q3 after 10 days.
        rec("2026-08-01T00:00:00Z", Some("2026-08-11T00:00:00Z"), true),
        // Opened in Q3, resolved in Q3 after 30 days: three, so the median
        // is the middle one.
        rec("2026-08-15T00:00:00Z", Some("2026-09-14T00:00:00Z"), true),
        // Opened in Q2, still open at the end of Q3, closed (aged out) in Q4.
        rec("2026-06-30T12:00:00Z", Some("2026-10-02T00:00:00Z"), false),
        // Opened on Q3's last second: open at its end.
        rec("2026-09-30T23:59:59Z", None, false),
        // Opened by a cycle at T itself: the partial quarter holds T.
        rec("2026-11-26T00:00:00Z", None, false),
    ];
    let qs = quarters(now(), 1, 2);
    let d = disputes(&records, &qs, now());
    let q3 = &d["2026-Q3"];
    assert_eq!((q3.opened, q3.resolved, q3.aged_out), (4, 3, 0));
    assert_eq!(q3.median_days_to_resolve, Some(10.0));
    // Two: the mean of the middle pair.
    let two = &records[..2];
    assert_eq!(
        disputes(two, &qs, now())["2026-Q3"].median_days_to_resolve,
        Some(7.0)
    );
    // Five, in no order (1, 2, 4, 10 and 30 days): the third, where the
    // middle of three (the first resolution above) could also be index 1.
    let five = [
        rec("2026-08-15T00:00:00Z", Some("2026-09-14T00:00:00Z"), true),
        rec("2026-07-01T00:00:00Z", Some("2026-07-05T00:00:00Z"), true),
        rec("2026-07-10T00:00:00Z", Some("2026-07-11T00:00:00Z"), true),
        rec("2026-08-01T00:00:00Z", Some("2026-08-11T00:00:00Z"), true),
        rec("2026-07-20T00:00:00Z", Some("2026-07-22T00:00:00Z"), true),
    ];
    assert_eq!(
        disputes(&five, &qs, now())["2026-Q3"].median_days_to_resolve,
        Some(4.0)
    );
    assert_eq!(q3.open_at_end, 2);
    // 2026-06-30T12:00 to 2026-10-01T00:00: 92.5 days.
    assert_eq!(q3.oldest_open_days, Some(92));
    let q4 = &d["2026-Q4"];
    assert_eq!((q4.opened, q4.resolved, q4.aged_out), (1, 0, 1));
    assert_eq!(q4.median_days_to_resolve, None);
    // The partial quarter ends at T, and holds it.
    assert_eq!(q4.open_at_end, 2);
    assert_eq!(q4.oldest_open_days, Some(56));
    let q2 = &d["2026-Q2"];
    assert_eq!((q2.opened, q2.open_at_end), (1, 1));
    let r = run(&data(&["P-1"], vec![], vec![]), &ReviewInputs::default())
        .with_history(&records, now());
    assert_eq!(r.disputes.len(), 5);
    assert!(r.open_conflicts_now.note.contains("state's history"));
}

#[test]
fn review_keys_are_validated_by_name() {
    for (toml, key) in [
        ("[review]\ngross_margin = 0.0", "review.gross_margin"),
        ("[review]\ngross_margin = 1.5", "review.gross_margin"),
        ("[review]\ndormant_quarters = 0", "review.dormant_quarters"),
        (
            "[review]\nmdf_attribution_days = 99999",
            "review.mdf_attribution_days",
        ),
        ("[review]\ncron = \"0 9 1 * *\"", "review.cron"),
    ] {
        let e = Settings::from_toml(toml).unwrap_err();
        assert_eq!(e.key, key, "{toml}: {e}");
    }
    let s = Settings::from_toml("[review]\ngross_margin = 0.7").unwrap();
    assert_eq!(s.review.gross_margin, 0.7);
    assert_eq!(s.review.mdf_attribution_days, 180);
    assert_eq!(s.review.dormant_quarters, 2);
}

/// A random small program: partners, reps, opportunities, costs and MDF.
fn program() -> impl Strategy<Value = (Dataset, ReviewInputs)> {
    let dates = prop::sample::select(vec![
        "2025-08-10",
        "2025-12-31",
        "2026-01-01",
        "2026-04-15",
        "2026-06-30",
        "2026-07-01",
        "2026-09-30",
        "2026-10-02",
        "2026-11-20",
    ]);
    let opps = prop::collection::vec(
        (
            0usize..4,
            0usize..6,
            0u32..3,
            1u32..100_000,
            dates.clone(),
            0usize..3,
        ),
        0..40,
    );
    let costs = prop::collection::vec((0usize..5, 0usize..6, 1u32..10_000), 0..10);
    let mdfs = prop::collection::vec((0usize..4, 0u8..5, 1u32..10_000, dates, 0usize..3), 0..10);
    (opps, costs, mdfs).prop_map(|(opps, costs, mdfs)| {
        let partners = ["P-0", "P-1", "P-2", "P-3"];
        let reps = (0..6)
            .map(|i| rep(&format!("PR-{i}"), partners[i % 4]))
            .collect();
        let opportunities = opps
            .iter()
            .enumerate()
            .map(|(i, (p, r, status, cents, date, camp))| {
                let mut o = opp(
                    &format!("O-{i}"),
                    partners[*p],
                    date,
                    f64::from(*cents) / 100.0,
                );
                if *status == 1 {
                    o = won(o, date, &format!("PR-{r}"));
                }
                if *camp > 0 {
                    o.campaign_id = Some(format!("C-{camp}").into());
                }
                o
            })
            .collect();
        let labels = [
            "2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4", "2026-Q3",
        ];
        let program_costs = costs
            .iter()
            .enumerate()
            .map(|(i, (p, l, c))| {
                let partner = partners.get(*p).copied().unwrap_or("");
                cost(&format!("C-{i}"), labels[*l], partner, f64::from(*c))
            })
            .collect();
        let statuses = [
            MdfStatus::Requested,
            MdfStatus::Approved,
            MdfStatus::Rejected,
            MdfStatus::Claimed,
            MdfStatus::Paid,
        ];
        let mdf = mdfs
            .iter()
            .enumerate()
            .map(|(i, (p, s, a, date, camp))| {
                let mut m = mdf(
                    &format!("M-{i}"),
                    partners[*p],
                    statuses[*s as usize],
                    f64::from(*a),
                    date,
                );
                m.campaign_id = (*camp > 0).then(|| format!("C-{camp}"));
                m
            })
            .collect();
        (
            data(&partners, reps, opportunities),
            ReviewInputs {
                program_costs: Some(program_costs),
                mdf: Some(mdf),
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn program_totals_are_the_sum_over_partners((ds, inputs) in program()) {
        let r = run(&ds, &inputs);
        for q in &r.quarters {
            let p = &r.program[&q.label];
            let sum = |f: &dyn Fn(&Metrics) -> f64| -> f64 {
                r.partners.iter().map(|x| f(&x.quarters[&q.label])).sum()
            };
            let close = |a: f64, b: f64| (a - b).abs() < 0.005;
            prop_assert!(close(p.sourced_pipeline_created, sum(&|m| m.sourced_pipeline_created)));
            prop_assert!(close(p.sourced_revenue, sum(&|m| m.sourced_revenue)));
            prop_assert_eq!(p.reps as f64, sum(&|m| m.reps as f64));
            prop_assert_eq!(p.active_sellers as f64, sum(&|m| m.active_sellers as f64));
            prop_assert!(close(p.mdf_spend.unwrap(), sum(&|m| m.mdf_spend.unwrap())));
            prop_assert!(close(p.mdf_pipeline.unwrap(), sum(&|m| m.mdf_pipeline.unwrap())));
            // The program's MDF effectiveness weighs each partner's by its spend.
            let effective = sum(&|m| m.mdf_effectiveness.unwrap_or(0.0) * m.mdf_spend.unwrap());
            match p.mdf_effectiveness {
                Some(e) => prop_assert!(close(e * p.mdf_spend.unwrap(), effective)),
                None => prop_assert!(close(p.mdf_spend.unwrap(), 0.0)),
            }
            // Program cost = partners' costs + program-wide costs of the quarter.
            let wide: f64 = inputs.program_costs.iter().flatten()
                .filter(|c| c.partner_id.is_none() && c.quarter == q.label)
                .map(|c| c.amount.value)
                .sum();
            prop_assert!(close(p.cost.unwrap(), sum(&|m| m.cost.unwrap()) + wide));
        }
    }

    #[test]
    fn the_review_does_not_depend_on_row_order((ds, inputs) in program(), seed in any::<u64>()) {
        let want = serde_json::to_value(run(&ds, &inputs)).unwrap();
        let mut shuffled = ds.clone();
        let mut inputs2 = inputs.clone();
        let mut rng = seed;
        let mut shuffle = |n: usize| -> Vec<usize> {
            let mut idx: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                idx.swap(i, (rng >> 33) as usize % (i + 1));
            }
            idx
        };
        let o = shuffle(ds.opportunities.len());
        shuffled.opportunities = o.iter().map(|&i| ds.opportunities[i].clone()).collect();
        let r = shuffle(ds.reps.len());
        shuffled.reps = r.iter().map(|&i| ds.reps[i].clone()).collect();
        let p = shuffle(ds.partners.len());
        shuffled.partners = p.iter().map(|&i| ds.partners[i].clone()).collect();
        if let Some(m) = inputs2.mdf.as_mut() {
            m.reverse();
        }
        if let Some(c) = inputs2.program_costs.as_mut() {
            c.reverse();
        }
        let got = serde_json::to_value(run(&shuffled, &inputs2)).unwrap();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn the_verdicts_taken_on_disputes_are_counted_in_their_quarter() {
    let t = |s: &str| crate::values::parse_timestamp(s).unwrap();
    let record = |decisions: &[(&str, &str)]| DisputeRecord {
        kind: "direct_vs_partner".into(),
        first_seen: t("2026-07-01T00:00:00Z"),
        closed_at: None,
        resolved: false,
        decisions: decisions
            .iter()
            .map(|(at, o)| (t(at), o.to_string()))
            .collect(),
    };
    let records = [
        record(&[
            ("2026-07-10T00:00:00Z", "partner_keeps"),
            // On Q3's last second, then again in Q4 (after a reopening).
            ("2026-09-30T23:59:59Z", "split"),
            ("2026-10-02T00:00:00Z", "partner_keeps"),
        ]),
        record(&[("2026-08-01T00:00:00Z", "partner_keeps")]),
    ];
    let d = disputes(&records, &quarters(now(), 1, 2), now());
    assert_eq!(
        d["2026-Q3"].decisions,
        BTreeMap::from([("partner_keeps".to_string(), 2), ("split".to_string(), 1)])
    );
    assert_eq!(
        d["2026-Q4"].decisions,
        BTreeMap::from([("partner_keeps".to_string(), 1)])
    );
    assert!(d["2026-Q2"].decisions.is_empty());
}
