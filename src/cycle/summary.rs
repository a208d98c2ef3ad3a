//! What one cycle did: the summary `once` prints, the run record stores and
//! the metrics read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine;
use crate::sync::ObjectReport;

/// What one cycle did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub as_of: String,
    pub dry_run: bool,
    pub pulled: BTreeMap<&'static str, usize>,
    /// The source each pulled table came from (the metrics' label).
    #[serde(skip)]
    pub pulled_from: BTreeMap<&'static str, &'static str>,
    /// What each API object's sync read (empty for files).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub synced: Vec<ObjectReport>,
    pub rejected: usize,
    /// Open findings, decided ones excluded (those are counted apart).
    pub findings_open: usize,
    /// Findings still in the data but settled by a decision.
    pub findings_decided: usize,
    pub open_by_kind: BTreeMap<String, usize>,
    pub findings_new: usize,
    pub findings_changed: usize,
    pub reminders: usize,
    pub findings_resolved: usize,
    /// Closed quietly: only time moved them out of their window.
    pub findings_aged_out: usize,
    pub alerts_sent: usize,
    pub alerts_failed: usize,
    pub alerts_parked: usize,
    pub alerts_pending: usize,
    /// Dry run: the messages a real run would send now.
    pub alerts_would_send: usize,
    /// No webhook is configured: findings stored but not yet announced (they
    /// will be once a webhook is set).
    pub alerts_off: bool,
    pub unannounced: usize,
    pub writes_done: usize,
    pub writes_failed: usize,
    /// Dry run: the records a real run would write.
    pub writes_would: usize,
    /// Currencies without an exchange rate (SPEC §2.1), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_rates: Vec<String>,
    pub errors: Vec<String>,
}

impl crate::metrics::CycleReport for Summary {
    fn counts(&self) -> crate::metrics::CycleCounts {
        crate::metrics::CycleCounts {
            ok: self.exit_code() == 0,
            pulled: self
                .pulled
                .iter()
                .map(|(object, n)| {
                    let source = self.pulled_from.get(object).copied().unwrap_or("unknown");
                    (source.to_string(), object.to_string(), *n)
                })
                .collect(),
            open_by_kind: engine::FindingKind::ALL
                .iter()
                .map(|k| {
                    let n = self.open_by_kind.get(k.as_str()).copied().unwrap_or(0);
                    (k.as_str().to_string(), n)
                })
                .collect(),
            alerts_sent: self.alerts_sent,
            alerts_failed: self.alerts_failed,
            alerts_parked: self.alerts_parked,
            writes_done: self.writes_done,
            writes_failed: self.writes_failed,
        }
    }
}

impl Summary {
    /// SPEC §1: 1 when the cycle finished but some calls or records failed.
    pub fn exit_code(&self) -> u8 {
        let failed = self.rejected > 0
            || self.alerts_failed > 0
            || self.alerts_parked > 0
            || self.writes_failed > 0
            || !self.errors.is_empty();
        u8::from(failed)
    }

    /// The one-screen summary printed at the end of `once`.
    pub fn to_text(&self) -> String {
        let pulled = self
            .pulled
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!(
            "channel-sync once{} as of {}\n\
             pulled      {pulled} ({} rejected)\n\
             findings    {} open: {} new, {} changed, {} resolved, {} aged out, {} reminders{}\n",
            if self.dry_run {
                " (dry run: nothing was posted, written or stored)"
            } else {
                ""
            },
            self.as_of,
            self.rejected,
            self.findings_open,
            self.findings_new,
            self.findings_changed,
            self.findings_resolved,
            self.findings_aged_out,
            self.reminders,
            match self.findings_decided {
                0 => String::new(),
                n => format!("; {n} decided (not counted as open)"),
            },
        );
        let alerts = match (self.dry_run, self.alerts_off) {
            (true, false) => format!("{} would be sent", self.alerts_would_send),
            (true, true) => format!(
                "{} would be sent once a Slack webhook is set (none is: {WEBHOOK_ENV})",
                self.alerts_would_send
            ),
            (false, true) => format!(
                "off: no Slack webhook ({WEBHOOK_ENV}); {} finding(s) will be announced once one is set",
                self.unannounced
            ),
            (false, false) => format!(
                "{} sent, {} failed, {} parked, {} waiting for the next cycle",
                self.alerts_sent, self.alerts_failed, self.alerts_parked, self.alerts_pending
            ),
        };
        s.push_str(&format!("alerts      {alerts}\n"));
        if self.dry_run {
            s.push_str(&format!(
                "write-back  {} records would be written\n",
                self.writes_would
            ));
        } else {
            s.push_str(&format!(
                "write-back  {} records written, {} failed\n",
                self.writes_done, self.writes_failed
            ));
        }
        for m in &self.missing_rates {
            s.push_str(&format!("amounts     {m}\n"));
        }
        for r in &self.synced {
            s.push_str(&format!(
                "synced      {} {:?}{}: {} read, {} removed, {} calls\n",
                r.object,
                r.mode,
                r.reason.map(|w| format!(" ({w})")).unwrap_or_default(),
                r.fetched,
                r.removed,
                r.calls
            ));
        }
        for e in &self.errors {
            s.push_str(&format!("error       {e}\n"));
        }
        s
    }
}

/// The variable that sets the default webhook (secrets come from the
/// environment only).
pub(super) const WEBHOOK_ENV: &str = "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CycleReport;

    #[test]
    fn a_cycle_with_any_failure_exits_1_and_reports_partial() {
        let clean = Summary::default();
        assert_eq!(clean.exit_code(), 0);
        assert!(clean.counts().ok);
        for failed in [
            Summary {
                rejected: 1,
                ..Summary::default()
            },
            Summary {
                alerts_parked: 1,
                ..Summary::default()
            },
            Summary {
                writes_failed: 1,
                ..Summary::default()
            },
            Summary {
                errors: vec!["x".into()],
                ..Summary::default()
            },
        ] {
            assert_eq!(failed.exit_code(), 1, "{failed:?}");
            assert!(!failed.counts().ok);
        }
    }

    #[test]
    fn the_metrics_see_every_kind_and_the_real_source_of_each_table() {
        let mut s = Summary::default();
        s.pulled.insert("accounts", 3);
        s.pulled_from.insert("accounts", "a-crm");
        s.open_by_kind.insert("direct_vs_partner".into(), 2);
        let c = s.counts();
        assert_eq!(c.pulled, [("a-crm".into(), "accounts".into(), 3)]);
        assert_eq!(c.open_by_kind.len(), engine::FindingKind::ALL.len());
        assert!(c.open_by_kind.contains(&("direct_vs_partner".into(), 2)));
    }
}
