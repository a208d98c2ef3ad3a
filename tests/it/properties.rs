//! Invariants of the engine over random small programs: the report does not
//! depend on the order of the input rows; keys are unique; findings and id
//! lists are sorted; rates are within [0, 1] or null.

use channel_sync::config::{Settings, TierRules};
use channel_sync::engine::{Evaluation, FindingKind, Severity, evaluate};
use channel_sync::model::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

// A small vocabulary, so that names, domains and ids collide often.
const NAMES: &[&str] = &[
    "Acme Corp",
    "ACME Inc.",
    "Acme",
    "Globex",
    "Globex Corporation",
    "Initech",
    "Contoso Bank",
    "Contoso Bakery",
    "Contosso Bank",
    "AT&T",
    "ATandT",
    "The Acme Co",
    // Three and four words.
    "Acme Widget Holdings",
    "ACME Widget Holdings Ltd",
    "Contoso Bank of Paris",
    "The Globex Trading Company",
];
const WEBSITES: &[&str] = &[
    "https://www.acme.com/en-us/home",
    "http://globex.io",
    "www.initech.co.uk",
    "contoso.com",
];
// Partners' own domains: some are customers' too.
const PARTNER_DOMAINS: &[&str] = &["northwind.example", "acme.com", "globex.io"];
const DOMAINS: &[&str] = &[
    "acme.com",
    "https://www.acme.com/x",
    "eu.globex.io",
    "globex.io",
    "gmail.com",
    "initech.co.uk",
    "bob@contoso.com",
];
const TIERS: &[&str] = &["gold", "Silver", "registered", "platinum"];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

/// A time within about a year before `now`, on a coarse grid so ties happen.
fn time(days_back: u16, hour: u8) -> DateTime<Utc> {
    now() - Duration::days(i64::from(days_back)) + Duration::hours(i64::from(hour % 3) * 8)
}

fn date(days_back: i32) -> NaiveDate {
    now().date_naive() - Duration::days(i64::from(days_back))
}

fn program() -> impl Strategy<Value = Dataset> {
    let accounts =
        prop::collection::vec((0..NAMES.len(), prop::option::of(0..DOMAINS.len())), 1..8);
    let partners = prop::collection::vec(
        (
            prop::option::of(0..TIERS.len()),
            prop::option::of(0..8usize),
        ),
        1..4,
    );
    let reps = prop::collection::vec(
        (
            0..4usize,
            any::<bool>(),
            prop::option::of(-200..200i32),
            prop::option::of(-200..200i32),
        ),
        0..8,
    );
    let opps = prop::collection::vec(
        (
            0..8usize,
            0..3u8,
            0..300u16,
            any::<u8>(),
            prop::option::of(-100..200i32),
            prop::option::of(0..4usize),
            prop::option::of(0..10usize),
            prop::option::of(0..12usize),
            prop::option::of(1..1000u32),
        ),
        0..20,
    );
    let regs = prop::collection::vec(
        (
            0..4usize,
            0..NAMES.len(),
            prop::option::of(0..DOMAINS.len()),
            prop::option::of(0..10usize),
            0..7u8,
            0..300u16,
            any::<u8>(),
            prop::option::of(0..20u16),
            prop::option::of(0..200u16),
            prop::option::of(0..10usize),
            prop::option::of(0..20usize),
        ),
        0..14,
    );
    // Per row, by position: account websites and owners, partner domains,
    // users, opportunity owners and currencies, registration amounts.
    let extras = (
        prop::collection::vec(
            (
                prop::option::of(0..WEBSITES.len()),
                prop::option::of(0..4usize),
            ),
            8,
        ),
        prop::collection::vec(prop::option::of(0..PARTNER_DOMAINS.len()), 4),
        0..4usize,
        prop::collection::vec((prop::option::of(0..4usize), any::<bool>()), 20),
        prop::collection::vec(prop::option::of(1..500u32), 14),
    );
    (accounts, partners, reps, opps, regs, extras).prop_map(
        |(accounts, partners, reps, opps, regs, extras)| {
            let (account_extras, partner_domains, n_users, opp_extras, reg_amounts) = extras;
            let n_acc = accounts.len();
            let n_par = partners.len();
            let user = |u: Option<usize>| {
                u.filter(|_| n_users > 0)
                    .map(|u| format!("U-{}", u % n_users))
            };
            let accounts: Vec<Account> = accounts
                .into_iter()
                .enumerate()
                .map(|(i, (name, domain))| Account {
                    id: format!("A-{i}"),
                    name: NAMES[name].into(),
                    domain: domain.map(|d| DOMAINS[d].into()),
                    website: account_extras[i].0.map(|w| WEBSITES[w].into()),
                    owner_id: user(account_extras[i].1),
                })
                .collect();
            let partners: Vec<Partner> = partners
                .into_iter()
                .enumerate()
                .map(|(i, (tier, own))| Partner {
                    id: format!("P-{i}"),
                    name: format!("Partner {i}"),
                    tier: tier.map(|t| TIERS[t].into()),
                    // Some partners' own accounts are among the customers' names.
                    crm_account_id: own
                        .filter(|&a| a < n_acc && a % 3 == 0)
                        .map(|a| format!("A-{a}")),
                    domain: partner_domains[i].map(|d| PARTNER_DOMAINS[d].into()),
                })
                .collect();
            let reps: Vec<PartnerRep> = reps
                .into_iter()
                .enumerate()
                .map(|(i, (p, active, joined, left))| PartnerRep {
                    id: format!("PR-{i}"),
                    partner_id: format!("P-{}", p % n_par),
                    email: Some(format!("rep{i}@partner.example")),
                    name: None,
                    active,
                    joined_on: joined.map(date),
                    left_on: left.map(date),
                })
                .collect();
            let opportunities: Vec<Opportunity> = opps
                .into_iter()
                .enumerate()
                .map(
                    |(i, (a, st, created, h, close, partner, rep, reg, amount))| {
                        let status = [
                            OpportunityStatus::Open,
                            OpportunityStatus::Won,
                            OpportunityStatus::Lost,
                        ][st as usize];
                        Opportunity {
                            id: format!("O-{i}").into(),
                            account_id: format!("A-{}", a % n_acc).into(),
                            status,
                            created_at: time(created, h),
                            name: None,
                            owner_id: user(opp_extras[i].0).map(Into::into),
                            stage: None,
                            amount: amount.map(|v| {
                                let value = f64::from(v) * 10.5;
                                if opp_extras[i].1 {
                                    Money {
                                        value,
                                        currency: Some("EUR".into()),
                                        base: Some(value * 1.08),
                                    }
                                } else {
                                    Money {
                                        value,
                                        currency: None,
                                        base: Some(value),
                                    }
                                }
                            }),
                            close_date: close.map(date),
                            partner_id: partner.map(|p| format!("P-{}", p % n_par).into()),
                            partner_rep: rep.map(|r| {
                                if r % 2 == 0 {
                                    format!("PR-{r}").into()
                                } else {
                                    format!("REP{r}@Partner.example").into()
                                }
                            }),
                            registration_id: reg.map(|r| format!("R-{r}").into()),
                            campaign_id: None,
                        }
                    },
                )
                .collect();
            let registrations: Vec<Registration> = regs
                .into_iter()
                .enumerate()
                .map(
                    |(
                        i,
                        (
                            p,
                            name,
                            domain,
                            account,
                            st,
                            submitted,
                            h,
                            approve_after,
                            explicit,
                            rep,
                            opp,
                        ),
                    )| {
                        use RegistrationStatus::*;
                        let status = [Submitted, Approved, Rejected, Expired, Cancelled, Won, Lost]
                            [st as usize];
                        let submitted_at = time(submitted, h);
                        Registration {
                            id: format!("R-{i}"),
                            partner_id: format!("P-{}", p % n_par),
                            customer_name: NAMES[name].into(),
                            status,
                            submitted_at,
                            rep: rep.map(|r| format!("PR-{r}")),
                            customer_domain: domain.map(|d| DOMAINS[d].into()),
                            account_id: account.map(|a| format!("A-{a}")),
                            opportunity_id: opp.map(|o| format!("O-{o}")),
                            approved_at: approve_after
                                .map(|d| submitted_at + Duration::days(i64::from(d))),
                            expires_at: explicit
                                .map(|d| submitted_at + Duration::days(i64::from(d))),
                            amount: reg_amounts[i].map(|v| f64::from(v) * 100.0),
                        }
                    },
                )
                .collect();
            Dataset {
                accounts,
                partners,
                reps,
                opportunities,
                registrations,
                users: (0..n_users)
                    .map(|u| User {
                        id: format!("U-{u}"),
                        name: Some(format!("Owner {u}")),
                        email: Some(format!("owner{u}@vendor.example")),
                    })
                    .collect(),
            }
        },
    )
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
        "silver".into(),
        TierRules {
            protection_days: 120,
        },
    );
    s
}

fn shuffled(data: &Dataset, seed: u64) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut d = data.clone();
    d.accounts.shuffle(&mut rng);
    d.partners.shuffle(&mut rng);
    d.reps.shuffle(&mut rng);
    d.opportunities.shuffle(&mut rng);
    d.registrations.shuffle(&mut rng);
    d.users.shuffle(&mut rng);
    d
}

fn report(e: &Evaluation) -> serde_json::Value {
    serde_json::to_value(e).unwrap()
}

fn is_sorted<T: Ord>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_report_does_not_depend_on_row_order(data in program(), seed in any::<u64>()) {
        let a = evaluate(&data, &settings(), now());
        let b = evaluate(&shuffled(&data, seed), &settings(), now());
        prop_assert_eq!(report(&a), report(&b));
    }

    #[test]
    fn the_report_keeps_its_invariants(data in program()) {
        let e = evaluate(&data, &settings(), now());
        let keys: Vec<(&str, &str)> = e.findings.iter().map(|f| (f.kind.as_str(), f.key.as_str())).collect();
        prop_assert!(is_sorted(&keys), "findings sorted by kind then key, keys unique: {:?}", keys);
        for f in &e.findings {
            prop_assert!(f.key.starts_with(f.kind.as_str()));
            prop_assert!(is_sorted(&f.partner_ids), "{:?}", f.partner_ids);
            prop_assert!(is_sorted(&f.registration_ids), "{:?}", f.registration_ids);
            prop_assert!(is_sorted(&f.opportunity_ids), "{:?}", f.opportunity_ids);
            prop_assert!(
                f.registration_ids.contains(&f.first_in) || f.opportunity_ids.contains(&f.first_in),
                "first_in {} is one of the claims", f.first_in
            );
            let severity = match f.kind {
                FindingKind::DirectVsPartner => f.severity != Severity::Info,
                FindingKind::PartnerBypassed => f.severity == Severity::Critical,
                FindingKind::PartnerVsPartner | FindingKind::RegistrationExpired => f.severity == Severity::Warning,
                FindingKind::RegistrationExpiring => f.severity == Severity::Info,
            };
            prop_assert!(severity, "{:?} with {:?}", f.kind, f.severity);
            if f.account_id.is_none() {
                // An unmatched group has no match (an account claimed by
                // opportunities alone has an account and no match either).
                prop_assert!(f.how.is_none());
            }
            if f.kind.is_conflict() {
                prop_assert!(!f.partner_ids.is_empty());
            }
            if f.kind == FindingKind::PartnerVsPartner {
                prop_assert!(f.partner_ids.len() >= 2);
            }
        }
        let partners: Vec<&str> = e.scorecards.iter().map(|s| s.partner_id.as_str()).collect();
        prop_assert!(is_sorted(&partners));
        prop_assert_eq!(partners.len(), data.partners.len());
        for s in &e.scorecards {
            prop_assert!(s.active_sellers <= s.reps);
            prop_assert!(s.expiring_registrations <= s.open_registrations);
            match s.active_seller_rate {
                None => prop_assert_eq!(s.reps, 0),
                Some(r) => prop_assert!((0.0..=1.0).contains(&r) && s.reps > 0),
            }
        }
    }
}
