//! `channel-sync findings`: the open findings the state remembers, for any
//! source (files, Salesforce, HubSpot): what the last cycle saw, read-only.
//! The digest's "and N more" points here.

use std::io::Write;

use anyhow::Context as _;
use clap::ValueEnum;
use serde::Serialize;

use crate::engine::Finding;
use crate::notify::slack::render::{money, value_at_risk};
use crate::store::{State, StoredFinding};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
    Csv,
}

/// One open finding, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    pub severity: String,
    pub kind: String,
    pub key: String,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub partner_ids: Vec<String>,
    pub partners: Vec<String>,
    pub first_seen: String,
    /// Open and won opportunities' amounts (else the registrations'), in the
    /// base currency; `null` when none is known.
    pub value_at_risk: Option<f64>,
    pub currency: String,
    pub summary: String,
}

impl Listed {
    fn of(s: &StoredFinding, base_currency: &str) -> Listed {
        // An unreadable payload (a much older version) still lists its key.
        let f: Option<Finding> = serde_json::from_str(&s.payload).ok();
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
        let risk = f.as_ref().and_then(value_at_risk);
        Listed {
            severity: s.severity.clone(),
            kind: s.kind.clone(),
            key: s.key.clone(),
            account_id: f.as_ref().and_then(|f| f.account_id.clone()),
            account_name: f.as_ref().and_then(|f| f.account_name.clone()),
            partner_ids: f.as_ref().map_or_else(Vec::new, |f| f.partner_ids.clone()),
            partners,
            first_seen: s.first_seen.clone(),
            value_at_risk: risk.as_ref().map(|(v, _)| *v),
            currency: risk
                .and_then(|(_, c)| c)
                .unwrap_or_else(|| base_currency.to_string()),
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

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "warning" => 1,
        "info" => 2,
        _ => 3,
    }
}

/// The open findings in `state`, most severe first, then by kind and key.
pub fn open_findings(state: &State, base_currency: &str) -> anyhow::Result<Vec<Listed>> {
    let mut list: Vec<Listed> = state
        .findings()
        .context("reading the findings")?
        .iter()
        .filter(|s| s.resolved_at.is_none())
        .map(|s| Listed::of(s, base_currency))
        .collect();
    list.sort_by(|a, b| {
        (severity_rank(&a.severity), &a.kind, &a.key).cmp(&(
            severity_rank(&b.severity),
            &b.kind,
            &b.key,
        ))
    });
    Ok(list)
}

/// Lists the open findings of the state at `state_path` on `out`. No state
/// file yet means no findings (and says so on stderr for people).
pub fn run(
    state_settings: &crate::config::StateSettings,
    base_currency: &str,
    format: ListFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let state_path = &state_settings.path;
    let state = State::connect_read_only(state_settings)
        .with_context(|| format!("opening the state {}", state_path.display()))?;
    let list = match &state {
        Some(state) => open_findings(state, base_currency)?,
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
        "value_at_risk",
        "currency",
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
            l.value_at_risk
                .map_or_else(String::new, |v| format!("{v:.2}")),
            l.currency.clone(),
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
        "Open findings: {} ({} critical, {} warning, {} info)",
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
        "First seen",
        at_stake.as_str(),
    ];
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|l| {
            [
                l.severity.clone(),
                l.kind.clone(),
                l.key.clone(),
                shorten(&l.account(), 32),
                shorten(&l.partners.join(", "), 40),
                l.first_seen.get(..10).unwrap_or(&l.first_seen).to_string(),
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
            value_at_risk: Some(-12.5),
            currency: "USD".into(),
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
