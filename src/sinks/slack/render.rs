//! Slack messages (Block Kit with a plain `text` fallback) for findings,
//! resolutions and digests. Every value that comes from data goes through
//! [`escape`], so a partner named `<!channel>` pings nobody, and every text
//! is cut to Slack's limits.

use serde_json::{Value, json};

use crate::alerts::Reason;
use crate::engine::{Finding, FindingKind, Record, Severity};
use crate::fast::FastMap;

/// Slack's limits (api.slack.com; see shared/reference/slack-and-writeback.md).
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const FALLBACK_MAX: usize = 3000;
const EVIDENCE_LINES: usize = 10;
const DIGEST_LINES: usize = 25;

/// Where a CRM record opens: URL templates with `{id}` (none for files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    pub account: Option<String>,
    pub opportunity: Option<String>,
}

impl Links {
    fn url(template: Option<&String>, id: &str) -> Option<String> {
        let id: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_string()
                } else {
                    format!("%{:02X}", c as u32 & 0xff)
                }
            })
            .collect();
        template.map(|t| t.replace("{id}", &id))
    }

    /// `<url|label>` when the record has a link, else the label.
    fn wrap(template: Option<&String>, id: &str, label: String) -> String {
        match Links::url(template, id) {
            Some(url) => format!("<{}|{label}>", url.replace(['|', '>', '<'], "")),
            None => label,
        }
    }
}

/// Names for the ids a finding carries, and where records open.
#[derive(Debug, Default)]
pub struct Names {
    /// Internal user id -> name (opportunity owners).
    pub users: FastMap<String, String>,
    /// Rep id and lower-cased e-mail -> name.
    pub reps: FastMap<String, String>,
    pub links: Links,
}

impl Names {
    pub fn from_dataset(d: &crate::model::Dataset) -> Names {
        let users = d
            .users
            .iter()
            .filter_map(|u| u.name.clone().map(|n| (u.id.clone(), n)))
            .collect();
        let mut reps = FastMap::default();
        for r in &d.reps {
            if let Some(n) = &r.name {
                reps.insert(r.id.clone(), n.clone());
                if let Some(e) = &r.email {
                    reps.insert(e.to_lowercase(), n.clone());
                }
            }
        }
        Names {
            users,
            reps,
            links: Links::default(),
        }
    }

    pub fn with_links(mut self, links: Links) -> Names {
        self.links = links;
        self
    }

    fn user(&self, id: &str) -> String {
        match self.users.get(id) {
            Some(n) => format!("{n} ({id})"),
            None => id.to_string(),
        }
    }

    fn rep(&self, reference: &str) -> String {
        match self
            .reps
            .get(reference)
            .or_else(|| self.reps.get(&reference.to_lowercase()))
        {
            Some(n) => format!("{n} ({reference})"),
            None => reference.to_string(),
        }
    }
}

/// Escapes Slack's three control characters (and only those).
pub fn escape(s: &str) -> String {
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

pub fn title(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::DirectVsPartner => "Direct deal on a partner-registered account",
        FindingKind::PartnerBypassed => "Registered deal lost its partner",
        FindingKind::PartnerVsPartner => "Two partners claim one customer",
        FindingKind::RegistrationExpiring => "Registration about to expire",
        FindingKind::RegistrationExpired => "Registration expired without a win",
    }
}

fn icon(s: Severity) -> &'static str {
    match s {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":hourglass_flowing_sand:",
    }
}

fn next_step(f: &Finding) -> String {
    let partners = f
        .evidence
        .iter()
        .filter_map(|e| e.partner_name.as_deref())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(" and ");
    let partners = escape(&partners);
    match f.kind {
        FindingKind::DirectVsPartner => format!(
            "Check the registration with {partners} and the direct owner; if it stands, hand the opportunity to the partner or close it under the rules of engagement."
        ),
        FindingKind::PartnerBypassed => {
            "Put the registering partner back on the opportunity, or record why it was removed."
                .to_string()
        }
        FindingKind::PartnerVsPartner => format!(
            "Decide ownership between {partners} under the program rules (first in: {}), and tell the partner that loses.",
            escape(&f.first_in)
        ),
        FindingKind::RegistrationExpiring => format!(
            "Ask {partners} for a status update, or extend the protection if the deal is moving."
        ),
        FindingKind::RegistrationExpired => {
            format!("Confirm with {partners} whether to close the registration or register again.")
        }
    }
}

fn evidence_lines(f: &Finding, names: &Names) -> String {
    let mut lines = Vec::new();
    for e in f.evidence.iter().take(EVIDENCE_LINES) {
        let who = match (&e.partner_name, &e.partner_id) {
            (Some(n), Some(id)) => format!("{n} ({id})"),
            (None, Some(id)) => id.clone(),
            _ => "direct sales".into(),
        };
        let mut line = format!("{} {} by {who}", e.record.as_str(), e.id);
        if let Some(n) = &e.name {
            line.push_str(&format!(" \"{n}\""));
        }
        let verb = if e.record == Record::Registration {
            "submitted"
        } else {
            "created"
        };
        line.push_str(&format!(
            ", {verb} {}, {}",
            e.at.format("%Y-%m-%d"),
            e.status
        ));
        if let Some(a) = e.approved_at {
            line.push_str(&format!(", approved {}", a.format("%Y-%m-%d")));
        }
        if let Some(d) = e.close_date {
            line.push_str(&format!(", close {d}"));
        }
        if let Some(r) = &e.rep {
            line.push_str(&format!(", rep {}", names.rep(r)));
        }
        if let Some(o) = &e.owner_id {
            line.push_str(&format!(", owner {}", names.user(o)));
        }
        if let Some(m) = e.how {
            line.push_str(&format!(
                ", matched by {} ({:.2})",
                m.method.as_str(),
                m.score
            ));
        }
        if e.id == f.first_in {
            line.push_str(" — first in");
        }
        let mut line = format!("• {}", escape(&line));
        if e.record == Record::Opportunity
            && let Some(url) = Links::url(names.links.opportunity.as_ref(), &e.id)
        {
            line.push_str(&format!(" <{}|open>", url.replace(['|', '>', '<'], "")));
        }
        lines.push(line);
    }
    if f.evidence.len() > EVIDENCE_LINES {
        lines.push(format!("…and {} more", f.evidence.len() - EVIDENCE_LINES));
    }
    lines.join("\n")
}

/// The message for a finding that is new, changed, or due a reminder.
pub fn finding(f: &Finding, reason: Reason, why: Option<&str>, names: &Names) -> Value {
    let prefix = match reason {
        Reason::Changed => "Updated: ",
        Reason::Reminder => "Reminder: ",
        _ => "",
    };
    let head = format!("{prefix}{} ({})", title(f.kind), f.severity.as_str());
    let summary = escape(&f.summary);
    let mut fields = Vec::new();
    if let (Some(id), Some(name)) = (&f.account_id, &f.account_name) {
        fields.push(format!(
            "*Account*\n{}",
            Links::wrap(
                names.links.account.as_ref(),
                id,
                escape(&format!("{name} ({id})"))
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
                .map_or_else(|| p.clone(), |n| format!("{n} ({p})"))
        })
        .collect();
    if !partners.is_empty() {
        fields.push(format!("*Partners*\n{}", escape(&partners.join(", "))));
    }
    fields.push(format!("*First in*\n{}", escape(&f.first_in)));
    if let Some(x) = f.expires_at {
        fields.push(format!("*Protected until*\n{}", x.format("%Y-%m-%d")));
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
    blocks.push(json!({
        "type": "section",
        "fields": fields.iter().map(|t| mrkdwn(t, FIELD_MAX)).collect::<Vec<_>>(),
    }));
    blocks.push(section(&format!(
        "*Evidence*\n{}",
        evidence_lines(f, names)
    )));
    blocks.push(context(&format!("*Next step:* {}", next_step(f))));
    blocks.push(context(&format!(
        "channel-sync · {} · {}",
        escape(&f.key),
        f.kind.as_str()
    )));
    let text = match why {
        Some(why) => format!("{head}: {summary} What changed: {}", escape(why)),
        None => format!("{head}: {summary}"),
    };
    json!({"text": cut(&text, FALLBACK_MAX), "blocks": blocks})
}

/// The message for a conflict that no longer appears in the data.
pub fn resolved(f: &Finding, _names: &Names) -> Value {
    let head = format!("Resolved: {}", title(f.kind));
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
pub fn digest(findings: &[&Finding], resolved: usize, total: usize, _names: &Names) -> Value {
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
            "…and {} more. Run `channel-sync detect` for the full report.",
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
    fn whole_markup(out: &str) -> Result<(), String> {
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
                        Links::wrap(Some(&format!("https://{u}/{{id}}")), "0-3", escape(&l))
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
            Links::wrap(links.account.as_ref(), "001|x>y", "Acme".into()),
            "<https://acme.my.salesforce.com/lightning/r/Account/001%7Cx%3Ey/view|Acme>"
        );
        assert_eq!(Links::wrap(None, "001", "Acme".into()), "Acme");
    }
}
