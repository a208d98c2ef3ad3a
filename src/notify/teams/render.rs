//! Microsoft Teams messages: a Workflows webhook body (`type: message`) with
//! one Adaptive Card attachment (schema 1.4; Teams takes 1.5 at most). Card
//! text is Markdown, so every value from data goes through [`escape`]; the
//! whole body stays under [`MAX_BYTES`] (Teams refuses about 28 KB and more).

use serde_json::{Value, json};

use crate::alerts::{Content, Notice, Reason};
use crate::config::ConsoleSettings;
use crate::engine::{Finding, FindingKind, Severity};
use crate::notify::Names;
use crate::notify::wording::{money, title, title_of};

/// The largest body sent: under Teams' ~28 KB a card, with room to spare.
pub(crate) const MAX_BYTES: usize = 27 * 1024;
/// One text block's longest text (keeps one long value from crowding the rest).
const TEXT_MAX: usize = 2000;
/// Evidence lines shown (fewer when the card would be too large).
const EVIDENCE_LINES: usize = 10;
const DIGEST_LINES: usize = 25;

/// Escapes what Adaptive Card Markdown would read as markup (emphasis,
/// links, lists, headings, code), and angle brackets (no HTML, no `<at>`
/// mentions from data). Line breaks in data become spaces.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '`' | '~' | '<' | '>' | '#' | '|' => {
                out.push('\\');
                out.push(c);
            }
            // A list marker only counts at the start of a line.
            '-' | '+' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, never ending inside an escape.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    // A trailing lone backslash would escape the ellipsis.
    let trailing = t.chars().rev().take_while(|&c| c == '\\').count();
    if trailing % 2 == 1 {
        t.pop();
    }
    t.push('…');
    t
}

fn text(s: &str) -> Value {
    json!({"type": "TextBlock", "text": cut(s, TEXT_MAX), "wrap": true})
}

fn icon(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
    }
}

/// The Workflows webhook body around one card.
pub(crate) fn message(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// The card for a notice, as the JSON body to post. `console` (when
/// `console.public_url` is set) gives a finding's card a link to its page in
/// the console, where it can be decided: Teams cards carry no buttons that
/// post back.
pub(crate) fn notice(n: &Notice, names: &Names, console: Option<&ConsoleSettings>) -> String {
    match &n.content {
        Content::Finding { finding: f, why } => {
            let page = console.and_then(|c| c.finding_url(&f.key));
            // Fewer evidence lines until the card fits.
            let mut lines = EVIDENCE_LINES;
            loop {
                let body =
                    finding(f, n.reason, why.as_deref(), names, lines, page.as_deref()).to_string();
                if body.len() <= MAX_BYTES || lines == 0 {
                    return body;
                }
                lines /= 2;
            }
        }
        Content::Resolved(f) => resolved(f).to_string(),
        Content::Digest {
            findings,
            resolved,
            total,
        } => digest(findings, *resolved, *total).to_string(),
    }
}

fn finding(
    f: &Finding,
    reason: Reason,
    why: Option<&str>,
    names: &Names,
    lines: usize,
    page: Option<&str>,
) -> Value {
    let head = match reason {
        Reason::Reminder => format!("Reminder: {}", title_of(f)),
        Reason::Changed => format!("Changed: {}", title_of(f)),
        Reason::Escalation => format!("Escalated: {}", title_of(f)),
        _ => title_of(f).to_string(),
    };
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": format!("{} {head}", icon(f.severity)),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    if let Some(why) = why {
        body.push(text(&format!("**What changed:** {}", escape(why))));
    }
    body.push(text(&escape(&f.summary)));
    let mut facts = vec![json!({"title": "Severity", "value": f.severity.as_str()})];
    if let Some(a) = &f.account_name {
        facts.push(json!({"title": "Account", "value": cut(&escape(a), 200)}));
    }
    if let Some((v, currency)) = f.value_at_risk() {
        let amount = match currency {
            Some(c) => format!("{c} {}", money(v)),
            None => money(v),
        };
        facts.push(json!({"title": "Amount at stake", "value": escape(&amount)}));
    }
    if let Some(x) = f.expires_at {
        let label = if f.kind == FindingKind::RegistrationExpired {
            "Protection ended"
        } else {
            "Protected until"
        };
        facts.push(json!({"title": label, "value": x.format("%Y-%m-%d").to_string()}));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    let evidence: Vec<String> = f
        .evidence
        .iter()
        .take(lines)
        .map(|e| {
            let who = e
                .partner_name
                .as_deref()
                .or(e.partner_id.as_deref())
                .unwrap_or("direct sales");
            let name = e.name.as_deref().unwrap_or_default();
            format!(
                "- {} {} ({}), {}, {}",
                escape(&e.id),
                cut(&escape(name), 100),
                cut(&escape(who), 100),
                escape(&e.status),
                e.at.format("%Y-%m-%d")
            )
        })
        .collect();
    if !evidence.is_empty() {
        let more = f.evidence.len().saturating_sub(lines);
        let mut t = format!("**Evidence**\r{}", evidence.join("\r"));
        if more > 0 {
            t.push_str(&format!("\r- …and {more} more"));
        }
        body.push(json!({"type": "TextBlock", "text": t, "wrap": true}));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": format!("channel-sync · {} · {}", escape(&f.key), f.kind.as_str()),
        "isSubtle": true,
        "size": "Small",
        "wrap": true,
    }));
    let mut actions = Vec::new();
    if let Some(id) = &f.account_id
        && let Some(url) = crate::notify::Links::url(names.links.account.as_ref(), id)
        && url.starts_with("https://")
    {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Open the account", "url": url}));
    }
    if let Some(url) = page {
        let title = if f.kind.is_conflict() {
            "Decide in the console"
        } else {
            "Open in the console"
        };
        actions.push(json!({"type": "Action.OpenUrl", "title": title, "url": url}));
    }
    message(body, actions)
}

fn resolved(f: &Finding) -> Value {
    message(
        vec![
            json!({
                "type": "TextBlock",
                "text": format!("✅ Resolved: {}", title_of(f)),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": true,
            }),
            text(&format!(
                "No longer in the data: {}\n\nThe opportunity or registration behind it was changed, closed or deleted.",
                escape(&f.summary)
            )),
            json!({
                "type": "TextBlock",
                "text": format!("channel-sync · {} · resolved", escape(&f.key)),
                "isSubtle": true,
                "size": "Small",
                "wrap": true,
            }),
        ],
        Vec::new(),
    )
}

fn digest(findings: &[Finding], resolved: usize, total: usize) -> Value {
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for f in findings {
        *by_kind.entry(title(f.kind)).or_default() += 1;
    }
    let mut facts: Vec<Value> = by_kind
        .iter()
        .map(|(t, n)| json!({"title": t, "value": n.to_string()}))
        .collect();
    if resolved > 0 {
        facts.push(json!({"title": "Resolved", "value": resolved.to_string()}));
    }
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.key.cmp(&b.key)));
    let mut lines: Vec<String> = sorted
        .iter()
        .take(DIGEST_LINES)
        .map(|f| format!("- {} {}", icon(f.severity), cut(&escape(&f.summary), 280)))
        .collect();
    if findings.len() > DIGEST_LINES {
        lines.push(format!(
            "- …and {} more: `channel-sync findings` lists every open finding.",
            findings.len() - DIGEST_LINES
        ));
    }
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": format!("channel-sync: {total} alerts this cycle"),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": true,
        }),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if !lines.is_empty() {
        body.push(json!({"type": "TextBlock", "text": lines.join("\r"), "wrap": true}));
    }
    message(body, Vec::new())
}

/// What a person would read (dry runs): the card's texts and facts.
pub(crate) fn preview(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    let mut out = Vec::new();
    let card = &v["attachments"][0]["content"];
    for b in card["body"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("TextBlock") => {
                out.push(b["text"].as_str().unwrap_or_default().replace('\r', "\n"))
            }
            Some("FactSet") => {
                for f in b["facts"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "{}: {}",
                        f["title"].as_str().unwrap_or_default(),
                        f["value"].as_str().unwrap_or_default()
                    ));
                }
            }
            _ => {}
        }
    }
    for a in card["actions"].as_array().into_iter().flatten() {
        out.push(format!(
            "[{}] {}",
            a["title"].as_str().unwrap_or_default(),
            a["url"].as_str().unwrap_or_default()
        ));
    }
    out.join("\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn markup_from_data_is_escaped_and_plain_text_is_not() {
        assert_eq!(escape("**x** [a](b)"), "\\*\\*x\\*\\* \\[a\\]\\(b\\)");
        assert_eq!(escape("<at>Ann</at>"), "\\<at\\>Ann\\</at\\>");
        assert_eq!(escape("- item"), "\\- item");
        assert_eq!(escape("L'Oréal & Co, a-b"), "L'Oréal & Co, a-b");
        assert_eq!(escape("a\nb"), "a b");
    }

    /// A finding with `n` evidence records whose names are `len` long.
    pub(crate) fn big(n: usize, len: usize) -> Finding {
        use crate::engine::{Evidence, Record};
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T00:00:00Z")
            .unwrap()
            .to_utc();
        Finding {
            kind: FindingKind::DirectVsPartner,
            key: "k".into(),
            severity: Severity::Critical,
            account_id: Some("A-1".into()),
            partner_ids: vec!["P-1".into()],
            registration_ids: vec!["R-1".into()],
            opportunity_ids: vec!["O-1".into()],
            first_in: "R-1".into(),
            how: None,
            expires_at: None,
            summary: "*".repeat(len),
            account_name: Some("Acme".into()),
            evidence: (0..n)
                .map(|i| Evidence {
                    record: Record::Opportunity,
                    id: format!("O-{i}"),
                    name: Some("_".repeat(len)),
                    partner_id: Some("P-1".into()),
                    partner_name: Some("[".repeat(len)),
                    at,
                    status: "open".into(),
                    approved_at: None,
                    expires_at: None,
                    close_date: None,
                    rep: None,
                    owner_id: None,
                    how: None,
                    amount: None,
                    currency: None,
                    stage: None,
                    original_amount: None,
                    original_currency: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_card_stays_under_the_teams_limit_however_large_the_finding() {
        let names = Names::default();
        for (n, len) in [(3, 10), (10, 100), (500, 20000)] {
            let notice = Notice {
                route: "default".into(),
                finding_key: Some("k".into()),
                reason: Reason::New,
                content: Content::Finding {
                    finding: big(n, len),
                    why: None,
                },
            };
            let body = notice_body(&notice, &names);
            assert!(body.len() <= MAX_BYTES, "{n}x{len}: {} bytes", body.len());
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["type"], "message");
            assert_eq!(v["attachments"][0]["content"]["version"], "1.4");
        }
    }

    fn notice_body(n: &Notice, names: &Names) -> String {
        notice(n, names, None)
    }

    #[test]
    fn a_finding_links_to_its_console_page_only_when_the_console_has_an_address() {
        let names = Names::default();
        let n = Notice {
            route: "default".into(),
            finding_key: Some("direct_vs_partner:R-1:O-1".into()),
            reason: Reason::New,
            content: Content::Finding {
                finding: Finding {
                    key: "direct_vs_partner:R-1:O-1".into(),
                    ..big(1, 10)
                },
                why: None,
            },
        };
        let actions = |body: &str| {
            let v: Value = serde_json::from_str(body).unwrap();
            v["attachments"][0]["content"]["actions"].clone()
        };
        let mut console = ConsoleSettings::default();
        // No public_url: no link (and no buttons either way).
        let none = notice(&n, &names, Some(&console));
        assert_eq!(actions(&none), Value::Null, "{none}");
        console.public_url = Some("https://cs.example.com/".into());
        let body = notice(&n, &names, Some(&console));
        assert_eq!(
            actions(&body),
            json!([{
                "type": "Action.OpenUrl",
                "title": "Decide in the console",
                "url": "https://cs.example.com/finding?key=direct_vs_partner%3AR-1%3AO-1",
            }])
        );
        assert!(
            preview(&body).contains("[Decide in the console] https://cs.example.com/finding?key=")
        );
        // A resolution or a digest has no finding page to open.
        let resolved = Notice {
            content: Content::Resolved(big(1, 10)),
            ..n.clone()
        };
        assert_eq!(
            actions(&notice(&resolved, &names, Some(&console))),
            Value::Null
        );
    }

    #[test]
    fn a_cut_never_leaves_a_dangling_escape() {
        let s = escape("abc*def");
        // "abc\*def": cutting at 5 would keep "abc\" + "…".
        let c = cut(&s, 5);
        assert!(!c.trim_end_matches('…').ends_with('\\'), "{c}");
        assert!(c.chars().count() <= 5);
    }
}
