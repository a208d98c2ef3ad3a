//! `channel-sync findings`: the findings the state remembers, for any
//! source (files, Salesforce, HubSpot): what the last cycle saw and what
//! people decided, read-only. Filters by kind, partner, severity, age,
//! decision and status; sorted by value at risk (base currency), then age.
//! `findings show KEY` prints one finding's evidence, timeline and record
//! links. The digest's "and N more" points here.

use std::io::Write;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use clap::ValueEnum;
use serde::Serialize;

use crate::decisions::{Standing, Status};

use crate::notify::wording::money;
use crate::store::{State, StoredFinding};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
    Csv,
}

/// One open finding, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Listed {
    pub severity: String,
    pub kind: String,
    pub key: String,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub partner_ids: Vec<String>,
    pub partners: Vec<String>,
    pub first_seen: String,
    /// Whole days since first seen.
    pub age_days: i64,
    /// Open and won opportunities' amounts (else the registrations'), in the
    /// base currency; `null` when none is known.
    pub value_at_risk: Option<f64>,
    pub currency: String,
    /// open, decided, snoozed, resolved or aged_out.
    pub status: Status,
    /// The standing verdict (partner_keeps, direct_keeps, split,
    /// not_a_conflict), if any.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub snoozed_until: Option<NaiveDate>,
    pub assignee: Option<String>,
    pub summary: String,
}

/// The parts of a stored finding a listing reads (the rest of the payload
/// is skipped, not built: listing tens of thousands stays fast).
#[derive(serde::Deserialize)]
struct Light {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    account_name: Option<String>,
    #[serde(default)]
    partner_ids: Vec<String>,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    evidence: Vec<LightEvidence>,
}

#[derive(serde::Deserialize)]
struct LightEvidence {
    #[serde(rename = "type")]
    record: crate::engine::Record,
    #[serde(default)]
    partner_id: Option<String>,
    #[serde(default)]
    partner_name: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    amount: Option<f64>,
    #[serde(default)]
    currency: Option<String>,
}

impl Light {
    /// As [`crate::engine::Finding::value_at_risk`], by the same rule.
    fn value_at_risk(&self) -> Option<(f64, Option<String>)> {
        crate::engine::value_at_risk(self.evidence.iter().map(|e| crate::engine::Stake {
            record: e.record,
            status: &e.status,
            amount: e.amount,
            currency: e.currency.as_deref(),
        }))
    }
}

impl Listed {
    fn of(
        s: &StoredFinding,
        base_currency: &str,
        standing: Option<&Standing>,
        status: Status,
        age_days: i64,
    ) -> Listed {
        // An unreadable payload (a much older version) still lists its key.
        let f: Option<Light> = serde_json::from_str(&s.payload).ok();
        let partners = f.as_ref().map_or_else(Vec::new, |f| {
            f.partner_ids
                .iter()
                .map(|p| {
                    f.evidence
                        .iter()
                        .find(|e| e.partner_id.as_deref() == Some(p.as_str()))
                        .and_then(|e| e.partner_name.clone())
                        .unwrap_or_else(|| p.clone())
                })
                .collect()
        });
        let risk = f.as_ref().and_then(Light::value_at_risk);
        Listed {
            severity: s.severity.clone(),
            kind: s.kind.clone(),
            key: s.key.clone(),
            account_id: f.as_ref().and_then(|f| f.account_id.clone()),
            account_name: f.as_ref().and_then(|f| f.account_name.clone()),
            partner_ids: f.as_ref().map_or_else(Vec::new, |f| f.partner_ids.clone()),
            partners,
            first_seen: s.first_seen.clone(),
            age_days,
            value_at_risk: risk.as_ref().map(|(v, _)| *v),
            currency: risk
                .and_then(|(_, c)| c)
                .unwrap_or_else(|| base_currency.to_string()),
            status,
            decision: standing
                .and_then(|s| s.verdict.as_ref())
                .map(|v| v.outcome.as_str().to_string()),
            decided_by: standing
                .and_then(|s| s.verdict.as_ref())
                .map(|v| v.by.clone()),
            snoozed_until: standing.and_then(|s| s.snoozed_until),
            assignee: standing.and_then(|s| s.assignee.clone()),
            summary: f.map(|f| f.summary).unwrap_or_default(),
        }
    }

    fn account(&self) -> String {
        match (&self.account_name, &self.account_id) {
            (Some(n), Some(id)) => format!("{n} ({id})"),
            (None, Some(id)) => id.clone(),
            _ => "not in the CRM".into(),
        }
    }
}

/// What to list. Empty lists and `None` take everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub kinds: Vec<String>,
    /// A partner id, or a part of a partner's name (any case).
    pub partner: Option<String>,
    pub severities: Vec<String>,
    /// At least this many days since first seen.
    pub min_age_days: Option<i64>,
    /// A verdict (partner_keeps, ...), or `none` for undecided ones.
    pub decision: Option<String>,
    /// Default: open and snoozed (every finding still waiting for people).
    pub statuses: Vec<Status>,
    /// Assigned to this person (exact, any case).
    pub assignee: Option<String>,
}

impl Filter {
    fn statuses(&self) -> Vec<Status> {
        if self.statuses.is_empty() {
            vec![Status::Open, Status::Snoozed]
        } else {
            self.statuses.clone()
        }
    }

    /// The checks that need no payload (cheap; run before parsing it).
    fn admits_stored(&self, s: &StoredFinding, status: Status, age: i64) -> bool {
        self.statuses().contains(&status)
            && (self.kinds.is_empty() || self.kinds.contains(&s.kind))
            && (self.severities.is_empty() || self.severities.contains(&s.severity))
            && self.min_age_days.is_none_or(|m| age >= m)
    }

    fn admits(&self, l: &Listed) -> bool {
        let partner_ok = self.partner.as_deref().is_none_or(|p| {
            let p = p.to_lowercase();
            l.partner_ids.iter().any(|id| id.to_lowercase() == p)
                || l.partners.iter().any(|n| n.to_lowercase().contains(&p))
        });
        let decision_ok = match self.decision.as_deref() {
            None => true,
            Some("none") => l.decision.is_none(),
            Some(d) => l.decision.as_deref() == Some(d),
        };
        let assignee_ok = self.assignee.as_deref().is_none_or(|a| {
            l.assignee
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(a))
        });
        partner_ok && decision_ok && assignee_ok
    }
}

fn age_days(first_seen: &str, now: DateTime<Utc>) -> i64 {
    crate::values::parse_timestamp(first_seen)
        .map(|t| (now - t).num_days().max(0))
        .unwrap_or(0)
}

/// The findings in `state` that `filter` admits, as of `now`: the largest
/// value at risk first (unknown last), then the oldest, then by key.
pub(crate) fn list(
    state: &State,
    base_currency: &str,
    filter: &Filter,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Listed>> {
    let standings = crate::decisions::standings(state).context("reading the decisions")?;
    let today = crate::values::date_of(&now);
    let mut list: Vec<Listed> = state
        .findings()
        .context("reading the findings")?
        .iter()
        .filter_map(|s| {
            let standing = standings.get(&s.key);
            let status = crate::decisions::status(s, standing, today);
            let age = age_days(&s.first_seen, now);
            filter
                .admits_stored(s, status, age)
                .then(|| Listed::of(s, base_currency, standing, status, age))
        })
        .filter(|l| filter.admits(l))
        .collect();
    list.sort_by(|a, b| {
        let risk = |l: &Listed| l.value_at_risk.unwrap_or(f64::NEG_INFINITY);
        risk(b)
            .total_cmp(&risk(a))
            .then(b.age_days.cmp(&a.age_days))
            .then_with(|| a.first_seen.cmp(&b.first_seen))
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(list)
}

/// Lists the findings of the state at `state_path` on `out`. No state file
/// yet means no findings (and says so on stderr for people).
pub(crate) fn run(
    state_settings: &crate::config::StateSettings,
    base_currency: &str,
    format: ListFormat,
    filter: &Filter,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Buffered: stdout is line-buffered, and a listing has ~1M lines of JSON.
    let out = &mut std::io::BufWriter::with_capacity(1 << 16, out);
    let state_path = &state_settings.path;
    let state = State::connect_read_only(state_settings)
        .with_context(|| format!("opening the state {}", state_path.display()))?;
    let list = match &state {
        Some(state) => list(state, base_currency, filter, now)?,
        None => {
            eprintln!(
                "channel-sync: no state at {} yet: `channel-sync once` records the findings there.",
                state_path.display()
            );
            Vec::new()
        }
    };
    match format {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)?;
        }
        ListFormat::Csv => write_csv(&list, out)?,
        ListFormat::Text => write_text(&list, base_currency, out)?,
    }
    out.flush()?;
    Ok(())
}

/// One event in a finding's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Event {
    pub at: String,
    /// first_seen, alert, changed, reminder, resolved, decision, reopened,
    /// closed.
    pub event: String,
    pub detail: String,
}

/// `findings show KEY`: the finding, its standing and its timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Shown {
    #[serde(flatten)]
    pub listed: Listed,
    /// The finding as last seen (evidence included).
    pub finding: Option<serde_json::Value>,
    pub timeline: Vec<Event>,
    /// Record links (from the alerts sent about it), label -> URL.
    pub links: Vec<(String, String)>,
}

/// Slack `<url|label>` links in a message body (mrkdwn), in order, once.
fn links_in(body: &str, into: &mut Vec<(String, String)>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return;
    };
    let mut texts = Vec::new();
    fn walk<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v str>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v["blocks"], &mut texts);
    for t in texts {
        let mut rest = t;
        while let Some(start) = rest.find("<http") {
            let after = &rest[start + 1..];
            let Some(end) = after.find('>') else { break };
            let inner = &after[..end];
            let (url, label) = inner.split_once('|').unwrap_or((inner, inner));
            if !into.iter().any(|(_, u)| u == url) {
                into.push((label.to_string(), url.to_string()));
            }
            rest = &after[end..];
        }
    }
}

/// What an alert said had changed (its fallback text's tail).
fn what_changed(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let text = v["text"].as_str()?;
    text.rsplit_once("What changed: ")
        .map(|(_, w)| w.to_string())
}

/// One finding with its timeline; `None` when the state does not know it.
pub(crate) fn show(
    state: &State,
    key: &str,
    base_currency: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Shown>> {
    let Some(stored) = state
        .findings()
        .context("reading the findings")?
        .into_iter()
        .find(|s| s.key == key)
    else {
        return Ok(None);
    };
    let trail = state.decisions_of(key).context("reading the decisions")?;
    let standing = crate::decisions::Standing::fold(&trail);
    let status = crate::decisions::status(&stored, Some(&standing), crate::values::date_of(&now));
    let listed = Listed::of(
        &stored,
        base_currency,
        Some(&standing),
        status,
        age_days(&stored.first_seen, now),
    );
    let mut timeline = vec![Event {
        at: stored.first_seen.clone(),
        event: "first_seen".into(),
        detail: format!("{} ({})", stored.kind, stored.severity),
    }];
    let mut links = Vec::new();
    for m in state.messages_about(key).context("reading the outbox")? {
        links_in(&m.body, &mut links);
        let delivery = match (&m.status[..], &m.sent_at) {
            ("sent", Some(at)) => format!("sent {at}"),
            (s, _) => s.to_string(),
        };
        let event = match &m.reason[..] {
            "new" => "alert",
            other => other,
        };
        let mut detail = format!("to '{}', {delivery}", m.route);
        if let Some(w) = what_changed(&m.body) {
            detail.push_str(&format!("; what changed: {w}"));
        }
        timeline.push(Event {
            at: m.created_at,
            event: event.into(),
            detail,
        });
    }
    for d in &trail {
        let what = match (&d.outcome[..], &d.until, &d.assignee) {
            ("snooze", Some(u), _) => format!("snooze until {u}"),
            ("assign", _, Some(a)) => format!("assign to {a}"),
            (o, _, _) => o.to_string(),
        };
        let note = d
            .note
            .as_deref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default();
        timeline.push(Event {
            at: d.at.clone(),
            event: if d.outcome == crate::decisions::REOPENED {
                "reopened".into()
            } else {
                "decision".into()
            },
            detail: format!("{what} by {}{note}", d.by),
        });
    }
    if let Some(at) = &stored.resolved_at {
        timeline.push(Event {
            at: at.clone(),
            event: stored
                .closed_as
                .clone()
                .unwrap_or_else(|| "resolved".into()),
            detail: String::new(),
        });
    }
    // Stable: events at one instant keep their order of kind above.
    timeline.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(Some(Shown {
        listed,
        finding: serde_json::from_str(&stored.payload).ok(),
        timeline,
        links,
    }))
}

/// `findings show KEY` on `out`; an unknown key is an error.
pub(crate) fn run_show(
    state_settings: &crate::config::StateSettings,
    key: &str,
    base_currency: &str,
    format: ListFormat,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let state = State::connect_read_only(state_settings)
        .with_context(|| format!("opening the state {}", state_settings.path.display()))?;
    let shown = match &state {
        Some(state) => show(state, key, base_currency, now)?,
        None => None,
    }
    .ok_or_else(|| anyhow::anyhow!("no finding with key '{key}' in the state"))?;
    match format {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &shown)?;
            writeln!(out)?;
        }
        ListFormat::Csv => {
            let mut w = crate::csv_safe::Writer::from_writer(&mut *out);
            w.write_record(["at", "event", "detail"])?;
            for e in &shown.timeline {
                w.write_record([e.at.as_str(), e.event.as_str(), e.detail.as_str()])?;
            }
            w.flush()?;
        }
        ListFormat::Text => write_shown(&shown, base_currency, out)?,
    }
    Ok(())
}

fn write_shown(s: &Shown, base_currency: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let l = &s.listed;
    writeln!(out, "{} ({}, {})", l.key, l.kind, l.severity)?;
    writeln!(out, "{}", l.summary)?;
    writeln!(out)?;
    writeln!(out, "Account:  {}", l.account())?;
    writeln!(out, "Partners: {}", l.partners.join(", "))?;
    let risk = match l.value_at_risk {
        Some(v) if l.currency == base_currency => format!("{base_currency} {}", money(v)),
        Some(v) => format!("{} {}", l.currency, money(v)),
        None => "-".into(),
    };
    writeln!(out, "At stake: {risk}")?;
    let mut status = l.status.as_str().to_string();
    if let (Some(d), Some(by)) = (&l.decision, &l.decided_by) {
        status.push_str(&format!(" ({d}, by {by})"));
    } else if let (Status::Snoozed, Some(u)) = (l.status, l.snoozed_until) {
        status.push_str(&format!(" (until {u})"));
    }
    writeln!(out, "Status:   {status}, {} day(s) old", l.age_days)?;
    if let Some(a) = &l.assignee {
        writeln!(out, "Assigned: {a}")?;
    }
    if let Some(evidence) = s.finding.as_ref().and_then(|f| f["evidence"].as_array()) {
        writeln!(out, "\nEvidence:")?;
        for e in evidence {
            let text = |k: &str| e[k].as_str().unwrap_or("").to_string();
            let mut line = format!("  {} {}", text("type"), text("id"));
            if !text("name").is_empty() {
                line.push_str(&format!(" \"{}\"", text("name")));
            }
            if !text("partner_name").is_empty() || !text("partner_id").is_empty() {
                let p = if text("partner_name").is_empty() {
                    text("partner_id")
                } else {
                    text("partner_name")
                };
                line.push_str(&format!(", partner {p}"));
            }
            line.push_str(&format!(", {}", text("status")));
            if let Some(a) = e["amount"].as_f64() {
                line.push_str(&format!(", {}", money(a)));
            }
            line.push_str(&format!(", {}", text("at").get(..10).unwrap_or("")));
            writeln!(out, "{line}")?;
        }
    }
    writeln!(out, "\nTimeline:")?;
    for e in &s.timeline {
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!("  {}", e.detail)
        };
        writeln!(out, "  {}  {:<10}{detail}", e.at, e.event)?;
    }
    if !s.links.is_empty() {
        writeln!(out, "\nLinks:")?;
        for (label, url) in &s.links {
            writeln!(out, "  {label}: {url}")?;
        }
    }
    Ok(())
}

fn write_csv(list: &[Listed], out: &mut impl Write) -> anyhow::Result<()> {
    // Every cell goes through the shared CSV-injection guard (OWASP).
    let mut w = crate::csv_safe::Writer::from_writer(out);
    w.write_record([
        "severity",
        "kind",
        "key",
        "account_id",
        "account_name",
        "partner_ids",
        "partners",
        "first_seen",
        "age_days",
        "value_at_risk",
        "currency",
        "status",
        "decision",
        "decided_by",
        "snoozed_until",
        "assignee",
        "summary",
    ])?;
    for l in list {
        w.write_record([
            l.severity.clone(),
            l.kind.clone(),
            l.key.clone(),
            l.account_id.clone().unwrap_or_default(),
            l.account_name.clone().unwrap_or_default(),
            l.partner_ids.join(";"),
            l.partners.join(";"),
            l.first_seen.clone(),
            l.age_days.to_string(),
            l.value_at_risk
                .map_or_else(String::new, |v| format!("{v:.2}")),
            l.currency.clone(),
            l.status.as_str().to_string(),
            l.decision.clone().unwrap_or_default(),
            l.decided_by.clone().unwrap_or_default(),
            l.snoozed_until.map(|d| d.to_string()).unwrap_or_default(),
            l.assignee.clone().unwrap_or_default(),
            l.summary.clone(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn write_text(list: &[Listed], base_currency: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let count = |s: &str| list.iter().filter(|l| l.severity == s).count();
    writeln!(
        out,
        "Findings: {} ({} critical, {} warning, {} info)",
        list.len(),
        count("critical"),
        count("warning"),
        count("info")
    )?;
    if list.is_empty() {
        return Ok(());
    }
    let at_stake = format!("At stake ({base_currency})");
    let header = [
        "Severity",
        "Kind",
        "Key",
        "Account",
        "Partners",
        "Status",
        "Age (d)",
        at_stake.as_str(),
    ];
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|l| {
            [
                l.severity.clone(),
                l.kind.clone(),
                l.key.clone(),
                shorten(&l.account(), 32),
                shorten(&l.partners.join(", "), 40),
                match (&l.decision, l.snoozed_until) {
                    (Some(d), _) => format!("decided: {d}"),
                    (None, Some(u)) if l.status == Status::Snoozed => format!("snoozed to {u}"),
                    _ => l.status.as_str().to_string(),
                },
                l.age_days.to_string(),
                match l.value_at_risk {
                    Some(v) if l.currency == base_currency => money(v),
                    Some(v) => format!("{} {}", l.currency, money(v)),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(&format!("{c:>w$}"));
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out)?;
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_export_never_writes_a_live_formula() {
        let listed = Listed {
            severity: "warning".into(),
            kind: "partner_vs_partner".into(),
            key: "partner_vs_partner:A-1".into(),
            account_id: Some("A-1".into()),
            account_name: Some("=HYPERLINK(\"http://evil\")".into()),
            partner_ids: vec!["P-1".into()],
            partners: vec!["@SUM(1+1)".into()],
            first_seen: "2026-11-26T00:00:00Z".into(),
            age_days: 0,
            value_at_risk: Some(-12.5),
            currency: "USD".into(),
            status: Status::Open,
            decision: None,
            decided_by: None,
            snoozed_until: None,
            assignee: None,
            summary: "+1+1 claims".into(),
        };
        let mut out = Vec::new();
        write_csv(&[listed], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
            "{row}"
        );
        assert!(row.contains(",'@SUM(1+1),"), "{row}");
        assert!(row.contains(",'+1+1 claims"), "{row}");
        assert!(row.contains(",-12.50,"), "a number stays a number: {row}");
    }
}
