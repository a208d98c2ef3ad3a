//! The console's pages: maud templates (every value escaped unless marked
//! otherwise; the only unescaped HTML is the SVG plotters draws from
//! numbers and quarter labels, and the review's own escaped HTML).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::Console;
use super::auth::{User, check_csrf};
use super::charts::{self, BLUE_LINE, GREEN_LINE, Series};
use super::snapshot::{EXPIRING_DAYS, RegState, Snapshot};
use crate::engine::{Finding, FindingKind};
use crate::store::console::FindingFilter;

/// Findings per page.
pub(crate) const PAGE_SIZE: u64 = 50;

const CSS: &str = include_str!("console.css");

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

fn money(x: f64) -> String {
    crate::review::money(x)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

fn minute(ts: &str) -> String {
    ts.get(..16).unwrap_or(ts).replace('T', " ")
}

/// A query value: `None` when absent or blank.
fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// A query string (for links), each value percent-encoded.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn layout(title: &str, user: Option<&User>, active: &str, body: Markup) -> String {
    let nav = [
        ("/", "Overview"),
        ("/findings", "Findings"),
        ("/partners", "Partners"),
        ("/registrations", "Registrations"),
        ("/review", "Review"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · channel-sync" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header.top {
                    span.brand { "channel-sync" }
                    @if let Some(user) = user {
                        nav {
                            @for (href, label) in nav {
                                a href=(href) class=[(active == label).then_some("on")] { (label) }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            span.who { (user.name) }
                            input type="hidden" name="csrf" value=(user.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// A refusal page (no navigation: the person may not be signed in).
pub(crate) fn refusal(why: &str) -> String {
    layout(
        "Refused",
        None,
        "",
        html! { h1 { "Not allowed" } p.refused { (why) } p { a href="/login" { "Sign in" } } },
    )
}

/// The sign-in form, with what went wrong last time.
pub(crate) fn login(error: Option<&str>) -> String {
    layout(
        "Sign in",
        None,
        "",
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.refused role="alert" { (e) } }
            form.login method="post" action="/login" {
                label { "Your name " input name="name" autocomplete="name" required; }
                label { "Console token " input name="token" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "Console page failed.");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(refusal(
            "Something went wrong reading the state; the log says what.",
        )),
    )
        .into_response()
}

/// Runs state reads off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(format!("{e:#}"))),
        Err(e) => Err(failed(e)),
    }
}

fn kind_label(kind: &str) -> String {
    kind.replace('_', " ")
}

fn note(snap: &Snapshot) -> Markup {
    html! { @if let Some(n) = &snap.note { p.note { (n) } } }
}

/// The program's quarters (oldest first) and their metrics.
fn program_trend(snap: &Snapshot) -> Markup {
    let Some(review) = &snap.review else {
        return html! {};
    };
    let labels: Vec<String> = review.quarters.iter().map(|q| q.label.clone()).collect();
    let metric = |f: fn(&crate::engine::review::Metrics) -> Option<f64>| -> Vec<Option<f64>> {
        labels
            .iter()
            .map(|l| review.program.get(l).and_then(f))
            .collect()
    };
    let pipeline = metric(|m| Some(m.sourced_pipeline_created));
    let revenue = metric(|m| Some(m.sourced_revenue));
    let rate = metric(|m| m.active_seller_rate);
    let roi = metric(|m| m.roi);
    let head = review
        .headline_quarter()
        .and_then(|q| review.program.get(&q.label));
    html! {
        section.metrics {
            @if let (Some(q), Some(m)) = (review.headline_quarter(), head) {
                h2 { "Program, " (q.label) }
                div.cards {
                    div.card { span.k { "Sourced pipeline" } span.v { (money(m.sourced_pipeline_created)) " " (review.currency) } }
                    div.card { span.k { "Sourced revenue" } span.v { (money(m.sourced_revenue)) " " (review.currency) } }
                    div.card { span.k { "Active-seller rate" } span.v { (m.active_seller_rate.map_or("n/a".into(), pct)) } }
                    div.card { span.k { "ROI" } span.v { (m.roi.map_or_else(|| if m.cost.is_none() { "no cost data".to_string() } else { "n/a".to_string() }, pct)) } }
                }
            }
            div.charts {
                (PreEscaped(charts::trend("Sourced pipeline", &labels, &[Series { name: "pipeline", color: BLUE_LINE, values: pipeline }], money)))
                (PreEscaped(charts::trend("Sourced revenue", &labels, &[Series { name: "revenue", color: GREEN_LINE, values: revenue }], money)))
                (PreEscaped(charts::trend("Active-seller rate", &labels, &[Series { name: "rate", color: BLUE_LINE, values: rate }], pct)))
                @if roi.iter().any(Option::is_some) {
                    (PreEscaped(charts::trend("ROI", &labels, &[Series { name: "ROI", color: GREEN_LINE, values: roi }], pct)))
                }
            }
        }
    }
}

/// `GET /`.
pub(crate) async fn overview(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
) -> Response {
    let c = console.clone();
    let read = blocking(move || {
        let state = c.state()?;
        let (decided, snoozed) = c.settled(&state)?;
        let settled: Vec<String> = decided.iter().chain(&snoozed).cloned().collect();
        Ok((
            state.console_open_by_kind(&settled)?,
            state.console_last_run()?,
            decided.len(),
            snoozed.len(),
        ))
    })
    .await;
    let (by_kind, last, decided, snoozed) = match read {
        Ok(v) => v,
        Err(r) => return r,
    };
    let snap = console.snapshot();
    let open: u64 = by_kind.iter().map(|k| k.open).sum();
    let at_risk: f64 = by_kind.iter().map(|k| k.value_at_risk).sum();
    let expiring: Vec<_> = snap.expiring().take(10).collect();
    let expiring_total = snap.expiring().count();
    let body = html! {
        h1 { "Overview" }
        section.status {
            @match &last {
                Some(run) => p { "Last cycle: " strong { (run.outcome) } " at " (minute(&run.finished_at)) " UTC" },
                None => p { "No cycle has run yet." },
            }
        }
        section {
            h2 { "Open conflicts and findings: " (open) }
            p.big { "Value at risk: " strong { (money(at_risk)) " " (console.currency) } }
            p { (decided) " decided and " (snoozed) " snoozed are not counted: "
                a href="/findings?status=decided" { "decided" } " · " a href="/findings?status=snoozed" { "snoozed" } }
            table {
                thead { tr { th { "Kind" } th.n { "Open" } th.n { "Value at risk" } } }
                tbody {
                    @for k in &by_kind {
                        tr {
                            td { a href={ "/findings" (query(&[("kind", Some(k.kind.clone()))])) } { (kind_label(&k.kind)) } }
                            td.n { (k.open) }
                            td.n { (money(k.value_at_risk)) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Registrations expiring in the next " (EXPIRING_DAYS) " days: " (expiring_total) }
            @if !expiring.is_empty() {
                table {
                    thead { tr { th { "Registration" } th { "Partner" } th { "Customer" } th { "Expires" } } }
                    tbody {
                        @for r in &expiring {
                            tr {
                                td { (r.id) }
                                td { a href={ "/partner" (query(&[("id", Some(r.partner_id.clone()))])) } { (r.partner_name) } }
                                td { (r.customer) }
                                td { (r.expires_at.map(|e| e.format("%Y-%m-%d").to_string()).unwrap_or_default()) }
                            }
                        }
                    }
                }
                @if expiring_total > expiring.len() {
                    p { a href="/registrations?state=expiring" { "All " (expiring_total) " expiring" } }
                }
            }
        }
        (program_trend(&snap))
        (note(&snap))
    };
    Html(layout("Overview", Some(&user), "Overview", body)).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FindingsQuery {
    kind: Option<String>,
    severity: Option<String>,
    partner: Option<String>,
    account: Option<String>,
    /// `open` (the default: neither decided nor snoozed), `decided`,
    /// `snoozed`, or `unresolved` (all three).
    status: Option<String>,
    page: Option<u64>,
}

/// `GET /findings`.
pub(crate) async fn findings(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(q): Query<FindingsQuery>,
) -> Response {
    let filter = FindingFilter {
        kind: given(&q.kind),
        severity: given(&q.severity),
        partner_id: given(&q.partner),
        account: given(&q.account),
        ..Default::default()
    };
    let status = match given(&q.status).as_deref() {
        Some(s @ ("decided" | "snoozed" | "unresolved")) => s.to_string(),
        _ => "open".to_string(),
    };
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let c = console.clone();
    let mut f = filter.clone();
    let which = status.clone();
    let read = blocking(move || {
        let state = c.state()?;
        let (decided, snoozed) = c.settled(&state)?;
        match which.as_str() {
            "decided" => f.within = Some(decided),
            "snoozed" => f.within = Some(snoozed),
            "unresolved" => {}
            _ => f.without = decided.into_iter().chain(snoozed).collect(),
        }
        Ok(state.console_open_findings(&f, (page - 1) * PAGE_SIZE, PAGE_SIZE)?)
    })
    .await;
    let found = match read {
        Ok(v) => v,
        Err(r) => return r,
    };
    let pages = found.total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: u64| {
        format!(
            "/findings{}",
            query(&[
                ("kind", filter.kind.clone()),
                ("severity", filter.severity.clone()),
                ("partner", filter.partner_id.clone()),
                ("account", filter.account.clone()),
                ("status", Some(status.clone())),
                ("page", Some(p.to_string())),
            ])
        )
    };
    let body = html! {
        h1 { "Findings" }
        form.filters method="get" action="/findings" {
            label { "Status "
                select name="status" {
                    @for (v, l) in [("open", "open"), ("decided", "decided"), ("snoozed", "snoozed"), ("unresolved", "all unresolved")] {
                        option value=(v) selected[status == v] { (l) }
                    }
                }
            }
            label { "Kind "
                select name="kind" {
                    option value="" { "any" }
                    @for k in FindingKind::ALL {
                        option value=(k.as_str()) selected[filter.kind.as_deref() == Some(k.as_str())] { (kind_label(k.as_str())) }
                    }
                }
            }
            label { "Severity "
                select name="severity" {
                    option value="" { "any" }
                    @for s in ["critical", "warning", "info"] {
                        option value=(s) selected[filter.severity.as_deref() == Some(s)] { (s) }
                    }
                }
            }
            label { "Partner id " input name="partner" value=[filter.partner_id.as_deref()]; }
            label { "Account " input name="account" value=[filter.account.as_deref()]; }
            button type="submit" { "Filter" }
        }
        p.count { (found.total) " " (status) ", by value at risk · page " (page) " of " (pages) }
        div.scroll {
            table.findings {
                thead { tr { th { "Severity" } th { "Kind" } th { "Account" } th { "Partners" } th { "First seen" } th.n { "Value at risk" } } }
                tbody {
                    @for (f, risk) in &found.rows {
                        @let parsed: Option<Finding> = serde_json::from_str(&f.payload).ok();
                        tr {
                            td { span class={ "sev " (f.severity) } { (f.severity) } }
                            td { a href={ "/finding" (query(&[("key", Some(f.key.clone()))])) } { (kind_label(&f.kind)) } }
                            td { (parsed.as_ref().and_then(|p| p.account_name.clone().or(p.account_id.clone())).unwrap_or_else(|| "not in the CRM".into())) }
                            td { (parsed.as_ref().map(partner_names).unwrap_or_default()) }
                            td { (day(&f.first_seen)) }
                            td.n { (risk.map(money).unwrap_or_else(|| "-".into())) }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← previous" } }
            @if page < pages { a rel="next" href=(link(page + 1)) { "next →" } }
        }
    };
    Html(layout("Findings", Some(&user), "Findings", body)).into_response()
}

fn partner_names(f: &Finding) -> String {
    f.partner_ids
        .iter()
        .map(|p| {
            f.evidence
                .iter()
                .find(|e| e.partner_id.as_deref() == Some(p.as_str()))
                .and_then(|e| e.partner_name.clone())
                .unwrap_or_else(|| p.clone())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Deserialize)]
pub(crate) struct KeyQuery {
    #[serde(default)]
    key: String,
}

/// `GET /finding?key=...`.
pub(crate) async fn finding(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(q): Query<KeyQuery>,
) -> Response {
    let c = console.clone();
    let key = q.key.clone();
    let read = blocking(move || {
        let state = c.state()?;
        let trail = state.decisions_of(&key)?;
        Ok((
            state.console_finding(&key)?,
            state.console_timeline(&key)?,
            trail,
        ))
    })
    .await;
    let (found, timeline, trail) = match read {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some((stored, risk)) = found else {
        return (
            StatusCode::NOT_FOUND,
            Html(layout(
                "Not found",
                Some(&user),
                "Findings",
                html! { h1 { "No such finding" } p { a href="/findings" { "All open findings" } } },
            )),
        )
            .into_response();
    };
    let parsed: Option<Finding> = serde_json::from_str(&stored.payload).ok();
    let standing = crate::decisions::Standing::fold(&trail);
    let status = crate::decisions::status(
        &stored,
        Some(&standing),
        crate::values::date_of(&console.clock.now()),
    );
    let links = console.links();
    let link = |template: Option<&String>, id: &str| -> Option<String> {
        template.map(|t| {
            let id: String = id
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            t.replace("{id}", &id)
        })
    };
    let body = html! {
        p { a href="/findings" { "← open findings" } }
        h1 { (kind_label(&stored.kind)) }
        p { span class={ "sev " (stored.severity) } { (stored.severity) } " · " strong.status { (status.as_str()) } " · key " code { (stored.key) } }
        @if let Some(v) = &standing.verdict { p.verdict { "Decided: " (v.outcome.label()) " by " (v.by) " at " (minute(&v.at)) } }
        @if let Some(u) = standing.snoozed_until { p { "Snoozed until " (u.to_string()) } }
        @if let Some(a) = &standing.assignee { p { "Assigned to " (a) } }
        @if let Some(why) = &standing.reopened { p { "Reopened: " (why) } }
        @if let Some(f) = &parsed {
            p.summary { (f.summary) }
            dl {
                dt { "Account" }
                dd {
                    @match (&f.account_id, link(links.account.as_ref(), f.account_id.as_deref().unwrap_or(""))) {
                        (Some(id), Some(url)) => a href=(url) rel="noreferrer" { (f.account_name.as_deref().unwrap_or(id)) " (" (id) ")" },
                        (Some(id), None) => { (f.account_name.as_deref().unwrap_or(id)) " (" (id) ")" },
                        _ => "not in the CRM",
                    }
                }
                dt { "Partners" } dd { (partner_names(f)) }
                dt { "Value at risk" } dd { (risk.map(money).unwrap_or_else(|| "-".into())) " " (console.currency) }
            }
            h2 { "Evidence" }
            div.scroll {
                table {
                    thead { tr { th { "Record" } th { "Name" } th { "Partner" } th { "Status" } th { "Date" } th { "Expires" } th.n { "Amount" } } }
                    tbody {
                        @for e in &f.evidence {
                            tr {
                                td {
                                    (e.record.as_str()) " "
                                    @match (e.record, link(links.opportunity.as_ref(), &e.id)) {
                                        (crate::engine::Record::Opportunity, Some(url)) => a href=(url) rel="noreferrer" { (e.id) },
                                        _ => code { (e.id) },
                                    }
                                }
                                td { (e.name.as_deref().unwrap_or("")) }
                                td { (e.partner_name.as_deref().or(e.partner_id.as_deref()).unwrap_or("direct")) }
                                td { (e.status) }
                                td { (e.at.format("%Y-%m-%d").to_string()) }
                                td { (e.expires_at.map(|x| x.format("%Y-%m-%d").to_string()).unwrap_or_default()) }
                                td.n { (e.amount.map(money).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        } @else {
            p.note { "This finding's details are in an older format and cannot be shown." }
        }
        h2 { "Timeline" }
        ol.timeline {
            @for ev in &timeline {
                li { @if !ev.at.is_empty() { time { (minute(&ev.at)) } " " } (ev.what) }
            }
            @for d in &trail {
                li { time { (minute(&d.at)) } " " (d.outcome.replace('_', " ")) " by " (d.by)
                     @if let Some(a) = &d.assignee { " → " (a) }
                     @if let Some(u) = &d.until { " until " (u) }
                     @if let Some(n) = &d.note { " · " q { (n) } } }
            }
        }
        @if stored.resolved_at.is_none() {
            h2 { "Decide" }
            (decision_forms(&user, &stored.key))
        }
    };
    Html(layout("Finding", Some(&user), "Findings", body)).into_response()
}

/// The decision buttons: each a form carrying the CSRF token.
fn decision_forms(user: &User, key: &str) -> Markup {
    let choices = [
        ("partner_keeps", "Partner keeps"),
        ("direct_keeps", "Direct keeps"),
        ("split", "Split"),
        ("not_a_conflict", "Not a conflict"),
    ];
    html! {
        div.decide {
            @for (value, label) in choices {
                form method="post" action="/finding/decide" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    input type="hidden" name="key" value=(key);
                    input type="hidden" name="decision" value=(value);
                    button type="submit" name="submit" value=(value) { (label) }
                }
            }
            form method="post" action="/finding/decide" {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="hidden" name="key" value=(key);
                input type="hidden" name="decision" value="snooze";
                label { "Snooze days " input type="number" name="days" min="1" max="90" value="7"; }
                button type="submit" { "Snooze" }
            }
            form method="post" action="/finding/decide" {
                input type="hidden" name="csrf" value=(user.csrf);
                input type="hidden" name="key" value=(key);
                input type="hidden" name="decision" value="assign";
                label { "Assign to " input name="assignee" maxlength="80"; }
                button type="submit" { "Assign" }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub decision: String,
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub assignee: Option<String>,
}

fn decision_error(user: &User, status: StatusCode, why: String, key: &str) -> Response {
    (
        status,
        Html(layout(
            "Decide",
            Some(user),
            "Findings",
            html! {
                h1 { "Not recorded" }
                p.refused role="alert" { (why) }
                p { a href={ "/finding" (query(&[("key", Some(key.to_string()))])) } { "Back to the finding" } }
            },
        )),
    )
        .into_response()
}

/// `POST /finding/decide`: records the decision through
/// [`crate::decisions::record`] (the CLI's and Slack's code path), audited
/// with the signed-in user, then back to the open list.
pub(crate) async fn decide(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Form(form): Form<DecideForm>,
) -> Response {
    if let Err(refused) = check_csrf(&user, &form.csrf) {
        return *refused;
    }
    use crate::decisions::{Decision, DecisionError, Outcome};
    let now = console.clock.now();
    let until = form
        .days
        .filter(|d| (1..=365).contains(d))
        .map(|d| crate::values::date_of(&now) + chrono::Days::new(u64::from(d)));
    let outcome = match Outcome::parse(&form.decision, until, form.assignee.as_deref()) {
        Ok(o) => o,
        Err(e) => return decision_error(&user, StatusCode::BAD_REQUEST, e.to_string(), &form.key),
    };
    let decision = Decision {
        key: form.key.clone(),
        outcome,
        by: user.name.clone(),
        note: Some("via the console".into()),
    };
    let c = console.clone();
    let done = tokio::task::spawn_blocking(move || {
        let state = c.state().map_err(|e| e.to_string())?;
        crate::decisions::record(&state, &decision, now).map_err(|e| match e {
            DecisionError::State(s) => {
                tracing::warn!(error = %s, "Console: decision not recorded.");
                "the state could not be written; the log says why".to_string()
            }
            other => other.to_string(),
        })
    })
    .await;
    match done {
        Ok(Ok(r)) => {
            tracing::info!(key = %r.key, outcome = %r.outcome, by = %r.by, "Console: decision recorded.");
            axum::response::Redirect::to("/findings").into_response()
        }
        Ok(Err(why)) => decision_error(&user, StatusCode::CONFLICT, why, &form.key),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SortQuery {
    sort: Option<String>,
    page: Option<u64>,
}

/// Partners per page.
const PARTNERS_PAGE: usize = 100;

/// `GET /partners?sort=...`.
pub(crate) async fn partners(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(q): Query<SortQuery>,
) -> Response {
    let snap = console.snapshot();
    let mut rows: Vec<&super::snapshot::PartnerRow> = snap.partners.iter().collect();
    const SORTS: [&str; 9] = [
        "name",
        "tier",
        "reps",
        "rate",
        "pipeline",
        "revenue",
        "registrations",
        "conflicts",
        "dormant",
    ];
    let sort = given(&q.sort)
        .filter(|s| SORTS.contains(&s.as_str()))
        .unwrap_or_else(|| "revenue".into());
    let by = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal);
    match sort.as_str() {
        "name" => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        "tier" => rows.sort_by(|a, b| a.tier.cmp(&b.tier).then(a.name.cmp(&b.name))),
        "reps" => rows.sort_by_key(|p| std::cmp::Reverse(p.reps)),
        "rate" => rows.sort_by(|a, b| by(a.rate.unwrap_or(-1.0), b.rate.unwrap_or(-1.0))),
        "pipeline" => rows.sort_by(|a, b| by(a.pipeline, b.pipeline)),
        "registrations" => rows.sort_by_key(|p| std::cmp::Reverse(p.open_registrations)),
        "conflicts" => rows.sort_by_key(|p| std::cmp::Reverse(p.conflicts)),
        "dormant" => rows.sort_by(|a, b| b.dormant.cmp(&a.dormant).then(a.name.cmp(&b.name))),
        _ => rows.sort_by(|a, b| by(a.revenue, b.revenue)),
    }
    let pages = rows.len().div_ceil(PARTNERS_PAGE).max(1) as u64;
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let total = rows.len();
    rows = rows
        .into_iter()
        .skip((page as usize - 1) * PARTNERS_PAGE)
        .take(PARTNERS_PAGE)
        .collect();
    let link = |p: u64| format!("/partners?sort={sort}&page={p}");
    let col = |key: &str, label: &str| {
        html! { th { a href={ "/partners?sort=" (key) } class=[(sort == key).then_some("on")] { (label) } } }
    };
    let body = html! {
        h1 { "Partners" }
        @if !snap.period.is_empty() { p { "Scorecards for " (snap.period) ", " (total) " partners · page " (page) " of " (pages) } }
        (note(&snap))
        div.scroll {
            table.partners {
                thead { tr {
                    (col("name", "Partner")) (col("tier", "Tier")) (col("reps", "Reps"))
                    th { "Active sellers" } (col("rate", "Rate")) (col("pipeline", "Pipeline"))
                    (col("revenue", "Revenue")) (col("registrations", "Open regs"))
                    (col("conflicts", "Conflicts")) (col("dormant", "Dormant"))
                } }
                tbody {
                    @for p in &rows {
                        tr {
                            td { a href={ "/partner" (query(&[("id", Some(p.id.clone()))])) } { (p.name) } }
                            td { (p.tier.as_deref().unwrap_or("")) }
                            td.n { (p.reps) }
                            td.n { (p.active_sellers) }
                            td.n { (p.rate.map_or("n/a".into(), pct)) }
                            td.n { (money(p.pipeline)) }
                            td.n { (money(p.revenue)) }
                            td.n { (p.open_registrations) }
                            td.n { (p.conflicts) }
                            td { @if p.dormant { span.dormant { "dormant" } } }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← previous" } }
            @if page < pages { a rel="next" href=(link(page + 1)) { "next →" } }
        }
    };
    Html(layout("Partners", Some(&user), "Partners", body)).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct IdQuery {
    #[serde(default)]
    id: String,
    /// The page of the partner's reps (1-based).
    reps_page: Option<u64>,
}

/// Reps per page on a partner's page (a partner with thousands of reps
/// would otherwise make a page of hundreds of kilobytes).
pub(crate) const REPS_PAGE: usize = 100;

/// `GET /partner?id=...`.
pub(crate) async fn partner(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(q): Query<IdQuery>,
) -> Response {
    let snap = console.snapshot();
    let Some(p) = snap.partner(&q.id) else {
        return (
            StatusCode::NOT_FOUND,
            Html(layout(
                "Not found",
                Some(&user),
                "Partners",
                html! { h1 { "No such partner" } (note(&snap)) p { a href="/partners" { "All partners" } } },
            )),
        )
            .into_response();
    };
    let trend = snap.review.as_ref().and_then(|r| {
        let pr = r.partners.iter().find(|x| x.partner_id == p.id)?;
        let labels: Vec<String> = r.quarters.iter().map(|q| q.label.clone()).collect();
        let m = |f: fn(&crate::engine::review::Metrics) -> Option<f64>| -> Vec<Option<f64>> {
            labels.iter().map(|l| pr.quarters.get(l).and_then(f)).collect()
        };
        Some(html! {
            div.charts {
                (PreEscaped(charts::trend("Pipeline and revenue", &labels, &[
                    Series { name: "pipeline", color: BLUE_LINE, values: m(|x| Some(x.sourced_pipeline_created)) },
                    Series { name: "revenue", color: GREEN_LINE, values: m(|x| Some(x.sourced_revenue)) },
                ], money)))
                (PreEscaped(charts::trend("Reps and active sellers", &labels, &[
                    Series { name: "reps", color: BLUE_LINE, values: m(|x| Some(x.reps as f64)) },
                    Series { name: "active sellers", color: GREEN_LINE, values: m(|x| Some(x.active_sellers as f64)) },
                ], |v| format!("{v:.0}"))))
                (PreEscaped(charts::trend("Active-seller rate", &labels, &[
                    Series { name: "rate", color: BLUE_LINE, values: m(|x| x.active_seller_rate) },
                ], pct)))
            }
        })
    });
    // The reps, sellers first (the snapshot's order), a page at a time.
    let sold_total = p.rep_list.iter().filter(|r| r.deals > 0).count();
    let idle_total = p.rep_list.len() - sold_total;
    let reps_pages = p.rep_list.len().div_ceil(REPS_PAGE).max(1);
    let reps_page = q.reps_page.unwrap_or(1).clamp(1, reps_pages as u64) as usize;
    let from = (reps_page - 1) * REPS_PAGE;
    let shown = &p.rep_list[from.min(p.rep_list.len())..(from + REPS_PAGE).min(p.rep_list.len())];
    let sold: Vec<_> = shown.iter().filter(|r| r.deals > 0).collect();
    let idle: Vec<_> = shown.iter().filter(|r| r.deals == 0).collect();
    let reps_link = |n: usize| {
        format!(
            "/partner{}",
            query(&[
                ("id", Some(p.id.clone())),
                ("reps_page", Some(n.to_string()))
            ])
        )
    };
    let body = html! {
        p { a href="/partners" { "← partners" } }
        h1 { (p.name) }
        p {
            @if let Some(t) = &p.tier { "Tier " (t) " · " }
            (p.reps) " reps, " (p.active_sellers) " active sellers (" (p.rate.map_or("n/a".into(), pct)) ")"
            @if p.dormant { " · " span.dormant { "dormant" } }
        }
        p {
            a href={ "/findings" (query(&[("partner", Some(p.id.clone()))])) } { (p.conflicts) " open conflicts" }
            " · "
            a href={ "/registrations" (query(&[("partner", Some(p.id.clone()))])) } { (p.open_registrations) " open registrations" }
        }
        @if let Some(t) = trend { (t) }
        @if !sold.is_empty() || (sold_total == 0 && reps_page == 1) {
            h2 { "Reps who sold in " (snap.period) ": " (sold_total) }
            (rep_table(&sold))
        }
        @if !idle.is_empty() || (idle_total == 0 && reps_page == reps_pages) {
            h2 { "Reps who did not: " (idle_total) }
            (rep_table(&idle))
        }
        @if reps_pages > 1 {
            p.count { "Reps " (from + 1) "–" (from + shown.len()) " of " (p.rep_list.len()) }
            nav.pager {
                @if reps_page > 1 { a rel="prev" href=(reps_link(reps_page - 1)) { "← previous reps" } }
                @if reps_page < reps_pages { a rel="next" href=(reps_link(reps_page + 1)) { "next reps →" } }
            }
        }
    };
    Html(layout("Partner", Some(&user), "Partners", body)).into_response()
}

fn rep_table(reps: &[&super::snapshot::RepRow]) -> Markup {
    html! {
        @if !reps.is_empty() {
            div.scroll {
                table {
                    thead { tr { th { "Rep" } th { "E-mail" } th { "Status" } th.n { "Deals" } } }
                    tbody {
                        @for r in reps {
                            tr {
                                td { (r.name) }
                                td { (r.email.as_deref().unwrap_or("")) }
                                td { @if r.active { "active" } @else { "left" } }
                                td.n { (r.deals) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RegQuery {
    partner: Option<String>,
    state: Option<String>,
    page: Option<u64>,
}

/// `GET /registrations?partner=&state=`.
pub(crate) async fn registrations(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(q): Query<RegQuery>,
) -> Response {
    let snap = console.snapshot();
    let partner = given(&q.partner);
    let state = given(&q.state);
    let matching: Vec<_> = snap
        .registrations
        .iter()
        .filter(|r| partner.as_deref().is_none_or(|p| r.partner_id == p))
        .filter(|r| state.as_deref().is_none_or(|s| r.state.as_str() == s))
        .collect();
    let count = |s: RegState| {
        snap.registrations
            .iter()
            .filter(|r| partner.as_deref().is_none_or(|p| r.partner_id == p))
            .filter(|r| r.state == s)
            .count()
    };
    let page = q.page.unwrap_or(1).max(1);
    let size = PAGE_SIZE as usize;
    let pages = matching.len().div_ceil(size).max(1) as u64;
    let shown = matching
        .iter()
        .skip((page as usize - 1).saturating_mul(size))
        .take(size);
    let link = |p: u64| {
        format!(
            "/registrations{}",
            query(&[
                ("partner", partner.clone()),
                ("state", state.clone()),
                ("page", Some(p.to_string())),
            ])
        )
    };
    let body = html! {
        h1 { "Registrations" }
        (note(&snap))
        p.tabs {
            @for s in [RegState::Expiring, RegState::Active, RegState::Expired] {
                a href={ "/registrations" (query(&[("partner", partner.clone()), ("state", Some(s.as_str().into()))])) }
                  class=[(state.as_deref() == Some(s.as_str())).then_some("on")] { (s.as_str()) " (" (count(s)) ")" }
                " "
            }
            a href={ "/registrations" (query(&[("partner", partner.clone())])) } { "all" }
        }
        div.scroll {
            table {
                thead { tr { th { "State" } th { "Registration" } th { "Partner" } th { "Customer" } th { "Status" } th { "Submitted" } th { "Expires" } th.n { "Amount" } } }
                tbody {
                    @for r in shown {
                        tr {
                            td { span class={ "reg " (r.state.as_str()) } { (r.state.as_str()) } }
                            td { code { (r.id) } }
                            td { a href={ "/partner" (query(&[("id", Some(r.partner_id.clone()))])) } { (r.partner_name) } }
                            td { (r.customer) }
                            td { (r.status) }
                            td { (r.submitted_at.format("%Y-%m-%d").to_string()) }
                            td { (r.expires_at.map(|e| e.format("%Y-%m-%d").to_string()).unwrap_or_default()) }
                            td.n { (r.amount.map(money).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← previous" } }
            @if page < pages { a rel="next" href=(link(page + 1)) { "next →" } }
        }
    };
    Html(layout("Registrations", Some(&user), "Registrations", body)).into_response()
}

/// `GET /review`: the review's numbers and charts in the console's frame.
pub(crate) async fn review(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
) -> Response {
    let snap = console.snapshot();
    let body = html! {
        h1 { "Channel review" }
        (note(&snap))
        @if let Some(r) = &snap.review {
            p { "As of " (day(&r.as_of)) ". " a href="/review/print" { "Printable version" } }
            (program_trend(&snap))
            section {
                h2 { "Open conflicts now: " (r.open_conflicts_now.open) }
                @if let Some(days) = r.open_conflicts_now.oldest_open_days { p { "The oldest has been open " (days) " days." } }
            }
            @if !r.dormant.is_empty() {
                section {
                    h2 { "Dormant partners: " (r.dormant.len()) }
                    div.scroll { table {
                        thead { tr { th { "Partner" } th.n { "Reps" } th.n { "Cost" } th { "Dormant quarters" } } }
                        tbody { @for d in &r.dormant { tr {
                            td { a href={ "/partner" (query(&[("id", Some(d.partner_id.clone()))])) } { (d.partner_name) } }
                            td.n { (d.reps) }
                            td.n { (d.cost.map(money).unwrap_or_else(|| "-".into())) }
                            td { (d.quarters.join(", ")) }
                        } } }
                    } }
                }
            }
        }
    };
    Html(layout("Review", Some(&user), "Review", body)).into_response()
}

/// `GET /review/print`: the review's own HTML (`review --format html`), one
/// self-contained page; its one `<style>` block is allowed by its hash.
pub(crate) async fn review_print(State(console): State<Arc<Console>>) -> Response {
    let snap = console.snapshot();
    let Some(page) = snap.review_html.clone() else {
        return (
            StatusCode::NOT_FOUND,
            Html(refusal(snap.note.as_deref().unwrap_or("No review yet."))),
        )
            .into_response();
    };
    let style = page
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(css, _)| css)
        .unwrap_or("");
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, style.as_bytes()).as_ref());
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut res = Html(page).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}
