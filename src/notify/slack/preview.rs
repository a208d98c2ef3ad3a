//! A plain-text preview of a Block Kit message: what a person would read in
//! Slack, for dry runs in a terminal (`once --dry-run`). Links show their
//! label with the address after it, entities are decoded, and blocks become
//! lines: the header first, sections and fields indented, context in
//! parentheses.

use serde_json::Value;

/// The preview of one message body (Block Kit JSON, as in the outbox). A
/// body that is not Block Kit JSON is shown as it is.
pub(crate) fn preview(body: &str) -> String {
    let Ok(message) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    let Some(blocks) = message["blocks"].as_array() else {
        return message["text"]
            .as_str()
            .map(plain)
            .unwrap_or_else(|| body.to_string());
    };
    let mut out = String::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("header") => {
                let title = plain(text_of(&block["text"]));
                out.push_str(&title);
                out.push('\n');
                out.push_str(&"=".repeat(title.chars().count().min(72)));
                out.push('\n');
            }
            Some("section") => {
                if let Some(t) = block["text"].as_object().map(|_| text_of(&block["text"])) {
                    indent(&mut out, &plain(t));
                }
                if let Some(fields) = block["fields"].as_array() {
                    for f in fields {
                        indent(&mut out, &plain(text_of(f)));
                    }
                }
            }
            Some("context") => {
                let parts: Vec<String> = block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| plain(text_of(e)))
                    .filter(|t| !t.is_empty())
                    .collect();
                if !parts.is_empty() {
                    indent(&mut out, &format!("({})", parts.join(" · ")));
                }
            }
            Some("divider") => out.push_str("  ----\n"),
            Some("actions") => {
                let labels: Vec<String> = block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| format!("[{}]", plain(text_of(&e["text"]))))
                    .collect();
                indent(&mut out, &labels.join(" "));
            }
            _ => {}
        }
    }
    out
}

fn text_of(v: &Value) -> &str {
    v["text"].as_str().or_else(|| v.as_str()).unwrap_or("")
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// Slack mrkdwn to plain text: `<url|label>` -> `label (url)`, `<url>` ->
/// `url`, `<@U1>` / `<!here>` kept readable, `&amp; &lt; &gt;` decoded, and
/// bold/italic markers around words dropped.
pub(crate) fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        match inner.split_once('|') {
            Some((target, label)) if target.starts_with('@') || target.starts_with('!') => {
                out.push('@');
                out.push_str(label.trim_start_matches('@'));
            }
            Some((url, label)) => {
                out.push_str(label);
                out.push_str(" (");
                out.push_str(url);
                out.push(')');
            }
            None if inner.starts_with('@') || inner.starts_with('!') => {
                out.push('@');
                out.push_str(&inner[1..]);
            }
            None => out.push_str(inner),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let out = strip_emphasis(&out);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Drops `*` and `_` used as emphasis markers (at a word's edge), keeping
/// them inside words (`snake_case`, `5*3`).
fn strip_emphasis(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '*' || c == '_' {
            let before = i.checked_sub(1).map(|j| chars[j]);
            let after = chars.get(i + 1).copied();
            let word = |x: Option<char>| x.is_some_and(|x| x.is_alphanumeric());
            if !(word(before) && word(after)) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_mentions_entities_and_emphasis_read_as_plain_text() {
        assert_eq!(
            plain("*Acme &amp; Co* on <https://x.example/o/1|Acme renewal> by <@U123>"),
            "Acme & Co on Acme renewal (https://x.example/o/1) by @U123"
        );
        assert_eq!(plain("<https://x.example>"), "https://x.example");
        assert_eq!(
            plain("a &lt;b&gt; _it_ snake_case 5*3"),
            "a <b> it snake_case 5*3"
        );
        assert_eq!(plain("unclosed <tag"), "unclosed <tag");
        // Mentions read as a person sees them: `@` and the label or the name.
        assert_eq!(plain("<@U123|jane> and <!here>"), "@jane and @here");
        assert_eq!(plain("<!subteam^S1|@revops>"), "@revops");
    }

    #[test]
    fn a_block_kit_message_becomes_lines_a_person_reads() {
        let body = serde_json::json!({
            "text": "fallback",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Direct deal on a registered account"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*What happened*\nO-7 on <https://crm/a/3|Acme>"}},
                {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Partner*\nNorthwind"}]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "key direct_vs_partner:R-1:O-7"}]},
                {"type": "divider"},
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Accept"}},
                    {"type": "button", "text": {"type": "plain_text", "text": "Snooze"}}
                ]}
            ]
        })
        .to_string();
        let text = preview(&body);
        assert_eq!(
            text,
            "Direct deal on a registered account\n\
             ===================================\n  \
             What happened\n  O-7 on Acme (https://crm/a/3)\n  Partner\n  Northwind\n  \
             (key direct_vs_partner:R-1:O-7)\n  ----\n  [Accept] [Snooze]\n"
        );
        assert!(!text.contains('{'), "no JSON");
    }

    #[test]
    fn a_body_that_is_not_block_kit_is_shown_as_it_is() {
        assert_eq!(preview("not json"), "not json");
        assert_eq!(preview(r#"{"text":"only *text*"}"#), "only text");
    }
}
