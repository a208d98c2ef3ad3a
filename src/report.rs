//! The report (SPEC §4): JSON for scripts, text for a channel manager's review.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::engine::{
    Evaluation, Evidence, Finding, FindingKind, Period, Record, Scorecard, Severity,
};
use crate::model::Rejected;
use crate::values::format_timestamp;

fn ts<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(t))
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    #[serde(serialize_with = "ts")]
    pub as_of: DateTime<Utc>,
    pub period: Period,
    pub findings: Vec<Finding>,
    pub scorecards: Vec<Scorecard>,
    pub rejected: Vec<Rejected>,
    /// Currencies without an exchange rate (their amounts are left out of
    /// sums; the rows still count in findings). Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_rates: Vec<crate::engine::MissingRate>,
    /// The base currency the amounts are in (`scorecard.currency`), for the
    /// text report's labels.
    #[serde(skip)]
    pub currency: String,
}

/// Findings rendered by one task of [`Report::write_json`].
const RENDER_CHUNK: usize = 256;
/// Findings rendered on all cores before they are written: bounds the
/// memory the rendered JSON takes (a few MB) whatever the report's size.
const RENDER_BATCH: usize = 8192;

impl Report {
    /// Writes the report as `serde_json::to_writer_pretty` would, byte for
    /// byte, with the findings rendered on every core: at 1M opportunities
    /// they are 57,000 findings and 100 MB of JSON, which one core takes a
    /// quarter of a second to write.
    pub(crate) fn write_json<W: std::io::Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        use rayon::prelude::*;
        // Everything but the findings, where they go marked by `[]`: the
        // report's only key at the first level of indentation so named.
        const EMPTY: &[u8] = b"\n  \"findings\": []";
        let findings = std::mem::take(&mut self.findings);
        let rest = serde_json::to_vec_pretty(&*self);
        self.findings = findings;
        let rest = rest.map_err(std::io::Error::from)?;
        let Some(at) = rest.windows(EMPTY.len()).position(|w| w == EMPTY) else {
            return serde_json::to_writer_pretty(out, &*self).map_err(Into::into);
        };
        if self.findings.is_empty() {
            return out.write_all(&rest);
        }
        let close = at + EMPTY.len() - 1;
        out.write_all(&rest[..close])?;
        // Each finding as serde_json writes an array's elements one level
        // in: after `\n` (the first) or `,\n`, every line indented by four
        // spaces. A value's own line breaks are always escaped in JSON, so
        // each `\n` of a rendered finding is the formatter's.
        let render = |first: usize, chunk: &[crate::engine::Finding]| {
            let mut buf = Vec::with_capacity(chunk.len() * 1536);
            let mut one = Vec::with_capacity(2048);
            for (i, finding) in chunk.iter().enumerate() {
                one.clear();
                serde_json::to_writer_pretty(&mut one, finding)?;
                buf.extend_from_slice(if first + i == 0 {
                    b"\n    "
                } else {
                    b",\n    "
                });
                for (n, line) in one.split(|&b| b == b'\n').enumerate() {
                    if n > 0 {
                        buf.extend_from_slice(b"\n    ");
                    }
                    buf.extend_from_slice(line);
                }
            }
            Ok::<_, serde_json::Error>(buf)
        };
        for (b, batch) in self.findings.chunks(RENDER_BATCH).enumerate() {
            let parts = batch
                .par_chunks(RENDER_CHUNK)
                .enumerate()
                .map(|(c, chunk)| render(b * RENDER_BATCH + c * RENDER_CHUNK, chunk))
                .collect::<Result<Vec<_>, _>>()?;
            for part in parts {
                out.write_all(&part)?;
            }
        }
        out.write_all(b"\n  ")?;
        out.write_all(&rest[close..])
    }

    pub(crate) fn new(
        as_of: DateTime<Utc>,
        evaluation: Evaluation,
        rejected: Vec<Rejected>,
    ) -> Self {
        Report {
            as_of,
            period: evaluation.period,
            findings: evaluation.findings,
            scorecards: evaluation.scorecards,
            rejected,
            missing_rates: evaluation.missing_rates,
            currency: crate::config::ScorecardSettings::default().currency,
        }
    }

    /// The base currency the amounts are in.
    pub(crate) fn with_currency(mut self, currency: &str) -> Self {
        self.currency = currency.to_string();
        self
    }

    /// What a channel manager pastes into a monthly review.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let p = &self.period;
        let _ = writeln!(
            out,
            "Channel program report as of {}\nScorecard period {} ({} to {})\n",
            format_timestamp(&self.as_of),
            p.label,
            p.start,
            p.end
        );
        self.findings_text(&mut out);
        self.scorecards_text(&mut out);
        if !self.missing_rates.is_empty() {
            let _ = writeln!(
                out,
                "\nMISSING EXCHANGE RATES ({})",
                self.missing_rates.len()
            );
            for m in &self.missing_rates {
                let _ = writeln!(out, "  {}", m.message());
            }
        }
        if !self.rejected.is_empty() {
            let _ = writeln!(out, "\nREJECTED ROWS ({})", self.rejected.len());
            for r in &self.rejected {
                let _ = writeln!(out, "  {}:{}  {}", r.file, r.line, r.reason);
            }
        }
        out
    }

    fn findings_text(&self, out: &mut String) {
        let count = |s| self.findings.iter().filter(|f| f.severity == s).count();
        let _ = writeln!(
            out,
            "FINDINGS ({}): {} critical, {} warning, {} info",
            self.findings.len(),
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Info)
        );
        for kind in FindingKind::ALL {
            let of_kind: Vec<&Finding> = self.findings.iter().filter(|f| f.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{} ({})", kind_title(kind), of_kind.len());
            for f in of_kind {
                finding_text(out, f);
            }
        }
    }

    /// The scorecard table. Its columns have two time bases, said in a
    /// heading over each group: the quarter (reps, active sellers, rate,
    /// revenue) and now (pipeline, registrations, conflicts). Amounts are in
    /// the base currency, named in the column.
    fn scorecards_text(&self, out: &mut String) {
        let p = &self.period;
        let c = &self.currency;
        let _ = writeln!(out, "\nPARTNER SCORECARDS ({})", p.label);
        let header = [
            "Partner".to_string(),
            "Tier".to_string(),
            "Reps".to_string(),
            "Active".to_string(),
            "Rate".to_string(),
            format!("Revenue {c}"),
            format!("Pipeline {c}"),
            "Open regs".to_string(),
            "Expiring".to_string(),
            "Conflicts".to_string(),
        ];
        // (first column, past the last column, heading).
        let now = self.as_of.format("%Y-%m-%d");
        let _ = writeln!(
            out,
            "  Reps, active sellers, rate and revenue cover the quarter {} ({} to {}); pipeline,\n  registrations and conflicts are as of {now}. Amounts in {c}.",
            p.label, p.start, p.end
        );
        let groups = [
            (2, 6, format!("{} ", p.label)),
            (6, 10, format!("now ({now}) ")),
        ];
        let rows: Vec<[String; 10]> = self
            .scorecards
            .iter()
            .map(|s| {
                [
                    format!("{} {}", s.partner_id, truncate(&s.partner_name, 28)),
                    s.tier.clone().unwrap_or_else(|| "-".into()),
                    s.reps.to_string(),
                    s.active_sellers.to_string(),
                    s.active_seller_rate
                        .map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0)),
                    money(s.sourced_revenue),
                    money(s.sourced_pipeline),
                    s.open_registrations.to_string(),
                    s.expiring_registrations.to_string(),
                    s.open_conflicts.to_string(),
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // A group's heading fits over its columns: widen its last one.
        let span = |widths: &[usize], from: usize, to: usize| -> usize {
            widths[from..to].iter().map(|w| w + 1).sum::<usize>() - 1
        };
        for (from, to, heading) in &groups {
            let short = heading
                .chars()
                .count()
                .saturating_sub(span(&widths, *from, *to));
            widths[to - 1] += short;
        }
        let mut top = String::from(" ");
        for w in &widths[..groups[0].0] {
            top.push_str(&" ".repeat(w + 1));
        }
        for (from, to, heading) in &groups {
            let width = span(&widths, *from, *to);
            let _ = write!(top, " {heading:-<width$}");
        }
        let _ = writeln!(out, "{top}");
        let line = |cells: Vec<&str>| {
            let mut s = String::from(" ");
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                // The first two columns are text: left-aligned; numbers right.
                if i < 2 {
                    let _ = write!(s, " {cell:<w$}");
                } else {
                    let _ = write!(s, " {cell:>w$}");
                }
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(header.iter().map(String::as_str).collect()));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
        }
    }
}

fn kind_title(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::DirectVsPartner => "Direct sales on partner-registered accounts",
        FindingKind::PartnerBypassed => "Registered deals that lost or changed their partner",
        FindingKind::PartnerVsPartner => "Customers claimed by several partners",
        FindingKind::RegistrationExpired => "Registrations expired without a win",
        FindingKind::RegistrationExpiring => "Registrations about to expire",
    }
}

fn finding_text(out: &mut String, f: &Finding) {
    let _ = writeln!(
        out,
        "  [{}] {}\n    {}",
        f.severity.as_str().to_uppercase(),
        f.key,
        f.summary
    );
    match (&f.account_id, &f.account_name) {
        (Some(id), Some(name)) => {
            let how = f.how.map_or(String::new(), |m| {
                format!(", matched by {} (score {:.2})", m.method.as_str(), m.score)
            });
            let _ = writeln!(out, "    Account: {name} ({id}){how}");
        }
        _ => {
            if f.kind == FindingKind::PartnerVsPartner {
                let _ = writeln!(out, "    Account: not in the CRM");
            }
        }
    }
    for e in &f.evidence {
        let first = if e.id == f.first_in {
            "  <- first in"
        } else {
            ""
        };
        let _ = writeln!(out, "    - {}{first}", evidence_text(e));
    }
}

fn evidence_text(e: &Evidence) -> String {
    let by = match (&e.partner_name, &e.partner_id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (None, Some(id)) => id.clone(),
        _ => "direct sales".into(),
    };
    let mut s = format!("{} {} by {by}", e.record.as_str(), e.id);
    if let Some(n) = &e.name {
        let _ = write!(s, " \"{n}\"");
    }
    let verb = if e.record == Record::Registration {
        "submitted"
    } else {
        "created"
    };
    let _ = write!(
        s,
        ", {verb} {}, status {}",
        e.at.format("%Y-%m-%d"),
        e.status
    );
    if let Some(a) = e.approved_at {
        let _ = write!(s, ", approved on {}", a.format("%Y-%m-%d"));
    }
    if let Some(x) = e.expires_at {
        let _ = write!(s, ", protected until {}", x.format("%Y-%m-%d"));
    }
    if let Some(d) = e.close_date {
        let _ = write!(s, ", close date {d}");
    }
    if let Some(stage) = &e.stage {
        let _ = write!(s, ", stage {stage}");
    }
    match (e.amount, &e.currency) {
        (Some(a), Some(c)) => {
            let _ = write!(s, ", {c} {}", money(a));
        }
        (Some(a), None) => {
            let _ = write!(s, ", amount {}", money(a));
        }
        (None, _) => {}
    }
    if let Some(m) = e.how {
        let _ = write!(s, ", matched by {} ({:.2})", m.method.as_str(), m.score);
    }
    s
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// `1234567.5` -> `1,234,567.50`.
fn money(x: f64) -> String {
    crate::values::format_amount(x, crate::values::Cents::Always)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(999.5), "999.50");
        assert_eq!(money(1234567.456), "1,234,567.46");
        assert_eq!(money(-1000.0), "-1,000.00");
    }

    #[test]
    fn the_scorecard_table_says_each_columns_time_basis_and_currency() {
        use chrono::{NaiveDate, TimeZone};
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let report = Report {
            as_of: Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap(),
            period: Period {
                start: d(7, 1),
                end: d(9, 30),
                label: "2026-Q3".into(),
            },
            findings: vec![],
            scorecards: vec![Scorecard {
                partner_id: "P-1".into(),
                reps: 7,
                active_sellers: 3,
                active_seller_rate: Some(3.0 / 7.0),
                sourced_pipeline: 252_000.0,
                sourced_revenue: 127_840.0,
                open_registrations: 4,
                expiring_registrations: 0,
                open_conflicts: 5,
                partner_name: "Northwind Solutions".into(),
                tier: Some("gold".into()),
            }],
            rejected: vec![],
            missing_rates: vec![],
            currency: String::new(),
        }
        .with_currency("EUR");
        let text = report.to_text();
        let lines: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("PARTNER"))
            .collect();
        assert!(
            lines[1..3]
                .join(" ")
                .contains("cover the quarter 2026-Q3 (2026-07-01 to 2026-09-30)")
                && lines[2].contains("as of 2026-11-26. Amounts in EUR."),
            "{text}"
        );
        let (groups, header, row) = (lines[3], lines[4], lines[5]);
        // Each group heading starts over its first column.
        let at = |line: &str, s: &str| line.find(s).unwrap_or_else(|| panic!("{s} in {line}"));
        assert_eq!(at(groups, "2026-Q3 -"), at(header, "Reps"), "{text}");
        assert_eq!(
            at(groups, "now (2026-11-26) -"),
            at(header, "Pipeline EUR"),
            "{text}"
        );
        // Quarter columns before the now columns; amounts name the currency.
        assert!(
            at(header, "Revenue EUR") < at(header, "Pipeline EUR"),
            "{text}"
        );
        assert!(row.contains("127,840.00   252,000.00"), "{text}");
        assert!(!text.contains("USD"), "{text}");
    }

    #[test]
    fn the_text_report_says_each_claims_record_status_and_partner() {
        // The sample program's report (default settings: 90 days of
        // protection): each claim's line names its record kind and status,
        // and a summary names the partner's registration in the possessive.
        let now = crate::values::parse_timestamp("2026-11-26T00:00:00Z").unwrap();
        let settings = crate::config::Settings::default();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample");
        let loaded = crate::connectors::files::load(&dir, &settings.scorecard).unwrap();
        let evaluation = crate::engine::evaluate(&loaded.dataset, &settings, now);
        let text = Report::new(now, evaluation, loaded.rejected).to_text();
        for line in [
            "    - registration R-01 by Northwind Solutions (P-1) \"ACME Corp.\", submitted 2026-09-10, \
             status approved, approved on 2026-09-12, protected until 2026-12-11, USD 85,000.00, \
             matched by domain (1.00)  <- first in",
            "    - opportunity O-002 by direct sales \"Acme - 2027 renewal\", created 2026-10-15, \
             status open, close date 2027-01-31, stage Negotiation, USD 42,000.00",
            "    Opportunity O-015 (Globex - Data platform) from Fabrikam Partners' registration R-12 \
             has no partner on it any more; the registration protects it until 2026-12-17.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\nin\n{text}");
        }
    }

    #[test]
    fn the_json_written_on_all_cores_is_serde_jsons_byte_for_byte() {
        // The sample program's report, then more findings than one batch
        // (copies, so values with quotes, line breaks and Unicode repeat
        // across chunk and batch edges), then none.
        let now = crate::values::parse_timestamp("2026-11-26T00:00:00Z").unwrap();
        let settings = crate::config::Settings::default();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample");
        let loaded = crate::connectors::files::load(&dir, &settings.scorecard).unwrap();
        let evaluation = crate::engine::evaluate(&loaded.dataset, &settings, now);
        let mut report = Report::new(now, evaluation, loaded.rejected);
        assert!(report.findings.len() > 1);
        report.findings[0]
            .summary
            .push_str(" \"quoted\"\nline two, caf\u{e9} \u{2014} \\ end");
        let check = |report: &mut Report| {
            let want = serde_json::to_vec_pretty(&*report).unwrap();
            let mut got = Vec::new();
            report.write_json(&mut got).unwrap();
            assert!(got == want, "{}", String::from_utf8_lossy(&got));
        };
        check(&mut report);
        let base = report.findings.clone();
        while report.findings.len() < RENDER_BATCH + RENDER_CHUNK + 3 {
            report.findings.extend(base.iter().cloned());
        }
        check(&mut report);
        report.findings.clear();
        check(&mut report);
    }

    #[test]
    fn long_names_are_shortened() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdefgh", 5), "abcd…");
    }
}
