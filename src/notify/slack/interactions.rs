//! Slack buttons on conflict alerts, and their clicks (issue 15).
//!
//! With a Slack app's signing secret configured
//! (`alerts.slack.signing_secret`), every conflict alert carries buttons:
//! partner keeps / direct keeps / not a conflict / snooze 7 days / assign to
//! me. Slack POSTs a click to `POST /slack/interactions` on the daemon's
//! HTTP server (`application/x-www-form-urlencoded`, one `payload` field
//! holding JSON). A request is taken only when:
//! - its body is at most 1 MB (else 400);
//! - `X-Slack-Signature` is `v0=` + hex HMAC-SHA256 of
//!   `v0:{X-Slack-Request-Timestamp}:{raw body}` under the signing secret,
//!   compared in constant time (`ring::hmac::verify`) (else 401);
//! - its timestamp is within 5 minutes of the real clock, past or future
//!   (else 401);
//! - its signature has not been seen in the last 5 minutes (a replay; 401).
//!
//! A rejected request changes nothing. An accepted one is answered `200` at
//! once (Slack wants an answer within 3 seconds); the decision is then
//! recorded in the state ([`crate::decisions::record`]) and the original
//! message replaced through the click's `response_url` to show the decision
//! and who took it (or, when it could not be recorded, why).
//!
//! Incoming webhooks keep working without an app: without a signing secret
//! there are no buttons and no route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::decisions::{self, Decision, Outcome};

/// Largest request body taken.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// How far a request's timestamp may be from now, in seconds.
pub(crate) const MAX_SKEW_SECS: i64 = 300;
/// The actions block's id on alerts.
pub(crate) const BLOCK_ID: &str = "channel-sync-decide";
/// Button `action_id`s start with this, then the outcome.
const ACTION_PREFIX: &str = "cs:";
/// Days a "Snooze" button holds reminders.
pub(crate) const SNOOZE_DAYS: i64 = 7;

/// The buttons, as (outcome, label, style).
const BUTTONS: [(&str, &str, Option<&str>); 5] = [
    ("partner_keeps", "Partner keeps", Some("primary")),
    ("direct_keeps", "Direct keeps", None),
    ("not_a_conflict", "Not a conflict", None),
    ("snooze", "Snooze 7 days", None),
    ("assign", "Assign to me", None),
];

/// Adds the decision buttons to a rendered alert (Block Kit). A key longer
/// than a button value may hold (2000) gets none.
pub(crate) fn add_buttons(message: &mut Value, key: &str) {
    if key.len() > 2000 {
        return;
    }
    let elements: Vec<Value> = BUTTONS
        .iter()
        .map(|(outcome, label, style)| {
            let mut b = json!({
                "type": "button",
                "action_id": format!("{ACTION_PREFIX}{outcome}"),
                "text": {"type": "plain_text", "text": label},
                "value": key,
            });
            if let Some(s) = style {
                b["style"] = json!(s);
            }
            b
        })
        .collect();
    if let Some(blocks) = message["blocks"].as_array_mut() {
        blocks.push(json!({"type": "actions", "block_id": BLOCK_ID, "elements": elements}));
    }
}

/// What the route needs.
pub(crate) struct Interactions {
    secret: ring::hmac::Key,
    state: crate::config::StateSettings,
    /// The daemon's clock (decision times, snooze days).
    clock: crate::clock::Clock,
    /// Signatures taken in the last [`MAX_SKEW_SECS`], with their timestamp.
    seen: Mutex<HashMap<String, i64>>,
    http: reqwest::Client,
    response_url_prefix: String,
}

impl Interactions {
    pub(crate) fn new(
        secret: &Secret,
        state: crate::config::StateSettings,
        clock: crate::clock::Clock,
        response_url_prefix: String,
    ) -> Interactions {
        Interactions {
            secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes()),
            state,
            clock,
            seen: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            response_url_prefix,
        }
    }
}

/// `POST /slack/interactions`.
pub(crate) fn router(interactions: Arc<Interactions>) -> Router {
    Router::new()
        .route("/slack/interactions", post(interact))
        .with_state(interactions)
}

/// Why a request was turned away (logged; never its content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    TooLarge,
    Unsigned,
    Stale,
    BadSignature,
    Replay,
    Malformed,
}

impl Rejection {
    fn status(self) -> StatusCode {
        match self {
            Rejection::TooLarge | Rejection::Malformed => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks a request's signature, age and novelty; remembers its signature.
pub(crate) fn verify(
    key: &ring::hmac::Key,
    seen: &Mutex<HashMap<String, i64>>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(signature)) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    ) else {
        return Err(Rejection::Unsigned);
    };
    let ts: i64 = ts.trim().parse().map_err(|_| Rejection::Unsigned)?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(Rejection::Stale);
    }
    let tag = signature
        .strip_prefix("v0=")
        .and_then(hex_decode)
        .ok_or(Rejection::BadSignature)?;
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    ring::hmac::verify(key, &base, &tag).map_err(|_| Rejection::BadSignature)?;
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.retain(|_, at| (now - *at).abs() <= MAX_SKEW_SECS);
    if seen.insert(signature.to_ascii_lowercase(), ts).is_some() {
        return Err(Rejection::Replay);
    }
    Ok(())
}

/// A click, as far as channel-sync reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Click {
    pub user_id: String,
    pub user_name: Option<String>,
    pub outcome: String,
    pub key: String,
    pub response_url: Option<String>,
    /// The original message's blocks (to replace it with the decision).
    pub blocks: Option<Value>,
}

/// Slack user ids are upper-case letters and digits.
fn is_user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Reads the form body's `payload` (a `block_actions` click on one of our
/// buttons); `None` for anything else.
pub(crate) fn parse(body: &[u8]) -> Option<Click> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())?;
    let v: Value = serde_json::from_str(&payload).ok()?;
    if v["type"] != "block_actions" {
        return None;
    }
    let action = v["actions"].as_array()?.first()?;
    let outcome = action["action_id"].as_str()?.strip_prefix(ACTION_PREFIX)?;
    if !decisions::OUTCOMES.contains(&outcome) {
        return None;
    }
    let user_id = v["user"]["id"].as_str().filter(|u| is_user_id(u))?;
    Some(Click {
        user_id: user_id.to_string(),
        user_name: v["user"]["username"]
            .as_str()
            .or_else(|| v["user"]["name"].as_str())
            .map(str::to_string),
        outcome: outcome.to_string(),
        key: action["value"].as_str()?.to_string(),
        response_url: v["response_url"].as_str().map(str::to_string),
        blocks: v["message"]["blocks"]
            .as_array()
            .map(|b| Value::Array(b.clone())),
    })
}

async fn interact(
    AxumState(it): AxumState<Arc<Interactions>>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return reject(Rejection::TooLarge),
    };
    if let Err(r) = verify(
        &it.secret,
        &it.seen,
        &headers,
        &body,
        Utc::now().timestamp(),
    ) {
        return reject(r);
    }
    let Some(click) = parse(&body) else {
        return reject(Rejection::Malformed);
    };
    // Answer now; record and update the message right after.
    tokio::spawn(async move { act(it, click).await });
    StatusCode::OK
}

fn reject(r: Rejection) -> StatusCode {
    tracing::warn!(reason = ?r, "Slack interaction rejected.");
    r.status()
}

/// Records the click's decision, then replaces the original message.
async fn act(it: Arc<Interactions>, click: Click) {
    let now = it.clock.now();
    let recorded = {
        let (it, click) = (it.clone(), click.clone());
        tokio::task::spawn_blocking(move || record(&it, &click, now))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
    };
    let update = match &recorded {
        Ok(outcome) => updated_message(&click, outcome, now),
        Err(why) => {
            tracing::warn!(key = %click.key, error = %why, "Slack decision not recorded.");
            json!({
                "response_type": "ephemeral",
                "replace_original": false,
                "text": format!("channel-sync could not record that: {why}"),
            })
        }
    };
    let Some(url) = click
        .response_url
        .as_deref()
        .filter(|u| u.starts_with(&it.response_url_prefix))
    else {
        tracing::warn!("Slack interaction without a usable response_url; message not updated.");
        return;
    };
    match it.http.post(url).json(&update).send().await {
        Ok(r) if r.status().is_success() => {
            tracing::info!(key = %click.key, "Slack message updated with the decision.")
        }
        Ok(r) => {
            tracing::warn!(
                status = r.status().as_u16(),
                "Slack message update refused."
            )
        }
        Err(e) => tracing::warn!(error = %e.without_url(), "Slack message update failed."),
    }
}

/// The day a snooze clicked `now` ends: [`SNOOZE_DAYS`] ahead.
fn snooze_until(now: DateTime<Utc>) -> chrono::NaiveDate {
    now.date_naive() + chrono::Duration::days(SNOOZE_DAYS)
}

fn record(it: &Interactions, click: &Click, now: DateTime<Utc>) -> Result<Outcome, String> {
    let outcome = Outcome::parse(
        &click.outcome,
        Some(snooze_until(now)),
        Some(&click.user_id),
    )
    .map_err(|e| e.to_string())?;
    let state = crate::store::State::connect(&it.state).map_err(|e| e.to_string())?;
    let by = match &click.user_name {
        Some(n) => format!(
            "slack:{} ({})",
            click.user_id,
            n.chars().take(80).collect::<String>()
        ),
        None => format!("slack:{}", click.user_id),
    };
    let decision = Decision {
        key: click.key.clone(),
        outcome: outcome.clone(),
        by,
        note: Some("from Slack".into()),
    };
    decisions::record(&state, &decision, now).map_err(|e| e.to_string())?;
    Ok(outcome)
}

/// The original message with the decision in it: a verdict replaces the
/// buttons; a snooze or an assignment keeps them (it can still be decided).
pub(crate) fn updated_message(click: &Click, outcome: &Outcome, now: DateTime<Utc>) -> Value {
    let who = format!("<@{}>", click.user_id);
    let line = match outcome {
        Outcome::Snooze { until } => format!(":zzz: Snoozed until {until} by {who}"),
        Outcome::Assign { .. } => format!(":bust_in_silhouette: Assigned to {who}"),
        o => format!(
            ":white_check_mark: Decided: *{}* by {who} on {}",
            o.label(),
            now.date_naive()
        ),
    };
    let mut blocks: Vec<Value> = click
        .blocks
        .as_ref()
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if outcome.is_verdict() {
        blocks.retain(|b| b["block_id"] != BLOCK_ID);
    }
    let context = json!({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]});
    match blocks.iter().position(|b| b["block_id"] == BLOCK_ID) {
        Some(i) => blocks.insert(i, context),
        None => blocks.push(context),
    }
    json!({
        "replace_original": true,
        "text": format!("{} — {}", click.key, line),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-request-timestamp", ts.parse().unwrap());
        h.insert("x-slack-signature", sig.parse().unwrap());
        h
    }

    /// Slack's documented example (docs.slack.dev; python-slack-sdk's
    /// signature tests).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn key() -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes())
    }

    #[test]
    fn slacks_documented_example_verifies_and_each_flaw_is_named() {
        let seen = Mutex::new(HashMap::new());
        let h = headers("1531420618", SIG);
        // Five minutes to the second is still fresh: Slack asks to refuse
        // requests more than five minutes old.
        assert_eq!(
            verify(&key(), &seen, &h, BODY.as_bytes(), 1531420618 + 300),
            Ok(())
        );
        assert_eq!(
            verify(&key(), &seen, &h, BODY.as_bytes(), 1531420618 + 300),
            Err(Rejection::Replay)
        );
        let seen = Mutex::new(HashMap::new());
        assert_eq!(
            verify(&key(), &seen, &h, BODY.as_bytes(), 1531420618 + 301),
            Err(Rejection::Stale)
        );
        assert_eq!(
            verify(&key(), &seen, &h, BODY.as_bytes(), 1531420618 - 301),
            Err(Rejection::Stale),
            "a timestamp from the future is refused too"
        );
        let mut tampered = BODY.to_string();
        tampered.push('x');
        assert_eq!(
            verify(&key(), &seen, &h, tampered.as_bytes(), 1531420618),
            Err(Rejection::BadSignature)
        );
        let other = headers("1531420618", &SIG.replace("v0=", "v1="));
        assert_eq!(
            verify(&key(), &seen, &other, BODY.as_bytes(), 1531420618),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify(
                &key(),
                &seen,
                &HeaderMap::new(),
                BODY.as_bytes(),
                1531420618
            ),
            Err(Rejection::Unsigned)
        );
        assert!(
            seen.lock().unwrap().is_empty(),
            "nothing rejected is remembered"
        );
    }

    #[test]
    fn signatures_seen_are_forgotten_once_too_old_to_replay() {
        let sign = |ts: i64| -> String {
            let tag = ring::hmac::sign(&key(), format!("v0:{ts}:{BODY}").as_bytes());
            let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            format!("v0={hex}")
        };
        let seen = Mutex::new(HashMap::new());
        let first = 1_800_000_000;
        let h = headers(&first.to_string(), &sign(first));
        assert_eq!(verify(&key(), &seen, &h, BODY.as_bytes(), first), Ok(()));
        let later = first + 301;
        let h = headers(&later.to_string(), &sign(later));
        assert_eq!(verify(&key(), &seen, &h, BODY.as_bytes(), later), Ok(()));
        // The first can no longer pass the age check: it is not kept.
        let kept: Vec<i64> = seen.lock().unwrap().values().copied().collect();
        assert_eq!(kept, [later]);
    }

    #[test]
    fn a_click_is_read_from_the_form_payload() {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U123", "username": "ana"},
            "actions": [{"action_id": "cs:partner_keeps", "value": "partner_vs_partner:A-16"}],
            "response_url": "https://hooks.slack.com/actions/T/1/x",
            "message": {"blocks": [{"type": "section"}]},
        });
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let click = parse(body.as_bytes()).unwrap();
        assert_eq!(click.user_id, "U123");
        assert_eq!(click.outcome, "partner_keeps");
        assert_eq!(click.key, "partner_vs_partner:A-16");
        for bad in [
            json!({"type": "view_submission"}),
            json!({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "other", "value": "k"}]}),
            json!({"type": "block_actions", "user": {"id": "<!channel>"}, "actions": [{"action_id": "cs:split", "value": "k"}]}),
        ] {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &bad.to_string())
                .finish();
            assert_eq!(parse(body.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_key_gets_buttons_up_to_the_2000_characters_a_button_value_holds() {
        let with = |key: &str| {
            let mut msg = json!({"text": "t", "blocks": [{"type": "section"}]});
            add_buttons(&mut msg, key);
            msg.to_string().contains(BLOCK_ID)
        };
        assert!(with(&"k".repeat(2000)));
        assert!(!with(&"k".repeat(2001)));
    }

    #[test]
    fn a_snooze_from_slack_ends_a_week_later() {
        let now = crate::values::parse_timestamp("2026-11-26T23:30:00Z").unwrap();
        assert_eq!(snooze_until(now).to_string(), "2026-12-03");
    }

    #[test]
    fn a_verdict_replaces_the_buttons_and_a_snooze_keeps_them() {
        let mut msg = json!({"text": "t", "blocks": [{"type": "section"}]});
        add_buttons(&mut msg, "k");
        let click = Click {
            user_id: "U1".into(),
            user_name: None,
            outcome: "split".into(),
            key: "k".into(),
            response_url: None,
            blocks: Some(msg["blocks"].clone()),
        };
        let now = crate::values::parse_timestamp("2026-11-26T00:00:00Z").unwrap();
        let v = updated_message(&click, &Outcome::Split, now);
        let text = v.to_string();
        assert!(!text.contains(BLOCK_ID), "{text}");
        assert!(
            text.contains("Decided: *split* by <@U1> on 2026-11-26"),
            "{text}"
        );
        assert_eq!(v["replace_original"], true);
        let until = now.date_naive() + chrono::Duration::days(7);
        let v = updated_message(&click, &Outcome::Snooze { until }, now);
        assert!(v.to_string().contains(BLOCK_ID));
        assert!(v.to_string().contains("Snoozed until 2026-12-03 by <@U1>"));
        // The line goes just above the buttons it was clicked on.
        let kinds: Vec<&str> = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["section", "context", "actions"]);
    }
}
