//! Configuration (SPEC §5): a TOML file, then `CHANNEL_SYNC__<SECTION>__<KEY>`
//! environment overrides, deserialised into typed settings and validated at load.
//! Every failure names the key it is about.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub(crate) mod check;
mod console;
mod hubspot;
mod partnerstack;
mod salesforce;
pub use console::{ConsoleAuth, ConsoleSettings};
pub use hubspot::{HubspotProperties, HubspotSettings};
pub use partnerstack::{ExternalKey, PartnerstackSettings};
pub use salesforce::{
    Attribution, RegistrationFields, RegistrationSource, SalesforceAuth, SalesforceFields,
    SalesforcePrmSettings, SalesforceSettings,
};

/// The path used when `--config` is not given. A missing default file means
/// "all defaults"; a missing file named with `--config` is an error.
pub const DEFAULT_PATH: &str = "config/channel-sync.toml";
const ENV_PREFIX: &str = "CHANNEL_SYNC";

/// A configuration problem: exit code 78, with the offending key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configuration: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub rules: Rules,
    pub scorecard: ScorecardSettings,
    pub state: StateSettings,
    pub crm: CrmSettings,
    pub prm: PrmSettings,
    pub alerts: AlertSettings,
    pub writeback: WritebackSettings,
    pub schedule: ScheduleSettings,
    pub server: ServerSettings,
    pub review: ReviewSettings,
    pub console: ConsoleSettings,
}

impl Settings {
    /// Whether cycles need the review's optional inputs (costs, MDF): a
    /// review value is written back, the daemon posts the review digest,
    /// or the console shows the review.
    pub fn reads_review_inputs(&self) -> bool {
        !self.writeback.review_fields().is_empty()
            || self.review.cron.is_some()
            || self.console.listen.is_some()
    }
}

/// `review.*`: the channel review (SPEC §6).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewSettings {
    /// The share of revenue that is margin, for ROI (0 < x <= 1).
    pub gross_margin: f64,
    /// How long after an MDF campaign ends its opportunities still count.
    pub mdf_attribution_days: u32,
    /// Full quarters without an active seller or new pipeline that make a
    /// partner with reps dormant.
    pub dormant_quarters: u32,
    /// When `run` posts the review digest (6-field cron, UTC); none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The route the digest goes to, on Slack and on Teams when the route
    /// reaches them (`default`: `alerts.slack.webhook_url` and
    /// `alerts.teams.webhook_url`).
    pub route: String,
    /// A Slack webhook of the digest's own (a secret, from the environment
    /// only): when it or `teams_webhook_url` is set, the digest goes to them
    /// instead of `route`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    /// A Teams Workflows URL of the digest's own (a secret), like `webhook_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams_webhook_url: Option<Secret>,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        ReviewSettings {
            gross_margin: 1.0,
            mdf_attribution_days: 180,
            dormant_quarters: 2,
            cron: None,
            route: "default".into(),
            webhook_url: None,
            teams_webhook_url: None,
        }
    }
}

/// `schedule.*`: when `run` cycles.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// 6-field cron with seconds, in UTC: `sec min hour day-of-month month day-of-week`.
    pub cron: String,
    /// Run a cycle as soon as `run` starts, not only at the first cron time.
    pub run_at_start: bool,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            cron: "0 */15 * * * *".into(),
            run_at_start: true,
        }
    }
}

impl ScheduleSettings {
    /// The parsed schedule (validated at load).
    pub fn parsed(&self) -> Result<croner::Cron, String> {
        let fields = self.cron.split_whitespace().count();
        if fields != 6 {
            return Err(format!(
                "'{}' has {fields} fields; use 6 (sec min hour day-of-month month day-of-week), e.g. \"0 */15 * * * *\"",
                self.cron
            ));
        }
        // A step wider than its field (`*/99` seconds) is accepted by the
        // parser but means "only at the start": almost always a typo.
        const FIELDS: [(&str, u32); 6] = [
            ("seconds", 60),
            ("minutes", 60),
            ("hours", 24),
            ("day-of-month", 31),
            ("month", 12),
            ("day-of-week", 7),
        ];
        for (field, (name, span)) in self.cron.split_whitespace().zip(FIELDS) {
            for part in field.split(',') {
                if let Some((_, step)) = part.split_once('/') {
                    match step.parse::<u32>() {
                        Ok(n) if (1..=span).contains(&n) => {}
                        _ => {
                            return Err(format!(
                                "'{}': the {name} step '/{step}' is out of range (1 to {span})",
                                self.cron
                            ));
                        }
                    }
                }
            }
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(&self.cron)
            .map_err(|e| format!("'{}' is not a valid cron expression: {e}", self.cron))
    }

    /// The time between two runs, from the next two occurrences after `now`.
    pub fn interval(&self, now: chrono::DateTime<chrono::Utc>) -> Option<std::time::Duration> {
        let cron = self.parsed().ok()?;
        let first = cron.find_next_occurrence(&now, false).ok()?;
        let second = cron.find_next_occurrence(&first, false).ok()?;
        (second - first).to_std().ok()
    }

    /// When the schedule next fires after `now`, if ever.
    pub fn next_after(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.parsed().ok()?.find_next_occurrence(&now, false).ok()
    }
}

/// `server.*`: the ops HTTP server of `run`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: String,
    /// How long a running cycle may take to finish after SIGTERM (`30s`).
    pub shutdown_grace: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "0.0.0.0:9090".into(),
            shutdown_grace: "30s".into(),
        }
    }
}

impl ServerSettings {
    pub fn shutdown_grace(&self) -> std::time::Duration {
        parse_duration(&self.shutdown_grace).unwrap_or(std::time::Duration::from_secs(30))
    }
}

/// A secret (token, webhook URL, key): taken from the environment only,
/// never printed. `Debug` and `Serialize` show `<redacted>`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(secrecy::SecretString::from(value.into()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// `state.*`: the SQLite state file, or a PostgreSQL database (`url`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    pub path: std::path::PathBuf,
    /// `postgres://user@host:port/db`: keep the state in PostgreSQL (shared
    /// by replicas, one of which leads) instead of the file at `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The PostgreSQL password, from `CHANNEL_SYNC__STATE__PASSWORD` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// How long a cycle waits for another one holding the state (`2m`)
    /// before it gives up, naming the holder.
    pub lock_wait: String,
    /// The key stored credentials are sealed with: 64 hex characters, from
    /// `CHANNEL_SYNC__STATE__ENCRYPTION_KEY` only (default: derived from the
    /// configured client secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<Secret>,
    /// Extra certificate authorities (a PEM file) trusted for TLS to the
    /// PostgreSQL state beside the system's, e.g. a cloud provider's bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            path: "state/channel-sync.db".into(),
            url: None,
            password: None,
            lock_wait: "2m".into(),
            encryption_key: None,
            ca_file: None,
        }
    }
}

impl StateSettings {
    pub fn lock_wait(&self) -> std::time::Duration {
        parse_duration(&self.lock_wait).unwrap_or(std::time::Duration::from_secs(120))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmKind {
    Files,
    Salesforce,
    Hubspot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrmKind {
    Files,
    Salesforce,
    Partnerstack,
}

/// `crm.*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmSettings {
    pub kind: Option<CrmKind>,
    pub files: FilesCrmSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salesforce: Option<SalesforceSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hubspot: Option<HubspotSettings>,
}

impl CrmSettings {
    /// `crm.salesforce.*`, with defaults when the section is absent.
    pub fn salesforce(&self) -> std::borrow::Cow<'_, SalesforceSettings> {
        match &self.salesforce {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(SalesforceSettings::default()),
        }
    }

    /// `crm.hubspot.*`, with defaults when the section is absent.
    pub fn hubspot(&self) -> std::borrow::Cow<'_, HubspotSettings> {
        match &self.hubspot {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(HubspotSettings::default()),
        }
    }
}

/// `crm.files.*`: CSV/JSONL exports in, `scorecards.csv` out.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesCrmSettings {
    pub dir: Option<std::path::PathBuf>,
    /// Where `scorecards.csv` is written (default: `dir`).
    pub out_dir: Option<std::path::PathBuf>,
}

/// `prm.*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrmSettings {
    pub kind: Option<PrmKind>,
    pub files: FilesPrmSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salesforce: Option<SalesforcePrmSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partnerstack: Option<PartnerstackSettings>,
}

impl PrmSettings {
    /// `prm.salesforce.*`, with defaults when the section is absent.
    pub fn salesforce(&self) -> std::borrow::Cow<'_, SalesforcePrmSettings> {
        match &self.salesforce {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(SalesforcePrmSettings::default()),
        }
    }

    /// `prm.partnerstack.*`, with defaults when the section is absent.
    pub fn partnerstack(&self) -> std::borrow::Cow<'_, PartnerstackSettings> {
        match &self.partnerstack {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(PartnerstackSettings::default()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesPrmSettings {
    pub dir: Option<std::path::PathBuf>,
}

/// `alerts.*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    pub slack: SlackSettings,
    pub teams: TeamsSettings,
    /// Post a conflict still undecided this long after it was first seen
    /// (`"5d"`) once more, to `escalate_route`, with its age and value at
    /// risk; off when absent (issue 15).
    pub escalate_after: Option<String>,
    /// The route escalations go to (a name under `alerts.slack.routes`);
    /// default: the default webhook.
    pub escalate_route: Option<String>,
}

/// `alerts.teams.*`: Microsoft Teams through a Power Automate Workflows
/// webhook ("When a Teams webhook request is received"), which takes an
/// Adaptive Card. Routing, digests and reminders are `alerts.slack`'s
/// (the route table); a route reaches Teams with `teams_webhook_url`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamsSettings {
    /// The default route's Workflows URL (a secret: it carries a `sig=`).
    pub webhook_url: Option<Secret>,
    /// Messages per second per webhook.
    pub per_second: u32,
    /// Longest `Retry-After` waited for within a cycle, in seconds.
    pub max_retry_wait_secs: u64,
    /// Per-request timeout, in seconds.
    pub timeout_secs: u64,
}

impl Default for TeamsSettings {
    fn default() -> Self {
        TeamsSettings {
            webhook_url: None,
            per_second: 1,
            max_retry_wait_secs: 30,
            timeout_secs: 10,
        }
    }
}

/// `alerts.slack.*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// The default incoming webhook (a secret). Without it no alert is sent.
    pub webhook_url: Option<Secret>,
    /// Above this many messages for one webhook in one cycle, one digest.
    pub max_per_cycle: usize,
    /// Remind about a still-open conflict after this long (`"7d"`, `"12h"`);
    /// off when absent.
    pub repeat_after: Option<String>,
    /// Messages per second per webhook (Slack allows about one).
    pub per_second: u32,
    /// Longest `Retry-After` waited for within a cycle, in seconds; a longer
    /// one leaves the message for the next cycle.
    pub max_retry_wait_secs: u64,
    /// Per-request timeout, in seconds.
    pub timeout_secs: u64,
    /// Extra webhooks: a finding goes to every route whose `kinds` (if any)
    /// contain its kind and whose `tiers` (if any) contain a tier of one of
    /// its partners; to the default webhook when no route takes it.
    pub routes: BTreeMap<String, SlackRoute>,
    /// The Slack app's signing secret (from the environment only): when set,
    /// conflict alerts carry decision buttons and the daemon takes their
    /// clicks on `POST /slack/interactions` (issue 15).
    pub signing_secret: Option<Secret>,
    /// Where a signed click's `response_url` may point (the message update
    /// goes nowhere else).
    pub response_url_prefix: String,
    /// The Slack app's bot token (from the environment only): people on
    /// conflict alerts are found by e-mail through `users.lookupByEmail`.
    pub bot_token: Option<Secret>,
    /// E-mail -> Slack user id (`U012ABC`): whom to mention for a CRM
    /// owner or partner manager; checked before any lookup.
    pub mentions: BTreeMap<String, String>,
    /// Slack's Web API base (tests point it elsewhere).
    pub api_url: String,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            webhook_url: None,
            max_per_cycle: 20,
            repeat_after: None,
            per_second: 1,
            max_retry_wait_secs: 30,
            timeout_secs: 10,
            routes: BTreeMap::new(),
            signing_secret: None,
            response_url_prefix: "https://hooks.slack.com/".into(),
            bot_token: None,
            mentions: BTreeMap::new(),
            api_url: "https://slack.com/api/".into(),
        }
    }
}

impl SlackSettings {
    /// `repeat_after` as a duration (validated at load).
    pub fn repeat_after(&self) -> Option<std::time::Duration> {
        self.repeat_after
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
    }

    /// `mentions` (e-mails to Slack user ids) and `api_url`.
    fn check_mentions(&self) -> Result<(), ConfigError> {
        for (email, id) in &self.mentions {
            let key = format!("alerts.slack.mentions.\"{email}\"");
            let e = email.trim();
            if !e.contains('@') || e.starts_with('@') || e.ends_with('@') {
                return Err(ConfigError::new(key, "not an e-mail address"));
            }
            let id = id.trim();
            let looks = id.len() >= 3
                && id.len() <= 32
                && id.starts_with(['U', 'W'])
                && id
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !looks {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "not a Slack user id: '{id}' (e.g. U012ABC, from the user's profile: Copy member ID)"
                    ),
                ));
            }
        }
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://"))
            || reqwest::Url::parse(&self.api_url).is_err()
        {
            return Err(ConfigError::new(
                "alerts.slack.api_url",
                format!("not an http(s) URL: '{}'", self.api_url),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackRoute {
    pub webhook_url: Option<Secret>,
    /// The route's Microsoft Teams Workflows URL (a secret): the route
    /// reaches Teams too, or only Teams without `webhook_url`.
    pub teams_webhook_url: Option<Secret>,
    pub kinds: Vec<String>,
    pub tiers: Vec<String>,
}

/// `writeback.*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WritebackSettings {
    /// Scorecard or review field (`active_seller_rate`, `reps`, `roi`, ...)
    /// -> CRM field name.
    pub fields: BTreeMap<String, String>,
    /// The opportunity field (Salesforce, e.g. `Channel_Decision__c`) or deal
    /// property (HubSpot, e.g. `channel_decision`) that decisions are written
    /// onto; off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_field: Option<String>,
}

impl WritebackSettings {
    /// `writeback.decision_field`: a field name (letters, digits, `_`), and
    /// a CRM to write it to.
    fn check_decision_field(&self, crm: Option<CrmKind>) -> Result<(), ConfigError> {
        let Some(field) = &self.decision_field else {
            return Ok(());
        };
        let key = "writeback.decision_field";
        let name = field.trim();
        if name.is_empty()
            || name.len() > 100
            || !name.starts_with(|c: char| c.is_ascii_alphabetic())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::new(
                key,
                format!(
                    "not a field name: '{field}' (e.g. Channel_Decision__c in Salesforce, channel_decision in HubSpot)"
                ),
            ));
        }
        match crm {
            Some(CrmKind::Salesforce | CrmKind::Hubspot) => Ok(()),
            _ => Err(ConfigError::new(
                key,
                "decisions are written onto CRM opportunities: needs crm.kind = \"salesforce\" or \"hubspot\" (files have no place for them; `channel-sync findings` lists decisions)",
            )),
        }
    }
}

impl WritebackSettings {
    /// The review's fields (`roi`, `dormant`, ...) mapped here: the cycle
    /// computes the review only when there is one.
    pub fn review_fields(&self) -> Vec<&'static str> {
        crate::engine::review::REVIEW_FIELDS
            .into_iter()
            .filter(|f| self.fields.contains_key(*f))
            .collect()
    }
}

/// Key names that hold secrets, wherever they appear.
const SECRET_KEYS: [&str; 11] = [
    "encryption_key",
    "bot_token",
    "signing_secret",
    "webhook_url",
    "teams_webhook_url",
    "token",
    "client_secret",
    "refresh_token",
    "secret_key",
    "public_key",
    "password",
];

/// `90s`, `15m`, `12h`, `7d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("not a duration: '{s}' (use e.g. 90s, 15m, 12h, 7d)"))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "not a duration: '{s}' (use e.g. 90s, 15m, 12h, 7d)"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(secs))
}

pub use crate::engine::{Rules, TierRules};

impl<'a> From<&'a Settings> for crate::engine::Policy<'a> {
    /// What the engine reads of the settings: rules, base currency, fiscal
    /// year and the review's parameters (never a webhook or a secret).
    fn from(s: &'a Settings) -> Self {
        crate::engine::Policy {
            rules: &s.rules,
            currency: &s.scorecard.currency,
            fiscal_year_start_month: s.scorecard.fiscal_year_start_month,
            review: crate::engine::ReviewRules {
                gross_margin: s.review.gross_margin,
                mdf_attribution_days: s.review.mdf_attribution_days,
                dormant_quarters: s.review.dormant_quarters,
            },
        }
    }
}

/// `scorecard.*` (SPEC §3.4, §2.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorecardSettings {
    /// 1 = quarters start in January, April, July, October.
    pub fiscal_year_start_month: u32,
    /// The base currency: empty currency cells mean this one.
    pub currency: String,
    /// Units of the base currency for one unit of each currency.
    pub fx: BTreeMap<String, f64>,
}

impl Default for ScorecardSettings {
    fn default() -> Self {
        ScorecardSettings {
            fiscal_year_start_month: 1,
            currency: "USD".into(),
            fx: BTreeMap::new(),
        }
    }
}

impl crate::values::Rates for ScorecardSettings {
    fn rate(&self, currency: &str) -> Option<f64> {
        ScorecardSettings::rate(self, currency)
    }
}

impl ScorecardSettings {
    /// The rate that converts `currency` into the base currency, if known.
    pub fn rate(&self, currency: &str) -> Option<f64> {
        if currency.eq_ignore_ascii_case(&self.currency) {
            return Some(1.0);
        }
        self.fx
            .iter()
            .find(|(code, _)| code.eq_ignore_ascii_case(currency))
            .map(|(_, r)| *r)
    }
}

/// Which configuration a command loads, said in one line: the file (or the
/// defaults when there is none) and how many environment overrides apply
/// (their names only: values may be secrets).
pub fn describe_source(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> String {
    let file = match path {
        Some(p) => p.display().to_string(),
        None if Path::new(DEFAULT_PATH).is_file() => format!("{DEFAULT_PATH} (the default path)"),
        None => {
            let here = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| ".".into());
            format!("defaults (no --config, and no {DEFAULT_PATH} in {here})")
        }
    };
    let prefix = format!("{ENV_PREFIX}__");
    let overrides = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .count();
    match overrides {
        0 => file,
        n => format!("{file}, with {n} CHANNEL_SYNC__* environment override(s)"),
    }
}

impl Settings {
    /// Loads `path` (or the default path, which may be absent), applies the
    /// environment overrides from the process environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let settings = Self::load_unchecked(path, env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads the file and the environment into settings, without the checks
    /// the types alone cannot do (`check-config` runs them all, see
    /// [`Settings::problems`]). Unknown keys and wrong types still fail here.
    pub fn load_unchecked(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let (file, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (Path::new(DEFAULT_PATH).to_path_buf(), false),
        };
        if required && !file.is_file() {
            return Err(ConfigError::new(
                "--config",
                format!("no such file: {}", file.display()),
            ));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let built = config::Config::builder()
            .add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(required),
            )
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(|e| from_config_error(e, &file))?;
        let settings: Settings = built
            .try_deserialize()
            .map_err(|e| from_config_error(e, &file))?;
        if file.is_file() {
            let only_file = config::Config::builder()
                .add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml))
                .build()
                .map_err(|e| from_config_error(e, &file))?;
            if let Ok(table) = only_file.try_deserialize::<serde_json::Value>() {
                reject_secrets_in_file(&table, "")?;
            }
        }
        Ok(settings)
    }

    /// Parses a TOML string with no environment (tests and embedded defaults).
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| from_config_error(e, Path::new("<string>")))?;
        let settings: Settings = built
            .try_deserialize()
            .map_err(|e| from_config_error(e, Path::new("<string>")))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value the types alone cannot; the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem the types alone cannot catch, all at once (for
    /// `check-config`, which reports them together).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut check = |r: Result<(), ConfigError>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };
        check(self.crm.salesforce().validate());
        check(self.console.validate());
        check(self.crm.hubspot().validate());
        check(self.prm.partnerstack().validate());
        check(self.prm.salesforce().validate());
        match self.schedule.parsed() {
            Err(m) => check(Err(ConfigError::new("schedule.cron", m))),
            Ok(_) if self.schedule.next_after(chrono::Utc::now()).is_none() => {
                check(Err(ConfigError::new(
                    "schedule.cron",
                    format!("'{}' never fires (no such date)", self.schedule.cron),
                )))
            }
            Ok(_) => {}
        }
        check(
            self.server
                .listen
                .parse::<std::net::SocketAddr>()
                .map(drop)
                .map_err(|_| {
                    ConfigError::new(
                        "server.listen",
                        format!(
                            "not an address: '{}' (e.g. 0.0.0.0:9090)",
                            self.server.listen
                        ),
                    )
                }),
        );
        check(
            parse_duration(&self.server.shutdown_grace)
                .map(drop)
                .map_err(|m| ConfigError::new("server.shutdown_grace", m)),
        );
        check(
            parse_duration(&self.state.lock_wait)
                .map(drop)
                .map_err(|m| ConfigError::new("state.lock_wait", m)),
        );
        if self.state.url.is_some() {
            check(
                state_url(self.state.url.as_deref().unwrap_or_default())
                    .map_err(|m| ConfigError::new("state.url", m)),
            );
        }
        if let Some(ca) = &self.state.ca_file
            && !ca.is_file()
        {
            check(Err(ConfigError::new(
                "state.ca_file",
                format!("no such file: {}", ca.display()),
            )));
        }
        if let Some(key) = &self.state.encryption_key {
            check(
                crate::crypto::CredentialKey::from_hex(key.expose())
                    .map(drop)
                    .map_err(|m| ConfigError::new("state.encryption_key", m)),
            );
        }
        if let Some(e) = &self.alerts.escalate_after {
            check(
                parse_duration(e)
                    .map(drop)
                    .map_err(|m| ConfigError::new("alerts.escalate_after", m)),
            );
        }
        let slack = &self.alerts.slack;
        if let Some(r) = &slack.repeat_after {
            check(
                parse_duration(r)
                    .map(drop)
                    .map_err(|m| ConfigError::new("alerts.slack.repeat_after", m)),
            );
        }
        if slack.per_second == 0 {
            check(Err(ConfigError::new(
                "alerts.slack.per_second",
                "must be at least 1",
            )));
        }
        if slack.max_per_cycle == 0 {
            check(Err(ConfigError::new(
                "alerts.slack.max_per_cycle",
                "must be at least 1",
            )));
        }
        for (name, route) in &slack.routes {
            for kind in &route.kinds {
                if !crate::engine::FindingKind::ALL
                    .iter()
                    .any(|k| k.as_str() == kind)
                {
                    check(Err(ConfigError::new(
                        format!("alerts.slack.routes.{name}.kinds"),
                        format!("no finding kind '{kind}'"),
                    )));
                }
            }
        }
        check(self.writeback.check_decision_field(self.crm.kind));
        check(self.alerts.slack.check_mentions());
        let fields: Vec<&str> = crate::engine::SCORECARD_FIELDS
            .into_iter()
            .chain(crate::engine::review::REVIEW_FIELDS)
            .collect();
        for field in self.writeback.fields.keys() {
            if !fields.contains(&field.as_str()) {
                check(Err(ConfigError::new(
                    format!("writeback.fields.{field}"),
                    format!(
                        "not a scorecard or review field; one of {}",
                        fields.join(", ")
                    ),
                )));
            }
        }
        let r = &self.rules;
        check(check_days("rules.protection_days", r.protection_days, 1));
        check(check_days(
            "rules.expiring_within_days",
            r.expiring_within_days,
            0,
        ));
        check(check_days(
            "rules.expired_lookback_days",
            r.expired_lookback_days,
            0,
        ));
        if !(r.fuzzy_threshold > 0.0 && r.fuzzy_threshold <= 1.0) {
            check(Err(ConfigError::new(
                "rules.fuzzy_threshold",
                format!("must be above 0 and at most 1, got {}", r.fuzzy_threshold),
            )));
        }
        for (tier, t) in &r.tiers {
            check(check_days(
                &format!("rules.tiers.{tier}.protection_days"),
                t.protection_days,
                1,
            ));
        }
        let rv = &self.review;
        if !(rv.gross_margin.is_finite() && rv.gross_margin > 0.0 && rv.gross_margin <= 1.0) {
            check(Err(ConfigError::new(
                "review.gross_margin",
                format!("must be above 0 and at most 1, got {}", rv.gross_margin),
            )));
        }
        if !(1..=8).contains(&rv.dormant_quarters) {
            check(Err(ConfigError::new(
                "review.dormant_quarters",
                format!("must be 1 to 8, got {}", rv.dormant_quarters),
            )));
        }
        if let Some(cron) = &rv.cron {
            let schedule = ScheduleSettings {
                cron: cron.clone(),
                ..ScheduleSettings::default()
            };
            if let Err(m) = schedule.parsed() {
                check(Err(ConfigError::new("review.cron", m)));
            }
        }
        if rv.mdf_attribution_days > 3660 {
            check(Err(ConfigError::new(
                "review.mdf_attribution_days",
                format!("must be at most 3660, got {}", rv.mdf_attribution_days),
            )));
        }
        let s = &self.scorecard;
        if !(1..=12).contains(&s.fiscal_year_start_month) {
            check(Err(ConfigError::new(
                "scorecard.fiscal_year_start_month",
                format!("must be 1 to 12, got {}", s.fiscal_year_start_month),
            )));
        }
        if crate::values::parse_currency(&s.currency).is_none() {
            check(Err(ConfigError::new(
                "scorecard.currency",
                format!("must be a 3-letter ISO code, got '{}'", s.currency),
            )));
        }
        for (code, rate) in &s.fx {
            let key = format!("scorecard.fx.{code}");
            if crate::values::parse_currency(code).is_none() {
                check(Err(ConfigError::new(
                    key.clone(),
                    "not a 3-letter ISO currency code",
                )));
            }
            if !(rate.is_finite() && *rate > 0.0) {
                check(Err(ConfigError::new(
                    key,
                    format!("must be a positive number, got {rate}"),
                )));
            }
        }
        problems
    }
}

/// Secrets may come from the environment only: a file that holds one fails,
/// naming the key and the variable to use instead.
fn reject_secrets_in_file(value: &serde_json::Value, path: &str) -> Result<(), ConfigError> {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let key = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if SECRET_KEYS.contains(&k.as_str()) {
                let var = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
                return Err(ConfigError::new(
                    key,
                    format!("secrets come from the environment only: set {var} instead"),
                ));
            }
            reject_secrets_in_file(v, &key)?;
        }
    }
    Ok(())
}

fn check_days(key: &str, days: u32, min: u32) -> Result<(), ConfigError> {
    const MAX: u32 = 3650;
    if days < min || days > MAX {
        return Err(ConfigError::new(
            key,
            format!("must be {min} to {MAX} days, got {days}"),
        ));
    }
    Ok(())
}

/// Turns the `config` crate's error into one that names the key.
fn from_config_error(e: config::ConfigError, file: &Path) -> ConfigError {
    match e {
        config::ConfigError::Type { ref key, .. } | config::ConfigError::At { ref key, .. } => {
            let message = e.to_string();
            // "unknown field `x` ... for key `rules`": name the full key.
            let key = match (key.clone(), unknown_field_key(&message)) {
                (Some(parent), Some(field)) => format!("{parent}.{field}"),
                (Some(k), None) => k,
                (None, field) => field.unwrap_or_else(|| "<root>".into()),
            };
            ConfigError::new(key, message)
        }
        config::ConfigError::Message(m) => {
            // serde's "unknown field `x`, expected ..." carries no path: find the key.
            let key = unknown_field_key(&m).unwrap_or_else(|| "<root>".into());
            ConfigError::new(key, m)
        }
        config::ConfigError::FileParse { .. } => {
            ConfigError::new(format!("{}", file.display()), e.to_string())
        }
        other => ConfigError::new("<root>", other.to_string()),
    }
}

fn unknown_field_key(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

/// `state.url`: a PostgreSQL URL without a password in it (the password
/// comes from the environment, so it never sits in a file or a message).
fn state_url(url: &str) -> Result<(), String> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "the URL carries a password: remove it and set CHANNEL_SYNC__STATE__PASSWORD instead"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_spec_defaults() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.rules.protection_days, 90);
        assert_eq!(s.rules.expiring_within_days, 14);
        assert_eq!(s.rules.expired_lookback_days, 30);
        assert_eq!(s.rules.fuzzy_threshold, 0.92);
        assert_eq!(s.scorecard.fiscal_year_start_month, 1);
        assert_eq!(s.scorecard.currency, "USD");
    }

    #[test]
    fn the_bundled_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let s = Settings::load_with_env(Some(&path), []).unwrap();
        assert_eq!(s.rules.protection_days_for(Some("Gold")), 180);
        assert_eq!(s.rules.protection_days_for(Some("unknown")), 90);
        assert_eq!(s.rules.protection_days_for(None), 90);
        assert_eq!(s.scorecard.rate("eur"), Some(1.08));
        assert_eq!(s.scorecard.rate("usd"), Some(1.0));
        assert_eq!(s.scorecard.rate("JPY"), None);
    }

    #[test]
    fn mentions_map_e_mails_to_user_ids_and_the_bot_token_is_a_secret() {
        let s =
            Settings::from_toml("[alerts.slack.mentions]\n\"dana@example.com\" = \"U012ABC\"\n")
                .unwrap();
        assert!(s.validate().is_ok());
        assert_eq!(s.alerts.slack.mentions["dana@example.com"], "U012ABC");
        for (email, id) in [
            ("dana", "U012ABC"),
            ("dana@example.com", "<!here>"),
            ("d@e.com", "C012"),
        ] {
            let e = Settings::from_toml(&format!(
                "[alerts.slack.mentions]\n\"{email}\" = \"{id}\"\n"
            ))
            .and_then(|s| s.validate().map(|_| s))
            .unwrap_err();
            assert!(e.key.starts_with("alerts.slack.mentions."), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[alerts.slack]\nbot_token = \"xoxb-1\"\n").unwrap();
        let e = Settings::load_with_env(Some(&file), []).unwrap_err();
        assert_eq!(e.key, "alerts.slack.bot_token", "{e}");
        assert!(
            e.to_string()
                .contains("CHANNEL_SYNC__ALERTS__SLACK__BOT_TOKEN"),
            "{e}"
        );
    }

    #[test]
    fn the_decision_field_must_be_a_field_name_on_a_crm() {
        let w = |f: &str| WritebackSettings {
            decision_field: Some(f.into()),
            ..Default::default()
        };
        assert!(
            WritebackSettings::default()
                .check_decision_field(None)
                .is_ok()
        );
        let sf = Some(CrmKind::Salesforce);
        assert!(w("Channel_Decision__c").check_decision_field(sf).is_ok());
        assert!(
            w("channel_decision")
                .check_decision_field(Some(CrmKind::Hubspot))
                .is_ok()
        );
        for bad in ["", "Channel Decision", "1x", "a;b", "x.y"] {
            let e = w(bad).check_decision_field(sf).unwrap_err();
            assert_eq!(e.key, "writeback.decision_field", "{bad}: {e}");
        }
        let e = w("x")
            .check_decision_field(Some(CrmKind::Files))
            .unwrap_err();
        assert!(e.to_string().contains("crm.kind"), "{e}");
        let e = Settings::from_toml("[writeback]\ndecision_field = \"x\"\n")
            .and_then(|s| s.validate().map(|_| s))
            .unwrap_err();
        assert_eq!(e.key, "writeback.decision_field", "{e}");
    }

    #[test]
    fn a_file_holding_only_rules_is_valid() {
        let s = Settings::from_toml("[rules]\nprotection_days = 60\n").unwrap();
        assert_eq!(s.rules.protection_days, 60);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = Settings::from_toml("[rules]\nprotection_dayz = 60\n").unwrap_err();
        assert_eq!(e.key, "rules.protection_dayz", "{e}");
        let e = Settings::from_toml("[rulez]\n").unwrap_err();
        assert_eq!(e.key, "rulez", "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named() {
        let e = Settings::from_toml("[rules]\nprotection_days = \"ninety\"\n").unwrap_err();
        assert_eq!(e.key, "rules.protection_days", "{e}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        for (toml, key) in [
            ("[rules]\nfuzzy_threshold = 1.5", "rules.fuzzy_threshold"),
            ("[rules]\nprotection_days = 0", "rules.protection_days"),
            (
                "[rules.tiers.gold]\nprotection_days = 0",
                "rules.tiers.gold.protection_days",
            ),
            (
                "[scorecard]\nfiscal_year_start_month = 13",
                "scorecard.fiscal_year_start_month",
            ),
            ("[scorecard]\ncurrency = \"dollars\"", "scorecard.currency"),
            ("[scorecard.fx]\nEUR = -1.0", "scorecard.fx.EUR"),
        ] {
            let e = Settings::from_toml(toml).unwrap_err();
            assert!(e.key.eq_ignore_ascii_case(key), "{toml}: {e}");
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[rules]\nprotection_days = 60\n").unwrap();
        let env = [(
            "CHANNEL_SYNC__RULES__PROTECTION_DAYS".to_string(),
            "45".to_string(),
        )];
        let s = Settings::load_with_env(Some(&path), env).unwrap();
        assert_eq!(s.rules.protection_days, 45);
    }

    #[test]
    fn the_schedule_is_six_fields_of_valid_cron() {
        let s = Settings::from_toml("[schedule]\ncron = \"*/5 * * * * *\"\n").unwrap();
        let now = chrono::Utc::now();
        assert_eq!(
            s.schedule.interval(now),
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            Settings::default().schedule.interval(now),
            Some(std::time::Duration::from_secs(900))
        );
        for bad in [
            "*/15 * * * *",
            "0 61 * * * *",
            "every minute",
            "0 0 0 * * * 2026",
        ] {
            let e = Settings::from_toml(&format!("[schedule]\ncron = \"{bad}\"\n")).unwrap_err();
            assert_eq!(e.key, "schedule.cron", "{bad}: {e}");
        }
    }

    #[test]
    fn the_server_settings_are_checked() {
        let e = Settings::from_toml("[server]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.key, "server.listen");
        let e = Settings::from_toml("[server]\nshutdown_grace = \"soon\"\n").unwrap_err();
        assert_eq!(e.key, "server.shutdown_grace");
    }

    #[test]
    fn a_missing_named_file_is_a_config_error() {
        let e = Settings::load_with_env(Some(Path::new("/nonexistent/c.toml")), []).unwrap_err();
        assert_eq!(e.key, "--config");
    }
}
