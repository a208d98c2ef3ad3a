//! `check-config`: every problem a cycle would meet, found before it runs and
//! reported together. Values the types alone cannot check
//! ([`Settings::problems`]), the files source's folders and files, and the
//! webhook addresses (never echoed: they are secrets).

use std::path::Path;

use super::{ConfigError, CrmKind, PrmKind, Secret, Settings};

/// What `check-config` found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Each stops a cycle: exit 78.
    pub problems: Vec<ConfigError>,
    /// Worth a look, but a cycle runs.
    pub warnings: Vec<String>,
    /// One line saying what the configuration is ready for.
    pub ready_for: String,
}

/// The inputs a files CRM folder must hold, and a files PRM folder.
const CRM_FILES: [&str; 2] = ["accounts", "opportunities"];
const PRM_FILES: [&str; 3] = ["partners", "partner_reps", "registrations"];

pub(crate) fn all(settings: &Settings) -> Report {
    let mut report = Report {
        problems: settings.problems(),
        ..Report::default()
    };
    let crm_dir = settings.crm.files.dir.as_deref();
    if settings.crm.kind == Some(CrmKind::Files)
        && let Some(dir) = crm_dir
    {
        let prm_here = settings.prm.kind.is_none();
        let mut needed: Vec<&str> = CRM_FILES.to_vec();
        if prm_here {
            needed.extend(PRM_FILES);
        }
        folder(&mut report, "crm.files.dir", dir, &needed);
    }
    if let Some(out) = settings.crm.files.out_dir.as_deref()
        && out.exists()
        && !out.is_dir()
    {
        report.problems.push(ConfigError::new(
            "crm.files.out_dir",
            format!("{} is not a folder", out.display()),
        ));
    }
    if settings.prm.kind == Some(PrmKind::Files)
        && let Some(dir) = settings.prm.files.dir.as_deref()
    {
        folder(&mut report, "prm.files.dir", dir, &PRM_FILES);
    }
    let slack = &settings.alerts.slack;
    if let Some(url) = &slack.webhook_url {
        webhook(&mut report, "alerts.slack.webhook_url", url);
    }
    if let Some(url) = &settings.alerts.teams.webhook_url {
        webhook(&mut report, "alerts.teams.webhook_url", url);
        not_a_connector(&mut report, "alerts.teams.webhook_url", url);
    }
    for (name, route) in &slack.routes {
        if let Some(url) = &route.webhook_url {
            webhook(
                &mut report,
                &format!("alerts.slack.routes.{name}.webhook_url"),
                url,
            );
        }
        if let Some(url) = &route.teams_webhook_url {
            webhook(
                &mut report,
                &format!("alerts.slack.routes.{name}.teams_webhook_url"),
                url,
            );
            not_a_connector(
                &mut report,
                &format!("alerts.slack.routes.{name}.teams_webhook_url"),
                url,
            );
        }
    }
    let rv = &settings.review;
    if let Some(url) = &rv.webhook_url {
        webhook(&mut report, "review.webhook_url", url);
    }
    if let Some(url) = &rv.teams_webhook_url {
        webhook(&mut report, "review.teams_webhook_url", url);
        not_a_connector(&mut report, "review.teams_webhook_url", url);
    }
    if rv.cron.is_some() && rv.webhook_url.is_none() && rv.teams_webhook_url.is_none() {
        let reaches = if rv.route == "default" {
            slack.webhook_url.is_some() || settings.alerts.teams.webhook_url.is_some()
        } else {
            slack
                .routes
                .get(&rv.route)
                .is_some_and(|r| r.webhook_url.is_some() || r.teams_webhook_url.is_some())
        };
        if !reaches {
            report.problems.push(ConfigError::new(
                "review.route",
                format!(
                    "the review digest's route '{}' reaches neither Slack nor Teams (set its webhook, or review.webhook_url / review.teams_webhook_url)",
                    rv.route
                ),
            ));
        }
    }
    let webhooks = usize::from(slack.webhook_url.is_some())
        + usize::from(settings.alerts.teams.webhook_url.is_some())
        + slack
            .routes
            .values()
            .map(|r| {
                usize::from(r.webhook_url.is_some()) + usize::from(r.teams_webhook_url.is_some())
            })
            .sum::<usize>();
    if webhooks == 0 && settings.crm.kind.is_some() {
        report.warnings.push(
            "no Slack webhook (CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL): alerts are off".into(),
        );
    }
    report.ready_for = match settings.crm.kind {
        None => "valid for detect (set crm.kind for once and run)".to_string(),
        Some(kind) => format!(
            "ready for once and run: CRM {}, PRM {}, alerts to {}, schedule '{}'",
            serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            settings
                .prm
                .kind
                .and_then(|k| serde_json::to_value(k).ok())
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_else(|| "files (beside the CRM's)".into()),
            match webhooks {
                0 => "no webhook (alerts off)".to_string(),
                n => format!("{n} webhook(s)"),
            },
            settings.schedule.cron
        ),
    };
    report
}

/// A files-source folder: it exists, can be read, and holds every input.
fn folder(report: &mut Report, key: &str, dir: &Path, needed: &[&str]) {
    match std::fs::read_dir(dir) {
        Err(e) => report.problems.push(ConfigError::new(
            key,
            format!("cannot read the folder {}: {e}", dir.display()),
        )),
        Ok(_) => {
            let missing: Vec<String> = needed
                .iter()
                .filter(|name| {
                    !["csv", "jsonl"]
                        .iter()
                        .any(|ext| dir.join(format!("{name}.{ext}")).is_file())
                })
                .map(|name| format!("{name}.csv"))
                .collect();
            if !missing.is_empty() {
                report.problems.push(ConfigError::new(
                    key,
                    format!(
                        "{} has no {} (nor .jsonl)",
                        dir.display(),
                        missing.join(", ")
                    ),
                ));
            }
        }
    }
}

/// Teams takes Power Automate Workflows URLs only: Office 365 connector
/// webhooks (`*.webhook.office.com`) are retired.
fn not_a_connector(report: &mut Report, key: &str, url: &Secret) {
    let host = reqwest::Url::parse(url.expose())
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if host.is_some_and(|h| h == "webhook.office.com" || h.ends_with(".webhook.office.com")) {
        report.problems.push(ConfigError::new(
            key,
            "an Office 365 connector webhook (retired): create a Workflows webhook (\"When a Teams webhook request is received\") and use its URL",
        ));
    }
}

/// A webhook must be an https URL (plain http only to this machine, for
/// local fakes). The address itself is a secret and is never printed.
fn webhook(report: &mut Report, key: &str, url: &Secret) {
    let text = url.expose();
    match reqwest::Url::parse(text) {
        Err(e) => report
            .problems
            .push(ConfigError::new(key, format!("not a URL ({e})"))),
        Ok(u) => {
            let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
                report.problems.push(ConfigError::new(
                    key,
                    format!("must be an https URL, not {}://", u.scheme()),
                ));
            }
            if text.contains("...") {
                report.warnings.push(format!(
                    "{key} still holds the README's placeholder ('...'): paste the webhook Slack gave you"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_digest_must_reach_a_channel_and_its_own_webhooks_are_checked() {
        let keys = |s: &Settings| -> Vec<String> {
            all(s)
                .problems
                .iter()
                .filter(|p| p.key.starts_with("review."))
                .map(|p| p.key.clone())
                .collect()
        };
        let mut s = Settings::default();
        s.review.cron = Some("0 0 9 1 * *".into());
        assert_eq!(keys(&s), ["review.route"]);
        s.alerts.teams.webhook_url = Some(Secret::new("https://t.example/workflows/x"));
        assert!(keys(&s).is_empty(), "the default route reaches Teams");
        s.review.route = "board".into();
        assert_eq!(keys(&s), ["review.route"]);
        s.review.teams_webhook_url =
            Some(Secret::new("https://x.webhook.office.com/webhookb2/SECRET"));
        s.review.webhook_url = Some(Secret::new("ftp://hooks.slack.com/SECRET"));
        let problems = all(&s).problems;
        let text = format!("{problems:?}");
        assert_eq!(
            keys(&s),
            ["review.webhook_url", "review.teams_webhook_url"],
            "{text}"
        );
        assert!(text.contains("Office 365"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn every_problem_is_reported_at_once_and_webhooks_are_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("accounts.csv"), "id,name\n").unwrap();
        let mut s = Settings::from_toml(&format!(
            "[crm]\nkind = \"files\"\n[crm.files]\ndir = \"{}\"\n",
            dir.path().display()
        ))
        .unwrap();
        s.rules.protection_days = 0;
        s.alerts.slack.per_second = 0;
        s.alerts.slack.webhook_url =
            Some(Secret::new("http://hooks.slack.com/services/T/B/SECRET"));
        let r = all(&s);
        let keys: Vec<&str> = r.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerts.slack.per_second",
                "rules.protection_days",
                "crm.files.dir",
                "alerts.slack.webhook_url"
            ]
        );
        let text: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text[2]
                .contains("opportunities.csv, partners.csv, partner_reps.csv, registrations.csv"),
            "{text:?}"
        );
        assert!(!text.concat().contains("SECRET"), "{text:?}");
    }

    #[test]
    fn a_missing_folder_a_placeholder_and_a_local_fake() {
        let mut s = Settings::from_toml(
            "[crm]\nkind = \"files\"\n[crm.files]\ndir = \"/nonexistent/exports\"\n",
        )
        .unwrap();
        s.alerts.slack.webhook_url = Some(Secret::new("https://hooks.slack.com/services/..."));
        let r = all(&s);
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].key, "crm.files.dir");
        assert!(
            r.problems[0]
                .to_string()
                .contains("cannot read the folder /nonexistent/exports")
        );
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        s.alerts.slack.webhook_url = Some(Secret::new("http://127.0.0.1:4567/hook"));
        assert!(all(&s).warnings.is_empty());
        assert_eq!(
            all(&s).problems.len(),
            1,
            "plain http to this machine is fine"
        );
        s.alerts.slack.webhook_url = Some(Secret::new("not a url"));
        assert_eq!(all(&s).problems[1].key, "alerts.slack.webhook_url");
    }
}
