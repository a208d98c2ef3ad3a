//! Slack messages (Block Kit with a plain `text` fallback) for findings,
//! resolutions and digests. Every value that comes from data goes through
//! [`escape`], so a partner named `<!channel>` pings nobody, and every text
//! is cut to Slack's limits.

use serde_json::{Value, json};

use crate::alerts::Reason;
use crate::engine::{Evidence, Finding, FindingKind, Record, Severity};
use crate::notify::wording::{money, title, title_of};
use crate::notify::wording::{moved_to, won};

/// Slack's limits (api.slack.com; see shared/reference/slack-and-writeback.md).
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const FALLBACK_MAX: usize = 3000;
const EVIDENCE_LINES: usize = 10;
const DIGEST_LINES: usize = 25;
/// Names (accounts, partners, records) in a message.
const NAME_MAX: usize = 100;

pub(crate) use crate::notify::names::{Links, Names};

/// `<url|label>` when the record has a link, else the label.
fn wrap(template: Option<&String>, id: &str, label: String) -> String {
    match Links::url(template, id) {
        Some(url) => format!("<{}|{label}>", url.replace(['|', '>', '<'], "")),
        None => label,
    }
}

/// Escapes Slack's three control characters (and only those).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// One unit of Slack markup that must stay whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// A character, or an entity such as `&amp;`.
    Text(&'a str),
    /// `<url|label>`: `head` is `<url|`, `label` the label's text.
    Link { head: &'a str, label: &'a str },
    /// `<@U123>`, `<!here>`, `<#C1>`, or a link without a label.
    Whole(&'a str),
}

impl Piece<'_> {
    fn chars(&self) -> usize {
        match self {
            Piece::Text(t) | Piece::Whole(t) => t.chars().count(),
            Piece::Link { head, label } => head.chars().count() + label.chars().count() + 1,
        }
    }
}

/// The entity starting `s` (`&amp;`, `&lt;`, `&#39;`...), if any.
fn entity(s: &str) -> Option<&str> {
    let end = s
        .char_indices()
        .skip(1)
        .take(9)
        .find_map(|(i, c)| match c {
            ';' => Some(Some(i + 1)),
            c if c.is_ascii_alphanumeric() || c == '#' => None,
            _ => Some(None),
        })??;
    (end > 2).then(|| &s[..end])
}

/// Splits mrkdwn into characters, entities and `<...>` spans. A `<` with no
/// `>` after it (never produced here: data is escaped) is a character.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let piece = match c {
            '&' => entity(rest).map(Piece::Text),
            '<' => rest.find('>').map(|end| {
                let span = &rest[..=end];
                match span[1..end].find('|') {
                    Some(bar) if !span[1..].starts_with(['@', '!', '#']) => Piece::Link {
                        head: &span[..bar + 2],
                        label: &span[bar + 2..end],
                    },
                    _ => Piece::Whole(span),
                }
            }),
            _ => None,
        }
        .unwrap_or_else(|| Piece::Text(&rest[..c.len_utf8()]));
        rest = &rest[match piece {
            Piece::Text(t) | Piece::Whole(t) => t.len(),
            Piece::Link { head, label } => head.len() + label.len() + 1,
        }..];
        out.push(piece);
    }
    out
}

/// Cuts a text to at most `max` characters, marking the cut with `…`. A cut
/// never splits an entity (`&amp;`), a mention (`<@U1>`, `<!here>`) or a
/// link: a link that does not fit keeps its URL with a shortened label
/// (`<url|Acme Cor…>`), else goes whole.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for piece in pieces(s) {
        let n = piece.chars();
        // Room for the piece and the closing `…`.
        if used + n < max {
            match piece {
                Piece::Text(t) | Piece::Whole(t) => out.push_str(t),
                Piece::Link { head, label } => {
                    out.push_str(head);
                    out.push_str(label);
                    out.push('>');
                }
            }
            used += n;
            continue;
        }
        if let Piece::Link { head, label } = piece {
            // `head`, some of the label, `…` and `>`.
            let room = max - used;
            let fixed = head.chars().count() + 2;
            if room > fixed {
                let mut kept = String::new();
                let mut len = 0;
                for p in pieces(label) {
                    let n = p.chars();
                    let Piece::Text(t) = p else { break };
                    if len + n > room - fixed {
                        break;
                    }
                    kept.push_str(t);
                    len += n;
                }
                if len > 0 {
                    out.push_str(head);
                    out.push_str(&kept);
                    out.push_str("…>");
                    return out;
                }
            }
        }
        break;
    }
    out.push('…');
    out
}

fn mrkdwn(text: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": cut(text, max), "verbatim": true})
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": cut(text, HEADER_MAX), "emoji": true}})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": mrkdwn(text, SECTION_MAX)})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [mrkdwn(text, SECTION_MAX)]})
}

fn icon(s: Severity) -> &'static str {
    match s {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":hourglass_flowing_sand:",
    }
}

/// `USD 210,000`, or what is missing.
/// `USD 27,940 (GBP 22,000)`; `GBP 22,000 (no USD rate)` when it cannot be
/// converted.
fn amount_text(e: &Evidence) -> String {
    let base = match (e.amount, &e.currency) {
        (Some(a), Some(c)) => Some(format!("{c} {}", money(a))),
        (Some(a), None) => Some(money(a)),
        (None, _) => None,
    };
    let original = match (e.original_amount, &e.original_currency) {
        (Some(a), Some(c)) => Some(format!("{c} {}", money(a))),
        _ => None,
    };
    match (base, original) {
        (Some(b), Some(o)) => format!("{b} ({o})"),
        (Some(b), None) => b,
        (None, Some(o)) => match &e.currency {
            Some(c) => format!("{o} (no {c} rate)"),
            None => format!("{o} (no exchange rate)"),
        },
        (None, None) if e.record == Record::Registration => "no amount given".into(),
        (None, None) => "amount unknown".into(),
    }
}

/// A name from the data, at most [`NAME_MAX`] characters, so one long name
/// cannot crowd the rest of a message out.
fn short(s: &str) -> String {
    if s.chars().count() <= NAME_MAX {
        return s.to_string();
    }
    let mut t: String = s.chars().take(NAME_MAX - 1).collect();
    t.push('…');
    t
}

/// `Northwind Solutions (P-1)`, `P-9`, or `direct sales`.
fn party(e: &Evidence) -> String {
    match (&e.partner_name, &e.partner_id) {
        (Some(n), Some(id)) => format!("{} ({id})", short(n)),
        (None, Some(id)) => id.clone(),
        _ if e.record == Record::Opportunity => "direct sales".into(),
        _ => "no partner".into(),
    }
}

/// The partners a finding names, by name, in claim order, each once.
fn partner_names(f: &Finding) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in &f.evidence {
        if let Some(n) = e.partner_name.as_ref().or(e.partner_id.as_ref())
            && !out.contains(n)
        {
            out.push(n.clone());
        }
    }
    out
}

/// `A`, `A and B`, `A, B and C`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn day(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Whether "who came first" means anything: the kinds with several claims.
fn has_first_in(kind: FindingKind) -> bool {
    kind.is_conflict()
}

fn next_step(f: &Finding, names: &Names) -> String {
    let reg = f.evidence.iter().find(|e| e.record == Record::Registration);
    let opp = f.evidence.iter().find(|e| e.record == Record::Opportunity);
    let registering = reg
        .and_then(|e| e.partner_name.clone().or(e.partner_id.clone()))
        .unwrap_or_else(|| "the partner".into());
    let partners = and_list(&partner_names(f));
    let owner = opp
        .and_then(|o| o.owner_id.as_deref())
        .map_or_else(|| "the opportunity owner".to_string(), |o| names.user(o));
    let until = f.expires_at.as_ref().map(day).unwrap_or_default();
    let step = match f.kind {
        FindingKind::DirectVsPartner if won(f) => format!(
            "The deal is already won: agree with {registering} how its registration is honoured (partner credit, commission or another compensation under the rules of engagement), and review with {owner} why the registration was missed."
        ),
        FindingKind::DirectVsPartner if reg.is_some_and(|r| r.id == f.first_in) => format!(
            "Check the registration with {registering} and with {owner}; if it stands, bring {registering} onto the opportunity or close the direct one under the rules of engagement."
        ),
        FindingKind::DirectVsPartner => format!(
            "The direct opportunity came first: review why the registration was approved, agree with {owner} and {registering} who keeps the deal, and tell {registering}."
        ),
        FindingKind::PartnerBypassed => match moved_to(f) {
            Some(o) => {
                let now_with = o
                    .partner_name
                    .clone()
                    .or(o.partner_id.clone())
                    .unwrap_or_default();
                format!(
                    "Decide whether {registering} (registered, protected until {until}) or {now_with} (now on the opportunity) gets the deal; correct the attribution or record why it moved, and tell the partner that loses."
                )
            }
            None if won(f) => format!(
                "The deal is won without {registering}: restore its attribution or agree compensation under the rules of engagement, and record why it was removed."
            ),
            None => format!(
                "Put {registering} back on the opportunity, or record why it was removed and tell {registering}."
            ),
        },
        FindingKind::PartnerVsPartner => {
            let first = f
                .evidence
                .iter()
                .find(|e| e.id == f.first_in)
                .and_then(|e| e.partner_name.clone().or(e.partner_id.clone()))
                .map_or_else(String::new, |p| format!(", {p} first with {}", f.first_in));
            format!(
                "Decide ownership between {partners} under the program rules (first in wins{first}), and tell the partner that loses."
            )
        }
        FindingKind::RegistrationExpiring => format!(
            "Ask {registering} for a status update before {until}, or extend the protection if the deal is moving."
        ),
        FindingKind::RegistrationExpired => format!(
            "Confirm with {registering} whether to close the registration or register the deal again."
        ),
    };
    escape(&step)
}

/// A registration's dates and status, each said once:
/// `submitted 2026-10-01, approved 2026-10-03`,
/// `submitted 2026-10-22, not yet approved`,
/// `submitted 2026-06-01, approved 2026-06-03, now expired`.
fn registration_status(e: &Evidence) -> String {
    let mut parts = vec![format!("submitted {}", day(&e.at))];
    if let Some(a) = &e.approved_at {
        parts.push(format!("approved {}", day(a)));
    }
    match (e.status.as_str(), e.approved_at.is_some()) {
        ("submitted", _) => parts.push("not yet approved".into()),
        ("approved", true) => {}
        ("approved", false) => parts.push("approved".into()),
        (other, _) => parts.push(format!("now {other}")),
    }
    parts.join(", ")
}

/// An opportunity's status and dates: `open, closing 2026-12-20`,
/// `won 2026-10-20`, `lost`.
fn opportunity_status(e: &Evidence) -> String {
    match (e.status.as_str(), e.close_date) {
        ("open", Some(d)) => format!("open, closing {d}"),
        (status, Some(d)) => format!("{status} {d}"),
        (status, None) => status.to_string(),
    }
}

/// One record of the evidence, as mrkdwn (data escaped, links whole).
fn evidence_line(f: &Finding, e: &Evidence, names: &Names) -> String {
    let mut parts: Vec<String> = Vec::new();
    let head = match e.record {
        Record::Registration => {
            let name = e
                .name
                .as_deref()
                .map_or(String::new(), |n| format!(" \"{}\"", escape(&short(n))));
            format!("Registration {}{name}", escape(&e.id))
        }
        Record::Opportunity => {
            let label = escape(&short(e.name.as_deref().unwrap_or(&e.id)));
            let shown = wrap(names.links.opportunity.as_ref(), &e.id, label.clone());
            if e.name.is_some() {
                if shown == label {
                    format!("Opportunity \"{shown}\" ({})", escape(&e.id))
                } else {
                    format!("Opportunity {shown} ({})", escape(&e.id))
                }
            } else {
                format!("Opportunity {shown}")
            }
        }
    };
    match e.record {
        Record::Registration => {
            parts.push(registration_status(e));
            if f.kind == FindingKind::PartnerVsPartner
                && let Some(x) = &e.expires_at
            {
                parts.push(format!("protected until {}", day(x)));
            }
            parts.push(escape(&amount_text(e)));
        }
        Record::Opportunity => {
            parts.push(opportunity_status(e));
            parts.push(match &e.stage {
                Some(s) => format!("stage {}", escape(s)),
                None => "no stage".into(),
            });
            parts.push(escape(&amount_text(e)));
            parts.push(format!("created {}", day(&e.at)));
        }
    }
    if let Some(r) = &e.rep {
        parts.push(format!("partner rep {}", escape(&names.rep(r))));
    }
    if let Some(o) = &e.owner_id {
        parts.push(format!("owner {}", escape(&names.user(o))));
    }
    if let Some(m) = e.how {
        parts.push(format!("matched by {} ({:.2})", m.method.as_str(), m.score));
    }
    let first = if has_first_in(f.kind) && e.id == f.first_in {
        " — *first in*"
    } else {
        ""
    };
    format!("• {head}: {}{first}", parts.join(", "))
}

/// The evidence grouped by party (partner, or direct sales), parties in
/// claim order.
fn evidence_lines(f: &Finding, names: &Names) -> String {
    let mut groups: Vec<(String, Vec<&Evidence>)> = Vec::new();
    for e in f.evidence.iter().take(EVIDENCE_LINES) {
        let p = party(e);
        match groups.iter_mut().find(|(q, _)| *q == p) {
            Some((_, list)) => list.push(e),
            None => groups.push((p, vec![e])),
        }
    }
    let mut lines = Vec::new();
    for (p, list) in groups {
        let mut p = escape(&p);
        if let Some(first) = p.get(..1) {
            p = first.to_uppercase() + &p[1..];
        }
        lines.push(format!("*{p}*"));
        for e in list {
            lines.push(evidence_line(f, e, names));
        }
    }
    if f.evidence.len() > EVIDENCE_LINES {
        lines.push(format!("…and {} more", f.evidence.len() - EVIDENCE_LINES));
    }
    lines.join("\n")
}

/// `<@U012ABC> (direct owner)`, `<@U034DEF> (partner manager, Northwind)`:
/// the people a conflict concerns whose Slack user is known. The id comes
/// only from [`Names::mentions`] (the configured map or Slack's lookup),
/// checked once more to look like a user id; nothing from the data is ever
/// written as a mention.
fn mentions(f: &Finding, names: &Names) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (role, email) in names.people(f) {
        let Some(id) = names.mentions.get(&email) else {
            continue;
        };
        if !super::mentions::is_user_id(id) || seen.contains(&id.as_str()) {
            continue;
        }
        seen.push(id);
        let why = match role {
            crate::notify::Role::DirectOwner => "direct owner".to_string(),
            crate::notify::Role::PartnerManager(p) => {
                let name = f
                    .evidence
                    .iter()
                    .find(|e| e.partner_id.as_deref() == Some(p.as_str()))
                    .and_then(|e| e.partner_name.clone())
                    .unwrap_or(p);
                format!("partner manager, {}", escape(&short(&name)))
            }
        };
        out.push(format!("<@{id}> ({why})"));
    }
    out
}

/// The message for a finding that is new, changed, or due a reminder.
/// The Block Kit message for a notice.
pub(crate) fn notice(n: &crate::alerts::Notice, names: &Names) -> Value {
    use crate::alerts::Content;
    match &n.content {
        Content::Finding { finding: f, why } => finding(f, n.reason, why.as_deref(), names),
        Content::Resolved(f) => resolved(f, names),
        Content::Digest {
            findings,
            resolved,
            total,
        } => {
            let findings: Vec<&Finding> = findings.iter().collect();
            digest(&findings, *resolved, *total, names)
        }
    }
}

pub(crate) fn finding(f: &Finding, reason: Reason, why: Option<&str>, names: &Names) -> Value {
    let prefix = match reason {
        Reason::Changed => "Updated: ",
        Reason::Reminder => "Reminder: ",
        Reason::Escalation => "Escalated: ",
        _ => "",
    };
    let head = format!("{prefix}{} ({})", title_of(f), f.severity.as_str());
    let summary = escape(&f.summary);
    let mut fields = Vec::new();
    if let (Some(id), Some(name)) = (&f.account_id, &f.account_name) {
        fields.push(format!(
            "*Account*\n{}",
            wrap(
                names.links.account.as_ref(),
                id,
                escape(&format!("{} ({id})", short(name)))
            )
        ));
    } else if f.kind == FindingKind::PartnerVsPartner {
        fields.push("*Account*\nnot in the CRM".to_string());
    }
    let partners: Vec<String> = f
        .partner_ids
        .iter()
        .map(|p| {
            f.evidence
                .iter()
                .find(|e| e.partner_id.as_deref() == Some(p.as_str()))
                .and_then(|e| e.partner_name.clone())
                .map_or_else(|| p.clone(), |n| format!("{} ({p})", short(&n)))
        })
        .collect();
    if !partners.is_empty() {
        let label = if partners.len() == 1 {
            "Partner"
        } else {
            "Partners"
        };
        fields.push(format!("*{label}*\n{}", escape(&partners.join(", "))));
    }
    if let Some((v, currency)) = f.value_at_risk() {
        let amount = match currency {
            Some(c) => format!("{c} {}", money(v)),
            None => money(v),
        };
        let what = if won(f) { " (won)" } else { "" };
        fields.push(format!("*Amount at stake*\n{}{what}", escape(&amount)));
    }
    if has_first_in(f.kind)
        && let Some(e) = f.evidence.iter().find(|e| e.id == f.first_in)
    {
        fields.push(format!(
            "*First in*\n{} by {}, {}",
            escape(&e.id),
            escape(&party(e)),
            day(&e.at)
        ));
    }
    if let Some(x) = f.expires_at {
        let label = if f.kind == FindingKind::RegistrationExpired {
            "Protection ended"
        } else {
            "Protected until"
        };
        fields.push(format!("*{label}*\n{}", x.format("%Y-%m-%d")));
    }
    if let Some(m) = f.how {
        fields.push(format!(
            "*Match*\n{} (score {:.2})",
            m.method.as_str(),
            m.score
        ));
    }
    let mut blocks = vec![header(&format!("{} {head}", icon(f.severity)))];
    if let Some(why) = why {
        blocks.push(section(&format!("*What changed:* {}", escape(why))));
    }
    blocks.push(section(&summary));
    let mentioned = mentions(f, names);
    if !mentioned.is_empty() {
        blocks.push(section(&format!("*For:* {}", mentioned.join(", "))));
    }
    blocks.push(json!({
        "type": "section",
        "fields": fields.iter().map(|t| mrkdwn(t, FIELD_MAX)).collect::<Vec<_>>(),
    }));
    blocks.push(section(&format!(
        "*Evidence*\n{}",
        evidence_lines(f, names)
    )));
    blocks.push(context(&format!("*Next step:* {}", next_step(f, names))));
    blocks.push(context(&format!(
        "channel-sync · {} · {}",
        escape(&f.key),
        f.kind.as_str()
    )));
    let mut text = match why {
        Some(why) => format!("{head}: {summary} What changed: {}", escape(why)),
        None => format!("{head}: {summary}"),
    };
    if !mentioned.is_empty() {
        // Up front, so a cut never drops them.
        let ids: Vec<&str> = mentioned
            .iter()
            .filter_map(|m| m.split_once(' ').map(|(id, _)| id))
            .collect();
        text = format!("{} {text}", ids.join(" "));
    }
    json!({"text": cut(&text, FALLBACK_MAX), "blocks": blocks})
}

/// Adds a link to the finding's console page (a context line: a plain link
/// posts nothing back, so it needs no Slack app or signing secret).
pub(crate) fn add_console_link(message: &mut Value, url: &str) {
    let link = format!("<{}|Open in console>", url.replace(['|', '>', '<'], ""));
    if let Some(blocks) = message["blocks"].as_array_mut() {
        blocks.push(context(&link));
    }
}

/// The message for a conflict that no longer appears in the data.
pub(crate) fn resolved(f: &Finding, _names: &Names) -> Value {
    let head = format!("Resolved: {}", title_of(f));
    let summary = escape(&f.summary);
    let blocks = vec![
        header(&format!(":white_check_mark: {head}")),
        section(&format!(
            "No longer in the data: {summary}\nThe opportunity or registration behind it was changed, closed or deleted."
        )),
        context(&format!("channel-sync · {} · resolved", escape(&f.key))),
    ];
    json!({"text": cut(&format!("{head}: {summary}"), FALLBACK_MAX), "blocks": blocks})
}

/// One message standing for many.
pub(crate) fn digest(
    findings: &[&Finding],
    resolved: usize,
    total: usize,
    _names: &Names,
) -> Value {
    let mut by_kind: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for f in findings {
        let e = by_kind.entry(title(f.kind)).or_default();
        e.0 += 1;
        if f.severity == Severity::Critical {
            e.1 += 1;
        }
    }
    let mut counts: Vec<String> = by_kind
        .iter()
        .map(|(t, (n, critical))| {
            if *critical > 0 {
                format!("• {t}: {n} ({critical} critical)")
            } else {
                format!("• {t}: {n}")
            }
        })
        .collect();
    if resolved > 0 {
        counts.push(format!("• Resolved: {resolved}"));
    }
    let mut sorted: Vec<&&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.key.cmp(&b.key)));
    let mut lines: Vec<String> = sorted
        .iter()
        .take(DIGEST_LINES)
        .map(|f| format!("{} {}", icon(f.severity), cut(&escape(&f.summary), 280)))
        .collect();
    if findings.len() > DIGEST_LINES {
        lines.push(format!(
            "…and {} more: `channel-sync findings` lists every open finding (`channel-sync findings show KEY` tells one's story).",
            findings.len() - DIGEST_LINES
        ));
    }
    let head = format!("channel-sync: {total} alerts this cycle");
    let mut blocks = vec![header(&head), section(&counts.join("\n"))];
    // Sections hold 3000 characters: split the lines across several.
    let mut chunk = String::new();
    for line in lines {
        if chunk.len() + line.len() + 1 > SECTION_MAX - 10 {
            blocks.push(section(&chunk));
            chunk.clear();
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&line);
    }
    if !chunk.is_empty() {
        blocks.push(section(&chunk));
    }
    let text = format!("{head}: {}", counts.join("; ").replace("• ", ""));
    json!({"text": cut(&text, FALLBACK_MAX), "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_control_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            escape("<!channel> & <@U1>"),
            "&lt;!channel&gt; &amp; &lt;@U1&gt;"
        );
        assert_eq!(escape("L'Oréal \"x\" *bold*"), "L'Oréal \"x\" *bold*");
    }

    #[test]
    fn cutting_keeps_the_limit_and_whole_escapes() {
        let s = "a".repeat(10) + "&amp;" + &"b".repeat(10);
        let c = cut(&s, 13);
        assert!(c.chars().count() <= 13, "{c}");
        assert_eq!(c, format!("{}…", "a".repeat(10)));
        assert_eq!(cut("short", 10), "short");
    }

    /// Whether `out` is `s` cut with `cut`'s rules: a prefix of `s` ending
    /// in `…`, or ending in a link whose label was shortened to `label…`.
    pub(super) fn whole_markup(out: &str) -> Result<(), String> {
        // Every `<` closes before the next one, and every `&` is an entity.
        let mut open = false;
        for (i, c) in out.char_indices() {
            match c {
                '<' if open => return Err(format!("nested < at {i}")),
                '<' => open = true,
                '>' => open = false,
                '&' if !matches!(entity(&out[i..]), Some("&amp;" | "&lt;" | "&gt;")) => {
                    return Err(format!("half an entity at {i}"));
                }
                _ => {}
            }
        }
        if open {
            return Err("unclosed <".into());
        }
        Ok(())
    }

    #[test]
    fn a_cut_never_splits_a_link_a_mention_or_an_entity() {
        let link = "<https://app.hubspot.com/contacts/1/record/0-3/301|Acme &amp; Co renewal>";
        let text = format!("Evidence: {link} and <@U123> &amp; <!here> end");
        let n = text.chars().count();
        for max in 1..=n + 1 {
            let out = cut(&text, max);
            assert!(out.chars().count() <= max, "{max}: {out}");
            whole_markup(&out).unwrap_or_else(|e| panic!("{max}: {e}: {out}"));
        }
        // The label is shortened, never the URL.
        let head = "Evidence: <https://app.hubspot.com/contacts/1/record/0-3/301|";
        let at = head.chars().count() + 6;
        assert_eq!(cut(&text, at), format!("{head}Acme…>"));
        // ...and never inside its entity: `Acme &amp;` fits whole or not at all.
        assert_eq!(cut(&text, at + 3), format!("{head}Acme …>"));
        assert_eq!(cut(&text, at + 6), format!("{head}Acme &amp;…>"));
        // No room for the URL: the link goes whole.
        assert_eq!(cut(&text, 20), "Evidence: …");
        // Mentions are kept or dropped whole.
        let mention = format!("{link} and <@U123>");
        let before = link.chars().count() + 5;
        assert_eq!(cut(&mention, before + 3), format!("{link} and …"));
        assert_eq!(
            cut(&format!("{mention}!!"), before + 8),
            format!("{mention}…")
        );
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Long names and record links on, cut anywhere.
        #[test]
        fn any_cut_keeps_the_limit_and_whole_markup(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "[a-zA-Z &<>|@!]{0,40}".prop_map(|t| escape(&t)),
                    ("[a-z/.:0-9]{1,60}", "[a-zA-Z &<>]{0,80}").prop_map(|(u, l)| {
                        wrap(Some(&format!("https://{u}/{{id}}")), "0-3", escape(&l))
                    }),
                    "[A-Z0-9]{1,12}".prop_map(|u| format!("<@U{u}>")),
                    proptest::prop_oneof![
                        proptest::strategy::Just("<!here>".to_string()),
                        proptest::strategy::Just("<!channel>".to_string()),
                    ],
                ],
                0..12,
            ),
            max in 1usize..400,
        ) {
            let text = parts.concat();
            let out = cut(&text, max);
            proptest::prop_assert!(out.chars().count() <= max, "{} > {max}: {out}", out.chars().count());
            if let Err(e) = whole_markup(&out) {
                proptest::prop_assert!(false, "{e}: {out:?} from {text:?}");
            }
            if text.chars().count() <= max {
                proptest::prop_assert_eq!(&out, &text);
            } else {
                // What is kept is the text's own start.
                let kept = out.trim_end_matches('…').trim_end_matches("…>");
                let stem = kept.strip_suffix('…').unwrap_or(kept);
                proptest::prop_assert!(text.starts_with(stem), "{out:?} from {text:?}");
            }
        }
    }

    #[test]
    fn record_links_are_safe_slack_links() {
        let links = Links {
            account: Some("https://acme.my.salesforce.com/lightning/r/Account/{id}/view".into()),
            opportunity: None,
        };
        assert_eq!(
            wrap(links.account.as_ref(), "001|x>y", "Acme".into()),
            "<https://acme.my.salesforce.com/lightning/r/Account/001%7Cx%3Ey/view|Acme>"
        );
        assert_eq!(wrap(None, "001", "Acme".into()), "Acme");
    }
}

#[cfg(test)]
mod wording {
    //! The rendered message, read field by field as a channel manager would.
    use super::*;
    use crate::engine::{Match, Method};
    use chrono::{TimeZone, Utc};

    fn at(y: i32, m: u32, d: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn registration(id: &str, partner: (&str, &str), status: &str) -> Evidence {
        Evidence {
            record: Record::Registration,
            id: id.into(),
            name: Some("Stark Industries".into()),
            partner_id: Some(partner.0.into()),
            partner_name: Some(partner.1.into()),
            at: at(2026, 8, 25),
            status: status.into(),
            approved_at: (status == "approved").then(|| at(2026, 9, 1)),
            expires_at: Some(at(2027, 2, 28)),
            close_date: None,
            rep: Some("PR-02".into()),
            owner_id: None,
            how: Some(Match {
                method: Method::Domain,
                score: 0.97,
            }),
            amount: Some(120_000.0),
            currency: Some("USD".into()),
            stage: None,
            original_amount: None,
            original_currency: None,
        }
    }

    fn opportunity(id: &str, partner: Option<(&str, &str)>, status: &str) -> Evidence {
        Evidence {
            record: Record::Opportunity,
            id: id.into(),
            name: Some("Stark - Enterprise licence".into()),
            partner_id: partner.map(|p| p.0.into()),
            partner_name: partner.map(|p| p.1.into()),
            at: at(2026, 9, 5),
            status: status.into(),
            approved_at: None,
            expires_at: None,
            close_date: chrono::NaiveDate::from_ymd_opt(2026, 10, 20),
            rep: None,
            owner_id: Some("U-1".into()),
            how: None,
            amount: Some(210_000.0),
            currency: Some("USD".into()),
            stage: Some("Closed Won".into()),
            original_amount: None,
            original_currency: None,
        }
    }

    const NORTHWIND: (&str, &str) = ("P-1", "Northwind Solutions");
    const LITWARE: (&str, &str) = ("P-4", "Litware Advisors");

    /// A won direct deal on an account Northwind registered first.
    fn won_direct() -> Finding {
        Finding {
            kind: FindingKind::DirectVsPartner,
            key: "direct_vs_partner:R-02:O-005".into(),
            severity: Severity::Critical,
            account_id: Some("A-10".into()),
            partner_ids: vec!["P-1".into()],
            registration_ids: vec!["R-02".into()],
            opportunity_ids: vec!["O-005".into()],
            first_in: "R-02".into(),
            how: Some(Match {
                method: Method::Domain,
                score: 0.97,
            }),
            expires_at: Some(at(2027, 2, 28)),
            summary: "Direct opportunity O-005 was won.".into(),
            account_name: Some("Stark Industries Inc.".into()),
            evidence: vec![
                registration("R-02", NORTHWIND, "approved"),
                opportunity("O-005", None, "won"),
            ],
        }
    }

    fn names() -> Names {
        let mut n = Names::default().with_links(Links {
            account: Some("https://crm.example/a/{id}".into()),
            opportunity: Some("https://crm.example/o/{id}".into()),
        });
        n.users.insert("U-1".into(), "Dana Whitfield".into());
        n.reps.insert("PR-02".into(), "Ben Carter".into());
        n
    }

    /// The message's parts: header, sections, fields, context lines.
    struct Parts {
        header: String,
        fields: Vec<String>,
        evidence: String,
        next_step: String,
        all: String,
    }

    fn parts(f: &Finding) -> Parts {
        let v = finding(f, Reason::New, None, &names());
        let blocks = v["blocks"].as_array().unwrap();
        let texts = |pick: &dyn Fn(&Value) -> Vec<String>| -> Vec<String> {
            blocks.iter().flat_map(pick).collect()
        };
        let sections = texts(&|b| {
            b["text"]["text"]
                .as_str()
                .map(String::from)
                .into_iter()
                .collect()
        });
        let fields = texts(&|b| {
            b["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["text"].as_str().map(String::from))
                .collect()
        });
        let context = texts(&|b| {
            b["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["text"].as_str().map(String::from))
                .collect()
        });
        Parts {
            header: sections[0].clone(),
            fields,
            evidence: sections
                .iter()
                .find(|s| s.starts_with("*Evidence*"))
                .cloned()
                .unwrap_or_default(),
            next_step: context
                .iter()
                .find(|s| s.starts_with("*Next step:*"))
                .cloned()
                .unwrap_or_default(),
            all: v.to_string(),
        }
    }

    fn field<'a>(p: &'a Parts, label: &str) -> Option<&'a str> {
        p.fields
            .iter()
            .find_map(|f| f.strip_prefix(&format!("*{label}*\n")))
    }

    fn line<'a>(p: &'a Parts, id: &str) -> &'a str {
        p.evidence
            .lines()
            .find(|l| l.starts_with("• ") && l.contains(id))
            .unwrap_or_else(|| panic!("no evidence line for {id}: {}", p.evidence))
    }

    #[test]
    fn a_won_direct_deal_reads_field_by_field() {
        let p = parts(&won_direct());
        assert_eq!(
            p.header,
            ":rotating_light: Direct deal won on a partner-registered account (critical)"
        );
        assert_eq!(
            field(&p, "Account"),
            Some("<https://crm.example/a/A-10|Stark Industries Inc. (A-10)>")
        );
        assert_eq!(field(&p, "Partner"), Some("Northwind Solutions (P-1)"));
        assert_eq!(field(&p, "Amount at stake"), Some("USD 210,000 (won)"));
        assert_eq!(
            field(&p, "First in"),
            Some("R-02 by Northwind Solutions (P-1), 2026-08-25")
        );
        assert_eq!(field(&p, "Protected until"), Some("2027-02-28"));
        assert_eq!(field(&p, "Match"), Some("domain (score 0.97)"));

        // The opportunity: its name is the link, then status, close date,
        // stage, amount in the base currency, owner.
        assert_eq!(
            line(&p, "O-005"),
            "• Opportunity <https://crm.example/o/O-005|Stark - Enterprise licence> (O-005): won 2026-10-20, stage Closed Won, USD 210,000, created 2026-09-05, owner Dana Whitfield (U-1)"
        );
        // The registration: each date and the status said once, its amount.
        assert_eq!(
            line(&p, "R-02"),
            "• Registration R-02 \"Stark Industries\": submitted 2026-08-25, approved 2026-09-01, USD 120,000, partner rep Ben Carter (PR-02), matched by domain (0.97) — *first in*"
        );
        // Grouped by party.
        assert!(
            p.evidence
                .starts_with("*Evidence*\n*Northwind Solutions (P-1)*\n• Registration R-02"),
            "{}",
            p.evidence
        );
        assert!(
            p.evidence.contains("\n*Direct sales*\n• Opportunity"),
            "{}",
            p.evidence
        );

        // A won deal cannot be handed over: credit or compensation.
        assert!(p.next_step.contains("already won"), "{}", p.next_step);
        assert!(
            p.next_step.contains("agree with Northwind Solutions"),
            "{}",
            p.next_step
        );
        assert!(p.next_step.contains("compensation"), "{}", p.next_step);
        assert!(
            p.next_step.contains("Dana Whitfield (U-1)"),
            "{}",
            p.next_step
        );
        assert!(!p.next_step.contains("hand"), "{}", p.next_step);
    }

    #[test]
    fn an_open_direct_deal_is_brought_to_the_partner_or_closed() {
        let mut f = won_direct();
        f.severity = Severity::Warning;
        f.evidence[1] = opportunity("O-005", None, "open");
        let p = parts(&f);
        assert!(
            p.header
                .contains("Direct deal on a partner-registered account")
        );
        assert_eq!(field(&p, "Amount at stake"), Some("USD 210,000"));
        assert!(
            line(&p, "O-005").contains(": open, closing 2026-10-20, stage Closed Won"),
            "{}",
            p.evidence
        );
        assert!(
            p.next_step.contains("bring Northwind Solutions onto"),
            "{}",
            p.next_step
        );
    }

    #[test]
    fn missing_amounts_and_stages_are_said_not_skipped() {
        let mut f = won_direct();
        f.evidence[0].amount = None;
        f.evidence[1].amount = None;
        f.evidence[1].stage = None;
        let p = parts(&f);
        assert!(
            line(&p, "R-02").contains("no amount given"),
            "{}",
            p.evidence
        );
        assert!(
            line(&p, "O-005").contains("no stage, amount unknown"),
            "{}",
            p.evidence
        );
        assert_eq!(field(&p, "Amount at stake"), None);
    }

    #[test]
    fn a_foreign_amount_shows_in_the_base_currency_and_as_given() {
        let mut f = won_direct();
        f.evidence[1].amount = Some(27_940.0);
        f.evidence[1].original_amount = Some(22_000.0);
        f.evidence[1].original_currency = Some("GBP".into());
        let p = parts(&f);
        assert!(
            line(&p, "O-005").contains(", USD 27,940 (GBP 22,000), "),
            "{}",
            p.evidence
        );
        assert_eq!(field(&p, "Amount at stake"), Some("USD 27,940 (won)"));
        // Without a rate: the amount as given, and why it is not converted.
        f.evidence[1].amount = None;
        let p = parts(&f);
        assert!(
            line(&p, "O-005").contains(", GBP 22,000 (no USD rate), "),
            "{}",
            p.evidence
        );
    }

    #[test]
    fn a_bypassed_registration_says_whether_the_deal_lost_or_changed_its_partner() {
        let mut lost = won_direct();
        lost.kind = FindingKind::PartnerBypassed;
        lost.evidence[1] = opportunity("O-005", None, "open");
        let p = parts(&lost);
        assert!(
            p.header.contains("Registered deal lost its partner"),
            "{}",
            p.header
        );
        assert!(
            p.next_step
                .starts_with("*Next step:* Put Northwind Solutions back"),
            "{}",
            p.next_step
        );

        let mut moved = lost.clone();
        moved.evidence[1] = opportunity("O-005", Some(LITWARE), "open");
        moved.partner_ids = vec!["P-1".into(), "P-4".into()];
        let p = parts(&moved);
        assert!(
            p.header
                .contains("Registered deal moved to another partner"),
            "{}",
            p.header
        );
        assert!(
            p.next_step.contains("Northwind Solutions (registered, protected until 2027-02-28) or Litware Advisors (now on the opportunity)"),
            "{}",
            p.next_step
        );
        assert_eq!(
            field(&p, "Partners"),
            Some("Northwind Solutions (P-1), Litware Advisors (P-4)")
        );
        assert!(
            p.evidence
                .contains("*Litware Advisors (P-4)*\n• Opportunity"),
            "{}",
            p.evidence
        );
        assert_eq!(
            resolved(&moved, &names())["blocks"][0]["text"]["text"],
            ":white_check_mark: Resolved: Registered deal moved to another partner"
        );
    }

    #[test]
    fn claims_are_grouped_by_partner() {
        let mut f = won_direct();
        f.kind = FindingKind::PartnerVsPartner;
        f.severity = Severity::Warning;
        f.partner_ids = vec!["P-1".into(), "P-4".into()];
        f.expires_at = None;
        f.evidence = vec![
            registration("R-07", NORTHWIND, "approved"),
            opportunity("O-013", Some(NORTHWIND), "open"),
            registration("R-08", LITWARE, "submitted"),
        ];
        f.first_in = "R-07".into();
        let p = parts(&f);
        assert_eq!(
            p.evidence.matches("*Northwind Solutions (P-1)*").count(),
            1,
            "{}",
            p.evidence
        );
        assert_eq!(
            p.evidence.matches("*Litware Advisors (P-4)*").count(),
            1,
            "{}",
            p.evidence
        );
        assert!(
            p.evidence
                .contains("*Northwind Solutions (P-1)*\n• Registration R-07")
                && p.evidence
                    .contains("\n• Opportunity <https://crm.example/o/O-013|"),
            "{}",
            p.evidence
        );
        // Status said once; each registration's own protection end.
        assert!(
            line(&p, "R-08")
                .contains(": submitted 2026-08-25, not yet approved, protected until 2027-02-28,"),
            "{}",
            p.evidence
        );
        assert_eq!(
            p.evidence.matches("— *first in*").count(),
            1,
            "{}",
            p.evidence
        );
        assert!(
            p.next_step
                .contains("between Northwind Solutions and Litware Advisors"),
            "{}",
            p.next_step
        );
    }

    #[test]
    fn a_single_registration_has_no_first_in() {
        for kind in [
            FindingKind::RegistrationExpiring,
            FindingKind::RegistrationExpired,
        ] {
            let mut f = won_direct();
            f.kind = kind;
            f.evidence.truncate(1);
            f.evidence[0].status = "expired".into();
            let p = parts(&f);
            assert!(!p.all.contains("First in"), "{}", p.all);
            assert!(!p.all.contains("first in"), "{}", p.all);
            assert!(
                line(&p, "R-02").contains("approved 2026-09-01, now expired"),
                "{}",
                p.evidence
            );
        }
        let mut f = won_direct();
        f.kind = FindingKind::RegistrationExpired;
        f.evidence.truncate(1);
        let p = parts(&f);
        assert_eq!(field(&p, "Protection ended"), Some("2027-02-28"));
        assert_eq!(field(&p, "Amount at stake"), Some("USD 120,000"));
    }

    #[test]
    fn without_a_link_the_opportunity_name_is_quoted() {
        let f = won_direct();
        let v = finding(&f, Reason::New, None, &Names::default());
        assert!(
            v.to_string()
                .contains("• Opportunity \\\"Stark - Enterprise licence\\\" (O-005): won"),
            "{v}"
        );
    }

    /// Long names and record links on: every text keeps Slack's limits and
    /// every link, mention and escape whole, wherever the cut falls (the
    /// partner's name grows a character at a time, moving the cut across a
    /// whole evidence line).
    #[test]
    fn long_names_with_links_are_cut_whole() {
        let long = |c: &str| format!("{} & <Co>", c.repeat(400));
        let mut cut_in_a_link = 0;
        for pad in (0..400).step_by(3) {
            let mut f = won_direct();
            f.kind = FindingKind::PartnerVsPartner;
            f.account_name = Some(long("Stark "));
            f.summary = long("Summary ");
            f.evidence = (0..12)
                .map(|i| {
                    let mut e = opportunity(&format!("O-{i}"), Some(NORTHWIND), "open");
                    e.name = Some(long("Enterprise licence "));
                    e.partner_name = Some("N".repeat(pad % 90));
                    e.owner_id = Some("x".repeat(pad));
                    e
                })
                .collect();
            let v = finding(&f, Reason::New, Some(&long("why ")), &names());
            let mut texts = vec![(v["text"].as_str().unwrap().to_string(), FALLBACK_MAX)];
            for b in v["blocks"].as_array().unwrap() {
                let max = if b["type"] == "header" {
                    HEADER_MAX
                } else {
                    SECTION_MAX
                };
                if let Some(t) = b["text"]["text"].as_str() {
                    texts.push((t.to_string(), max));
                }
                for x in b["fields"].as_array().into_iter().flatten() {
                    texts.push((x["text"].as_str().unwrap().to_string(), FIELD_MAX));
                }
                for x in b["elements"].as_array().into_iter().flatten() {
                    texts.push((x["text"].as_str().unwrap().to_string(), SECTION_MAX));
                }
            }
            let evidence = &texts
                .iter()
                .find(|(t, _)| t.starts_with("*Evidence*"))
                .unwrap()
                .0;
            assert!(
                evidence.contains("<https://crm.example/o/O-0|"),
                "{evidence}"
            );
            cut_in_a_link += usize::from(evidence.ends_with("…>"));
            for (t, max) in &texts {
                assert!(t.chars().count() <= *max, "{} > {max}", t.chars().count());
                super::tests::whole_markup(t).unwrap_or_else(|e| panic!("{pad}: {e}: {t}"));
            }
        }
        assert!(cut_in_a_link > 0, "no cut fell in a link");
    }

    #[test]
    fn amounts_are_grouped_and_keep_cents_only_when_there_are_any() {
        assert_eq!(money(0.0), "0");
        assert_eq!(money(210_000.0), "210,000");
        assert_eq!(money(1_234_567.456), "1,234,567.46");
        assert_eq!(money(-1000.5), "-1,000.50");
    }

    #[test]
    fn the_digest_points_to_a_command_that_reads_any_source() {
        let fs: Vec<Finding> = (0..30)
            .map(|i| {
                let mut f = won_direct();
                f.key = format!("k{i}");
                f
            })
            .collect();
        let refs: Vec<&Finding> = fs.iter().collect();
        let v = digest(&refs, 0, 30, &names()).to_string();
        assert!(
            v.contains("…and 5 more: `channel-sync findings` lists every open finding (`channel-sync findings show KEY` tells one's story)."),
            "{v}"
        );
        assert!(!v.contains("channel-sync detect"), "{v}");
    }

    #[test]
    fn the_owner_and_the_partner_manager_are_mentioned_only_through_the_map() {
        let f = won_direct();
        let mut n = names();
        n.user_emails
            .insert("U-1".into(), "dana@example.com".into());
        n.user_emails.insert("U-9".into(), "pat@example.com".into());
        n.partner_managers.insert("P-1".into(), "U-9".into());
        // Nobody known to Slack yet: no mentions, nothing from the data.
        let plain = finding(&f, Reason::New, None, &n).to_string();
        assert!(!plain.contains("<@"), "{plain}");
        n.mentions
            .insert("dana@example.com".into(), "U012ABC".into());
        n.mentions
            .insert("pat@example.com".into(), "U034DEF".into());
        let v = finding(&f, Reason::New, None, &n);
        let sections: Vec<&str> = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .collect();
        assert!(
            sections.contains(
                &"*For:* <@U012ABC> (direct owner), <@U034DEF> (partner manager, Northwind Solutions)"
            ),
            "{sections:?}"
        );
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("<@U012ABC> <@U034DEF> "), "{text}");
        // A name in the data that looks like a mention stays text, and an id
        // that does not look like a user id is never written.
        let mut sneaky = won_direct();
        sneaky.evidence[0].partner_name = Some("<@U999> <!channel>".into());
        n.mentions
            .insert("pat@example.com".into(), "<!channel>".into());
        let body = finding(&sneaky, Reason::New, None, &n).to_string();
        assert!(
            !body.contains("<@U999>") && !body.contains("<!channel>"),
            "{body}"
        );
        assert!(body.contains("<@U012ABC>"), "{body}");
        // Not a conflict: nobody is mentioned.
        let mut expiring = won_direct();
        expiring.kind = FindingKind::RegistrationExpiring;
        assert!(
            !finding(&expiring, Reason::New, None, &n)
                .to_string()
                .contains("<@")
        );
    }

    /// Every alert the sample raises shows, for every record in evidence,
    /// an amount (or that it is missing), and for opportunities a stage.
    #[test]
    fn every_record_in_the_sample_alerts_has_amount_and_stage() {
        let settings =
            crate::config::Settings::load(Some(std::path::Path::new("config/channel-sync.toml")))
                .unwrap();
        let l = crate::connectors::files::load(std::path::Path::new("sample"), &settings.scorecard)
            .unwrap();
        let now = crate::values::parse_timestamp("2026-11-26T00:00:00Z").unwrap();
        let ev = crate::engine::evaluate(&l.dataset, &settings, now);
        assert!(ev.findings.len() > 10);
        for f in &ev.findings {
            let p = parts(f);
            let lines: Vec<&str> = p.evidence.lines().filter(|l| l.starts_with("• ")).collect();
            assert_eq!(lines.len(), f.evidence.len(), "{}", p.evidence);
            for l in lines {
                assert!(
                    l.contains("USD ")
                        || l.contains("amount unknown")
                        || l.contains("no amount given"),
                    "{l}"
                );
                if l.starts_with("• Opportunity") {
                    assert!(l.contains(", stage ") || l.contains("no stage"), "{l}");
                }
                assert!(
                    !l.contains("approved, approved") && !l.contains(", submitted,"),
                    "{l}"
                );
            }
        }
        // O-013 is in GBP: converted at 1.27, and shown as given.
        let baker = ev
            .findings
            .iter()
            .find(|f| f.key == "partner_vs_partner:A-05")
            .unwrap();
        let evidence = parts(baker).evidence;
        assert!(
            evidence.contains(", USD 27,940 (GBP 22,000), "),
            "{evidence}"
        );
    }
}
