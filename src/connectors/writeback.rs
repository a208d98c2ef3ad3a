//! Scorecard write-back: the sink trait the CRM connectors implement, the
//! diffing against what was last written successfully, and the files sink.
//!
//! Only values that changed since the last successful write are sent; a
//! record that fails is retried on the next cycle, since its old values stay
//! remembered.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::review::{PartnerReview, REVIEW_FIELDS};
use crate::engine::{Period, Scorecard};
use crate::fast::FastMap;
use crate::model::Partner;

/// Changed values for one CRM record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordUpdate {
    pub record_id: String,
    pub partner_id: String,
    /// (field, value), only those that changed.
    pub fields: Vec<(String, String)>,
}

/// The values one partner's record should hold in a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub partner_id: String,
    pub record_id: String,
    pub fields: Vec<(String, String)>,
}

/// A sink's answer for one record: `None` written, else why not.
pub(crate) type RecordOutcome = Option<String>;

/// Where scorecards are written.
pub(crate) trait ScorecardSink {
    /// A stable name, under which the state remembers what was written.
    fn name(&self) -> &'static str;

    /// The record and the (field, value) pairs to hold for one partner's
    /// scorecard and, when the cycle computed them, its review values
    /// ([`review_values`]); `None` when the partner has no record in this
    /// sink.
    fn target(
        &self,
        card: &Scorecard,
        partner: &Partner,
        period: &Period,
        review: &[(&'static str, String)],
    ) -> Option<(String, Vec<(String, String)>)>;

    /// Whether what was written before may be gone, so everything must be
    /// written again.
    fn lost_earlier_writes(&self) -> bool {
        false
    }

    /// Writes the updates; one outcome per update, in order.
    fn apply(
        &self,
        updates: &[RecordUpdate],
    ) -> impl std::future::Future<Output = Vec<RecordOutcome>> + Send;
}

/// A CRM sink's target: the partner's CRM record, and the scorecard and
/// review values mapped in `fields` (field -> CRM field). `None` when the
/// partner has no CRM record or nothing is mapped.
pub(crate) fn mapped_target(
    fields: &std::collections::BTreeMap<String, String>,
    card: &Scorecard,
    partner: &Partner,
    period: &Period,
    review: &[(&'static str, String)],
) -> Option<(String, Vec<(String, String)>)> {
    let record = partner.crm_account_id.clone()?;
    let values: Vec<(String, String)> = field_values(card, period)
        .into_iter()
        .chain(review.iter().cloned())
        .filter_map(|(name, value)| fields.get(name).map(|f| (f.clone(), value)))
        .collect();
    (!values.is_empty()).then_some((record, values))
}

/// The values of SPEC §3.4 as written: counts as integers, amounts with two
/// decimals, the rate as a fraction (empty when undefined).
pub(crate) fn field_values(card: &Scorecard, period: &Period) -> Vec<(&'static str, String)> {
    vec![
        ("period", period.label.clone()),
        ("reps", card.reps.to_string()),
        ("active_sellers", card.active_sellers.to_string()),
        (
            "active_seller_rate",
            card.active_seller_rate
                .map_or_else(String::new, |r| format!("{r:.6}")),
        ),
        ("sourced_pipeline", format!("{:.2}", card.sourced_pipeline)),
        ("sourced_revenue", format!("{:.2}", card.sourced_revenue)),
        ("open_registrations", card.open_registrations.to_string()),
        (
            "expiring_registrations",
            card.expiring_registrations.to_string(),
        ),
        ("open_conflicts", card.open_conflicts.to_string()),
    ]
}

/// The review's values of one partner in the scorecard's quarter `label`
/// (SPEC §6.2), in the order of [`REVIEW_FIELDS`]: amounts with two
/// decimals, ROI and MDF effectiveness as fractions, `dormant` as
/// `true`/`false`. A `null` metric (no cost or MDF data) is an empty value,
/// which clears the field, as for an undefined rate: never 0, and never an
/// earlier quarter's number left standing beside this quarter's period.
pub(crate) fn review_values(partner: &PartnerReview, label: &str) -> Vec<(&'static str, String)> {
    let Some(m) = partner.quarters.get(label) else {
        return Vec::new();
    };
    let fraction = |x: Option<f64>| x.map_or_else(String::new, |r| format!("{r:.6}"));
    vec![
        ("roi", fraction(m.roi)),
        (
            "sourced_pipeline_created",
            format!("{:.2}", m.sourced_pipeline_created),
        ),
        (
            "mdf_spend",
            m.mdf_spend.map_or_else(String::new, |x| format!("{x:.2}")),
        ),
        ("mdf_effectiveness", fraction(m.mdf_effectiveness)),
        ("dormant", partner.dormant.to_string()),
    ]
}

/// The changes to send: every target value that differs from what was last
/// written successfully.
pub(crate) fn diff(
    targets: &[Target],
    written: &FastMap<(String, String), String>,
) -> Vec<RecordUpdate> {
    targets
        .iter()
        .filter_map(|t| {
            let changed: Vec<(String, String)> = t
                .fields
                .iter()
                .filter(|(field, value)| {
                    written.get(&(t.record_id.clone(), field.clone())) != Some(value)
                })
                .cloned()
                .collect();
            (!changed.is_empty()).then(|| RecordUpdate {
                record_id: t.record_id.clone(),
                partner_id: t.partner_id.clone(),
                fields: changed,
            })
        })
        .collect()
}

/// The longest decision value written (a Salesforce Text(255) field).
#[cfg(test)]
const DECISION_MAX: usize = 255;

/// What a decision is written as: `partner_keeps by ana@example.com on
/// 2026-11-26` (the outcome, who, the day). Who is cut to 200 characters,
/// so the whole stays within a Text(255) field.
pub(crate) fn decision_value(verdict: &crate::decisions::Verdict) -> String {
    let by: String = verdict
        .by
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let day = verdict.at.get(..10).unwrap_or(&verdict.at);
    format!("{} by {} on {day}", verdict.outcome.as_str(), by.trim())
}

/// What the decision field of each opportunity should hold: the latest
/// verdict taken on it (the opportunities of the decision's basis, else of
/// the finding now, `current`: key -> opportunity ids). An opportunity
/// written before whose decision was withdrawn (the finding was reopened)
/// is cleared (an empty value). `written` is this sink's memory.
pub(crate) fn decision_targets(
    standings: &std::collections::HashMap<String, crate::decisions::Standing>,
    current: &std::collections::HashMap<&str, &[String]>,
    field: &str,
    written: &FastMap<(String, String), String>,
) -> Vec<Target> {
    let mut verdicts: Vec<(&str, &crate::decisions::Verdict)> = standings
        .iter()
        .filter_map(|(k, s)| s.verdict.as_ref().map(|v| (k.as_str(), v)))
        .collect();
    // Oldest first: a later verdict on the same opportunity wins.
    verdicts.sort_by(|a, b| a.1.at.cmp(&b.1.at).then(a.0.cmp(b.0)));
    let mut values: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (key, verdict) in verdicts {
        let value = decision_value(verdict);
        let opportunities: Vec<&String> = if verdict.basis.opportunities.is_empty() {
            current
                .get(key)
                .map(|o| o.iter().collect())
                .unwrap_or_default()
        } else {
            verdict.basis.opportunities.iter().collect()
        };
        for o in opportunities {
            values.insert(o.clone(), (key.to_string(), value.clone()));
        }
    }
    let mut cleared: Vec<&String> = written
        .iter()
        .filter(|((record, f), v)| f == field && !v.is_empty() && !values.contains_key(record))
        .map(|((record, _), _)| record)
        .collect();
    cleared.sort();
    let cleared = cleared.into_iter().map(|record| Target {
        partner_id: String::new(),
        record_id: record.clone(),
        fields: vec![(field.to_string(), String::new())],
    });
    values
        .into_iter()
        .map(|(record, (key, value))| Target {
            partner_id: key,
            record_id: record,
            fields: vec![(field.to_string(), value)],
        })
        .chain(cleared)
        .collect()
}

/// `scorecards.csv` in a folder: one row per partner, its name and tier, the
/// SPEC §3.4 fields and the period. Rows are upserted by partner id; the file
/// is replaced atomically (written beside, then renamed). Cells a spreadsheet
/// could run as a formula are written with a leading `'` ([`crate::csv_safe`]).
pub struct FilesSink {
    pub path: PathBuf,
}

pub(crate) use crate::engine::SCORECARD_FIELDS;

impl FilesSink {
    pub fn new(dir: PathBuf) -> FilesSink {
        FilesSink {
            path: dir.join("scorecards.csv"),
        }
    }

    fn read_existing(&self) -> std::io::Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut rows = BTreeMap::new();
        if !self.path.is_file() {
            return Ok(rows);
        }
        let mut reader = csv::Reader::from_path(&self.path)?;
        let header = reader.headers()?.clone();
        for record in reader.records() {
            let record = record?;
            let row: BTreeMap<String, String> = header
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), crate::csv_safe::restore(v).to_string()))
                .collect();
            if let Some(id) = row.get("partner_id").cloned() {
                rows.insert(id, row);
            }
        }
        Ok(rows)
    }

    fn write(&self, updates: &[RecordUpdate]) -> std::io::Result<()> {
        let mut rows = self.read_existing()?;
        for u in updates {
            let row = rows.entry(u.record_id.clone()).or_default();
            row.insert("partner_id".into(), u.record_id.clone());
            for (field, value) in &u.fields {
                row.insert(field.clone(), value.clone());
            }
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("csv.tmp");
        {
            let file = std::fs::File::create(&tmp)?;
            let mut w = crate::csv_safe::Writer::from_writer(std::io::BufWriter::new(&file));
            // The review's columns come after the scorecard's, when some
            // row holds one (they are written only when configured).
            let review: Vec<&str> = REVIEW_FIELDS
                .into_iter()
                .filter(|f| rows.values().any(|r| r.contains_key(*f)))
                .collect();
            let columns = || {
                ["partner_id", "partner_name", "tier"]
                    .into_iter()
                    .chain(SCORECARD_FIELDS)
                    .chain(review.iter().copied())
            };
            w.write_record(columns())?;
            for row in rows.values() {
                w.write_record(columns().map(|c| row.get(c).map_or("", String::as_str)))?;
            }
            w.flush()?;
            drop(w);
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

impl ScorecardSink for FilesSink {
    fn name(&self) -> &'static str {
        "files"
    }

    fn target(
        &self,
        card: &Scorecard,
        _partner: &Partner,
        period: &Period,
        review: &[(&'static str, String)],
    ) -> Option<(String, Vec<(String, String)>)> {
        // People read this file: the partner's name and tier come along.
        let named = [
            ("partner_name", card.partner_name.clone()),
            ("tier", card.tier.clone().unwrap_or_default()),
        ];
        let fields = named
            .into_iter()
            .chain(field_values(card, period))
            .chain(review.iter().cloned())
            .map(|(f, v)| (f.to_string(), v))
            .collect();
        Some((card.partner_id.clone(), fields))
    }

    fn lost_earlier_writes(&self) -> bool {
        !self.path.is_file()
    }

    async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
        match self.write(updates) {
            Ok(()) => vec![None; updates.len()],
            Err(e) => {
                let why = format!("{}: {e}", self.path.display());
                vec![Some(why); updates.len()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_written_on_their_opportunities_latest_first_and_cleared_when_withdrawn() {
        use crate::decisions::{Basis, Outcome, Standing, Verdict};
        let verdict = |outcome, by: &str, at: &str, opps: &[&str]| Standing {
            verdict: Some(Verdict {
                outcome,
                by: by.into(),
                at: at.into(),
                note: None,
                basis: Basis {
                    opportunities: opps.iter().map(|o| o.to_string()).collect(),
                    partners: Default::default(),
                },
            }),
            ..Standing::default()
        };
        let standings: std::collections::HashMap<String, Standing> = [
            (
                s("k1"),
                verdict(
                    Outcome::PartnerKeeps,
                    "ana@example.com",
                    "2026-11-26T01:00:00Z",
                    &["O-1", "O-2"],
                ),
            ),
            // Later, on O-2 too: wins there.
            (
                s("k2"),
                verdict(
                    Outcome::Split,
                    "slack:U1 (bo)",
                    "2026-11-27T09:00:00Z",
                    &["O-2"],
                ),
            ),
            // No basis stored: the finding's opportunities now.
            (
                s("k3"),
                verdict(Outcome::NotAConflict, "cy", "2026-11-26T00:00:00Z", &[]),
            ),
            // Only snoozed: nothing to write.
            (
                s("k4"),
                Standing {
                    snoozed_until: chrono::NaiveDate::from_ymd_opt(2026, 12, 1),
                    ..Standing::default()
                },
            ),
        ]
        .into();
        let o3 = [s("O-3")];
        let current = [("k3", &o3[..])].into();
        let mut written = FastMap::default();
        written.insert((s("O-9"), s("D__c")), s("direct_keeps by x on 2026-10-01"));
        written.insert((s("O-8"), s("D__c")), String::new());
        written.insert((s("O-7"), s("Other__c")), s("x"));
        let targets = decision_targets(&standings, &current, "D__c", &written);
        let got: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.record_id.as_str(), t.fields[0].1.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("O-1", "partner_keeps by ana@example.com on 2026-11-26"),
                ("O-2", "split by slack:U1 (bo) on 2026-11-27"),
                ("O-3", "not_a_conflict by cy on 2026-11-26"),
                // Withdrawn: cleared once (O-8 is cleared already).
                ("O-9", ""),
            ]
        );
        // Unchanged values are not sent again.
        let mut confirmed = written.clone();
        for t in &targets {
            confirmed.insert((t.record_id.clone(), s("D__c")), t.fields[0].1.clone());
        }
        let again = decision_targets(&standings, &current, "D__c", &confirmed);
        assert!(diff(&again, &confirmed).is_empty());
        // A long name stays under the limit, without control characters.
        let long = verdict(
            Outcome::NotAConflict,
            &"x\n".repeat(400),
            "2026-11-26",
            &["O"],
        );
        let v = decision_value(long.verdict.as_ref().unwrap());
        assert!(
            v.chars().count() <= DECISION_MAX && !v.contains('\n'),
            "{v}"
        );
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    /// A CRM keeps what was written to it: a sink that does not say
    /// otherwise (the Salesforce and HubSpot sinks) has lost nothing, or
    /// every cycle would write every partner again.
    #[test]
    fn a_sink_has_lost_nothing_unless_it_says_so() {
        struct Crm;
        impl ScorecardSink for Crm {
            fn name(&self) -> &'static str {
                "crm"
            }
            fn target(
                &self,
                _: &Scorecard,
                _: &Partner,
                _: &Period,
                _: &[(&'static str, String)],
            ) -> Option<(String, Vec<(String, String)>)> {
                None
            }
            async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
                vec![None; updates.len()]
            }
        }
        assert!(!Crm.lost_earlier_writes());
    }

    #[test]
    fn only_changed_values_are_sent() {
        let t = |id: &str, fields: Vec<(String, String)>| Target {
            partner_id: s(id),
            record_id: s(id),
            fields,
        };
        let targets = vec![
            t(
                "P-1",
                vec![(s("reps"), s("7")), (s("period"), s("2026-Q3"))],
            ),
            t("P-2", vec![(s("reps"), s("3"))]),
        ];
        let mut written = FastMap::default();
        written.insert((s("P-1"), s("reps")), s("7"));
        written.insert((s("P-1"), s("period")), s("2026-Q2"));
        written.insert((s("P-2"), s("reps")), s("3"));
        let d = diff(&targets, &written);
        assert_eq!(
            d,
            vec![RecordUpdate {
                record_id: s("P-1"),
                partner_id: s("P-1"),
                fields: vec![(s("period"), s("2026-Q3"))]
            }]
        );
    }

    #[test]
    fn the_values_come_in_the_order_of_the_field_list() {
        let card = crate::engine::Scorecard {
            partner_id: s("P-1"),
            reps: 7,
            active_sellers: 3,
            active_seller_rate: Some(3.0 / 7.0),
            sourced_pipeline: 252000.0,
            sourced_revenue: 0.5,
            open_registrations: 4,
            expiring_registrations: 0,
            open_conflicts: 5,
            partner_name: s("N"),
            tier: None,
        };
        let period = crate::engine::Period {
            start: chrono::NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
            end: chrono::NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
            label: s("2026-Q3"),
        };
        let values = field_values(&card, &period);
        let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, SCORECARD_FIELDS);
        let shown: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            shown,
            [
                "2026-Q3",
                "7",
                "3",
                "0.428571",
                "252000.00",
                "0.50",
                "4",
                "0",
                "5"
            ]
        );
    }

    #[tokio::test]
    async fn the_files_sink_upserts_rows_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FilesSink::new(dir.path().to_path_buf());
        assert!(sink.lost_earlier_writes());
        let u = |id: &str, reps: &str| RecordUpdate {
            record_id: s(id),
            partner_id: s(id),
            fields: vec![(s("reps"), s(reps)), (s("period"), s("2026-Q3"))],
        };
        assert_eq!(
            sink.apply(&[u("P-2", "3"), u("P-1", "7")]).await,
            vec![None, None]
        );
        assert_eq!(
            sink.apply(&[RecordUpdate {
                record_id: s("P-1"),
                partner_id: s("P-1"),
                fields: vec![(s("reps"), s("8"))]
            }])
            .await,
            vec![None]
        );
        let text = std::fs::read_to_string(&sink.path).unwrap();
        assert_eq!(
            text,
            "partner_id,partner_name,tier,period,reps,active_sellers,active_seller_rate,sourced_pipeline,sourced_revenue,open_registrations,expiring_registrations,open_conflicts\n\
             P-1,,,2026-Q3,8,,,,,,,\n\
             P-2,,,2026-Q3,3,,,,,,,\n"
        );
        assert!(!sink.lost_earlier_writes());
    }

    fn metrics(
        roi: Option<f64>,
        mdf: Option<(f64, Option<f64>)>,
    ) -> crate::engine::review::Metrics {
        crate::engine::review::Metrics {
            sourced_pipeline_created: 1234.5,
            sourced_revenue: 0.0,
            reps: 2,
            active_sellers: 0,
            active_seller_rate: Some(0.0),
            cost: None,
            roi,
            roi_trailing_4q: None,
            mdf_spend: mdf.map(|m| m.0),
            mdf_effectiveness: mdf.and_then(|m| m.1),
            mdf_pipeline: None,
            change: Default::default(),
        }
    }

    #[test]
    fn review_values_are_fractions_and_amounts_and_null_is_empty_never_0() {
        let p = PartnerReview {
            partner_id: s("P-1"),
            partner_name: s("N"),
            tier: None,
            dormant: true,
            quarters: [
                (s("2026-Q3"), metrics(Some(-0.25), Some((800.0, Some(0.5))))),
                (s("2026-Q2"), metrics(None, None)),
            ]
            .into(),
        };
        let names: Vec<&str> = review_values(&p, "2026-Q3")
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(names, REVIEW_FIELDS);
        let shown = |label: &str| -> Vec<String> {
            review_values(&p, label)
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        };
        assert_eq!(
            shown("2026-Q3"),
            ["-0.250000", "1234.50", "800.00", "0.500000", "true"]
        );
        // No cost and no MDF data: the fields are cleared, not set to 0.
        assert_eq!(shown("2026-Q2"), ["", "1234.50", "", "", "true"]);
        assert!(review_values(&p, "2025-Q1").is_empty());
    }

    #[tokio::test]
    async fn review_columns_follow_the_scorecard_ones_only_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FilesSink::new(dir.path().to_path_buf());
        let card = crate::engine::Scorecard {
            partner_id: s("P-1"),
            reps: 1,
            active_sellers: 1,
            active_seller_rate: Some(1.0),
            sourced_pipeline: 0.0,
            sourced_revenue: 0.0,
            open_registrations: 0,
            expiring_registrations: 0,
            open_conflicts: 0,
            partner_name: s("N"),
            tier: None,
        };
        let partner = Partner {
            id: s("P-1"),
            name: s("N"),
            tier: None,
            crm_account_id: None,
            domain: None,
        };
        let period = crate::engine::Period {
            start: chrono::NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
            end: chrono::NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
            label: s("2026-Q3"),
        };
        let (record, fields) = sink
            .target(
                &card,
                &partner,
                &period,
                &[("dormant", s("false")), ("roi", s(""))],
            )
            .unwrap();
        sink.apply(&[RecordUpdate {
            record_id: record,
            partner_id: s("P-1"),
            fields,
        }])
        .await;
        let text = std::fs::read_to_string(&sink.path).unwrap();
        assert_eq!(
            text,
            "partner_id,partner_name,tier,period,reps,active_sellers,active_seller_rate,sourced_pipeline,sourced_revenue,open_registrations,expiring_registrations,open_conflicts,roi,dormant\n\
             P-1,N,,2026-Q3,1,1,1.000000,0.00,0.00,0,0,0,,false\n"
        );
    }

    #[tokio::test]
    async fn formula_cells_are_neutralised_and_still_upserted_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FilesSink::new(dir.path().to_path_buf());
        let u = |id: &str, reps: &str| RecordUpdate {
            record_id: s(id),
            partner_id: s(id),
            fields: vec![(s("reps"), s(reps)), (s("period"), s("@SUM(1+1)"))],
        };
        sink.apply(&[u("=1+1", "1"), u("-1+1", "-2")]).await;
        sink.apply(&[u("=1+1", "3")]).await;
        let text = std::fs::read_to_string(&sink.path).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            rows,
            [
                "'-1+1,,,'@SUM(1+1),-2,,,,,,,",
                "'=1+1,,,'@SUM(1+1),3,,,,,,,"
            ],
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_write_that_fails_fails_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let sink = FilesSink::new(blocker.join("sub"));
        let u = RecordUpdate {
            record_id: s("P-1"),
            partner_id: s("P-1"),
            fields: vec![(s("reps"), s("1"))],
        };
        let out = sink.apply(&[u.clone(), u]).await;
        assert!(out.iter().all(Option::is_some), "{out:?}");
    }
}
