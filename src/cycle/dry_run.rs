//! What a dry run prints: the alerts it would send (as read in the channel,
//! or the raw JSON) and the records it would write.

use std::io::Write;

use super::{CycleError, Preview};
use crate::connectors::writeback::RecordUpdate;
use crate::notify::Notifiers;
use crate::store::{NewMessage, OutboxRow};

/// Prints the messages waiting in the outbox and those this cycle would
/// add; returns how many.
pub(super) fn print_alerts(
    out: &mut (dyn Write + Send),
    notifiers: &Notifiers,
    preview: Preview,
    pending: Vec<OutboxRow>,
    messages: Vec<NewMessage>,
) -> Result<usize, CycleError> {
    let mut waiting: Vec<_> = pending
        .into_iter()
        .map(|r| (r.route, r.channel, r.reason, r.finding_key, r.body))
        .collect();
    waiting.extend(
        messages
            .into_iter()
            .map(|m| (m.route, m.channel, m.reason, m.finding_key, m.body)),
    );
    writeln!(out, "Would send {} alert(s):", waiting.len()).map_err(anyhow::Error::from)?;
    for (i, (route, channel, reason, key, body)) in waiting.iter().enumerate() {
        let shown = match (preview, notifiers.get(channel)) {
            (Preview::Text, Some(n)) => n.preview(body),
            _ => serde_json::from_str::<serde_json::Value>(body)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| body.clone()),
        };
        writeln!(
            out,
            "--- alert {}/{} to '{route}'{} ({reason}{})\n{}",
            i + 1,
            waiting.len(),
            // Slack, the first channel, unnamed as before.
            if channel == "slack" {
                String::new()
            } else {
                format!(" on {channel}")
            },
            key.as_deref().map(|k| format!(": {k}")).unwrap_or_default(),
            shown.trim_end()
        )
        .map_err(anyhow::Error::from)?;
    }
    Ok(waiting.len())
}

/// Prints the records a real run would write.
pub(super) fn print_writes(
    out: &mut (dyn Write + Send),
    sink: &str,
    updates: &[RecordUpdate],
) -> Result<(), CycleError> {
    writeln!(out, "Would write {} record(s) to {sink}:", updates.len())
        .map_err(anyhow::Error::from)?;
    for u in updates {
        let fields = u
            .fields
            .iter()
            .map(|(f, v)| format!("{f}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "--- write {} (partner {}): {fields}",
            u.record_id, u.partner_id
        )
        .map_err(anyhow::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_listed_one_line_each_with_their_fields() {
        let mut out = Vec::new();
        let updates = vec![RecordUpdate {
            partner_id: "P-1".into(),
            record_id: "001".into(),
            fields: vec![
                ("reps".into(), "3".into()),
                ("period".into(), "2026-Q3".into()),
            ],
        }];
        print_writes(&mut out, "files", &updates).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Would write 1 record(s) to files:\n--- write 001 (partner P-1): reps=3, period=2026-Q3\n"
        );
    }

    #[test]
    fn a_teams_alert_names_its_channel_and_a_slack_one_does_not() {
        let notifiers = Notifiers::new(
            &crate::config::AlertSettings::default(),
            &Default::default(),
            None,
        )
        .unwrap();
        let msg = |channel: &str| NewMessage {
            route: "default".into(),
            channel: channel.into(),
            finding_key: Some("k".into()),
            reason: "new".into(),
            body: "{}".into(),
        };
        let mut out = Vec::new();
        let n = print_alerts(
            &mut out,
            &notifiers,
            Preview::Json,
            Vec::new(),
            vec![msg("slack"), msg("teams")],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n, 2);
        assert!(
            text.contains("--- alert 1/2 to 'default' (new: k)"),
            "{text}"
        );
        assert!(
            text.contains("--- alert 2/2 to 'default' on teams (new: k)"),
            "{text}"
        );
    }
}
