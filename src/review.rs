//! `channel-sync review` (SPEC §6): reads the program, runs the pure review
//! (`engine::review`) and renders it as JSON (the contract), text, markdown
//! or one self-contained HTML file with inline SVG charts.
//!
//! Every format leads with the four numbers and the three questions; the
//! tables follow. The charts are drawn by a small helper here rather than a
//! charting crate: four bar charts need a few dozen lines of SVG, and the
//! crates that draw SVG bring a font stack and minutes of build time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::config::{CrmKind, Settings};
use crate::connectors::files::{self, InputError};
use crate::engine::review::{Metrics, Quarter, Review};
use crate::model::Rejected;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
    Markdown,
    Html,
}

/// Why the review could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReviewError {
    /// Exit 65.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Exit 78, naming the key.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    /// The state file cannot be read: exit 1.
    #[error(transparent)]
    State(#[from] crate::store::StateError),
    /// An API source could not be read: exit 1.
    #[error(transparent)]
    Upstream(#[from] crate::connectors::Error),
}

/// What the review read and made.
pub(crate) struct Outcome {
    pub review: Review,
    pub rejected: Vec<Rejected>,
}

/// Reads the program from `--input` or, without it, from the configured
/// files source (`crm.files.dir`, `prm.files.dir`), and reviews it.
pub(crate) fn make(
    settings: &Settings,
    input: Option<&Path>,
    now: DateTime<Utc>,
    quarters: usize,
) -> Result<Outcome, ReviewError> {
    let (crm, prm): (PathBuf, PathBuf) = match input {
        Some(dir) => (dir.to_path_buf(), dir.to_path_buf()),
        None => {
            if settings.crm.kind != Some(CrmKind::Files) {
                return Err(ReviewError::Config {
                    key: "crm.kind".into(),
                    message: "review reads the files source only for now: set crm.kind = \"files\" or pass --input DIR".into(),
                });
            }
            let crm = settings
                .crm
                .files
                .dir
                .clone()
                .ok_or_else(|| ReviewError::Config {
                    key: "crm.files.dir".into(),
                    message: "needed by review without --input".into(),
                })?;
            let prm = settings
                .prm
                .files
                .dir
                .clone()
                .unwrap_or_else(|| crm.clone());
            (crm, prm)
        }
    };
    let started = std::time::Instant::now();
    let loaded = files::load_split(&crm, &prm, &settings.scorecard)?;
    let (inputs, more) =
        files::load_review_inputs(&crm, &prm, &loaded.dataset.partners, &settings.scorecard)?;
    let mut rejected = loaded.rejected;
    rejected.extend(more);
    let read = started.elapsed();
    let review =
        crate::engine::review::review(&loaded.dataset, &inputs, settings, now, quarters.max(1));
    // With a configuration (no --input), disputes come from the state's
    // history when there is one.
    let review = match input {
        Some(_) => review,
        None => with_stored_history(review, settings, now)?,
    };
    tracing::info!(
        read_ms = read.as_millis() as u64,
        review_ms = (started.elapsed() - read).as_millis() as u64,
        partners = review.partners.len(),
        "Review computed."
    );
    Ok(Outcome { review, rejected })
}

/// [`make`] for a configured API source (Salesforce, HubSpot): reads the
/// program as a dry run does (the mirror brought up to date in a scratch
/// copy of the state, which stays as it was), with the review's optional
/// tables from the files folders beside it, and reviews it with the
/// disputes the state remembers.
pub(crate) async fn make_from_sources(
    settings: &Settings,
    now: DateTime<Utc>,
    quarters: usize,
) -> Result<Outcome, ReviewError> {
    let connectors =
        crate::connectors::Connectors::new(settings, None).map_err(|e| ReviewError::Config {
            key: e.key.clone(),
            message: e.message.clone(),
        })?;
    let state = crate::store::State::connect_scratch(&settings.state)?;
    let pulled = connectors.pull(settings, Some(&state), false, true).await?;
    let (inputs, more) = connectors
        .review_inputs(&pulled.loaded.dataset.partners, settings, Some(&state))
        .await?;
    let mut rejected = pulled.loaded.rejected;
    rejected.extend(more);
    let review = crate::engine::review::review(
        &pulled.loaded.dataset,
        &inputs,
        settings,
        now,
        quarters.max(1),
    );
    let review = with_stored_history(review, settings, now)?;
    Ok(Outcome { review, rejected })
}

/// `review` with the disputes the configured state remembers (unchanged
/// when there is no state yet).
pub(crate) fn with_stored_history(
    review: Review,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Review, crate::store::StateError> {
    Ok(
        match crate::store::State::connect_read_only(&settings.state)? {
            Some(state) => review.with_history(&history(&state)?, now),
            None => review,
        },
    )
}

/// The conflict findings the state remembers.
pub(crate) fn history(
    state: &crate::store::State,
) -> Result<Vec<crate::engine::review::DisputeRecord>, crate::store::StateError> {
    let conflict = |kind: &str| {
        crate::engine::FindingKind::ALL
            .iter()
            .any(|k| k.is_conflict() && k.as_str() == kind)
    };
    // The verdicts taken on each finding (snoozes, assignments and
    // reopenings are not outcomes of a dispute).
    let mut verdicts: std::collections::HashMap<String, Vec<(DateTime<Utc>, String)>> =
        std::collections::HashMap::new();
    for d in state.all_decisions()? {
        if crate::decisions::OUTCOMES[..4].contains(&d.outcome.as_str())
            && let Some(at) = crate::values::parse_timestamp(&d.at)
        {
            verdicts
                .entry(d.finding_key)
                .or_default()
                .push((at, d.outcome));
        }
    }
    Ok(state
        .findings()?
        .into_iter()
        .filter(|f| conflict(&f.kind))
        .filter_map(|f| {
            let first_seen = crate::values::parse_timestamp(&f.first_seen)?;
            let closed_at = f
                .resolved_at
                .as_deref()
                .and_then(crate::values::parse_timestamp);
            Some(crate::engine::review::DisputeRecord {
                kind: f.kind,
                first_seen,
                closed_at,
                resolved: closed_at.is_some() && f.closed_as.as_deref() != Some("aged_out"),
                decisions: verdicts.remove(&f.key).unwrap_or_default(),
            })
        })
        .collect())
}

/// The review in `format`. JSON carries the rejected rows as an extra field.
pub(crate) fn render(outcome: &Outcome, format: Format) -> String {
    match format {
        Format::Json => {
            let mut value = serde_json::to_value(&outcome.review).unwrap_or_default();
            if let Some(o) = value.as_object_mut() {
                o.insert(
                    "rejected".into(),
                    serde_json::to_value(&outcome.rejected).unwrap_or_default(),
                );
            }
            let mut s = serde_json::to_string_pretty(&value).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Text => to_text(&blocks(&outcome.review)),
        Format::Markdown => to_markdown(&blocks(&outcome.review)),
        Format::Html => to_html(&outcome.review, &blocks(&outcome.review)),
    }
}

/// The review digest's content, channel-neutral: labelled lines whose
/// values from data are already escaped for the channel.
struct DigestParts {
    title: String,
    /// The one-line summary (Slack's notification text).
    summary: String,
    /// The four program numbers with their change.
    four: Vec<(String, String)>,
    /// Best and worst partners by active-seller rate.
    partners: Vec<(String, String)>,
    dormant: (String, String),
    disputes: (String, String),
}

/// Longest partner name shown in a digest (keeps a Teams card far below
/// its size limit whatever the data holds).
const DIGEST_NAME_MAX: usize = 100;

fn short(name: &str) -> String {
    if name.chars().count() <= DIGEST_NAME_MAX {
        return name.to_string();
    }
    let mut t: String = name.chars().take(DIGEST_NAME_MAX - 1).collect();
    t.push('…');
    t
}

/// The digest's content, `esc` escaping every value from data; `None` when
/// the review has no full quarter.
fn digest_parts(r: &Review, esc: fn(&str) -> String) -> Option<DigestParts> {
    let hq = r.headline_quarter()?;
    let p = r.program.get(&hq.label)?;
    let title = format!("Channel review, {}", hq.label);
    let roi = match p.roi {
        Some(x) => format!("{}{}", pct(x), change(p, "roi", points)),
        None if p.cost.is_none() => NO_COST.to_string(),
        None => "not computable (no cost in the quarter)".to_string(),
    };
    let four = vec![
        (
            "Partner-sourced pipeline created".to_string(),
            format!(
                "{}{}",
                money(p.sourced_pipeline_created),
                change(p, "sourced_pipeline_created", money)
            ),
        ),
        (
            "Partner-sourced revenue".to_string(),
            format!(
                "{}{}",
                money(p.sourced_revenue),
                change(p, "sourced_revenue", money)
            ),
        ),
        (
            "Active-seller rate".to_string(),
            format!(
                "{} ({} of {} reps){}",
                opt(p.active_seller_rate, pct, "no reps"),
                p.active_sellers,
                p.reps,
                change(p, "active_seller_rate", points)
            ),
        ),
        ("Partner-program ROI".to_string(), roi),
    ];
    let (best, worst) = best_and_worst(r, &hq.label, 3);
    let names = |v: &[(&str, f64)]| {
        if v.is_empty() {
            return "-".to_string();
        }
        v.iter()
            .map(|(n, x)| format!("{} {}", esc(&short(n)), pct(*x)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let partners = vec![
        ("Best by active-seller rate".to_string(), names(&best)),
        ("Worst".to_string(), names(&worst)),
    ];
    let dormant = if r.dormant.is_empty() {
        "none".to_string()
    } else {
        let total: Option<f64> = r.dormant.iter().map(|d| d.cost).sum();
        let list = r
            .dormant
            .iter()
            .take(10)
            .map(|d| {
                format!(
                    "{} ({})",
                    esc(&short(&d.partner_name)),
                    opt(d.cost, money, NO_COST)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let more = r.dormant.len().saturating_sub(10);
        format!(
            "{} costing {} over {}: {list}{}",
            r.dormant.len(),
            opt(total, money, NO_COST),
            r.dormant[0].quarters.join(" and "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    let oc = &r.open_conflicts_now;
    let disputes = match r.disputes.get(&hq.label) {
        Some(d) => (
            format!("Disputes in {}", hq.label),
            format!(
                "{} opened, {} resolved (median {} days), {} open at the end; {} open now",
                d.opened,
                d.resolved,
                d.median_days_to_resolve
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.1}")),
                d.open_at_end,
                oc.open
            ),
        ),
        None => (
            "Disputes".to_string(),
            format!("{} conflict(s) open now (no history)", oc.open),
        ),
    };
    let summary = format!(
        "{title}: pipeline created {}, revenue {}, active-seller rate {}, ROI {}",
        money(p.sourced_pipeline_created),
        money(p.sourced_revenue),
        opt(p.active_seller_rate, pct, "no reps"),
        opt(p.roi, pct, NO_COST)
    );
    Some(DigestParts {
        title,
        summary,
        four,
        partners,
        dormant: ("Dormant partners".to_string(), dormant),
        disputes,
    })
}

/// The review digest (Slack Block Kit): the four program numbers with their
/// change, the best and worst partners by active-seller rate, the dormant
/// partners and their cost, the disputes, and a link to the console's
/// review page when `review_url` is given. Every value is escaped.
pub(crate) fn digest(r: &Review, review_url: Option<&str>) -> serde_json::Value {
    use crate::notify::slack::render::escape;
    let Some(d) = digest_parts(r, escape) else {
        return serde_json::json!({"text": "Channel review: no quarter"});
    };
    let lines = |v: &[(String, String)]| {
        v.iter()
            .map(|(l, x)| format!("*{l}:* {x}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let section = |text: String| serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
    let mut blocks = vec![
        serde_json::json!({"type": "header", "text": {"type": "plain_text", "text": d.title}}),
        section(lines(&d.four)),
        section(lines(&d.partners)),
        section(lines(std::slice::from_ref(&d.dormant))),
        section(lines(std::slice::from_ref(&d.disputes))),
    ];
    if let Some(url) = review_url {
        // A URL the configuration validated; Slack's link syntax must not
        // be broken by it.
        let url = url.replace(['|', '>', '<'], "");
        blocks.push(section(format!("<{url}|Open the review in the console>")));
    }
    serde_json::json!({"text": d.summary, "blocks": blocks})
}

/// The review digest as a Teams Workflows body: one Adaptive Card with the
/// same content as [`digest`] (the four numbers as facts) and an "Open the
/// review" button when `review_url` is given. Values are escaped for card
/// Markdown; names are cut so the card stays far below Teams' size limit.
pub(crate) fn teams_digest(r: &Review, review_url: Option<&str>) -> String {
    use crate::notify::teams::render::{escape, message};
    use serde_json::json;
    let Some(d) = digest_parts(r, escape) else {
        return message(
            vec![json!({"type": "TextBlock", "text": "Channel review: no quarter", "wrap": true})],
            Vec::new(),
        )
        .to_string();
    };
    let text = |(l, x): &(String, String)| json!({"type": "TextBlock", "text": format!("**{l}:** {x}"), "wrap": true});
    let body = vec![
        json!({"type": "TextBlock", "text": escape(&d.title), "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "FactSet", "facts": d.four.iter().map(|(l, x)| json!({"title": l, "value": x})).collect::<Vec<_>>()}),
        text(&d.partners[0]),
        text(&d.partners[1]),
        text(&d.dormant),
        text(&d.disputes),
    ];
    let actions = review_url
        .map(|url| vec![json!({"type": "Action.OpenUrl", "title": "Open the review", "url": url})])
        .unwrap_or_default();
    message(body, actions).to_string()
}

/// Where the digest goes. The digest's own webhooks (`review.webhook_url`
/// for Slack, `review.teams_webhook_url` for Teams), when either is set,
/// keep it apart from the alert routes (a route without `kinds` would also
/// receive every alert); otherwise `review.route` on each channel that
/// reaches it.
struct DigestTargets {
    slack: Option<(crate::config::SlackSettings, String)>,
    teams: Option<(crate::config::AlertSettings, String)>,
}

fn digest_targets(settings: &Settings) -> DigestTargets {
    let rv = &settings.review;
    if rv.webhook_url.is_some() || rv.teams_webhook_url.is_some() {
        let slack = rv.webhook_url.as_ref().map(|url| {
            let mut own = settings.alerts.slack.clone();
            own.webhook_url = Some(url.clone());
            own.routes.clear();
            (own, "default".to_string())
        });
        let teams = rv.teams_webhook_url.as_ref().map(|url| {
            let mut own = settings.alerts.clone();
            own.teams.webhook_url = Some(url.clone());
            own.slack.routes.clear();
            (own, "default".to_string())
        });
        return DigestTargets { slack, teams };
    }
    let route = rv.route.clone();
    let slack_reaches = if route == "default" {
        settings.alerts.slack.webhook_url.is_some()
    } else {
        settings
            .alerts
            .slack
            .routes
            .get(&route)
            .is_some_and(|r| r.webhook_url.is_some())
    };
    let teams_reaches = if route == "default" {
        settings.alerts.teams.webhook_url.is_some()
    } else {
        settings
            .alerts
            .slack
            .routes
            .get(&route)
            .is_some_and(|r| r.teams_webhook_url.is_some())
    };
    DigestTargets {
        slack: slack_reaches.then(|| (settings.alerts.slack.clone(), route.clone())),
        teams: teams_reaches.then(|| (settings.alerts.clone(), route.clone())),
    }
}

/// The channels the digest goes to (`slack`, `teams`).
pub(crate) fn digest_channels(settings: &Settings) -> Vec<&'static str> {
    let t = digest_targets(settings);
    let mut out = Vec::new();
    if t.slack.is_some() {
        out.push("slack");
    }
    if t.teams.is_some() {
        out.push("teams");
    }
    out
}

/// Why a digest was not posted, and on which channels it still has to be.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub(crate) struct DigestError {
    pub unposted: Vec<&'static str>,
    pub error: anyhow::Error,
}

/// Makes the review from the configured files source and posts its digest
/// to `channels` (of [`digest_channels`]; the scheduled digest of `run`).
/// A channel that fails is named in the error, so a retry posts only there.
pub(crate) async fn post_digest(
    settings: &Settings,
    now: DateTime<Utc>,
    channels: &[&'static str],
    ready: Option<Review>,
) -> Result<(), DigestError> {
    use anyhow::Context as _;
    let all = |error: anyhow::Error| DigestError {
        unposted: channels.to_vec(),
        error,
    };
    let targets = digest_targets(settings);
    if targets.slack.is_none() && targets.teams.is_none() {
        return Err(all(anyhow::anyhow!(
            "review.route '{}' reaches neither Slack nor Teams (set its webhook, or review.webhook_url / review.teams_webhook_url)",
            settings.review.route
        )));
    }
    let outcome = match ready {
        // Made from a cycle's data (an API source).
        Some(review) => Outcome {
            review,
            rejected: Vec::new(),
        },
        None => {
            let owned = settings.clone();
            tokio::task::spawn_blocking(move || make(&owned, None, now, 4))
                .await
                .context("the review task")
                .map_err(all)?
                .context("making the review")
                .map_err(all)?
        }
    };
    let review_url = settings.console.review_url();
    let mut unposted = Vec::new();
    let mut errors = Vec::new();
    for &channel in channels {
        let delivery = match (channel, &targets.slack, &targets.teams) {
            ("slack", Some((slack, route)), _) => {
                let body = digest(&outcome.review, review_url.as_deref()).to_string();
                match crate::notify::slack::SlackClient::new(slack) {
                    Ok(client) => client.post(route, &body).await,
                    Err(e) => crate::notify::Delivery::Retry(format!("{e:#}")),
                }
            }
            ("teams", _, Some((alerts, route))) => {
                let body = teams_digest(&outcome.review, review_url.as_deref());
                match crate::notify::teams::TeamsClient::new(alerts) {
                    Ok(client) => client.post(route, &body).await,
                    Err(e) => crate::notify::Delivery::Retry(format!("{e:#}")),
                }
            }
            // A channel the configuration no longer reaches.
            _ => continue,
        };
        if !matches!(delivery, crate::notify::Delivery::Sent) {
            unposted.push(channel);
            errors.push(format!("{channel}: {delivery:?}"));
        }
    }
    if unposted.is_empty() {
        Ok(())
    } else {
        Err(DigestError {
            unposted,
            error: anyhow::anyhow!("posting the review digest: {}", errors.join("; ")),
        })
    }
}

/// A document independent of its format.
enum Block {
    Title(String),
    Heading(String),
    Para(String),
    List(Vec<String>),
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

const NO_COST: &str = "no cost data";
const NO_MDF: &str = "no MDF data";

/// `1234567.5` as `1,234,567.50`; whole amounts without decimals.
pub(crate) fn money(x: f64) -> String {
    crate::values::format_amount(x, crate::values::Cents::WhenAny)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn opt(x: Option<f64>, f: fn(f64) -> String, none: &str) -> String {
    x.map_or_else(|| none.to_string(), f)
}

fn signed(x: f64, f: fn(f64) -> String) -> String {
    if x > 0.0 { format!("+{}", f(x)) } else { f(x) }
}

fn change(m: &Metrics, key: &str, f: fn(f64) -> String) -> String {
    match m.change.get(key).copied().flatten() {
        Some(d) => format!(" ({} vs previous quarter)", signed(d, f)),
        None => String::new(),
    }
}

fn points(x: f64) -> String {
    format!("{:.1} pts", x * 100.0)
}

/// Partner names with their active-seller rate.
pub(crate) type Rated<'a> = Vec<(&'a str, f64)>;

/// The best and worst partners by active-seller rate in quarter `label`
/// (partners with reps only), best first then worst, ties by id.
pub(crate) fn best_and_worst<'a>(r: &'a Review, label: &str, n: usize) -> (Rated<'a>, Rated<'a>) {
    let mut rated: Vec<(&str, &str, f64)> = r
        .partners
        .iter()
        .filter_map(|p| {
            let rate = p.quarters.get(label)?.active_seller_rate?;
            Some((p.partner_id.as_str(), p.partner_name.as_str(), rate))
        })
        .collect();
    rated.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
    let best = rated.iter().take(n).map(|x| (x.1, x.2)).collect();
    let worst = rated
        .iter()
        .rev()
        .take(n.min(rated.len().saturating_sub(n)))
        .map(|x| (x.1, x.2))
        .collect();
    (best, worst)
}

fn blocks(r: &Review) -> Vec<Block> {
    let mut out = Vec::new();
    let first = r.quarters.first().map_or("", |q| q.label.as_str());
    let last = r.quarters.last().map_or("", |q| q.label.as_str());
    out.push(Block::Title(format!(
        "Channel review as of {} ({first} to {last} to date, amounts in {})",
        r.as_of, r.currency
    )));
    let Some(hq) = r.headline_quarter() else {
        return out;
    };
    let Some(p) = r.program.get(&hq.label) else {
        return out;
    };
    out.push(Block::Heading(format!(
        "The four numbers, {} (last full quarter)",
        hq.label
    )));
    let roi = match p.roi {
        Some(x) => format!("{}{}", pct(x), change(p, "roi", points)),
        None if p.cost.is_none() => NO_COST.to_string(),
        None => "not computable (no cost in the quarter)".to_string(),
    };
    let roi4 = match p.roi_trailing_4q {
        Some(x) => format!("; trailing four quarters {}", pct(x)),
        None => String::new(),
    };
    out.push(Block::List(vec![
        format!(
            "Partner-sourced pipeline created: {}{}",
            money(p.sourced_pipeline_created),
            change(p, "sourced_pipeline_created", money)
        ),
        format!(
            "Partner-sourced revenue: {}{}",
            money(p.sourced_revenue),
            change(p, "sourced_revenue", money)
        ),
        format!(
            "Active-seller rate: {} ({} of {} reps){}",
            opt(p.active_seller_rate, pct, "no reps"),
            p.active_sellers,
            p.reps,
            change(p, "active_seller_rate", points)
        ),
        format!("Partner-program ROI: {roi}{roi4}"),
    ]));

    out.push(Block::Heading("The three questions".into()));
    let (best, worst) = best_and_worst(r, &hq.label, 3);
    let names = |v: &[(&str, f64)]| {
        v.iter()
            .map(|(n, x)| format!("{n} {}", pct(*x)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut q1 = format!(
        "Do you know your active-seller rate? {} in {}: {} of {} partner reps closed a deal.",
        opt(p.active_seller_rate, pct, "Unknown (no reps)"),
        hq.label,
        p.active_sellers,
        p.reps
    );
    if !best.is_empty() {
        let _ = write!(q1, " Best: {}.", names(&best));
    }
    if !worst.is_empty() {
        let _ = write!(q1, " Worst: {}.", names(&worst));
    }
    let oc = &r.open_conflicts_now;
    let q2 = if let Some(d) = r.disputes.get(&hq.label) {
        format!(
            "What did your last registration dispute teach you? In {}: {} dispute(s) opened, {} resolved (median {} days), {} open at the end, the oldest {} day(s) old; {} conflict(s) open now. Decisions are not recorded yet.",
            hq.label,
            d.opened,
            d.resolved,
            d.median_days_to_resolve
                .map_or_else(|| "-".to_string(), |x| format!("{x:.1}")),
            d.open_at_end,
            d.oldest_open_days.unwrap_or(0),
            oc.open
        )
    } else if oc.open == 0 {
        format!(
            "What did your last registration dispute teach you? No conflict is open now. Note: {}.",
            oc.note
        )
    } else {
        let kinds = oc
            .by_kind
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "What did your last registration dispute teach you? {} conflict(s) open now ({kinds}); the oldest began {} day(s) ago. Note: {}.",
            oc.open,
            oc.oldest_open_days.unwrap_or(0),
            oc.note
        )
    };
    let q3 = match (p.mdf_spend, p.mdf_effectiveness) {
        (None, _) => format!("What share of your MDF produced pipeline? Unknown: {NO_MDF}."),
        (Some(_), None) => format!(
            "What share of your MDF produced pipeline? No MDF spent in {}.",
            hq.label
        ),
        (Some(spend), Some(share)) => format!(
            "What share of your MDF produced pipeline? {} of the {} spent in {} went to campaigns that produced pipeline ({} of it){}.",
            pct(share),
            money(spend),
            hq.label,
            money(p.mdf_pipeline.unwrap_or(0.0)),
            if r.inputs.campaign_ids {
                ""
            } else {
                "; no opportunity carries a campaign_id"
            }
        ),
    };
    out.push(Block::List(vec![q1, q2, q3]));

    if !r.dormant.is_empty() {
        let quarters = r.dormant[0].quarters.join(", ");
        out.push(Block::Heading(format!(
            "Dormant partners: candidates for pruning ({} in {quarters})",
            r.dormant.len()
        )));
        let total: Option<f64> = r.dormant.iter().map(|d| d.cost).sum();
        out.push(Block::Para(format!(
            "Reps but no active seller and no new pipeline in each of the last {} full quarters. Together they cost {}.",
            r.dormant_quarters,
            opt(total, money, NO_COST)
        )));
        out.push(Block::Table {
            head: vec![
                "partner".into(),
                "name".into(),
                "reps".into(),
                "cost".into(),
            ],
            rows: r
                .dormant
                .iter()
                .map(|d| {
                    vec![
                        d.partner_id.clone(),
                        d.partner_name.clone(),
                        d.reps.to_string(),
                        opt(d.cost, money, NO_COST),
                    ]
                })
                .collect(),
        });
    }

    out.push(Block::Heading("The program by quarter".into()));
    out.push(Block::Table {
        head: metric_head("quarter"),
        rows: r
            .quarters
            .iter()
            .filter_map(|q| {
                r.program
                    .get(&q.label)
                    .map(|m| metric_row(&quarter_name(q), m))
            })
            .collect(),
    });
    out.push(Block::Heading(format!("Partners in {}", hq.label)));
    let mut head = metric_head("partner");
    head.insert(1, "name".into());
    head.push("dormant".into());
    out.push(Block::Table {
        head,
        rows: r
            .partners
            .iter()
            .filter_map(|pr| {
                let m = pr.quarters.get(&hq.label)?;
                let mut row = metric_row(&pr.partner_id, m);
                row.insert(1, pr.partner_name.clone());
                row.push(if pr.dormant { "yes" } else { "" }.into());
                Some(row)
            })
            .collect(),
    });
    out
}

fn quarter_name(q: &Quarter) -> String {
    if q.partial {
        format!("{} (to date)", q.label)
    } else {
        q.label.clone()
    }
}

fn metric_head(first: &str) -> Vec<String> {
    [
        first,
        "pipeline created",
        "revenue",
        "reps",
        "active",
        "rate",
        "cost",
        "ROI",
        "ROI 4q",
        "MDF spend",
        "MDF effective",
        "MDF pipeline",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn metric_row(first: &str, m: &Metrics) -> Vec<String> {
    vec![
        first.to_string(),
        money(m.sourced_pipeline_created),
        money(m.sourced_revenue),
        m.reps.to_string(),
        m.active_sellers.to_string(),
        opt(m.active_seller_rate, pct, "-"),
        opt(m.cost, money, NO_COST),
        opt(m.roi, pct, "-"),
        opt(m.roi_trailing_4q, pct, "-"),
        opt(m.mdf_spend, money, NO_MDF),
        opt(m.mdf_effectiveness, pct, "-"),
        opt(m.mdf_pipeline, money, NO_MDF),
    ]
}

fn to_text(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::Title(t) => {
                let _ = writeln!(s, "{t}\n{}", "=".repeat(t.chars().count()));
            }
            Block::Heading(h) => {
                let _ = writeln!(s, "\n{h}\n{}", "-".repeat(h.chars().count()));
            }
            Block::Para(p) => {
                let _ = writeln!(s, "{p}");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(s, "  * {i}");
                }
            }
            Block::Table { head, rows } => {
                let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
                for r in rows {
                    for (i, c) in r.iter().enumerate() {
                        width[i] = width[i].max(c.chars().count());
                    }
                }
                let line = |cells: &[String]| {
                    cells
                        .iter()
                        .zip(&width)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect::<Vec<_>>()
                        .join("  ")
                        .trim_end()
                        .to_string()
                };
                let _ = writeln!(s, "{}", line(head));
                for r in rows {
                    let _ = writeln!(s, "{}", line(r));
                }
            }
        }
    }
    s
}

fn md_cell(c: &str) -> String {
    c.replace('|', "\\|").replace('\n', " ")
}

fn to_markdown(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::Title(t) => {
                let _ = writeln!(s, "# {t}");
            }
            Block::Heading(h) => {
                let _ = writeln!(s, "\n## {h}\n");
            }
            Block::Para(p) => {
                let _ = writeln!(s, "{p}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(s, "- {}", i.replace('\n', " "));
                }
            }
            Block::Table { head, rows } => {
                let row = |cells: &[String]| {
                    format!(
                        "| {} |",
                        cells
                            .iter()
                            .map(|c| md_cell(c))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    )
                };
                let _ = writeln!(s, "{}", row(head));
                let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
                for r in rows {
                    let _ = writeln!(s, "{}", row(r));
                }
            }
        }
    }
    s
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One series of a bar chart: its name, colour and a value per category.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<Option<f64>>,
}

/// A grouped vertical bar chart as inline SVG. Missing values are marked
/// "n/a" rather than drawn as 0.
fn bar_chart(
    title: &str,
    categories: &[String],
    series: &[Series],
    fmt: fn(f64) -> String,
) -> String {
    let (w, h, left, top, bottom) = (720.0_f64, 260.0_f64, 70.0, 30.0, 60.0);
    let plot_h = h - top - bottom;
    let all = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let (lo, hi) = all.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let y = |v: f64| top + (hi - v) / span * plot_h;
    let n = categories.len().max(1) as f64;
    let group = (w - left - 10.0) / n;
    let bar = (group * 0.8) / series.len().max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{z:.1}" x2="{x2}" y2="{z:.1}" stroke="#888"/><text x="{tx}" y="{ty:.1}" font-size="10" text-anchor="end">{hi_l}</text><text x="{tx}" y="{z:.1}" font-size="10" text-anchor="end">0</text>"##,
        z = y(0.0),
        x2 = w - 10.0,
        tx = left - 4.0,
        ty = top + 4.0,
        hi_l = esc(&fmt(hi))
    );
    for (c, cat) in categories.iter().enumerate() {
        let gx = left + c as f64 * group + group * 0.1;
        for (k, se) in series.iter().enumerate() {
            let x = gx + k as f64 * bar;
            match se.values.get(c).copied().flatten() {
                Some(v) => {
                    let (y0, y1) = (y(v.max(0.0)), y(v.min(0.0)));
                    let _ = write!(
                        s,
                        r#"<rect x="{x:.1}" y="{y0:.1}" width="{bw:.1}" height="{bh:.1}" fill="{col}"><title>{label}</title></rect>"#,
                        bw = (bar - 1.0).max(1.0),
                        bh = (y1 - y0).max(0.5),
                        col = esc(se.color),
                        label = esc(&format!("{cat}: {} {}", se.name, fmt(v)))
                    );
                }
                None => {
                    let _ = write!(
                        s,
                        r#"<text x="{x:.1}" y="{z:.1}" font-size="9" dy="-2">n/a</text>"#,
                        z = y(0.0)
                    );
                }
            }
        }
        let _ = write!(
            s,
            r#"<text x="{cx:.1}" y="{ly}" font-size="10" text-anchor="end" transform="rotate(-30 {cx:.1} {ly})">{label}</text>"#,
            cx = gx + group * 0.4,
            ly = h - bottom + 14.0,
            label = esc(cat)
        );
    }
    for (k, se) in series.iter().enumerate() {
        let lx = left + k as f64 * 170.0;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="6" width="10" height="10" fill="{col}"/><text x="{tx}" y="15" font-size="11">{name}</text>"#,
            col = esc(se.color),
            tx = lx + 14.0,
            name = esc(se.name)
        );
    }
    let _ = write!(s, "</svg><figcaption>{}</figcaption></figure>", esc(title));
    s
}

/// At most this many partners in a per-partner chart (the tables have all).
const CHART_PARTNERS: usize = 25;

fn charts(r: &Review) -> String {
    let mut s = String::new();
    let labels: Vec<String> = r.quarters.iter().map(quarter_name).collect();
    let prog = |f: fn(&Metrics) -> Option<f64>| -> Vec<Option<f64>> {
        r.quarters
            .iter()
            .map(|q| r.program.get(&q.label).and_then(f))
            .collect()
    };
    s.push_str("<h2>The four program metrics over the quarters</h2><div class=\"charts\">");
    s.push_str(&bar_chart(
        "Partner-sourced pipeline created",
        &labels,
        &[Series {
            name: "pipeline created",
            color: "#4e79a7",
            values: prog(|m| Some(m.sourced_pipeline_created)),
        }],
        money,
    ));
    s.push_str(&bar_chart(
        "Partner-sourced revenue",
        &labels,
        &[Series {
            name: "revenue",
            color: "#59a14f",
            values: prog(|m| Some(m.sourced_revenue)),
        }],
        money,
    ));
    s.push_str(&bar_chart(
        "Active-seller rate",
        &labels,
        &[Series {
            name: "active-seller rate",
            color: "#f28e2b",
            values: prog(|m| m.active_seller_rate),
        }],
        pct,
    ));
    s.push_str(&bar_chart(
        "Partner-program ROI (null: no cost data)",
        &labels,
        &[
            Series {
                name: "ROI",
                color: "#e15759",
                values: prog(|m| m.roi),
            },
            Series {
                name: "ROI, trailing 4 quarters",
                color: "#b07aa1",
                values: prog(|m| m.roi_trailing_4q),
            },
        ],
        pct,
    ));
    s.push_str("</div>");
    let Some(hq) = r.headline_quarter() else {
        return s;
    };
    // The partners with the most revenue, then pipeline, in the last full quarter.
    let mut shown: Vec<(&str, &Metrics)> = r
        .partners
        .iter()
        .filter_map(|p| {
            p.quarters
                .get(&hq.label)
                .map(|m| (p.partner_name.as_str(), m))
        })
        .collect();
    shown.sort_by(|a, b| {
        b.1.sourced_revenue
            .total_cmp(&a.1.sourced_revenue)
            .then(
                b.1.sourced_pipeline_created
                    .total_cmp(&a.1.sourced_pipeline_created),
            )
            .then(a.0.cmp(b.0))
    });
    let more = shown.len().saturating_sub(CHART_PARTNERS);
    shown.truncate(CHART_PARTNERS);
    let names: Vec<String> = shown.iter().map(|(n, _)| n.to_string()).collect();
    let note = if more > 0 {
        format!(" (the {CHART_PARTNERS} with the most revenue; {more} more in the table)")
    } else {
        String::new()
    };
    let _ = write!(
        s,
        "<h2>Partners in {}{}</h2><div class=\"charts\">",
        esc(&hq.label),
        esc(&note)
    );
    s.push_str(&bar_chart(
        "Active-seller rate per partner",
        &names,
        &[Series {
            name: "active-seller rate",
            color: "#f28e2b",
            values: shown.iter().map(|(_, m)| m.active_seller_rate).collect(),
        }],
        pct,
    ));
    s.push_str(&bar_chart(
        "Cost against revenue per partner",
        &names,
        &[
            Series {
                name: "cost",
                color: "#e15759",
                values: shown.iter().map(|(_, m)| m.cost).collect(),
            },
            Series {
                name: "revenue",
                color: "#59a14f",
                values: shown.iter().map(|(_, m)| Some(m.sourced_revenue)).collect(),
            },
        ],
        money,
    ));
    s.push_str("</div><h2>MDF spend against MDF pipeline</h2><div class=\"charts\">");
    s.push_str(&bar_chart(
        "MDF spend against the pipeline its campaigns produced",
        &labels,
        &[
            Series {
                name: "MDF spend",
                color: "#76b7b2",
                values: prog(|m| m.mdf_spend),
            },
            Series {
                name: "MDF pipeline",
                color: "#4e79a7",
                values: prog(|m| m.mdf_pipeline),
            },
        ],
        money,
    ));
    s.push_str("</div>");
    s
}

fn to_html(r: &Review, blocks: &[Block]) -> String {
    let mut body = String::new();
    let mut charts_done = false;
    for b in blocks {
        match b {
            Block::Title(t) => {
                let _ = write!(body, "<h1>{}</h1>", esc(t));
            }
            Block::Heading(h) => {
                // The charts sit after the headline numbers and questions.
                if !charts_done && h.starts_with("The program by quarter") {
                    body.push_str(&charts(r));
                    charts_done = true;
                }
                let _ = write!(body, "<h2>{}</h2>", esc(h));
            }
            Block::Para(p) => {
                let _ = write!(body, "<p>{}</p>", esc(p));
            }
            Block::List(items) => {
                body.push_str("<ul>");
                for i in items {
                    let _ = write!(body, "<li>{}</li>", esc(i));
                }
                body.push_str("</ul>");
            }
            Block::Table { head, rows } => {
                body.push_str("<table><thead><tr>");
                for h in head {
                    let _ = write!(body, "<th>{}</th>", esc(h));
                }
                body.push_str("</tr></thead><tbody>");
                for row in rows {
                    body.push_str("<tr>");
                    for c in row {
                        let _ = write!(body, "<td>{}</td>", esc(c));
                    }
                    body.push_str("</tr>");
                }
                body.push_str("</tbody></table>");
            }
        }
    }
    if !charts_done {
        body.push_str(&charts(r));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Channel review {}</title><style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;font-size:13px}}th,td{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th:first-child,td:first-child,td:nth-child(2){{text-align:left}}figure{{display:inline-block;margin:0 1em 1em 0}}figcaption{{font-size:12px;color:#555}}</style></head><body>{body}</body></html>\n",
        esc(&r.as_of)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_keeps_cents() {
        assert_eq!(money(1234567.5), "1,234,567.50");
        assert_eq!(money(1000.0), "1,000");
        assert_eq!(money(-42.0), "-42");
        assert_eq!(money(0.0), "0");
    }

    /// A review of `n` dormant partners with very long names that Markdown
    /// would read as markup.
    fn review_with_dormant(n: usize) -> Review {
        use crate::engine::review::Dormant;
        let settings = Settings::default();
        let data = crate::model::Dataset::default();
        let now = crate::values::parse_timestamp("2026-11-26T00:00:00Z").unwrap();
        let mut r = crate::engine::review::review(
            &data,
            &crate::model::ReviewInputs::default(),
            &settings,
            now,
            4,
        );
        r.dormant = (0..n)
            .map(|i| Dormant {
                partner_id: format!("P-{i}"),
                partner_name: format!("**{i}** [x](http://evil) <at>{}", "_".repeat(5000)),
                reps: 3,
                cost: Some(1000.0),
                quarters: vec!["2026-Q2".into(), "2026-Q3".into()],
            })
            .collect();
        r
    }

    #[test]
    fn the_teams_digest_stays_under_the_card_limit_and_escapes_names() {
        let r = review_with_dormant(500);
        let body = teams_digest(&r, Some("https://cs.example.com/review"));
        assert!(
            body.len() < crate::notify::teams::render::MAX_BYTES,
            "{}",
            body.len()
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let card = &v["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        let text = card["body"].to_string();
        assert!(
            text.contains("**Dormant partners:** 500 costing 500,000 over 2026-Q2 and 2026-Q3"),
            "{text}"
        );
        assert!(text.contains("and 490 more"), "{text}");
        assert!(text.contains(r"\\*\\*0\\*\\*"), "markup escaped: {text}");
        assert!(!text.contains("<at>"), "{text}");
        assert_eq!(card["actions"][0]["url"], "https://cs.example.com/review");
    }

    #[test]
    fn without_a_console_url_the_digests_have_no_link() {
        let r = review_with_dormant(1);
        let v: serde_json::Value = serde_json::from_str(&teams_digest(&r, None)).unwrap();
        assert!(v["attachments"][0]["content"].get("actions").is_none());
        let slack = digest(&r, None).to_string();
        assert!(!slack.contains("Open the review"), "{slack}");
        let slack = digest(&r, Some("https://cs.example.com/review")).to_string();
        assert!(
            slack.contains("<https://cs.example.com/review|Open the review in the console>"),
            "{slack}"
        );
        // The Slack digest escapes names too, and cuts them.
        assert!(slack.contains("&lt;at&gt;"), "{slack}");
        assert!(!slack.contains(&"_".repeat(200)), "{slack}");
    }

    #[test]
    fn the_digest_goes_to_each_channel_the_route_reaches() {
        use crate::config::Secret;
        let mut s = Settings::default();
        assert!(digest_channels(&s).is_empty());
        s.alerts.teams.webhook_url = Some(Secret::new("https://t.example/x"));
        assert_eq!(digest_channels(&s), ["teams"]);
        s.alerts.slack.webhook_url = Some(Secret::new("https://s.example/x"));
        assert_eq!(digest_channels(&s), ["slack", "teams"]);
        // Another route: its own webhooks, not the default's.
        s.review.route = "board".into();
        assert!(digest_channels(&s).is_empty());
        // The digest's own webhook replaces the routes altogether.
        s.review.webhook_url = Some(Secret::new("https://s.example/own"));
        assert_eq!(digest_channels(&s), ["slack"]);
        s.review.teams_webhook_url = Some(Secret::new("https://t.example/own"));
        assert_eq!(digest_channels(&s), ["slack", "teams"]);
    }

    #[test]
    fn html_escapes_markup() {
        assert_eq!(
            esc("<b>\"A&B\"'</b>"),
            "&lt;b&gt;&quot;A&amp;B&quot;&#39;&lt;/b&gt;"
        );
    }
}
